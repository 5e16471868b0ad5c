"""The vectors of the texts a job embedded last, so that a text met again (in a later slice, part
or Ray batch) is not embedded again.

Corpora of queries, titles or scraped paragraphs repeat their frequent texts all through the file,
far beyond one part; repeats inside a slice are already embedded once (``EmbedBatch.prepare``). The
cache holds the output rows (in the output's precision and width) of the texts embedded most
recently, up to a number of bytes, and drops the least recently used first. Texts are keyed by a
128-bit BLAKE2b digest of their UTF-8 bytes, so a long text costs 16 bytes of key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .._sparse import SparseEmbeddings, SparseVector, assemble

# Python's own cost of an entry beside the vector's bytes (the key, the dict's node, the array's
# header), about: 1,898 bytes of RSS an entry measured for 384 float32s. Counted so that a budget
# holds for small vectors (binary precision) too
ENTRY_OVERHEAD = 360
Vectors = np.ndarray | SparseEmbeddings
Row = np.ndarray | SparseVector


@dataclass
class Lookup:
    keys: list[bytes]
    missing: np.ndarray  # places in ``keys`` of the texts to embed, rising
    held: np.ndarray  # places of the others
    rows: list[Row]  # their rows


def text_keys(texts: list[str]) -> list[bytes]:
    """Each text's cache key."""
    return [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]


class VectorCache:
    """Output rows by text key, least recently used out first, within ``max_bytes`` (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._rows: OrderedDict[bytes, tuple[Row, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, keys: list[bytes]) -> Lookup:
        """Which of ``keys`` it holds (their rows, now the most recently used) and which it lacks."""
        with self._lock:
            found = [self._get(k) for k in keys]
        held = [i for i, row in enumerate(found) if row is not None]
        missing = np.array([i for i, row in enumerate(found) if row is None], np.int64)
        return Lookup(keys, missing, np.array(held, np.int64), [found[i] for i in held])  # type: ignore[misc]

    def complete(self, lookup: Lookup, new: Vectors) -> Vectors:
        """The rows of ``lookup.keys``: those it held and ``new`` (the missing ones', in order),
        which it now holds too."""
        with self._lock:
            for k, i in enumerate(lookup.missing.tolist()):
                self._put(lookup.keys[i], new[k])
        if not len(lookup.held):
            return new
        return _merged(new, lookup.missing, lookup.rows, lookup.held, len(lookup.keys))

    def _get(self, key: bytes) -> Row | None:
        entry = self._rows.get(key)
        if entry is None:
            return None
        self._rows.move_to_end(key)
        return entry[0]

    def _put(self, key: bytes, row: Row) -> None:
        if isinstance(row, SparseVector):  # copies: a view would keep the whole batch's arrays alive
            row = SparseVector(row.indices.copy(), row.values.copy(), row.dim)
            size = row.indices.nbytes + row.values.nbytes + 2 * ENTRY_OVERHEAD
        else:
            row = row.copy()
            size = row.nbytes + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._rows.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._rows[key] = (row, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self._rows.popitem(last=False)[1][1]


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
