"""Parity of reranker and sparse bundles against the PyTorch model they came from.

Reranker: the bundle's raw logits (``Reranker``, its own tokenizer.json, length-sorted batches) against
the ``*ForSequenceClassification`` logits fed by the transformers tokenizer with pairs cut
longest-first at max length (as ``CrossEncoder`` does), on pairs that cross the max length; token
ids must match exactly. Sparse: the bundle's sparse vectors against SPLADE pooling in PyTorch
(``SpladeModel.reference``), as dense rows; token ids must match too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from embedrt._errors import ParityError
from embedrt._reranker import Reranker
from embedrt._sparse_encoder import SparseEncoder
from embedrt._types import Precision

from ._heads import ScoreModel, SpladeModel, load_head_reference
from ._kinds import read_head_source
from ._progress import Log
from ._texts import validation_texts
from ._validate import reference_outputs

# fp32: differences are float rounding; scaled by the largest reference value (at least 1). int8
# (rerankers): a coarse check on the grid's hard pairs (empty, cut at the max length), which catches
# a broken graph (errors the size of the logits; a trained MiniLM reranker's int8: 0.04 of them);
# what holds int8 to account is its gate (``_gate_rerank``), on the order of each query's candidates.
MAX_REL_DIFF = 2e-4
MAX_REL_DIFF_INT8 = 0.5
MIN_COSINE = 0.99999


def validation_pairs() -> list[tuple[str, str]]:
    """~60 (query, document) pairs: short and long on either side, both past the max length, other
    scripts, empty strings. Built from the embedding export's grid."""
    texts = validation_texts()
    queries = [texts[0], texts[2], texts[12], texts[22], texts[-4], texts[-1], ""]
    pairs = [(q, d) for q in queries[:3] for d in texts[::3]]
    pairs += [(q, texts[-5]) for q in queries]  # a document far past any max length
    pairs += [(texts[-4], texts[-4]), (texts[-1], texts[-3]), ("", ""), (texts[-5], "yes")]
    return pairs


def pairs_from_texts(texts: list[str]) -> list[tuple[str, str]]:
    """Pairs made of the user's texts: each with the next (a long one meets a short one) and with itself."""
    return list(zip(texts, texts[1:] + texts[:1], strict=True)) + [(t, t) for t in texts]


def reference_logits(
    model: ScoreModel, hf_tok: Any, pairs: list[tuple[str, str]], max_length: int, batch_size: int = 8,
    log: Log | None = None,
) -> tuple[np.ndarray, list[list[int]]]:
    """PyTorch fp32 logits of ``pairs``, and their token ids (``_validate.reference_outputs``)."""
    return reference_outputs(hf_tok, [a for a, _ in pairs], [b for _, b in pairs], max_length, batch_size,
                             "PyTorch logits", log,
                             lambda enc: model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))[0])  # fmt: skip


def reference_sparse(
    model: SpladeModel, hf_tok: Any, texts: list[str], max_length: int, batch_size: int = 8
) -> tuple[np.ndarray, list[list[int]]]:
    """PyTorch fp32 sparse vectors of ``texts`` as dense rows, and their token ids (``_validate.reference_outputs``)."""
    return reference_outputs(hf_tok, texts, None, max_length, batch_size, "PyTorch reference", None,
                             lambda enc: model.reference(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")))  # fmt: skip


def validate_reranker(
    reranker: Reranker, model: ScoreModel, hf_tok: Any, pairs: list[tuple[str, str]] | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Compare logits pair by pair; ``ParityError`` naming the worst pair on failure."""
    t0 = time.perf_counter()
    pairs = pairs or validation_pairs()
    ref, ref_ids = reference_logits(model, hf_tok, pairs, reranker.max_seq_length)
    tok = reranker.tokenize_pairs(pairs, prompt="")
    cand = reranker.predict_tokenized(tok, batch_size=8)
    diff = np.abs(cand.astype(np.float64) - ref).max(axis=1)
    scale = max(1.0, float(np.abs(ref).max()))
    labels = [f"{a[:50]!r} / {b[:50]!r}" for a, b in pairs]
    rel = MAX_REL_DIFF_INT8 if reranker.manifest.precision is Precision.INT8 else MAX_REL_DIFF
    report = _report(diff, scale, labels, ref_ids, tok.ids, "pairs", rel)
    report["truncated_pairs"] = int(tok.truncated.sum())
    report["provider"] = reranker.device.value
    return _finish(report, t0, raise_on_failure)


def validate_sparse(
    encoder: SparseEncoder, model: SpladeModel, hf_tok: Any, texts: list[str] | None = None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """Compare the sparse vectors as dense rows (max difference and cosine per text)."""
    t0 = time.perf_counter()
    texts = texts or validation_texts()
    ref, ref_ids = reference_sparse(model, hf_tok, texts, encoder.max_seq_length)
    tok = encoder.tokenize(texts, prompt="")
    cand = encoder.encode_tokenized(tok, batch_size=8).to_dense().astype(np.float64)
    scale = max(1.0, float(np.abs(ref).max()))
    report = _report(np.abs(cand - ref).max(axis=1), scale, [t[:80] for t in texts], ref_ids, tok.ids, "texts")
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cos = np.where(norms > 0, (ref * cand).sum(1) / np.maximum(norms, 1e-30), 1.0)
    report["min_cosine"] = float(cos.min())
    report["active_dims_mean"] = float((cand > 0).sum(1).mean())
    report["provider"] = encoder.device.value
    if cos.min() < MIN_COSINE:
        report["failures"].append(f"min cosine {cos.min():.7f} < {MIN_COSINE}")
        report["passed"] = False
    return _finish(report, t0, raise_on_failure)


def _report(
    diff: np.ndarray, scale: float, labels: list[str], ref_ids: list[list[int]], ids: list[list[int]], what: str,
    rel: float = MAX_REL_DIFF,
) -> dict[str, Any]:
    worst = int(np.argmax(diff))
    mismatched = [i for i, (a, b) in enumerate(zip(ref_ids, ids, strict=True)) if a != b]
    failures = []
    if diff.max() > rel * scale:
        failures.append(f"max abs diff {diff.max():.2e} > {rel * scale:.2e}")
    if mismatched:
        failures.append(f"{len(mismatched)} input(s) tokenized differently, first: {labels[mismatched[0]]}")
    return {
        "reference": "PyTorch fp32 (transformers model, transformers tokenizer)",
        what: len(diff),
        "max_abs_diff": float(diff.max()),
        "tolerance": {"max_abs_diff": rel * scale},
        "worst": {"index": worst, "input": labels[worst], "abs_diff": float(diff[worst])},
        "token_id_mismatches": len(mismatched),
        "failures": failures,
        "passed": not failures,
    }


def _finish(report: dict[str, Any], t0: float, raise_on_failure: bool) -> dict[str, Any]:
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if raise_on_failure and not report["passed"]:
        w = report["worst"]
        raise ParityError(
            f"the exported graph disagrees with PyTorch ({'; '.join(report['failures'])}); "
            f"worst input #{w['index']} {w['input']} (abs diff {w['abs_diff']:.2e})",
            report,
        )
    return report


def validate_head_bundle(
    bundle: str | Path, source: str | Path, texts: list[str] | None, raise_on_failure: bool, device: str,
    gate: bool = True, gate_texts: list[str] | None = None, gate_thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """``embedrt validate`` for a reranker or sparse bundle: parity against ``source`` on ``device``;
    with ``gate``, an int8 reranker's gate too (``_gate_rerank``, on the pairs of ``gate_texts``), as
    its export ran it: on the CPU at hand, which may compute int8 otherwise than the exporting one.

    For a reranker, ``texts`` (if given) are paired (``pairs_from_texts``)."""
    from embedrt._bundle import load_manifest
    from embedrt._types import BundleKind

    kind = load_manifest(bundle, verify=False).kind
    model = Reranker(bundle, device=device) if kind is BundleKind.RERANKER else SparseEncoder(bundle, device=device)
    head = read_head_source(source, model.kind)
    head.spec.max_seq_length = model.max_seq_length  # compare what the bundle does, at its own limit
    reference, hf_tok = load_head_reference(head)
    if isinstance(model, Reranker):
        assert isinstance(reference, ScoreModel)
        pairs = pairs_from_texts(texts) if texts else None
        report = validate_reranker(model, reference, hf_tok, pairs, raise_on_failure)
        if gate and model.manifest.precision is Precision.INT8:
            report["gate"] = _reranker_gate(model, reference, hf_tok, gate_texts, gate_thresholds, raise_on_failure)
            if not report["gate"]["passed"]:
                report["passed"] = False
                report["failures"].append("reranker gate: " + "; ".join(report["gate"]["failures"]))
        return report
    assert isinstance(reference, SpladeModel)
    return validate_sparse(model, reference, hf_tok, texts, raise_on_failure)



def _reranker_gate(
    reranker: Reranker, model: ScoreModel, hf_tok: Any, texts: list[str] | None,
    thresholds: dict[str, float] | None, raise_on_failure: bool,
) -> dict[str, Any]:
    from ._gate import GateError
    from ._gate_rerank import gate_pairs, rerank_gate

    pairs = gate_pairs(texts)
    ref, _ = reference_logits(model, hf_tok, pairs, reranker.max_seq_length, batch_size=32)
    try:
        return rerank_gate(reranker, ref, pairs, thresholds)
    except GateError as e:
        if raise_on_failure:
            raise
        return dict(e.report)
