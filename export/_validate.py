"""Parity of a bundle against the PyTorch model it came from.

The reference is the PyTorch module (transformers encoder + pooling + Dense + Normalize) fed by the
transformers tokenizer in the source's original order, batched so that inputs of mixed lengths are
padded together; the candidate is the bundle run by ``embedrt.Embedder`` (its own tokenizer.json,
length-sorted batches). Every text's cosine and norm are compared, and token ids too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embedrt import Embedder
from embedrt._base import DEFAULT_MAX_BATCH_TOKENS
from embedrt._errors import ParityError
from embedrt._tokenize import token_batches
from embedrt._types import Precision

from ._gate import ZERO_NORM, cosines, run_gate
from ._model import EmbeddingModel
from ._progress import Progress, quiet


@dataclass(frozen=True)
class Tolerance:
    min_cosine: float
    mean_cosine: float
    max_norm_rel_diff: float


# The small grid's tolerances. The variants' measured quality gate (mean/min cosine, top-10
# agreement on >= 1000 texts) is stricter where it matters and lives in _gate.py.
TOLERANCES: dict[Precision, Tolerance] = {
    Precision.FP32: Tolerance(min_cosine=0.99999, mean_cosine=0.99999, max_norm_rel_diff=1e-4),
    Precision.FP16: Tolerance(min_cosine=0.999, mean_cosine=0.9999, max_norm_rel_diff=1e-2),
    Precision.INT8: Tolerance(min_cosine=0.95, mean_cosine=0.99, max_norm_rel_diff=0.1),
}


def reference_embeddings(
    model: EmbeddingModel, hf_tokenizer: Any, texts: list[str], max_seq_length: int, batch_size: int = 8,
    log: Callable[[str], None] | None = None, by_length: bool = False,
) -> tuple[np.ndarray, list[list[int]]]:
    """PyTorch fp32 sentence embeddings in the given order, and the token ids transformers gives.

    Batches follow the given order (inputs of mixed lengths padded together), or with ``by_length``
    hold texts of similar length, longest first, under the runtime's token budget (less padding, and
    a long-window model's reference never holds 32 full-window rows at once).
    """
    return reference_outputs(
        hf_tokenizer, texts, None, max_seq_length, batch_size, "PyTorch reference", log,
        lambda enc: model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))[0], by_length=by_length,
    )  # fmt: skip


def reference_outputs(
    hf_tok: Any, firsts: list[str], seconds: list[str] | None, max_length: int, batch_size: int, label: str,
    log: Callable[[str], None] | None, run: Callable[[Any], torch.Tensor], by_length: bool = True,
) -> tuple[np.ndarray, list[list[int]]]:
    """``run(encoding)``'s outputs for texts (``seconds`` None) or pairs, in the given order, and the
    token ids transformers gives (pairs cut longest first at ``max_length``). Batched longest first
    under the runtime's token budget (``length_batches``: a reranker gate's pairs of mixed lengths
    padded together cost 4x as much), or without ``by_length`` in the given order; with progress
    for ``log``, its time left estimated from padded tokens where the longest run first."""

    def encode(idx: Any, **kw: Any) -> Any:
        second = [seconds[i] for i in idx] if seconds is not None else None
        return hf_tok([firsts[i] for i in idx], second, truncation="longest_first", max_length=max_length, **kw)

    work: float | None = None
    if by_length:
        order, pieces, padded = length_batches(encode(range(len(firsts)))["input_ids"], batch_size)
        work = sum(padded)
    else:
        order = np.arange(len(firsts))
        pieces = [slice(i, i + batch_size) for i in range(0, len(firsts), batch_size)]
        padded = [0] * len(pieces)  # mixed lengths: the time left is estimated from the count
    out: list[np.ndarray] = []
    ids: list[list[int]] = []
    progress = Progress(log or quiet, label, len(firsts), unit="texts" if seconds is None else "pairs", work=work)
    with torch.inference_mode():
        for piece, cost in zip(pieces, padded, strict=True):
            enc = encode(order[piece], padding=True, return_tensors="pt")
            out.append(run(enc).float().numpy())
            for row, mask in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist(), strict=True):
                ids.append([t for t, m in zip(row, mask, strict=True) if m])
            progress.update(piece.stop - piece.start, cost)
    progress.close()
    back = np.argsort(order, kind="stable")
    return np.concatenate(out)[back], [ids[i] for i in back]


def length_batches(token_ids: list[list[int]], batch_size: int) -> tuple[np.ndarray, list[slice], list[int]]:
    """Batches of a reference run as the runtime makes them: inputs (their ``token_ids``) longest
    first, each batch bounded by the runtime's token budget. Returns the order (positions into the
    inputs; ``np.argsort(order)`` puts the outputs back), its slices, and each slice's padded tokens
    (what it costs, for progress: the first batches cost the most)."""
    lengths = np.array([len(x) for x in token_ids], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    pieces = token_batches(lengths[order], batch_size, DEFAULT_MAX_BATCH_TOKENS)
    return order, pieces, [(p.stop - p.start) * int(lengths[order[p.start]]) for p in pieces]


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    texts: list[str],
    precision: Precision,
    ref_ids: list[list[int]] | None = None,
    cand_ids: list[list[int]] | None = None,
) -> dict[str, Any]:
    """Per-text cosine and norm agreement; the report names the worst input."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    rn = np.linalg.norm(ref, axis=1)
    cn = np.linalg.norm(cand, axis=1)
    cos = cosines(ref, cand)
    # Relative norm difference; absolute where the reference is zero (no scale to be relative to).
    norm_rel = np.abs(cn - rn) / np.where(rn <= ZERO_NORM, 1.0, rn)
    finite = np.isfinite(cand).all(axis=1)
    cos = np.where(finite, cos, -1.0)
    worst = int(np.argmin(cos))
    mismatched = []
    if ref_ids is not None and cand_ids is not None:
        mismatched = [i for i, (a, b) in enumerate(zip(ref_ids, cand_ids, strict=True)) if a != b]
    tol = TOLERANCES[precision]
    failures = []
    zero_rows = int((rn <= ZERO_NORM).sum())
    if cos.min() < tol.min_cosine:
        failures.append(f"min cosine {cos.min():.7f} < {tol.min_cosine}")
    if cos.mean() < tol.mean_cosine:
        failures.append(f"mean cosine {cos.mean():.7f} < {tol.mean_cosine}")
    if norm_rel.max() > tol.max_norm_rel_diff:
        failures.append(f"max relative norm difference {norm_rel.max():.2e} > {tol.max_norm_rel_diff}")
    if not finite.all():
        failures.append(f"{int((~finite).sum())} embedding(s) contain NaN or inf")
    if mismatched:
        failures.append(f"{len(mismatched)} text(s) tokenized differently, first: {texts[mismatched[0]][:60]!r}")
    return {
        "reference": "PyTorch fp32 (transformers encoder + embedrt pooling, transformers tokenizer)",
        "texts": len(texts),
        "precision": precision.value,
        "max_abs_diff": float(np.abs(ref - cand).max()) if len(ref) else 0.0,
        "mean_cosine": float(cos.mean()) if len(cos) else 1.0,
        "min_cosine": float(cos.min()) if len(cos) else 1.0,
        "max_norm_rel_diff": float(norm_rel.max()) if len(norm_rel) else 0.0,
        "worst": {"index": worst, "text": texts[worst][:120], "cosine": float(cos[worst])} if len(cos) else None,
        "token_id_mismatches": len(mismatched),
        "zero_reference_rows": zero_rows,  # compared by norm, not cosine
        "tolerance": tol.__dict__,
        "failures": failures,
        "passed": not failures,
    }


def validate(
    embedder: Embedder,
    model: EmbeddingModel,
    hf_tokenizer: Any,
    texts: list[str],
    raise_on_failure: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run both sides on ``texts`` and compare; raise ``ParityError`` naming the worst input on failure."""
    t0 = time.perf_counter()
    ref, ref_ids = reference_embeddings(model, hf_tokenizer, texts, embedder.max_seq_length, log=log)
    tok = embedder.tokenize(texts, prompt="")  # the reference sees no prompt either
    cand = embedder.encode_tokenized(tok, batch_size=8)
    assert isinstance(cand, np.ndarray)
    if cand.shape != ref.shape:
        raise ParityError(
            f"the bundle gives embeddings of dimension {cand.shape[1]}, the PyTorch model {ref.shape[1]}: "
            "is this the source the bundle was exported from?",
            {"passed": False, "failures": ["dimension mismatch"]},
        )
    report = compare(ref, cand, texts, embedder.manifest.precision, ref_ids, tok.ids)
    hint = embedder.precision_hint
    report["provider"] = embedder.device.value + (f" ({hint.value})" if hint is not None else "")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if raise_on_failure and not report["passed"]:
        w = report["worst"]
        raise ParityError(
            f"the exported graph disagrees with PyTorch ({'; '.join(report['failures'])}); "
            f"worst input #{w['index']} {w['text']!r} (cosine {w['cosine']:.7f})",
            report,
        )
    return report


_GATE_CHUNK = 256  # texts per encode call of the gate, so that its progress can be told


def quality_gate(
    embedder: Embedder,
    model: EmbeddingModel,
    hf_tokenizer: Any,
    texts: list[str],
    thresholds: dict[str, float] | None = None,
    log: Callable[[str], None] | None = None,
    reference: np.ndarray | None = None,
) -> dict[str, Any]:
    """The measured gate (>= 1000 texts): mean/min cosine and top-10 neighbour agreement against
    PyTorch fp32, with the thresholds of the bundle's precision or of the provider's precision hint.
    ``log`` hears the progress of each side (minutes on a small CPU). ``reference``: the PyTorch
    embeddings of ``texts`` when already computed (an export gating several variants computes them once)."""
    t0 = time.perf_counter()
    if reference is None:
        reference, _ = reference_embeddings(
            model, hf_tokenizer, texts, embedder.max_seq_length, batch_size=32, log=log, by_length=True
        )
    ref = reference
    progress = Progress(log or quiet, f"bundle ({embedder.manifest.precision.value} on {embedder.device.value})",
                        len(texts))  # fmt: skip
    parts = []
    for start in range(0, len(texts), _GATE_CHUNK):
        parts.append(embedder.encode(texts[start : start + _GATE_CHUNK], batch_size=32, prompt=""))
        progress.update(len(parts[-1]))
    progress.close()
    cand = np.concatenate(parts) if parts else np.empty((0, embedder.dimension), np.float32)
    hint = embedder.precision_hint.value if embedder.precision_hint is not None else None
    report = run_gate(
        ref, cand, embedder.manifest.precision, embedder.device.value, thresholds, hint=hint, texts=texts
    )
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
