"""Plain-text input of the CLI: one text per line, from a file or stdin, as UTF-8.

Undecodable bytes are an error naming the file (or stdin), the line and the column, unless the user
chose ``errors="replace"`` (U+FFFD) or ``"ignore"`` (dropped), as Python's codecs name them; then
the lines touched are counted and reported. Files in formats with columns (``STRUCTURED``) are never
read here: line by line they would embed raw JSON, CSV rows or Parquet bytes as texts.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Callable
from pathlib import Path

DECODE_ERRORS = ("strict", "replace", "ignore")
STDIN = "-"

# Extensions of formats that hold texts in a column: read by column (the corpus job's readers), never by line.
STRUCTURED = {
    ".jsonl": "JSON Lines",
    ".ndjson": "JSON Lines",
    ".json": "JSON",
    ".csv": "CSV",
    ".tsv": "TSV",
    ".parquet": "Parquet",
    ".pq": "Parquet",
    ".arrow": "Arrow IPC",
    ".arrows": "Arrow IPC",
    ".feather": "Arrow IPC",
    ".ipc": "Arrow IPC",
    ".mbox": "mbox",  # a message a text (``dataset._mbox``)
    ".mbx": "mbox",
}
# Compressed files: read by the corpus job's readers too, decompressed (``.txt.gz`` as lines).
COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def read_lines(
    path: str,
    keep_blank: bool,
    errors: str = "strict",
    log: Callable[[str], None] | None = None,
) -> list[str]:
    """The lines of ``path`` (``-``: stdin) as texts, without line ends; ``keep_blank=False`` drops blank ones."""
    if errors not in DECODE_ERRORS:
        raise ValueError(f"invalid errors {errors!r}: expected one of {DECODE_ERRORS}")
    name = "stdin" if path == STDIN else path
    raw = _read_bytes(path)
    text = decode(raw, name, errors, log)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    return lines if keep_blank else [line for line in lines if line.strip()]


def _read_bytes(path: str) -> bytes:
    if path != STDIN:
        return Path(path).read_bytes()
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream put in place of stdin (tests, embedding applications)
        return sys.stdin.read().encode("utf-8")
    return buffer.read()  # type: ignore[no-any-return]


def decode(raw: bytes, name: str, errors: str, log: Callable[[str], None] | None = None) -> str:
    """``raw`` as UTF-8 (a leading byte-order mark dropped); undecodable bytes as ``errors`` says."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        where = f"{name} line {line}, column {column}: byte 0x{raw[e.start]:02x} is not valid UTF-8"
        if errors == "strict":
            fix = "Send UTF-8 text" if name == "stdin" else "Save the file as UTF-8"
            raise ValueError(
                f"{where}. {fix}, or pass --errors replace to replace undecodable bytes with U+FFFD "
                f"(--errors ignore drops them)"
            ) from e
    text = raw.decode("utf-8", errors=errors)
    if log is not None:
        touched = _lines_with_bad_bytes(raw)
        what = "replaced with U+FFFD" if errors == "replace" else "dropped"
        log(f"{name}: undecodable bytes {what} on {len(touched)} line(s), first {where}")
    return text


def _lines_with_bad_bytes(raw: bytes) -> list[int]:
    out = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            out.append(number)
    return out


def check_delimiter(delimiter: object) -> None:
    """A CSV field delimiter: one character other than the quote and the line breaks (None: the format's)."""
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ValueError(f"csv_delimiter must be one character other than a quote or a line break, got {delimiter!r}")


def csv_delimiter_arg(value: str) -> str:
    """``--csv-delimiter``: as ``check_delimiter`` takes it; ``\\t`` and ``tab`` name the tab, which a
    shell passes badly."""
    value = "\t" if value in ("\\t", "tab") else value
    try:
        check_delimiter(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"one character other than a quote or a line break, got {value!r}") from None
    return value
