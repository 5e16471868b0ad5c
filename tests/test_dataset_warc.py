"""WARC files, a row per page: crawled responses (HTML and plain text of status 200, de-chunked,
decompressed, decoded as a browser would) and Common Crawl's WET files (a page's text a record); the
records that are no pages passed over alike by the planning scan and the readers."""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path
from typing import Any

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import InputError, embed_dataset  # noqa: E402
from embedrt.dataset._html import decoded, encoding  # noqa: E402
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
    kw: dict[str, Any] = {"id_column": "url", "keep_columns": "text,date,language,digest,record_id,refers_to,content_type",
                          "rows_per_part": 5, "progress": False}  # fmt: skip
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (s.rows, s.parts, s.bad_rows) == (23, 5, 0)
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == [f"https://example.org/{i}" for i in range(23)]
    assert table.column("text").to_pylist() == [t for _, t in pages]  # page 7 whole: its own WARC/1.0 line is text
    assert table.slice(1, 1).to_pylist()[0] | {"embedding": None} == {
        "id": "https://example.org/1", "text": pages[1][1], "date": "2024-02-21T10:00:00Z", "language": "eng,fra",
        "digest": "sha1:D1", "record_id": "<urn:uuid:00000001>", "refers_to": "<urn:uuid:r0000001>",
        "content_type": "text/plain", "embedding": None}
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (again.parts_resumed, again.rows_embedded) == (5, 0)
    cdc = embed_dataset(src, tmp_path / "cdc", tiny_bert_bundle, content_defined_parts=True, **kw)
    assert cdc.rows == 23 and pq.read_table(tmp_path / "cdc").column("text").to_pylist() == [t for _, t in pages]


def test_a_record_cut_short_is_a_bad_row(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    cut = _record([("WARC-Type", "conversion"), ("WARC-Target-URI", "https://example.org/cut")], b"only this", 900)
    src = tmp_path / "part.warc.wet"
    unsized = b"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: https://example.org/n\r\n\r\nno size\r\n\r\n"
    src.write_bytes(WARCINFO + unsized + _page(0)[0] + cut[:-4])  # a download that stopped inside the last record
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="url", on_error="null", progress=False)
    assert (s.rows, s.bad_rows) == (3, 2)
    assert pq.read_table(tmp_path / "out").column("embedding").is_null().to_pylist() == [True, False, True]
    assert [b["id"] for b in s.bad_examples] == ["https://example.org/n", "https://example.org/cut"]
    assert s.bad_examples[0]["reason"] == "a WARC record without a Content-Length (its field reads b'')"
    assert s.bad_examples[1]["reason"].startswith("a WARC record cut short: 9 bytes of the 900 its Content-Length says")
    assert record_row(b"WARC/1.0\r\nWARC-Type: conversion\r\n")[1] == (
        "a WARC record without the blank line that ends its fields")


def test_warc_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    kw: dict[str, Any] = {"progress": False}
    not_warc = tmp_path / "a.wet"
    not_warc.write_text("hello\n")
    with pytest.raises(InputError, match=r"a.wet is not a WARC file: it begins with b'hello\\n'"):
        embed_dataset(not_warc, tmp_path / "x", tiny_bert_bundle, **kw)
    with pytest.raises(InputError, match=r"html_text \(--html-text\) reads HTML pages as their visible text: .* a WARC "
                                         r"file's pages \(HTML too\) are read as their text already"):  # fmt: skip
        embed_dataset(not_warc, tmp_path / "x", tiny_bert_bundle, html_text=True, **kw)
    info_only = tmp_path / "b.wet"
    info_only.write_bytes(WARCINFO)
    with pytest.raises(InputError, match=r"b.wet has no page: no WARC record of a page's text \(WARC-Type conversion"):
        embed_dataset(info_only, tmp_path / "x", tiny_bert_bundle, **kw)


def _response(url: str, http: bytes, kind: str = "response", content_type: str = "application/http; msgtype=response",
              digest: str = "sha1:P") -> bytes:  # fmt: skip
    return _record([("WARC-Type", kind), ("WARC-Target-URI", url), ("WARC-Date", "2025-03-01T12:00:00Z"),
                    ("WARC-Record-ID", f"<urn:uuid:{url[-6:]}>"), ("Content-Type", content_type),
                    ("WARC-Payload-Digest", digest)], http)  # fmt: skip


def _http(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\n{''.join(h + chr(13) + chr(10) for h in headers)}\r\n".encode() + body


def _chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)) + b"0\r\n\r\n"


# a page about WARC files, its lines ended CRLF as a record's are: a record of its own among them
ABOUT_WARC = b"A record begins so:\r\nWARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: 4\r\n\r\nfake\r\n\r\nand so on.\r\n"


def _crawl() -> tuple[list[bytes], list[tuple[str, str, str]]]:
    """A crawl's records (wget's, Browsertrix's, Common Crawl's ways among them) and its rows: (url,
    content type, text)."""
    page = b"<html><head><title>Rivers</title><style>p{}</style></head><body><p>The Rhine flows north.</p></body></html>"
    french = "<html><head><meta charset=\"windows-1252\"><title>Caf\u00e9</title></head><p>\u201cD\u00e9j\u00e0 vu\u201d</p>"
    japanese = "<p>\u65e5\u672c\u8a9e\u306e\u30da\u30fc\u30b8</p>"
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    video = random.Random(3).randbytes(200_000)  # binary, line breaks among its bytes, past a record's first 64 KB,
    # inside a part (between two of its rows)
    records = [
        _record([("WARC-Type", "warcinfo"), ("Content-Type", "application/warc-fields")], b"software: wget/1.21\r\n"),
        _response("http://a.example/000001", b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", "request",
                  "application/http; msgtype=request"),
        _response("http://a.example/000001", _http(page, "Content-Type: text/html")),
        _response("http://a.example/000002", _http(_chunked(gz.compress(page) + gz.flush()), "Content-Type: text/html",
                                                   "Transfer-Encoding: chunked", "Content-Encoding: gzip")),
        _response("http://a.example/000003", _http(b"", "Location: /", status="302 Found")),
        _response("http://a.example/000004", _http(b"<p>gone</p>", "Content-Type: text/html", status="404 Not Found")),
        _response("http://a.example/000006", _http(french.encode("cp1252"), "Content-Type: text/html")),
        _response("http://a.example/000005", _http(video, "Content-Type: video/mp4")),
        _response("http://a.example/000007", _http(japanese.encode("shift_jis"), "Content-Type: text/html; charset=Shift_JIS")),
        _response("http://a.example/000008", _http(b"plain <text>\nWARC/1.0\nstill it", "Content-Type: text/plain")),
        _response("http://a.example/00000a", _http(ABOUT_WARC, "Content-Type: text/plain")),  # lines of a record's own
        _response("http://a.example/00000b.warc", _http(b"%d\r\n" * 20_000 % (*range(20_000),) + _record(
            [("WARC-Type", "conversion")], b"not a page of the crawl"), "Content-Type: application/warc")),  # an archived
        # WARC file: a record of its own past its first 64 KB
        _record([("WARC-Type", "response"), ("WARC-Target-URI", "http://c.example/00000c"),
                 ("Content-Type", "application/http; msgtype=response"), ("WARC-Identified-Payload-Type", "text/html")],
                _http(b"<p>typed by the crawler</p>")),  # no Content-Type of its own: Common Crawl's guess
        _response("http://a.example/000002", b"HTTP/1.1 200 OK\r\n\r\n", "revisit"),  # archived before: no body
        _response("<https://b.example/000009>", page, "resource", "text/html"),  # WARC 1.0's bracketed URI
        _response("metadata://gnu.org/wget.log", b"wget log\n", "resource", "text/plain"),
        _response("http://a.example/robots.txt", _http(b"User-agent: *\nDisallow: /x\n", "Content-Type: text/plain")),
        _response("dns:a.example", b"20250301 a.example. 60 IN A 1.2.3.4\n", "response", "text/dns"),
        _response("http://a.example/000010", _http(b"\x1f\x8bnot gzip at all", "Content-Type: text/html",
                                                   "Content-Encoding: gzip")),
    ]  # fmt: skip
    rows = [("http://a.example/000001", "text/html", "Rivers\n\nThe Rhine flows north."),
            ("http://a.example/000002", "text/html", "Rivers\n\nThe Rhine flows north."),
            ("http://a.example/000006", "text/html", "Caf\u00e9\n\n\u201cD\u00e9j\u00e0 vu\u201d"),
            ("http://a.example/000007", "text/html", "\u65e5\u672c\u8a9e\u306e\u30da\u30fc\u30b8"),
            ("http://a.example/000008", "text/plain", "plain <text>\nWARC/1.0\nstill it"),
            ("http://a.example/00000a", "text/plain", ABOUT_WARC.decode()),
            ("http://c.example/00000c", "text/html", "typed by the crawler"),
            ("https://b.example/000009", "text/html", "Rivers\n\nThe Rhine flows north."),
            ("http://a.example/000010", "text/html", "")]  # fmt: skip
    return records, rows


def test_a_crawl_is_a_row_per_page(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    records, rows = _crawl()
    src = tmp_path / "crawl.warc.gz"
    src.write_bytes(b"".join(gzip.compress(r) for r in records))
    kw: dict[str, Any] = {"id_column": "url", "keep_columns": "text,content_type,digest,date,record_id",
                          "rows_per_part": 2, "on_error": "null", "progress": False}  # fmt: skip
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (s.rows, s.parts, s.bad_rows) == (9, 5, 1)
    table = pq.read_table(tmp_path / "out")
    got = list(zip(table.column("id").to_pylist(), table.column("content_type").to_pylist(),
                   table.column("text").to_pylist(), strict=True))  # fmt: skip
    assert got[:-1] == rows[:-1]
    assert got[-1][:2] == rows[-1][:2] and got[-1][2] is None  # the body that does not decompress: a bad row
    assert s.bad_examples[0]["id"] == "http://a.example/000010"
    assert s.bad_examples[0]["reason"].startswith("an HTTP response whose body cannot be read: its gzip content does not "
                                                  "decompress")  # fmt: skip
    assert table.slice(0, 1).to_pylist()[0] | {"embedding": None, "text": None} == {
        "id": "http://a.example/000001", "content_type": "text/html", "digest": "sha1:P", "date": "2025-03-01T12:00:00Z",
        "record_id": "<urn:uuid:000001>", "text": None, "embedding": None}  # fmt: skip
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert (again.parts_resumed, again.rows_embedded) == (5, 0)
    cdc = embed_dataset(src, tmp_path / "cdc", tiny_bert_bundle, content_defined_parts=True, **kw)
    assert cdc.rows == 9 and pq.read_table(tmp_path / "cdc").column("id").to_pylist() == [u for u, _, _ in rows]


def test_a_response_body_decoded_as_stored() -> None:
    def row(*headers: str, body: bytes) -> tuple[Any, str | None]:
        values, bad = record_row(_response("http://x.example/000001", _http(body, "Content-Type: text/html", *headers)))
        return values.get("text"), bad

    page = b"<p>hello <b>world</b></p>"
    assert row("Content-Encoding: deflate", body=zlib.compress(page)) == ("hello world", None)
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert row("Content-Encoding: deflate", body=raw.compress(page) + raw.flush()) == ("hello world", None)
    assert row("Content-Encoding: gzip", body=page) == ("hello world", None)  # a crawler stored it decoded
    long = b"".join(b"<p>line %d</p>" % i for i in range(5000))
    cut = gzip.compress(long)
    text, bad = row("Content-Encoding: gzip", body=cut[: len(cut) // 2])  # a crawler's size limit cut it
    assert bad is None and text.startswith("line 0\n\nline 1\n\n") and 1000 < text.count("line") < 5000
    assert row("Transfer-Encoding: chunked", body=page) == ("hello world", None)  # not chunked after all
    assert row("Transfer-Encoding: chunked", body=_chunked(page)[:24]) == ("hello wo", None)  # chunks cut short
    assert row("Content-Encoding: compress", body=b"\x1f\x9d...") == (None, (
        "an HTTP response whose body cannot be read: Content-Encoding 'compress' (read are gzip, deflate, br and zstd)"))
    brotli = pytest.importorskip("brotli")
    assert row("Content-Encoding: br", body=brotli.compress(page)) == ("hello world", None)
    zstandard = pytest.importorskip("zstandard")
    assert row("Content-Encoding: zstd", body=zstandard.compress(page)) == ("hello world", None)


def test_a_page_decoded_as_a_browser_reads_it() -> None:
    text = "Caf\u00e9 \u201cquoted\u201d \u20ac5"
    assert decoded(text.encode("cp1252")) == text  # not UTF-8, nothing declared: windows-1252
    assert decoded(text.encode()) == text
    assert decoded(text.encode("cp1252"), "ISO-8859-1") == text  # read as browsers read Latin-1: windows-1252
    assert decoded(b"\xef\xbb\xbf" + text.encode(), "ISO-8859-1") == text  # the byte order mark wins
    assert decoded("\ufeff\u00e9t\u00e9".encode("utf-16-le")) == "\u00e9t\u00e9"
    page = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=KOI8-R"><p>\u041c\u0438\u0440'
    assert decoded(page.encode("koi8-r")) == page
    assert decoded('<meta charset="gb2312">\u9f98'.encode("gb18030")) == '<meta charset="gb2312">\u9f98'  # GB2312's superset
    assert decoded(b"<p>\xe9", "no-such-charset") == "<p>\u00e9"
    assert decoded(b"<meta charset=base64><p>x") == "<meta charset=base64><p>x"  # not a text encoding: ignored
    assert decoded("<p>\u00e9".encode("cp1252"), html=False) == "<p>\u00e9"
    assert [encoding(x) for x in ("UTF8", "us-ascii", "Shift_JIS", "x-sjis", "EUC-KR", "utf-16", "nonsense")] == [
        "utf-8", "cp1252", "cp932", "cp932", "cp949", "utf-8", None]


def test_a_record_that_is_no_page_is_not_held(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    import tracemalloc

    page = _http(b"<p>a page</p>", "Content-Type: text/html")
    noise = random.Random(5).randbytes(64 << 20)  # a record of a page among its bytes, past the scan's first block
    video = _http(noise[: 10 << 20] + b"\r\n" + _page(1)[0] + noise[10 << 20 :], "Content-Type: video/mp4")
    src = tmp_path / "videos.warc"
    src.write_bytes(_response("http://a.example/000001", page) + _response("http://a.example/000002", video)
                    + _response("http://a.example/000003", page))  # fmt: skip
    del noise, video
    tracemalloc.start()
    try:
        s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="url", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert s.rows == 2 and pq.read_table(tmp_path / "out").column("id").to_pylist() == [
        "http://a.example/000001", "http://a.example/000003"]
    assert peak < 48 << 20, f"{peak / 2**20:.0f} MB held while reading a 64 MB record that is no row"
