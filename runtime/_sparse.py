"""Sparse vectors (SPLADE): a batch held as CSR arrays, built and compared without dense rows.

``SparseEmbeddings`` holds ``n`` vectors of width ``dim`` as ``indptr`` [n + 1], ``indices`` [nnz]
(ascending within each row) and ``values`` [nnz]; ``SparseVector`` is one of them. Nothing here
materialises a vocabulary-sized array per text unless asked (``to_dense``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from ._similarity import similarity as dense_similarity
from ._types import SimilarityFunction, parse

_DENSE_ROWS = 64  # rows of one side made dense at a time while computing a similarity matrix


@dataclass(frozen=True)
class SparseVector:
    """One sparse vector: ``values[j]`` is the weight of dimension (token id) ``indices[j]``."""

    indices: np.ndarray  # int64, ascending
    values: np.ndarray  # float32
    dim: int

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.dim, np.float32)
        out[self.indices] = self.values
        return out

    def to_dict(self) -> dict[int, float]:
        return dict(zip(self.indices.tolist(), self.values.tolist(), strict=True))


@dataclass(frozen=True)
class SparseEmbeddings:
    """``n`` sparse vectors of width ``dim`` in CSR form; ``[i]`` is a ``SparseVector``."""

    indptr: np.ndarray  # int64 [n + 1]
    indices: np.ndarray  # int64 [nnz]
    values: np.ndarray  # float32 [nnz]
    dim: int

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, key: int) -> SparseVector: ...
    @overload
    def __getitem__(self, key: slice | Sequence[int] | np.ndarray) -> SparseEmbeddings: ...

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> SparseVector | SparseEmbeddings:
        """An integer gives one ``SparseVector``; a slice, integers or a boolean mask give the rows
        they select as ``SparseEmbeddings``, as numpy indexes rows."""
        n = len(self)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for {n} sparse vectors")
            i %= n
            lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
            return SparseVector(self.indices[lo:hi], self.values[lo:hi], self.dim)
        try:
            rows = np.arange(n)[key if isinstance(key, slice) else np.asarray(key)]
        except IndexError as e:
            raise IndexError(f"{e} (indexing {n} sparse vectors)") from e
        if rows.ndim != 1:
            raise IndexError(f"sparse vectors are indexed by row: got a key of {rows.ndim} dimensions")
        starts, counts = self.indptr[rows], np.diff(self.indptr)[rows]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        take = np.arange(indptr[-1]) + np.repeat(starts - indptr[:-1], counts)
        return SparseEmbeddings(indptr, self.indices[take], self.values[take], self.dim)

    def __iter__(self) -> Iterator[SparseVector]:
        return (self[i] for i in range(len(self)))

    def rows(self) -> np.ndarray:
        """The row of every stored value, int64 [nnz]."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        out[self.rows(), self.indices] = self.values
        return out

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.csr_matrix`` (needs scipy)."""
        try:
            from scipy.sparse import csr_matrix
        except ImportError as e:
            raise ImportError("to_scipy needs scipy: pip install scipy") from e
        return csr_matrix((self.values, self.indices, self.indptr), shape=self.shape)

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> SparseEmbeddings:
        x = np.atleast_2d(np.asarray(dense, dtype=np.float32))
        rows, cols = np.nonzero(x)
        indptr = np.zeros(len(x) + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=len(x)), out=indptr[1:])
        return cls(indptr, cols.astype(np.int64), x[rows, cols], x.shape[1])

    @classmethod
    def stack(cls, vectors: list[SparseVector], dim: int) -> SparseEmbeddings:
        indptr = np.zeros(len(vectors) + 1, np.int64)
        np.cumsum([v.nnz for v in vectors], out=indptr[1:])
        if not vectors:
            return cls(indptr, np.zeros(0, np.int64), np.zeros(0, np.float32), dim)
        return cls(indptr, np.concatenate([v.indices for v in vectors]), np.concatenate([v.values for v in vectors]), dim)


def batch_rows(indices: np.ndarray, values: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a graph's top-k output ``[b, k]`` as CSR pieces: counts [b], indices and values, the
    zero weights dropped and each row's indices ascending. Vectorized over the batch."""
    keep = values > 0
    keyed = np.where(keep, indices, dim)  # dropped entries sort last
    order = np.argsort(keyed, axis=1, kind="stable")
    keep = np.take_along_axis(keep, order, axis=1)
    return (
        keep.sum(axis=1).astype(np.int64),
        np.take_along_axis(indices, order, axis=1)[keep].astype(np.int64),
        np.take_along_axis(values, order, axis=1)[keep].astype(np.float32),
    )


def assemble(pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], n: int, dim: int) -> SparseEmbeddings:
    """One ``SparseEmbeddings`` in the caller's order from batches ``(rows, counts, indices, values)``."""
    counts = np.zeros(n, np.int64)
    for rows, c, _, _ in pieces:
        counts[rows] = c
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), np.int64)
    values = np.empty(int(indptr[-1]), np.float32)
    for rows, c, idx, val in pieces:
        owner = np.repeat(np.arange(len(rows)), c)
        starts = np.concatenate(([0], np.cumsum(c)[:-1]))
        dest = indptr[rows][owner] + (np.arange(len(idx)) - starts[owner])
        indices[dest], values[dest] = idx, val
    return SparseEmbeddings(indptr, indices, values, dim)


def as_sparse(x: object, name: str) -> SparseEmbeddings:
    if isinstance(x, SparseEmbeddings):
        return x
    if isinstance(x, SparseVector):
        return SparseEmbeddings.stack([x], x.dim)
    if isinstance(x, list | tuple) and x and all(isinstance(v, SparseVector) for v in x):
        dims = {v.dim for v in x}
        if len(dims) > 1:
            raise ValueError(f"{name}: sparse vectors of different widths in one list: {sorted(dims)}")
        return SparseEmbeddings.stack(list(x), x[0].dim)
    if isinstance(x, np.ndarray | list):
        return SparseEmbeddings.from_dense(np.asarray(x))
    raise TypeError(
        f"{name} must be SparseEmbeddings, a SparseVector, a list of them or a dense array, got {type(x).__name__}"
    )


def sparse_dot(a: SparseEmbeddings, b: SparseEmbeddings) -> np.ndarray:
    """``(len(a), len(b))`` dot products: ``a`` is made dense ``_DENSE_ROWS`` rows at a time and
    gathered at ``b``'s stored indices."""
    out = np.zeros((len(a), len(b)), np.float64)  # float64: euclidean subtracts these from squared norms
    if b.nnz == 0:
        return out
    b_rows = b.rows()
    for start in range(0, len(a), _DENSE_ROWS):
        chunk = SparseEmbeddings(a.indptr[start : start + _DENSE_ROWS + 1] - a.indptr[start],
                                 a.indices[a.indptr[start] : a.indptr[min(start + _DENSE_ROWS, len(a))]],
                                 a.values[a.indptr[start] : a.indptr[min(start + _DENSE_ROWS, len(a))]], a.dim)  # fmt: skip
        products = chunk.to_dense()[:, b.indices].astype(np.float64) * b.values  # [rows, nnz_b]
        block = np.zeros((len(chunk), len(b)), np.float64)
        np.add.at(block.T, b_rows, products.T)
        out[start : start + len(chunk)] = block
    return out


def sparse_similarity(a: object, b: object, fn: str | SimilarityFunction) -> np.ndarray:
    """The similarity matrix of two sets of sparse vectors (manhattan compares dense rows)."""
    name = parse(SimilarityFunction, fn, "similarity_fn_name")
    x, y = as_sparse(a, "embeddings1"), as_sparse(b, "embeddings2")
    if x.dim != y.dim:
        raise ValueError(f"sparse vectors of different widths cannot be compared: {x.dim} and {y.dim}")
    if name is SimilarityFunction.MANHATTAN:
        return dense_similarity(x.to_dense(), y.to_dense(), name)
    dot = sparse_dot(x, y)
    nx, ny = _squared_norms(x), _squared_norms(y)
    if name is SimilarityFunction.DOT:
        return dot.astype(np.float32)
    if name is SimilarityFunction.COSINE:
        return (dot / np.maximum(np.sqrt(nx)[:, None], 1e-12) / np.maximum(np.sqrt(ny)[None, :], 1e-12)).astype(np.float32)
    return (-np.sqrt(np.maximum(nx[:, None] + ny[None, :] - 2 * dot, 0))).astype(np.float32)


def sparse_similarity_pairwise(a: object, b: object, fn: str | SimilarityFunction) -> np.ndarray:
    """Row ``i`` of ``a`` with row ``i`` of ``b``: shared indices are matched by key, not by dense rows."""
    name = parse(SimilarityFunction, fn, "similarity_fn_name")
    x, y = as_sparse(a, "embeddings1"), as_sparse(b, "embeddings2")
    if len(x) != len(y) or x.dim != y.dim:
        raise ValueError(f"similarity_pairwise needs the same shape on both sides, got {x.shape} and {y.shape}")
    if name is SimilarityFunction.MANHATTAN:
        return -np.abs(x.to_dense() - y.to_dense()).sum(-1)  # type: ignore[no-any-return]
    kx, ky = x.rows() * x.dim + x.indices, y.rows() * y.dim + y.indices
    _, ix, iy = np.intersect1d(kx, ky, assume_unique=True, return_indices=True)
    dot = np.bincount(x.rows()[ix], weights=x.values[ix].astype(np.float64) * y.values[iy], minlength=len(x))
    nx, ny = _squared_norms(x), _squared_norms(y)
    if name is SimilarityFunction.DOT:
        return dot.astype(np.float32)
    if name is SimilarityFunction.COSINE:
        return (dot / np.maximum(np.sqrt(nx), 1e-12) / np.maximum(np.sqrt(ny), 1e-12)).astype(np.float32)
    return (-np.sqrt(np.maximum(nx + ny - 2 * dot, 0))).astype(np.float32)


def _squared_norms(x: SparseEmbeddings) -> np.ndarray:
    return np.bincount(x.rows(), weights=x.values.astype(np.float64) ** 2, minlength=len(x))
