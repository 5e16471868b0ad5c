"""Documents as input: each file of a folder (or a glob's match) is one text, named by its path."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from document_files import (  # noqa: E402
    make_docx,
    make_epub,
    make_odf,
    make_pdf,
    make_pptx,
    make_scanned_pdf,
    make_xls,
    make_xlsx,
    pptx_shape,
)
from scan_records import as_older, recorded  # noqa: E402

import embedrt.dataset._scan_record as _scan_record  # noqa: E402
import embedrt.dataset._storage as storage  # noqa: E402
from embedrt import Embedder  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import BadRowError, InputError, OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._readers import read_slices  # noqa: E402
from embedrt.dataset._sources import find_documents, plan_input  # noqa: E402

WORDS = ["river", "stone", "quiet", "engine", "paper", "한국어", "light", "music", "north", "glass"]


def _doc(i: int, tag: str = "") -> str:
    lines = [" ".join(WORDS[(i * 3 + k * 7) % len(WORDS)] for k in range(i % 9 + 2)) + f" {tag}{i}." for _ in range(i % 4 + 1)]
    return "# Note " + str(i) + "\n\n" + "\n".join(lines) + "\n"


def _folder(root: Path, docs: dict[str, bytes | str]) -> Path:
    for name, content in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def _takes(kind: str, name: str) -> bool:
    from embedrt.dataset._as_text import BY_NAME

    return BY_NAME[kind].takes(name)


def _vectors(table: pa.Table) -> np.ndarray:
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def test_each_file_is_a_row_named_by_its_path(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    docs: dict[str, bytes | str] = {
        "README.md": "# Title\n\nSome text.\n", "guide/intro.md": "\ufeffa byte order mark first\r\nthen CRLF\r\n",
        "guide/deep/ko.txt": "한국어 문서입니다. 두 번째 문장.", "_posts/2024-01-01-x.md": "a post", "empty.md": "",
        "page.html": "<p>markup is text too</p>", ".git/config": "[core]", "guide/.draft.md": "hidden",
    }  # fmt: skip
    src = _folder(tmp_path / "docs", docs)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, keep_columns="*", progress=False)
    table = pq.read_table(tmp_path / "out")
    names = ["README.md", "_posts/2024-01-01-x.md", "empty.md", "guide/deep/ko.txt", "guide/intro.md", "page.html"]
    assert table.column("id").to_pylist() == names and s.written == 6 and s.bad_rows == 0
    assert table.schema.names == ["id", "text", "embedding"]  # '*': every column but the id (path)
    texts = [str(docs[n]).removeprefix("\ufeff") for n in names]  # the byte order mark is read past
    assert table.column("text").to_pylist() == texts
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["identity"]["rows_per_part"] == 100 and manifest["identity"]["id_column"] == "path"
    assert [f["path"] for f in manifest["input"]["files"]] == [str(src / n) for n in names]


def test_files_that_are_no_utf8_text_are_bad_rows_named_by_their_file(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000  # read no further than its first bad byte; a name no kind takes
    src = _folder(tmp_path / "docs", {"a.md": "fine", "b.bin": png, "c.md": "caf\xe9".encode("latin-1") + b" ok",
                                      "d.txt": "wide".encode("utf-16"), "e.md": "also fine",
                                      "f.md": b"\xef\xbb\xbfbom, then \xff"})  # fmt: skip
    with pytest.raises(BadRowError, match=r"b.bin \(id 'b.bin'\): not UTF-8 text .*byte 0.*--on-error skip"):
        embed_dataset(src, tmp_path / "fail", tiny_bert_bundle, documents=True, progress=False)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, on_error="null", progress=False)
    assert s.written == 6 and s.bad_rows == 4
    bad = [json.loads(line) for line in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    assert [(b["id"], b["file"]) for b in bad] == [(n, str(src / n)) for n in ("b.bin", "c.md", "d.txt", "f.md")]
    assert "at byte 3" in bad[1]["reason"] and "UTF-16" in bad[2]["reason"] and "iconv" in bad[2]["reason"]
    assert "at byte 13" in bad[3]["reason"]  # counted from the file's start, its byte order mark too
    table = pq.read_table(tmp_path / "out")
    assert table.column("embedding").null_count == 4
    skipped = embed_dataset(src, tmp_path / "skip", tiny_bert_bundle, documents=True, on_error="skip", progress=False)
    assert skipped.written == 2


def test_globs_single_files_templates_and_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _folder(tmp_path / "docs", {"a/x.md": "first", "a/y.png": b"\x89", "b/z.md": "second", "top.md": "third"})
    s = embed_dataset(str(src / "**" / "*.md"), tmp_path / "glob", tiny_bert_bundle, documents=True,
                      text_template="{path}\n{text}", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "glob")
    assert table.column("id").to_pylist() == ["a/x.md", "b/z.md", "top.md"] and s.bad_rows == 0
    composed = ["a/x.md\nfirst", "b/z.md\nsecond", "top.md\nthird"]
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(composed), atol=1e-6)
    one = embed_dataset(src / "top.md", tmp_path / "one", tiny_bert_bundle, documents=True, progress=False)
    assert one.written == 1 and pq.read_table(tmp_path / "one").column("id").to_pylist() == ["top.md"]
    with pytest.raises(InputError, match=r"two documents have the path 'x.md'"):
        other = _folder(tmp_path / "other", {"x.md": "another"})
        embed_dataset([str(src / "a" / "*.md"), other], tmp_path / "two", tiny_bert_bundle, documents=True,
                      progress=False)  # fmt: skip
    with pytest.raises(InputError, match=r"documents have no column 'title'.*\['path', 'text'\]"):
        embed_dataset(src, tmp_path / "t", tiny_bert_bundle, documents=True, text_template="{title}", progress=False)
    with pytest.raises(InputError, match=r"csv_delimiter .* this input is documents"):
        embed_dataset(src, tmp_path / "d", tiny_bert_bundle, documents=True, csv_delimiter=";", progress=False)
    with pytest.raises(InputError, match=r"no input files found"):
        embed_dataset(str(src / "*.txt"), tmp_path / "n", tiny_bert_bundle, documents=True, progress=False)
    with pytest.raises(InputError, match=r"has extension '.md'.*--documents"):  # without the option: named
        embed_dataset(src / "top.md", tmp_path / "m", tiny_bert_bundle, progress=False)
    with pytest.raises(InputError, match=r"holds no file ending in.*--documents"):
        embed_dataset(src / "b", tmp_path / "m", tiny_bert_bundle, progress=False)


def test_windows_of_documents_on_the_command_line(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    docs = {f"n{i:02d}.md": _doc(i) * (1 + 12 * (i % 3 == 0)) for i in range(12)}
    src = _folder(tmp_path / "docs", docs)
    assert main(["embed-dataset", str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--documents",
                 "--chunk-tokens", "max", "--chunk-text", "--no-progress"]) == 0  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    chunks = Embedder(tiny_bert_bundle).encode_chunks(list(docs.values()))
    assert table.num_rows == len(chunks.embeddings) > len(docs)
    rows = range(len(chunks.embeddings))
    assert table.column("id").to_pylist() == [name for k, name in enumerate(docs) for _ in rows[chunks.of(k)]]
    assert table.column("chunk_text").to_pylist() == chunks.texts(list(docs.values()))
    np.testing.assert_allclose(_vectors(table), chunks.embeddings, atol=1e-6)


def test_parts_hold_the_same_documents_when_others_come_and_go(tmp_path: Path) -> None:
    src = _folder(tmp_path / "docs", {f"d/{i:05d}.md": f"doc {i}" for i in range(3000)})
    kw: dict[str, Any] = {"text": "text", "id_column": "path", "keep_columns": (), "documents": True}
    plan = plan_input(src, 100, **kw)
    sizes = [p.rows for p in plan.parts]
    assert sum(sizes) == 3000 and 0.7 * 100 < 3000 / len(sizes) < 1.4 * 100
    assert min(sizes[:-1]) >= 25 and max(sizes) <= 400
    assert [p.shard for p in plan.parts] == [sum(sizes[:k]) for k in range(len(sizes))]
    (src / "d" / "01234.md").unlink()
    (src / "d" / "02000x.md").write_text("a new one")
    (src / "d" / "00500.md").write_text("doc 500, edited")
    edited = plan_input(src, 100, **kw)
    before, after = {p.sha256 for p in plan.parts}, {p.sha256 for p in edited.parts}
    assert len(after - before) <= 5, (len(after - before), len(after))  # the three parts touched, and a neighbour's cut
    assert len(after & before) >= len(after) - 5


def test_a_resume_keeps_the_parts_of_unchanged_documents(tmp_path: Path, tiny_bert_bundle: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)  # files written just now are recorded
    docs = {f"notes/{i:03d}.md": _doc(i) for i in range(120)}
    docs["notes/085x.bin"] = b"\xff\xfe\x00binary"  # a bad row in a part that moves
    src, out, clean = _folder(tmp_path / "docs", docs), tmp_path / "out", tmp_path / "clean"
    kw: dict[str, Any] = {"documents": True, "rows_per_part": 12, "on_error": "null", "progress": False}
    first = embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert first.written == 121 and first.bad_rows == 1
    (src / "notes" / "050.md").unlink()
    (src / "notes" / "007.md").write_text("rewritten")
    (src / "notes" / "100a.md").write_text("a note added between two others")
    logs: list[str] = []
    dry = embed_dataset(src, out, tiny_bert_bundle, dry_run=True, log=logs.append, **kw)
    assert dry.rows_to_embed <= 3 * 4 * 12, dry  # at most the parts around the three edits
    assert dry.parts_resumed >= dry.parts - 6 and dry.parts_moved >= 1
    assert any("119 of 121 input file(s) unchanged" in m for m in logs), logs  # the scan record
    again = embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert again.rows_embedded == dry.rows_to_embed < again.written
    embed_dataset(src, clean, tiny_bert_bundle, **{**kw, "rescan": True})
    assert pq.read_table(out).equals(pq.read_table(clean))
    assert (out / "_bad_rows.jsonl").read_text() == (clean / "_bad_rows.jsonl").read_text()
    shutil.move(src / "notes" / "085x.bin", src / "085x.bin")  # a file moved: another path, another row
    assert embed_dataset(src, out, tiny_bert_bundle, **kw).rows_embedded >= 1


def test_a_folder_is_walked_in_the_order_of_its_documents_paths(tmp_path: Path) -> None:
    """Each folder's entries by name, a folder's documents where its name sorts: the order of the
    paths with ``/`` sorting first, which two inputs (sorted as a whole) give too."""
    names = ["a/x.md", "a-b.md", "a.md", "ab/c.md", "a b/x.md", "a/b/c.md", "a/b.md", "Z.md", "é.md", "_i.md", "a0"]
    src = _folder(tmp_path / "docs", {n: n for n in names})
    files, found = find_documents(src)
    assert found == sorted(names, key=lambda n: n.replace("/", "\0")) and files == [str(src / n) for n in found]
    assert storage.walk(str(src)) == (files, found)  # in that order as walked: no sort of a million paths
    _folder(tmp_path / "more", {"a/y.md": "y"})
    more = tmp_path / "more"  # a file under two inputs is one document
    assert find_documents([more, more / "a"]) == ([str(more / "a" / "y.md")], ["y.md"])
    both = find_documents([src, tmp_path / "more"])  # two inputs: sorted as a whole
    assert both[1] == sorted([*names, "a/y.md"], key=lambda n: n.replace("/", "\0"))
    with pytest.raises(InputError, match="two documents have the path 'a/y.md'"):
        find_documents([tmp_path / "more", tmp_path / "more" / "a" / "..", tmp_path / "more"])


def test_a_document_changed_or_removed_while_its_part_is_read_stops_the_part(tmp_path: Path) -> None:
    src = _folder(tmp_path / "docs", {f"{i}.md": f"doc {i}" for i in range(5)})
    plan = plan_input(src, 1000, text="text", id_column="path", keep_columns=(), documents=True)
    (src / "3.md").write_text("doc 3, longer now")
    with pytest.raises(InputError, match=r"3.md changed while the job ran"):
        list(read_slices(plan, plan.parts[0], "text", "path", ()))
    plan = plan_input(src, 1000, text="text", id_column="path", keep_columns=(), documents=True)
    os.remove(src / "1.md")
    with pytest.raises(InputError, match=r"1.md was removed while the job ran"):
        list(read_slices(plan, plan.parts[0], "text", "path", ()))


def test_a_folder_whose_every_part_changed_is_still_the_jobs(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _folder(tmp_path / "docs", {f"{i}.md": f"doc {i}" for i in range(6)})
    kw: dict[str, Any] = {"documents": True, "progress": False}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    (src / "2.md").write_text("doc 2, edited: the only part is made again")
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (again.parts, again.parts_resumed, again.parts_changed, again.rows_embedded) == (1, 0, 1, 6)
    other = _folder(tmp_path / "other", {f"x{i}.md": f"other {i}" for i in range(6)})
    with pytest.raises(OutputError, match="made from another input"):  # no document of the same path
        embed_dataset(other, tmp_path / "out", tiny_bert_bundle, **kw)


def test_a_large_folders_records_stay_small_and_links_to_folders_are_not_followed(
    tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedrt.dataset._job as _job
    from embedrt.dataset import output_status

    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)  # files written just now are recorded
    monkeypatch.setattr(_job, "MANIFEST_FILES", 3)
    src = _folder(tmp_path / "docs", {f"d/{i:02d}.md": _doc(i) for i in range(9)})
    _folder(tmp_path / "elsewhere", {"x.md": "a file linked from the folder", "sub/y.md": "in a folder linked"})
    os.symlink(tmp_path / "elsewhere" / "x.md", src / "link.md")  # a link to a file is that file
    os.symlink(tmp_path / "elsewhere" / "sub", src / "linked")  # a link to a folder is not followed
    os.mkdir(src / ".cache")
    os.symlink(tmp_path / "elsewhere" / "x.md", src / ".cache" / "x.md")  # hidden: not looked into
    out, kw = tmp_path / "out", {"documents": True, "rows_per_part": 3, "progress": False}
    s = embed_dataset(src, out, tiny_bert_bundle, **kw)
    names = [*(f"d/{i:02d}.md" for i in range(9)), "link.md"]
    assert pq.read_table(out).column("id").to_pylist() == names and s.written == 10
    put = json.loads((out / "_manifest.json").read_text())["input"]
    assert put["file_count"] == 10 and [f["name"] for f in put["files"]] == names[:3]  # the first named
    assert ("input", f"documents, 10 file(s), first {src / 'd' / '00.md'}") in output_status(out).lines()
    record = recorded(out / "_input_scan.arrow")
    assert {tuple(e) for e in record["files"].values()} == {("stamp", "size", "sha256")}  # a document's: 3 values
    assert sorted(record["files"]) == sorted(str(src / n) for n in names)
    full = {k: {**e, "rows": 1, "columns": ["path", "text"], "starts": [[0, 0, 1]], "hashes": [], "kinds": {}}
            for k, e in record["files"].items()}  # the shape a text file's findings have, as older runs wrote them
    (out / "_input_scan.arrow").unlink()
    (out / "_input_scan.json").write_bytes(as_older({**record, "files": full}))
    logs: list[str] = []
    again = embed_dataset(src, out, tiny_bert_bundle, log=logs.append, **kw)
    assert again.rows_embedded == 0 and any("10 of 10 input file(s) unchanged" in m for m in logs), logs
    assert not (out / "_input_scan.json").exists()  # replaced by the record this version writes
    assert recorded(out / "_input_scan.arrow")["files"] == record["files"]
    for i in range(9):  # every part changed: a folder still the job's by the documents the manifest names
        (src / "d" / f"{i:02d}.md").write_text(_doc(i, "edited "))
    assert embed_dataset(src, out, tiny_bert_bundle, **kw).rows_embedded == 10


@pytest.mark.parametrize("kind", ["documents", "jsonl", "parquet"])
def test_a_part_alone_reads_what_it_reads_in_the_whole_plan(tmp_path: Path, kind: str) -> None:
    """What a Ray actor is sent with a part (``Plan.alone``): its files only, the same rows and ids."""
    import pickle

    src = tmp_path / "in"
    if kind == "documents":
        _folder(src, {f"{i:03d}.md": _doc(i) for i in range(40)})
    for f in range(3 if kind != "documents" else 0):
        rows = [{"text": _doc(f * 10 + i), "n": i} for i in range(7 + f)]
        if kind == "jsonl":
            _folder(src, {f"f{f}.jsonl": "".join(json.dumps(r) + "\n" for r in rows)})
        else:
            src.mkdir(exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), src / f"f{f}.parquet")
    plan = plan_input(src, 4, text="text", id_column=None, keep_columns=("n",) if kind != "documents" else (),
                      documents=kind == "documents")  # fmt: skip
    assert len(plan.parts) > 3
    for part in plan.parts:
        alone, moved = pickle.loads(pickle.dumps(plan.alone(part)))
        assert len(alone.shards) == (part.rows if kind == "documents" else 1) and moved.name == part.name
        whole = pa.concat_tables(read_slices(plan, part, "text", None, ()))
        assert pa.concat_tables(read_slices(alone, moved, "text", None, ())).equals(whole) and whole.num_rows


def test_a_document_is_decoded_across_read_blocks(tmp_path: Path) -> None:
    from embedrt.dataset._readers import _DOC_BLOCK, _document_text

    text = "a" * (_DOC_BLOCK - 1) + "é한" + "b" * 10  # a character cut by the end of a block
    (tmp_path / "ok.md").write_text(text, encoding="utf-8")
    assert _document_text(str(tmp_path / "ok.md")) == (text, None)
    (tmp_path / "bad.md").write_bytes(text.encode() + b"\xff")
    reason = _document_text(str(tmp_path / "bad.md"))[1]
    assert reason is not None and f"at byte {len(text.encode())};" in reason


PAGE = """<!DOCTYPE html><html><head><title>The  Guide &amp; More</title><meta charset="utf-8">
<style>body{color:red}</style><script>var x = "<p>not text</p>";</script></head>
<body><nav><a href="/">Home</a> | <a href="/b">Book</a></nav>
<h1>Installing</h1><p>Run   the
installer,<br>then restart. &lt;done&gt; caf&eacute;</p>
<!-- a comment -->
<ul><li>one</li><li>two <b>bold</b></li></ul>
<pre><code>fn main() {
    println!("hi");

}</code></pre>
<table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>
<div>last<noscript>enable js</noscript></div><svg><text>chart</text></svg>
</body></html>"""
PAGE_TEXT = ('The Guide & More\n\nHome | Book\n\nInstalling\n\nRun the installer,\nthen restart. <done> café\n\none\n'
             'two bold\n\nfn main() {\n    println!("hi");\n\n}\n\nName\tValue\na\t1\n\nlast')  # fmt: skip


def test_html_text_is_what_a_browser_shows() -> None:
    from embedrt.dataset._html import html_text

    assert html_text(PAGE) == PAGE_TEXT
    assert html_text("<p>no head <i>at all</i></p><p>second</p>") == "no head at all\n\nsecond"
    assert html_text("<html><head><title>T</title><body>b<br/>c") == "T\n\nb\nc"  # no </head>
    assert html_text("<html><head><title>T</title></head><h1>T</h1>body") == "T\n\nbody"  # the title once
    assert html_text("<title>T</title><p>a <svg><title>icon</title></svg>b</p>") == "T\n\na b"  # an image's title
    assert html_text("<html><title>T</title><body><p>text</p>", title=False) == "text"  # a title outside a head
    assert html_text("<p>x\ufdd3y\ufdd0z</p>") == "xyz"  # the parser's own marks are no page's text
    assert html_text("plain text, <unclosed <p>and <b>misnested</p></b> tags").startswith("plain text,")
    assert [_takes("html", n) for n in ("a.html", "B.HTM", "c.xhtml", "d.html.gz", "e.md", "html")] == [True] * 4 + [False] * 2


def test_html_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    import gzip

    legacy = '<html><meta http-equiv="content-type" content="text/html; charset=koi8-r"><p>\u041c\u0438\u0440</p>'
    src = _folder(tmp_path / "docs", {"page.html": PAGE, "notes.md": "<b>markdown keeps its markup</b>",
                                      "old.htm.gz": gzip.compress(b"<p>zipped <i>page</i></p>"),
                                      "ru.html": legacy.encode("koi8-r")})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, html_text=True, **kw)
    table = pq.read_table(tmp_path / "out")
    texts = ["<b>markdown keeps its markup</b>", "zipped page", PAGE_TEXT, "\u041c\u0438\u0440"]  # in its declared encoding
    assert table.column("id").to_pylist() == ["notes.md", "old.htm.gz", "page.html", "ru.html"] and s.written == 4
    assert table.column("text").to_pylist() == texts
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    with pytest.raises(OutputError, match=r"option 'html' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    with pytest.raises(InputError, match=r"holds no file ending in .*; --documents \(documents=True\) reads each file as"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, html_text=True, progress=False)  # rows: of table files


def test_rows_of_html_pages_are_embedded_as_their_visible_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    from embedrt.dataset._html import html_text

    pages = ["<html><head><title>T</title><script>x()</script></head><body><p>One &amp; two</p><p>Three</p></body></html>",
             "<div>plain <b>bold</b></div>", "no markup at all"]  # fmt: skip
    rows = [{"url": f"u{i}", "html": p} for i, p in enumerate(pages)]
    (tmp_path / "crawl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "crawl.parquet")
    (tmp_path / "seen.jsonl").write_text("".join(json.dumps({"url": r["url"], "html": html_text(r["html"])}) + "\n"
                                                 for r in rows))  # fmt: skip
    kw: dict[str, Any] = {"id_column": "url", "text_column": "html", "progress": False}
    want = pq.read_table(embed_dataset(tmp_path / "seen.jsonl", tmp_path / "seen", tiny_bert_bundle, **kw).output)
    for name in ("crawl.jsonl", "crawl.parquet"):
        out = tmp_path / f"out-{name}"
        embed_dataset(tmp_path / name, out, tiny_bert_bundle, html_text=True, keep_columns="html", **kw)
        got = pq.read_table(out)
        assert got.column("embedding").equals(want.column("embedding")), name
        assert got.column("html").to_pylist() == pages  # the kept column as it is in the input
        with pytest.raises(OutputError, match=r"option 'html' \('text' there, None now\)"):
            embed_dataset(tmp_path / name, out, tiny_bert_bundle, keep_columns="html", **kw)
    (tmp_path / "box.mbox").write_bytes(b"From a@b Mon Jan  1 00:00:00 2024\nSubject: s\n\nbody\n")
    with pytest.raises(InputError, match="html_text .--html-text. reads HTML pages .* a mailbox's messages are read"):
        embed_dataset(tmp_path / "box.mbox", tmp_path / "x", tiny_bert_bundle, html_text=True, progress=False)


REPORT = [["Quarterly report (draft)", "The river engine is manip-", "ulated by quiet stone."], [],
          ["Music of the north glass.", "Second line of page three."]]  # fmt: skip
REPORT_TEXT = ("Quarterly report (draft)\nThe river engine is manipulated by quiet stone.\n\f\n\n\f\n"
               "Music of the north glass.\nSecond line of page three.")  # fmt: skip


def test_pdf_text_is_its_pages_text() -> None:
    pytest.importorskip("pypdfium2")
    from embedrt.dataset._pdf_worker import pdf_text

    assert pdf_text(make_pdf(REPORT)) == (REPORT_TEXT, None)  # the hyphenated word joined, an empty page kept
    text = REPORT_TEXT
    assert [text.count("\f", 0, text.index(w)) + 1 for w in ("Quarterly", "manipulated", "Music")] == [1, 1, 3]
    assert pdf_text(make_pdf([["a line with a form\ffeed"]]))[0] == "a line with a form\nfeed"  # the pages' mark only
    no_text, why = pdf_text(make_pdf([[], []]))
    assert no_text is None and why == "no text in its 2 pages (scanned pages? pass --ocr, or OCR them first with ocrmypdf)"
    assert pdf_text(make_pdf([["secret"]], password=True))[1] == (
        "a PDF that needs a password: decrypt it first (qpdf --decrypt --password=...)")
    assert pdf_text(make_pdf(REPORT)[:200])[1] == "not a PDF that PDFium reads (Data format error): a damaged or truncated file?"
    assert [_takes("pdf", n) for n in ("a.pdf", "B.PDF", "c.pdf.zst", "d.pdfx", "pdf")] == [True] * 3 + [False] * 2


def test_pdf_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    import gzip

    pytest.importorskip("pypdfium2")
    src = _folder(tmp_path / "docs", {"report.pdf": make_pdf(REPORT), "old.pdf.gz": gzip.compress(make_pdf([["zipped paper"]])),
                                      "scan.pdf": make_pdf([[]]), "locked.pdf": make_pdf([["x"]], password=True),
                                      "notes.md": "plain notes"})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "on_error": "null", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, pdf_text=True, **kw)
    assert s.written == 5 and s.bad_rows == 2
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == ["locked.pdf", "notes.md", "old.pdf.gz", "report.pdf", "scan.pdf"]
    assert "chunk_page" not in table.column_names  # windows' only
    texts = ["plain notes", "zipped paper", REPORT_TEXT]
    assert table.column("text").to_pylist() == [None, *texts, None]
    np.testing.assert_allclose(_vectors(table.slice(1, 3)), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    bad = [json.loads(line) for line in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    assert [(b["id"], b["reason"].split(":")[0]) for b in bad] == [("locked.pdf", "a PDF that needs a password"),
                                                                  ("scan.pdf", "no text in its 1 page (scanned pages? pass --ocr, or OCR them first with ocrmypdf)")]  # fmt: skip
    with pytest.raises(OutputError, match=r"option 'pdf' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    with pytest.raises(InputError, match=r"pdf_text \(--pdf-text\) reads PDF documents .* needs documents=True"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, pdf_text=True, progress=False)
    with pytest.raises(BadRowError, match=r"locked.pdf \(id 'locked.pdf'\): a PDF \(invalid UTF-8 at byte 10\): pass --pdf-text"):  # fmt: skip
        embed_dataset(src, tmp_path / "y", tiny_bert_bundle, documents=True, progress=False)


def test_pdf_windows_name_their_page(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    pytest.importorskip("pypdfium2")
    ascii_words = [w for w in WORDS if w.isascii()]  # Helvetica's
    pages = [[" ".join(ascii_words[(i * 7 + k * 3 + j) % 9] for j in range(12)) + "." for k in range(3)] for i in range(6)]
    src = _folder(tmp_path / "docs", {"long.pdf": make_pdf(pages)})
    assert main(["embed-dataset", str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--documents",
                 "--pdf-text", "--keep-columns", "text", "--chunk-tokens", "24", "--chunk-text", "--no-progress"]) == 0  # fmt: skip
    read = pq.read_table(tmp_path / "out")
    assert read.column_names == ["id", "text", "chunk", "chunk_start", "chunk_end", "chunk_page", "chunk_text", "embedding"]
    table = read.to_pylist()
    text = table[0]["text"]
    assert len(table) > len(pages) and text.count("\f") == len(pages) - 1
    page_texts = text.split("\n\f\n")
    assert page_texts == ["\n".join(p) for p in pages]
    within = 0
    for row in table:  # the page a window begins on: the form feeds before it
        page = row["chunk_page"]
        assert page == text.count("\f", 0, row["chunk_start"]) + 1
        assert row["chunk_text"] == text[row["chunk_start"]:row["chunk_end"]]
        head = row["chunk_text"].split("\f")[0].rstrip("\n")
        assert head and head in page_texts[page - 1]
        within += "\f" not in row["chunk_text"]
    assert within > len(table) / 2  # a page break is a paragraph break: windows end there where they can
    assert sorted({row["chunk_page"] for row in table}) == list(range(1, len(pages) + 1))


def test_pdf_text_needs_pypdfium2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # as if not installed
    src = _folder(tmp_path / "docs", {"a.pdf": b"%PDF-1.4"})
    with pytest.raises(InputError, match=r"pdf_text \(--pdf-text\) reads PDFs with pypdfium2, which is not "
                       r"installed: pip install 'embedrt\[pdf\]'"):  # fmt: skip
        plan_input(str(src), 100, text="text", id_column="path", keep_columns=(), documents=True, as_text=("pdf",))


def test_pdfs_are_read_in_worker_processes_that_survive_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pypdfium2")
    from embedrt.dataset import _pdf

    good = make_pdf(REPORT)
    pool = _pdf._Pool(1)
    try:
        assert [pool.text(d) for d in (good, b"junk")] == [(REPORT_TEXT, None), (None, (
            "not a PDF that PDFium reads (Data format error): a damaged or truncated file?"))]  # fmt: skip
        assert pool.started == 1  # one worker, reused
        worker = pool.idle.get()
        assert os.getsid(worker.proc.pid) != os.getsid(0)  # a terminal's Ctrl-C stops the job, not its workers
        worker.proc.kill()  # it dies as it would if PDFium crashed on the next PDF
        worker.proc.wait()
        pool.idle.put(worker)
        assert pool.text(good) == (None, "PDFium crashed reading it (its worker ended with code -9): a malformed PDF?")
        assert pool.started == 0
        monkeypatch.setattr(_pdf, "_START", "import time; time.sleep(60)")  # a worker that never answers
        monkeypatch.setattr(_pdf, "PDF_SECONDS", 0.5)
        assert pool.text(good) == (None, "PDFium read it for over 0.5 s: stopped (a malformed PDF?)")
        monkeypatch.undo()
        assert list(pool.threads.map(pool.text, [good] * 3)) == [(REPORT_TEXT, None)] * 3  # replaced: the job goes on
        assert pool.started == 1
    finally:
        pool.close()


def test_the_workers_protocol() -> None:
    import io

    pytest.importorskip("pypdfium2")
    from embedrt.dataset._pdf_worker import HEADER, read_exact, serve

    requests = io.BytesIO(b"".join(HEADER.pack(len(d)) + d for d in (make_pdf(REPORT), b"%PDF-1.4 cut")))
    replies = io.BytesIO()
    serve(requests, replies)  # until its input ends
    replies.seek(0)
    answers = []
    while (header := read_exact(replies, HEADER.size)) is not None:
        answers.append(json.loads(read_exact(replies, HEADER.unpack(header)[0]) or b""))
    assert answers == [[REPORT_TEXT, None], [None, "not a PDF that PDFium reads (Data format error): a damaged or truncated file?"]]


@pytest.mark.parametrize("bytes_ahead", [1, 256 << 20])
def test_pdfs_read_ahead_come_back_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bytes_ahead: int) -> None:
    pytest.importorskip("pypdfium2")
    from embedrt.dataset import _readers

    monkeypatch.setattr(_readers, "_PDF_BYTES_AHEAD", bytes_ahead)  # one window ahead at most, or four
    docs: dict[str, bytes | str] = {f"d{i:02d}.pdf" if i % 3 else f"d{i:02d}.md": make_pdf([[f"pdf {i}"], [f"page two of {i}"]])
                                    if i % 3 else f"markdown {i}" for i in range(45)}  # fmt: skip
    docs["d07.pdf"] = make_pdf([[]])  # a bad row among them
    src = _folder(tmp_path / "docs", docs)
    plan = plan_input(src, 1000, text="text", id_column="path", keep_columns=("text",), documents=True, as_text=("pdf",))
    table = pa.concat_tables(read_slices(plan, plan.parts[0], "text", "path", ("text",)))
    expected = [None if i == 7 else f"pdf {i}\n\f\npage two of {i}" if i % 3 else f"markdown {i}" for i in range(45)]
    assert table.column("id").to_pylist() == sorted(docs) and table.column("text").to_pylist() == expected


def test_a_part_stopped_early_leaves_the_pdfs_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import Future

    from embedrt.dataset import _readers

    futures: list[Future[tuple[str | None, str | None]]] = []

    def later(data: bytes, ocr: bool = False) -> Future[tuple[str | None, str | None]]:
        future: Future[tuple[str | None, str | None]] = Future()
        if len(futures) < 8:
            future.set_result(("read", None))  # the first window's; the others never start
        futures.append(future)
        return future

    monkeypatch.setattr(_readers, "pdf_text_later", later)
    src = _folder(tmp_path / "docs", {f"d{i:02d}.pdf": b"%PDF" for i in range(48)})
    plan = plan_input(src, 1000, text="text", id_column="path", keep_columns=(), documents=True, as_text=("pdf",))
    windows = _readers._fetched(plan.documents(plan.parts[0]), ("pdf",))
    window, got = next(windows)  # the first window, four read ahead of it
    assert len(window) == 8 and got == [("read", None)] * 8 and len(futures) == 40
    windows.close()  # the part stops here
    assert all(f.cancelled() for f in futures[8:])


def _r(text: str) -> str:
    return f'<w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">{text}</w:t></w:r>'


MEMO = (
    f'<w:p><w:pPr><w:pStyle w:val="Heading1"/><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>{_r("Memo")}</w:p>'
    f'<w:p>{_r("First ")}<w:hyperlink><w:r><w:t>linked</w:t></w:r></w:hyperlink>{_r(" line")}<w:r><w:br/></w:r>'
    f'{_r("second")}<w:r><w:tab/></w:r>{_r("tabbed, e")}<w:r><w:noBreakHyphen/></w:r>{_r("mail")}</w:p>'
    f'<w:p><w:del><w:r><w:delText>deleted words</w:delText></w:r></w:del><w:ins>{_r("inserted")}</w:ins>'
    f'<w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r>'
    f'<w:r><w:fldChar w:fldCharType="separate"/></w:r>{_r(" 7")}<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
    f'<w:p/>'
    f'<w:tbl><w:tblPr/><w:tr><w:tc><w:p>{_r("a1")}</w:p></w:tc><w:tc><w:p>{_r("b1")}</w:p><w:p>{_r("more")}</w:p></w:tc></w:tr>'
    f'<w:tr><w:tc><w:p>{_r("a2")}</w:p></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl>'
    f'<w:sdt><w:sdtContent><w:p>{_r("In a content control")}</w:p></w:sdtContent></w:sdt>'
    f'<w:p>{_r("Before the box ")}<w:r><mc:AlternateContent><mc:Choice><w:drawing><w:txbxContent><w:p>{_r("boxed")}'
    f'</w:p></w:txbxContent></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p>{_r("boxed")}</w:p>'
    f'</w:txbxContent></w:pict></mc:Fallback></mc:AlternateContent></w:r>{_r("after")}</w:p>'
)  # fmt: skip
MEMO_TEXT = ("Memo\n\nFirst linked line\nsecond\ttabbed, e-mail\n\ninserted 7\n\na1\tb1 more\na2\t\n\n"
             "In a content control\n\nBefore the box \nboxed\nafter")  # fmt: skip


def test_docx_text_is_its_paragraphs_and_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset import _zipped
    from embedrt.dataset._docx import docx_text

    assert docx_text(make_docx(MEMO)) == (MEMO_TEXT, None)
    noted = make_docx(MEMO.replace(_r("Memo"), _r("Memo") + '<w:r><w:footnoteReference w:id="1"/></w:r>'),
                      footnotes=("A note.", "Another."))  # fmt: skip
    assert docx_text(noted) == (MEMO_TEXT + "\n\nA note.\n\nAnother.", None)  # after the body, not the separators
    assert docx_text(make_docx("")) == ("", None)  # an empty document: an empty text, as an empty file
    assert docx_text(b"<html><p>a page") == (None, "not a Word document: neither a zip, as a .docx is, nor an OLE2 "
                                                  "file, as a .doc is (libreoffice --convert-to docx converts other "
                                                  "formats)")  # fmt: skip
    import io
    import zipfile

    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("content.xml", "<office/>")
    assert docx_text(other.getvalue())[1] == "a zip without word/document.xml: not a Word document"
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("word/document.xml", "<w:document")
    assert docx_text(broken.getvalue())[1].startswith("word/document.xml is not XML (")
    assert [_takes("docx", n) for n in ("a.docx", "B.DOCX", "c.docx.gz", "d.docm", "e.dotx", "f.dot", "g.rtf", "h.odt")] == (
        [True] * 6 + [False] * 2)  # fmt: skip
    monkeypatch.setattr(_zipped, "MOST_XML", 1000)  # a zip bomb's body is not read
    why = docx_text(make_docx(MEMO))[1] or ""
    assert re.fullmatch(r"word/document.xml is \d,\d{3} bytes uncompressed, over the 1,000 read of a document", why)


def test_docx_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _folder(tmp_path / "docs", {"memo.docx": make_docx(MEMO), "old.doc": (WORD97 / "plan.doc").read_bytes(),
                                      "cut.doc": b"\xd0\xcf\x11\xe0\xa1\xb1", "notes.md": "plain notes"})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "on_error": "null", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, docx_text=True, **kw)
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == ["cut.doc", "memo.docx", "notes.md", "old.doc"] and s.bad_rows == 1
    assert table.column("text").to_pylist() == [None, MEMO_TEXT, "plain notes", PLAN_DOC_TEXT]
    np.testing.assert_allclose(_vectors(table.slice(1, 3)), Embedder(tiny_bert_bundle).encode(
        [MEMO_TEXT, "plain notes", PLAN_DOC_TEXT]), atol=1e-6)  # fmt: skip
    with pytest.raises(OutputError, match=r"option 'docx' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    with pytest.raises(InputError, match=r"docx_text \(--docx-text\) reads Word documents .* needs documents=True"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, docx_text=True, progress=False)
    with pytest.raises(BadRowError, match=r"cut.doc \(id 'cut.doc'\): a Word document \(invalid UTF-8 at byte \d+\): "
                       r"pass --docx-text"):  # fmt: skip  (a .doc is a Word document too)
        embed_dataset(src, tmp_path / "y", tiny_bert_bundle, documents=True, progress=False)


WORD97 = Path(__file__).parent / "data" / "word97"  # .doc files saved by LibreOffice from the .docx beside them
PLAN_DOC_TEXT = (
    "Annual plan\n\nFirst paragraph of the plan with a comment on these words.\n\nSee the plan online for details.\n\n"
    "Goal two lines\tOwner\nGrow inner a\tinner b\ninner c\tinner d after inner\tKim\n\nBefore the break.\n\n"
    "After the break.\n\nA shape holds  and the text goes on.\n\nΕλληνικά και русский текст.\n\nLast paragraph.\n\n"
    "text in a box\n\nThe endnote text.")  # fmt: skip


def test_doc_text_is_the_text_of_the_docx_it_was_saved_from() -> None:
    """A Word 97-2003 document reads as the .docx it was saved from: tracked deletions left out,
    insertions kept, a table (an empty cell too), a field's result, a footnote after the body, text
    in UTF-16 (Korean) and cp1252 (€); nested tables and cells of several paragraphs; the header,
    footer and comment left out. A text box's text follows the body (a .doc keeps it in a story of
    its own), and LibreOffice saves a page break inside a paragraph as two paragraphs."""
    from embedrt.dataset._docx import docx_text

    report = docx_text((WORD97 / "report.docx").read_bytes())
    assert report[0] and "removed" not in report[0] and "€ 1,200" in report[0] and report[0].endswith("The note text.")
    assert docx_text((WORD97 / "report.doc").read_bytes()) == report
    assert docx_text((WORD97 / "plan.doc").read_bytes()) == (PLAN_DOC_TEXT, None)
    plan = docx_text((WORD97 / "plan.docx").read_bytes())[0] or ""
    assert plan.replace("\ntext in a box\n", "").replace("break.\nAfter", "break.\n\nAfter") == PLAN_DOC_TEXT.replace(
        "\n\ntext in a box", "")  # fmt: skip
    assert [_takes("docx", n) for n in ("a.doc", "B.DOC", "c.doc.gz")] == [True] * 3


def test_rtf_text_is_the_text_of_the_docx_it_was_saved_from() -> None:
    """An RTF document reads as the .docx LibreOffice saved it from, as its .doc does: footnotes and
    endnotes after the body (LibreOffice writes them as optional destinations), tables, nested ones,
    a field's result, a tracked deletion left out, a header, footer and comment left out, Korean,
    Greek and Russian as Unicode control words. (LibreOffice's RTF keeps no text box: its text is missing.)"""
    from embedrt.dataset._docx import docx_text
    from embedrt.dataset._rtf import rtf_text

    assert rtf_text((WORD97 / "report.rtf").read_bytes()) == docx_text((WORD97 / "report.docx").read_bytes())
    assert rtf_text((WORD97 / "plan.rtf").read_bytes()) == (PLAN_DOC_TEXT.replace("\n\ntext in a box", ""), None)
    assert [_takes("rtf", n) for n in ("a.rtf", "B.RTF", "c.rtf.gz", "d.rtfd")] == [True] * 3 + [False]


RTF = (rb"{\rtf1\ansi\ansicpg1251\deff0{\fonttbl{\f0 Times;}}{\colortbl;\red0\green0\blue0;}{\info{\title A title}}"
       rb"{\header \pard Page header\par}{\footer \pard Page footer\par}{\*\generator Some writer;}"
       rb"\pard First{\footnote\ftnalt \pard An endnote.\par}\tab tabbed\line next line\par"
       rb"\pard Unicode \u8364? euro, \uc0\u20320\u22909  and \uc2\u8212\'3f\'3fdash, emoji \u-10179?\u-8704?.\par"
       rb"\pard Cyrillic \'cf\'f0\'e8\'e2\'e5\'f2, nbsp\~here, hyphen\_ok, soft\-ly, \emdash  dash\par"
       rb"\pard Kept {\deleted removed }words, {\field{\*\fldinst HYPERLINK \"https://x\"}{\fldrslt the link}}.\par"
       rb"{\*\unknowndest skipped text}{\*\atnid A}{\*\annotation \pard a comment\par}"
       rb"\pard A box {\shp{\*\shpinst{\sp{\sn shapeType}{\sv 202}}{\shptxt box text\par}}{\shprslt fallback copy}} here"
       rb"\page after{\footnote \pard {\super\chftn} A note.\par}\par"
       rb"\trowd\cellx1000\cellx2000\pard\intbl a1\cell\pard\intbl b1\par more\cell\row"
       rb"\trowd\cellx1000\cellx2000\pard\intbl a2\cell\cell\row\pard After the table.\par}")  # fmt: skip


def test_rtf_text_reads_control_words_as_the_specification_defines_them() -> None:
    """Unicode characters and their fallbacks (as many as uc says), surrogate pairs, the ANSI code page's bytes
    (a double-byte one's too), special characters, deleted text, a field's result, a text box's
    text, tables (a cell of two paragraphs, an empty cell), a footnote after the body; the font,
    colour and information tables, headers, footers, comments and unknown destinations left out."""
    from embedrt.dataset._rtf import rtf_text

    assert rtf_text(RTF) == (
        "First\ttabbed\nnext line\n\nUnicode € euro, 你好 and —dash, emoji 😀\n\nCyrillic Привет, nbsp\xa0here, "
        "hyphen-ok, softly, — dash\n\nKept words, the link.\n\nA box box text\n\nhere\nafter\n\na1\tb1 more\na2\t\n\n"
        "After the table.\n\nA note.\n\nAn endnote.", None)  # fmt: skip  (footnotes, then endnotes)
    assert rtf_text(rb"{\rtf1\ansi\ansicpg932 \'82\'a0\'82\'a2 kana\par}") == ("\u3042\u3044 kana", None)
    assert rtf_text(b"plain text, not RTF") == (None, "not an RTF document: it does not begin with {\\rtf")
    assert rtf_text(rb"{\rtf1 cut short {\b bold") == ("cut short bold", None)  # what there is of it


def test_rtf_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    from embedrt.dataset._rtf import rtf_text

    src = _folder(tmp_path / "docs", {"report.rtf": (WORD97 / "report.rtf").read_bytes(), "notes.md": "plain"})
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "progress": False}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rtf_text=True, **kw)
    table = pq.read_table(tmp_path / "out")
    report = rtf_text((WORD97 / "report.rtf").read_bytes())[0]
    assert table.column("text").to_pylist() == ["plain", report]
    with pytest.raises(OutputError, match=r"option 'rtf' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    embed_dataset(src, tmp_path / "source", tiny_bert_bundle, **kw)  # without the option: its source, which is ASCII
    assert pq.read_table(tmp_path / "source").column("text").to_pylist()[1].startswith("{\\rtf1")


def _word97(pieces: list[tuple[bytes, bool]], deleted: list[tuple[int, int]]) -> tuple[bytes, bytes]:
    """A WordDocument and a table stream as [MS-DOC] lays them out: ``pieces`` of text (bytes, 8-bit or
    not) at 0x400 on, in a piece table; ``deleted``: byte spans marked as deleted revisions, in one
    page of character properties at 0xC00."""
    word = bytearray(0xE00)
    struct.pack_into("<6H", word, 0, 0xA5EC, 0xC1, 0, 0, 0, 0x0200)
    at, cps, pcds = 0x400, [0], b""
    for text, compressed in pieces:
        word[at : at + len(text)] = text
        cps.append(cps[-1] + (len(text) if compressed else len(text) // 2))
        pcds += struct.pack("<HIH", 0, (at * 2) | 0x40000000 if compressed else at, 0)
        at += 0x100
    plc = struct.pack(f"<{len(cps)}I", *cps) + pcds
    clx = b"\x02" + struct.pack("<I", len(plc)) + plc
    bounds = sorted({0x400, at, *(b for span in deleted for b in span)})
    page = bytearray(512)
    struct.pack_into(f"<{len(bounds)}I", page, 0, *bounds)
    for r, start in enumerate(bounds[:-1]):  # a run's properties: none, or a deleted revision at 0x100
        page[4 * len(bounds) + r] = 0x80 if any(a <= start < b for a, b in deleted) else 0
    page[0x100 : 0x104] = b"\x03\x00\x08\x01"  # cb 3: sprmCFRMarkDel, on
    page[511] = len(bounds) - 1
    word[0xC00 : 0xE00] = page
    bte = struct.pack("<3I", 0x400, at, 0xC00 // 512)
    table = clx + bte
    struct.pack_into("<II", word, 0x01A2, 0, len(clx))
    struct.pack_into("<II", word, 0x00FA, len(clx), len(bte))
    return bytes(word), table


def test_doc_pieces_are_read_as_their_table_says() -> None:
    """8-bit pieces (cp1252, at half their offset) and UTF-16 ones, in the piece table's order, with
    the character runs marked deleted left out, in either kind of piece."""
    from embedrt.dataset._doc import _Document

    text = b"Kept gone more \x80 5\r"
    word, table = _word97([(text, True), ("X한국\r".encode("utf-16-le"), False)],
                          [(0x405, 0x40A), (0x500, 0x502)])  # fmt: skip
    assert _Document(word, table).blocks(0, len(text) + 4) == ["Kept more € 5", "한국"]
    word, table = _word97([("Ünïcode\r".encode("utf-16-le"), False), (b"caf\xe9\r", True)], [])
    assert _Document(word, table).blocks(0, 13) == ["Ünïcode", "café"]


def test_doc_files_it_cannot_read_are_bad_rows_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset._docx import docx_text

    doc = (WORD97 / "report.doc").read_bytes()
    fib = doc.index(b"\xec\xa5")  # the WordDocument stream's first bytes: wIdent, nFib, ..., flags at 0x0A
    locked = bytearray(doc)
    locked[fib + 11] |= 0x01  # fEncrypted: 0x0100 of the flags (little-endian)
    assert docx_text(bytes(locked)) == (None, "a password-protected .doc document: save it without a password to embed it")
    old = bytearray(doc)
    old[fib + 2 : fib + 4] = (0x68).to_bytes(2, "little")  # Word 6.0/95
    assert docx_text(bytes(old)) == (None, "a Word 6.0/95 document (nFib 0x68), an older format than Word 97: save it "
                                           "as .docx")  # fmt: skip
    book = make_xls([("S", [(0, 0, "x", None)])])  # an OLE2 file holding another kind of document
    assert docx_text(book) == (None, "an OLE2 file without a Word document (no WordDocument stream)")
    locked_docx = (WORD97 / "locked.docx").read_bytes()  # a .docx with a password: an OLE2 file
    assert docx_text(locked_docx) == (None, "a password-protected Word document (.docx in an encrypted OLE2 file): "
                                            "save it without a password to embed it")  # fmt: skip
    why = docx_text(doc[: len(doc) // 3])[1] or ""  # cut short
    assert why.startswith("not a readable Word 97-2003 document (")
    assert docx_text(b"{\\rtf1\\ansi Hello}") == (
        None, "an RTF document under a Word name: rename it .rtf and pass --rtf-text (rtf_text=True)")
    monkeypatch.setitem(sys.modules, "olefile", None)
    assert docx_text(doc) == (None, "a Word 97-2003 document (.doc) is read with olefile: pip install 'embedrt[dataset]'")


_MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
TABLE = ('<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="5" name="Table"/><p:cNvGraphicFramePr/><p:nvPr/>'
         '</p:nvGraphicFramePr><a:graphic><a:graphicData><a:tbl><a:tblPr/><a:tblGrid/>'
         + "".join("<a:tr>" + "".join(f'<a:tc><a:txBody><a:bodyPr/><a:p><a:r><a:t>{c}</a:t></a:r></a:p></a:txBody>'
                                      f"<a:tcPr/></a:tc>" for c in row) + "</a:tr>" for row in (("Q1", "Q2"), ("10", "")))
         + "</a:tbl></a:graphicData></a:graphic></p:graphicFrame>")  # fmt: skip
SLIDES = [
    (pptx_shape(["Quarterly review"], "title") + pptx_shape(["Revenue up", "Costs down\nsharply"], "body")
     + pptx_shape(["7"], "sldNum") + pptx_shape(["Confidential"], "ftr") + pptx_shape(["1/2/2026"], "dt"),
     "Mention the new office.\nThen questions."),
    ("", None),  # a blank slide: a page of its own, so that the later slides keep their numbers
    (f'<p:grpSp><p:nvGrpSpPr><p:cNvPr id="3" name="Group"/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>'
     f'{pptx_shape(["Grouped box"])}</p:grpSp>{TABLE}<mc:AlternateContent xmlns:mc="{_MC}"><mc:Choice Requires="p14">'
     f'{pptx_shape(["New content"])}</mc:Choice><mc:Fallback>{pptx_shape(["Old copy"])}</mc:Fallback>'
     f"</mc:AlternateContent>", ""),
]  # fmt: skip
DECK_TEXT = ("Quarterly review\n\nRevenue up\nCosts down\nsharply\n\nMention the new office.\nThen questions.\n\f\n"
             "\n\f\nGrouped box\n\nQ1\tQ2\n10\t\n\nNew content")  # fmt: skip


def test_pptx_text_is_its_slides_and_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset import _zipped
    from embedrt.dataset._pptx import pptx_text

    assert pptx_text(make_pptx(SLIDES)) == (DECK_TEXT, None)  # the master's title style is not the deck's text
    with_diagram = make_pptx(SLIDES, diagrams={1: ["Plan", "Build it", "Ship"]})  # SmartArt: its items, a line each
    assert pptx_text(with_diagram) == (DECK_TEXT.replace("\n\f\n\n\f\n", "\n\f\nPlan\nBuild it\nShip\n\f\n"), None)
    moved, why = pptx_text(make_pptx(SLIDES, order=[2, 0, 1]))  # the deck's order, not the files' names
    assert why is None and (moved or "").split("\n\f\n") == [DECK_TEXT.split("\n\f\n")[k] for k in (2, 0, 1)]
    assert pptx_text(make_pptx([])) == ("", None)  # no slides: an empty text, as an empty file
    assert pptx_text(make_pptx([("", None), (pptx_shape(["3"], "sldNum"), "")])) == (
        None, "no text on any slide (pictures only?)")  # fmt: skip
    assert pptx_text(b"<html><p>a page")[1] == (
        "not a PowerPoint deck: neither a zip, as a .pptx is, nor an OLE2 file, as a .ppt is (libreoffice --convert-to "
        "pptx converts other formats)")  # fmt: skip
    assert pptx_text(make_docx("<w:p/>"))[1] == "a zip without ppt/presentation.xml: not a PowerPoint deck"
    broken = make_pptx([(pptx_shape(["x"]) + "<p:sp>", None)])
    assert (pptx_text(broken)[1] or "").startswith("ppt/slides/slide1.xml is not XML (")
    assert [_takes("pptx", n) for n in ("a.pptx", "B.PPTX", "c.pptx.zst", "d.ppt", "e.ppsx", "f.pps", "g.pptm", "h.potx")] == (
        [True] * 7 + [False])  # fmt: skip
    monkeypatch.setattr(_zipped, "MOST_XML", 3000)  # a zip bomb is not read: every part counts
    why = pptx_text(make_pptx(SLIDES))[1] or ""
    assert re.fullmatch(r"ppt/\S+ is \d,\d{3} bytes uncompressed, over the 3,000 read of a document", why)


PPT97 = Path(__file__).parent / "data" / "ppt97"  # a .ppt LibreOffice saved from the .pptx beside it


def test_ppt_text_is_the_text_of_the_pptx_it_was_saved_from() -> None:
    """A PowerPoint 97-2003 deck reads as the .pptx it was saved from: slides in order (a hidden one
    too), titles, bodies with a line break, a text box, Korean and €, the notes after the slide, a
    table (an empty cell too), a group's text box."""
    from embedrt.dataset._pptx import pptx_text

    deck = pptx_text((PPT97 / "deck.pptx").read_bytes())
    assert deck[0] and "A hidden slide" in deck[0] and "Q1\tQ2\tQ3\n10\t\t30" in deck[0]
    assert pptx_text((PPT97 / "deck.ppt").read_bytes()) == deck


def _record(kind: int, body: bytes = b"", instance: int = 0, children: tuple[bytes, ...] = ()) -> bytes:
    """A PowerPoint record: a container (``children``) or an atom (``body``)."""
    data = b"".join(children) if children else body
    return struct.pack("<HHI", (instance << 4) | (0xF if children else 0), kind, len(data)) + data


def _text_box(*atoms: bytes, placeholder: int | None = None) -> bytes:
    data = () if placeholder is None else (_record(0xF011, children=(_record(0x0BC3, struct.pack("<iBBH", 0, placeholder,
                                                                                              0, 0)),)),)  # fmt: skip
    return _record(0xF004, children=(*data, _record(0xF00D, children=atoms)))


def test_ppt_records_are_read_as_powerpoint_saves_them() -> None:
    """A deck as PowerPoint saves one: placeholders' text kept in the slide list and pointed to from
    their shapes, 8-bit text, a slide number placeholder and a field's character left out, and an
    incremental save whose newer edit replaces a slide of the older one."""
    from embedrt.dataset._ppt import _Deck

    header = _record(0x0F9F, struct.pack("<I", 0))
    chars = _record(0x0FA0, "Title from the list\rits second line".encode("utf-16-le"))
    slide_list = _record(0x0FF0, instance=0, children=(_record(0x03F3, struct.pack("<5I", 1, 0, 1, 256, 0)), header, chars))
    document = _record(0x03E8, children=(slide_list,))

    def slide(*shapes: bytes) -> bytes:
        drawing = _record(0x040C, children=(_record(0xF002, children=(_record(0xF003, children=(
            _record(0xF004, children=(_record(0xF00A, bytes(8)),)), *shapes)),)),))  # fmt: skip
        return _record(0x03EE, children=(_record(0x03EF, bytes(24)), drawing))

    old = slide(_text_box(header, _record(0x0FA0, "an older slide".encode("utf-16-le"))))
    new = slide(_text_box(_record(0x0F9E, struct.pack("<I", 0))),  # the slide list's first text
                _text_box(header, _record(0x0FA8, b"caf\xe9 8-bit")),
                _text_box(header, _record(0x0FA0, "*".encode("utf-16-le")), placeholder=0x08),  # the slide number
                _text_box(header, _record(0x0FA0, "Page * of the deck".encode("utf-16-le")),
                          _record(0x0FD8, struct.pack("<I", 5))))  # fmt: skip
    stream = bytearray(document)
    at = {"old": len(stream)}
    stream += old
    at["new"] = len(stream)
    stream += new

    def edit(last: int, directory: bytes) -> int:
        nonlocal stream
        where = len(stream)
        stream += _record(0x1772, directory)
        here = len(stream)
        stream += _record(0x0FF5, struct.pack("<IHBBIIIIHH", 256, 0, 0, 3, last, where, 0, 2, 1, 0))
        return here

    first = edit(0, struct.pack("<III", 0 | (2 << 20), 0, at["old"]))  # ids 0 and 1: the document, a slide
    current = edit(first, struct.pack("<II", 1 | (1 << 20), at["new"]))  # id 1 again: the slide saved anew
    deck = _Deck(bytes(stream), current)
    assert [deck.slide_text(s) for s in deck.slides] == [
        "Title from the list\nits second line\n\ncafé 8-bit\n\nPage  of the deck"]
    assert [_Deck(bytes(stream), first).slide_text(s) for s in _Deck(bytes(stream), first).slides] == ["an older slide"]


def test_ppt_files_it_cannot_read_are_bad_rows_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset._pptx import pptx_text

    deck = (PPT97 / "deck.ppt").read_bytes()
    token = struct.pack("<I", 0xE391C05F)  # the current user's header token of a deck without a password
    assert deck.count(token) == 1
    locked = deck.replace(token, struct.pack("<I", 0xF3D1C4DF))
    assert pptx_text(locked) == (None, "a password-protected .ppt deck: save it without a password to embed it")
    book = make_xls([("S", [(0, 0, "x", None)])])  # an OLE2 file holding another kind of document
    assert pptx_text(book) == (None, "an OLE2 file without a PowerPoint deck (no PowerPoint Document stream)")
    assert pptx_text((WORD97 / "locked.docx").read_bytes()) == (  # an encrypted Office Open XML file, named .pptx
        None, "a password-protected PowerPoint deck (.pptx in an encrypted OLE2 file): save it without a password to "
              "embed it")  # fmt: skip
    assert (pptx_text(deck[: len(deck) // 2])[1] or "").startswith("not a readable PowerPoint 97-2003 deck (")
    monkeypatch.setitem(sys.modules, "olefile", None)
    assert pptx_text(deck) == (None, "a PowerPoint 97-2003 deck (.ppt) is read with olefile: pip install 'embedrt[dataset]'")


BOOK = [("ch 1.xhtml", "<h1>One</h1><p>First &amp; chapter.</p><script>skip()</script>"),
        ("ch2.xhtml", "<section><h1>Two</h1><p>Second<br/>line.</p></section>")]  # fmt: skip


CHART = (  # a column chart as PowerPoint writes one: a title, an axis title, two series (a name from a cell and a
    # name given as it is), categories from cells, a currency format, a point left out
    '<c:chart><c:title><c:tx><c:rich><a:bodyPr/><a:p><a:r><a:t>Revenue by quarter</a:t></a:r></a:p></c:rich></c:tx>'
    '</c:title><c:autoTitleDeleted val="0"/><c:plotArea><c:layout/><c:barChart><c:barDir val="col"/><c:ser><c:idx '
    'val="0"/><c:tx><c:strRef><c:f>Sheet1!$B$1</c:f><c:strCache><c:ptCount val="1"/><c:pt idx="0"><c:v>2023</c:v>'
    '</c:pt></c:strCache></c:strRef></c:tx><c:cat><c:strRef><c:f>Sheet1!$A$2:$A$4</c:f><c:strCache><c:ptCount val="3"/>'
    '<c:pt idx="0"><c:v>Q1</c:v></c:pt><c:pt idx="1"><c:v>Q2</c:v></c:pt><c:pt idx="2"><c:v>Q3</c:v></c:pt>'
    '</c:strCache></c:strRef></c:cat><c:val><c:numRef><c:f>Sheet1!$B$2:$B$4</c:f><c:numCache><c:formatCode>"$"#,##0'
    '</c:formatCode><c:ptCount val="3"/><c:pt idx="0"><c:v>1200.4</c:v></c:pt><c:pt idx="2"><c:v>1500</c:v></c:pt>'
    '</c:numCache></c:numRef></c:val></c:ser><c:ser><c:idx val="1"/><c:tx><c:v>Plan</c:v></c:tx><c:val><c:numLit>'
    '<c:formatCode>General</c:formatCode><c:ptCount val="3"/><c:pt idx="0"><c:v>1000</c:v></c:pt><c:pt idx="1">'
    '<c:v>1100.5</c:v></c:pt><c:pt idx="2"><c:v>1400</c:v></c:pt></c:numLit></c:val></c:ser></c:barChart><c:catAx>'
    '<c:axId val="1"/><c:title><c:tx><c:rich><a:p><a:r><a:t>Quarter</a:t></a:r></a:p></c:rich></c:tx></c:title>'
    '</c:catAx><c:valAx><c:axId val="2"/></c:valAx></c:plotArea></c:chart>'
)  # fmt: skip


def test_pptx_charts_are_their_titles_and_data() -> None:
    """A chart's title and axis titles, then its data as a table: categories on the first line, a
    series a line (its name, its values in their number format, a point left out empty)."""
    from embedrt.dataset._pptx import pptx_text

    deck = make_pptx([(pptx_shape(["Results"], "title"), None)], charts={0: CHART})
    assert pptx_text(deck) == ("Results\n\nRevenue by quarter\nQuarter\n\tQ1\tQ2\tQ3\n2023\t$1,200\t\t$1,500\n"
                               "Plan\t1000\t1100.5\t1400", None)  # fmt: skip
    untitled = CHART.replace("<c:title><c:tx><c:rich><a:bodyPr/><a:p><a:r><a:t>Revenue by quarter</a:t></a:r></a:p>"
                             "</c:rich></c:tx></c:title>", "")  # fmt: skip
    assert pptx_text(make_pptx([("", None)], charts={0: untitled}))[0] == (
        "Quarter\n\tQ1\tQ2\tQ3\n2023\t$1,200\t\t$1,500\nPlan\t1000\t1100.5\t1400")


def test_epub_text_is_its_chapters_in_reading_order() -> None:
    from embedrt.dataset._epub import epub_text

    text = "A Book\n\nOne\n\nFirst & chapter.\n\nTwo\n\nSecond\nline."
    assert epub_text(make_epub(BOOK)) == (text, None)  # the navigation document and styles are not chapters
    assert epub_text(make_epub(BOOK, spine=[1, 0])) == ("A Book\n\nTwo\n\nSecond\nline.\n\nOne\n\nFirst & chapter.", None)
    assert epub_text(make_epub(BOOK, title="One"))[0] == text.replace("A Book", "One").removeprefix("One\n\n")
    assert epub_text(make_epub(BOOK, encrypted=("ch2.xhtml",)))[1] == (
        "its chapters are encrypted (DRM: 1 of 2, e.g. OEBPS/text/ch2.xhtml): only a book without DRM can be read")
    assert epub_text(make_epub(BOOK, encrypted=("fonts/a.otf",))) == (text, None)  # an obfuscated font is no text
    assert epub_text(make_epub([]))[1] == "the spine of OEBPS/content.opf names no document: not a book of text"
    assert epub_text(b"PK\x03\x04 cut")[1] == "not an EPUB (not a zip): a damaged or cut file?"
    assert epub_text(make_docx("<w:p/>"))[1] == "a zip without META-INF/container.xml: not an EPUB"
    import io
    import zipfile

    lost = io.BytesIO()
    with zipfile.ZipFile(lost, "w") as z:
        z.writestr("META-INF/container.xml", '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                   '<rootfiles><rootfile full-path="book.opf"/></rootfiles></container>')  # fmt: skip
    assert epub_text(lost.getvalue())[1] == "the EPUB's package file 'book.opf', named by META-INF/container.xml, is not in the zip"
    assert [_takes("epub", n) for n in ("a.epub", "B.EPUB", "c.epub.gz", "d.mobi")] == [True] * 3 + [False]


def test_pptx_and_epub_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    from embedrt.dataset._pptx import pptx_text

    src = _folder(tmp_path / "docs", {"deck.pptx": make_pptx(SLIDES), "book.epub": make_epub(BOOK),
                                      "old.ppt": b"\xd0\xcf\x11\xe0\xa1\xb1", "notes.md": "plain notes",
                                      "slides.ppt": (PPT97 / "deck.ppt").read_bytes()})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "on_error": "null", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, pptx_text=True, epub_text=True, **kw)
    table = pq.read_table(tmp_path / "out")
    book = epub_text_of(BOOK)
    slides = pptx_text((PPT97 / "deck.pptx").read_bytes())[0]
    assert table.column("id").to_pylist() == ["book.epub", "deck.pptx", "notes.md", "old.ppt", "slides.ppt"]
    assert table.column("text").to_pylist() == [book, DECK_TEXT, "plain notes", None, slides] and s.bad_rows == 1
    np.testing.assert_allclose(_vectors(table.slice(0, 3)), Embedder(tiny_bert_bundle).encode([book, DECK_TEXT, "plain notes"]),
                               atol=1e-6)  # fmt: skip
    with pytest.raises(OutputError, match=r"option 'epub' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, pptx_text=True, **kw)
    for option, kind in (("pptx_text", "PowerPoint"), ("epub_text", "EPUB")):
        with pytest.raises(InputError, match=rf"{option} \(--{option[:4]}-text\) reads {kind} documents .* needs documents=True"):
            embed_dataset(src, tmp_path / "x", tiny_bert_bundle, progress=False, **{option: True})
    with pytest.raises(BadRowError, match=r"book.epub \(id 'book.epub'\): an EPUB book \(invalid UTF-8 at byte \d+\): "
                       r"pass --epub-text"):  # fmt: skip
        embed_dataset(src, tmp_path / "y", tiny_bert_bundle, documents=True, progress=False)
    with pytest.raises(BadRowError, match=r"deck.pptx \(id 'deck.pptx'\): a PowerPoint deck \(invalid UTF-8 at byte \d+\): "
                       r"pass --pptx-text"):  # fmt: skip
        embed_dataset(src, tmp_path / "z", tiny_bert_bundle, documents=True, epub_text=True, progress=False)


def epub_text_of(chapters: list[tuple[str, str]]) -> str:
    from embedrt.dataset._epub import epub_text

    return epub_text(make_epub(chapters))[0] or ""


def test_pptx_windows_name_their_slide(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    slides = [(pptx_shape([f"Slide {i}"], "title") + pptx_shape([" ".join(WORDS[(i + k) % 10] for k in range(14)) + "."
               for _ in range(3)]), f"note {i}" if i % 2 else None) for i in range(5)]  # fmt: skip
    src = _folder(tmp_path / "docs", {"talk.pptx": make_pptx(slides), "book.epub": make_epub(BOOK)})
    assert main(["embed-dataset", str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--documents", "--pptx-text",
                 "--epub-text", "--keep-columns", "text", "--chunk-tokens", "32", "--chunk-text", "--no-progress"]) == 0  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    assert "chunk_page" in table.column_names
    rows = table.to_pylist()
    deck = [r for r in rows if r["id"] == "talk.pptx"]
    text = deck[0]["text"]
    assert text.count("\f") == len(slides) - 1 and len(deck) > len(slides)
    for row in deck:  # the slide a window begins on
        assert row["chunk_page"] == text.count("\f", 0, row["chunk_start"]) + 1
        head = row["chunk_text"].split("\f")[0].strip()
        assert head in text.split("\n\f\n")[row["chunk_page"] - 1]
    assert sorted({r["chunk_page"] for r in deck}) == list(range(1, len(slides) + 1))
    assert {r["chunk_page"] for r in rows if r["id"] == "book.epub"} == {1}  # a book has no form feeds: one page


SHEET = (  # shared and inline strings, numbers, dates and times, a currency, a boolean, an error, formulas, gaps
    '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="D1" t="inlineStr"><is><t>Note</t></is>'
    '</c></row><row r="2" spans="1:6"><c r="A2"><v>42</v></c><c r="B2"><v>0.30000000000000004</v></c><c r="C2" s="1">'
    '<v>45306</v></c><c r="D2" s="2"><v>45306.5625</v></c></row><row r="3"><c r="A3" s="3"><v>0.75</v></c><c r="B3" '
    's="4"><v>1234.5</v></c><c r="C3" t="b"><v>1</v></c><c r="D3" t="e"><v>#N/A</v></c><c r="E3"><f>A2*2</f><v>84</v>'
    '</c><c r="F3" t="str"><f>A1</f><v>a\tformula\'s text</v></c></row><row r="4"/><row r="6"><c r="A6" s="5"><v>1</v>'
    '</c><c r="R6"><v>7</v></c><c r="AJ6"><v>8</v></c><c r="AK6"><f>X</f></c></row>'
)  # fmt: skip
SHEET_TEXT = ("Item name\tCost\t\tNote\n42\t0.3\t2024-01-15\t2024-01-15 13:30:00\n18:00:00\t$1,234.50\tTRUE\t\t84\t"
              "a formula's text\n\n1900-01-01 00:00:00" + "\t" * 17 + "7\t\t8")  # fmt: skip
WORKBOOK = [("Budget", SHEET), ("Lookups", '<row r="1"><c r="B1"><v>5</v></c></row>'), ("Chart", None)]


def test_xlsx_text_is_its_sheets_rows() -> None:
    from embedrt.dataset._xlsx import xlsx_text

    book = make_xlsx(WORKBOOK, strings=("Item name", "Cost"))
    assert xlsx_text(book) == ("Budget\n" + SHEET_TEXT + "\n\f\nLookups\n\t5\n\f\nChart", None)  # hidden sheet too
    epoch = make_xlsx([("S", '<row r="1"><c r="A1" s="1"><v>0</v></c><c r="B1" s="3"><v>0.5</v></c></row>')], date1904=True)
    assert xlsx_text(epoch) == ("S\n1904-01-01\t12:00:00", None)
    assert xlsx_text(make_xlsx([("Empty", ""), ("Chart", None)]))[1] == "no value in any cell (charts or pictures only?)"
    assert xlsx_text(b"<html><table>")[1].startswith("not an Excel workbook: neither a zip")
    damaged = make_xlsx([("S", '<row r="1"><c r="A1"><v>1</v></c></row><row>')])
    assert "xl/worksheets/sheet1.xml is not XML" in str(xlsx_text(damaged)[1])


XLS_CELLS = [  # the cells of SHEET that an Excel 97-2003 workbook can hold as xlwt writes them (no error value, no
    # formula's saved value: xlwt saves none, and such a formula is left out as in .xlsx)
    (0, 0, "Item name", None), (0, 1, "Cost", None), (0, 3, "Note", None), (1, 0, 42, None),
    (1, 1, 0.30000000000000004, None), (1, 2, datetime.date(2024, 1, 15), "yyyy-mm-dd"),
    (1, 3, datetime.datetime(2024, 1, 15, 13, 30), "yyyy-mm-dd hh:mm:ss"), (2, 0, 0.75, "hh:mm:ss"),
    (2, 1, 1234.5, '"$"#,##0.00'), (2, 2, True, None), (2, 4, 84, None), (2, 5, "a\tformula's text", None),
    (5, 0, 1, "yyyy-mm-dd hh:mm:ss"), (5, 17, 7, None), (5, 35, 8, None),
]  # fmt: skip


def test_xls_text_is_read_as_an_xlsx_is(capsys: pytest.CaptureFixture[str]) -> None:
    """An Excel 97-2003 workbook's text is the one a .xlsx of the same cells gives: formats (custom and
    built-in), dates in both date systems, gaps, sheets as pages; what cannot be read is named."""
    from embedrt.dataset import _xls
    from embedrt.dataset._xlsx import xlsx_text

    book = make_xls([("Budget", XLS_CELLS), ("Lookups", [(0, 1, 5, None)]), ("Empty", [])])
    assert xlsx_text(book) == ("Budget\n" + SHEET_TEXT + "\n\f\nLookups\n\t5\n\f\nEmpty", None)
    rates = make_xls([("Rates", [(0, 0, 0.0425, "0.00%"), (0, 1, -2500000, '#,##0.0,,"M";(#,##0.0,,"M")'),
                                 (0, 2, 3, "0.00E+00"), (0, 3, 0.1, None)])])  # fmt: skip
    assert xlsx_text(rates) == ("Rates\n4.25%\t(2.5M)\t3.00E+00\t0.1", None)  # built-in 10 and 11, a custom format
    epoch = make_xls([("S", [(0, 0, datetime.date(1904, 1, 1), "yyyy-mm-dd"), (0, 1, 0.5, "hh:mm:ss")])], date1904=True)
    assert xlsx_text(epoch) == ("S\n1904-01-01\t12:00:00", None)
    assert xlsx_text(make_xls([("Empty", [])]))[1] == "no value in any cell (charts or pictures only?)"
    assert xlsx_text(book[:3000])[1].startswith("not a readable Excel 97-2003 workbook (")  # cut short
    assert capsys.readouterr().out == ""  # xlrd's warnings kept off stdout (a job's --json summary goes there)
    assert xlsx_text(_ole2_header())[1].startswith("not a readable Excel 97-2003 workbook (CompDocError")
    xlrd = pytest.importorskip("xlrd")
    assert "password-protected .xls" in _xls._unreadable(xlrd.XLRDError("Workbook is encrypted"))
    assert "a password-protected .xlsx?" in _xls._unreadable(xlrd.XLRDError("Can't find workbook in OLE2 compound document"))


def _ole2_header() -> bytes:
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)


MAIL = (  # as a mail client sends one: an encoded subject, a body in two forms, an attachment, a forwarded message
    b"Received: from mx.example.com by mail.example.org; Tue, 2 Jan 2024 10:30:05 +0100\r\n"
    b"Subject: =?utf-8?q?Budget_f=C3=BCr_Q3?= =?utf-8?q?_=E2=80=94_draft?=\r\n"
    b"From: =?iso-8859-1?q?Ana_P=E9rez?= <ana@example.com>\r\n"
    b"To: team@example.com,\r\n bob@example.com\r\nCc: cfo@example.com\r\n"
    b"Date: Tue, 2 Jan 2024 10:30:00 +0100\r\nMessage-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\nThis is a multi-part message.\r\n'
    b'--outer\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Hello team,\r\n\r\nthe budget is attached. Caf=E9 at 10?=\r\n Yes.\r\n"
    b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>team</b> (HTML)</p>\r\n--alt--\r\n"
    b"--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''budget%20Q3%20%E2%82%AC.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: Original\r\nFrom: b@example.com\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nVGhlIGZpcnN0IG5vdGUg4pyTLg==\r\n"
    b"--outer--\r\n"
)  # fmt: skip
MAIL_TEXT = ("Subject: Budget für Q3 — draft\nFrom: Ana Pérez <ana@example.com>\nTo: team@example.com, bob@example.com\n"
             "Cc: cfo@example.com\nDate: 2024-01-02T10:30:00+01:00\n\nHello team,\n\nthe budget is attached. Café at "
             "10? Yes.\n\nAttachments: budget Q3 €.pdf\n\nSubject: Original\nFrom: b@example.com\n\nThe first note ✓.")  # fmt: skip


def test_eml_text_is_the_message_as_its_reader_sees_it() -> None:
    """Encoded headers decoded, the plain body chosen over its HTML form, quoted-printable and base64
    undone in the body's charset, the date in ISO 8601, attachments by name, a forwarded message
    read too; a message of HTML only as its visible text; an unknown charset as Latin-1."""
    from embedrt.dataset._eml import eml_text

    assert eml_text(MAIL) == (MAIL_TEXT, None)
    html = (b"Subject: Only HTML\nDate: someday\nContent-Type: text/html; charset=utf-8\n\n<html><head><title>T</title>"
            b"<style>p {}</style></head><body><p>Just <i>HTML</i></p><p>second</p></body></html>\n")  # fmt: skip
    assert eml_text(html) == ("Subject: Only HTML\nDate: someday\n\nJust HTML\n\nsecond", None)
    odd = b"From: x@example.com\nContent-Type: text/plain; charset=x-unknown-charset\n\ncaf\xe9\n"
    assert eml_text(odd) == ("From: x@example.com\n\ncafé", None)
    assert eml_text(b"Subject: nothing else\n\n") == ("Subject: nothing else", None)
    assert eml_text(b"Subject: caf\xc3\xa9 \xe2\x82\xac\n\nraw UTF-8 in a header\n")[0] == (
        "Subject: café €\n\nraw UTF-8 in a header")
    assert eml_text(b"# A note\n\nNot a message: no headers.\n") == (
        None, "not an e-mail message: no Subject, From, To, Date, Message-ID, Received or Content-Type header at its "
              "start")  # fmt: skip
    assert [_takes("eml", n) for n in ("a.eml", "B.EML", "c.eml.gz", "d.msg", "e.mbox")] == [True] * 4 + [False]


MSG = Path(__file__).parent / "data" / "msg"  # an Outlook message from msg_parser's tests (NOTICE there)


def test_msg_text_is_the_outlook_message_and_the_one_it_holds() -> None:
    """A message Outlook saved, read as an .eml is: its subject, recipients, date and body, then the
    message attached to it (as extract-msg 0.57 reads them: subjects, recipients, bodies)."""
    from embedrt.dataset._eml import eml_text

    assert eml_text((MSG / "outer.msg").read_bytes()) == (
        "Subject: outer subject\nTo: outer@foo.bar\nDate: 2016-11-15T23:29:05.816000+00:00\n\nOuter body\n\n"
        "Subject: test\nTo: test@foobar.com\nDate: 2016-11-15T23:28:26.319000+00:00\n\nbody", None)  # fmt: skip
    assert [_takes("eml", n) for n in ("a.msg", "B.MSG", "c.msg.gz")] == [True] * 3
    assert eml_text(make_xls([("S", [(0, 0, "x", None)])])) == (
        None, "an OLE2 file without an Outlook message (no message properties)")  # fmt: skip


def test_msg_without_olefile_is_a_bad_row_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset._eml import eml_text

    monkeypatch.setitem(sys.modules, "olefile", None)
    assert eml_text((MSG / "outer.msg").read_bytes()) == (
        None, "an Outlook message (.msg) is read with olefile: pip install 'embedrt[dataset]'")


class _Ole:
    """An OLE2 file's streams by path, as much of olefile.OleFileIO as ``_msg`` asks of it."""

    def __init__(self, streams: dict[str, bytes]) -> None:
        self.streams = streams

    def exists(self, path: str) -> bool:
        return path in self.streams

    def openstream(self, path: str) -> Any:
        import io

        return io.BytesIO(self.streams[path])

    def listdir(self) -> list[list[str]]:
        return [p.split("/") for p in self.streams]


def test_msg_properties_are_read_as_outlook_stores_them() -> None:
    """8-bit strings in the message's code page, the sender's name and address, the sent time from
    the fixed-size properties, a body of HTML only as its visible text, attachments by their long
    names (else short ones), in their storages' order."""
    from embedrt.dataset._msg import _Message

    def prop(pid: int, kind: int, value: int) -> bytes:
        return struct.pack("<IIq", (pid << 16) | kind, 0, value)

    sent = 133_485_000_000_000_000  # FILETIME: 100 ns since 1601
    ole = _Ole({
        "__properties_version1.0": bytes(32) + prop(0x0039, 0x0040, sent) + prop(0x3FFD, 0x0003, 1251),
        "__substg1.0_0037001E": "Отчёт за квартал\x00".encode("cp1251"),
        "__substg1.0_0C1A001F": "Ana Pérez".encode("utf-16-le"),
        "__substg1.0_5D01001F": "ana@example.com".encode("utf-16-le"),
        "__substg1.0_0E04001F": "Bob; Kim\x00".encode("utf-16-le"),
        "__substg1.0_10130102": "<html><title>t</title><body><p>Только <b>HTML</b></p><p>вторая</p></body></html>".encode(),
        "__attach_version1.0_#00000001/__substg1.0_3704001F": "SHORT~1.PDF".encode("utf-16-le"),
        "__attach_version1.0_#00000000/__substg1.0_3707001F": "Long name.xlsx".encode("utf-16-le"),
        "__attach_version1.0_#00000000/__substg1.0_3704001F": "LONGNA~1.XLS".encode("utf-16-le"),
    })  # fmt: skip
    assert _Message(ole, "", 32).text(8) == (
        "Subject: Отчёт за квартал\nFrom: Ana Pérez <ana@example.com>\nTo: Bob; Kim\nDate: 2023-12-31T12:40:00+00:00"
        "\n\nТолько HTML\n\nвторая\n\nAttachments: Long name.xlsx, SHORT~1.PDF")  # fmt: skip (Unix time 1,704,026,400)


ENCAPSULATED = (rb"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}{\*\htmltag19 <html>}"
                rb"{\*\htmltag41 <title>T</title>}{\*\htmltag50 <body>}{\*\htmltag64 <p>}\htmlrtf {\htmlrtf0 Hello "
                rb"\htmlrtf\b\htmlrtf0 team{\*\htmltag84 </b>}\htmlrtf}\htmlrtf0 , caf\'e9 &amp; tea \u-10179?\u-8697?."
                rb"{\*\htmltag72 </p>}\htmlrtf\par RTF only\htmlrtf0{\*\htmltag64 <p>}Second{\*\htmltag244 <br>}"
                rb"\htmlrtf\line\htmlrtf0 third{\*\htmltag72 </p>}{\*\mhtmltag84 <img src=cid:x>}{\*\htmltag84 <div>}"
                rb"One{\*\htmltag84 </div>}{\*\htmltag84 <div>}Two{\*\htmltag84 </div>}}")  # fmt: skip
# HTML as Outlook wraps it in RTF ([MS-OXRTFEX]): tags in \htmltag destinations, RTF-only text in \htmlrtf


def test_msg_body_kept_only_as_compressed_rtf_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body Outlook kept only as compressed RTF (LZFu, or stored uncompressed) is read as the RTF
    reader reads it, HTML wrapped in RTF as Outlook shows it; a stream that does not decompress
    leaves the headers; without compressed-rtf the message is a bad row saying what to install."""
    compressed_rtf = pytest.importorskip("compressed_rtf")
    from embedrt.dataset._msg import _Message

    def message(packed: bytes) -> _Message:
        return _Message(_Ole({"__properties_version1.0": bytes(32), "__substg1.0_0037001F": "Notes".encode("utf-16-le"),
                              "__substg1.0_10090102": packed}), "", 32)  # fmt: skip

    plain = rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 First paragraph.\par Second, caf\'e9.\par}"
    assert message(compressed_rtf.compress(plain)).text(8) == "Subject: Notes\n\nFirst paragraph.\n\nSecond, café."
    assert message(compressed_rtf.compress(plain, compressed=False)).text(8).endswith("\n\nSecond, café.")
    assert message(compressed_rtf.compress(ENCAPSULATED)).text(8) == (
        "Subject: Notes\n\nHello team, café & tea 😇.\n\nSecond\nthird\n\nOne\nTwo")  # as the HTML shows, not the RTF
    from embedrt.dataset._rtf import encapsulated_html

    assert encapsulated_html(plain) is None  # RTF of its own: read by the RTF reader
    from embedrt.dataset._rtf import rtf_text

    assert rtf_text(ENCAPSULATED) == ("Hello team, café & tea 😇.\n\nSecond\nthird\n\nOne\nTwo", None)  # an .rtf file too
    broken = bytearray(compressed_rtf.compress(plain))
    broken[20] ^= 0xFF  # its CRC no longer holds
    assert message(bytes(broken)).text(8) == "Subject: Notes"
    monkeypatch.setitem(sys.modules, "compressed_rtf", None)
    from embedrt.dataset._ole import Unreadable

    with pytest.raises(Unreadable, match=r"compressed RTF is read with compressed-rtf: pip install 'embedrt\[dataset\]'"):
        message(compressed_rtf.compress(plain)).text(8)


def test_eml_documents_are_embedded_by_their_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    from embedrt.dataset._eml import eml_text

    outlook = (MSG / "outer.msg").read_bytes()
    src = _folder(tmp_path / "mail", {"budget.eml": MAIL, "latin.eml": b"Subject: caf\xe9\n\nbody\n", "notes.md": "plain",
                                      "outlook.msg": outlook})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "progress": False}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, eml_text=True, **kw)
    table = pq.read_table(tmp_path / "out")
    texts = [MAIL_TEXT, "Subject: café\n\nbody", "plain", eml_text(outlook)[0]]
    assert table.column("id").to_pylist() == ["budget.eml", "latin.eml", "notes.md", "outlook.msg"]
    assert table.column("text").to_pylist() == texts
    np.testing.assert_allclose(_vectors(table), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)
    with pytest.raises(OutputError, match=r"option 'eml' \('text' there, None now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    with pytest.raises(BadRowError, match=r"latin.eml \(id 'latin.eml'\): an e-mail message \(invalid UTF-8 at byte 12\): "
                       r"pass --eml-text"):  # fmt: skip  (without the option: its source, if it is UTF-8)
        embed_dataset(src, tmp_path / "raw", tiny_bert_bundle, **kw)


def test_xls_without_xlrd_is_a_bad_row_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset._xlsx import xlsx_text

    book = make_xls([("S", [(0, 0, "x", None)])])
    monkeypatch.setitem(sys.modules, "xlrd", None)
    assert xlsx_text(book) == (None, "an Excel 97-2003 workbook (.xls) is read with xlrd: pip install 'embedrt[dataset]'")


@pytest.mark.parametrize(("code", "value", "shown"), [
    ("0", 1234.5, "1235"), ("0.00", 1234.5, "1234.50"), ("#,##0", 1234567.4, "1,234,567"),
    ("#,##0.00", -1234.5, "-1,234.50"), ("0%", 0.125, "13%"), ("0%", 0.145, "15%"), ("0.00%", 0.125, "12.50%"),
    ("0.00E+00", 12345.678, "1.23E+04"), ("0.00E+00", 0.000123, "1.23E-04"), ("0.00E+00", 9.999, "1.00E+01"),
    ("##0.0E+0", 12345, "1.2E+4"), ("#,##0 ;(#,##0)", -1234, "(1,234)"), ("#,##0.00;[Red](#,##0.00)", -5.5, "(5.50)"),
    ('"$"#,##0.00', 1234.5, "$1,234.50"), ("[$€-407]#,##0.00", 99.999, "€100.00"), ("#,##0.00 [$€-407]", 2.5, "2.50 €"),
    ("0.0#", 1.5, "1.5"), ("0.0#", 1.567, "1.57"), ("0.0#", 2, "2.0"), ("#.##", 5, "5."), ('#,##0,"K"', 1234567, "1,235K"),
    ('0.00;-0.00;"zero"', 0, "zero"), ("0.00;;", -2, ""), ("0.00_);(0.00)", 3, "3.00"), ("0.0", 2.25, "2.3"),
    ("0.0", -2.25, "-2.3"), ("0", -0.4, "0"), ("#,##0", 1e20, "100,000,000,000,000,000,000"),
    ("0.00", 5e-324, "0.00"), ("0.0", 1.25e20, "125000000000000000000.0"),
    ("# ?/?", 1.5, None), ("[>100]0;0.0", 5, None), ("@", 1, None), ('"N/A"', 3, None),  # shown as General
])  # fmt: skip
def test_xlsx_number_formats_show_numbers_as_excel_does(code: str, value: float, shown: str | None) -> None:
    """Digits, decimals, thousands, percents, scientific, literal text and currencies, sections, halves
    rounded away from zero; fractions, conditions and text formats are left to General."""
    from embedrt.dataset._xlsx import NumberFormat

    fmt = NumberFormat.parse(code)
    assert (fmt.show(value) if fmt is not None else None) == shown


def test_xlsx_cells_show_their_styles_number_format() -> None:
    from embedrt.dataset._xlsx import xlsx_text

    cells = [("6", "0.0425"), ("7", "-2500000"), ("7", "1500000"), ("8", "3"), ("0", "0.1"), ("6", "1e307")]
    row = "".join(f'<c r="{chr(65 + k)}1" s="{s}"><v>{v}</v></c>' for k, (s, v) in enumerate(cells))
    book = make_xlsx([("Rates", f'<row r="1">{row}</row>')])
    # built-in 10 and 11, a custom format; a percent past a float's range as General
    assert xlsx_text(book) == ("Rates\n4.25%\t(2.5M)\t1.5M\t3.00E+00\t0.1\t1e+307", None)


def test_xlsx_documents_are_embedded_and_paged_by_sheet(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    from embedrt.dataset._xlsx import xlsx_text

    rows = "".join(f'<row r="{r + 1}"><c r="A{r + 1}" t="inlineStr"><is><t>{" ".join(WORDS[(r + k) % 10] for k in range(9))}'
                   f'</t></is></c><c r="B{r + 1}"><v>{r}</v></c></row>' for r in range(30))  # fmt: skip
    book = make_xlsx([("First", rows), ("Second", rows), ("Third", rows)])
    cells = [(r, k, v, None) for r in range(30) for k, v in enumerate((" ".join(WORDS[(r + k) % 10] for k in range(9)), r))]
    old = make_xls([("First", cells), ("Second", cells), ("Third", cells)])
    src = _folder(tmp_path / "docs", {"sheets.xlsx": book, "old.xls": old, "page.xls": "<html><table>",
                                      "a.md": "plain"})  # fmt: skip
    args = ["embed-dataset", str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--documents", "--xlsx-text",
            "--keep-columns", "text", "--chunk-tokens", "32", "--on-error", "null", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    table = pq.read_table(tmp_path / "out")
    windows = [r for r in table.to_pylist() if r["id"] == "sheets.xlsx"]
    text = xlsx_text(book)[0] or ""
    assert windows[0]["text"] == text and text.count("\f") == 2 and len(windows) > 3
    assert [r["chunk_page"] for r in windows] == [text.count("\f", 0, r["chunk_start"]) + 1 for r in windows]
    assert {r["chunk_page"] for r in windows} == {1, 2, 3}
    assert [(r["text"], r["chunk_page"]) for r in table.to_pylist() if r["id"] == "old.xls"] == [
        (r["text"], r["chunk_page"]) for r in windows]  # the same cells in a .xls: the same text and windows
    bad = json.loads((tmp_path / "out" / "_bad_rows.jsonl").read_text())
    assert bad["id"] == "page.xls" and "a web page or XML saved under an Excel name?" in bad["reason"]
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["identity"]["xlsx"] == "text"  # part of the identity
    with pytest.raises(BadRowError, match=r"old.xls \(id 'old.xls'\): an Excel workbook .*: pass --xlsx-text"):
        embed_dataset(src, tmp_path / "y", tiny_bert_bundle, documents=True, progress=False)


def test_ocr_lines_are_top_to_bottom_and_left_to_right() -> None:
    from embedrt.dataset._pdf_worker import ocr_lines

    # (top, bottom, left): two pieces of the first line, found out of order; a taller piece on it;
    # a second line below, touching the first by less than half its height
    boxes = [(10.0, 30.0, 200.0), (11.0, 29.0, 20.0), (5.0, 34.0, 400.0), (26.0, 46.0, 20.0)]
    assert ocr_lines(boxes, ["two", "one", " three ", "next"]) == "one two three\nnext"
    assert ocr_lines([], []) == ""


def test_ocr_text_reads_columns_one_after_the_other() -> None:
    from embedrt.dataset._pdf_worker import ocr_text

    # (top, bottom, left, right): a title across the page; two columns, their lines level; a
    # footer across the page; and a numbered line whose number stands apart (one line still)
    title, footer = (10.0, 30.0, 50.0, 550.0, "Title"), (400.0, 420.0, 50.0, 550.0, "Footer across")
    left = [(50.0 + 25 * k, 70.0 + 25 * k, 50.0, 280.0, f"left {k}") for k in range(4)]
    right = [(50.0 + 25 * k, 70.0 + 25 * k, 320.0, 550.0, f"right {k}") for k in range(4)]
    numbered = [(440.0, 460.0, 50.0, 60.0, "1"), (440.0, 460.0, 100.0, 300.0, "code")]
    pieces = [footer, *right, *numbered, title, *left]
    assert ocr_text(pieces) == "\n".join(["Title", *(p[4] for p in left), *(p[4] for p in right), "Footer across", "1 code"])
    assert ocr_text([]) == "" and ocr_text([title]) == "Title"
    # lines touching, their pieces a word's space apart (less than a line's height): lines, not columns
    tight = [(0.0, 20.0, 0.0, 100.0, "a"), (0.0, 20.0, 110.0, 200.0, "b"), (20.0, 40.0, 0.0, 100.0, "c"),
             (20.0, 40.0, 110.0, 200.0, "d")]  # fmt: skip
    assert ocr_text(tight) == "a b\nc d"


SCANNED = [["river stone quiet engine paper", "light music north glass river."], ["second page words here", "and one more line"]]


def test_scanned_pdfs_are_read_by_ocr(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    pytest.importorskip("pypdfium2")
    pytest.importorskip("rapidocr")
    pdf = make_pdf(SCANNED, size=(300, 200))
    src = _folder(tmp_path / "docs", {"scan.pdf": make_scanned_pdf(pdf), "mixed.pdf": make_scanned_pdf(pdf, text_pages=(1,)),
                                      "blank.pdf": make_scanned_pdf(make_pdf([[]], size=(300, 200)))})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "pdf_text": True, "keep_columns": "text", "on_error": "null", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, ocr=True, **kw)
    table = pq.read_table(tmp_path / "out")
    text = "\n\f\n".join("\n".join(p) for p in SCANNED)  # a picture of Helvetica at 150 dpi reads back word for word
    assert table.column("id").to_pylist() == ["blank.pdf", "mixed.pdf", "scan.pdf"] and s.bad_rows == 1
    assert table.column("text").to_pylist() == [None, text, text]
    bad = json.loads((tmp_path / "out" / "_bad_rows.jsonl").read_text())
    assert bad["reason"] == "no text in its 1 page, by OCR either (blank pages, or pictures without words?)"
    with pytest.raises(OutputError, match=r"option 'pdf' \('text and OCR' there, 'text' now\)"):  # part of the identity
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    s = embed_dataset(src, tmp_path / "plain", tiny_bert_bundle, **kw)  # without OCR: the scanned pages are empty
    assert pq.read_table(tmp_path / "plain").column("text").to_pylist() == [None, "\n\f\n" + text.split("\n\f\n")[1], None]
    with pytest.raises(InputError, match=r"ocr \(--ocr\) reads the scanned pages of PDFs: it needs pdf_text=True"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, documents=True, ocr=True, progress=False)


def test_images_are_read_by_ocr(tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PNG, JPEG and a TIFF of two pages (a scanner's) read by OCR, the TIFF's pages as a PDF's; a
    page scanned upside down or on either side as the upright one; a blank image and a damaged one
    are bad rows saying so; without the option, a bad row naming it."""
    pdfium = pytest.importorskip("pypdfium2")
    pytest.importorskip("rapidocr")
    import importlib.util
    import io

    import pyarrow.compute as pc

    doc = pdfium.PdfDocument(make_pdf(SCANNED, size=(300, 200)))
    pages = [doc[i].render(scale=150 / 72).to_pil().convert("L") for i in range(len(doc))]
    doc.close()

    def saved(kind: str, *more: Any, turned: int = 0, **kw: Any) -> bytes:
        out = io.BytesIO()
        first = pages[0].rotate(turned, expand=True)
        first.save(out, kind, **kw) if not more else first.save(out, kind, save_all=True, append_images=list(more))
        return out.getvalue()

    from PIL import Image

    blank = io.BytesIO()
    Image.new("L", pages[0].size, 255).save(blank, "PNG")
    src = _folder(tmp_path / "scans", {"page.png": saved("PNG"), "photo.jpg": saved("JPEG", quality=95),
                                       "both.tiff": saved("TIFF", pages[1]), "blank.png": blank.getvalue(),
                                       "cut.png": saved("PNG")[:60], "over.png": saved("PNG", turned=180),
                                       "left.png": saved("PNG", turned=90), "right.png": saved("PNG", turned=270)})  # fmt: skip
    kw: dict[str, Any] = {"documents": True, "keep_columns": "text", "on_error": "null", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, image_text=True, chunk_tokens=8, **kw)
    table = pq.read_table(tmp_path / "out")
    first, both = "\n".join(SCANNED[0]), "\n\f\n".join("\n".join(p) for p in SCANNED)
    texts = {i: t for i, t in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True)}
    assert texts == {"blank.png": None, "both.tiff": both, "cut.png": None, "page.png": first, "photo.jpg": first,
                     "over.png": first, "left.png": first, "right.png": first}  # fmt: skip
    pages_of = table.filter(pc.equal(table.column("id"), "both.tiff")).column("chunk_page").to_pylist()
    assert pages_of[0] == 1 and pages_of[-1] == 2 and s.bad_rows == 2  # windows name their page
    bad = {b["file"].rsplit("/", 1)[1]: b["reason"] for b in map(json.loads, (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines())}
    assert bad == {"blank.png": "no text found by OCR (a picture without words?)",
                   "cut.png": "not an image OpenCV reads (a damaged or truncated file?)"}  # fmt: skip
    with pytest.raises(BadRowError, match=r"an image \(invalid UTF-8 at byte 0\): pass --image-text"):
        embed_dataset(src, tmp_path / "raw", tiny_bert_bundle, documents=True, progress=False)
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else found(name, *a))
    with pytest.raises(InputError, match=r"image_text \(--image-text\) reads images' text with RapidOCR, which is not "
                       r"installed: pip install 'embedrt\[ocr\]'"):  # fmt: skip
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, image_text=True, **kw)


def test_ocr_needs_rapidocr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else found(name, *a))
    src = _folder(tmp_path / "docs", {"a.pdf": b"%PDF"})
    with pytest.raises(InputError, match=r"RapidOCR, which is not installed: pip install 'embedrt\[ocr\]'"):
        plan_input(str(src), 100, text="text", id_column="path", keep_columns=(), documents=True, as_text=("pdf",), ocr=True)


def test_an_ocr_worker_says_each_page_it_read() -> None:
    import io
    import struct

    pytest.importorskip("rapidocr")
    from embedrt.dataset._pdf_worker import serve

    pdf = make_scanned_pdf(make_pdf(SCANNED, size=(300, 200)))
    replies = io.BytesIO()
    serve(io.BytesIO(struct.pack(">Q", len(pdf)) + pdf), replies, ocr=True)
    out = replies.getvalue()
    assert out[:16] == struct.pack(">QQ", 0, 0)  # a page, a page: the job's clock starts again after each
    size = struct.unpack(">Q", out[16:24])[0]
    assert json.loads(out[24:24 + size]) == ["\n\f\n".join("\n".join(p) for p in SCANNED), None] and len(out) == 24 + size


_TICKING = """import json, struct, sys, time
n = struct.unpack(">Q", sys.stdin.buffer.read(8))[0]; sys.stdin.buffer.read(n)
for pause in {pauses}:
    time.sleep(pause); sys.stdout.buffer.write(struct.pack(">Q", 0)); sys.stdout.buffer.flush()
body = json.dumps(["read", None]).encode(); sys.stdout.buffer.write(struct.pack(">Q", len(body)) + body)
sys.stdout.buffer.flush(); sys.stdin.buffer.read()"""


def test_an_ocr_worker_is_stopped_after_a_page_too_long_not_a_pdf_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset import _pdf

    monkeypatch.setattr(_pdf, "PDF_SECONDS", 1.0)
    for pauses, answer in (([0.3] * 6, ("read", None)),  # 1.8 s in all, each page within the second
                           ([0.3, 1.6], (None, "PDFium or OCR read it for over 1 s without a page done: stopped "
                                               "(a malformed PDF?)"))):  # fmt: skip
        monkeypatch.setattr(_pdf, "_START", _TICKING.format(pauses=pauses))
        pool = _pdf._Pool(1, ocr=True)
        try:
            assert pool.text(b"%PDF") == answer
        finally:
            pool.close()


def test_a_damaged_or_pathological_office_file_is_a_bad_row(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    import io
    import zipfile

    from embedrt.dataset._docx import docx_text

    lines = "".join(f"<w:p><w:r><w:t>paragraph {i} with some words</w:t></w:r></w:p>" for i in range(300))
    damaged = bytearray(make_docx(lines))
    info = zipfile.ZipFile(io.BytesIO(bytes(damaged))).getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(40, 60):  # bits flipped inside the compressed body
        damaged[start + k] ^= 0x55
    why = docx_text(bytes(damaged))[1] or ""
    assert why.startswith("word/document.xml does not unzip (") and why.endswith("): a damaged file?")
    deep = "<w:sdt><w:sdtContent>" * 3000 + "<w:p><w:r><w:t>deep</w:t></w:r></w:p>" + "</w:sdtContent></w:sdt>" * 3000
    src = _folder(tmp_path / "docs", {"damaged.docx": bytes(damaged), "deep.docx": make_docx(deep), "fine.docx": make_docx(lines)})
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, documents=True, docx_text=True, on_error="skip", progress=False)
    assert s.written == 1 and s.bad_rows == 2  # the job goes on
    bad = [json.loads(line) for line in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    assert bad[0]["id"] == "damaged.docx" and bad[0]["reason"] == why
    assert bad[1]["id"] == "deep.docx" and bad[1]["reason"].startswith("a Word document that its reader failed on "
                                                                       "(RecursionError: maximum recursion depth")  # fmt: skip


REPORT_ODT = (
    '<text:sequence-decls><text:sequence-decl text:name="Table"/></text:sequence-decls>'
    '<text:h text:outline-level="1">Annual <text:span>report</text:span></text:h>'
    '<text:p>Two  spaces,<text:s text:c="3"/>three more<text:tab/>a tab<text:line-break/>a new line'
    '<text:note text:note-class="footnote"><text:note-citation>1</text:note-citation><text:note-body><text:p>The footnote.'
    '</text:p></text:note-body></text:note><office:annotation><text:p>a reviewer</text:p></office:annotation>.</text:p>'
    '<text:tracked-changes><text:changed-region><text:deletion><text:p>deleted words</text:p></text:deletion>'
    '</text:changed-region></text:tracked-changes>'
    '<text:list><text:list-item><text:p>item one</text:p></text:list-item><text:list-item><text:p>item two</text:p>'
    '</text:list-item></text:list>'
    '<text:p>Before the frame <draw:frame><draw:text-box><text:p>framed</text:p></draw:text-box></draw:frame>after</text:p>'
    '<text:soft-page-break/>'
    '<table:table><table:table-column table:number-columns-repeated="2"/><table:table-header-rows><table:table-row>'
    '<table:table-cell><text:p>Q</text:p></table:table-cell><table:table-cell><text:p>A</text:p></table:table-cell>'
    '</table:table-row></table:table-header-rows><table:table-row><table:table-cell><text:p>a1</text:p></table:table-cell>'
    '<table:table-cell><text:p>b1</text:p><text:p>more</text:p></table:table-cell></table:table-row><text:soft-page-break/>'
    '<table:table-row><table:table-cell table:number-columns-spanned="2"><text:p>a2</text:p></table:table-cell>'
    '<table:covered-table-cell/></table:table-row></table:table>'
    '<text:p/><text:p>Last page, <text:soft-page-break/>then a fourth.</text:p>'
)  # fmt: skip
REPORT_ODT_TEXT = ("Annual report\n\nTwo  spaces,   three more\ta tab\na new line.\n\nitem one\n\nitem two\n\n"
                   "Before the frame \nframed\nafter\n\f\nQ\tA\na1\tb1 more\n\f\na2\t\n\nLast page,\n\f\nthen a fourth."
                   "\n\nThe footnote.")  # fmt: skip
SLIDES_ODP = (
    '<draw:page draw:name="p1"><draw:frame presentation:class="title"><draw:text-box><text:p>Quarterly review</text:p>'
    '</draw:text-box></draw:frame><draw:frame presentation:class="outline"><draw:text-box><text:list><text:list-item>'
    '<text:p>Revenue up</text:p></text:list-item><text:list-item><text:p>Costs down</text:p></text:list-item></text:list>'
    '</draw:text-box></draw:frame><draw:frame presentation:class="page-number"><draw:text-box><text:p>1</text:p>'
    '</draw:text-box></draw:frame><draw:g><draw:custom-shape><text:p>In a group</text:p></draw:custom-shape></draw:g>'
    '<presentation:notes><draw:page-thumbnail/><draw:frame presentation:class="notes"><draw:text-box><text:p>Mention the '
    'office.</text:p></draw:text-box></draw:frame></presentation:notes></draw:page>'
    '<draw:page draw:name="p2"/>'
    '<draw:page draw:name="p3"><draw:frame><table:table><table:table-row><table:table-cell><text:p>x</text:p>'
    '</table:table-cell><table:table-cell><text:p>y</text:p></table:table-cell></table:table-row></table:table></draw:frame>'
    '</draw:page>'
)  # fmt: skip


def test_odf_text_is_its_pages_and_slides() -> None:
    from embedrt.dataset._odf import odf_text

    assert odf_text(make_odf(REPORT_ODT)) == (REPORT_ODT_TEXT, None)  # LibreOffice's last layout: four pages
    assert odf_text(make_odf(SLIDES_ODP, presentation=True)) == (
        "Quarterly review\n\nRevenue up\nCosts down\n\nIn a group\n\nMention the office.\n\f\n\n\f\nx\ty", None)
    assert odf_text(make_odf("")) == ("", None)
    assert odf_text(make_odf(REPORT_ODT, encrypted=True))[1] == "a password-protected document: save it without a password first"
    assert odf_text(b"\xd0\xcf\x11\xe0 an OLE file")[1] == (
        "not an OpenDocument file (not a zip): an older StarOffice or .doc file? save it as .odt")
    assert odf_text(make_docx("<w:p/>"))[1] == "a zip without content.xml: not an OpenDocument file"
    assert [_takes("odf", n) for n in ("a.odt", "b.ODP", "c.odt.gz", "d.ods", "e.odg")] == [True] * 4 + [False]


SHEETS_ODS = (  # as LibreOffice writes a sheet: shown values, repeated rows and cells, a sheet's last empty rows
    '<table:table table:name="Sales"><table:table-column table:number-columns-repeated="3"/><table:table-header-rows>'
    '<table:table-row><table:table-cell office:value-type="string"><text:p>Region</text:p></table:table-cell>'
    '<table:table-cell office:value-type="string"><text:p>Amount</text:p></table:table-cell></table:table-row>'
    '</table:table-header-rows><table:table-row><table:table-cell office:value-type="string"><text:p>North '
    '<text:span>side</text:span></text:p><office:annotation><text:p>a comment</text:p></office:annotation>'
    '</table:table-cell><table:table-cell office:value-type="currency" office:value="1234.5"><text:p>$1,234.50</text:p>'
    '</table:table-cell><table:table-cell office:value-type="date" office:date-value="2024-01-15T13:30:00"><text:p>'
    '01/15/24</text:p></table:table-cell></table:table-row><table:table-row table:number-rows-repeated="2">'
    '<table:table-cell table:number-columns-repeated="2" office:value-type="float" office:value="1"><text:p>1</text:p>'
    '</table:table-cell></table:table-row><table:table-row table:number-rows-repeated="3"><table:table-cell '
    'table:number-columns-repeated="1024"/></table:table-row><table:table-row><table:table-cell table:number-columns-'
    'repeated="40"/><table:table-cell office:value-type="time" office:time-value="PT08H05M00S"><text:p>08:05</text:p>'
    '</table:table-cell><table:covered-table-cell/><table:table-cell office:value-type="boolean" office:boolean-value='
    '"true"><text:p>TRUE</text:p></table:table-cell></table:table-row><table:table-row table:number-rows-repeated='
    '"1048570"><table:table-cell table:number-columns-repeated="1024"/></table:table-row></table:table>'
    '<table:table table:name="Notes"><table:table-row><table:table-cell/></table:table-row></table:table>'
)  # fmt: skip


def test_ods_text_is_its_sheets_rows() -> None:
    from embedrt.dataset._odf import odf_text

    assert odf_text(make_odf(SHEETS_ODS, spreadsheet=True)) == (
        "Sales\nRegion\tAmount\nNorth side\t$1,234.50\t2024-01-15 13:30:00\n1\t1\n1\t1\n\n\t08:05:00\t\tTRUE\n\f\nNotes",
        None)  # fmt: skip
    empty = make_odf('<table:table table:name="S"><table:table-row><table:table-cell/></table:table-row></table:table>',
                     spreadsheet=True)  # fmt: skip
    assert odf_text(empty)[1] == "no value in any cell (charts or pictures only?)"
    assert "content.xml is not XML" in str(odf_text(make_odf("<table:table>", spreadsheet=True))[1])


def test_odf_documents_are_embedded_and_paged(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _folder(tmp_path / "docs", {"report.odt": make_odf(REPORT_ODT), "deck.odp": make_odf(SLIDES_ODP, presentation=True)})
    assert main(["embed-dataset", str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--documents", "--odf-text",
                 "--keep-columns", "text", "--chunk-tokens", "12", "--no-progress"]) == 0  # fmt: skip
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert {r["id"] for r in rows} == {"deck.odp", "report.odt"}
    for r in rows:  # the page (slide) a window begins on
        assert r["chunk_page"] == r["text"].count("\f", 0, r["chunk_start"]) + 1
    assert {r["chunk_page"] for r in rows if r["id"] == "report.odt"} == {1, 2, 3, 4}
    with pytest.raises(BadRowError, match=r"an OpenDocument file \(invalid UTF-8 at byte \d+\): pass --odf-text"):
        embed_dataset(src, tmp_path / "y", tiny_bert_bundle, documents=True, progress=False)
