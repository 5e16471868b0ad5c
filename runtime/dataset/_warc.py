"""WARC files (ISO 28500): web archives, a row per page.

A WARC file is a sequence of records, each beginning with a line ``WARC/1.0`` (or ``1.1``), then
its named fields, a blank line, and ``Content-Length`` bytes of content; two line breaks end it.
Crawlers write them (Common Crawl, Heritrix, wget ``--warc-file``, Browsertrix, ArchiveBox), most
often gzip-compressed a record a member (``.warc.gz``). Rows are the records that hold a page:

- ``response`` records of a crawled page: the HTTP response (status line, headers, body) of status
  200 whose ``Content-Type`` is HTML (``text/html``, ``application/xhtml+xml``) or plain text; the
  body is de-chunked and decompressed (``Transfer-Encoding: chunked``; ``Content-Encoding`` gzip,
  deflate, br, zstd), decoded in the encoding a browser would read it in (``_html.decoded``), and an
  HTML page is read as its visible text (``_html.html_text``);
- ``resource`` records of an ``http(s)`` page of those types (its content, with no HTTP around it);
- ``conversion`` records: the text a crawler extracted from a page, as in Common Crawl's WET files
  (``.warc.wet.gz``), read as they are.

Records of other types (``warcinfo``, ``request``, ``metadata``, ``revisit``: a capture of content
archived before, which has no body of its own), redirects and errors, responses of other types
(images, scripts, PDFs) and sites' ``robots.txt`` (a crawler's, not a page) are not rows. Whether a record is a row is decided by its first ``HEAD``
bytes (its fields and the HTTP response's headers), alike in the planning scan and the readers.

A row's columns (``COLUMNS``): ``text``, ``url`` (``WARC-Target-URI``), ``date`` (``WARC-Date``, the
capture's), ``record_id`` (``WARC-Record-ID``), ``content_type`` (the page's media type, without its
parameters), ``language`` (``WARC-Identified-Content-Language``: Common Crawl's guess in its WET
files, ISO 639-3 codes a comma apart, the first the page's main one), ``digest`` (the content's
digest, ``WARC-Payload-Digest`` or else ``WARC-Block-Digest``: the same page anywhere in the crawl
has the same one) and ``refers_to`` (``WARC-Refers-To``: a WET record's response record).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

from . import _html

SUFFIXES = (".warc", ".wet")  # .warc.gz; Common Crawl's text files are .warc.wet.gz
COLUMNS = ("text", "url", "date", "record_id", "content_type", "language", "digest", "refers_to")
_FIELDS = {"url": b"warc-target-uri", "date": b"warc-date", "record_id": b"warc-record-id",
           "language": b"warc-identified-content-language", "refers_to": b"warc-refers-to"}  # fmt: skip
HEAD = 1 << 16  # a record is a row or not by its first so many bytes
# a record's first line: its version, ended CRLF as the standard writes it (a text's own lines end LF)
OPENING = re.compile(rb"^WARC/1\.[01]\r$", re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LENGTH = re.compile(rb"[ \t]*([0-9]+)[ \t]*\r?\n")  # a Content-Length field's value
_STATUS = re.compile(rb"HTTP/[0-9.]+[ \t]+([0-9]{3})\b")
_ROBOTS = re.compile(rb"<?https?://[^/?#]+/robots\.txt(?:[?#>]|$)", re.IGNORECASE)  # a site's robots.txt
# media types read (a page's text), and whether as HTML
TEXT_TYPES = {"text/html": True, "application/xhtml+xml": True, "text/plain": False}


def opens(line: bytes) -> bool:
    """Whether a line (with its line break) is the version line that begins a WARC record."""
    return line.startswith(b"WARC/1.") and OPENING.match(line) is not None


def extent(head: bytes | bytearray) -> int | None:
    """A record's size from its version line to its content's end (the line breaks that end it left
    out), by its ``Content-Length``, or None where ``head`` (the record's first bytes) holds no whole
    header or no length: a line of its content that reads as a version line (a page about WARC
    files, an archived WARC file) is not the next record's."""
    crlf = head.find(b"\n\r\n")  # the first blank line (``_HEADER_END``'s), found the fast way
    lf = head.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(head))
    if lf < 0 and crlf < 0:
        return None
    end = lf + 2 if lf >= 0 else crlf + 3
    header = bytes(head[:end]).lower()
    at = header.find(b"\ncontent-length:")
    length = _LENGTH.match(header, at + 16) if at >= 0 else None
    return end + int(length.group(1)) if length else None


def _fields(head: bytes) -> dict[bytes, bytes]:
    """Named fields (names lowercased; the first of a name kept) of a header's lines, its first line
    (the WARC version, the HTTP status) left out."""
    fields: dict[bytes, bytes] = {}
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            fields.setdefault(name.strip().lower(), value.strip())
    return fields


def _split(block: bytes, end: int | None = None) -> tuple[bytes, bytes] | None:
    """(header, content) of a WARC record or an HTTP message; None where no blank line ends the header
    (before ``end``)."""
    found = _HEADER_END.search(block, 0, len(block) if end is None else end)
    return None if found is None else (block[: found.start()], block[found.end() :])


def _media(value: bytes | None) -> tuple[str, str | None]:
    """(media type, lowercased, without parameters; its ``charset`` parameter or None) of a
    ``Content-Type``."""
    if not value:
        return "", None
    kind, _, params = value.decode("latin-1").partition(";")
    charset = re.search(r"charset\s*=\s*[\"']?([^\"';\s]+)", params, re.IGNORECASE)
    return kind.strip().lower(), charset.group(1) if charset else None


def _page(fields: dict[bytes, bytes], block: bytes, end: int | None = None) -> tuple[str, bytes, dict[bytes, bytes], bytes] | None:
    """(what the record is: "text" a WET text, "response" or "resource" a page's; its page's bytes;
    the HTTP response's headers; the page's ``Content-Type``) for a record that is a row by its fields
    and its content ``block`` (its HTTP head found before ``end``), else None."""
    kind = fields.get(b"warc-type", b"").lower()
    if kind == b"conversion":
        return "text", block, {}, fields.get(b"content-type", b"")
    if _ROBOTS.match(fields.get(b"warc-target-uri", b"")):
        return None  # a crawler's request for a site's rules, not one of its pages
    if kind == b"resource":
        url = fields.get(b"warc-target-uri", b"").strip(b"<>").lower()
        declared = fields.get(b"content-type", b"")
        ok = url.startswith((b"http:", b"https:")) and _media(declared)[0] in TEXT_TYPES
        return ("resource", block, {}, declared) if ok else None
    if kind != b"response" or not fields.get(b"content-type", b"").lower().startswith(b"application/http"):
        return None  # a dns: lookup's response, say
    http = _split(block, end)
    status = _STATUS.match(block)
    if http is None or status is None or status.group(1) != b"200":
        return None
    headers = _fields(http[0])
    declared = headers.get(b"content-type") or fields.get(b"warc-identified-payload-type", b"")
    return ("response", http[1], headers, declared) if _media(declared)[0] in TEXT_TYPES else None


def is_row(record: bytes) -> bool:
    """Whether a WARC record is a row (a page's text, or a page), by its first ``HEAD`` bytes."""
    head = record[:HEAD]
    split = _split(head)
    return split is not None and _page(_fields(split[0]), split[1], HEAD) is not None


def record_row(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """One WARC record (``raw``: from its version line up to the next record's) that ``is_row`` takes,
    as a row of ``COLUMNS``, or why it is not one (then the fields read before what made it so)."""
    split = _split(raw)
    if split is None:
        return {}, "a WARC record without the blank line that ends its fields"
    fields = _fields(split[0])
    row: dict[str, Any] = {c: fields[f].decode("utf-8", "replace") if f in fields else None for c, f in _FIELDS.items()}
    if row["url"] is not None:
        row["url"] = row["url"].strip("<>")  # WARC 1.0's grammar writes it in angle brackets, and some crawlers do
    digest = fields.get(b"warc-payload-digest") or fields.get(b"warc-block-digest")
    row["digest"] = digest.decode("utf-8", "replace") if digest else None
    length = fields.get(b"content-length", b"")
    if not length.isdigit():
        return row, f"a WARC record without a Content-Length (its field reads {length[:20]!r})"
    content = split[1][: int(length)]
    if len(content) < int(length):
        return row, (f"a WARC record cut short: {len(content)} bytes of the {int(length)} its Content-Length says "
                     "(the file ends there)")  # fmt: skip
    page = _page(fields, content, HEAD)
    if page is None:  # the scan took it by its first bytes: only a record changed since is not a page now
        return row, "a WARC record that is not a page's text"
    what, body, headers, declared = page
    media, charset = _media(declared)
    row["content_type"] = media or None
    if what == "text":
        row["text"] = body.decode("utf-8", "replace")
        return row, None
    try:
        body = _payload(body, headers)
    except ValueError as e:
        return row, f"an HTTP response whose body cannot be read: {e}"
    html = TEXT_TYPES[media]
    text = _html.decoded(body, charset, html)
    row["text"] = _html.html_text(text) if html else text
    return row, None


def _payload(body: bytes, headers: dict[bytes, bytes]) -> bytes:
    """An HTTP response's body as its page: de-chunked and decompressed as its headers say. A crawler
    that stored the body decoded but kept the headers is read as it stored it."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = _dechunked(body)
    for coding in reversed(headers.get(b"content-encoding", b"").lower().split(b",")):
        body = _decompressed(body, coding.strip())
    return body


def _dechunked(body: bytes) -> bytes:
    """A chunked body's chunks joined: the body as it is where it does not begin as chunks do; the
    chunks read up to where a body cut short (a crawler's limit on a page's size) ends."""
    pieces: list[bytes] = []
    at = 0
    while True:
        eol = body.find(b"\n", at)
        try:
            size = int(body[at:eol].split(b";")[0].strip(), 16) if eol >= 0 else -1
        except ValueError:
            size = -1
        if size < 0:
            return b"".join(pieces) if pieces else body
        if size == 0:
            return b"".join(pieces)
        pieces.append(body[eol + 1 : eol + 1 + size])
        at = eol + 1 + size
        at += 2 if body.startswith(b"\r\n", at) else 1


_GZIP, _ZLIB = b"\x1f\x8b", 0x78  # how a gzip stream and (mostly) a zlib stream begin


def _decompressed(body: bytes, coding: bytes) -> bytes:
    """``body`` decompressed from ``coding`` (gzip, deflate, br, zstd; none: as it is), as far as it
    goes where the stream is cut short. A body that is not compressed as said but begins as a page
    does (``<``) is taken as stored decoded."""
    if coding in (b"", b"identity") or (coding in (b"gzip", b"x-gzip") and not body.startswith(_GZIP)):
        return body
    decompress = _decompressor(coding)
    try:
        return decompress(body)
    except Exception as e:  # zlib's, brotli's and zstandard's own errors
        if body.lstrip()[:1] == b"<":
            return body
        raise ValueError(f"its {coding.decode('latin-1')} content does not decompress ({e})") from None


def _decompressor(coding: bytes) -> Callable[[bytes], bytes]:
    if coding in (b"gzip", b"x-gzip"):
        return lambda b: zlib.decompressobj(31).decompress(b)
    if coding == b"deflate":  # zlib-wrapped, as the standard says, or raw deflate, as some servers send
        return lambda b: zlib.decompressobj(15 if b[:1] and b[0] == _ZLIB else -15).decompress(b)
    if coding == b"br":
        try:
            import brotli
        except ImportError:
            raise ValueError('its content is brotli-compressed (Content-Encoding: br), read with brotli: '
                             'pip install "embedrt[dataset]"') from None  # fmt: skip
        return lambda b: bytes(brotli.Decompressor().process(b))
    if coding == b"zstd":
        import zstandard

        return lambda b: bytes(zstandard.ZstdDecompressor().decompressobj().decompress(b))
    raise ValueError(f"Content-Encoding {coding.decode('latin-1')!r} (read are gzip, deflate, br and zstd)")
