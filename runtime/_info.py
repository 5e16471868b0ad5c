"""Rows that ``embedrt info`` prints for a bundle."""

from __future__ import annotations

from pathlib import Path

from ._bundle import Manifest
from ._describe import describe_variant, measured_on
from ._types import MADE_FOR


def describe(manifest: Manifest, bundle: Path) -> list[tuple[str, str]]:
    m = manifest
    rows = [
        ("kind", m.kind.value),
        ("source", f"{m.source.get('path')} ({m.source.get('kind')}, {m.source.get('architecture')}, "
                   f"{m.source.get('model_class')})"),
        ("dimension", str(m.dimension)),
        ("pooling", ", ".join(p.value for p in m.pooling)),
        ("dense", ", ".join(f"{d.in_features}->{d.out_features} {d.activation}" for d in m.dense) or "none"),
        ("normalize", "yes" if m.normalize else "no"),
        ("max_seq_length", str(m.max_seq_length) + (f" (position table: {m.max_positions})" if m.max_positions else "")),
        ("inputs", ", ".join(m.inputs)),
        ("prompts", ", ".join(f"{k}={v!r}" for k, v in m.prompts.items()) or "none"),
        ("opset", str(m.opset)),
    ]
    if m.reranker is not None:
        r = m.reranker
        rows.append(("reranker", f"{r.num_labels} label(s) {r.labels}, activation {r.activation.value}"))
    if m.sparse is not None:
        rows.append(("sparse", f"SPLADE {m.sparse.pooling.value} pooling, {m.sparse.activation.value}, "
                               f"vocabulary {m.sparse.vocab_size}"))
    if m.similarity_fn_name is not None:
        rows.append(("similarity", m.similarity_fn_name.value))
    rows.extend(describe_variant(m, bundle))  # precision, provider, fusions, quantization, size, gates
    p = m.parity
    if p:
        against = "PyTorch fp32" if str(p.get("reference", "PyTorch")).startswith("PyTorch") else p["reference"]
        if "pairs" in p:  # a reranker's: logits
            what = f"{p['pairs']} pairs vs {against} logits: max abs diff {p.get('max_abs_diff', 0):.2e}"
        else:
            what = (f"{p.get('texts')} texts vs {against}: min cosine {p.get('min_cosine', 0):.7f}"
                    + (f", mean {p['mean_cosine']:.7f}" if "mean_cosine" in p else "")
                    + f", max abs diff {p.get('max_abs_diff', 0):.2e}")  # fmt: skip
        rows.append(("parity (grid)", f"{what}, {'passed' if p.get('passed') else 'FAILED'}; "
                                      f"{measured_on(p, MADE_FOR.get(m.precision, ()))}"))
    rows.append(("exported with", ", ".join(f"{k} {v}" for k, v in m.tools.items())))
    return rows
