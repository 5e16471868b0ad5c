"""Where a corpus job reads its input and writes its output: local paths, or object storage
(``s3://``, ``gs://``: see ``embedrt._objects``).

An object store renames nothing and appends nothing, so an output folder there differs from a local
one in two ways. A file is written under a hidden temporary name and then moved into place: the object
under the real name appears whole or not at all (an upload that fails part way is still completed by
pyarrow when its stream closes, so writing the real name straight away could leave half a file that
looks complete). The journal of finished parts is one small object per part under ``_journal/``,
instead of lines appended to ``_parts.jsonl``.
"""

from __future__ import annotations

import bisect
import bz2
import contextlib
import errno
import fnmatch
import glob
import io
import json
import lzma
import os
import re
import secrets
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar, overload

import numpy as np

from .._files import TMP_GLOB, move_durably, written_whole
from .._objects import _URI, StorageError, is_uri, split_uri
from . import _archives
from ._claim import Claim, claim_local, claim_object, holder_local, holder_object

BUFFER = 8 << 20  # object-store reads: ranged requests of 8 MiB, not one per line
JOURNAL_DIR = "_journal"
S = TypeVar("S")
T = TypeVar("T")
STAMP_FIELDS = 5  # ``scan_stamp``'s, locally (``stamp_rows``)
_REQUESTS = 8  # object-store requests in flight at once where a run makes one per object (journal, stamps)
_AHEAD_BYTES = 32 << 20  # small objects read ahead (``read_ahead``): at most so many bytes at once


def _uri(like: str, path: str) -> str:
    """The URI of ``path`` (``bucket/key``) in the scheme ``like`` was written with."""
    return f"{_URI.match(like).group(1)}://{path}"  # type: ignore[union-attr]


def absolute(where: str | Path) -> str:
    """``where`` as every process (and every Ray node) should name it."""
    return str(where) if is_uri(str(where)) else str(Path(where).resolve())


class Resolved:
    """Local files' absolute names with their folders' links resolved, each folder once (thousands
    of files lie in a few folders: ``Path.resolve`` of each took a third of planning a folder of
    documents); a URI as it is. A link to a file keeps its own name."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        cut = path.rfind("/")
        folder = path[:cut] if cut > 0 else "/" if cut == 0 else "."  # as written: no call per file
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = "" if is_uri(path) else os.path.realpath(folder)
        if not real:
            return path
        resolved = f"{real}/{path[cut + 1:]}" if real != "/" else path[cut:]
        return path if resolved == path else resolved  # the string at hand: a million documents' names once


def outside(files: list[str], folder: str | None) -> list[str]:
    """The ``files`` that do not lie under ``folder`` (a job's own output inside its input folder)."""
    inner = set(inside(files, folder))
    return [f for k, f in enumerate(files) if k not in inner] if inner else files


def inside(files: Sequence[str], folder: str | None) -> list[int]:
    """The indexes of the ``files`` that lie under ``folder`` (none, mostly)."""
    if folder is None:
        return []
    if is_uri(folder):
        return [k for k, f in enumerate(files) if f.startswith(folder.rstrip("/") + "/")]
    under = os.path.join(os.path.realpath(folder), "")
    resolved = Resolved()
    return [k for k, f in enumerate(files) if not is_uri(f) and resolved(f).startswith(under)]


class Joined(Sequence[str]):
    """Files named by one folder and their paths under it (``prefix + names[k]``): a walked folder's
    million files without a million strings more."""

    __slots__ = ("names", "prefix")

    def __init__(self, prefix: str, names: list[str]) -> None:
        self.prefix, self.names = prefix, names

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, k: int) -> str: ...

    @overload
    def __getitem__(self, k: slice) -> list[str]: ...

    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self.prefix + n for n in self.names[k]]
        return self.prefix + self.names[k]

    def __iter__(self) -> Iterator[str]:
        return (self.prefix + n for n in self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Joined):
            return self.prefix == other.prefix and self.names == other.names
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


# -- reading the input -------------------------------------------------------------------------------


def kind(where: str) -> str | None:
    """``"file"``, ``"dir"`` or None (nothing there)."""
    if not is_uri(where):
        p = Path(where)
        return "dir" if p.is_dir() else "file" if p.is_file() else None
    import pyarrow.fs

    fs, path = split_uri(where)
    t = fs.get_file_info(path).type
    return {pyarrow.fs.FileType.File: "file", pyarrow.fs.FileType.Directory: "dir"}.get(t)


def walk(folder: str, hidden: tuple[str, ...] = ()) -> tuple[Sequence[str], list[str]]:
    """Every file under ``folder``: (names to open, paths relative to ``folder``), none in a folder or
    of a name that starts with one of ``hidden`` (locally not even looked into). Links to files are
    files; links to folders are not followed, nor are folders that cannot be read. Locally in the
    order of their relative paths with ``/`` sorting first (``walk_key``): each folder's entries
    sorted by name, a folder's files where its name sorts."""
    if is_uri(folder):
        import pyarrow.fs

        fs, path = split_uri(folder)
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True))
        found = [(_uri(folder, i.path), i.path[len(path) + 1:]) for i in infos if i.type == pyarrow.fs.FileType.File]
        _keep_listed(folder, infos)
        kept = [(f, rel) for f, rel in found if not hidden or not any(p.startswith(hidden) for p in rel.split("/"))]
        return [f for f, _rel in kept], [rel for _f, rel in kept]
    top = str(Path(folder))
    rels: list[str] = []
    stack = [iter(_entries(top, "", hidden, top=True))]
    while stack:  # depth first: a folder's files come where its name sorts among its siblings
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry[2]:
            stack.append(iter(_entries(entry[0], entry[1] + "/", hidden)))
        else:
            rels.append(entry[1])
    return Joined(os.path.join(top, ""), rels), rels  # os.scandir's names: the folder's, "/", the entry's


def walk_key(rel: str) -> str:
    """The order of ``walk``'s relative paths: by folder, then name (``/`` sorts before any character)."""
    return rel.replace("/", "\0")


def _entries(where: str, rel: str, hidden: tuple[str, ...], top: bool = False) -> list[tuple[str, str, bool]]:
    """A folder's files and folders (os.scandir: their types without a stat call but for links), by
    name: (name to open, relative path, whether a folder)."""
    found = []
    try:
        with os.scandir(where) as entries:
            for e in entries:
                if e.name.startswith(hidden):
                    continue
                if e.is_dir(follow_symlinks=False):
                    found.append((e.path, rel + e.name, True))
                elif e.is_file():
                    found.append((e.path, rel + e.name, False))
    except PermissionError:
        if top:  # the input itself: say so
            raise
        return []
    found.sort(key=lambda e: e[1])
    return found


def glob_files(pattern: str) -> list[str]:
    """Files matching ``pattern``: ``*`` and ``?`` within one path component, ``**`` across any number."""
    if not is_uri(pattern):
        return [str(Path(f)) for f in sorted(glob.glob(pattern, recursive=True)) if Path(f).is_file()]
    import pyarrow.fs

    fs, path = split_uri(pattern)
    parts = path.split("/")
    fixed = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    base = "/".join(parts[:fixed])
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    _keep_listed(pattern, infos)
    return [_uri(pattern, i.path) for i in infos
            if i.type == pyarrow.fs.FileType.File and _matches(parts[fixed:], i.path.split("/")[fixed:])]  # fmt: skip


def _matches(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(pattern[1:], parts[1:])


def stamp(where: str) -> tuple[int, int]:
    """A file's size and modification time (ns), or an object's: what changes when it is rewritten."""
    size, mtime, *_local = scan_stamp(where)
    return size, mtime


def scan_stamp(where: str) -> tuple[int, ...]:
    """``stamp`` and, for a local file, its inode change time (ns), inode and device: what a planning
    scan's findings are trusted by (``_scan_record``). An edit in place that restores the size and the
    modification time still changes the change time, which no user call sets. A member of an
    archive (``_archives``) has its archive's."""
    member = _archives.split(where)
    if member is not None:
        return scan_stamp(member[0])
    if is_uri(where):
        return _archives.seen(where, size_and_mtime(where))  # an archive kept open is read again if it changed
    st = os.stat(where)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def scan_stamps(files: list[str]) -> list[tuple[int, ...]]:
    """``scan_stamp`` of each file; objects' a few at a time (a request each: thousands of shards on
    object storage are thousands of round trips); an archive's once for all its members."""
    keys = _stamped_as(files)
    if keys is files:
        return each(scan_stamp, files)
    unique = list(dict.fromkeys(keys))
    got = dict(zip(unique, each(scan_stamp, unique), strict=True))
    return [got[k] for k in keys]


def _stamped_as(files: Sequence[str]) -> Sequence[str]:
    """Each file, or a member's archive (whose stamp it has): ``files`` itself where none is a member."""
    split = [_archives.split(f) for f in files]
    if not any(split):
        return files
    return [f if s is None else s[0] for f, s in zip(files, split, strict=True)]


def padded(stamp: tuple[int, ...]) -> tuple[int, ...]:
    """A ``scan_stamp`` of ``STAMP_FIELDS`` values (an object's two, then -1s)."""
    return stamp + (-1,) * (STAMP_FIELDS - len(stamp))


def unpadded(row: tuple[int, ...]) -> tuple[int, ...]:
    """A ``padded`` stamp as ``scan_stamp`` gave it (an object's two values)."""
    return row[:2] if row[2:] == (-1,) * (len(row) - 2) else row


def stamp_rows(stamps: Sequence[tuple[int, ...]]) -> np.ndarray:
    """``scan_stamp``s as rows of ``STAMP_FIELDS`` int64 (``padded``)."""
    rows = np.empty((len(stamps), STAMP_FIELDS), np.int64)
    for k, stamp in enumerate(stamps):
        rows[k] = padded(stamp)
    return rows


def scan_stamp_rows(files: Sequence[str]) -> np.ndarray:
    """``scan_stamps`` as ``stamp_rows``; a local file's written in place (a million files' stamps as
    tuples of ints are hundreds of MB); an object's from its listing where ``listing`` kept it."""
    keys = _stamped_as(files)
    if any(map(is_uri, keys)):
        listed = getattr(_listing, "stamps", None) or {}
        asked = list(dict.fromkeys(f for f in keys if f not in listed))
        listed.update(zip(asked, scan_stamps(asked), strict=True))
        if keys is not files:  # members: their archives' stamps, for reading them
            for archive in dict.fromkeys(keys):
                _archives.seen(archive, listed[archive])
        return stamp_rows([listed[f] for f in keys])
    files = keys
    rows = np.empty((len(files), STAMP_FIELDS), np.int64)
    for k, where in enumerate(files):
        st = os.stat(where)
        rows[k] = st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev
    return rows


def each(fn: Callable[[S], T], items: Sequence[S], remote: bool | None = None, at_once: int | None = None) -> list[T]:
    """``fn`` of each item, in order; of objects ``at_once`` (default ``_REQUESTS``) at a time (each a round trip or more:
    a folder of documents on object storage is thousands of them), of local files one by one.
    ``remote``: whether the items stand for objects (default: ``apart`` of the items, files' names)."""
    if not (apart(items) if remote is None else remote):
        return [fn(f) for f in items]
    with ThreadPoolExecutor(at_once or _REQUESTS) as pool:
        return list(pool.map(fn, items))


def apart(files: Sequence[object]) -> bool:
    """Whether ``files`` are read several at once (``each``): objects (a round trip each), but not
    members of a compressed tar archive, which are read in order (``_archives.sequential``)."""
    return any(map(is_uri, files)) and not any(isinstance(f, str) and _archives.sequential(f) for f in files)


def each_ahead(fn: Callable[[S], T], items: Sequence[S], remote: Sequence[bool],
               at_once: int | None = None) -> Iterator[T]:  # fmt: skip
    """``fn`` of each item, in order, as they are asked for; of consecutive items that stand for
    objects (``remote``: or work done elsewhere, a cluster's), ``at_once`` (default ``_REQUESTS``) at
    once (a scan of a small object is mostly round trips)."""
    k, at_once = 0, at_once or _REQUESTS
    while k < len(items):
        n = 1
        while n < at_once and k + n < len(items) and remote[k] and remote[k + n]:
            n += 1
        yield from each(fn, items[k:k + n], remote=remote[k], at_once=at_once)
        k += n


def size_and_mtime(uri: str) -> tuple[int, int]:
    """An object's size and last-modified time (ns, in whole seconds): a new upload under the same name
    changes the time."""
    size, mtime = object_info(uri)
    return size, _whole_seconds(mtime)


def object_info(uri: str) -> tuple[int, int]:
    """An object's size and last-modified time (ns) as its store gives them (a request)."""
    import pyarrow.fs

    fs, path = split_uri(uri)
    info = fs.get_file_info(path)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise FileNotFoundError(errno.ENOENT, "no such object", uri)
    return int(info.size), int(info.mtime_ns or 0)


def _whole_seconds(ns: int) -> int:
    """An object's time in whole seconds: an S3 store gives a listing's to the millisecond (MinIO, R2)
    and an object's own to the second (its ``Last-Modified`` header), so a stamp is what both agree on."""
    return ns - ns % 1_000_000_000


_listing = threading.local()  # ``listing``'s stamps of listed objects, {URI: (size, mtime)}, else None


@contextlib.contextmanager
def listing() -> Iterator[None]:
    """Within: the objects that ``walk`` and ``glob_files`` list keep their listing's size and time,
    which ``scan_stamp_rows`` takes instead of asking each object (a request each: a folder of
    thousands of small objects is thousands of round trips on every run). Every other stamp is
    asked for: one checked against the plan's is always fresh."""
    _listing.stamps = {}
    try:
        yield
    finally:
        _listing.stamps = None


def _keep_listed(like: str, infos: Iterable[Any]) -> None:
    kept = getattr(_listing, "stamps", None)
    if kept is None:
        return
    import pyarrow.fs

    for i in infos:
        if i.type == pyarrow.fs.FileType.File:
            kept[_uri(like, i.path)] = (int(i.size), _whole_seconds(int(i.mtime_ns or 0)))


def read_ahead(files: Sequence[str], sizes: Sequence[int]) -> Generator[str, None, None]:
    """``files`` in order, for reading one after another; objects (of ``sizes`` bytes) are read whole
    ahead of their turn, ``_REQUESTS`` at a time and up to ``_AHEAD_BYTES`` at once, and each reader
    below takes its object's bytes instead of asking for them: a part of a thousand small objects
    is a hundred or so round trips, not thousands. A larger object, and a local file, is read as usual."""
    k = 0
    while k < len(files):
        window: list[str] = []
        held = 0
        while k + len(window) < len(files) and len(window) < _REQUESTS:
            at = k + len(window)
            if not is_uri(files[at]) or held + sizes[at] > _AHEAD_BYTES:
                break
            window.append(files[at])
            held += sizes[at]
        if not window:
            yield files[k]
            k += 1
            continue
        with _ahead_lock:
            _ahead.update(zip(window, each(_object_bytes, window, remote=True), strict=True))
        try:
            yield from window
        finally:
            with _ahead_lock:  # a read stopped (a bad row, a change): the bytes not taken go
                for f in window:
                    _ahead.pop(f, None)
        k += len(window)


_ahead: dict[str, bytes] = {}  # objects' bytes read ahead (``read_ahead``), each taken by its reader
_ahead_lock = threading.Lock()


def head(where: str, n: int) -> bytes:
    """A file's first ``n`` bytes (of an object: a ranged request)."""
    if _archives.split(where) is not None:
        with _archives.open_member(where) as f:
            return f.read(n)
    if is_uri(where):
        fs, path = split_uri(where)
        with fs.open_input_file(path) as f:
            return f.read(n)  # type: ignore[no-any-return]
    with open(where, "rb") as f:
        return f.read(n)


def _object_bytes(uri: str) -> bytes:
    fs, path = split_uri(uri)
    with fs.open_input_file(path) as f:
        return f.read()  # type: ignore[no-any-return]


def _object_input(uri: str) -> Any:
    """An object opened to read: its bytes read ahead (``read_ahead``), else the object store's file."""
    with _ahead_lock:
        data = _ahead.pop(uri, None)
    if data is not None:
        import pyarrow as pa

        return pa.BufferReader(data)
    fs, path = split_uri(uri)
    return fs.open_input_file(path)


def open_input(where: str, codec: str | None = None, ahead: Callable[[Any], Any] | None = None) -> IO[bytes]:
    """A buffered, seekable binary reader (on an object store: ranged reads of ``BUFFER`` bytes); a
    compressed file (``CODECS``) is read decompressed, its offsets those of the decompressed bytes. A
    member of an archive (``_archives``) is its bytes, decompressed. ``codec``: the compression's suffix
    (of ``CODECS``) of a file whose name does not end in it (``.tgz``). ``ahead``: the compressed
    file's members decompressed by worker processes ahead of the reader (``_unpack.reader``)."""
    raw = open_raw(where)
    decompress = CODECS.get(codec or os.path.splitext(where)[1].lower())
    if decompress is None:
        return raw  # type: ignore[no-any-return]
    return io.BufferedReader(_Decompressed(raw, ahead or decompress, where), BUFFER)  # type: ignore[return-value]


def open_raw(where: str) -> Any:
    """A file's own bytes (compressed or not), to read: a local file, an object (ranged reads of
    ``BUFFER`` bytes), an archive's member (decompressed by its archive's format)."""
    if _archives.split(where) is not None:
        return _archives.open_member(where)
    if is_uri(where):
        return io.BufferedReader(_object_input(where), BUFFER)
    return open(where, "rb")  # the caller closes it


_kept = threading.local()  # per thread: (path, reader) of the compressed file it read last, its Arrow stream, its Parquet rows


@contextlib.contextmanager
def reading(where: str, seeks: Sequence[tuple[int, int]] = ()) -> Iterator[IO[bytes]]:
    """``open_input`` for a part's reader. A compressed file's reader is kept open for this thread's
    next part of the same file: parts are read in order (locally) or in rising order (each Ray actor),
    so the next seek goes forward from where this one stopped instead of decompressing from the start.
    ``seeks``: where members of the file begin (``member_starts``, kept by the planning scan): a seek
    past one starts decompressing there, not from where the reader stands (a resumed job's first
    part, a Ray actor's parts far apart)."""
    if PurePosixPath(where).suffix.lower() not in CODECS:
        with open_input(where) as f:
            yield f
        return
    kept = getattr(_kept, "file", None)
    if kept is None or kept[0] != where:
        if kept is not None:
            kept[1].close()
        kept = _kept.file = (where, open_input(where))
    raw = getattr(kept[1], "raw", None)
    if isinstance(raw, _Decompressed):
        raw.seeks = seeks
    try:
        yield kept[1]
    except BaseException:
        kept[1].close()  # its position is unknown now
        _kept.file = None
        raise


def release() -> None:
    """Close the compressed reader (and the Arrow stream, the Parquet rows) this thread keeps (the end
    of a read that is not a thread's last)."""
    kept, _kept.file = getattr(_kept, "file", None), None
    if kept is not None:
        kept[1].close()
    for name in ("arrow", "parquet"):
        stream = getattr(_kept, name, None)
        setattr(_kept, name, None)
        if stream is not None:
            stream.close()


def _zstd(f: Any) -> Any:
    try:
        import zstandard
    except ImportError as e:
        raise ImportError('reading .zst files needs zstandard: pip install "embedrt[dataset]"') from e
    return _Members(f, lambda: zstandard.ZstdDecompressor().decompressobj())


SEEK_EVERY = 1 << 20  # a member's start is kept (``_Members.starts``) this many decompressed bytes after the last


class _Members(io.RawIOBase):
    """A compressed file's members one after another, decompressed: gzip members, bz2 streams, zstd
    frames (``new`` makes a member's decompressor). Where members begin is kept (``starts``: the
    decompressed and the compressed offset, ``every`` decompressed bytes apart at least), so that a reader can
    start at one (``_Decompressed.seeks``): a file compressed a member at a time (Wikipedia's
    multistream dumps, a bz2 stream every 100 pages; Common Crawl's WARC files, a gzip member a
    record; pigz, pbzip2, zstd -T) is read from anywhere. A file that ends inside a member raises
    ``EOFError``, as Python's own readers do (zstandard's own stream reader ends there without a
    word, so a truncated file would have been a shorter corpus); zero bytes after a gzip member are
    padding, and bytes after a bz2 stream that begin no stream are passed over, as ``gzip`` and
    ``bz2`` do, but where a stream begins after them (a corrupt stream: its error; Python's ``bz2``
    would end the data there, the rest of the file lost without a word). ``stop``: the data ends
    before the first member that begins at or after this compressed offset (``end``: where that one
    begins; a range of a file decompressed on its own, ``_unpack``)."""

    _READ = 1 << 16  # compressed bytes a step (text compresses up to ~100x: a few MB out)

    def __init__(self, raw: Any, new: Callable[[], Any], padding: bytes = b"", trailing: bool = False,
                 stop: int | None = None, every: int | None = None) -> None:  # fmt: skip
        self._raw, self._new, self._padding, self._trailing = raw, new, padding, trailing
        self._stop, self._every = stop, SEEK_EVERY if every is None else every
        self._member = new()
        self._fed = False  # bytes of the current member went in
        self._done = 0  # members ended
        self._ended = False  # the end of the data (a bz2 stream's trailing bytes, ``stop``) was met
        self._error: Exception | None = None  # met after the members before it were decompressed
        self._out, self._at = b"", 0  # decompressed bytes not yet handed out
        self._read_to = self._began = raw.tell()  # the compressed offset read up to
        self._made = 0  # decompressed bytes made so far
        self.starts: list[tuple[int, int]] = []  # (decompressed, compressed offset) where a member begins
        self.end: int | None = None  # at the data's end: where the next member begins (None: the file's end)

    @property
    def members(self) -> int:
        """Members decompressed whole so far."""
        return self._done

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while self._at >= len(self._out):
            if self._error is not None:
                raise self._error
            # reads end at multiples of ``_READ`` in the file: the bytes a corrupt member gives before its
            # error (a bz2 block's are checked at its end) do not depend on where this reader began
            chunk = b"" if self._ended else self._raw.read(self._READ - self._read_to % self._READ)
            if not chunk:
                if self._fed and not self._member.eof:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                return 0
            self._read_to += len(chunk)
            self._out, self._at = self._decompress(chunk), 0
        n = min(len(b), len(self._out) - self._at)
        b[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        while chunk:
            if not self._fed and self._padding:
                chunk = chunk.lstrip(self._padding)
                if not chunk:
                    break
            try:
                piece = self._member.decompress(chunk)
            except Exception as e:
                if isinstance(e, OSError) and self._trailing and (self._done or self._began) and self._passed_over(chunk):
                    self._ended = True  # bytes after the last stream that begin none: the data's end
                    break
                if not out:
                    raise
                self._error = e  # raised at the next read: the members before it are handed out first
                break
            out.append(piece)
            self._made += len(piece)
            self._fed = True
            if not self._member.eof:
                break
            chunk = self._member.unused_data  # the next member's first bytes
            self._member, self._fed = self._new(), False
            self._done += 1
            at = self._read_to - len(chunk)
            if not self.starts or self._made - self.starts[-1][0] >= self._every:
                self.starts.append((self._made, at))
            if self._stop is not None:
                nxt = at + len(chunk) - len(chunk.lstrip(self._padding)) if self._padding else at
                if nxt >= self._stop:
                    self._ended, self.end = True, nxt
                    break
        return b"".join(out)

    def _passed_over(self, chunk: bytes) -> bool:
        """Whether ``chunk``, where a member failed to begin, and the file's bytes after it are
        trailing bytes: no bz2 stream's header among them (read to the file's end: a few bytes, as
        tools leave them, unless a stream is corrupt)."""
        if self._fed:
            return False
        tail = b""
        while chunk:
            if BZ2_HEAD.search(tail + chunk):
                return False
            tail = chunk[-(BZ2_HEAD_BYTES - 1):]
            chunk = self._raw.read(self._READ)
        return True


# a bz2 stream's header with its first block's magic (or the end-of-stream magic of an empty stream)
BZ2_HEAD = re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)")
BZ2_HEAD_BYTES = 10


def members(f: Any, suffix: str, stop: int | None = None, every: int | None = None) -> _Members:
    """``f``'s members (a gzip or bz2 file, ``suffix``), decompressed from where it stands (``_Members``)."""
    if suffix == ".gz":
        import zlib

        return _Members(f, lambda: zlib.decompressobj(31), padding=b"\0", stop=stop, every=every)
    return _Members(f, bz2.BZ2Decompressor, trailing=True, stop=stop, every=every)


def _gzip(f: Any) -> Any:
    return members(f, ".gz")


def _bz2(f: Any) -> Any:
    return members(f, ".bz2")


def _corrupt(error: BaseException) -> bool:
    """Whether a decompressor's error says its data is truncated or corrupt (not that reading failed)."""
    import zlib

    if isinstance(error, EOFError | zlib.error | lzma.LZMAError):
        return True
    if type(error) is OSError and error.errno is None and str(error) == "Invalid data stream":  # bz2
        return True
    return type(error).__module__.startswith("zstandard")


CODECS: dict[str, Callable[[Any], Any]] = {
    ".gz": _gzip,
    ".bz2": _bz2,
    ".xz": lambda f: lzma.LZMAFile(f, mode="rb"),  # noqa: SIM115 (closed by _Decompressed)
    ".zst": _zstd,
}  # a text input compressed whole: read as one stream (several gzip members or zstd frames are one file)


def member_starts(f: Any) -> list[tuple[int, int]]:
    """Where the members of the compressed file ``f`` (``open_input``'s, read from its start) begin, as
    far as it was read: (decompressed, compressed offset), ``SEEK_EVERY`` apart at least; none for a
    file that is not compressed, or is one member."""
    raw = getattr(f, "raw", None)
    return raw.member_starts() if isinstance(raw, _Decompressed) else []


def uncompressed_name(path: str) -> str:
    """``path`` lowercased, without its compression suffix (``CODECS``): ``Page.HTML.gz`` -> ``page.html``."""
    name = path.lower()
    root, ext = os.path.splitext(name)
    return root if ext in CODECS else name


class _Decompressed(io.RawIOBase):
    """A compressed file's decompressed bytes, seekable: forward by reading on, backward by starting
    again from the file's first byte (a part's reader seeks to where its rows begin), or from the
    start of a member at or before the offset sought (``seeks``) where that is nearer."""

    def __init__(self, raw: Any, codec: Callable[[Any], Any], where: str = "") -> None:
        self._raw, self._codec, self._where = raw, codec, where
        self.seeks: Sequence[tuple[int, int]] = ()  # (decompressed, compressed offset) where members begin
        self._restart((0, 0))

    def _restart(self, at: tuple[int, int]) -> None:
        self._raw.seek(at[1])
        self._stream = self._codec(self._raw)
        self._base = self._pos = at[0]

    def member_starts(self) -> list[tuple[int, int]]:
        """Where members begin, as far as read (``_Members.starts``; none for xz)."""
        return [(self._base + made, at) for made, at in getattr(self._stream, "starts", ())]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            n = self._stream.readinto(b)
        except Exception as e:
            if not _corrupt(e):
                raise
            raise StorageError(f"{self._where}: its compressed data is truncated or corrupt after {self._pos:,} "
                               f"decompressed bytes ({e}); fetch or compress the file again") from e
        self._pos += n
        return int(n)

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a compressed input is not seeked from its end")
        k = bisect.bisect_right(self.seeks, (offset, float("inf"))) - 1  # the last member starting at or before it
        at = self.seeks[k] if k >= 0 else (0, 0)
        if offset < self._pos or at[0] > self._pos:
            self._stream.close()
            self._restart(at)
        scratch = bytearray(min(BUFFER, max(offset - self._pos, 1)))
        while self._pos < offset:
            with memoryview(scratch) as m:
                if not self.readinto(m[: offset - self._pos]):
                    break
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
            self._raw.close()
        super().close()


# bytes a Parquet column is read ahead in: its pages are read through a buffer of this size (a
# bigger page whole), not a row group's whole column chunk at once, as pyarrow does by default,
# which holds as much memory as the writer put in a row group: hundreds of MB for long documents
PARQUET_BUFFER = 8 << 20


def parquet_file(where: str) -> Any:
    """``pyarrow.parquet.ParquetFile`` of a local or object-store file (close it when done), its
    columns read through ``PARQUET_BUFFER``."""
    import pyarrow.parquet as pq

    source: Any = _object_input(where) if is_uri(where) else where
    return pq.ParquetFile(source, buffer_size=PARQUET_BUFFER, pre_buffer=False)


@contextlib.contextmanager
def parquet_batches(
    where: str, start: int, columns: list[str], batch_rows: int
) -> Iterator[tuple[Any, Iterator[tuple[int, Any]]]]:
    """The Arrow schema of a Parquet file, and its ``columns`` as record batches of ``batch_rows``
    rows from the one holding row ``start`` on, each with its first row. Kept open for this thread's
    next part of the file: parts come in rising order (each Ray actor's too), and a reader can only
    skip to a row group, not to a row inside one, so a part is read on from where the previous one
    stopped instead of decoding its row group from the start again (a pyarrow writer's row group
    holds up to 1,048,576 rows: 105 parts of 10,000 rows)."""
    kept = _kept_reader("parquet", lambda k: k.where == where and k.columns == columns and start >= k.first)
    if kept is None:
        kept = _kept.parquet = _ParquetRows(where, columns, batch_rows)
    with _read_on("parquet", kept, start) as read:
        yield read


def _kept_reader(name: str, fits: Callable[[Any], bool]) -> Any:
    """This thread's kept reader ``name`` where it ``fits`` the read (else None, one that does not closed)."""
    kept = getattr(_kept, name, None)
    if kept is not None and not fits(kept):
        kept.close()
        kept = None
        setattr(_kept, name, None)
    return kept


@contextlib.contextmanager
def _read_on(name: str, kept: Any, start: int) -> Iterator[tuple[Any, Iterator[tuple[int, Any]]]]:
    """A kept reader's schema and batches from row ``start``; closed and forgotten if the read fails."""
    try:
        yield kept.schema, kept.batches(start)
    except BaseException:
        kept.close()  # its position is unknown now
        setattr(_kept, name, None)
        raise


class _ReadOn:
    """Record batches read forward across a thread's parts of a file, each with its first row; the
    batch read last is kept, so that a part beginning in it (parts start at or after it) starts there."""

    batch: Any = None  # the batch read last, and its first row
    first = 0
    after = 0  # the first row after it

    def _kept(self, start: int) -> Iterator[tuple[int, Any]]:
        if self.batch is not None and start < self.after:
            yield self.first, self.batch

    def _on(self, batches: Iterable[Any], start: int) -> Iterator[tuple[int, Any]]:
        """``batches`` (the next ones of the file), numbered, from the one holding row ``start``."""
        for b in batches:
            self.batch, self.first, self.after = b, self.after, self.after + b.num_rows
            if self.after > start:
                yield self.first, b


class _ParquetRows(_ReadOn):
    """A Parquet file's columns read forward in record batches across a thread's parts of it."""

    def __init__(self, where: str, columns: list[str], batch_rows: int) -> None:
        self.where, self.columns, self.batch_rows = where, columns, batch_rows
        self.file = parquet_file(where)
        self.schema = self.file.schema_arrow
        meta = self.file.metadata
        self.group_first = [0]  # each row group's first row, and the file's rows
        for g in range(meta.num_row_groups):
            self.group_first.append(self.group_first[-1] + meta.row_group(g).num_rows)
        self.reader: Iterator[Any] | None = None  # the batches of row group ``group``, read on
        self.group = -1

    def batches(self, start: int) -> Iterator[tuple[int, Any]]:
        yield from self._kept(start)
        g = bisect.bisect_right(self.group_first, max(start, self.after)) - 1
        while g < len(self.group_first) - 1:
            if self.reader is None or self.group != g:  # a later row group: skip to it
                self.reader = self.file.iter_batches(batch_size=self.batch_rows, row_groups=[g], columns=self.columns,
                                                     use_threads=False)  # fmt: skip
                self.group, self.after = g, self.group_first[g]
            yield from self._on(self.reader, start)
            g += 1

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def arrow_batches(where: str, start: int = 0) -> Iterator[tuple[Any, Iterator[tuple[int, Any]]]]:
    """The schema of an Arrow IPC file, in the file format (``.arrow``, ``.feather`` v2) or the
    stream format (as Hugging Face ``datasets`` writes its ``.arrow`` files), and its record batches
    from the one holding row ``start`` on, each with its first row. A local file is memory-mapped,
    so that its batches are read where they lie. A stream on object storage, which has no index of
    its batches, is kept open for this thread's next part of it: parts come in rising order (each
    Ray actor's too), so it is read once, not from its start for every part."""
    import pyarrow as pa

    if is_uri(where):
        kept = _kept_reader("arrow", lambda k: k.where == where and start >= k.first)
        if kept is None:
            source = _object_input(where)
            if not _is_arrow_file(source):
                kept = _kept.arrow = _ArrowStream(where, source)
        if kept is not None:
            with _read_on("arrow", kept, start) as read:
                yield read
            return
        file_format = True  # a stream is kept above
    else:
        source = pa.memory_map(where)
        file_format = _is_arrow_file(source)
    try:
        if file_format:
            reader: Any = pa.ipc.open_file(source)
            yield reader.schema, _numbered(reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            reader = pa.ipc.open_stream(source)
            yield reader.schema, _numbered(reader)
    finally:
        source.close()


def _is_arrow_file(source: Any) -> bool:
    """Whether ``source`` holds the IPC file format (its magic bytes), not the stream format."""
    head = source.read(6)
    source.seek(0)
    return bool(head == b"ARROW1")


def _numbered(batches: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    first = 0
    for b in batches:
        yield first, b
        first += b.num_rows


class _ArrowStream(_ReadOn):
    """An Arrow stream on object storage, read forward across a thread's parts of it."""

    def __init__(self, where: str, source: Any) -> None:
        import pyarrow as pa

        self.where, self.source = where, source
        self.reader = pa.ipc.open_stream(source)
        self.schema = self.reader.schema

    def batches(self, start: int) -> Iterator[tuple[int, Any]]:
        yield from self._kept(start)
        yield from self._on(self.reader, start)  # the stream's reader goes on from where it stopped

    def close(self) -> None:
        self.source.close()


# -- the output folder -------------------------------------------------------------------------------


class LocalFolder:
    """An output folder on the local (or a shared, mounted) file system; the journal is one file."""

    def __init__(self, where: str) -> None:
        self.where, self.path = where, Path(where)

    def kind(self) -> str | None:
        return kind(self.where)

    def make(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def claim(self, say: Callable[[str], None]) -> contextlib.AbstractContextManager[Claim]:
        """This run's claim on the folder (``_claim``): a lock."""
        return claim_local(self.path, self.where, say)

    def holder(self) -> tuple[bool | None, dict[str, Any] | None]:
        """Whether a run holds the claim now (None: unknown), and who (``_claim.holder_local``)."""
        return holder_local(self.path)

    def remove_if_empty(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def names(self) -> dict[str, int | None]:
        """Its entries: name -> size (None for a folder)."""
        return {p.name: (p.stat().st_size if p.is_file() else None) for p in self.path.iterdir()}

    def read(self, name: str) -> bytes | None:
        p = self.path / name
        return p.read_bytes() if p.is_file() else None

    def buffer(self, name: str) -> Any:
        """``name`` as an Arrow buffer, or None: mapped, not read (its pages are read as they are used,
        and held as the file's, which the system may drop and read again)."""
        import pyarrow as pa

        p = self.path / name
        if not p.is_file():
            return None
        with pa.memory_map(str(p)) as f:
            return f.read_buffer()

    def write(self, name: str, write: Callable[[IO[bytes]], Any]) -> int:
        """Write ``name`` whole and durably (temporary file, fsync, rename, folder fsync); its size."""
        path = self.path / name
        with written_whole(path, durable=True) as tmp, tmp.open("wb") as f:
            write(f)
        return path.stat().st_size

    def open_file(self, name: str) -> IO[bytes]:
        """``name`` opened to read, with random access."""
        return (self.path / name).open("rb")

    def move(self, name: str, to: str) -> None:
        """Rename ``name`` to ``to`` (replacing it), durably."""
        move_durably(self.path / name, self.path / to)

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def clean_temporaries(self) -> None:
        for stale in self.path.glob(TMP_GLOB):  # left by a run killed while writing a file
            stale.unlink()

    def journal(self, name: str) -> list[str]:
        p = self.path / name
        return p.read_text(encoding="utf-8", errors="replace").splitlines() if p.is_file() else []

    def append(self, name: str, line: str, part: int) -> None:
        with (self.path / name).open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, name: str, lines: dict[int, str]) -> None:
        data = "".join(line + "\n" for _, line in sorted(lines.items())).encode()
        self.write(name, lambda f: f.write(data))


class ObjectFolder:
    """An output folder on an object store (S3, GCS): files moved into place whole, a journal object per part."""

    def __init__(self, where: str) -> None:
        self.where = where.rstrip("/")
        self.fs, self.path = split_uri(self.where)

    def kind(self) -> str | None:
        import pyarrow.fs

        bucket = self.path.split("/")[0]
        if self.fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
            raise StorageError(f"bucket {_uri(self.where, bucket)!r} does not exist (or these credentials cannot see it)")
        return kind(self.where)

    def make(self) -> None:
        pass  # an object store has no folders: writing a name makes it

    def claim(self, say: Callable[[str], None]) -> contextlib.AbstractContextManager[Claim]:
        """This run's claim on the folder (``_claim``): a lease."""
        return claim_object(self, self.where, say)

    def holder(self) -> tuple[bool | None, dict[str, Any] | None]:
        """Whether a run holds the lease now, and who (``_claim.holder_object``)."""
        return holder_object(self)

    def remove_if_empty(self) -> None:
        pass

    def mtime(self, name: str) -> float | None:
        """When ``name`` was last written (seconds since the epoch, by the store's clock), or None if absent."""
        import pyarrow.fs

        info = self.fs.get_file_info(f"{self.path}/{name}")
        return None if info.type != pyarrow.fs.FileType.File else info.mtime_ns / 1e9

    def names(self) -> dict[str, int | None]:
        import pyarrow.fs

        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.path, allow_not_found=True))
        return {PurePosixPath(i.path).name: (i.size if i.type == pyarrow.fs.FileType.File else None) for i in infos}

    def read(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(f"{self.path}/{name}", compression=None) as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None

    def buffer(self, name: str) -> Any:
        """``name`` as an Arrow buffer (downloaded), or None."""
        import pyarrow as pa

        data = self.read(name)
        return None if data is None else pa.py_buffer(data)

    def write(self, name: str, write: Callable[[IO[bytes]], Any]) -> int:
        """Write ``name`` under a hidden temporary name, then move it into place; its size."""
        final = f"{self.path}/{name}"
        head, _, base = final.rpartition("/")
        tmp = f"{head}/.{base}.tmp-{secrets.token_hex(4)}"
        try:
            with self.fs.open_output_stream(tmp, compression=None) as f:  # never compressed by its name
                write(f)
                written = f.tell()
            self.fs.move(tmp, final)
        except BaseException:
            self._delete(tmp)
            raise
        return int(written)

    def open_file(self, name: str) -> Any:
        """``name`` opened to read, with random access (ranged requests)."""
        return self.fs.open_input_file(f"{self.path}/{name}")

    def move(self, name: str, to: str) -> None:
        """Move ``name`` to ``to`` (replacing it): a copy on the store, then a delete."""
        self.fs.move(f"{self.path}/{name}", f"{self.path}/{to}")

    def delete(self, name: str) -> None:
        self._delete(f"{self.path}/{name}")

    def _delete(self, path: str) -> None:
        import pyarrow.fs

        t = self.fs.get_file_info(path).type
        if t == pyarrow.fs.FileType.Directory:
            self.fs.delete_dir(path)
        elif t == pyarrow.fs.FileType.File:
            self.fs.delete_file(path)

    def clean_temporaries(self) -> None:
        for folder in (self.path, f"{self.path}/{JOURNAL_DIR}"):
            for name in _names(self.fs, folder):
                if fnmatch.fnmatchcase(name, TMP_GLOB):
                    self.fs.delete_file(f"{folder}/{name}")

    def journal(self, name: str) -> list[str]:
        """The journal's entries, one object each, read a few at a time."""
        folder = f"{self.path}/{JOURNAL_DIR}"
        names = [n for n in _names(self.fs, folder) if not n.startswith(".")]

        def read(n: str) -> str:
            with self.fs.open_input_stream(f"{folder}/{n}", compression=None) as f:
                return bytes(f.read()).decode("utf-8", "replace")

        with ThreadPoolExecutor(_REQUESTS) as pool:
            return list(pool.map(read, sorted(names)))

    def append(self, name: str, line: str, part: int) -> None:
        data = line.encode()
        self.write(f"{JOURNAL_DIR}/{_entry_name(part)}", lambda f: f.write(data))

    def rewrite(self, name: str, lines: dict[int, str]) -> None:
        """Keep the entries of ``lines``' parts, delete the others (each kept entry is already stored)."""
        keep = {_entry_name(p) for p in lines}
        folder = f"{self.path}/{JOURNAL_DIR}"
        for n in _names(self.fs, folder):
            if n not in keep:
                self.fs.delete_file(f"{folder}/{n}")


def _entry_name(part: int) -> str:
    return f"part-{part:06d}.json"


def _names(fs: Any, folder: str) -> Iterable[str]:
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    return [PurePosixPath(i.path).name for i in infos if i.type == pyarrow.fs.FileType.File]


def output_folder(where: str | Path) -> LocalFolder | ObjectFolder:
    where = str(where)
    return ObjectFolder(where) if is_uri(where) else LocalFolder(where)


def entry_line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, default=str)
