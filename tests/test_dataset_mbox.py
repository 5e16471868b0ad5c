"""Mailboxes (.mbox) as the corpus job's input: a row per message, read as an .eml file is."""

from __future__ import annotations

import email.message
import gzip
import hashlib
import json
import mailbox
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from test_dataset_documents import MAIL, MAIL_TEXT  # noqa: E402

from embedrt import Embedder  # noqa: E402
from embedrt.dataset import BadRowError, InputError, OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._eml import eml_text  # noqa: E402
from embedrt.dataset._mbox import COLUMNS, message_row  # noqa: E402
from embedrt.dataset._texts import read_texts  # noqa: E402


def _message(i: int, body: str) -> email.message.EmailMessage:
    m = email.message.EmailMessage()
    m["Subject"] = f"Note {i} — café"
    m["From"] = f"Ana Pérez <ana{i % 3}@example.com>"
    m["To"] = "team@example.com"
    m["Date"] = f"Tue, 2 Jan 2024 10:{i % 60:02d}:00 +0100"
    if i % 5:
        m["Message-ID"] = f"<{i}@example.com>"
    m.set_content(body)
    return m


def _bodies(n: int) -> list[str]:
    return [f"Message {i}.\n" + "From now on, " * (i % 4) + "한국어 " * (i % 3) + "\nFrom the minutes.\n" for i in range(n)]


def _mailbox(path: Path, n: int) -> list[bytes]:
    """An mbox of ``n`` messages as Python's ``mailbox`` writes one (a body's lines beginning ``From ``
    quoted ``>From ``), and each message's own bytes."""
    box = mailbox.mbox(str(path), create=True)
    messages = [_message(i, body) for i, body in enumerate(_bodies(n))]
    raws = [m.as_bytes() for m in messages]  # before ``add``, which quotes a body's From lines in the message too
    for m in messages:
        box.add(m)
    box.flush()
    box.close()
    return raws


def _read(out: Path) -> Any:
    return pq.read_table(out).sort_by("id")


def _vectors(table: Any) -> np.ndarray:
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)


def test_message_row_reads_a_message_as_an_eml_file_is() -> None:
    """The columns of a message; its quoted From lines unquoted once (mboxrd); no headers: a bad row."""
    row, bad = message_row(MAIL)
    assert bad is None and set(row) == set(COLUMNS)
    assert row["text"] == MAIL_TEXT == eml_text(MAIL)[0]
    assert row["body"] == "Hello team,\n\nthe budget is attached. Café at 10? Yes."
    assert (row["subject"], row["from"], row["to"], row["cc"]) == (
        "Budget für Q3 — draft", "Ana Pérez <ana@example.com>", "team@example.com, bob@example.com", "cfo@example.com")
    assert (row["date"], row["message_id"]) == ("2024-01-02T10:30:00+01:00", "<1@example.com>")
    quoted = b"Subject: q\nFrom: a@example.com (Ana)\n\n>From here.\n>>From there.\n> From a reply.\nFrom x\n"
    row, bad = message_row(quoted)
    assert bad is None and row["body"] == "From here.\n>From there.\n> From a reply.\nFrom x"
    assert (row["from"], row["to"], row["message_id"]) == ("Ana <a@example.com>", None, None)
    assert message_row(b"no headers, only words\n") == (
        {}, "not an e-mail message: no Subject, From, To, Date, Message-ID, Received or Content-Type header at its "
            "start")  # fmt: skip
    raw = message_row(b"Subject: caf\xe9 \xff\n\nbody\n")[0]["subject"]  # 8-bit bytes, not UTF-8: Latin-1
    assert raw == "café ÿ"
    takeout = (b"X-GM-THRID: 1794382239405869181\nX-Gmail-Labels: Inbox,Important,=?UTF-8?Q?R=C3=A9sum=C3=A9s?=\n"
               b"In-Reply-To: <0@example.com>\nReferences: <p@example.com>\n <0@example.com>\nSubject: Re: x\n\nok\n")
    row = message_row(takeout)[0]
    assert (row["thread_id"], row["labels"], row["in_reply_to"], row["references"]) == (
        "1794382239405869181", "Inbox,Important,Résumés", "<0@example.com>", "<p@example.com> <0@example.com>")


def test_an_mbox_is_a_row_per_message(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Each message a row (its line the From line's), parts of a few messages, every column kept; the
    vectors are those of the messages' texts; a resumed run equals a whole one."""
    src = tmp_path / "in" / "inbox.mbox"
    src.parent.mkdir()
    raws = _mailbox(src, 23)
    texts = [eml_text(r)[0] for r in raws]
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=5, keep_columns="*", progress=False)
    assert (s.rows, s.written, s.parts, s.bad_rows) == (23, 23, 5, 0)
    table = _read(tmp_path / "out")
    assert table.column_names == ["id", *COLUMNS, "embedding"]
    assert table.column("id").to_pylist() == list(range(23))
    assert table.column("text").to_pylist() == texts
    assert table.column("body").to_pylist() == [b.rstrip("\n") for b in _bodies(23)]
    assert table.column("message_id").to_pylist() == [f"<{i}@example.com>" if i % 5 else None for i in range(23)]
    assert table.column("from").to_pylist()[:3] == [f"Ana Pérez <ana{i}@example.com>" for i in range(3)]
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    assert read_texts(src) == texts  # ``embedrt encode``'s reading
    lines = (tmp_path / "out" / "_parts.jsonl").read_text().splitlines()  # killed after two parts: resume
    (tmp_path / "out" / "_parts.jsonl").write_text("\n".join(lines[:2]) + "\n")
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=5, keep_columns="*", progress=False)
    assert s.parts_resumed == 2 and _read(tmp_path / "out").equals(table)


def test_messages_added_at_the_front_move_the_parts_after(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """With content-defined parts, a message added at the front changes the parts around it only; the
    others are moved, not embedded again."""
    src = tmp_path / "box.mbox"
    _mailbox(src, 60)
    kw: dict[str, Any] = {"rows_per_part": 6, "content_defined_parts": True, "id_column": "message_id", "progress": False}
    first = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    data = src.read_bytes()
    extra = b"From someone@example.com Mon Jan  1 00:00:00 2024\n" + _message(61, "An added note.\n").as_bytes() + b"\n"
    src.write_bytes(extra + data)
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert again.rows == 61 and again.parts_moved >= first.parts - 3 and again.rows_embedded <= 3 * 4 * 6
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert _read(tmp_path / "out").equals(_read(tmp_path / "clean"))


def test_a_compressed_mbox_and_columns_by_name(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A gzip mbox reads as the plain one; ids from Message-ID, kept columns, a text template; CRLF
    line ends; a message without headers is a bad row at its From line."""
    src = tmp_path / "a.mbox"
    raws = _mailbox(src, 9)
    bad = b"From nobody Mon Jan  1 00:00:00 2024\r\nno headers at all\r\n\r\n"
    src.write_bytes(src.read_bytes() + bad)
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "a.mbox.gz").write_bytes(gzip.compress(src.read_bytes()))
    kw: dict[str, Any] = {"id_column": "message_id", "keep_columns": "subject,date", "on_error": "null",
                          "text_template": "{subject}\n\n{body}", "rows_per_part": 4, "progress": False}  # fmt: skip
    s = embed_dataset(tmp_path / "gz", tmp_path / "out", tiny_bert_bundle, **kw)
    embed_dataset(src, tmp_path / "plain", tiny_bert_bundle, **kw)
    assert (s.rows, s.bad_rows) == (10, 1)
    table = pq.read_table(tmp_path / "out")
    assert table.equals(pq.read_table(tmp_path / "plain"))
    assert table.column_names == ["id", "subject", "date", "embedding"]
    assert table.column("date").to_pylist()[:2] == ["2024-01-02T10:00:00+01:00", "2024-01-02T10:01:00+01:00"]
    texts = [f"Note {i} — café\n\n" + b.rstrip("\n") for i, b in enumerate(_bodies(9))]
    np.testing.assert_allclose(_vectors(table.slice(0, 9)), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    assert table.column("embedding").to_pylist()[9] is None
    lines = src.read_bytes().count(b"\n") - bad.count(b"\n") + 1
    reason = json.loads((tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()[0])
    assert (reason["line"], reason["reason"][:28]) == (lines, "not an e-mail message: no Su")
    with pytest.raises(BadRowError, match=rf"a.mbox line {lines} \(id 9\): not an e-mail message"):
        embed_dataset(src, tmp_path / "fail", tiny_bert_bundle, progress=False)
    raws = [r.replace(b"\n", b"\r\n") for r in raws]
    crlf = b"".join(b"From x@example.com Mon Jan  1 00:00:00 2024\r\n" + r.replace(b"\nFrom ", b"\n>From ") + b"\r\n"
                    for r in raws)  # fmt: skip
    (tmp_path / "crlf.mbox").write_bytes(crlf)
    assert read_texts(tmp_path / "crlf.mbox") == [eml_text(r)[0] for r in raws]


def test_an_mbox_is_refused_where_it_is_not_one(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    (tmp_path / "notes.mbox").write_text("\n\nSubject: a message without its From line\n\nbody\n")
    with pytest.raises(InputError, match=r"notes.mbox is not an mbox file: it begins with b'Subject: a message "
                       r"without its From line', where an mbox begins with the line 'From \.\.\.'"):  # fmt: skip
        embed_dataset(tmp_path / "notes.mbox", tmp_path / "o", tiny_bert_bundle, progress=False)
    _mailbox(tmp_path / "box.mbox", 2)
    with pytest.raises(InputError, match=r"box.mbox has no column 'sender'; its columns are \['text', 'body', "):
        embed_dataset(tmp_path / "box.mbox", tmp_path / "o", tiny_bert_bundle, keep_columns="sender", progress=False)
    empty = tmp_path / "empty" / "e.mbox"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    assert embed_dataset(empty, tmp_path / "o2", tiny_bert_bundle, progress=False).rows == 0


def test_mailboxes_without_a_suffix_as_a_mail_client_keeps_them(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A Thunderbird folder: its mailboxes are named as the folders (no suffix) beside their .msf
    indexes, subfolders' under ``NAME.sbd``; a file named alone without a suffix is read as one too."""
    folder = tmp_path / "Local Folders"
    (folder / "Inbox.sbd").mkdir(parents=True)
    inbox = _mailbox(folder / "Inbox", 3)
    work = _mailbox(folder / "Inbox.sbd" / "Work", 2)
    (folder / "Inbox.msf").write_text("// <!-- <mdb:mork:z v=\"1.4\"/> -->")
    (folder / "Trash").write_bytes(b"")  # an empty folder's mailbox
    (folder / "filterRules.dat").write_text('version="9"')
    s = embed_dataset(folder, tmp_path / "out", tiny_bert_bundle, keep_columns="text", progress=False)
    assert s.rows == 5
    assert pq.read_table(tmp_path / "out").column("text").to_pylist() == [eml_text(r)[0] for r in inbox + work]
    s = embed_dataset(folder / "Inbox", tmp_path / "one", tiny_bert_bundle, progress=False)
    assert s.rows == 3
    with pytest.raises(InputError, match=r"has extension '.msf' \(a Thunderbird folder's index: its mailbox is the file"):
        embed_dataset(folder / "Inbox.msf", tmp_path / "o", tiny_bert_bundle, progress=False)
    with pytest.raises(InputError, match=r"filterRules.dat' has extension '.dat'"):
        embed_dataset(folder / "filterRules.dat", tmp_path / "o", tiny_bert_bundle, progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("not a mailbox\n")
    with pytest.raises(InputError, match=r"holds no file ending in .*, nor a mailbox without a suffix"):
        embed_dataset(tmp_path / "notes", tmp_path / "o", tiny_bert_bundle, progress=False)


def test_cli_embeds_an_mbox(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    raws = _mailbox(tmp_path / "box.mbox", 4)
    from embedrt.cli import main

    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "box.mbox"), "-o", str(tmp_path / "v.npy"),
                 "--no-progress"]) == 0  # fmt: skip  (a message a text, not a line)
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), Embedder(tiny_bert_bundle).encode([eml_text(r)[0] for r in raws]),
                               atol=1e-6)  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "embedrt.cli", "embed-dataset", str(tmp_path / "box.mbox"),
                          str(tmp_path / "o"), "-m", str(tiny_bert_bundle), "--id-column", "message_id",
                          "--keep-columns", "from", "--no-progress"], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    table = pq.read_table(tmp_path / "o")
    assert table.column("id").to_pylist() == [None, "<1@example.com>", "<2@example.com>", "<3@example.com>"]
    assert table.column("from").to_pylist()[1] == "Ana Pérez <ana1@example.com>"


@pytest.mark.parametrize("content", [False, True])
def test_the_scan_finds_the_same_messages_however_the_blocks_fall(content: bool, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Parts start at From lines, with their lines and the hashes of their bytes, the same for blocks
    of 7 bytes to 8 MiB and for content hashes known before a message ends (``RECORD_KEY``): blank
    lines before the first message, a long one, CRLF, no final newline."""
    from embedrt.dataset import _sources

    raws = [_message(i, "short\n" if i % 4 else "long line of the body\r\n" * (i + 20)).as_bytes() for i in range(40)]
    data = b"\n\r\n" + b"".join(b"From x Mon Jan  1 00:00:00 2024\n" + r + b"\n" for r in raws).rstrip(b"\n")
    path = tmp_path / "a.mbox"
    path.write_bytes(data)
    monkeypatch.setattr(_sources, "RECORD_KEY", 300)
    plans = []
    for block in (7, 64, 1000, 8 << 20):
        monkeypatch.setattr(_sources, "_BLOCK", block)
        plan = _sources.plan_input(str(path), 4, text="text", id_column=None, keep_columns=(), content_cuts=content)
        plans.append([(p.start, p.stop, p.byte_offset, p.first_line, p.sha256) for p in plan.parts])
    assert all(p == plans[0] for p in plans)
    bounds = [p[2] for p in plans[0]] + [len(data)]
    assert [p[4] for p in plans[0]] == [hashlib.sha256(data[bounds[i]:bounds[i + 1]]).hexdigest()
                                        for i in range(len(bounds) - 1)]  # fmt: skip
    assert all(data.startswith(b"From x", b) for b in bounds[:-1])
    assert [p[3] for p in plans[0]] == [data[:b].count(b"\n") + 1 for b in bounds[:-1]]
    assert plans[0][-1][1] == 40 and (len(plans[0]) == 10 if not content else 3 <= len(plans[0]) <= 20)
    assert read_texts(path) == [eml_text(r)[0] for r in raws]


def test_messages_named_as_maildir_and_the_enron_corpus_name_them(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """With --eml-text, a document without a suffix, or in a Maildir's cur/ or new/ folder, that begins
    with a message's header lines is read as a message; other such files as text; a name with a
    suffix as its suffix says."""
    from embedrt.dataset._eml import HEAD, looks_like_message, unnamed_message

    enron = (b"Message-ID: <1.JavaMail.evans@thyme>\r\nDate: Mon, 14 May 2001 16:39:00 -0700 (PDT)\r\n"
             b"From: phillip.allen@enron.com\r\nTo: tim.belden@enron.com\r\nSubject: \r\nX-Folder: \\Phillip_Allen\r\n"
             b"X-FileName: pallen (Non-Privileged).pst\r\n\r\nHere is our forecast\r\n\r\n ")  # fmt: skip
    maildir = b"Return-Path: <a@example.com>\nDelivered-To: b@example.com\n" + MAIL
    notes = b"Subject: notes that look like a message\n\nbody\n"
    assert all(looks_like_message(m) for m in (enron, maildir, MAIL, notes, b"From x Mon Jan  1 00:00:00 2024\n" + MAIL))
    assert not any(looks_like_message(m) for m in (b"# README\n\ntext\n", b"Title: post\nTags: a\n\nbody\n", b"",
                                                   b"Return-Path: <a@b>\nX-Other: 1\n\nonly fields no message has\n"))  # fmt: skip
    long = b"Received: from a by b;\n\tMon, 1 Jan 2024\n" * (HEAD // 30) + b"Subject: late\n\n"
    cut = (b"Subject: s\n" + b"X-Abcdefgh: 1\n" * 1000)[:HEAD]
    assert cut.endswith(b"\nX-Abc")  # a field's name cut short: the last line is left out, not taken for text
    assert looks_like_message(long[:HEAD]) and looks_like_message(cut) and not looks_like_message(b"x" * HEAD)
    assert [unnamed_message(p) for p in ("maildir/allen-p/inbox/1.", "Inbox", "m/cur/1700000000.M1P2.host:2,S",
                                         "m/new/1700000001.M2P2.host", "notes.md", "a/b/c.eml")] == [True] * 4 + [False] * 2
    src = tmp_path / "mail"
    for name, data in {"allen-p/inbox/1.": enron, "box/cur/1700000000.M1P2.host:2,S": maildir,
                       "box/new/1700000001.M2P2.host": notes, "README": b"# README\n\ntext\n",
                       "notes.md": notes}.items():  # fmt: skip
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, eml_text=True, keep_columns="text",
                  progress=False)  # fmt: skip
    got = dict(zip(*pq.read_table(tmp_path / "out").select(["id", "text"]).to_pydict().values(), strict=True))
    assert got == {
        "README": "# README\n\ntext\n", "notes.md": notes.decode(),
        "allen-p/inbox/1.": "From: phillip.allen@enron.com\nTo: tim.belden@enron.com\nDate: 2001-05-14T16:39:00-07:00"
                            "\n\nHere is our forecast",
        "box/cur/1700000000.M1P2.host:2,S": MAIL_TEXT, "box/new/1700000001.M2P2.host": "Subject: notes that look like a "
        "message\n\nbody"}  # fmt: skip
    embed_dataset(src, tmp_path / "raw", tiny_bert_bundle, documents=True, keep_columns="text", progress=False)
    assert pq.read_table(tmp_path / "raw").column("text").to_pylist()[0] == "# README\n\ntext\n"
    assert pq.read_table(tmp_path / "raw").column("text").to_pylist()[1] == enron.decode()  # without the option: its source


def _with_attachments() -> tuple[bytes, str, str]:
    """A message with a Word document, a PDF of two pages and a workbook attached; the Word
    document's and the PDF's text as their readers give them."""
    pytest.importorskip("pypdfium2")
    from document_files import make_docx, make_pdf

    from embedrt.dataset._docx import docx_text

    docx = make_docx("<w:p><w:r><w:t>The contract's terms</w:t></w:r></w:p><w:p><w:r><w:t>Signed in May</w:t></w:r></w:p>")
    pdf = make_pdf([["Invoice 42", "Total due"], ["Page two"]])
    m = _message(7, "See the attached files.\n")
    m.add_attachment(docx, maintype="application", subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                     filename="terms.docx")  # fmt: skip
    m.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    m.add_attachment(b"PK\x03\x04 not read", maintype="application", subtype="octet-stream", filename="book.xlsx")
    return m.as_bytes(), docx_text(docx)[0] or "", "Invoice 42\nTotal due\n\nPage two"


def test_attachments_of_the_kinds_asked_for_are_read_into_the_message(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """With --attachment-text, a message's attachments of the kinds asked for follow its text, each
    under its name (a PDF's pages as paragraphs); others are named only; an .eml document, a
    mailbox's message and an Outlook message alike; refused where there are no messages or kinds."""
    raw, docx, pdf = _with_attachments()
    plain = eml_text(raw)[0]
    assert plain is not None and plain.endswith("Attachments: terms.docx, invoice.pdf, book.xlsx")
    want = f"{plain}\n\nAttachment: terms.docx\n\n{docx}\n\nAttachment: invoice.pdf\n\n{pdf}"
    assert docx == "The contract's terms\n\nSigned in May"
    src = tmp_path / "docs"
    src.mkdir()
    (src / "mail.eml").write_bytes(raw)
    kw: dict[str, Any] = {"documents": True, "eml_text": True, "docx_text": True, "pdf_text": True, "keep_columns": "text",
                          "progress": False}  # fmt: skip
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, attachment_text=True, **kw)
    assert pq.read_table(tmp_path / "out").column("text").to_pylist() == [want]
    embed_dataset(src, tmp_path / "names", tiny_bert_bundle, **kw)
    assert pq.read_table(tmp_path / "names").column("text").to_pylist() == [plain]  # without the option
    box = tmp_path / "box.mbox"
    box.write_bytes(b"From a@example.com Mon Jan  1 00:00:00 2024\n" + raw + b"\n")
    embed_dataset(box, tmp_path / "mbox", tiny_bert_bundle, attachment_text=True, docx_text=True, pdf_text=True,
                  keep_columns="text", progress=False)  # fmt: skip
    assert pq.read_table(tmp_path / "mbox").column("text").to_pylist() == [want]
    with pytest.raises(InputError, match=r"docx_text \(--docx-text\) reads Word documents as their text: it needs "
                       r"documents=True"):  # fmt: skip  (kinds without --documents: for attachments only)
        embed_dataset(box, tmp_path / "x", tiny_bert_bundle, docx_text=True, progress=False)
    with pytest.raises(InputError, match=r"attachment_text \(--attachment-text\) reads e-mail attachments of the kinds "
                       r"asked for: it needs one of them"):  # fmt: skip
        embed_dataset(box, tmp_path / "x", tiny_bert_bundle, attachment_text=True, progress=False)
    with pytest.raises(InputError, match=r"it needs one of them .* and messages"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, documents=True, docx_text=True, attachment_text=True,
                      progress=False)  # fmt: skip
    (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(InputError, match=r"it needs messages \(--documents --eml-text, or a mailbox\); this input is jsonl"):
        embed_dataset(tmp_path / "rows.jsonl", tmp_path / "x", tiny_bert_bundle, attachment_text=True, docx_text=True,
                      progress=False)  # fmt: skip


def test_archives_attached_are_read_as_their_files_with_archives(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """With --attachment-text and --archives, an attached zip or tar archive is its files of the kinds
    asked for, each under its name in the archive; hidden and other files are left out; without
    --archives an archive is named only; a continued run must agree."""
    import io
    import tarfile
    import zipfile

    from document_files import make_docx

    from embedrt.dataset._docx import docx_text

    docx = make_docx("<w:p><w:r><w:t>Quarterly figures</w:t></w:r></w:p>")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("reports/q3.docx", docx)
        z.writestr("reports/.~lock.q3.docx", docx)  # hidden: left out
        z.writestr("readme.txt", "not a kind asked for")
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w:gz") as t:
        info = tarfile.TarInfo("./memo.docx")
        info.size = len(docx)
        t.addfile(info, io.BytesIO(docx))
    m = _message(3, "Both archives attached.\n")
    m.add_attachment(zipped.getvalue(), maintype="application", subtype="zip", filename="reports.zip")
    m.add_attachment(tarred.getvalue(), maintype="application", subtype="gzip", filename="memo.tar.gz")
    m.add_attachment(b"PK\x03\x04 cut", maintype="application", subtype="zip", filename="broken.zip")
    raw = m.as_bytes()
    plain = eml_text(raw)[0]
    assert plain is not None and plain.endswith("Attachments: reports.zip, memo.tar.gz, broken.zip")
    text = docx_text(docx)[0]
    box = tmp_path / "box.mbox"
    box.write_bytes(b"From a@example.com Mon Jan  1 00:00:00 2024\n" + raw + b"\n")
    kw: dict[str, Any] = {"attachment_text": True, "docx_text": True, "keep_columns": "text", "progress": False}
    embed_dataset(box, tmp_path / "out", tiny_bert_bundle, archives=True, **kw)
    want = (f"{plain}\n\nAttachment: reports.zip\n\nFile: reports/q3.docx\n\n{text}"
            f"\n\nAttachment: memo.tar.gz\n\nFile: memo.docx\n\n{text}")
    assert pq.read_table(tmp_path / "out").column("text").to_pylist() == [want]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "mail.eml").write_bytes(raw)  # a message a file: the same
    embed_dataset(tmp_path / "docs", tmp_path / "eml", tiny_bert_bundle, documents=True, eml_text=True, archives=True, **kw)
    assert pq.read_table(tmp_path / "eml").column("text").to_pylist() == [want]
    embed_dataset(box, tmp_path / "names", tiny_bert_bundle, **kw)
    assert pq.read_table(tmp_path / "names").column("text").to_pylist() == [plain]
    with pytest.raises(OutputError, match="attachments"):  # the same OUTPUT, the archives' files now read
        embed_dataset(box, tmp_path / "names", tiny_bert_bundle, archives=True, **kw)
    with pytest.raises(InputError, match=r"archives \(--archives\) .* or attachment_text"):
        embed_dataset(box, tmp_path / "x", tiny_bert_bundle, archives=True, progress=False)


def test_outlook_attachments_are_read_as_mime_ones() -> None:
    from test_dataset_documents import _Ole

    from embedrt.dataset._msg import _Message

    read: list[tuple[str, bytes]] = []

    def attachment(name: str, data: bytes) -> str | None:
        read.append((name, data))
        return "the sheet's text\f\nnext page" if name.endswith(".xlsx") else None

    ole = _Ole({"__properties_version1.0": bytes(32), "__substg1.0_0037001F": "Q3".encode("utf-16-le"),
                "__substg1.0_1000001F": "Body".encode("utf-16-le"),
                "__attach_version1.0_#00000000/__substg1.0_3707001F": "plan.xlsx".encode("utf-16-le"),
                "__attach_version1.0_#00000000/__substg1.0_37010102": b"xlsx bytes",
                "__attach_version1.0_#00000001/__substg1.0_3707001F": "photo.jpg".encode("utf-16-le"),
                "__attach_version1.0_#00000001/__substg1.0_37010102": b"jpeg bytes"})  # fmt: skip
    assert _Message(ole, "", 32, attachment).text(8) == (
        "Subject: Q3\n\nBody\n\nAttachments: plan.xlsx, photo.jpg\n\nAttachment: plan.xlsx\n\nthe sheet's text\nnext page")
    assert read == [("plan.xlsx", b"xlsx bytes"), ("photo.jpg", b"jpeg bytes")]


def _tnef(attachments: list[tuple[str, bytes, bytes | None]]) -> bytes:
    """A TNEF stream ([MS-OXTNEF]) of attachments (title, MAPI property list, data attribute)."""

    def attribute(level: int, attr: int, data: bytes) -> bytes:
        return struct.pack("<BII", level, attr, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)

    out = b"\x78\x9f\x3e\x22\x01\x00" + attribute(1, 0x00089006, b"\x00\x00\x01\x00")  # a message attribute first
    for title, props, data in attachments:
        out += attribute(2, 0x00069002, bytes(14)) + attribute(2, 0x00018010, title.encode() + b"\0")
        out += attribute(2, 0x0006800F, data) if data is not None else b""
        out += attribute(2, 0x00069005, props) if props else b""
    return out + b"\x02\x00"  # cut short at its end


def _value(kind: int, pid: int, value: bytes) -> bytes:
    return struct.pack("<HHII", kind, pid, 1, len(value)) + value + bytes(-len(value) % 4)


def test_outlook_winmail_dat_stands_for_the_files_it_holds() -> None:
    """A TNEF attachment (winmail.dat) is named by the files it holds (their long names, among MAPI
    properties after named, fixed and multi-valued ones) and, with an attachment reader, they are read."""
    pytest.importorskip("pypdfium2")
    from document_files import make_docx, make_pdf

    from embedrt.dataset._tnef import tnef_files

    pdf, docx = make_pdf([["Quarterly figures"]]), make_docx("<w:p><w:r><w:t>Meeting notes</w:t></w:r></w:p>")
    name = "Kind".encode("utf-16-le") + b"\0\0"
    long_name = struct.pack("<I", 4) + struct.pack("<HH", 0x001F, 0x8001) + bytes(range(16)) + struct.pack("<II", 1, len(name)) \
        + name + bytes(-len(name) % 4) + struct.pack("<II", 1, 8) + "abcd".encode("utf-16-le") \
        + struct.pack("<HHi", 0x0003, 0x0E20, 1234) + struct.pack("<HHIii", 0x1003, 0x6000, 2, 5, 6) \
        + _value(0x001F, 0x3707, "Quarterly report.pdf".encode("utf-16-le") + b"\0\0")  # fmt: skip
    stored = struct.pack("<I", 1) + _value(0x000D, 0x3701, bytes(16) + docx)  # an object: its interface id, then it
    winmail = _tnef([("QUARTE~1.PDF", long_name, pdf), ("notes.docx", stored, None), ("EMPTY", b"", None)])
    assert tnef_files(winmail) == [("Quarterly report.pdf", pdf), ("notes.docx", docx), ("EMPTY", b"")]
    m = _message(3, "Outlook's rich text.\n")
    m.add_attachment(winmail, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    raw = m.as_bytes()
    assert eml_text(raw)[0].endswith("Attachments: Quarterly report.pdf, notes.docx, EMPTY")  # type: ignore[union-attr]
    from embedrt.dataset._as_text import attachment_reader

    text = eml_text(raw, attachment_reader(("pdf", "docx")))[0]
    assert text is not None and text.endswith("Attachments: Quarterly report.pdf, notes.docx, EMPTY\n\nAttachment: "
                                              "Quarterly report.pdf\n\nQuarterly figures\n\nAttachment: notes.docx\n\n"
                                              "Meeting notes")  # fmt: skip
