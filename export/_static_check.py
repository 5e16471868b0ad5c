"""Parity of a static bundle with the library its folder belongs to (model2vec or
sentence-transformers), or, where that library is not installed, with a numpy reading of the same
weights and tokenizer. Same tolerances and gate as the transformer bundles (fp32)."""

from __future__ import annotations

import time
from importlib.util import find_spec
from typing import Any

import numpy as np

from embedrt import Embedder, ParityError
from embedrt._types import Precision

from ._gate import gate_texts as default_gate_texts
from ._gate import run_gate
from ._progress import Log
from ._static import StaticSource
from ._texts import validation_texts
from ._validate import compare


def reference(src: StaticSource, texts: list[str]) -> tuple[np.ndarray, list[list[int]], str]:
    """Sentence vectors and token ids as ``src``'s own library computes them; the third item names it."""
    if src.kind == "model2vec" and find_spec("model2vec") is not None:
        from model2vec import StaticModel

        m = StaticModel.from_pretrained(str(src.path))
        return m.encode(texts).astype(np.float32), m.tokenize([t[: src.max_chars] for t in texts]), "model2vec StaticModel.encode"
    if src.kind == "sentence-transformers" and find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(src.path), device="cpu")
        first: Any = st[0]
        ids = [e.ids for e in first.tokenizer.encode_batch(texts, add_special_tokens=False)]
        return st.encode(texts, batch_size=256), ids, "sentence-transformers encode"
    return _numpy_reference(src, texts)


def _numpy_reference(src: StaticSource, texts: list[str]) -> tuple[np.ndarray, list[list[int]], str]:
    cut = [t[: src.max_chars] for t in texts] if src.max_chars else texts
    ids = [[i for i in e.ids if i != src.drop_id] for e in src.tokenizer.encode_batch(cut, add_special_tokens=False)]
    out = np.zeros((len(texts), src.table.shape[1]), np.float32)
    for row, seq in enumerate(ids):
        if seq:
            out[row] = src.table[seq].mean(axis=0)
    if src.normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out, ids, "numpy (the source's weights and tokenizer)"


def check_static(
    bundle: Any, src: StaticSource, texts: list[str] | None, gate: list[str] | None,
    thresholds: dict[str, float] | None, say: Log,
) -> dict[str, Any]:  # fmt: skip
    t0 = time.perf_counter()
    embedder = Embedder(bundle)
    grid = texts or validation_texts()
    ref, ref_ids, name = reference(src, grid)
    say(f"validating against {name}")
    tok = embedder.tokenize(grid)
    cand_ids = [[i for i in ids if i != src.drop_id] for ids in tok.ids]
    report = compare(ref, np.asarray(embedder.encode(grid)), grid, Precision.FP32, ref_ids, cand_ids)
    report["reference"] = name
    if not report["passed"]:
        w = report["worst"]
        raise ParityError(f"the static bundle disagrees with {name} ({'; '.join(report['failures'])}); worst input "
                          f"#{w['index']} {w['text']!r} (cosine {w['cosine']:.7f})", report)  # fmt: skip
    say(f"parity: min cosine {report['min_cosine']:.7f}, max abs diff {report['max_abs_diff']:.2e} over {len(grid)} texts")
    many = gate or default_gate_texts()
    gate_ref, _, _ = reference(src, many)
    report["gate"] = g = run_gate(gate_ref, np.asarray(embedder.encode(many)), Precision.FP32, "cpu", thresholds, texts=many)
    say(f"gate: mean cosine {g['mean_cos']:.6f}, min {g['min_cos']:.6f} on {len(many)} texts: passed")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report
