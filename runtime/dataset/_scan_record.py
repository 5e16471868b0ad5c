"""What the planning scan found in each input file, kept in OUTPUT (``_input_scan.arrow``) so that the
next run over the same folder reads only the files that changed since.

Planning reads every byte of a text input (to count rows, find where each part starts and hash each
part) and of a local Parquet or Arrow file (to hash it): for a corpus of many GB, minutes before
any row is embedded, and on object storage a download of the whole corpus, on every resume and on
every run over a grown corpus. A file's findings are taken again when it is unchanged, as git
trusts its index: locally its size, modification time, inode change time, inode and device are as
they were (an edit in place that restores the size and the modification time still changes the
change time, which no user call sets), on object storage its size and time stamp (an object is
never changed in place: a new upload under the name has a new time stamp). A file changed within
``SETTLED_S`` of its scan is not kept (a second write within the file system's time stamp
resolution would look unchanged). ``rescan`` (``--rescan``) reads every file again regardless.

The record is an Arrow IPC file, a row a file (``SCHEMA``), read back as arrays: a folder of a
million documents is a million rows, which as JSON objects took hundreds of MB to hold. An older
record (``OLD_NAME``, JSON) is read and replaced.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _storage as storage

NAME = "_input_scan.arrow"
OLD_NAME = "_input_scan.json"  # the record of older versions: read, then replaced by ``NAME``
FORMAT = "embedrt-input-scan"
VERSION = 2
SETTLED_S = 3.0  # time stamps coarser than this (FAT's 2 s) could hide a second write
STAMP = storage.STAMP_FIELDS
SCHEMA = pa.schema([
    ("key", pa.string()),  # the file's name (``storage.Resolved``)
    ("key_hash", pa.binary(16)),  # its BLAKE2b: what a lookup compares (``_key_hashes``)
    ("stamp", pa.list_(pa.int64(), STAMP)),
    ("size", pa.int64()),  # of its content (decompressed)
    ("sha256", pa.binary(32)),  # of its content
    ("findings", pa.string()),  # JSON: text formats' rows, parts and kinds (``_sources._findings``); documents none
])  # fmt: skip
_BATCH = 65_536  # rows a record batch


def read(store: Any) -> tuple[str, pa.Buffer] | None:
    """The record in an output folder's ``store``: (its name, its bytes), or None. A local record is
    mapped, not read: a lookup reads the pages of the names' hashes, stamps, sizes and digests only."""
    for name in (NAME, OLD_NAME):
        data = store.buffer(name)
        if data is not None:
            return name, data
    return None


class ScanRecord:
    """The findings of an earlier scan (``old``: the record's bytes, or None), and this scan's.

    ``start`` with the scan's settings (what the findings depend on beside a file's bytes), then
    ``rows`` finds the unchanged files' rows, whose findings ``findings`` (a file) or ``documents``
    (documents' sizes and hashes) give and ``keep`` keeps; ``add`` and ``add_documents`` keep what
    the scan found. ``write`` writes the record where ``changed``."""

    def __init__(self, old: bytes | pa.Buffer | None = None) -> None:
        self.unreadable = False
        self._settings: Any = None
        self._old = _empty()
        self._from_older = False  # an older version's record: written anew
        if old is not None:
            try:
                self._settings, self._old, self._from_older = _parse(old)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError, pa.ArrowException):
                self.unreadable, self._settings, self._old = True, None, _empty()
        self.settings: dict[str, Any] = {}
        self._key = storage.Resolved()  # a file's name in the record
        self._kept: list[np.ndarray] = []  # rows of the old record taken into this scan's
        self._added: list[tuple[Sequence[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # ``add_documents``
        self._pending: list[tuple[str, np.ndarray, int, bytes, str | None]] = []  # ``add``s not yet batched

    def start(self, settings: dict[str, Any]) -> None:
        """Begin a scan with ``settings`` (JSON values); findings made under others are not used."""
        self.settings = json.loads(json.dumps(settings))  # as read back: tuples as lists
        if self._settings != self.settings:
            self._old = _empty()
        self._kept, self._added, self._pending = [], [], []

    def rows(self, paths: Sequence[str], stamps: np.ndarray) -> np.ndarray:
        """Each file's row in the record where its stamp (``storage.stamp_rows``) is the recorded one,
        else -1. Files are found by their names' 128-bit hashes (a million names as Python strings
        and a hash table of them would be hundreds of MB): two names of one hash that are also two
        files of one stamp (size, times, inode and device; an object's size and time) do not occur."""
        if self._old.num_rows == 0 or not paths:
            return np.full(len(paths), -1, np.int64)
        found = pc.index_in(_key_hashes(map(self._key, paths), len(paths)), value_set=_column(self._old, "key_hash"))
        rows = _values(found, np.int32).astype(np.int64)
        if found.null_count:
            rows[_values(pc.is_null(found), np.bool_)] = -1
        del found
        hit = np.flatnonzero(rows >= 0)
        stamps_then = _values(_column(self._old, "stamp").flatten(), np.int64).reshape(-1, STAMP)
        rows[hit[(stamps_then[rows[hit]] != stamps[hit]).any(axis=1)]] = -1
        return rows

    def findings(self, row: int) -> dict[str, Any] | None:
        """A text file's findings at ``row`` (its size and hash as hex too), or None (none recorded)."""
        text = self._old.column("findings")[row].as_py()
        if text is None:
            return None
        return {**json.loads(text), "size": self._old.column("size")[row].as_py(),
                "sha256": self._old.column("sha256")[row].as_py().hex()}  # fmt: skip

    def documents(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sizes (int64) and SHA-256 digests (rows of 32 uint8) recorded at ``rows``."""
        taken = self._old.select(["size", "sha256"]).take(_int64(rows))
        return _values(_column(taken, "size"), np.int64), _values(_column(taken, "sha256"), np.uint8).reshape(-1, 32)

    def keep(self, rows: np.ndarray | int) -> None:
        """Take the old record's ``rows`` (unchanged files') into this scan's."""
        self._kept.append(np.atleast_1d(np.asarray(rows, np.int64)))

    def add(self, path: str, stamp: tuple[int, ...], scanned_at: float, findings: dict[str, Any]) -> None:
        """Keep what a scan (begun at ``scanned_at``, wall-clock seconds) found in a text file ``path``
        (``findings`` with its size and hex hash), unless the file changed too shortly before."""
        row = storage.stamp_rows([stamp])
        if _settled(row, np.array([scanned_at])).all():
            rest = {k: v for k, v in findings.items() if k not in ("size", "sha256")}
            self._pending.append((self._key(path), row[0], int(findings["size"]), bytes.fromhex(findings["sha256"]),
                                  json.dumps(rest, separators=(",", ":"))))  # fmt: skip

    def add_documents(self, paths: Sequence[str], which: np.ndarray, stamps: np.ndarray, began: np.ndarray,
                      sizes: np.ndarray, digests: np.ndarray) -> None:  # fmt: skip
        """Keep what a scan (begun at ``began``) found in the documents ``which`` (indexes into
        ``paths`` and the arrays, which are kept, not copied: a million documents' are tens of MB):
        their stamps, sizes and digests (rows of 32 uint8), but for those changed too shortly before
        their scan."""
        ok = which[_settled(stamps[which], began)]
        if len(ok):
            self._added.append((paths, ok, stamps, sizes, digests))

    def _kept_rows(self) -> np.ndarray:
        return np.concatenate(self._kept) if self._kept else np.zeros(0, np.int64)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        """This scan's record: the old record's rows kept, then those added."""
        kept = self._kept_rows()
        for at in range(0, len(kept), _BATCH):
            yield from self._old.take(_int64(kept[at:at + _BATCH])).to_batches()
        for paths, which, stamps, sizes, digests in self._added:  # made into batches as written: a million
            for at in range(0, len(which), _BATCH):  # documents' keys are a million strings more
                k = which[at:at + _BATCH]
                yield _batch([self._key(paths[i]) for i in k.tolist()], stamps[k], sizes[k], digests[k], None)
        if self._pending:
            keys, stamps, sizes, digests, findings = zip(*self._pending, strict=True)
            yield _batch(list(keys), np.stack(stamps), np.array(sizes, np.int64),
                         np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32), list(findings))  # fmt: skip

    @property
    def changed(self) -> bool:
        """Whether this scan's record is not the old one (a file added, changed or gone, other
        settings, an older version's record)."""
        if self._from_older or self._settings != self.settings or self._added or self._pending:
            return True
        return not np.array_equal(self._kept_rows(), np.arange(self._old.num_rows))

    def write(self, f: IO[bytes]) -> None:
        """The record, as an Arrow IPC file (uncompressed: read back without a copy), into ``f``."""
        meta = {"format": FORMAT, "version": VERSION, "written": round(time.time(), 3), "settings": self.settings}
        with pa.ipc.new_file(f, SCHEMA.with_metadata({b"embedrt": json.dumps(meta).encode()})) as w:
            for batch in self._batches():
                w.write_batch(batch)

    def data(self) -> bytes:
        sink = pa.BufferOutputStream()
        self.write(sink)
        return sink.getvalue().to_pybytes()


def _empty() -> pa.Table:
    return pa.Table.from_batches([], SCHEMA)


def _int64(values: np.ndarray) -> pa.Array:
    """``values`` as an int64 array without ``pa.array``, which imports pandas (tens of MB) to ask
    whether they are a pandas object."""
    data = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _shown(keys: list[str]) -> pa.Array:
    """The keys as strings (a name that is not UTF-8 with its bytes replaced: the column is to read;
    lookups compare ``key_hash``)."""
    try:
        return pa.array(keys, pa.string())
    except UnicodeEncodeError:
        return pa.array([k.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for k in keys], pa.string())


def _key_hashes(keys: Iterable[str], count: int) -> pa.Array:
    """Each of the ``count`` keys' 128-bit BLAKE2b, a ``binary(16)`` array (the keys are not kept)."""
    data = bytearray()
    for k in keys:
        data += hashlib.blake2b(k.encode("utf-8", "surrogateescape"), digest_size=16).digest()
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), count, [None, pa.py_buffer(data)])


def _values(array: pa.Array, dtype: Any) -> np.ndarray:
    """A fixed-width array's values (a boolean array's as bools) without ``to_numpy``, which imports
    pandas (tens of MB) to ask whether they are a pandas object; a null's value is undefined."""
    if pa.types.is_boolean(array.type):
        bits = np.frombuffer(array.buffers()[1], np.uint8) if len(array) else np.zeros(0, np.uint8)
        return np.unpackbits(bits, bitorder="little")[array.offset:array.offset + len(array)].astype(bool)
    width = array.type.byte_width // np.dtype(dtype).itemsize
    data = np.frombuffer(array.buffers()[1], dtype) if len(array) else np.zeros(0, dtype)
    return data[array.offset * width:(array.offset + len(array)) * width]


def _settled(stamps: np.ndarray, scanned_at: np.ndarray) -> np.ndarray:
    """Whether each file's last change (locally its modification or inode change time, an object's
    time stamp) lies ``SETTLED_S`` before its scan."""
    return stamps[:, 1:3].max(axis=1) <= (scanned_at - SETTLED_S) * 1e9


def _batch(keys: list[str], stamps: np.ndarray, sizes: np.ndarray, digests: np.ndarray,
           findings: list[str | None] | None) -> pa.RecordBatch:  # fmt: skip
    n = len(keys)
    stamp = pa.FixedSizeListArray.from_arrays(_int64(stamps.reshape(-1)), STAMP)
    sha = pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(np.ascontiguousarray(digests).tobytes())])
    found = pa.array(findings if findings is not None else [None] * n, pa.string())
    return pa.record_batch([_shown(keys), _key_hashes(keys, n), stamp, _int64(sizes), sha, found], schema=SCHEMA)


def _parse(data: bytes | pa.Buffer) -> tuple[Any, pa.Table, bool]:
    """A record's (settings, table, whether an older version's)."""
    if bytes(data[:1]) == b"{":
        return _parse_json(bytes(data))
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()  # its buffers the record's bytes
    meta = json.loads(table.schema.metadata[b"embedrt"])
    if meta["format"] != FORMAT or meta["version"] != VERSION or not table.schema.equals(SCHEMA):
        raise ValueError(f"format {meta['format']!r} version {meta['version']!r}")
    return meta["settings"], table.replace_schema_metadata(None), False


def _parse_json(data: bytes) -> tuple[Any, pa.Table, bool]:
    """An older version's JSON record (``OLD_NAME``): ``{"settings", "files": {key: {"stamp", "size",
    "sha256", and a text file's findings}}}``."""
    old = json.loads(data.decode("utf-8"))
    settings = old["settings"]
    if old["format"] != FORMAT or old["version"] != 1:
        raise ValueError(f"format {old['format']!r} version {old['version']!r}")
    keys, stamps, sizes, digests, findings = [], [], [], [], []
    documents = settings["format"] == "documents"  # their stamp, size and hash only (some wrote a text file's findings)
    for key, entry in dict(old["files"]).items():
        rest = {} if documents else {k: v for k, v in entry.items() if k not in ("stamp", "size", "sha256")}
        keys.append(str(key))
        stamps.append(tuple(int(v) for v in entry["stamp"]))
        sizes.append(int(entry["size"]))
        digests.append(bytes.fromhex(entry["sha256"]))
        findings.append(json.dumps(rest, separators=(",", ":")) if rest else None)
    del old
    digest_rows = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
    batch = _batch(keys, storage.stamp_rows(stamps), np.array(sizes, np.int64), digest_rows, findings)
    return settings, pa.Table.from_batches([batch], SCHEMA), True
