"""A large compressed file's members decompressed by worker processes, several ranges of it at once,
ahead of the one reader that needs its bytes in order: the planning scan.

Python's bz2 decompresses 22-26 MB/s of text a core, a quarter of the scan's own pace on that text
(a Wikipedia dump of 100 GB of XML: over an hour in one process); gzip about 150 MB/s. A file compressed a member at a
time (Wikipedia's multistream dumps, a bz2 stream every 100 pages; WARC files, a gzip member a record;
pbzip2, pigz) can be decompressed from any member's start. So the file is cut into ranges of
``RANGE`` compressed bytes; a worker decompresses one (``unpack_range``): from the first member that
begins in it to the first that begins at or after its end. The reader takes a range's bytes only
where the range begins exactly where the one before ended, a member's start reached by decompressing
the file from its first byte: a byte pattern that looks like a member's header but is not one is
never taken for one. Anything else (a range that begins no member, one whose bytes would be too many,
a corrupt member, a worker that failed) is decompressed by the reader itself, as without workers: the
same bytes, the same member starts, the same errors at the same place, always.
"""

from __future__ import annotations

import collections
import functools
import logging
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any, NamedTuple, Protocol

from . import _archives
from . import _storage as storage

log = logging.getLogger(__name__)

RANGE = 4 << 20  # compressed bytes a worker decompresses at once (bz2: ~1 s, ~20 MB of text)
MOST = 64 << 20  # decompressed bytes of one range at most (more: the reader decompresses it itself)
WORKERS = 8  # workers decompressing a file's ranges at once at most (a bz2 file: ~200 MB/s of text, past the scan's pace)
# ranges asked for ahead of the one read: one a worker, and two waiting (memory: their replies, up to MOST bytes each)
AHEAD = 2
# compressed sizes from which a file is decompressed ahead: bz2 from about 5 s of one core's decompression;
# gzip from about 4 s (a 104 MB WET file's scan on 2 cores: 3.4-3.6 s alone, 3.8-4.2 s with workers
# started for it; a 312 MB one 10.4-12.6 s against 8.4-12.3 s)
SMALLEST = {".bz2": 32 << 20, ".gz": 256 << 20}
# where a member may begin: a bz2 stream's header; a gzip member's header with its method (deflate)
# and no reserved flag (most hits inside deflate data are passed over: decompressing there fails at once)
_HEADS = {".bz2": storage.BZ2_HEAD, ".gz": re.compile(rb"\x1f\x8b\x08[\x00-\x1f]")}
_HEAD_BYTES = storage.BZ2_HEAD_BYTES  # the longest pattern


class Unpacker(Protocol):
    """Worker processes (``_scan_workers.ProcessScans``): ``start`` says how many run at once,
    ``unpack`` is ``unpack_range`` in one of them."""

    def start(self) -> int: ...

    def unpack(self, path: str, suffix: str, begin: int, stop: int, most: int) -> Unpacked: ...


Reader = Callable[[Any], "Ahead"]  # a compressed file's reader from its raw bytes (a codec of ``storage.open_input``)


class Unpacked(NamedTuple):
    """A range's members, decompressed (``unpack_range``)."""

    start: int | None  # the compressed offset of its first member (None: no member begins in the range)
    data: bytes  # its members' bytes, decompressed
    starts: list[tuple[int, int]]  # (decompressed offset in ``data``, compressed offset) of its members but the first, and of the next
    end: int | None  # where the member after its last begins (None: the file's end)
    whole: bool  # False: not decompressed to its end (too many bytes, a corrupt member): ``data`` is empty


def at_once(unpack: Unpacker) -> int:
    """How many of ``unpack``'s workers decompress a file's ranges at once."""
    return min(WORKERS, unpack.start())


def reader(where: str, size: int, unpack: Unpacker) -> Reader | None:
    """What reads the file ``where`` of ``size`` bytes decompressed ahead by ``unpack``'s workers (a
    codec of ``storage.open_input``): a large gzip or bz2 file, not an archive's member, with two
    workers at least; else None."""
    suffix = PurePosixPath(where).suffix.lower()
    if suffix not in SMALLEST or size < SMALLEST[suffix] or _archives.split(where) is not None or at_once(unpack) < 2:
        return None
    return functools.partial(Ahead, where=where, suffix=suffix, size=size, unpack=unpack)


def unpack_range(path: str, suffix: str, begin: int, stop: int, most: int) -> Unpacked:
    """Decompress the members of ``path`` from the first that begins in ``[begin, stop)`` (the file's
    first byte where ``begin`` is 0) to the first that begins at or after ``stop``, in a worker: a
    place that looks like a member's start but fails to decompress is passed over for the next."""
    with storage.open_raw(path) as raw:
        if begin:
            raw.seek(begin)
            window = raw.read(stop - begin + _HEAD_BYTES - 1)
            places = [begin + m.start() for m in _HEADS[suffix].finditer(window) if m.start() < stop - begin]
        else:
            places = [0]
        for at in places:
            raw.seek(at)
            stream = storage.members(raw, suffix, stop=stop, every=0)
            out = bytearray()
            try:
                while piece := stream.read(1 << 20):
                    out += piece
                    if len(out) > most:
                        return Unpacked(at, b"", [], None, False)
            except Exception as e:  # bz2's OSError and EOFError, zlib.error ...
                if stream.members:
                    return Unpacked(at, b"", [], None, False)  # a member of the file is corrupt: the reader says so
                log.debug("no member begins at %d of %s (%s)", at, path, e)
                continue
            return Unpacked(at, bytes(out), stream.starts, stream.end, True)
    return Unpacked(None, b"", [], None, False)


class Ahead:
    """A compressed file's decompressed bytes in order (the ``_Members`` a reader of it holds, for
    ``storage._Decompressed``), its ranges decompressed by ``unpack``'s workers, ``at_once`` and
    ``AHEAD`` more ahead of the one read; ``starts`` kept as ``_Members`` keeps them (``SEEK_EVERY`` apart), the same."""

    def __init__(self, raw: Any, *, where: str, suffix: str, size: int, unpack: Unpacker) -> None:
        self._raw, self._where, self._suffix, self._size, self._unpack = raw, where, suffix, size, unpack
        self._pool = ThreadPoolExecutor(at_once(unpack), thread_name_prefix="embedrt-unpack")
        self._ahead = at_once(unpack) + AHEAD
        self._pending: collections.deque[tuple[int, Future[Unpacked]]] = collections.deque()
        self._asked = 0  # the next range to ask a worker for
        self._next: int | None = 0  # the compressed offset where the next member begins (None: the file's end)
        self._made = 0  # decompressed bytes handed on so far, and ready
        self._out, self._at = b"", 0
        self._own: storage._Members | None = None  # members decompressed here (a range no worker's is taken of)
        self._own_seen = 0  # of its ``starts``
        self._own_base = 0  # decompressed bytes before its first
        self.starts: list[tuple[int, int]] = []

    def readinto(self, b: Any) -> int:
        while self._at >= len(self._out):
            if not self._more():
                return 0
        n = min(len(b), len(self._out) - self._at)
        b[:n] = self._out[self._at : self._at + n]
        self._at += n
        return n

    def _more(self) -> bool:
        """The next decompressed bytes into ``_out``: a worker's range, or this reader's own piece; False at the end."""
        if self._own is not None:
            piece = self._own.read(1 << 20)  # its errors are the file's: raised as a reader without workers raises them
            for made, at in self._own.starts[self._own_seen:]:
                self._member(self._own_base + made, at)
            self._own_seen = len(self._own.starts)
            if piece:
                self._ready(piece)
                return True
            self._next, self._own = self._own.end, None
            return self._more()
        if self._next is None or self._next >= self._size:
            return False
        k = self._next // RANGE
        while self._pending and self._pending[0][0] < k:  # ranges passed over by a long member
            self._pending.popleft()[1].cancel()
        while self._asked < k + self._ahead and self._asked * RANGE < self._size:
            if self._asked >= k:
                begin, stop = self._asked * RANGE, (self._asked + 1) * RANGE
                future = self._pool.submit(self._unpack.unpack, self._where, self._suffix, begin, stop, MOST)
                self._pending.append((self._asked, future))
            self._asked += 1
        assert self._pending[0][0] == k
        got = self._result(self._pending.popleft()[1])
        if got is not None and got.whole and got.start == self._next:
            for made, at in got.starts:
                self._member(self._made + made, at)
            self._next = got.end
            self._ready(got.data)
            return True
        self._raw.seek(self._next)  # to the first member that begins in the next range (one member alone: the end)
        self._own = storage.members(self._raw, self._suffix, stop=(k + 1) * RANGE, every=0)
        self._own_seen, self._own_base = 0, self._made
        return self._more()

    def _result(self, future: Future[Unpacked]) -> Unpacked | None:
        try:
            return future.result()
        except Exception:  # a worker that failed: its range is decompressed here
            log.debug("a worker failed to decompress a range of %s", self._where, exc_info=True)
            return None

    def _ready(self, data: bytes) -> None:
        self._out, self._at = data, 0
        self._made += len(data)

    def _member(self, made: int, at: int) -> None:
        """A member begins at decompressed offset ``made``, compressed ``at``: kept as ``_Members`` keeps it."""
        if not self.starts or made - self.starts[-1][0] >= storage.SEEK_EVERY:
            self.starts.append((made, at))

    def close(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
