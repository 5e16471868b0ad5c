"""The quality gate of a lossy reranker bundle: does it still order documents as PyTorch's fp32 does?

A reranker's output is read as an order: for each query, its candidates sorted by score. The gate
scores ``QUERIES`` queries against ``CANDIDATES`` candidates each (950 pairs of the 1000 built-in gate
texts: each query is a sentence, its candidates the texts that follow it in the set: sentences,
paragraphs and whole docstrings from the same and nearby modules, some past the max length) with the
bundle and with the PyTorch model, and compares per query and label:

- ``rank_corr``: Spearman's rank correlation of the two scorings, mean over queries;
- ``top_kept``: the share of the reference's top ``TOP_K`` candidates that the bundle's top
  ``TOP_K`` also holds, mean over queries (what a search page shows);
- ``max_err``: the largest score difference, in units of the spread (standard deviation) of the
  reference's scores over all pairs: where a user thresholds scores, how far one can move.

Default thresholds per precision are in ``DEFAULT_THRESHOLDS``; a user may change them explicitly
(``thresholds=``), never silently. A miss raises ``GateError`` naming every number.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from embedrt._reranker import Reranker
from embedrt._types import Precision

from ._gate import GateError, merge_thresholds
from ._gate import gate_texts as default_gate_texts

QUERIES = 50
CANDIDATES = 19
TOP_K = 5

# int8, measured on a MiniLM-L6 cross-encoder with a trained head (``benchmarks.distilled_reranker``;
# logits spread 1.52 over the gate's pairs): the int8 recipes give rank correlation 0.988-0.994, top-5
# kept 0.94-0.97, max error 0.07-0.12 spreads; bf16 (PyTorch's, OpenVINO's) 0.997, 0.98, 0.02-0.03.
# A recipe that breaks (saturated products, a lost outlier channel) moves scores by whole spreads.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "int8": {"rank_corr": 0.98, "top_kept": 0.9, "max_err": 0.5},
    "bf16": {"rank_corr": 0.99, "top_kept": 0.93, "max_err": 0.15},  # OpenVINO's, on a plain fp32 bundle
}
_KNOWN_KEYS = ("rank_corr", "top_kept", "max_err")
_LOWER_IS_BETTER = ("max_err",)


def gate_pairs(texts: list[str] | None = None) -> list[tuple[str, str]]:
    """``QUERIES`` x ``CANDIDATES`` (query, document) pairs, query by query: query ``i`` is text
    ``i * (CANDIDATES + 1)`` of the gate set (a sentence, by the set's pattern), its candidates the
    ``CANDIDATES`` texts after it."""
    texts = texts or default_gate_texts()
    step = CANDIDATES + 1
    if len(texts) < QUERIES * step:
        raise ValueError(f"the reranker gate needs {QUERIES * step} texts; got {len(texts)}")
    return [(texts[i * step], texts[i * step + 1 + j]) for i in range(QUERIES) for j in range(CANDIDATES)]


def _key(precision: Precision | str) -> str:
    return (precision.value if isinstance(precision, Precision) else str(precision)).lower()


def thresholds_for(precision: Precision | str, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The thresholds of ``precision`` (a graph's, or ``"bf16"``: OpenVINO's hint), ``overrides`` applied."""
    return merge_thresholds(DEFAULT_THRESHOLDS, _key(precision), overrides, _KNOWN_KEYS, "reranker gate")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties sharing their mean rank (Spearman's convention)."""
    order = np.argsort(x, axis=-1, kind="stable")
    ranks = np.empty_like(x, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(x.shape[-1], dtype=np.float64)[None, :].repeat(len(x), 0), axis=-1)
    for row in range(len(x)):  # ties (a constant scoring, equal scores) share the mean of their ranks
        values, inverse, counts = np.unique(x[row], return_inverse=True, return_counts=True)
        if len(values) < x.shape[-1]:
            ranks[row] = np.bincount(inverse, ranks[row])[inverse] / counts[inverse]
    return ranks


def rank_metrics(ref: np.ndarray, cand: np.ndarray, top_k: int = TOP_K) -> dict[str, Any]:
    """``ref``, ``cand``: scores [queries, candidates] (one label). Spearman per query, top-k kept
    per query, and the score differences in units of the reference's spread."""
    ra, rb = _ranks(ref), _ranks(cand)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    va, vb = (ra * ra).sum(1), (rb * rb).sum(1)
    # a constant scoring has no order: it agrees with another constant one only
    corr = np.where((va > 0) & (vb > 0), (ra * rb).sum(1) / np.sqrt(np.maximum(va * vb, 1e-30)),
                    np.where((va == 0) & (vb == 0), 1.0, 0.0))  # fmt: skip
    k = min(top_k, ref.shape[1])
    top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :k]
    top_cand = np.argsort(-cand, axis=1, kind="stable")[:, :k]
    kept = np.array([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_cand, strict=True)])
    spread = float(ref.std())
    err = np.abs(cand - ref) / max(spread, 1e-12)
    return {
        "rank_corr": float(corr.mean()), "rank_corr_min": float(corr.min()), "top_kept": float(kept.mean()),
        "max_err": float(err.max()), "mean_err": float(err.mean()), "spread": spread,
        "worst_query": int(np.argmin(corr)),
    }  # fmt: skip


def run_rerank_gate(
    ref: np.ndarray, cand: np.ndarray, precision: Precision | str, thresholds: Mapping[str, float] | None = None,
    pairs: list[tuple[str, str]] | None = None, provider: str = "cpu",
) -> dict[str, Any]:
    """Gate ``cand`` logits [pairs, labels] against ``ref`` (pairs query by query, ``CANDIDATES`` each);
    every label is an order of its own and the worst label's numbers are kept."""
    limits = thresholds_for(precision, thresholds)
    prec = _key(precision)
    per_label = [
        rank_metrics(ref[:, j].reshape(-1, CANDIDATES).astype(np.float64), cand[:, j].reshape(-1, CANDIDATES))
        for j in range(ref.shape[1])
    ]
    worst = min(per_label, key=lambda m: m["rank_corr"])
    report: dict[str, Any] = {
        "reference": "PyTorch fp32 logits", "queries": len(ref) // CANDIDATES, "candidates": CANDIDATES,
        "labels": ref.shape[1], "top_k": TOP_K, **worst, "precision": prec, "provider": provider,
        "thresholds": limits, "thresholds_default": not thresholds,
    }  # fmt: skip
    for m in per_label[1:]:  # several labels: the weakest value of each metric
        report["rank_corr"] = min(report["rank_corr"], m["rank_corr"])
        report["top_kept"] = min(report["top_kept"], m["top_kept"])
        report["max_err"] = max(report["max_err"], m["max_err"])
    failures = [
        f"{k} {report[k]:.4f} {'>' if k in _LOWER_IS_BETTER else '<'} {v}"
        for k, v in limits.items()
        if (report[k] > v if k in _LOWER_IS_BETTER else report[k] < v)
    ]
    report["failures"], report["passed"] = failures, not failures
    if failures:
        query = pairs[report["worst_query"] * CANDIDATES][0][:80] if pairs else f"#{report['worst_query']}"
        raise GateError(
            f"reranker gate ({prec} on {provider}) missed: {'; '.join(failures)} "
            f"(rank correlation {report['rank_corr']:.4f}, top-{TOP_K} kept {report['top_kept']:.3f}, "
            f"max score error {report['max_err']:.3f} spreads, over {report['queries']} queries; "
            f"worst query {query!r}). Change the gate explicitly if this is acceptable.",
            report,
        )
    return report


def rerank_gate(
    reranker: Reranker, reference: np.ndarray, pairs: list[tuple[str, str]],
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The gate of ``reranker`` on ``pairs`` (``gate_pairs``), whose PyTorch logits are ``reference``."""
    t0 = time.perf_counter()
    tok = reranker.tokenize_pairs(pairs, prompt="")
    cand = reranker.predict_tokenized(tok, batch_size=32)
    hint = reranker.precision_hint  # OpenVINO's bf16 on an fp32 graph is gated as bf16
    precision = hint.value if hint is not None else reranker.manifest.precision
    report = run_rerank_gate(reference, cand, precision, thresholds, pairs, reranker.device.value)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
