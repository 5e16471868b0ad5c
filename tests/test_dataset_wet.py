"""Common Crawl's WET files: a row per page's text (WARC conversion records), the crawl's warcinfo
record passed over alike by the planning scan and the readers."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import InputError, embed_dataset  # noqa: E402
from embedrt.dataset._warc import record_row  # noqa: E402


def _record(fields: list[tuple[str, str]], content: bytes, length: int | None = None) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in fields)
    size = len(content) if length is None else length
    return f"WARC/1.0\r\n{head}Content-Length: {size}\r\n\r\n".encode() + content + b"\r\n\r\n"


def _page(i: int) -> tuple[bytes, str]:
    """Page ``i``'s conversion record, and its text; page 7's text holds a line 'WARC/1.0' of its own."""
    text = f"Page {i} title\nIt is about rivers, {i % 4} of them.\n" + ("WARC/1.0\nstill page 7.\n" if i == 7 else "")
    fields = [("WARC-Type", "conversion"), ("WARC-Target-URI", f"https://example.org/{i}"),
              ("WARC-Date", f"2024-02-2{i % 9}T10:00:00Z"), ("WARC-Record-ID", f"<urn:uuid:{i:08d}>"),
              ("WARC-Refers-To", f"<urn:uuid:r{i:07d}>"), ("WARC-Block-Digest", f"sha1:D{i}"),
              ("WARC-Identified-Content-Language", "eng,fra" if i % 2 else "deu"), ("Content-Type", "text/plain")]
    return _record(fields, text.encode()), text


WARCINFO = _record([("WARC-Type", "warcinfo"), ("WARC-Date", "2024-02-21T00:00:00Z"),
                    ("WARC-Filename", "CC-MAIN-x.warc.wet.gz"), ("Content-Type", "application/warc-fields")],
                   b"Software-Info: ia-web-commons\r\nExtracted-Date: Wed, 21 Feb 2024\r\n")  # fmt: skip


def test_a_wet_file_is_a_row_per_page(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    pages = [_page(i) for i in range(23)]
    src = tmp_path / "CC-MAIN-20240221-00000.warc.wet.gz"
    records = [WARCINFO, *(r for r, _ in pages[:12]), WARCINFO, *(r for r, _ in pages[12:])]  # two files joined (cat)
    src.write_bytes(b"".join(gzip.compress(r) for r in records))  # a gzip member a record
    kw: dict[str, Any] = {"id_column": "url", "keep_columns": "text,date,language,digest,record_id,refers_to",
                          "rows_per_part": 5, "progress": False}  # fmt: skip
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (s.rows, s.parts, s.bad_rows) == (23, 5, 0)
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == [f"https://example.org/{i}" for i in range(23)]
    assert table.column("text").to_pylist() == [t for _, t in pages]  # page 7 whole: its own WARC/1.0 line is text
    assert table.slice(1, 1).to_pylist()[0] | {"embedding": None} == {
        "id": "https://example.org/1", "text": pages[1][1], "date": "2024-02-21T10:00:00Z", "language": "eng,fra",
        "digest": "sha1:D1", "record_id": "<urn:uuid:00000001>", "refers_to": "<urn:uuid:r0000001>", "embedding": None}
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (again.parts_resumed, again.rows_embedded) == (5, 0)
    cdc = embed_dataset(src, tmp_path / "cdc", tiny_bert_bundle, content_defined_parts=True, **kw)
    assert cdc.rows == 23 and pq.read_table(tmp_path / "cdc").column("text").to_pylist() == [t for _, t in pages]


def test_a_record_cut_short_is_a_bad_row(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    cut = _record([("WARC-Type", "conversion"), ("WARC-Target-URI", "https://example.org/cut")], b"only this", 900)
    src = tmp_path / "part.warc.wet"
    src.write_bytes(WARCINFO + _page(0)[0] + cut[:-4])  # a download that stopped inside the last record
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="url", on_error="null", progress=False)
    assert (s.rows, s.bad_rows) == (2, 1)
    assert s.bad_examples[0]["id"] == "https://example.org/cut"
    assert s.bad_examples[0]["reason"].startswith("a WARC record cut short: 9 bytes of the 900 its Content-Length says")
    assert record_row(b"WARC/1.0\r\nWARC-Type: conversion\r\n")[1] == (
        "a WARC record without the blank line that ends its fields")


def test_wet_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    kw: dict[str, Any] = {"progress": False}
    not_warc = tmp_path / "a.wet"
    not_warc.write_text("hello\n")
    with pytest.raises(InputError, match=r"a.wet is not a WARC file: it begins with b'hello\\n'"):
        embed_dataset(not_warc, tmp_path / "x", tiny_bert_bundle, **kw)
    info_only = tmp_path / "b.wet"
    info_only.write_bytes(WARCINFO)
    with pytest.raises(InputError, match="b.wet has no page's text: no WARC record of WARC-Type conversion"):
        embed_dataset(info_only, tmp_path / "x", tiny_bert_bundle, **kw)
