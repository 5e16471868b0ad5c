"""Similarity of embeddings in numpy, as sentence-transformers' ``similarity`` functions define it.

``cosine`` (L2-normalized dot product), ``dot``, ``euclidean`` (the negative L2 distance) and
``manhattan`` (the negative L1 distance): larger is always more similar. ``similarity`` gives the
``(n, m)`` matrix of every pair, ``similarity_pairwise`` the ``(n,)`` scores of row ``i`` with row ``i``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._types import SimilarityFunction, parse

_EPS = 1e-12  # as torch.nn.functional.normalize
_CHUNK_ELEMENTS = 1 << 24  # manhattan builds (rows, m, dim) differences in chunks of this many floats


def as_matrix(embeddings: object, name: str) -> np.ndarray:
    """``embeddings`` as a 2-D float array (one vector becomes one row)."""
    x = np.asarray(embeddings)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array of embeddings, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, dim) or (dim,), got {x.shape}")
    return x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x


def _normalized(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _normalized(a) @ _normalized(b).T  # type: ignore[no-any-return]


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b.T  # type: ignore[no-any-return]


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    squared = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2 * (a64 @ b64.T)
    return -np.sqrt(np.maximum(squared, 0))  # type: ignore[no-any-return]


def manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty((len(a), len(b)), dtype=np.result_type(a, b))
    step = max(1, _CHUNK_ELEMENTS // max(1, len(b) * a.shape[1]))
    for start in range(0, len(a), step):
        diff = a[start : start + step, None, :] - b[None, :, :]
        out[start : start + step] = -np.abs(diff).sum(-1)
    return out


def pairwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (_normalized(a) * _normalized(b)).sum(-1)  # type: ignore[no-any-return]


def pairwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1)  # type: ignore[no-any-return]


def pairwise_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.linalg.norm(a - b, axis=-1)  # type: ignore[no-any-return]


def pairwise_manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.abs(a - b).sum(-1)  # type: ignore[no-any-return]


Fn = Callable[[np.ndarray, np.ndarray], np.ndarray]
MATRIX: dict[SimilarityFunction, Fn] = {
    SimilarityFunction.COSINE: cosine,
    SimilarityFunction.DOT: dot,
    SimilarityFunction.EUCLIDEAN: euclidean,
    SimilarityFunction.MANHATTAN: manhattan,
}
PAIRWISE: dict[SimilarityFunction, Fn] = {
    SimilarityFunction.COSINE: pairwise_cosine,
    SimilarityFunction.DOT: pairwise_dot,
    SimilarityFunction.EUCLIDEAN: pairwise_euclidean,
    SimilarityFunction.MANHATTAN: pairwise_manhattan,
}


def similarity(a: object, b: object, fn: str | SimilarityFunction = SimilarityFunction.COSINE) -> np.ndarray:
    """The ``(n, m)`` similarity of every row of ``a`` with every row of ``b`` (float32)."""
    name = parse(SimilarityFunction, fn, "similarity_fn_name")
    x, y = as_matrix(a, "embeddings1"), as_matrix(b, "embeddings2")
    _same_dim(x, y)
    return MATRIX[name](x, y).astype(np.float32, copy=False)


def similarity_pairwise(
    a: object, b: object, fn: str | SimilarityFunction = SimilarityFunction.COSINE
) -> np.ndarray:
    """The ``(n,)`` similarity of row ``i`` of ``a`` with row ``i`` of ``b`` (float32)."""
    name = parse(SimilarityFunction, fn, "similarity_fn_name")
    x, y = as_matrix(a, "embeddings1"), as_matrix(b, "embeddings2")
    _same_dim(x, y)
    if len(x) != len(y):
        raise ValueError(f"similarity_pairwise needs as many rows on both sides, got {len(x)} and {len(y)}")
    return PAIRWISE[name](x, y).astype(np.float32, copy=False)


def _same_dim(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings of different dimensions cannot be compared: {x.shape[1]} and {y.shape[1]}")
