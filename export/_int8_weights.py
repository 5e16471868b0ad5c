"""int8 weights that every x86 int8 kernel of onnxruntime multiplies exactly.

onnxruntime's u8s8 GEMM (uint8 activations x int8 weights) packs four consecutive rows of K per
column and, on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI), multiplies them with
``vpmaddubsw``: the products of rows ``2j`` and ``2j + 1`` are added into a *saturating int16*. With
activations up to 255 and weights up to 127 a pair can reach 64,770 and is clipped to 32,767, so the
vector comes out wrong. VNNI (``vpdpbusd``), AMX and ARM's kernels add in int32 and are exact.
Measured on an AVX2-only EPYC (benchmarks/results/int8-avx2.json): weights whose pairs
``|w_2j| + |w_2j+1|`` stay within 128 (255 x 128 = 32,640) come out exact there, for the GEMM and
the GEMV (one row) kernels, while pairs of odd-aligned rows may be large; full-range weights do not.

Three ways to lay out a column's int8 weights (``WeightRange``):

- ``full``: symmetric per column, scale ``max|w| / 127``: exact only with VNNI/AMX/ARM kernels.
- ``7bit``: scale ``max|w| / 64`` (onnxruntime's ``reduce_range``): exact everywhere, one bit of
  weight resolution lost on every column.
- ``pairs``: the column's scale is the one, between ``max|w| / 127`` and ``max pair / 128``, that
  minimises the column's squared error (weighted by the mean square of each input row) once every
  pair whose levels add to more than 128 is brought down to 128. Exact everywhere; in practice
  close to ``full``, because few pairs hold two large weights.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

PAIR_LIMIT = 128  # 255 * 128 = 32,640 fits int16: no u8s8 kernel saturates
_STEPS = 12  # candidate scales per column between the full-range scale and the pair-safe one


class WeightRange(str, Enum):
    FULL = "full"
    SEVEN_BIT = "7bit"
    PAIRS = "pairs"


def quantize_columns(
    w: np.ndarray,
    weight_range: WeightRange | str,
    row_weight: np.ndarray | None = None,
    per_tensor: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scale)``: int8 ``q`` [K, N] and float32 ``scale`` [N] (or [1] with ``per_tensor``), ``w ≈ q * scale``.

    ``row_weight`` [K]: how much each input row counts in the error (e.g. the mean square of the
    activation feeding it); rows count alike without it.
    """
    wr = WeightRange(weight_range)
    w = np.asarray(w, dtype=np.float32)
    absmax = np.abs(w).max() * np.ones(1, np.float32) if per_tensor else np.abs(w).max(axis=0)
    absmax = np.where(absmax == 0, 1.0, absmax).astype(np.float32)
    if wr is WeightRange.FULL:
        scale = absmax / 127.0
    elif wr is WeightRange.SEVEN_BIT:
        scale = absmax / 64.0
    else:
        return _pairs(w, absmax, row_weight, per_tensor)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def max_pair_sum(q: np.ndarray) -> int:
    """The largest ``|q[2j]| + |q[2j+1]|`` over rows of K (axis 0) and columns."""
    a = np.abs(np.asarray(q, dtype=np.int32).reshape(q.shape[0], -1))
    if a.shape[0] % 2:
        a = np.vstack([a, np.zeros((1, a.shape[1]), np.int32)])
    return int((a[0::2] + a[1::2]).max()) if a.size else 0


def _pairs(
    w: np.ndarray, absmax: np.ndarray, row_weight: np.ndarray | None, per_tensor: bool
) -> tuple[np.ndarray, np.ndarray]:
    k = w.shape[0]
    wp = np.vstack([w, np.zeros((1, w.shape[1]), np.float32)]) if k % 2 else w
    rw = np.ones(wp.shape[0], np.float32) if row_weight is None else np.asarray(row_weight, np.float32)
    if rw.shape[0] != wp.shape[0]:
        rw = np.concatenate([rw, np.zeros(wp.shape[0] - rw.shape[0], np.float32)])
    pair = np.abs(wp[0::2]) + np.abs(wp[1::2])
    pair_max = pair.max() * np.ones(1, np.float32) if per_tensor else pair.max(axis=0)
    lo = absmax / 127.0
    hi = np.maximum(lo, pair_max / PAIR_LIMIT)
    best_q = np.zeros(wp.shape, np.int8)
    best_s = hi.copy()
    best_err = np.full(lo.shape, np.inf, np.float64)
    for f in np.linspace(0.0, 1.0, _STEPS):
        s = lo + f * (hi - lo)
        q = _fit_pairs(np.round(wp / s).astype(np.int32), rw)
        err = (rw[:, None] * np.square(wp - q * s)).sum(axis=0, dtype=np.float64)
        if per_tensor:
            err = np.array([err.sum()])
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s, best_s)
        cols = better if not per_tensor else np.full(wp.shape[1], bool(better[0]))
        best_q[:, cols] = q[:, cols]
    return best_q[:k], best_s.astype(np.float32)


def _fit_pairs(q: np.ndarray, rw: np.ndarray) -> np.ndarray:
    """Bring every pair of rows whose levels add to more than ``PAIR_LIMIT`` down to it, taking
    the cut from the two in inverse proportion to their row weights (the cheaper row gives more)."""
    q = np.clip(q, -127, 127)
    a, b = q[0::2], q[1::2]
    excess = np.maximum(np.abs(a) + np.abs(b) - PAIR_LIMIT, 0)
    if not excess.any():
        return q.astype(np.int8)
    ra, rb = rw[0::2][:, None], rw[1::2][:, None]
    share_a = np.where(ra + rb > 0, rb / np.maximum(ra + rb, 1e-30), 0.5)
    cut_a = np.minimum(np.round(excess * share_a).astype(np.int32), np.abs(a))
    cut_b = excess - cut_a
    over = cut_b > np.abs(b)
    cut_a = np.where(over, excess - np.abs(b), cut_a)
    cut_b = np.where(over, np.abs(b), cut_b)
    out = q.copy()
    out[0::2] = np.sign(a) * (np.abs(a) - cut_a)
    out[1::2] = np.sign(b) * (np.abs(b) - cut_b)
    return out.astype(np.int8)


def feedback_factor(gram: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """The upper Cholesky factor ``U`` of ``(gram + damp * diag(gram))^-1`` that ``round_with_feedback``
    spreads rounding errors with; ``gram`` [K, K] is ``x.T @ x`` over the inputs ``x`` [rows, K].

    The damping is relative to each diagonal entry, so the factor of inputs scaled per channel
    (``x / s``) is this one with its column ``j`` times ``s_j``: one factorisation serves every
    smoothing scale tried.
    """
    h = np.asarray(gram, np.float64).copy()
    diag = np.diag(h).copy()
    dead = diag <= 0
    diag[dead] = 1.0
    h[dead, :] = 0.0
    h[:, dead] = 0.0
    h[np.diag_indices_from(h)] = diag * (1.0 + damp)
    return np.linalg.cholesky(np.linalg.inv(h)).T  # type: ignore[no-any-return]


def round_with_feedback(
    w: np.ndarray,
    scale: np.ndarray,
    factor: np.ndarray,
    weight_range: WeightRange | str,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """int8 levels for ``w`` [K, N] at the column scales ``scale`` [N] that keep ``x @ w`` close on
    the inputs ``x``, rather than each weight close on its own; ``factor`` is
    ``feedback_factor(x.T @ x)``.

    The rows of K are rounded in order; each row's rounding error is spread over the rows not yet
    rounded through the inverse of ``x.T @ x`` (GPTQ, Frantar et al., 2023: optimal brain
    quantization, one row at a time). The layout's limits hold as each row is rounded: ``pairs``
    caps an odd row's levels at ``PAIR_LIMIT`` minus its even partner's, so the error of the cap is
    fed forward too; an even row is capped at ``PAIR_LIMIT`` minus its partner's levels in
    ``start`` (the plain rounding, e.g. ``quantize_columns``'), which left the pair its share.
    """
    wr = WeightRange(weight_range)
    k, n = w.shape
    top = 64 if wr is WeightRange.SEVEN_BIT else 127
    u = factor  # row i: how row i's error moves the rows after it
    work = np.asarray(w, np.float64) / scale.astype(np.float64)  # in levels
    q = np.zeros((k, n), np.int32)
    block = 128
    for first in range(0, k, block):
        end = min(first + block, k)
        err = np.zeros((end - first, n))
        for i in range(first, end):
            limit = np.full(n, top)
            if wr is WeightRange.PAIRS and i % 2 == 1:
                limit = np.minimum(limit, PAIR_LIMIT - np.abs(q[i - 1]))
            elif wr is WeightRange.PAIRS and start is not None and i + 1 < k:
                limit = np.minimum(limit, PAIR_LIMIT - np.abs(start[i + 1].astype(np.int32)))
            qi = np.clip(np.round(work[i]), -limit, limit)
            q[i] = qi
            e = (work[i] - qi) / u[i, i]
            work[i + 1 : end] -= np.outer(u[i, i + 1 : end], e)
            err[i - first] = e
        work[end:] -= u[first:end, end:].T @ err
    return q.astype(np.int8)
