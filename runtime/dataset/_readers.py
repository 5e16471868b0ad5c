"""Reading one part of the input into an Arrow table, whatever the format.

The table has the columns ``id``, the kept columns, and internal ones: ``__text`` (the text,
null where the row is bad), ``__bad`` (why a row is bad, null where it is fine), ``__line``
(the 1-based line of the row in its file; for Parquet the 0-based row; null for a document) and
``__file`` (a document's file, in documents' tables only: elsewhere the metadata names the file). Problems found while
reading (undecodable bytes, a line that is not a JSON object, a missing field, a null or a
non-string text) become ``__bad`` reasons here; what to do with them is the batch function's job.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _archives, _html, _warc, _wiki
from . import _storage as storage
from ._as_text import BY_NAME, Kind, attachment_reader, binary_kind, kind_of, markup_text
from ._eml import HEAD, Attachment, eml_text, looks_like_message, unnamed_message
from ._mbox import OPENS, message_row
from ._pdf import pdf_text_later
from ._sources import (
    RECORD_KEY,
    InputError,
    InputFormat,
    PartSpec,
    Plan,
    Shard,
    _TrackedLines,
    csv_field_limit,
    json_row,
    wide_text,
)
from ._template import TextSource
from ._xml import record_row, records_opening

TEXT, BAD, LINE, FILE = "__text", "__bad", "__line", "__file"
# FILE: a row's own file, in the tables of parts of several files (documents, small files) only: the
# metadata names a part's one file
INTERNAL = (TEXT, BAD, LINE, FILE)
FILE_KEY = b"embedrt.file"
POSITION_KEY = b"embedrt.position"  # "line" (1-based, text formats) or "row" (0-based, Parquet)
LEFT_OUT_KEY = b"embedrt.left_out"  # rows of a slice the job's ``where`` condition left out (a count)

_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string(), "json": pa.string()}

# A part is read (then embedded and written) in slices of about this many characters of text (a
# slice holds at least one row), so that a job's memory does not grow with its documents' length.
SLICE_CHARS = 4_000_000
_BATCH_ROWS = 256  # rows per table read from a Parquet row group or an Arrow record batch


class _Rows:
    """Columns of a slice of a part being read, row by row."""

    def __init__(self, columns: tuple[str, ...], files: bool = False, at: str = "") -> None:
        self.text: list[str | None] = []
        self.bad: list[str | None] = []
        self.line: list[int | None] = []
        self.file: list[str] | None = [] if files else None  # parts of several files: each row's file
        self.at = at  # the file being read (a row's file unless ``add`` names it)
        self.cols: dict[str, list[Any]] = {c: [] for c in columns}
        self.chars = 0

    def add(self, line: int | None, text: str | None, bad: str | None, values: dict[str, Any],
            file: str | None = None) -> None:  # fmt: skip
        if self.file is not None:
            self.file.append(file or self.at)
        self.line.append(line)
        self.text.append(None if bad else text)
        self.bad.append(bad)
        self.chars += len(text) if text is not None and not bad else 0
        for c, col in self.cols.items():
            col.append(values.get(c))


class _Slicer:
    """Hands out ``_Rows`` of at least one row and about ``chars`` characters of text each."""

    def __init__(self, columns: tuple[str, ...], chars: int | None, files: bool = False) -> None:
        self.columns, self.limit, self.files = columns, chars, files
        self.rows = _Rows(columns, files)

    def reading(self, path: str) -> None:
        """The rows added from now on are ``path``'s (with ``files``)."""
        self.rows.at = path

    def full(self) -> bool:
        return self.limit is not None and self.rows.chars >= self.limit

    def take(self) -> _Rows:
        out, self.rows = self.rows, _Rows(self.columns, self.files, self.rows.at)
        return out


def read_part(
    plan: Plan, part: PartSpec, text: str | TextSource, id_column: str | None, keep_columns: tuple[str, ...]
) -> pa.Table:
    """The part's rows, all of them in one table."""
    return pa.concat_tables(read_slices(plan, part, text, id_column, keep_columns, None))


def read_slices(
    plan: Plan, part: PartSpec, text: str | TextSource, id_column: str | None, keep_columns: tuple[str, ...],
    chars: int | None = SLICE_CHARS,
) -> Iterator[pa.Table]:
    """The part's rows, in order, as tables of about ``chars`` characters of text each (at least one
    row; None: one table); a part of no rows gives one empty table. ``text``: the column holding
    the texts, or a ``TextSource``."""
    source = TextSource.of(text)
    shard = plan.shards[part.shard]
    columns = tuple(dict.fromkeys(c for c in (id_column, *keep_columns) if c))
    documents = plan.format is InputFormat.DOCUMENTS
    own = b"" if documents or part.files > 1 else shard.path.encode()  # else each row names its file (``FILE``)
    meta = {FILE_KEY: own, POSITION_KEY: b"row" if plan.format.columnar else b"line"}
    first = shard.first_row + part.start

    def finish(table: pa.Table) -> pa.Table:
        nonlocal first
        if plan.rows_as:  # rows of HTML or wikitext: their text is what is embedded (a kept column stays as it is)
            table = _as_markup(table, plan.rows_as)
        ids = table.column(id_column) if id_column else pa.array(range(first, first + table.num_rows), pa.int64())
        first += table.num_rows
        out = {"id": ids, **{c: table.column(c) for c in keep_columns},
               **{c: table.column(c) for c in INTERNAL if c in table.column_names}}  # FILE: rows of several files
        return pa.table(out).replace_schema_metadata(meta)

    tables: Iterator[pa.Table]
    if documents:
        slices = _read_documents(plan.documents(part), source, columns, chars, plan.as_text, plan.ocr, _attachment(plan))
        tables = (_assemble({c: _to_arrow(v, "string") for c, v in rows.cols.items()}, rows.text, rows.bad, rows.line,
                            rows.file) for rows in slices)  # fmt: skip
    elif part.files > 1 and plan.format.columnar:
        tables = _read_files(plan, part, source, columns, chars)
    else:
        tables = _read_file(plan, shard, part, source, columns, chars)
    plan.check_unchanged(part)
    for table in tables:
        if BAD in table.column_names and table.column(BAD).null_count < table.num_rows:
            plan.check_unchanged(part)  # bad rows read after a change are the change's: it is named, not them
        yield finish(table)
    plan.check_unchanged(part)  # after its last slice and before the part is written whole: not kept


def _as_markup(table: pa.Table, kind: str) -> pa.Table:
    """The rows' texts read as the markup ``kind`` ("html", "wiki"); a text its reader fails on is a bad row."""
    texts, bad = table.column(TEXT).to_pylist(), table.column(BAD).to_pylist()
    for i, t in enumerate(texts):
        if t is not None:  # a text its reader fails on is a bad row, the others go on
            texts[i], bad[i] = _marked_up(BY_NAME[kind], t)
    table = table.set_column(table.schema.get_field_index(TEXT), TEXT, pa.array(texts, pa.string()))
    return table.set_column(table.schema.get_field_index(BAD), BAD, pa.array(bad, pa.string()))


def _marked_up(kind: Kind, text: str) -> tuple[str | None, str | None]:
    """(the text of ``text``, markup of ``kind``; why there is none: its reader failed on it)."""
    try:
        return markup_text(kind.name, text), None
    except Exception as e:  # the reader's fault or the text's
        return None, _failed(kind, e)


def _failed(kind: Kind, error: Exception) -> str:
    """Why a document (a row) of ``kind`` has no text: its reader failed on it."""
    return f"{kind.one} that its reader failed on ({type(error).__name__}: {error})"


def _read_file(plan: Plan, shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...],
               chars: int | None) -> Iterator[pa.Table]:  # fmt: skip
    """The rows of a ``part`` of one file (not documents), as tables of about ``chars`` characters;
    of several text files (``part.files``), each row with its file (``FILE``)."""
    if plan.format is InputFormat.PARQUET:
        yield from _read_parquet(shard, part, source, columns, chars)
        return
    if plan.format is InputFormat.ARROW:
        yield from _read_arrow(shard, part, source, columns, chars)
        return
    out = _Slicer(columns, chars, files=part.files > 1)
    files = [(shard, part)] if part.files == 1 else [
        (plan.shards[k], plan.shards[k].whole(part.index, k)) for k in range(part.shard, part.shard + part.files)]
    for one, rows in _ahead(files):
        out.reading(one.path)
        if plan.format is InputFormat.TXT:
            slices = _read_txt(one, rows, out)
        elif plan.format is InputFormat.JSONL:
            slices = _read_jsonl(one, rows, source, columns, out)
        elif plan.format is InputFormat.MBOX:
            slices = _read_mbox(one, rows, source, columns, out, _attachment(plan))
        elif plan.format is InputFormat.WARC:
            slices = _read_records(one, rows, source, columns, out, _warc.opens, True, _warc.record_row, _warc.is_row,
                                    _warc.extent)  # fmt: skip
        elif plan.format is InputFormat.XML:
            slices = _read_xml(one, rows, source, columns, out, plan.xml_records, plan.wiki_pages)
        else:
            slices = _read_csv(one, rows, source, columns, plan.csv_delimiter, out)
        yield from (_assembled(plan, full) for full in slices)
    yield _assembled(plan, out.take())


def _ahead(files: list[tuple[Shard, PartSpec]]) -> Iterator[tuple[Shard, PartSpec]]:
    """``files`` in order, several small objects read ahead at once (``storage.read_ahead``)."""
    if len(files) == 1:
        yield from files
        return
    sizes = [shard.stamp[0] if shard.stamp is not None else shard.size for shard, _part in files]
    with contextlib.closing(storage.read_ahead([shard.path for shard, _part in files], sizes)) as paths:
        for (shard, part), _path in zip(files, paths, strict=True):
            yield shard, part


def _assembled(plan: Plan, rows: _Rows) -> pa.Table:
    return _assemble({c: _to_arrow(v, plan.json_types.get(c, "string")) for c, v in rows.cols.items()},
                     rows.text, rows.bad, rows.line, rows.file)  # fmt: skip


def _read_files(plan: Plan, part: PartSpec, source: TextSource, columns: tuple[str, ...],
                chars: int | None) -> Iterator[pa.Table]:  # fmt: skip
    """The rows of a part of several small Parquet or Arrow files read whole (``_sources._grouped``),
    each row with its file (``FILE``), in tables of about ``chars`` characters: a file's rows join
    the next file's in one table, so that files of a few rows still make batches of many."""
    held: list[pa.Table] = []
    size = 0
    files = [(plan.shards[k], plan.shards[k].whole(part.index, k)) for k in range(part.shard, part.shard + part.files)]
    for shard, whole in _ahead(files):
        for table in _read_file(plan, shard, whole, source, columns, chars):
            held.append(table.append_column(FILE, pa.array([shard.path] * table.num_rows, pa.string())))
            size += int(text_sizes(table.column(TEXT)).sum())
            if chars is not None and size >= chars:
                yield _joined(plan, part, held)
                held, size = [], 0
    if held:
        yield _joined(plan, part, held)


def _joined(plan: Plan, part: PartSpec, tables: list[pa.Table]) -> pa.Table:
    """The tables of several files' rows as one; Parquet or Arrow files whose columns' types differ
    (beyond what widens, as int32 to int64) are named."""
    try:
        return pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        first = tables[0]
        other = next((t for t in tables if t.schema.remove_metadata() != first.schema.remove_metadata()), first)
        files = [t.column(FILE)[0].as_py() for t in (first, other)]
        raise InputError(f"{files[1]}: its columns' types ({_types(other)}) differ from those of {files[0]} "
                         f"({_types(first)}), read with it in part {part.index}: {e}") from e


def _types(table: pa.Table) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in table.schema if f.name not in INTERNAL)


def _assemble(arrays: dict[str, pa.Array], text: list[str | None], bad: list[str | None], line: Sequence[int | None],
              file: list[str] | None = None) -> pa.Table:  # fmt: skip
    return pa.table({
        **arrays,
        TEXT: pa.array(text, pa.string()), BAD: pa.array(bad, pa.string()), LINE: pa.array(line, pa.int64()),
        **({FILE: pa.array(file, pa.string())} if file is not None else {}),
    })  # fmt: skip


def _attachment(plan: Plan) -> Attachment | None:
    """The reader of e-mail attachments a plan asks for (``attachments``; ``archives``: the files in
    archives attached too), else None."""
    return attachment_reader(plan.as_text, plan.ocr, plan.archives) if plan.attachments else None


def _read_documents(docs: list[Shard], source: TextSource, columns: tuple[str, ...], chars: int | None,
                    as_text: tuple[str, ...] = (), ocr: bool = False,
                    attachment: Attachment | None = None) -> Iterator[_Rows]:  # fmt: skip
    """A row per document: ``path`` (its path under the input) and ``text`` (its content; of the
    kinds ``as_text``, its text: ``_as_text``; ``ocr``: PDFs' pages without text read by OCR)."""
    out = _Slicer(columns, chars, files=True)
    for window, got in _fetched(docs, as_text, ocr, attachment):
        for doc, (content, bad) in zip(window, got, strict=True):
            if out.full():
                yield out.take()
            values = {"path": doc.name, "text": content}
            text, why = (None, bad) if bad else source.from_mapping(values)
            out.rows.add(None, text, why, values, doc.path)
    yield out.take()


_DOCS_AT_ONCE = 8
_PDF_WINDOWS_AHEAD, _PDF_BYTES_AHEAD = 4, 256 << 20  # PDFs read ahead of the rows made: at most so many


def _fetched(docs: list[Shard], as_text: tuple[str, ...], ocr: bool = False,
             attachment: Attachment | None = None) -> Iterator[tuple[list[Shard], list[tuple[str | None, str | None]]]]:  # fmt: skip
    """The documents a window at a time (objects a few at a time, each a request or two), each with
    its text or why it has none (``attachment``: reads e-mail attachments into their message's). PDFs' texts (``"pdf" in as_text``) are read in worker processes (``_pdf``) up to
    ``_PDF_WINDOWS_AHEAD`` windows (and ``_PDF_BYTES_AHEAD`` bytes of PDF) ahead of the window given,
    so that a long PDF keeps one worker busy while the others read the next ones."""
    read = functools.partial(_document_text, as_text=as_text, attachment=attachment)
    pdf = "pdf" in as_text or "image" in as_text  # bytes, read in workers (an image by OCR)
    ahead: collections.deque[tuple[list[Shard], list[Any], int]] = collections.deque()
    held = 0
    try:
        for at in range(0, len(docs), _DOCS_AT_ONCE):
            window = docs[at:at + _DOCS_AT_ONCE]
            got = storage.each(read, [d.path for d in window])
            if not pdf:
                yield window, got
                continue
            size = sum(len(c) for c, _bad in got if isinstance(c, bytes))
            ahead.append((window, [(pdf_text_later(c, ocr or BY_NAME["image"].takes(d.path)), None)
                                   if isinstance(c, bytes) else (c, b) for d, (c, b) in zip(window, got, strict=True)], size))
            held += size
            while len(ahead) > _PDF_WINDOWS_AHEAD or (len(ahead) > 1 and held > _PDF_BYTES_AHEAD):
                held -= ahead[0][2]
                yield _texts_of(ahead.popleft())
        while ahead:
            yield _texts_of(ahead.popleft())
    finally:  # a part stopped (a bad row, an interrupt): the PDFs read ahead are not waited for
        for _window, got, _size in ahead:
            for c, _b in got:
                if isinstance(c, Future):
                    c.cancel()


def _texts_of(entry: tuple[list[Shard], list[Any], int]) -> tuple[list[Shard], list[tuple[str | None, str | None]]]:
    window, got, _size = entry
    return window, [c.result() if isinstance(c, Future) else (c, b) for c, b in got]


_DOC_BLOCK = 1 << 20


def _document_text(path: str, as_text: tuple[str, ...] = (), attachment: Attachment | None = None) -> tuple[Any, str | None]:
    """A document's text (UTF-8; a byte order mark read past; of a kind in ``as_text``, its text, but
    a PDF's bytes, for ``_pdf.pdf_text_later``), or why it has none. A file that is not UTF-8 (an
    image, a PDF) is read no further than its first bad byte. An archive, and a file in one that
    cannot be read (``_archives``), are bad rows that say why."""
    if _archives.is_archive(path):
        return None, _archive_reason(path)
    try:
        return _text_of(path, as_text, attachment)
    except _archives.UnreadableMember as e:
        return None, str(e)
    except _archives.DAMAGED as e:
        if _archives.split(path) is None:
            raise
        return None, _archives.damaged(e)


def _archive_reason(path: str) -> str:
    try:
        _archives.members(path)
    except _archives.ArchiveError as e:
        return str(e)
    except OSError as e:
        return f"an archive that cannot be read ({e})"
    return "an archive: pass --archives (archives=True) to read the files in it as documents"


def _text_of(path: str, as_text: tuple[str, ...], attachment: Attachment | None) -> tuple[Any, str | None]:
    kind = kind_of(path, as_text)
    if kind is None and "eml" in as_text and unnamed_message(path) and looks_like_message(storage.head(path, HEAD)):
        kind = BY_NAME["eml"]  # a message its name does not call one (Maildir's, the Enron corpus')
    if kind is not None and kind.binary:
        with storage.open_input(path) as f:
            data = f.read()
        if kind.reads is None:
            return data, None
        try:
            if attachment is not None and kind.name == "eml":
                return eml_text(data, attachment)  # its attachments read too
            return kind.reads(data)
        except Exception as e:  # the reader's fault or the file's (XML nested past Python's recursion): the document's
            return None, _failed(kind, e)
    if kind is not None and kind.name == "html":  # in the encoding its <meta> declares, as a browser reads it
        with storage.open_input(path) as f:
            return _marked_up(kind, _html.decoded(f.read()))
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces, at = [], 0
    with storage.open_input(path) as f:
        wide = wide_text(f)
        if wide is not None:
            return None, f"{wide} text (a {wide} byte order mark): documents are read as UTF-8; convert it first " \
                         f"(iconv -f {wide} -t UTF-8)"
        while True:
            block = f.read(_DOC_BLOCK)
            held = len(decoder.getstate()[0])
            try:
                pieces.append(decoder.decode(block, final=not block))
            except UnicodeDecodeError as e:
                where = at - held + e.start
                binary = binary_kind(path)
                if binary is not None:
                    return None, (f"{binary.one} (invalid UTF-8 at byte {where}): pass --{binary.name}-text "
                                  f"({binary.name}_text=True) to read its text")  # fmt: skip
                return None, (f"not UTF-8 text (a binary file?): invalid byte {e.object[e.start:e.start + 1]!r} at byte "
                              f"{where}; give the documents' names as a glob ('docs/**/*.md') or --on-error skip")  # fmt: skip
            if not block:
                text = "".join(pieces).removeprefix("\ufeff")
                return (text, None) if kind is None else _marked_up(kind, text)
            at += len(block)


def _to_arrow(values: list[Any], kind: str) -> pa.Array:
    if kind == "json":
        values = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
    elif kind == "float64":
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, _ARROW[kind])


def _lines(shard: Shard, part: PartSpec, skip_empty: bool) -> Any:
    """(line number, raw bytes without the line ending) for the part's rows."""
    with storage.reading(shard.path, shard.seeks) as f:
        f.seek(part.byte_offset)
        line, left = part.first_line, part.rows
        for raw in f:
            if not left:
                return
            body = raw.rstrip(b"\n")
            body = body[:-1] if body.endswith(b"\r") else body
            if skip_empty and not body:
                line += 1
                continue
            yield line, body
            line += 1
            left -= 1


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"undecodable bytes: invalid UTF-8 at byte {e.start} ({raw[e.start:e.start + 4]!r})"


def _read_txt(shard: Shard, part: PartSpec, out: _Slicer) -> Iterator[_Rows]:
    for line, raw in _lines(shard, part, skip_empty=False):
        if out.full():
            yield out.take()
        text, bad = _decode(raw)
        out.rows.add(line, text, bad, {})


def _read_jsonl(shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], out: _Slicer) -> Iterator[_Rows]:
    for line, raw in _lines(shard, part, skip_empty=True):
        if out.full():
            yield out.take()
        rows = out.rows
        obj: Any = None
        try:
            obj = json_row(raw)
            bad = None if isinstance(obj, dict) else f"expected a JSON object, got {_json_name(obj)}"
        except UnicodeDecodeError as e:
            bad = f"undecodable bytes: invalid UTF-8 at byte {e.start} ({raw[e.start:e.start + 4]!r})"
            obj = _salvage(raw)
        except ValueError as e:
            bad = f"not valid JSON ({e})"
        values = {c: obj.get(c) for c in columns} if isinstance(obj, dict) else {}
        broken = [c for c, v in values.items() if isinstance(v, str) and _has_surrogate(v)]
        for c in broken:
            values[c] = None  # Arrow strings are UTF-8: a lone surrogate cannot be stored
        if bad:
            rows.add(line, None, bad, values)
            continue
        text, bad = source.from_mapping(obj)
        if broken or (text is not None and _has_surrogate(text)):
            s: str = obj[broken[0]] if broken else text or ""
            at = next(i for i, ch in enumerate(s) if "\ud800" <= ch <= "\udfff")
            rows.add(line, None, f"{broken[0] if broken else 'text'} holds a lone surrogate {s[at]!r} at "
                     f"character {at}", values)  # fmt: skip
        else:
            rows.add(line, text, bad, values)


def _read_mbox(shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], out: _Slicer,
               attachment: Attachment | None = None) -> Iterator[_Rows]:  # fmt: skip
    yield from _read_records(shard, part, source, columns, out, lambda raw: raw.startswith(OPENS), False,
                             lambda raw: message_row(raw, attachment))  # fmt: skip


def _read_xml(shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], out: _Slicer,
              tags: tuple[str, ...], wiki_pages: bool = False) -> Iterator[_Rows]:  # fmt: skip
    """An XML file's records; ``wiki_pages``: a MediaWiki export's articles (``_wiki.page_row``), the
    other pages passed over as the planning scan passed over them."""
    opens = records_opening(tags)
    names = frozenset(c for c in (*columns, *source.columns) if c != "text")
    row: Callable[[bytes], tuple[dict[str, Any], str | None]] = lambda raw: record_row(raw, names)  # noqa: E731
    if wiki_pages:
        site = _wiki_site(shard.path, shard.sha256)
        row = lambda raw: _wiki.page_row(raw, names, site)  # noqa: E731
    yield from _read_records(shard, part, source, columns, out, lambda raw: opens.match(raw) is not None, True, row,
                             _wiki.is_article if wiki_pages else None)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _wiki_site(path: str, sha256: str) -> _wiki.Site:
    """A MediaWiki export's site (its names for its file and category namespaces, its address;
    ``sha256``: the file's, as planned), read once a process from the file's beginning by a stream of
    its own: the one kept for the parts (``storage.reading``) goes on forward from where the last part
    stopped."""
    with storage.open_input(path) as f:
        return _wiki.Site.of_site(f.read(_wiki.SITE_HEAD))


def _read_records(shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], out: _Slicer,
                  opens: Callable[[bytes], bool], with_opening: bool,
                  row: Callable[[bytes], tuple[dict[str, Any], str | None]],
                  keep: Callable[[bytes], bool] | None = None,
                  extent: Callable[[bytes], int | None] | None = None) -> Iterator[_Rows]:  # fmt: skip
    """The rows of a part of a file of records (``_records``), each record's columns (or why it has
    none) as ``row`` reads them."""
    for line, raw in _records(shard, part, opens, with_opening, keep, extent):
        if out.full():
            yield out.take()
        values, bad = row(raw)
        text, bad = source.from_mapping(values) if bad is None else (None, bad)
        out.rows.add(line, text, bad, {c: values.get(c) for c in columns})


def _records(shard: Shard, part: PartSpec, opens: Callable[[bytes], bool], with_opening: bool,
             keep: Callable[[bytes], bool] | None = None,
             extent: Callable[[bytes], int | None] | None = None) -> Iterator[tuple[int, bytes]]:  # fmt: skip
    """(line of its opening line, its lines: after that one, or from it ``with_opening``) for each
    record of a part of a file whose records each begin on a line that ``opens`` picks (an mbox's
    ``From `` lines, an XML file's records' opening tags); ``keep``: only the records it takes by their
    first ``RECORD_KEY`` bytes (as the planning scan took them): a record it passes over is not held
    past them (a WARC file's videos); ``extent`` (``with_opening``): a record's size by those bytes,
    read at the first blank line (a WARC record's header), within which no line opens a record."""
    assert extent is None or with_opening
    with storage.reading(shard.path, shard.seeks) as f:
        f.seek(part.byte_offset)
        line, left = part.first_line, part.rows
        held: list[bytes] | None = None  # the lines of the record being read (None: before the first)
        taken: bool | None
        size, taken = 0, None  # its bytes read; whether it is a row (None: not known yet)
        end: int | None = None  # its size by its ``extent`` (None: its header not read yet; 0: not known)
        takes = keep or (lambda record: True)
        at = line
        for raw in f:
            if opens(raw) and (end is None or size >= end):
                if held is not None and taken is not False:
                    record = b"".join(held)
                    if taken or takes(record):
                        yield at, record
                        left -= 1
                        if not left:
                            return
                held, at = [raw] if with_opening else [], line
                size, taken, end = len(raw), None if keep else True, None
            elif held is not None:
                size += len(raw)
                if taken is not False:
                    held.append(raw)
                    if extent is not None and end is None and size <= RECORD_KEY and raw in (b"\r\n", b"\n"):
                        end = extent(b"".join(held)) or 0
                    if taken is None and size >= RECORD_KEY:
                        taken = takes(b"".join(held))
                        held = held if taken else []
            line += 1
        if held is not None and left and taken is not False:
            record = b"".join(held)
            if taken or takes(record):
                yield at, record


def _salvage(raw: bytes) -> Any:
    """The row's other fields (its id above all) when only some bytes are not UTF-8."""
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None


def _json_name(v: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _read_csv(
    shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], delimiter: str, out: _Slicer
) -> Iterator[_Rows]:
    header = shard.columns
    where = {c: header.index(c) for c in (*source.columns, *columns)}
    with storage.reading(shard.path, shard.seeks) as f, csv_field_limit():
        f.seek(part.byte_offset)
        lines = _TrackedLines(f)
        reader = csv.reader(lines, delimiter=delimiter)
        taken = 0
        while taken < part.rows:
            if out.full():
                yield out.take()
            rows = out.rows
            line = part.first_line + lines.line
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                taken += 1
                rows.add(line, None, f"not valid CSV ({e})", {})
                continue
            if not record:  # a blank line is no row (the plan skipped it too)
                continue
            taken += 1
            if len(record) != len(header):
                rows.add(line, None, f"has {len(record)} fields, the header has {len(header)}", {})
                continue
            values = {c: record[where[c]] for c in columns}
            bad_field = next((c for c, v in values.items() if _has_surrogate(v)), None)
            text = source.from_mapping({c: record[where[c]] for c in source.columns})[0] or ""  # CSV has no nulls
            if _has_surrogate(text) or bad_field:
                raw = (text if bad_field is None else values[bad_field]).encode("utf-8", "surrogateescape")
                rows.add(line, None, _decode(raw)[1], {} if bad_field else values)
            else:
                rows.add(line, text, None, values)


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_parquet(
    shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], chars: int | None
) -> Iterator[pa.Table]:
    wanted = list(dict.fromkeys((*source.columns, *columns)))
    with storage.parquet_batches(shard.path, part.start, wanted, _BATCH_ROWS) as (schema, batches):
        rows = _batch_range(batches, part.start, part.stop, wanted)
        yield from _columnar_slices(rows, part, source, columns, chars, schema.empty_table().select(wanted))


def _read_arrow(
    shard: Shard, part: PartSpec, source: TextSource, columns: tuple[str, ...], chars: int | None
) -> Iterator[pa.Table]:
    wanted = list(dict.fromkeys((*source.columns, *columns)))
    with storage.arrow_batches(shard.path, part.start) as (schema, batches):
        rows = _batch_range(batches, part.start, part.stop, wanted)
        yield from _columnar_slices(rows, part, source, columns, chars, schema.empty_table().select(wanted))


def _batch_range(
    batches: Iterator[tuple[int, pa.RecordBatch]], start: int, stop: int, wanted: list[str]
) -> Iterator[pa.Table]:
    """Rows ``[start, stop)`` of a file's record batches (each with its first row: an Arrow file's,
    or a Parquet file's of ``_BATCH_ROWS`` rows), ``_BATCH_ROWS`` at a time (a memory-mapped batch is
    sliced where it lies)."""
    for at, rb in batches:
        a, b = max(start, at), min(stop, at + rb.num_rows)
        if a < b:
            table = pa.Table.from_batches([rb]).select(wanted)
            for lo in range(a, b, _BATCH_ROWS):
                yield table.slice(lo - at, min(_BATCH_ROWS, b - lo))
        if at + rb.num_rows >= stop:
            return


def _columnar_slices(
    rows: Iterator[pa.Table], part: PartSpec, source: TextSource, columns: tuple[str, ...], chars: int | None,
    empty: pa.Table,
) -> Iterator[pa.Table]:
    """The part's ``rows`` (tables of the wanted columns, in order) as slices of about ``chars``
    characters of text, with the texts composed and the rows numbered."""
    at = part.start  # the file row of the next slice's first row

    def assemble(pieces: list[pa.Table]) -> pa.Table:
        nonlocal at
        table = pa.concat_tables(pieces)
        text, bad = source.from_table(table)
        lines = list(range(at, at + table.num_rows))
        at += table.num_rows
        return _assemble({c: table.column(c) for c in columns}, text, bad, lines)

    pieces: list[pa.Table] = []  # the next slice's rows, and their characters
    held = 0
    for batch in rows:
        start = 0
        for i, n in enumerate(source.sizes(batch).tolist()):
            if chars is not None and held and held + n > chars:  # as ``slice_rows`` cuts
                pieces.append(batch.slice(start, i - start))
                yield assemble(pieces)
                pieces, held, start = [], 0, i
            held += n
        pieces.append(batch.slice(start))
    yield assemble(pieces or [empty])


def text_sizes(col: pa.ChunkedArray) -> np.ndarray:
    """Each row's text size for slicing: its UTF-8 bytes (0 for a null, or a value that is no text)."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if _is_view(col.type, "string") or _is_view(col.type, "binary"):
        col = col.cast(pa.large_string() if _is_view(col.type, "string") else pa.large_binary())
    try:
        sizes = pc.binary_length(col)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return np.zeros(len(col), np.int64)  # not text: every row is a bad row, read in one slice
    return np.asarray(sizes.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)


def slice_rows(sizes: np.ndarray, chars: int) -> list[int]:
    """Row boundaries ``[0, ..., len(sizes)]`` cutting rows of these text sizes into consecutive
    slices of at most ``chars`` characters (a longer row alone)."""
    cuts, held = [0], 0
    for i, n in enumerate(sizes.tolist()):
        if held and held + n > chars:
            cuts.append(i)
            held = 0
        held += n
    if cuts[-1] != len(sizes) or len(cuts) == 1:
        cuts.append(len(sizes))
    return cuts


def _is_view(t: pa.DataType, name: str) -> bool:
    check = getattr(pa.types, f"is_{name}_view", None)  # pyarrow >= 16
    return bool(check and check(t))


def arrow_texts(col: pa.ChunkedArray, label: str = "text") -> tuple[list[str | None], list[str | None]]:
    """The texts of an Arrow column and, per row, why it cannot be embedded (None where it can).

    Strings in any Arrow layout (plain, large, dictionary-encoded, view) are texts; binary columns
    are decoded as UTF-8, a row that is not UTF-8 being bad; any other type is a bad row. ``label``
    names the value in the reasons."""
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if _is_view(t, "string"):
        col, t = col.cast(pa.large_string()), pa.large_string()
    elif _is_view(t, "binary"):
        col, t = col.cast(pa.large_binary()), pa.large_binary()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            values = col.to_pylist()
        except UnicodeDecodeError:  # a writer stored bytes that are not UTF-8 in a string column
            col = col.cast(pa.binary() if pa.types.is_string(t) else pa.large_binary())
            t = col.type
        else:
            return values, [f"{label} is null" if v is None else None for v in values]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        texts: list[str | None] = []
        bad: list[str | None] = []
        for raw in col.to_pylist():
            text, why = (None, f"{label} is null") if raw is None else _decode(raw)
            texts.append(text)
            bad.append(why)
        return texts, bad
    nulls = col.is_null().to_pylist()
    return [None] * len(col), [f"{label} is null" if n else f"{label} is {t}, expected a string" for n in nulls]
