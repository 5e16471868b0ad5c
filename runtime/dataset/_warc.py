"""Common Crawl's WET files (``.warc.wet.gz``): the plain text of crawled pages, one page a row.

A WET file is a WARC file (ISO 28500) of ``conversion`` records, each the text a crawler extracted
from one page, after a ``warcinfo`` record describing the crawl. A record begins with a line
``WARC/1.0`` (or ``1.1``), then its named fields, a blank line, and ``Content-Length`` bytes of
content; two line breaks end it. Common Crawl publishes about 90,000 such files a crawl, each of
about 20,000 pages, gzip-compressed a record a member.

A row's columns (``COLUMNS``): ``text`` (the record's content), ``url`` (``WARC-Target-URI``),
``date`` (``WARC-Date``, the capture's), ``record_id`` (``WARC-Record-ID``), ``refers_to`` (the WARC
response record it was extracted from), ``language`` (``WARC-Identified-Content-Language``: Common
Crawl's guess, ISO 639-3 codes a comma apart, the first the page's main one) and ``digest``
(``WARC-Block-Digest``, the content's SHA-1: the same text anywhere in the crawl has the same one).
Records of other types (the ``warcinfo``) are not rows.
"""

from __future__ import annotations

import re
from typing import Any

SUFFIXES = (".wet",)  # Common Crawl's are .warc.wet.gz
COLUMNS = ("text", "url", "date", "record_id", "refers_to", "language", "digest")
_FIELDS = {"url": b"warc-target-uri", "date": b"warc-date", "record_id": b"warc-record-id",
           "refers_to": b"warc-refers-to", "language": b"warc-identified-content-language",
           "digest": b"warc-block-digest"}  # fmt: skip
# a record's first line: its version, ended CRLF as the standard writes it (a text's own lines end LF)
OPENING = re.compile(rb"^WARC/1\.[01]\r$", re.MULTILINE)
_TYPE = re.compile(rb"^WARC-Type:[ \t]*conversion[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def opens(line: bytes) -> bool:
    """Whether a line (with its line break) is the version line that begins a WARC record."""
    return line.startswith(b"WARC/1.") and OPENING.match(line) is not None


def is_text_record(record: bytes) -> bool:
    """Whether a WARC record (its first bytes do) is a page's text: of ``WARC-Type: conversion``."""
    end = _HEADER_END.search(record, 0, 1 << 16)
    return _TYPE.search(record, 0, end.start() if end else min(len(record), 1 << 16)) is not None


def record_row(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """One WET record (``raw``: from its version line up to the next record's) as a row of
    ``COLUMNS``, or why it is not one (then the fields read before what made it so)."""
    end = _HEADER_END.search(raw)
    if end is None:
        return {}, "a WARC record without the blank line that ends its fields"
    fields: dict[bytes, bytes] = {}
    for line in raw[: end.start()].split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            fields.setdefault(name.strip().lower(), value.strip())
    row: dict[str, Any] = {c: fields[f].decode("utf-8", "replace") if f in fields else None for c, f in _FIELDS.items()}
    length = fields.get(b"content-length", b"")
    if not length.isdigit():
        return row, f"a WARC record without a Content-Length (its field reads {length[:20]!r})"
    content = raw[end.end() : end.end() + int(length)]
    if len(content) < int(length):
        return row, (f"a WARC record cut short: {len(content)} bytes of the {int(length)} its Content-Length says "
                     "(the file ends there, or a line of its content is a record's version line, 'WARC/1.0' ended CRLF)")  # fmt: skip
    row["text"] = content.decode("utf-8", "replace")
    return row, None
