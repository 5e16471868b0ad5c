"""Output quantization of embeddings: float32, float16, int8, uint8, binary, ubinary.

Computed exactly as sentence-transformers' ``quantize_embeddings`` does, in numpy:

- ``float16``: numpy's rounding to the nearest half float (not one of sentence-transformers'
  precisions): half the bytes of float32, a relative error of at most 2^-11 for values of magnitude
  6.1e-5 and more, an absolute one of at most 3e-8 below (what pgvector's ``halfvec``, Qdrant's and
  FAISS' float16 storage hold); values beyond 65504 are refused (they would become inf).
- ``int8`` / ``uint8``: per dimension, the range ``[min, max]`` is cut into 255 equal steps and each
  value becomes ``floor((x - min) / step)`` clipped to 0..255 (``int8`` subtracts 128). The ranges
  come from ``ranges`` (shape ``(2, dim)``: mins, maxes), else from ``calibration_embeddings``, else
  from the embeddings themselves, which then must be more than one.
- ``binary`` / ``ubinary``: one bit per dimension (``x > 0``), packed 8 per byte, big-endian bit
  order (``numpy.packbits``); ``binary`` subtracts 128 to fit int8. ``dim / 8`` bytes per vector.

The same function serves ``Embedder.encode(precision=...)``, the CLI and the corpus job.
"""

from __future__ import annotations

import logging

import numpy as np

from ._types import EmbeddingPrecision, parse

log = logging.getLogger("embedrt")

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_FEW_FOR_RANGES = 100  # below this many vectors, ranges from the batch itself are unstable (logged)


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: str | EmbeddingPrecision,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """``embeddings`` ``(n, dim)`` or ``(dim,)`` in ``precision``; see the module docstring.

    Returns float32, int8 or uint8 numpy arrays; binary precisions have ``ceil(dim / 8)`` columns.
    """
    prec = parse(EmbeddingPrecision, precision, "precision")
    x = np.asarray(embeddings)
    if x.dtype in (np.int8, np.uint8):
        raise ValueError(f"embeddings to quantize must be float, got {x.dtype}: they are quantized already")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"embeddings must be a float array, got dtype {x.dtype}")
    if x.ndim == 2 and x.shape[0] == 0:
        return _empty(x.shape[1], prec)
    if prec is EmbeddingPrecision.FLOAT32:
        return x.astype(np.float32)
    if prec is EmbeddingPrecision.FLOAT16:
        biggest = float(np.abs(x).max(initial=0.0))
        if biggest > _FLOAT16_MAX:  # it would become inf
            raise ValueError(f"precision 'float16' holds values up to {_FLOAT16_MAX:g}; these vectors reach {biggest:g}: "
                             "normalize them or keep float32")  # fmt: skip
        return x.astype(np.float16)
    if prec in (EmbeddingPrecision.INT8, EmbeddingPrecision.UINT8):
        bounds = quantization_ranges(x, prec, ranges, calibration_embeddings).astype(np.float32, copy=False)
        starts = bounds[0, :]
        steps = (bounds[1, :] - starts) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((x - starts) / steps), 0, 255)
        if prec is EmbeddingPrecision.UINT8:
            return buckets.astype(np.uint8)
        return (buckets - 128).astype(np.int8)
    packed = np.packbits(x > 0, axis=-1)
    if prec is EmbeddingPrecision.UBINARY:
        return packed
    return (packed.astype(np.int16) - 128).astype(np.int8)


def quantization_ranges(
    embeddings: np.ndarray,
    precision: str | EmbeddingPrecision = EmbeddingPrecision.INT8,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """The ``(2, dim)`` per-dimension ``[min; max]`` that int8/uint8 quantization uses.

    ``ranges`` if given (checked), else the min/max of ``calibration_embeddings``, else of
    ``embeddings`` (refused for a single vector: its range is empty). Save the result to quantize
    later batches, or a whole corpus, on the same scale.
    """
    prec = parse(EmbeddingPrecision, precision, "precision")
    dim = np.asarray(embeddings).shape[-1]
    if ranges is not None:
        out = np.asarray(ranges)
        if out.shape != (2, dim):
            raise ValueError(f"ranges must have shape (2, {dim}) (mins, maxes per dimension), got {out.shape}")
        return out
    source = embeddings if calibration_embeddings is None else calibration_embeddings
    source = np.asarray(source)
    if calibration_embeddings is None and (source.ndim == 1 or source.shape[0] == 1):
        raise ValueError(
            f"cannot compute {prec.value} quantization ranges from a single embedding: pass ranges= or "
            "calibration_embeddings= computed on a representative set of embeddings"
        )
    if source.ndim != 2 or source.shape[-1] != dim:
        raise ValueError(f"calibration embeddings must have shape (n, {dim}), got {source.shape}")
    if calibration_embeddings is None and source.shape[0] < _FEW_FOR_RANGES:
        log.warning(
            "computing %s quantization ranges from %d embeddings; ranges from more embeddings (or "
            "calibration_embeddings) are more stable", prec.value, source.shape[0],
        )
    return np.vstack((np.min(source, axis=0), np.max(source, axis=0)))


def quantized_shape(dim: int, precision: str | EmbeddingPrecision) -> tuple[int, type[np.generic]]:
    """The width and numpy type of ``dim``-dimensional vectors in ``precision``."""
    prec = parse(EmbeddingPrecision, precision, "precision")
    if prec in (EmbeddingPrecision.FLOAT32, EmbeddingPrecision.FLOAT16):
        return dim, np.float32 if prec is EmbeddingPrecision.FLOAT32 else np.float16
    width = (dim + 7) // 8 if prec in (EmbeddingPrecision.BINARY, EmbeddingPrecision.UBINARY) else dim
    return width, np.int8 if prec in (EmbeddingPrecision.INT8, EmbeddingPrecision.BINARY) else np.uint8


def _empty(dim: int, prec: EmbeddingPrecision) -> np.ndarray:
    width, dtype = quantized_shape(dim, prec)
    return np.zeros((0, width), dtype)
