"""Zip and tar archives as folders of documents (``archives``): each file in an archive is a row."""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from document_files import make_docx  # noqa: E402
from scan_records import recorded  # noqa: E402

import embedrt.dataset._scan_record as _scan_record  # noqa: E402
from embedrt import Embedder  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import (  # noqa: E402
    InputError,
    StorageError,
    _archives,
    embed_dataset,
)


def _zip(path: Path, members: dict[str, bytes | str], method: int = zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", method) as z:
        for name, content in members.items():
            z.writestr(name, content if isinstance(content, bytes) else content.encode())
    return path


def _vectors(table: pa.Table) -> np.ndarray:
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def _bad(out: Path) -> dict[str, str]:
    return {b["id"]: b["reason"] for b in map(json.loads, (out / "_bad_rows.jsonl").read_text().splitlines())}


def test_a_zip_archive_is_a_folder_of_its_documents(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "docs"
    members: dict[str, bytes | str] = {
        "guide/intro.md": "# Intro\n\nfirst words", "guide/": "", "notes.txt.gz": gzip.compress(b"compressed note"),
        "ko.txt": "한국어 문서입니다.", "__MACOSX/guide/._intro.md": b"\x00\x05\x16\x07", ".DS_Store": b"\x00\x00",
        "guide/.draft.md": "hidden", "report.docx": make_docx("<w:p><w:r><w:t>Report</w:t></w:r></w:p><w:p><w:r><w:t>the report's text</w:t></w:r></w:p>"),
    }  # fmt: skip
    _zip(src / "export.zip", members)
    (src / "top.md").write_text("a document beside the archive")
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, archives=True, docx_text=True,
                      keep_columns="*", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    names = ["export.zip/guide/intro.md", "export.zip/ko.txt", "export.zip/notes.txt.gz", "export.zip/report.docx", "top.md"]
    assert table.column("id").to_pylist() == names and s.written == 5 and s.bad_rows == 0
    texts = table.column("text").to_pylist()
    assert texts[:3] == ["# Intro\n\nfirst words", "한국어 문서입니다.", "compressed note"]
    assert texts[3] == "Report\n\nthe report's text" and texts[4] == "a document beside the archive"
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["input"]["files"][0]["path"] == f"{src / 'export.zip'}!/guide/intro.md"

    alone = embed_dataset(src / "export.zip", tmp_path / "alone", tiny_bert_bundle, documents=True, archives=True,
                          keep_columns="*", on_error="null", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "alone")  # the archive as the input: the paths in it
    assert table.column("id").to_pylist() == ["guide/intro.md", "ko.txt", "notes.txt.gz", "report.docx"]
    assert alone.bad_rows == 1 and "docx" in _bad(tmp_path / "alone")["report.docx"]  # no --docx-text: not UTF-8

    plain = embed_dataset(src, tmp_path / "plain", tiny_bert_bundle, documents=True, on_error="null", progress=False)
    assert plain.written == 2 and "--archives" in _bad(tmp_path / "plain")["export.zip"]
    with pytest.raises(InputError, match=r"archives \(--archives\) .* needs documents=True"):
        embed_dataset(src, tmp_path / "no", tiny_bert_bundle, archives=True, progress=False)


def _patched(data: bytes, name: str, field: str, value: int) -> bytes:
    """A zip whose member ``name`` has ``value`` for its ``field`` ("flags" or "method") in its local
    header and in the central directory."""
    local, central = {"flags": (6, 8), "method": (8, 10)}[field]
    out = bytearray(data)
    struct.pack_into("<H", out, zipfile.ZipFile(io.BytesIO(data)).getinfo(name).header_offset + local, value)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + length] == name.encode():
            struct.pack_into("<H", out, at + central, value)
        at = data.find(b"PK\x01\x02", at + 46)
    return bytes(out)


def test_files_in_an_archive_that_cannot_be_read_are_bad_rows_saying_why(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.md", "fine")
        z.writestr("b.md", "not really encrypted")
        z.writestr("c.md", "deflate64 " * 50)
        z.writestr("d.md", "damaged " * 50)
        z.writestr("inner.zip", _zip_bytes({"x.md": "nested"}))
        z.writestr("e.md", "also fine")
    data = _patched(buf.getvalue(), "b.md", "flags", 0x1)  # encrypted, as the archive says
    data = _patched(data, "c.md", "method", 9)  # Deflate64, which Python does not decompress
    d = zipfile.ZipFile(io.BytesIO(data)).getinfo("d.md")
    start = d.header_offset + 30 + len("d.md") + 4
    data = data[:start] + bytes(b ^ 0x5A for b in data[start:start + 8]) + data[start + 8:]  # its bytes altered
    src = tmp_path / "docs"
    src.mkdir()
    (src / "box.zip").write_bytes(data)
    (src / "broken.zip").write_bytes(b"PK\x03\x04 not a whole archive")
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, archives=True, on_error="null",
                      keep_columns="*", progress=False)  # fmt: skip
    assert s.written == 7 and s.bad_rows == 5
    bad = _bad(tmp_path / "out")
    assert set(bad) == {"box.zip/b.md", "box.zip/c.md", "box.zip/d.md", "box.zip/inner.zip", "broken.zip"}
    assert "encrypted" in bad["box.zip/b.md"] and "cannot be decompressed" in bad["box.zip/c.md"]
    assert "damaged" in bad["box.zip/d.md"] and "an archive in an archive" in bad["box.zip/inner.zip"]
    assert "zip archive that cannot be read" in bad["broken.zip"]
    assert pq.read_table(tmp_path / "out").column("text").to_pylist()[0] == "fine"
    alone = embed_dataset(src / "box.zip", tmp_path / "alone", tiny_bert_bundle, documents=True, archives=True,
                          on_error="null", progress=False)  # fmt: skip  (the archive as INPUT: the one inside it stays)
    assert alone.bad_rows == 4 and "an archive in an archive" in _bad(tmp_path / "alone")["inner.zip"]
    with pytest.raises(InputError, match=r"broken.zip' is a zip archive that cannot be read"):
        embed_dataset(src / "broken.zip", tmp_path / "no", tiny_bert_bundle, documents=True, archives=True, progress=False)


def _zip_bytes(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return buf.getvalue()


def test_an_archive_rewritten_recomputes_the_parts_of_the_files_that_changed(
    tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)  # files written just now are recorded
    docs = {f"notes/{i:03d}.md": f"note {i}: " + "word " * (i % 9) for i in range(90)}
    src, out, clean = tmp_path / "docs", tmp_path / "out", tmp_path / "clean"
    _zip(src / "a.zip", docs)
    kw: dict[str, Any] = {"documents": True, "archives": True, "rows_per_part": 10, "progress": False}
    first = embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert first.written == 90 and first.parts >= 5
    assert f"{src / 'a.zip'}!/notes/000.md" in recorded(out / "_input_scan.arrow")["files"]
    logs: list[str] = []
    again = embed_dataset(src, out, tiny_bert_bundle, log=logs.append, **kw)
    assert again.rows_embedded == 0 and any("90 of 90 input file(s) unchanged" in m for m in logs), logs

    docs["notes/007.md"] = "rewritten"
    docs["notes/050a.md"] = "a note added"
    del docs["notes/080.md"]
    _zip(src / "a.zip", docs)  # the same process: the archive read again, not the one kept from before
    dry = embed_dataset(src, out, tiny_bert_bundle, dry_run=True, **kw)
    assert 0 < dry.rows_to_embed <= 3 * 3 * 10 and dry.parts_resumed >= dry.parts - 6, dry
    done = embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert done.rows_embedded == dry.rows_to_embed and done.written == 90
    embed_dataset(src, clean, tiny_bert_bundle, **kw)
    assert pq.read_table(out).equals(pq.read_table(clean))


def test_a_member_read_alone_is_checked_against_its_archive(tmp_path: Path) -> None:
    from embedrt.dataset import _storage as storage

    archive = _zip(tmp_path / "a.zip", {"x.md": "first", "y.md": "second"})
    where = _archives.locator(str(archive), "x.md")
    assert storage.scan_stamp(where) == storage.scan_stamp(str(archive))
    with storage.open_input(where) as f:
        assert f.read() == b"first"
    assert storage.head(_archives.locator(str(archive), "y.md"), 3) == b"sec"
    assert storage.scan_stamps([where, _archives.locator(str(archive), "y.md")]) == [storage.scan_stamp(str(archive))] * 2
    _zip(archive, {"x.md": "changed"})
    with storage.open_input(where) as f:
        assert f.read() == b"changed"  # a local archive's stamp taken at each open
    with pytest.raises(FileNotFoundError, match="no file 'y.md'"):
        storage.open_input(_archives.locator(str(archive), "y.md"))
    threads: dict[str, set[int]] = {"s3://b/x.tgz": set(), "s3://b/x.zip": set()}
    for where, seen in threads.items():  # a compressed tar's members in order, by this thread; a zip's at once
        storage.each(lambda p, seen=seen: seen.add(threading.get_ident()), [f"{where}!/{k}.md" for k in range(16)])
    assert threads["s3://b/x.tgz"] == {threading.get_ident()} and threading.get_ident() not in threads["s3://b/x.zip"]


def test_archives_on_the_command_line(tmp_path: Path, tiny_bert_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _zip(tmp_path / "export.zip", {"a.md": "one", "b/c.md": "two"})
    assert main(["embed-dataset", "-m", str(tiny_bert_bundle), "--documents", "--archives", str(src),
                 str(tmp_path / "out"), "--no-progress", "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 2
    assert pq.read_table(tmp_path / "out").column("id").to_pylist() == ["a.md", "b/c.md"]
    assert main(["embed-dataset", "-m", str(tiny_bert_bundle), "--archives", str(src), str(tmp_path / "no")]) != 0
    assert "--archives" in capsys.readouterr().err


def test_an_archive_rewritten_while_its_files_are_scanned_stops_the_plan(tmp_path: Path, tiny_bert_bundle: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset import _sources

    archive = _zip(tmp_path / "docs" / "a.zip", {f"{k}.md": f"text {k}" for k in range(5)})
    hashed = _sources._hash_file

    def rewriting(path: str) -> tuple[int, str]:
        if path.endswith("!/3.md"):
            _zip(archive, {f"{k}.md": f"new text {k}" for k in range(5)})
        return hashed(path)

    monkeypatch.setattr(_sources, "_hash_file", rewriting)
    with pytest.raises(InputError, match=r"a.zip changed while it was being scanned"):
        embed_dataset(tmp_path / "docs", tmp_path / "out", tiny_bert_bundle, documents=True, archives=True, progress=False)


def _tar(path: Path, members: dict[str, bytes | str], mode: str = "w:gz", link: tuple[str, str] | None = None) -> Path:
    """A tar archive of ``members`` (a name ending in ``/``: a folder), as ``tar -czf x.tgz .`` names
    them (``./`` first); ``link``: (name, target) of a hard link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as t:
        for name, content in members.items():
            info = tarfile.TarInfo(f"./{name.rstrip('/')}")
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                t.addfile(info)
                continue
            data = content if isinstance(content, bytes) else content.encode()
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(f"./{link[0]}")
            info.type, info.linkname = tarfile.LNKTYPE, f"./{link[1]}"
            t.addfile(info)
    return path


def test_a_tar_archive_is_a_folder_of_its_documents_read_in_one_pass(tmp_path: Path, tiny_bert_bundle: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A compressed tar's members are read in order through readers that move forward: a job over
    it decompresses it a few times (its listing, its scan, its parts), not once a member. Its rows
    come in the archive's order (``tar`` writes a folder's files unsorted), where its name sorts."""
    shuffled = np.random.default_rng(0).permutation(60).tolist()
    docs = {f"maildir/{k // 10}/{k}.": f"Subject: note {k}\n\nbody {k} " + "word " * (k % 7) for k in shuffled}
    src = tmp_path / "docs"
    _tar(src / "mail.tar.gz", {"maildir/": b"", **docs, "maildir/.hidden": "h"}, link=("maildir/copy.", "maildir/3/30."))
    _tar(src / "plain.tar", {"a.md": "plain tar", "b/c.md": "second"}, mode="w")
    readers: list[str] = []
    reader = _archives._Tar._reader
    monkeypatch.setattr(_archives._Tar, "_reader", lambda self: readers.append(self.archive) or reader(self))
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, archives=True, rows_per_part=10,
                      keep_columns="*", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    ids = table.column("id").to_pylist()
    assert s.written == 63 and s.parts >= 5 and [i for i in ids if "copy" not in i][:60] == [f"mail.tar.gz/{k}" for k in docs]  # the archive's order
    assert ids.index("mail.tar.gz/maildir/copy.") == ids.index("mail.tar.gz/maildir/3/30.") + 1  # its bytes' place
    assert "mail.tar.gz/maildir/copy." in ids and "plain.tar/b/c.md" in ids and not any(".hidden" in i for i in ids)
    texts = dict(zip(ids, table.column("text").to_pylist(), strict=True))
    assert texts["mail.tar.gz/maildir/copy."] == docs["maildir/3/30."] and texts["plain.tar/a.md"] == "plain tar"
    assert all(texts[f"mail.tar.gz/{k}"] == v for k, v in docs.items())
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(list(texts.values())), atol=1e-6)
    assert readers.count(str(src / "mail.tar.gz")) <= 6, readers  # a member each would be 61
    assert readers.count(str(src / "plain.tar")) == 1  # seeks anywhere: one reader

    alone = embed_dataset(src / "mail.tar.gz", tmp_path / "alone", tiny_bert_bundle, documents=True, archives=True,
                          progress=False)  # fmt: skip
    alone_ids = pq.read_table(tmp_path / "alone").column("id").to_pylist()
    assert alone.written == 61 and [i for i in alone_ids if "copy" not in i] == list(docs)
    data = (src / "plain.tar").read_bytes()
    (src / "plain.tar").write_bytes(data[:700])  # cut short in its second file: a bad row
    cut = embed_dataset(src, tmp_path / "cut", tiny_bert_bundle, documents=True, archives=True, on_error="null",
                        progress=False)  # fmt: skip
    assert cut.written == 62 and "tar archive that cannot be read" in _bad(tmp_path / "cut")["plain.tar"]
    data = (src / "mail.tar.gz").read_bytes()
    (src / "mail.tar.gz").write_bytes(data[:len(data) // 2])  # its compressed stream cut: as a cut .gz document
    with pytest.raises(StorageError, match=r"mail.tar.gz: its compressed data is truncated"):
        embed_dataset(src, tmp_path / "gz", tiny_bert_bundle, documents=True, archives=True, progress=False)


def test_an_archive_in_memory_gives_the_files_it_can_read() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("a.md", "b.md", "c/.hidden.md", "d.md"):
            z.writestr(name, f"text of {name}")
    data = _patched(buf.getvalue(), "b.md", "method", 9)  # Deflate64: left out, the files after it read
    assert list(_archives.files_in("x.zip", data)) == [("a.md", b"text of a.md"), ("d.md", b"text of d.md")]
    assert list(_archives.files_in("x.zip", data, most=15)) == [("a.md", b"text of a.md")]  # 12 + 12 > 15
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w:gz") as t:
        for name in ("./a.md", "./b.md"):
            info = tarfile.TarInfo(name)
            info.size = len(b"tar text")
            t.addfile(info, io.BytesIO(b"tar text"))
    got = tarred.getvalue()
    assert list(_archives.files_in("x.tgz", got)) == [("a.md", b"tar text"), ("b.md", b"tar text")]
    assert list(_archives.files_in("x.tgz", got[:len(got) // 2])) in ([], [("a.md", b"tar text")])  # cut short
