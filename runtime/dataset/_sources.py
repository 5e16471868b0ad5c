"""The input of a corpus job: which files, in which format, cut into parts of a fixed number of rows.

Planning reads every file once: text files to count rows, note the byte offset where each part
starts and hash the content; Parquet files to hash the content (their rows are counted from the
footer). The plan is deterministic: the same input
and ``rows_per_part`` always give the same parts, which is what lets a killed job resume and lets
several machines share the work.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import glob
import hashlib
import itertools
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, overload

import numpy as np

from .._errors import EmbedrtError
from .._lines import check_delimiter
from .._objects import is_uri
from .._types import check_int
from . import _archives, _mbox, _unpack, _warc, _wiki, _xml
from . import _storage as storage
from ._as_text import KINDS
from ._pdf import check_ocr, check_pdfium
from ._template import TextSource
from ._unpack import Reader, Unpacker

if TYPE_CHECKING:
    from ._scan_record import ScanRecord

_BLOCK = 8 << 20
_NAMED_FILES = 5  # the planning scan names its first files, then counts the others
ALL_COLUMNS = "*"  # keep_columns=("*",): every column of the input (``Plan.every_column``)


class InputFormat(str, Enum):
    TXT = "txt"  # one text a line; an empty line is an empty text
    JSONL = "jsonl"  # one JSON object a line; empty lines are skipped
    CSV = "csv"  # a header line, then one record a row (quoted newlines allowed)
    TSV = "tsv"
    PARQUET = "parquet"
    ARROW = "arrow"  # Arrow IPC, file or stream format (Hugging Face datasets' .arrow files)
    MBOX = "mbox"  # e-mail messages, each opened by a line beginning "From ": rows of ``_mbox.COLUMNS``
    WARC = "warc"  # web archives, a row per page (``_warc``): rows of ``_warc.COLUMNS``
    XML = "xml"  # records, each an element opened on a line of its own (``Plan.xml_records``): ``_xml.record_row``
    DOCUMENTS = "documents"  # each file one text, whatever its name: rows of ``DOCUMENT_COLUMNS``

    @property
    def columnar(self) -> bool:
        """Rows in column chunks, found by their number (a file's fingerprint stands for its parts)."""
        return self in (InputFormat.PARQUET, InputFormat.ARROW)


SUFFIXES = {
    ".txt": InputFormat.TXT, ".text": InputFormat.TXT, ".jsonl": InputFormat.JSONL,
    ".ndjson": InputFormat.JSONL, ".csv": InputFormat.CSV, ".tsv": InputFormat.TSV,
    ".parquet": InputFormat.PARQUET, ".pq": InputFormat.PARQUET, ".arrow": InputFormat.ARROW,
    ".arrows": InputFormat.ARROW, ".feather": InputFormat.ARROW, ".ipc": InputFormat.ARROW,
    **dict.fromkeys(_mbox.SUFFIXES, InputFormat.MBOX), ".xml": InputFormat.XML,
    **dict.fromkeys(_warc.SUFFIXES, InputFormat.WARC),
}  # fmt: skip
_REFUSED = {".json": "a JSON document (one object a line is .jsonl)",
            ".msf": "a Thunderbird folder's index: its mailbox is the file of the same name without .msf"}
_HASHED = 4096  # documents' hashes made hex at once (``Documents.hashed``)
DOCUMENT_COLUMNS = ("path", "text")  # a document's row: its path under the input, its content
DOCUMENTS_PER_PART = 100  # documents are longer than rows, and edited one by one: parts of fewer of them


_DELIMITERS = {InputFormat.CSV: ",", InputFormat.TSV: "\t"}  # the formats' own field delimiters


class InputError(EmbedrtError, ValueError):
    """The input cannot be read as a corpus (no files, unknown format, missing column)."""


@dataclass(frozen=True, slots=True)
class Shard:
    """One input file."""

    path: str
    rows: int
    first_row: int  # global row number of its first row (files in sorted order)
    size: int
    sha256: str  # of the content
    columns: tuple[str, ...] = ()
    stamp: tuple[int, int] | None = None  # its size and modification time when planned (``storage.stamp``)
    name: str = ""  # a document's path under its input (``InputFormat.DOCUMENTS``: the row's ``path``)
    # a text file read whole in a part of several files (``_grouped``): where its first row begins
    offset: int = 0
    line: int = 1
    # a compressed file of several members: (decompressed, compressed offset) of the member start
    # nearest before each part's first row, where its reader starts (``storage.reading``)
    seeks: tuple[tuple[int, int], ...] = ()

    def whole(self, index: int, k: int) -> PartSpec:
        """This file, the plan's ``k``-th, as one part of its own (a file of a part of several files)."""
        return PartSpec(index, k, 0, self.rows, self.offset, self.line, self.sha256)

    def check_unchanged(self, part: PartSpec) -> None:
        """Refuse to go on with ``part`` if the file changed since it was planned (a part's rows are
        found by the offsets the plan holds, so another file under the name would give other rows)."""
        try:
            now = storage.stamp(self.path) if self.stamp is not None else None
        except FileNotFoundError:
            raise InputError(
                f"{self.path} was removed while the job ran, so part {part.index} cannot be read; the finished parts "
                "are kept: run the same command again (it plans the input as it is then, and keeps the parts of "
                "the other files)"
            ) from None
        if now != self.stamp:
            raise InputError(
                f"{self.path} changed while the job ran (its size or modification time is not what it was when "
                f"planned), so part {part.index} would not hold the rows planned; run the same command again once "
                "the input stays as it is: it plans the input anew and keeps the finished parts whose rows are unchanged"
            )


class Documents(Sequence[Shard]):
    """A folder of documents as the plan's shards (a row each, the ``k``-th's first row ``k``), held as
    lists and arrays: a million ``Shard`` objects would be hundreds of MB. An index gives a ``Shard``,
    a slice a list of them."""

    __slots__ = ("digests", "names", "paths", "sizes", "stamps")
    ROWS = 1  # a document's

    def __init__(self, paths: Sequence[str], names: list[str], sizes: np.ndarray, digests: np.ndarray,
                 stamps: np.ndarray) -> None:  # fmt: skip
        self.paths, self.names = paths, names  # the files, their paths under the input
        self.sizes, self.digests = sizes, digests  # int64 content sizes; SHA-256 digests, rows of 32 uint8
        self.stamps = stamps  # int64 rows of (size, modification time) when planned (``storage.stamp``)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, k: int) -> Shard: ...

    @overload
    def __getitem__(self, k: slice) -> list[Shard]: ...

    def __getitem__(self, k: int | slice) -> Shard | list[Shard]:
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            if step != 1 or stop <= start:
                return [self[i] for i in range(start, stop, step)]
            paths, names, sizes = self.paths[start:stop], self.names[start:stop], self.sizes[start:stop].tolist()
            hexes, stamps = self.digests[start:stop].tobytes().hex(), self.stamps[start:stop].tolist()
            return [Shard(paths[i], self.ROWS, start + i, sizes[i], hexes[i * 64:(i + 1) * 64], DOCUMENT_COLUMNS,
                          stamp=(stamps[i][0], stamps[i][1]), name=names[i]) for i in range(stop - start)]  # fmt: skip
        k = range(len(self))[k]  # negative indexes; IndexError past the end
        return Shard(self.paths[k], self.ROWS, k, int(self.sizes[k]), self.sha256(k), DOCUMENT_COLUMNS,
                     stamp=(int(self.stamps[k, 0]), int(self.stamps[k, 1])), name=self.names[k])  # fmt: skip

    def sha256(self, k: int) -> str:
        return self.digests[k].tobytes().hex()

    def hashed(self, start: int, stop: int) -> Iterator[tuple[int, str, str]]:
        """(k, path, sha256 as hex) of documents ``start`` to ``stop``, a few thousand hashes at a time."""
        for at in range(start, stop, _HASHED):
            end = min(at + _HASHED, stop)
            hexes = self.digests[at:end].tobytes().hex()
            for k in range(at, end):
                yield k, self.paths[k], hexes[(k - at) * 64:(k - at + 1) * 64]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Documents):
            return NotImplemented
        return (self.paths == other.paths and self.names == other.names and np.array_equal(self.sizes, other.sizes)
                and np.array_equal(self.digests, other.digests) and np.array_equal(self.stamps, other.stamps))  # fmt: skip

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class PartSpec:
    """Rows ``[start, stop)`` of one shard: the unit of work, written as one output file."""

    index: int
    shard: int
    start: int
    stop: int
    byte_offset: int = 0  # text formats: where row ``start`` begins
    first_line: int = 1  # text formats: the 1-based line number of row ``start``
    sha256: str = ""  # text formats: of its bytes, up to the next part's start (or the file's end); of several files: ``_grouped``
    files: int = 1  # 1: rows of file ``shard``; more: files ``shard`` on read whole, small files in one part (``_grouped``)

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}.parquet"


@dataclass(frozen=True)
class Moved:
    """A finished part whose rows are another part's of the plan now (``Plan.moves``)."""

    entry: dict[str, Any]  # its journal entry at the new place, but for the new file's size
    shift: int  # what to add to the ids in its file (row numbers as ids: the rows before it changed)


@dataclass
class Plan:
    format: InputFormat
    shards: Sequence[Shard]  # a list; a folder of documents' ``Documents``
    parts: list[PartSpec]
    rows_per_part: int
    json_types: dict[str, str] = field(default_factory=dict)  # jsonl: column -> inferred arrow type name
    # keep_columns=("*",): every column the input has but the id column (JSONL: every key, first seen first)
    every_column: tuple[str, ...] = ()
    delimiter: str | None = None  # CSV/TSV: a field delimiter other than the format's own (``csv_delimiter``)
    content_cuts: bool = False  # text files' parts end after rows chosen by their content (``_Cuts``)
    as_text: tuple[str, ...] = ()  # documents: the kinds read as their text, "html", "pdf", "docx" ... (``_as_text``)
    ocr: bool = False  # documents: PDFs' pages without text read by OCR (``_pdf_worker.Ocr``)
    attachments: bool = False  # e-mail: attachments of the kinds ``as_text`` read into their message's text
    archives: bool = False  # documents: archives read as folders of them; attachments: archives' files read
    grouped: bool = False  # files: runs of small files make parts of several files (``_grouped``)
    xml_records: tuple[str, ...] = ()  # XML: the elements that are its rows (PubMed's "PubmedArticle")
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def csv_delimiter(self) -> str:
        """The CSV/TSV field delimiter the input is read with."""
        return self.delimiter or _DELIMITERS.get(self.format, ",")

    @property
    def rows_as(self) -> str | None:
        """The markup each row's text is in, read as its text: "html" (``html_text`` on a text, table or XML
        file), "wiki" (``wiki_text``, but on a MediaWiki export's pages, read so by their own reader); else None."""
        if self.format in (InputFormat.DOCUMENTS, InputFormat.MBOX) or self.wiki_pages:
            return None
        return next((k for k in ("html", "wiki") if k in self.as_text), None)

    @property
    def wiki_pages(self) -> bool:
        """Whether the rows are a MediaWiki export's articles, read as wikitext (``_wiki.page_row``)."""
        return _wiki.reads_pages(self.as_text, self.xml_records)

    @property
    def rows(self) -> int:
        return len(self.shards) if self.format is InputFormat.DOCUMENTS else sum(s.rows for s in self.shards)

    def fingerprint(self) -> str:
        if self._fingerprint is None:  # of every file: a million documents' takes a second
            h = hashlib.sha256()
            if isinstance(self.shards, Documents):
                for _k, path, sha256 in self.shards.hashed(0, len(self.shards)):  # a row each
                    h.update(f"{_name(path)}\0{Documents.ROWS}\0{sha256}\n".encode())
            else:
                for s in self.shards:
                    h.update(f"{_name(s.path)}\0{s.rows}\0{s.sha256}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def part_key(self, part: PartSpec) -> str:
        """What a finished part was made from: its place (file name, rows, first line) and its input
        (text formats: the bytes of its rows, hashed by the planning scan; Parquet and Arrow: its
        file's fingerprint). A resume after an edit of the input keeps a part only if this is unchanged."""
        h = hashlib.sha256(self._place(part))
        h.update(self._content(part))
        return h.hexdigest()

    def _content(self, part: PartSpec) -> bytes:
        """The hash of a part's input: its bytes' (text formats), its file's (Parquet, Arrow), its
        files' (a part of several files)."""
        return (self.shards[part.shard].sha256 if self.format.columnar and part.files == 1 else part.sha256).encode()

    def rows_key(self, part: PartSpec) -> str:
        """What a finished part holds wherever its file lies among the others: ``part_key`` without the
        part's global row. A journal entry whose ``part_key`` no longer matches but whose ``rows_key``
        matches another part of this plan moved with its whole file (a file added or removed before
        its own, as new shards named by a hash or a UUID land among the old ones): ``moves``. With
        content-defined parts, its rows alone (and a CSV file's columns): a part moved within its file
        (rows deleted or inserted before it) or with its file renamed is found too."""
        shard = self.shards[part.shard]
        if self.content_cuts:
            h = hashlib.sha256(f"{part.rows}\0{shard.columns}\n".encode())
        else:
            h = hashlib.sha256(f"{_name(shard.path)}\0{part.start}\0{part.rows}\0{part.first_line}\n".encode())
        h.update(self._content(part))
        return h.hexdigest()

    def first_row(self, part: PartSpec) -> int:
        """The global row number of the part's first row (the default id)."""
        return self.shards[part.shard].first_row + part.start

    def alone(self, part: PartSpec) -> tuple[Plan, PartSpec]:
        """``part`` with a plan of the files it reads only (its first the plan's ``shards[0]``): what a
        Ray actor is sent with a part instead of the whole plan (a million documents' is hundreds of
        MB); its rows, ids and file name are the part's in the whole plan."""
        files = list(self.shards[part.shard:part.shard + self._files(part)])
        return (dataclasses.replace(self, shards=files, parts=[], _fingerprint=self.fingerprint()),
                dataclasses.replace(part, shard=0))  # fmt: skip

    def _files(self, part: PartSpec) -> int:
        """How many of the plan's files, from ``part.shard`` on, the part reads."""
        return part.rows if self.format is InputFormat.DOCUMENTS else part.files

    def documents(self, part: PartSpec) -> list[Shard]:
        """The files of a part of documents (``InputFormat.DOCUMENTS``), a row each."""
        return list(self.shards[part.shard:part.shard + part.rows])

    def check_unchanged(self, part: PartSpec) -> None:
        """Refuse to go on with ``part`` if a file it reads changed since it was planned."""
        if self._files(part) == 1:
            self.shards[part.shard].check_unchanged(part)
            return
        start, stop = part.shard, part.shard + self._files(part)
        planned: list[tuple[int, int] | None]
        if isinstance(self.shards, Documents):  # a part's every read: no Shard made unless one changed
            paths = list(self.shards.paths[start:stop])
            planned = [(size, mtime) for size, mtime in self.shards.stamps[start:stop].tolist()]
        else:
            docs = self.shards[start:stop]
            paths, planned = [d.path for d in docs], [d.stamp for d in docs]
        now: list[tuple[int, ...] | None]
        try:
            now = list(storage.scan_stamps(paths))
        except FileNotFoundError:
            now = [None] * len(paths)  # each file's own check names the one removed
        for k, (stamp, want) in enumerate(zip(now, planned, strict=True)):
            if stamp is None or (stamp[0], stamp[1]) != want:
                self.shards[start + k].check_unchanged(part)

    def moves(self, entries: dict[int, dict[str, Any]], kept: Collection[int], shift_ids: bool) -> dict[int, Moved]:
        """The journal entries (not ``kept`` where they are) that hold another part of this plan:
        {old index: ``Moved``}. ``shift_ids``: the ids are row numbers, which move with the part (its
        file's ids and its bad rows' ids); else they are the input's own and the part moves as it is.
        A part moved within its file (content-defined parts) has its bad rows' lines moved too."""
        free: dict[str, list[PartSpec]] = {}
        for p in self.parts:
            if p.index not in kept:
                free.setdefault(self.rows_key(p), []).append(p)
        found: dict[int, Moved] = {}
        for index, entry in sorted(entries.items()):
            places = [] if index in kept else free.get(entry.get("rows_key", ""), [])
            if not places or (shift_ids and not isinstance(entry.get("first_row"), int)):
                continue
            if self.content_cuts and not isinstance(entry.get("first_line"), int):
                continue
            part = places.pop(0)
            shift = self.first_row(part) - entry["first_row"] if shift_ids else 0
            lines = part.first_line - entry["first_line"] if self.content_cuts else 0
            whole = self.format is InputFormat.DOCUMENTS or part.files != 1  # its rows name their own files
            path = None if whole else self.shards[part.shard].path
            bad = [_moved_bad_row(b, shift, lines, path) for b in entry.get("bad", [])]
            moved = {**entry, "part": part.index, "file": part.name, "part_key": self.part_key(part),
                     "first_row": self.first_row(part), "bad": bad}  # fmt: skip
            if self.content_cuts:
                moved["first_line"] = part.first_line
            found[index] = Moved(moved, shift)
        return found

    def edited_from(self, record: Any) -> bool:
        """Whether an output made from the input ``record`` (its manifest's ``input``) was made from an
        earlier version of this folder of documents: one of them has a path under the input it had
        then. Every part may have changed (edits all over a small folder), and the folder is still this
        job's (other formats: none of its parts kept is another input's)."""
        if self.format is not InputFormat.DOCUMENTS or not isinstance(record, dict):
            return False
        names = set(self.shards.names) if isinstance(self.shards, Documents) else {s.name for s in self.shards}
        files = record.get("files")
        return isinstance(files, list) and any(isinstance(f, dict) and f.get("name") in names for f in files)

    def still_valid(self, index: int, entry: dict[str, Any]) -> bool:
        """Whether a journal entry's part may be kept by a run over this (edited) input."""
        if index >= len(self.parts):
            return False
        if "part_key" in entry:
            return bool(entry["part_key"] == self.part_key(self.parts[index]))
        return entry.get("input_sha256") == self._first_part_key(self.parts[index])

    def _place(self, part: PartSpec) -> bytes:
        shard = self.shards[part.shard]
        return f"{_name(shard.path)}\0{shard.first_row + part.start}\0{part.rows}\0{part.first_line}\n".encode()

    def _first_part_key(self, part: PartSpec) -> str:
        """The key of journals written before the planning scan hashed each part (``input_sha256``):
        the place, then the part's bytes themselves, read again here."""
        if part.files != 1:
            return ""  # parts of several files are younger than such journals
        h = hashlib.sha256(self._place(part))
        shard = self.shards[part.shard]
        if self.format.columnar:
            h.update(shard.sha256.encode())
            return h.hexdigest()
        nxt = self.parts[part.index + 1] if part.index + 1 < len(self.parts) else None
        end = nxt.byte_offset if nxt is not None and nxt.shard == part.shard else shard.size
        with storage.open_input(shard.path) as f:
            f.seek(part.byte_offset)
            left = end - part.byte_offset
            while left > 0:
                block = f.read(min(left, _BLOCK))
                if not block:
                    break
                h.update(block)
                left -= len(block)
        return h.hexdigest()


def _moved_bad_row(bad: dict[str, Any], shift: int, lines: int, path: str | None) -> dict[str, Any]:
    """A bad row of a moved part, as the part's run at its new place would list it: its row-number id
    shifted by ``shift``, its line by ``lines``, its file named as now (a file moved to another
    folder keeps its parts; ``path`` None: documents and parts of several files, whose rows' files a
    move keeps)."""
    out = dict(bad)
    if shift and isinstance(bad.get("id"), int):
        out["id"] = bad["id"] + shift
    if lines and isinstance(bad.get("line"), int):
        out["line"] = bad["line"] + lines
    if bad.get("file") is not None and path is not None:
        out["file"] = path
    return out


class _PartHashes:
    """The sha256 of each part's bytes, from its start to the next part's start (or the end of the
    file), while a scan reads the file once: the scan feeds every byte in order and tells each part's
    start when it finds it, which may be after those bytes were fed (a line is known whole only once
    its end is read), and says which bytes are ``settled`` (no part starts among them untold)."""

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self._h: Any = None  # the open part's hasher (none before the first part: a header, blank lines)
        self._pos = 0  # the file offset of _pending[0]
        self._pending = bytearray()

    def update(self, data: bytes) -> None:  # fed like a hashlib object
        self._pending += data

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self, offset: int) -> None:
        self.settled(offset)
        if self._h is not None:
            self.hashes.append(self._h.hexdigest())
        self._h = hashlib.sha256()

    def settled(self, offset: int) -> None:
        n = offset - self._pos
        if n <= 0:
            return
        if self._h is not None:
            with memoryview(self._pending) as m:
                self._h.update(m[:n])
        del self._pending[:n]
        self._pos = offset

    def finish(self) -> list[str]:
        self.settled(self._pos + len(self._pending))
        if self._h is not None:
            self.hashes.append(self._h.hexdigest())
            self._h = None
        return self.hashes


def find_inputs(
    spec: str | Path | list[str | Path], exclude: str | None = None
) -> tuple[InputFormat, list[str]]:
    """The files of ``spec`` (a file, a folder searched recursively, a glob, or a list of them; local
    or on an object store), sorted; none under ``exclude`` (the job's own output, which may sit inside
    an input folder)."""
    specs = spec if isinstance(spec, list) else [spec]
    files: list[str] = []
    for s in specs:
        files.extend(_expand(str(s)))
    files = storage.outside(files, exclude)
    if not files:
        raise InputError(f"no input files found at {specs!r}: expected files ending in {sorted(SUFFIXES)}")
    formats = {_format_of(f) for f in files}
    if len(formats) > 1:
        raise InputError(
            f"input mixes formats {sorted(f.value for f in formats)}; a job reads one format (convert the rest, "
            "or run one job per format into separate outputs)"
        )
    return formats.pop(), sorted(set(files), key=lambda f: PurePath(f).parts)


def find_documents(spec: str | Path | list[str | Path], exclude: str | None = None,
                   archives: bool = False) -> tuple[Sequence[str], list[str]]:  # fmt: skip
    """The files of ``spec`` as documents (``InputFormat.DOCUMENTS``), whatever their names: (files,
    their paths under their input: a folder's files relative to the folder, a glob's to the folder
    before its first wildcard, a file by its name), sorted by that path (``storage.walk_key``). A
    folder's hidden files and folders (a name starting with ``.``) are left out; ``_`` starts the
    names of documents too (``_index.md``, ``_posts/``). ``archives``: a zip or tar archive's files are
    documents (``_archives``), their paths the archive's path, then theirs in it (an archive given
    as the input: theirs in it); a tar's in the archive's order, which its reader follows."""
    specs = spec if isinstance(spec, list) else [spec]
    found: list[tuple[Sequence[str], list[str]]] = []
    order: dict[str, str] = {}  # a tar's files' sort keys (``_unpacked``)
    if archives:
        _archives.forget()  # what the archives hold now
    for s in map(str, specs):
        what = storage.kind(s)
        if what == "dir":
            found.append(storage.walk(s, hidden=(".",)))
        elif what == "file" and archives and _archives.is_archive(s):
            found.append(([s if is_uri(s) else str(Path(s))], [""]))  # the input: its files' paths their own
        elif what == "file":
            found.append(([s if is_uri(s) else str(Path(s))], [_name(s)]))
        elif glob.has_magic(s):
            base = s[:s.rfind("/", 0, min(s.find(c) for c in "*?[" if c in s)) + 1]
            matched = storage.glob_files(s)
            found.append((matched, [f[len(base):] if is_uri(f) else Path(f).relative_to(base or ".").as_posix()
                                    for f in matched]))  # fmt: skip
        else:
            raise InputError(f"input {s!r} does not exist (expected a file, a folder or a glob pattern)")
    if archives:
        found = [_unpacked(fs, ns, order) if any(not n or _archives.is_archive(n) for n in ns) else (fs, ns)
                 for fs, ns in found]  # fmt: skip
    files, names = found[0]
    if len(found) > 1:
        files, names = [f for fs, _ns in found for f in fs], [n for _fs, ns in found for n in ns]
    del found
    inner = set(storage.inside(files, exclude))
    if inner:
        files = [f for k, f in enumerate(files) if k not in inner]
        names = [n for k, n in enumerate(names) if k not in inner]
    if not files:
        raise InputError(f"no input files found at {specs!r}")
    if not order and len(specs) == 1 and all(storage.walk_key(a) < storage.walk_key(b)
                                             for a, b in itertools.pairwise(names)):  # fmt: skip
        return files, names  # a folder walked in order (a million documents: no second list of them)
    pairs = sorted(dict(zip(files, names, strict=True)).items(),
                   key=lambda fn: order.get(fn[1]) or storage.walk_key(fn[1]))  # fmt: skip
    for (f1, n1), (f2, n2) in itertools.pairwise(pairs):
        if n1 == n2:
            raise InputError(f"two documents have the path {n1!r} under their inputs ({f1}, {f2}): a document's path "
                             "names its row; give their common folder as the input instead")  # fmt: skip
    return [f for f, _n in pairs], [n for _f, n in pairs]


def _unpacked(files: Sequence[str], names: list[str], order: dict[str, str]) -> tuple[list[str], list[str]]:
    """``files`` (named ``names``) with each archive replaced by its files (``_archives.members``),
    named by the archive's name, ``/``, their path in it (an archive named "": their path); one that
    cannot be read stays, a document (a bad row that says why; the input itself: refused). A tar's files get sort keys in
    ``order`` that keep them where the archive's name sorts, in the archive's order: a compressed
    tar is read forward only, and ``tar`` writes a folder's files in the order it lists them."""
    out_files: list[str] = []
    out_names: list[str] = []
    for f, n in zip(files, names, strict=True):
        if n and not _archives.is_archive(n):
            out_files.append(f)
            out_names.append(n)
            continue
        try:
            inside = _archives.members(f)
        except _archives.ArchiveError as e:
            if not n:  # the input itself
                raise InputError(f"input {f!r} is {e}") from None
            out_files.append(f)
            out_names.append(n)
            continue
        out_files += [_archives.locator(f, m) for m in inside]
        named = [f"{n}/{m}" if n else m for m in inside]
        out_names += named
        if _archives.in_order(f):
            start = storage.walk_key(f"{n}/") if n else "\0"
            order.update((name, f"{start}{k:012d}") for k, name in enumerate(named))
    return out_files, out_names


def _expand(s: str) -> list[str]:
    what = storage.kind(s)
    if what == "dir":
        found = list(storage.walk(s, hidden=(".", "_"))[0])
        known = []
        for f in found:
            if _suffixes(f)[0] in SUFFIXES:
                _format_of(f)  # a compressed Parquet file is refused, not left out
                known.append(f)
        if any(_suffixes(f)[0] != ".xml" for f in known):  # XML beside rows of another format: metadata, left out
            known = [f for f in known if _suffixes(f)[0] != ".xml"]
        if not known and found:  # a mail client's folder: mailboxes named as their folders, no suffix
            boxes = [f for f in found if _suffixes(f) == ("", None) and _is_mailbox(f)]
            if boxes:
                return boxes
            raise InputError(f"folder {s!r} holds no file ending in {sorted(SUFFIXES)}, nor a mailbox without a "
                             "suffix; --documents (documents=True) reads each file as one text")  # fmt: skip
        return known
    if what == "file":
        _format_of(s)
        return [s if is_uri(s) else str(Path(s))]
    if glob.has_magic(s):
        return storage.glob_files(s)
    raise InputError(f"input {s!r} does not exist (expected a file, a folder or a glob pattern)")


def _name(path: str) -> str:
    """A file's name (its last path component), local or URI."""
    return path[path.rfind("/") + 1:]


def _suffixes(path: str) -> tuple[str, str | None]:
    """(the format's suffix, the compression's suffix or None): ``a.jsonl.gz`` -> (".jsonl", ".gz")."""
    name = PurePosixPath(_name(path))
    suffix = name.suffix.lower()
    if suffix in storage.CODECS:
        return PurePosixPath(name.stem).suffix.lower(), suffix
    return suffix, None


def _is_mailbox(path: str) -> bool:
    """Whether a file begins as an mbox does (``From ``): a mail client's folder (Thunderbird's
    ``Inbox``) or an archive (Mailman's) is one without an ``.mbox`` suffix."""
    try:
        return storage.head(path, len(_mbox.OPENS)) == _mbox.OPENS
    except OSError:
        return False


def _format_of(path: str) -> InputFormat:
    suffix, codec = _suffixes(path)
    if not suffix and codec is None and _is_mailbox(path):
        return InputFormat.MBOX
    if suffix in SUFFIXES:
        if codec is not None and SUFFIXES[suffix].columnar:
            kind = "Parquet" if SUFFIXES[suffix] is InputFormat.PARQUET else "Arrow"
            raise InputError(f"input file {path!r} is a compressed {kind} file; {kind} compresses its own "
                             "columns where asked to: decompress it")  # fmt: skip
        return SUFFIXES[suffix]
    why = _REFUSED.get(suffix)
    hint = f" ({why})" if why else ""
    raise InputError(
        f"input file {path!r} has extension {suffix!r}{hint}; expected one of {sorted(SUFFIXES)}, text formats "
        f"also compressed ({', '.join(sorted(storage.CODECS))}), or --documents (documents=True) to read each file "
        "as one text"
    )


def plan_input(
    spec: str | Path | list[str | Path],
    rows_per_part: int,
    *,
    text: str | TextSource,
    id_column: str | None,
    keep_columns: tuple[str, ...],
    log: Any = None,
    exclude: str | None = None,
    scanned: Callable[[int], None] | None = None,
    delimiter: str | None = None,
    record: ScanRecord | None = None,
    content_cuts: bool = False,
    documents: bool = False,
    as_text: tuple[str, ...] = (),
    ocr: bool = False,
    attachments: bool = False,
    archives: bool = False,
    group_files: bool = True,
    xml_records: tuple[str, ...] = (),
    scanner: Scanners | None = None,
    unpack: Unpacker | None = None,
) -> Plan:
    """Scan the input once and cut it into parts of up to ``rows_per_part`` rows: a file's rows, or
    (``group_files``, files but documents) several small files whole (``_grouped``).
    ``text``: the column holding the texts, or a ``TextSource``. ``scanned(n)``: n more rows found
    (a progress bar for a long scan). ``delimiter``: CSV/TSV fields' (default ``,`` and tab).
    ``record``: an earlier scan's findings (``_scan_record``): a file unchanged since is not read
    again; this scan's findings go into it. ``content_cuts``: text files' parts end after rows
    chosen by their content, ``rows_per_part`` rows on average (``_Cuts``). ``documents``: each file
    is a row (``find_documents``), its columns ``DOCUMENT_COLUMNS``; a part holds ``rows_per_part``
    documents on average, ending after one whose path's hash hits, so that a document added or
    removed changes the part it lies in only; ``as_text``: the kinds of documents read as their text
    (``_as_text.asked``: HTML pages, PDFs, Office and OpenDocument files, EPUB books ...; "html" or "wiki"
    without documents: rows' text is read as that markup, ``Plan.rows_as``, a MediaWiki export's pages
    as articles, ``Plan.wiki_pages``); ``ocr``:
    PDFs' pages without text are read by OCR; ``attachments``: e-mail messages' attachments of those
    kinds are read into their message's text (documents with ``eml`` among the kinds, or mailboxes);
    ``archives``: zip and tar archives among the documents are read as folders of them (``find_documents``),
    and with ``attachments`` the files of those attached to messages are read as attachments are.
    ``xml_records``: an XML file's rows are its elements of these names, each opened on a line of its
    own (``_xml.record_row``); with "wiki" and the records ``page``: a MediaWiki export's articles
    (``_wiki.page_row``; other pages are not rows). ``scanner``: where several files of
    ``SCAN_ELSEWHERE_BYTES`` in all are scanned (worker processes, a Ray cluster), many at once.
    ``unpack``: worker processes that decompress a large compressed file scanned here ahead of its
    scan, several ranges of it at once (``_unpack``)."""
    source = TextSource.of(text)
    tell = scanned or (lambda _n: None)
    rows_per_part = check_int(rows_per_part, "rows_per_part")
    check_delimiter(delimiter)
    for kind in KINDS:
        if kind.name in as_text and not documents and not attachments and kind.name not in ("html", "wiki"):  # rows: below
            raise InputError(f"{kind.name}_text (--{kind.name}-text) reads {kind.documents} documents as their text: it "
                             f"needs documents=True (--documents)")  # fmt: skip
    if attachments and ((documents and "eml" not in as_text) or len(set(as_text) - {"eml"}) == 0):
        raise InputError("attachment_text (--attachment-text) reads e-mail attachments of the kinds asked for: it needs "
                         "one of them (--pdf-text, --docx-text, ...) and messages (--documents --eml-text, or a mailbox)")
    if archives and not documents and not attachments:
        raise InputError("archives (--archives) reads the files in zip and tar archives as documents: it needs documents=True "
                         "(--documents), or attachment_text (--attachment-text) for archives attached to e-mail")
    if ocr and "pdf" not in as_text:
        raise InputError("ocr (--ocr) reads the scanned pages of PDFs: it needs pdf_text=True (--pdf-text)")
    if "pdf" in as_text:
        check_pdfium()
    if ocr:
        check_ocr()  # installed, before the scan
    if "image" in as_text:
        check_ocr("image_text (--image-text) reads images' text")
    if "wiki" in as_text:
        _wiki.check_installed()
    with storage.listing():  # the objects listed keep their listing's stamps, taken below: no request each
        if documents:
            fmt, content_cuts = InputFormat.DOCUMENTS, True
            files, doc_names = find_documents(spec, exclude, archives)
        else:
            fmt, files = find_inputs(spec, exclude)
            doc_names = [""] * len(files)
        if fmt is InputFormat.XML and "wiki" in as_text and not xml_records:
            xml_records = (_wiki.PAGE,)  # wikitext in XML: a MediaWiki export's pages
        if (fmt is InputFormat.XML) != bool(xml_records):
            raise InputError(
                f"xml_record (--xml-record) {','.join(xml_records)!r} names the elements of an XML file that are its rows; "
                f"this input is {fmt.value}" if xml_records else
                f"{files[0]} is XML: pass --xml-record NAME (xml_record=) to read a row per element NAME in it (a "
                "PubMed baseline file's PubmedArticle), or --documents --xml-text to read each file as one text")  # fmt: skip
        for name, markup in (("html", "HTML pages as their visible text"), ("wiki", "wikitext as its text")):
            if name in as_text and not documents and not attachments and fmt in (InputFormat.MBOX, InputFormat.WARC):
                what = "a mailbox's messages" if fmt is InputFormat.MBOX else "a WARC file's pages (HTML too)"
                raise InputError(f"{name}_text (--{name}-text) reads {markup}: documents (--documents), rows of a "
                                 f"text, table or XML file, or e-mail attachments (--attachment-text); {what} are "
                                 "read as their text already")  # fmt: skip
        if {"html", "wiki"} <= set(as_text) and not documents and not attachments:
            raise InputError("html_text (--html-text) and wiki_text (--wiki-text) each read rows' text as their markup: "
                             "rows are in one of them; ask for the one they are in")  # fmt: skip
        wiki_pages = _wiki.reads_pages(as_text, xml_records)  # records named: an XML input (refused above else)
        if delimiter is not None and fmt not in _DELIMITERS:
            raise InputError(f"csv_delimiter (--csv-delimiter) {delimiter!r} is for .csv and .tsv input; this input is "
                             f"{fmt.value}")  # fmt: skip
        delimiter = None if delimiter == _DELIMITERS.get(fmt) else delimiter
        if content_cuts and fmt.columnar:
            raise InputError(f"content-defined parts (--content-defined-parts) are for text input (.jsonl, .csv, .tsv, "
                             f".txt), whose parts are checked row span by row span; this input is {fmt.value}, whose "
                             "files' parts are kept only while the whole file is unchanged")  # fmt: skip
        if fmt is InputFormat.TXT and (id_column or keep_columns):
            raise InputError(".txt input has no columns: --id-column and --keep-columns need .jsonl, .csv or .parquet")
        if fmt is InputFormat.TXT and source.template is not None:
            raise InputError(f".txt input has no columns: --text-template ({source.template!r}) needs .jsonl, .csv or "
                             ".parquet")  # fmt: skip
        every = keep_columns == (ALL_COLUMNS,)
        wanted = tuple(dict.fromkeys(c for c in (id_column, *(() if every else keep_columns)) if c))
        shards: Sequence[Shard] = []
        parts: list[PartSpec] = []
        jsonl = fmt is InputFormat.JSONL
        kinds: dict[str, set[str]] = {c: set() for c in wanted} if jsonl else {}
        if record is not None:  # what the findings depend on beside each file's bytes
            record.start({"format": fmt.value, "rows_per_part": rows_per_part, "delimiter": delimiter,
                          "sampled": list(wanted) if jsonl else [], "every_key": every and jsonl,
                          "cuts": "content" if content_cuts else "rows",
                          **({"xml_records": list(xml_records)} if xml_records else {}),
                          **({"records_kept": "wiki articles"} if wiki_pages else {}),
                          **({"records_end": "content length"} if fmt is InputFormat.WARC else {})})  # fmt: skip
        stamps = storage.scan_stamp_rows(files) if record is not None else None
    rows = record.rows(files, stamps) if record is not None and stamps is not None else np.full(len(files), -1)
    if documents:
        shards = docs = _document_shards(files, doc_names, stamps, rows, record, tell, log)
        parts = _document_parts(docs, _Cuts(rows_per_part, True))
        _check_columns(docs[0], fmt, source, wanted, delimiter)
    else:
        files_shards: list[Shard] = []
        known = [_known(record, int(row), path, stamps[k] if stamps is not None else None)
                 for k, (path, row) in enumerate(zip(files, rows, strict=True))]  # fmt: skip
        reused = sum(k is not None for k in known)
        if log is not None and reused:
            log(_reused(reused, len(files)))
        at = [k for k, found in enumerate(known) if found is None]
        unknown = [files[k] for k in at]
        told = threading.Lock()

        def scan(named: int) -> _Found:  # objects are scanned several at once: tell from one thread at a time
            return _scan_file(unknown[named], fmt, _Cuts(rows_per_part, content_cuts), delimiter, wanted, every,
                              lambda n: _locked(told, tell, n), record, log, named, len(unknown),
                              tuple(stamps[at[named]].tolist()) if stamps is not None else None, xml_records,
                              wiki_pages, elsewhere, unpack)  # fmt: skip

        elsewhere, at_once = _scanned_elsewhere(scanner, unknown, [stamps[k] for k in at] if stamps is not None else None,
                                                log)  # fmt: skip
        remote = [elsewhere is not None or is_uri(u) for u in unknown]
        scans = storage.each_ahead(scan, range(len(unknown)), remote, at_once)
        first_row = 0
        for found in known:
            if found is not None:
                shard, starts, hashes, found_kinds = found
                tell(shard.rows)
            else:
                shard, starts, hashes, found_kinds = next(scans)
            shard = dataclasses.replace(shard, first_row=first_row)
            _merge_kinds(kinds, found_kinds)
            _check_columns(shard, fmt, source, wanted, delimiter)
            for k, (start, offset, line) in enumerate(starts):
                stop = starts[k + 1][0] if k + 1 < len(starts) else shard.rows
                parts.append(PartSpec(len(parts), len(files_shards), start, stop, offset, line,
                                      hashes[k] if hashes else ""))  # fmt: skip
            files_shards.append(shard)
            first_row += shard.rows
        shards, parts = _grouped(files_shards, parts, rows_per_part) if group_files else (files_shards, parts)
    if attachments and not documents and fmt is not InputFormat.MBOX:
        raise InputError(f"attachment_text (--attachment-text) reads e-mail attachments: it needs messages (--documents "
                         f"--eml-text, or a mailbox); this input is {fmt.value}")  # fmt: skip
    plan = Plan(fmt, shards, parts, rows_per_part, delimiter=delimiter, content_cuts=content_cuts, as_text=as_text,
                ocr=ocr, attachments=attachments, archives=archives, grouped=group_files and not documents,
                xml_records=xml_records)  # fmt: skip
    absent = [c for c, k in kinds.items() if k == {"missing"}]
    if absent:  # in no row at all: a misspelled name, not rows without a value
        raise InputError(
            f"no row of the input has the key {absent[0]!r} (--id-column / --keep-columns / --where); the first row's keys "
            f"are {_first_keys(files)}"
        )
    if fmt is InputFormat.JSONL:
        plan.json_types = {c: _json_type(k) for c, k in kinds.items()}
    if every:
        names = kinds if fmt is InputFormat.JSONL else shards[0].columns if shards else ()
        plan.every_column = tuple(c for c in names if c != id_column)
        for shard in shards:  # the first file's columns, in every file
            _check_columns(shard, fmt, source, plan.every_column, delimiter)
    return plan


_Found = tuple[Shard, list[tuple[int, int, int]], list[str], dict[str, set[str]]]
# files scanned elsewhere: ``scan_content``'s arguments but ``tell`` to its result (``_scan_workers``)
Scanner = Callable[..., _Found]
SCAN_ELSEWHERE_BYTES = 256 << 20  # files to scan that a scanner takes: more than one, of this many bytes in all


class Scanners(Protocol):
    """Where files are scanned besides this process (worker processes, a Ray cluster; ``place`` says
    which, ``objects``: whether objects are scanned there too, else by this process's threads):
    ``start`` readies it and says how many scans it runs at once, ``scan`` is one file's (``Scanner``)."""

    place: str
    objects: bool

    def start(self) -> int: ...

    def scan(self, *args: Any) -> _Found: ...


def _scanned_elsewhere(scanners: Scanners | None, files: Sequence[str], stamps: list[np.ndarray] | None,
                       log: Any) -> tuple[Scanner | None, int | None]:  # fmt: skip
    """The scanner ``files`` go to, and how many at once: ``scanners``' where there are several of
    ``SCAN_ELSEWHERE_BYTES`` in all (their sizes in their ``stamps``), else None (here)."""
    if (scanners is None or stamps is None or len(stamps) < 2 or sum(int(s[0]) for s in stamps) < SCAN_ELSEWHERE_BYTES
            or (not scanners.objects and any(map(is_uri, files)))):  # fmt: skip
        return None, None
    at_once = scanners.start()
    if at_once < 2 and not scanners.objects:  # one worker process: no faster than this one
        return None, None
    if log is not None:
        log(f"scanning {len(stamps)} file(s) {scanners.place}, {at_once} at once")
    return scanners.scan, at_once


def _locked(lock: threading.Lock, fn: Callable[[int], None], n: int) -> None:
    with lock:
        fn(n)


def _scan_file(
    path: str, fmt: InputFormat, cuts: _Cuts, delimiter: str | None, wanted: tuple[str, ...],
    every: bool, tell: Callable[[int], None], record: ScanRecord | None, log: Any, named: int, to_scan: int,
    planned: tuple[int, ...] | None = None, xml_records: tuple[str, ...] = (), wiki_pages: bool = False,
    scanner: Scanner | None = None, unpack: Unpacker | None = None,
) -> _Found:
    """Read one file (``scan_content``; where ``scanner`` says, elsewhere): its shard (stamped), its
    parts' (row, offset, line) and hashes, and (JSONL) the JSON kinds of the ``wanted`` keys (of
    every key with ``every``) over its rows; kept in ``record``. ``planned``: its stamp taken by the
    plan (``storage.scan_stamp_rows``), else taken here. ``unpack``: worker processes that
    decompress it ahead of the scan here, where it is large and compressed (``_unpack.reader``)."""
    scanned_at = time.time()
    stamp = storage.unpadded(planned) if planned is not None else storage.scan_stamp(path)
    ahead = _unpack.reader(path, stamp[0], unpack) if scanner is None and unpack is not None else None
    if log is not None and named < _NAMED_FILES:
        how = f"; decompressed by {_unpack.at_once(unpack)} worker processes" if ahead is not None and unpack else ""
        log(f"scanning {path} ({stamp[0] / 1e6:.1f} MB{how})")
    elif log is not None and named == _NAMED_FILES:  # a folder of thousands of shards: not a line each
        log(f"scanning {to_scan - named} more file(s)")
    if scanner is None:
        shard, starts, hashes, kinds = scan_content(path, fmt, cuts, delimiter, wanted, every, xml_records, wiki_pages,
                                                    tell, ahead)  # fmt: skip
    else:  # elsewhere (a Ray cluster's task): its rows told once it is done
        shard, starts, hashes, kinds = scanner(path, fmt, cuts, delimiter, wanted, every, xml_records, wiki_pages)
        tell(shard.rows)
    if storage.scan_stamp(path) != stamp:
        raise InputError(f"{path} changed while it was being scanned; run again once the input stays as it is")
    shard = dataclasses.replace(shard, stamp=(stamp[0], stamp[1]))
    if record is not None:
        record.add(path, stamp, scanned_at, _findings(shard, starts, hashes, kinds))
    return shard, starts, hashes, kinds


def scan_content(path: str, fmt: InputFormat, cuts: _Cuts, delimiter: str | None, wanted: tuple[str, ...], every: bool,
                 xml_records: tuple[str, ...] = (), wiki_pages: bool = False,
                 tell: Callable[[int], None] = lambda n: None, ahead: Reader | None = None) -> _Found:  # fmt: skip
    """One file's rows, read: its shard (first row 0, not stamped), its parts' (row, offset, line) and
    hashes, and (JSONL) the JSON kinds of the ``wanted`` keys (of every key with ``every``) over its
    rows; ``tell`` the rows as they are found. In any process that reads the file (a Ray task).
    ``ahead``: its reader, decompressed ahead by worker processes (``_unpack.reader``)."""
    first_row = 0
    kinds: dict[str, set[str]] = {c: set() for c in wanted} if fmt is InputFormat.JSONL else {}
    if fmt is InputFormat.PARQUET:
        shard, starts, hashes = _scan_parquet(path, first_row, cuts.per)
        tell(shard.rows)
    elif fmt is InputFormat.ARROW:
        shard, starts, hashes = _scan_arrow(path, first_row, cuts.per)
        tell(shard.rows)
    elif fmt in (InputFormat.CSV, InputFormat.TSV):
        shard, starts, hashes = _scan_csv(path, first_row, cuts, delimiter or _DELIMITERS[fmt], tell, ahead)
    elif fmt is InputFormat.MBOX:
        shard, starts, hashes = _scan_records(path, first_row, cuts, tell, _opening, _check_mbox, _mbox.COLUMNS,
                                              ahead=ahead)  # fmt: skip
    elif fmt is InputFormat.WARC:
        shard, starts, hashes = _scan_records(path, first_row, cuts, tell, lambda d, b: _opening_by(_warc.OPENING, d, b),
                                              _check_warc, _warc.COLUMNS, _warc.is_row, _warc.extent, ahead)  # fmt: skip
        if not shard.rows:
            raise InputError(f"{path} has no page: no WARC record of a page's text (WARC-Type conversion, as in a WET "
                             "file), of an HTTP response of status 200 whose Content-Type is HTML or plain text "
                             "(WARC-Type response), or of such a resource (a record begins with the line 'WARC/1.0' "
                             "ended CRLF)")  # fmt: skip
    elif fmt is InputFormat.XML:
        opens = _xml.records_opening(xml_records)
        shard, starts, hashes = _scan_records(path, first_row, cuts, tell, lambda d, b: _opening_by(opens, d, b),
                                              _check_xml, ("text",), _wiki.is_article if wiki_pages else None,
                                              ahead=ahead)  # fmt: skip
        if not shard.rows and wiki_pages:
            raise InputError(f"{path} has no article: no <page> of the main namespace (<ns>0</ns>) that is not a redirect "
                             "(--wiki-text reads a MediaWiki export's articles, each page's element opened on a line of "
                             "its own, as Wikipedia's dumps and Special:Export write them)")  # fmt: skip
        if not shard.rows:
            raise InputError(f"{path} has no line that opens a <{'>, <'.join(xml_records)}> element (--xml-record): "
                             "each record is found where a line begins with its opening tag (after its indentation), "
                             "as PubMed's files and other record dumps write them")  # fmt: skip
    else:
        shard, starts, hashes = _scan_lines(path, first_row, cuts, skip_empty=fmt is InputFormat.JSONL,
                                            kinds=kinds, every_key=every, tell=tell, ahead=ahead)  # fmt: skip
    return shard, starts, hashes, kinds


def _findings(shard: Shard, starts: list[tuple[int, int, int]], hashes: list[str],
              kinds: dict[str, set[str]]) -> dict[str, Any]:  # fmt: skip
    """What a scan found in a file, as the scan record keeps it (``_known`` reads it back)."""
    return {"rows": shard.rows, "size": shard.size, "sha256": shard.sha256, "columns": list(shard.columns),
            "starts": [list(s) for s in starts], "hashes": hashes, "kinds": {c: sorted(k) for c, k in kinds.items()},
            "seeks": [list(s) for s in shard.seeks]}


def _known(record: ScanRecord | None, row: int, path: str, stamp: np.ndarray | None) -> _Found | None:
    """An unchanged file's findings from ``record`` (first row 0; ``row`` its row there, ``record.rows``),
    or None: not recorded, changed, or recorded in a shape this version does not read (then it is
    scanned again)."""
    if record is None or stamp is None or row < 0:
        return None
    entry = record.findings(row)
    if entry is None:
        return None
    try:
        shard = Shard(path, int(entry["rows"]), 0, int(entry["size"]), str(entry["sha256"]),
                      tuple(str(c) for c in entry["columns"]), stamp=(int(stamp[0]), int(stamp[1])),
                      seeks=tuple((int(d), int(c)) for d, c in entry.get("seeks", ())))  # fmt: skip
        starts = [(int(r), int(o), int(n)) for r, o, n in entry["starts"]]
        hashes = [str(h) for h in entry["hashes"]]
        kinds = {str(c): {str(k) for k in v} for c, v in entry["kinds"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if hashes and len(hashes) != len(starts):
        return None
    record.keep(row)
    return shard, starts, hashes, kinds


def _merge_kinds(kinds: dict[str, set[str]], found: dict[str, set[str]]) -> None:
    """Add one file's JSON kinds (``_sample_kinds`` over its rows alone) to those of the files before
    (a key first met in a file, every key sampled, is marked missing from the rows before)."""
    for c, k in found.items():
        kinds.setdefault(c, {"missing"}).update(k)


def _first_keys(files: Sequence[str]) -> list[str]:
    for path in files:
        with storage.open_input(path) as f:
            for line in f:
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        return []
                    return list(obj) if isinstance(obj, dict) else []
    return []


def _check_columns(shard: Shard, fmt: InputFormat, source: TextSource, wanted: tuple[str, ...],
                   delimiter: str | None = None) -> None:  # fmt: skip
    if fmt in (InputFormat.TXT, InputFormat.JSONL, InputFormat.XML):
        return  # txt has none; a jsonl row without a column, an XML record without it: a bad row (or its default)
    missing = [c for c in (*source.columns, *wanted) if c not in shard.columns]
    if missing and fmt is InputFormat.DOCUMENTS:
        raise InputError(f"documents have no column {missing[0]!r}: each file is a row of the columns "
                         f"{list(DOCUMENT_COLUMNS)} (its path under the input, its content)")  # fmt: skip
    if missing:
        text = "--text-template" if source.template is not None else "--text-column"
        raise InputError(
            f"{shard.path} has no column {missing[0]!r}; its columns are {list(shard.columns)} "
            f"(set {text} / --id-column / --keep-columns / --where; with --keep-columns '*' every file needs the first's columns)"
            + _other_delimiter(shard.columns, fmt, delimiter)
        )


def _other_delimiter(header: tuple[str, ...], fmt: InputFormat, delimiter: str | None) -> str:
    """A hint where a CSV header reads as one column that another delimiter would split (a CSV saved
    by a spreadsheet in a locale whose decimal mark is the comma uses ``;``)."""
    if fmt not in _DELIMITERS or len(header) != 1:
        return ""
    used = delimiter or _DELIMITERS[fmt]
    for other in (";", "\t", "|", ","):
        if other != used and other in header[0]:
            shown = "'\\t'" if other == "\t" else repr(other)
            return f"; its header looks separated by {shown}: pass --csv-delimiter {shown} (csv_delimiter=)"
    return ""


# -- text formats ------------------------------------------------------------------------------------


class _Cuts:
    """Which rows of one text file open a part: every ``per``-th, or (``content``) the row after one
    whose content hash hits (one row in ``per - min`` on average), at least ``per // 4`` rows and at
    most ``4 * per`` after the part's first: content-defined chunking, as backup tools cut files,
    with rows for bytes. Rows deleted or inserted then change the cuts around them only, and the
    parts after them hold the same rows as before (at other row numbers), which a resume moves."""

    def __init__(self, per: int, content: bool) -> None:
        self.per, self.content = per, content
        self.min = max(1, per // 4)
        self.max = 4 * per
        self.divisor = max(1, per - self.min)
        self.start = 0  # the row that opened the current part
        self.deferred: int | None = None  # a part opened by the row after the last one seen

    def hashes(self, data: bytes, begins: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
        """The content hashes of rows ``data[begins[k]:ends[k]]`` (None: rows are cut by number)."""
        if not self.content:
            return None
        with memoryview(data) as m:
            return np.array([zlib.crc32(m[b:e], _SEED) for b, e in zip(begins.tolist(), ends.tolist(), strict=True)],
                            np.uint64)  # fmt: skip

    def opening(self, first: int, count: int, hashes: np.ndarray | None) -> list[int]:
        """Of the file's rows ``first .. first + count - 1`` (each call the rows after the last),
        those that open a part (the file's first row does); ``hashes`` theirs (``hashes``)."""
        if hashes is None:
            return list(range(-(-first // self.per) * self.per, first + count, self.per))
        opened: list[int] = [0] if first == 0 and count else []
        if self.deferred is not None and self.deferred == first and count:
            opened.append(first)
        self.deferred = None
        end = first + count  # the row after the last one here
        for row in (np.flatnonzero(hashes % self.divisor == 0) + first + 1).tolist():
            self._forced(row - 1, opened)
            if row - self.start >= self.min:
                self.start = row
                if row < end:
                    opened.append(row)
                else:
                    self.deferred = row
        self._forced(end - 1, opened)
        return opened

    def opens(self, row: int, crc: int) -> bool:
        """``opening`` for one row (``crc`` its hash), as a CSV scan asks record by record."""
        if not self.content:
            return row % self.per == 0
        opened = row == 0 or self.deferred == row
        self.deferred = None
        if row - self.start >= self.max:  # forced
            self.start += self.max
            opened = True
        if crc % self.divisor == 0 and row + 1 - self.start >= self.min:
            self.start = self.deferred = row + 1
        return opened

    def _forced(self, last: int, opened: list[int]) -> None:
        """Open parts at ``max`` rows where no hit did, up to the row ``last``."""
        while last - self.start >= self.max:
            self.start += self.max
            opened.append(self.start)


_SEED = 0x5BD1E995  # so that an empty row's hash is not 0, a hit for every divisor


def _scan_lines(
    path: str, first_row: int, cuts: _Cuts, *, skip_empty: bool, kinds: dict[str, set[str]],
    tell: Callable[[int], None], every_key: bool = False, ahead: Reader | None = None,
) -> tuple[Shard, list[tuple[int, int, int]], list[str]]:
    """Rows = lines (jsonl: non-empty lines), cut into parts by ``cuts``. Returns the shard, (row,
    byte offset, line) per part start, and each part's sha256. ``kinds``: the JSON kinds of these
    keys over every row (``_sample_kinds``); of every key with ``every_key``."""
    sample = bool(kinds) or every_key
    h = hashlib.sha256()
    ph = _PartHashes()
    starts: list[tuple[int, int, int]] = []
    rows = lines = 0
    carry, base = b"", 0  # the unfinished last line of the previous block, and its offset
    with storage.open_input(path, ahead=ahead) as f:
        _check_utf8(path, f)
        while True:
            block = f.read(_BLOCK)
            h.update(block)
            ph.update(block)
            data = carry + block if carry else block
            if not block:
                if data and (not skip_empty or data.strip(b"\r")):  # a last line without a newline
                    last = cuts.hashes(data, np.array([0]), np.array([len(data)]))
                    _mark_starts(starts, np.array([base]), np.array([lines + 1]), rows, cuts, last, ph)
                    if sample:
                        _sample_kinds(data, np.array([0]), np.array([len(data)]), kinds, every_key)
                    rows += 1
                    tell(1)
                break
            arr = np.frombuffer(data, np.uint8)
            ends = np.flatnonzero(arr == 10)
            if not len(ends):
                carry = data
                continue
            begins = np.concatenate(([0], ends[:-1] + 1))
            is_row = np.ones(len(ends), bool)
            if skip_empty:
                length = ends - begins
                cr = np.zeros(len(ends), np.int64)
                cr[length > 0] = arr[ends[length > 0] - 1] == 13
                is_row = length - cr > 0
            row_hashes = cuts.hashes(data, begins[is_row], ends[is_row])
            _mark_starts(starts, base + begins[is_row], lines + 1 + np.flatnonzero(is_row), rows, cuts, row_hashes, ph)
            if sample:
                _sample_kinds(data, begins[is_row], ends[is_row], kinds, every_key)
            rows += int(is_row.sum())
            tell(int(is_row.sum()))
            lines += len(ends)
            cut = int(ends[-1]) + 1
            carry, base = data[cut:], base + cut
            ph.settled(base)  # every part starting before the unfinished last line is known
        seeks = _seek_points(storage.member_starts(f), starts)
    return Shard(path, rows, first_row, base + len(carry), h.hexdigest(), seeks=seeks), starts, ph.finish()


RECORD_KEY = 64 << 10  # a message's content hash (content-defined parts) is of its first so many bytes
# a MediaWiki page, a WARC record is a row or not by its first bytes, which the scan holds (``_scan_records``' ``keep``)
assert _wiki.RECORD_HEAD <= RECORD_KEY and _warc.HEAD <= RECORD_KEY


def _scan_records(path: str, first_row: int, cuts: _Cuts, tell: Callable[[int], None],
                  opening: Callable[[bytes, np.ndarray], np.ndarray], check: Callable[[str, Any], None],
                  columns: tuple[str, ...], keep: Callable[[bytes], bool] | None = None,
                  extent: Callable[[bytearray], int | None] | None = None, ahead: Reader | None = None,
                  ) -> tuple[Shard, list[tuple[int, int, int]], list[str]]:  # fmt: skip
    """Rows = the records of a file whose records each begin on a line that ``opening`` picks (an
    mbox's messages, ``_mbox``: a line beginning ``From ``; an XML file's records), cut into parts by
    ``cuts``, as ``_scan_lines`` cuts lines; ``check`` refuses a file that is not of the kind. A
    record's content hash is of its first ``RECORD_KEY`` bytes, a message's headers (Message-ID,
    Date) among them: the ``From `` lines alone repeat (a mail client writes one date for a whole
    folder it saves), which would leave every cut to the forced ones and make an edit move no part.
    ``keep``: only the records it takes by those bytes are rows (a MediaWiki export's articles).
    ``extent``: a record's size by those bytes (a WARC record's ``Content-Length``), within which a
    line that ``opening`` picks is the record's own (None: not known, the record ends at the next)."""
    h = hashlib.sha256()
    ph = _PartHashes()
    starts: list[tuple[int, int, int]] = []
    rows = lines = 0
    carry, base = b"", 0  # the unfinished last line of the previous block, and its offset
    opened: tuple[int, int] | None = None  # the last message's offset and line, while its hash is not known
    key = bytearray()  # its first bytes read so far
    until = 0  # where the last record opened ends by its ``extent`` (0: not known)

    def emit(found: list[tuple[int, int, int]]) -> None:  # messages whose hashes are known: (offset, line, hash)
        nonlocal rows
        if found:
            got = np.array(found, np.int64).reshape(-1, 3)
            _mark_starts(starts, got[:, 0], got[:, 1], rows, cuts, got[:, 2].astype(np.uint64) if cuts.content else None,
                         ph)  # fmt: skip
            rows += len(found)
            tell(len(found))

    def ending(opened: tuple[int, int], key: bytearray) -> None:
        """``until`` for a record whose first bytes ``key`` are read, where its ``extent`` is known."""
        nonlocal until
        if extent is not None and until <= opened[0]:
            size = extent(key)
            until = opened[0] + size if size is not None else until

    def known(found: list[tuple[int, int, int]], opened: tuple[int, int], key: bytearray) -> None:
        """A record whose key is read: a row (its offset, line, hash) unless ``keep`` passes over it."""
        if keep is None or keep(bytes(key)):
            found.append((*opened, zlib.crc32(key, _SEED)))

    with storage.open_input(path, ahead=ahead) as f:
        _check_utf8(path, f)
        check(path, f)
        while True:
            block = f.read(_BLOCK)
            h.update(block)
            ph.update(block)
            data = carry + block if carry else block
            complete = len(data) if not block else data.rfind(b"\n") + 1  # the lines known whole
            begins = _line_starts(data, complete)
            found: list[tuple[int, int, int]] = []
            fed = 0  # the bytes of ``data`` given to the open message's key
            for k in np.flatnonzero(opening(data, begins)).tolist():
                at = int(begins[k])
                if base + at < until:
                    continue  # a line of the last record's content
                if opened is not None:
                    key += data[fed:min(at, fed + max(0, RECORD_KEY - len(key)))]
                    fed = at
                    ending(opened, key)
                    if base + at < until:
                        continue
                    known(found, opened, key)
                opened, key, fed = (base + at, lines + 1 + k), bytearray(), at
            if opened is not None:
                key += data[fed:min(complete, fed + max(0, RECORD_KEY - len(key)))]
                if len(key) >= RECORD_KEY or not block:  # known now: marked, so its bytes need not be held
                    ending(opened, key)
                    known(found, opened, key)
                    opened = None
            emit(found)
            lines += len(begins)
            carry, base = data[complete:], base + complete
            ph.settled(base if opened is None else opened[0])
            if not block:
                break
        seeks = _seek_points(storage.member_starts(f), starts)
    return Shard(path, rows, first_row, base, h.hexdigest(), columns=columns, seeks=seeks), starts, ph.finish()


def _seek_points(members: list[tuple[int, int]], starts: list[tuple[int, int, int]]) -> tuple[tuple[int, int], ...]:
    """Of where a compressed file's members begin (``storage.member_starts``), the nearest at or
    before each part's first row (past the file's start)."""
    at = [m for m, _ in members]
    points = (members[k] for k in (bisect.bisect_right(at, offset) - 1 for _, offset, _ in starts) if k >= 0)
    return tuple(dict.fromkeys(points))


def _line_starts(data: bytes, complete: int) -> np.ndarray:
    """The offsets of the lines of ``data[:complete]``."""
    if not complete:
        return np.zeros(0, np.int64)
    ends = np.flatnonzero(np.frombuffer(data, np.uint8, complete) == 10)
    return np.concatenate(([0], ends[ends + 1 < complete] + 1))


def _opening(data: bytes, begins: np.ndarray) -> np.ndarray:
    """Which of the lines of ``data`` beginning at ``begins`` open a message (``_mbox.OPENS``)."""
    is_row = np.zeros(len(begins), bool)
    if len(begins):
        for k in np.flatnonzero(np.frombuffer(data, np.uint8)[begins] == _mbox.OPENS[0]).tolist():
            is_row[k] = data.startswith(_mbox.OPENS, int(begins[k]))
    return is_row


def _opening_by(opens: re.Pattern[bytes], data: bytes, begins: np.ndarray) -> np.ndarray:
    """Which of the lines of ``data`` beginning at ``begins`` open a record: where ``opens`` (a multiline
    pattern beginning at a line's start) matches, an XML record's opening tag, a WARC record's version line."""
    is_row = np.zeros(len(begins), bool)
    if len(begins):
        last = int(begins[-1])  # the lines after it are not whole yet
        at = [m.start() for m in opens.finditer(data) if m.start() <= last]  # each at a line's start
        is_row[np.searchsorted(begins, np.array(at, np.int64))] = True
    return is_row


_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def _check_xml(path: str, f: Any) -> None:
    """An XML file read a record a row (``f``, buffered, at its start) is UTF-8: its records are read
    apart from its declaration."""
    head = f.peek(1 << 12)[:1 << 12]
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise InputError(f"{path} is not XML: it begins with {head[:40]!r}")
    declared = _xml.declared_encoding(head)
    if declared is not None and declared.lower() not in _UTF8:
        raise InputError(f"{path} declares the encoding {declared!r}; an XML file read a record a row is read as UTF-8: "
                         f"convert it first (iconv -f {declared} -t UTF-8, and its declaration)")  # fmt: skip


def _check_warc(path: str, f: Any) -> None:
    """A WARC file (``f``, buffered, at its start) begins with a record's version line."""
    head = f.peek(64)[:64]
    if not head.startswith(b"WARC/1."):
        raise InputError(f"{path} is not a WARC file: it begins with {head[:40]!r}, where a WARC record begins with "
                         "the line 'WARC/1.0'")  # fmt: skip


def _check_mbox(path: str, f: Any) -> None:
    """An mbox file (``f``, buffered, at its start) begins with its first message's ``From `` line,
    after blank lines at most; else it is refused as a whole, not read as one message."""
    text = f.peek(1 << 16)[:1 << 16].lstrip(b"\r\n")
    if text and not text.startswith(_mbox.OPENS):
        first = text.split(b"\n", 1)[0][:60]
        raise InputError(f"{path} is not an mbox file: it begins with {first!r}, where an mbox begins with the line "
                         f"'From ...' of its first message (a message a file is read with --documents --eml-text)")


# byte order marks of text that is not UTF-8 (UTF-32 LE's first: it begins as UTF-16 LE's does)
_WIDE_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def _check_utf8(path: str, f: Any) -> None:
    """A text file (``f``, buffered, at its start) in UTF-16 or UTF-32, as Windows tools save "Unicode"
    text, is refused as a whole, with what to do, instead of every row being a bad row (or a CSV
    header no column matches)."""
    name = wide_text(f)
    if name is not None:
        raise InputError(f"{path} is {name} text (it begins with a {name} byte order mark); text inputs are read "
                         f"as UTF-8: convert it first (iconv -f {name} -t UTF-8)")


def wide_text(f: Any) -> str | None:
    """"UTF-16" or "UTF-32" where the buffered file ``f`` (at its start) begins with that byte order
    mark, else None."""
    head = f.peek(4)[:4]
    return next((name for bom, name in _WIDE_BOMS.items() if head.startswith(bom)), None)


def _mark_starts(
    starts: list[tuple[int, int, int]], begins: np.ndarray, lines: np.ndarray, rows_before: int, cuts: _Cuts,
    row_hashes: np.ndarray | None, hashes: _PartHashes,
) -> None:
    """Append (row, offset, line) for the rows among these (rows ``rows_before`` on) that open a part."""
    for row in cuts.opening(rows_before, len(begins), row_hashes):
        k = row - rows_before
        starts.append((row, int(begins[k]), int(lines[k])))
        hashes.start(int(begins[k]))


_DECODER = json.JSONDecoder()


def json_row(raw: bytes) -> Any:
    """``json.loads(raw)``, a third faster for a row that opens an object (``{"``): ``json.loads``
    finds UTF-8 for such bytes, decodes them with ``surrogatepass`` and hands them to its default
    decoder, as this does without looking for the encoding first (500,000 benchmark rows 1.03 ->
    0.69 s, a one-off; the same values and errors)."""
    if raw.startswith(b'{"'):
        return _DECODER.decode(raw.decode("utf-8", "surrogatepass"))
    return json.loads(raw)


def _sample_kinds(
    data: bytes, begins: np.ndarray, ends: np.ndarray, kinds: dict[str, set[str]], every_key: bool = False
) -> None:
    """The JSON kinds of the id/kept columns over every row, so the output schema is fixed up front;
    ``every_key``: of every key a row has too, added as first met (absent from the rows before)."""
    for b, e in zip(begins.tolist(), ends.tolist(), strict=True):
        try:
            obj = json_row(data[b:e])
        except UnicodeDecodeError:  # a bad row, whose other fields the reader keeps: they count too
            try:
                obj = json.loads(data[b:e].decode("utf-8", "replace"))
            except ValueError:
                continue
        except ValueError:
            continue  # a bad row; the reader reports it
        if isinstance(obj, dict):
            if every_key:
                for c in obj:
                    if c not in kinds:
                        kinds[c] = {"missing"}
            for c, k in kinds.items():
                k.add(_kind(obj[c]) if c in obj else "missing")


def _kind(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if -(1 << 63) <= v < (1 << 63) else "json"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "json"


def _json_type(kinds: set[str]) -> str:
    """Arrow type for a jsonl column: int64, float64, bool, string; anything else is its JSON text."""
    k = kinds - {"null", "missing"}
    if not k:
        return "string"
    if k == {"int"}:
        return "int64"
    if k <= {"int", "float"}:
        return "float64"
    if k == {"bool"}:
        return "bool"
    if k == {"str"}:
        return "string"
    return "json"


def _scan_csv(
    path: str, first_row: int, cuts: _Cuts, delimiter: str, tell: Callable[[int], None], ahead: Reader | None = None,
) -> tuple[Shard, list[tuple[int, int, int]], list[str]]:
    h = hashlib.sha256()
    ph = _PartHashes()
    record_hash = _Crc()
    starts: list[tuple[int, int, int]] = []
    with storage.open_input(path, ahead=ahead) as f, csv_field_limit():
        _check_utf8(path, f)
        lines = _TrackedLines(f, h, ph, *((record_hash,) if cuts.content else ()))
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            header = []
        rows = told = 0
        offset, line = lines.offset, lines.line + 1
        last = offset, line
        try:
            record_hash.value = _SEED
            for record in reader:
                if record:  # a blank line is no row (as pandas reads it)
                    if cuts.opens(rows, record_hash.value):  # the hash of its lines' bytes
                        starts.append((rows, offset, line))
                        ph.start(offset)
                    rows += 1
                    last = offset, line
                if cuts.content:
                    record_hash.value = _SEED
                offset, line = lines.offset, lines.line + 1
                if ph.pending > _BLOCK:
                    ph.settled(offset)  # every part starting before this record is known
                    tell(rows - told)
                    told = rows
        except csv.Error as e:
            raise InputError(f"{path} line {line}: not valid CSV ({e}); fix the file or convert it to Parquet") from e
        lines.drain()
        tell(rows - told)
        seeks = _seek_points(storage.member_starts(f), starts)
        if rows:
            _check_last_record(f, *last, delimiter, path)
    cols = tuple(c.lstrip("\ufeff") if i == 0 else c for i, c in enumerate(header))
    return Shard(path, rows, first_row, lines.offset, h.hexdigest(), cols, seeks=seeks), starts, ph.finish()


def _check_last_record(f: Any, offset: int, line: int, delimiter: str, path: str) -> None:
    """Refuse a quote opened in the last record and never closed: the reader would take the rest of
    the file, rows and all, as one field."""
    f.seek(offset)
    try:
        list(csv.reader(_TrackedLines(f), delimiter=delimiter, strict=True))
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise InputError(
                f"{path} line {line}: a quote opened in this row is never closed, so every line after it would be "
                "read as one field; fix the quoting (a quote inside a field is doubled: \"\") or convert it to Parquet"
            ) from e


@contextmanager
def csv_field_limit() -> Iterator[None]:
    """Long documents are long CSV fields: lift ``csv``'s 128 KiB limit while reading, then restore it."""
    old = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


class _Crc:
    """A CRC-32 of what it is fed (a sink of ``_TrackedLines``): a CSV record's content hash."""

    def __init__(self) -> None:
        self.value = _SEED

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)


class _TrackedLines:
    """Lines of a binary file, decoded for ``csv`` (undecodable bytes kept as surrogates), with the
    byte offset and line count of what has been handed out, so record boundaries are exact."""

    def __init__(self, f: Any, *sinks: Any) -> None:
        self._f, self._sinks = f, sinks
        self.offset = f.tell()
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self._f.readline()
        if not raw:
            raise StopIteration
        for sink in self._sinks:
            sink.update(raw)
        self.offset += len(raw)
        self.line += 1
        return raw.decode("utf-8", "surrogateescape")

    def drain(self) -> None:
        for _ in self:
            pass


# -- documents ----------------------------------------------------------------------------------------


def _scan_documents(files: Sequence[str], which: np.ndarray, docs: Documents, stamps: np.ndarray, with_stamps: bool,
                    tell: Callable[[int], None], log: Any) -> np.ndarray:  # fmt: skip
    """Scan the documents ``which`` (indexes into ``files``): each one's size and hash (its bytes
    decompressed, as they are read) into ``docs``, its stamp (``storage.stamp_rows``; its row of
    ``stamps`` where ``with_stamps``, taken before) into ``stamps``; on object storage a few at a
    time (a folder of documents is thousands of objects: a request or two each). When each scan
    began (wall-clock seconds)."""
    if log is not None and len(which):
        log(f"scanning {len(which)} document(s)")
    lock = threading.Lock()
    began = np.zeros(len(which))
    digests = docs.digests.reshape(-1).data  # a digest's 32 bytes written in place
    archives: dict[str, tuple[int, ...]] = {}  # members' archives, checked once when all are scanned

    def scan(i: int) -> None:
        k = int(which[i])
        path = files[k]
        began[i] = time.time()
        stamp = tuple(stamps[k].tolist()) if with_stamps else storage.padded(storage.scan_stamp(path))
        size, sha256 = _hash_file(path)
        member = _archives.split(path)
        if member is not None:
            with lock:
                archives[member[0]] = stamp
        elif storage.padded(storage.scan_stamp(path)) != stamp:
            _changed_in_scan(path)
        stamps[k], docs.sizes[k], digests[k * 32:(k + 1) * 32] = stamp, size, bytes.fromhex(sha256)
        with lock:
            tell(1)

    storage.each(scan, range(len(which)), remote=storage.apart([files[k] for k in which.tolist()]))
    for archive, stamp in archives.items():
        if storage.padded(storage.scan_stamp(archive)) != stamp:
            _changed_in_scan(archive)
    return began


def _changed_in_scan(path: str) -> None:
    raise InputError(f"{path} changed while it was being scanned; run again once the input stays as it is")


def _document_shards(files: Sequence[str], names: list[str], stamps: np.ndarray | None, rows: np.ndarray,
                     record: ScanRecord | None, tell: Callable[[int], None], log: Any) -> Documents:  # fmt: skip
    """The documents as shards (a row each, row ``k`` the ``k``-th): a document's size and hash from
    ``record`` where it is unchanged (``rows``: its row there, else -1), else from a scan (kept in
    ``record``: its stamp, size and hash). ``stamps``: each file's, taken before (with a record)."""
    n = len(files)
    docs = Documents(files, names, np.zeros(n, np.int64), np.zeros((n, 32), np.uint8), np.zeros((0, 2), np.int64))
    known = rows >= 0
    if record is not None and known.any():
        docs.sizes[known], docs.digests[known] = record.documents(rows[known])
        record.keep(rows[known])
        if log is not None:
            log(_reused(int(known.sum()), n))
        tell(int(known.sum()))
    unknown = np.flatnonzero(~known)
    with_stamps = stamps is not None
    stamps = stamps if stamps is not None else np.zeros((n, storage.STAMP_FIELDS), np.int64)
    began = _scan_documents(files, unknown, docs, stamps, with_stamps, tell, log)
    if record is not None:
        record.add_documents(files, unknown, stamps, began, docs.sizes, docs.digests)
    docs.stamps = np.ascontiguousarray(stamps[:, :2])
    return docs


def _grouped(shards: list[Shard], parts: list[PartSpec], per: int) -> tuple[list[Shard], list[PartSpec]]:
    """The plan's parts with runs of small files (fewer than ``per`` rows, one part each) made parts
    of several whole files: a folder of thousands of small JSONL or CSV files would otherwise be as
    many output files, each a write, a journal entry and a file for every reader to open. A run of
    small files is cut after a file whose hash (of its name and content) hits, one in ``per / rows``,
    so a part holds ``per`` rows on average and a file added, removed or edited changes its own part
    only (the parts after it hold the same files, which a resume moves); and before a file that would
    take a part past ``per`` rows. Files without rows between two small files join their part. The
    files of such parts are given their first row's offset and line (``Shard.whole``)."""
    own: list[list[PartSpec]] = [[] for _ in shards]
    for p in parts:
        own[p.shard].append(p)
    out: list[PartSpec] = []
    group: list[int] = []  # the files of the part being filled, and their rows
    rows = 0

    def close() -> None:
        nonlocal rows
        while group and not own[group[-1]]:
            group.pop()  # files without rows after the last with rows: in no part
        if len(group) == 1:
            out.append(own[group[0]][0])
        elif group:
            h = hashlib.sha256()
            for k in group:
                part = own[k][0] if own[k] else None
                if part is not None and (part.byte_offset, part.first_line) != (0, 1):  # a header, a BOM, blank lines
                    shards[k] = dataclasses.replace(shards[k], offset=part.byte_offset, line=part.first_line)
                h.update(f"{_name(shards[k].path)}\0{shards[k].rows}\0{shards[k].sha256}\n".encode())
            out.append(PartSpec(0, group[0], 0, rows, sha256=h.hexdigest(), files=len(group)))
        group.clear()
        rows = 0

    for k, shard in enumerate(shards):
        if len(own[k]) > 1 or shard.rows >= per:
            close()
            out.extend(own[k])
            continue
        if not own[k] and not group:
            continue  # no rows, in no part
        if rows + shard.rows > per:
            close()
        group.append(k)
        rows += shard.rows
        hit = zlib.crc32(f"{_name(shard.path)}\0{shard.sha256}".encode(), _SEED)
        if hit < (shard.rows << 32) // per:
            close()
    close()
    return shards, [dataclasses.replace(p, index=i) for i, p in enumerate(out)]


def _reused(reused: int, files: int) -> str:
    return (f"{reused} of {files} input file(s) unchanged since the scan recorded in the output folder: not read "
            "again (--rescan reads every file)")  # fmt: skip


def _document_parts(docs: Documents, cuts: _Cuts) -> list[PartSpec]:
    """Documents (sorted by path) cut into parts by their paths' hashes (``_Cuts``): a document added
    or removed changes its own part only, and the parts after it hold the same documents (their
    rows' ids are their paths), which a resume moves instead of computing them again."""
    opened = [k for k, name in enumerate(docs.names) if cuts.opens(k, zlib.crc32(name.encode(), _SEED))]
    parts: list[PartSpec] = []
    for k, first in enumerate(opened):
        stop = opened[k + 1] if k + 1 < len(opened) else len(docs)
        h, sizes = hashlib.sha256(), docs.sizes[first:stop].tolist()
        for d, _path, sha256 in docs.hashed(first, stop):
            h.update(f"{docs.names[d]}\0{sizes[d - first]}\0{sha256}\n".encode())
        parts.append(PartSpec(k, first, 0, stop - first, sha256=h.hexdigest()))
    return parts


# -- parquet ------------------------------------------------------------------------------------------


def _scan_parquet(path: str, first_row: int, rows_per_part: int) -> tuple[Shard, list[tuple[int, int, int]], list[str]]:
    try:
        with storage.parquet_file(path) as pf:
            meta = pf.metadata
            schema = meta.schema.to_arrow_schema()
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...: name the file either way
        raise InputError(f"{path} is not a readable Parquet file ({e})") from e
    stamp = f"{meta.num_rows}\0{meta.serialized_size}\0{meta.to_dict()}"
    return _columnar_shard(path, first_row, rows_per_part, meta.num_rows, tuple(schema.names), stamp)


def _scan_arrow(path: str, first_row: int, rows_per_part: int) -> tuple[Shard, list[tuple[int, int, int]], list[str]]:
    try:
        with storage.arrow_batches(path) as (schema, batches):
            rows = sum(b.num_rows for _first, b in batches)
        storage.release()  # a stream read to its end: no part starts there
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...: name the file either way
        raise InputError(f"{path} is not a readable Arrow IPC file ({e})") from e
    return _columnar_shard(path, first_row, rows_per_part, rows, tuple(schema.names), f"{rows}\0{schema}")


def _columnar_shard(path: str, first_row: int, rows_per_part: int, rows: int, columns: tuple[str, ...],
                    stamp: str) -> tuple[Shard, list[tuple[int, int, int]], list[str]]:  # fmt: skip
    """A Parquet or Arrow file's shard, fingerprinted whole, and its parts' first rows."""
    if is_uri(path):  # an object is never changed in place: a new one has another time stamp
        size, mtime = storage.object_info(path)  # as recorded before stamps took whole seconds
        digest = hashlib.sha256(f"{size}\0{mtime}\0{stamp}".encode()).hexdigest()
    else:  # every byte: an edit in place keeps the size and may keep the footer
        size, digest = _hash_file(path)
    starts = [(r, 0, 0) for r in range(0, rows, rows_per_part)]
    return Shard(path, rows, first_row, size, digest, columns), starts, []


def _hash_file(path: str) -> tuple[int, str]:
    """A file's size and sha256, read as the readers read it (decompressed). A member of an archive
    that cannot be read: size 0, the hash of what its archive says of it (``_archives.digest_input``)."""
    h, size = hashlib.sha256(), 0
    try:
        with storage.open_input(path) as f:
            while block := f.read(_BLOCK):
                h.update(block)
                size += len(block)
    except (_archives.UnreadableMember, *_archives.DAMAGED):
        if _archives.split(path) is None:
            raise
        return 0, hashlib.sha256(_archives.digest_input(path).encode()).hexdigest()
    return size, h.hexdigest()
