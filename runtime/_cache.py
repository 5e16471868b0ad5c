"""The vectors of the inputs embedded last, so that an input met again is not embedded again.

Corpora of queries, titles or scraped paragraphs repeat their frequent texts all through the file,
far beyond one part of a corpus job (repeats inside a slice are embedded once by
``EmbedBatch.prepare``), and a server meets its popular queries again and again. The cache holds
output rows (the job's, in its output precision and width; the server's, the model's rows) of the
inputs embedded most recently, up to a number of bytes, and drops the least recently used first.
Inputs are keyed by a 128-bit BLAKE2b digest (of a text's UTF-8 bytes, or of a row's token ids), so
a long text costs 16 bytes of key.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ._sparse import SparseEmbeddings, SparseVector, assemble
from ._tokenize import Tokenized

# Python's own cost of an entry beside the vector's bytes (the key, the dict's node, the array's
# header), about: RSS per entry measured 1,640-1,900 bytes for 384 float32s, 444 for 32. Counted so
# that a budget holds for small vectors (binary precision) too
ENTRY_OVERHEAD = 360
# the corpus job's cache (its rows are its output's), in megabytes: about 35,000 384-float vectors
JOB_CACHE_MB = 64.0
Vectors = np.ndarray | SparseEmbeddings
Row = np.ndarray | SparseVector
T = TypeVar("T")


@dataclass
class Lookup:
    """What ``VectorCache.lookup`` found of its keys."""

    keys: list[bytes]
    missing: np.ndarray  # places in ``keys`` of the texts to embed, rising
    held: np.ndarray  # places of the others
    rows: list[Row]  # their rows
    flags: np.ndarray  # their flags (``complete``'s), bool

    def every_flag(self, missing: np.ndarray) -> np.ndarray:
        """The flags of all ``keys``: ``missing`` for those it lacked, in order, and the held ones'."""
        out = np.empty(len(self.keys), bool)
        out[self.missing], out[self.held] = missing, self.flags
        return out


def look_up_again(cache: VectorCache | None, keys: list[bytes] | None, early: Lookup | None) -> Lookup | None:
    """When a prepared slice runs: its ``keys`` that ``early`` (the look-up when it was prepared, if
    any) did not find, looked up again, for those the slice before added meanwhile (None without a
    cache)."""
    if cache is None or keys is None:
        return None
    return cache.lookup(keys if early is None or not len(early.held) else [keys[i] for i in early.missing.tolist()])


def text_keys(texts: list[str]) -> list[bytes]:
    """Each text's cache key."""
    return [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]


def token_keys(tok: Tokenized) -> list[bytes]:
    """Each row's cache key, from its token ids and type ids (the prompt, the truncation and a
    pair's two sides are in them)."""
    out = []
    for ids, types in zip(tok.ids, tok.type_ids, strict=True):
        h = hashlib.blake2b(np.asarray(ids, np.int32).tobytes(), digest_size=16)
        h.update(np.asarray(types, np.int8).tobytes())
        out.append(h.digest())
    return out


def distinct_items(items: list[T]) -> tuple[list[T], np.ndarray | None]:
    """The distinct items in order of first appearance, and each item's place among them (None if
    every item is distinct)."""
    place: dict[T, int] = {}
    of = np.fromiter((place.setdefault(t, len(place)) for t in items), dtype=np.int64, count=len(items))
    if len(place) == len(items):
        return items, None
    return list(place), of


def first_places(of: np.ndarray) -> list[int]:
    """Where each distinct item first appears (``of``: ``distinct_items``' places), in their order."""
    return np.unique(of, return_index=True)[1].tolist()  # type: ignore[no-any-return]


def check_cache_mb(value: object, name: str) -> float:
    """A cache size in megabytes, checked: a number, 0 (no cache) or more."""
    size = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(size) and size >= 0):
        raise ValueError(f"{name} must be a number of megabytes >= 0 (0: no cache), got {value!r}")
    return size


class VectorCache:
    """Output rows by key, least recently used out first, within ``max_bytes`` (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._rows: OrderedDict[bytes, tuple[Row, int, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, keys: list[bytes]) -> Lookup:
        """Which of ``keys`` it holds (their rows, now the most recently used) and which it lacks."""
        with self._lock:
            found = [self._get(k) for k in keys]
        held = [(i, entry) for i, entry in enumerate(found) if entry is not None]
        missing = np.array([i for i, entry in enumerate(found) if entry is None], np.int64)
        return Lookup(keys, missing, np.array([i for i, _ in held], np.int64), [e[0] for _, e in held],
                      np.array([e[2] for _, e in held], bool))  # fmt: skip

    def complete(self, lookup: Lookup, new: Vectors | None, flags: np.ndarray | None = None) -> Vectors:
        """The rows of ``lookup.keys``: those it held and ``new`` (the missing ones', in order; None
        if none is missing), which it now holds too, each with its flag in ``flags`` (a bool the
        caller keeps with a row, such as "cut to the window"; default False)."""
        if len(lookup.missing):
            assert new is not None
            marks = [False] * len(lookup.missing) if flags is None else flags.tolist()
            with self._lock:
                for k, i in enumerate(lookup.missing.tolist()):
                    self._put(lookup.keys[i], new[k], marks[k])
        return merged(lookup, new)

    def _get(self, key: bytes) -> tuple[Row, int, bool] | None:
        entry = self._rows.get(key)
        if entry is None:
            return None
        self._rows.move_to_end(key)
        return entry

    def _put(self, key: bytes, row: Row, flag: bool) -> None:
        if isinstance(row, SparseVector):  # copies: a view would keep the whole batch's arrays alive
            row = SparseVector(row.indices.copy(), row.values.copy(), row.dim)
            size = row.indices.nbytes + row.values.nbytes + 2 * ENTRY_OVERHEAD
        elif row.dtype == object:  # the server's sparse rows: a SparseVector in each
            row = row.copy()
            size = sum(v.indices.nbytes + v.values.nbytes + ENTRY_OVERHEAD for v in row.tolist()) + ENTRY_OVERHEAD
        else:
            row = row.copy()
            size = row.nbytes + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._rows.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._rows[key] = (row, size, flag)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self._rows.popitem(last=False)[1][1]


def merged(lookup: Lookup, new: Vectors | None) -> Vectors:
    """The rows of ``lookup.keys``: those it found, and ``new`` at the missing places (None if none)."""
    if not len(lookup.held):
        assert new is not None
        return new
    if not len(lookup.missing):
        return _stacked(lookup.rows)
    assert new is not None
    return _merged(new, lookup.missing, lookup.rows, lookup.held, len(lookup.keys))


def _stacked(rows: list[Row]) -> Vectors:
    """The held ``rows`` of a lookup that missed none."""
    if rows and isinstance(rows[0], SparseVector):
        return SparseEmbeddings.stack(rows, rows[0].dim)  # type: ignore[arg-type]
    return np.stack(rows)  # type: ignore[arg-type]


def _merged(new: Vectors, missing: np.ndarray, rows: list[Row], held: np.ndarray, n: int) -> Vectors:
    """``n`` rows: ``new`` at the places ``missing``, ``rows`` at ``held``."""
    if isinstance(new, SparseEmbeddings):
        sparse: list[SparseVector] = rows  # type: ignore[assignment]
        counts = np.array([r.nnz for r in sparse], np.int64)
        pieces = [(missing, np.diff(new.indptr), new.indices, new.values),
                  (held, counts, np.concatenate([r.indices for r in sparse]), np.concatenate([r.values for r in sparse]))]  # fmt: skip
        return assemble(pieces, n, new.dim)
    out = np.empty((n, *new.shape[1:]), new.dtype)
    out[missing] = new
    out[held] = np.stack(rows)  # type: ignore[arg-type]
    return out
