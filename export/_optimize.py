"""``--optimize``: onnxruntime's transformer optimizer, with the folded pooling kept intact.

The optimizer fuses attention, skip-layer-norm, embed-layer-norm and GELU subgraphs into contrib
operators. It works by pattern matching and, for a graph it does not recognise, returns it
unchanged; embedrt never lets that pass silently: the fused-operator counts go into the manifest,
and an architecture whose transformer layers fuse into nothing is an error, not a no-op.

The graph's outputs are checked after fusion: ``sentence_embedding`` (pooling, Dense, Normalize)
and ``token_embeddings`` must still be there with their names.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from embedrt._errors import UnsupportedModelError

from ._graph import needs_external
from ._onnx import save_model

# transformers model_type -> onnxruntime optimizer model_type. BERT-style encoders share "bert".
OPTIMIZER_TYPES: dict[str, str] = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "distilbert": "bert",
    "electra": "bert",
    "mpnet": "bert",
    "ernie": "bert",
    "deberta-v2": "bert",
    "modernbert": "bert",
}

# The operators the optimizer can produce for an encoder, counted in the manifest.
FUSED_OPS = (
    "Attention",
    "QAttention",  # a fused Attention after int8 quantization (its QKV projection in int8)
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "SimplifiedLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "QuickGelu",
    "BiasSplitGelu",
    "RotaryEmbedding",
)
_LAYER_FUSIONS = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
)


# What ``attention_only`` leaves out: on the CPU provider these fused kernels were no faster than the
# plain ops they replace in a one-thread probe on AVX2, and BiasGelu is made by onnxruntime's own
# session fusions anyway (benchmarks/results/NOTES.md, "levers").
_NOT_ATTENTION = (
    "enable_skip_layer_norm", "enable_bias_skip_layer_norm", "enable_embed_layer_norm", "enable_bias_gelu",
    "enable_gelu",
)  # fmt: skip


def optimize_graph(
    fp32_path: Path, out_path: Path, config: dict[str, Any], *, attention_only: bool = False,
    rewrite: Callable[[onnx.ModelProto], dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Fuse ``fp32_path`` into ``out_path``; return the manifest's record (counts per fused op).

    ``config`` is the Hugging Face config (``model_type``, ``num_attention_heads``, ``hidden_size``).
    ``attention_only``: fuse attention, leave layer norms and GELU as they are.
    ``rewrite`` changes the fused graph in place before it is saved (its record under ``"rewrite"``):
    the graph is loaded and written once.
    Raises ``UnsupportedModelError`` when nothing in the transformer layers fuses.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = str(config.get("model_type", ""))
    opt_type = OPTIMIZER_TYPES.get(model_type, "bert")
    heads = int(config.get("num_attention_heads") or config.get("n_heads") or 0)
    hidden = int(config.get("hidden_size") or config.get("dim") or 0)
    options = FusionOptions(opt_type)
    # The mask is consumed by the folded pooling too: keep it as the 0/1 tensor the graph was given.
    options.use_raw_attention_mask(True)
    for name in _NOT_ATTENTION if attention_only else ():
        setattr(options, name, False)
    source = onnx.load(str(fp32_path))  # the optimizer fuses it in place
    before = Counter(n.op_type for n in source.graph.node)
    outputs = [o.name for o in source.graph.output]
    optimized = optimize_model(
        source, model_type=opt_type, num_heads=heads, hidden_size=hidden,
        optimization_options=options, opt_level=0, use_gpu=False,
    )  # fmt: skip
    model = optimized.model
    gc.collect()  # the optimizer's fusion objects hold copies of the graph in reference cycles
    after = Counter(n.op_type for n in model.graph.node)
    counts = {op: after[op] - (before[op] if op == "LayerNormalization" else 0) for op in FUSED_OPS}
    counts = {op: n for op, n in counts.items() if n > 0}
    _check_outputs(model, outputs)
    if not any(counts.get(op) for op in _LAYER_FUSIONS):
        raise UnsupportedModelError(
            f"--optimize: onnxruntime's optimizer fused nothing in the transformer layers of this "
            f"{model_type!r} graph (as {opt_type!r}; fused: {counts or 'none'}). Export without --optimize."
        )
    wanted = ("Attention",) if attention_only else ("Attention", "SkipLayerNormalization", "EmbedLayerNormalization")
    not_fused = [op for op in wanted if not counts.get(op)]
    rewritten = rewrite(model) if rewrite is not None else None
    save_model(model, out_path, needs_external(model))
    return {
        **({"rewrite": rewritten} if rewritten is not None else {}),
        "optimizer": "onnxruntime.transformers",
        "optimizer_model_type": opt_type,
        "num_heads": heads,
        "hidden_size": hidden,
        "fused_ops": counts,
        "attention_only": attention_only,
        "not_fused": not_fused,
        "nodes_before": sum(before.values()),
        "nodes_after": sum(after.values()),
    }


def fused_counts(path: Path) -> dict[str, int]:
    """Fused-operator counts of a saved graph (for ``embedrt info`` and tests)."""
    ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    # LayerNormalization is a standard op of opset 17 graphs before any fusion: not a fused count.
    return {op: ops[op] for op in FUSED_OPS if ops[op] and op != "LayerNormalization"}


def _check_outputs(model: onnx.ModelProto, want: list[str]) -> None:
    got = [o.name for o in model.graph.output]
    if got != want:
        raise UnsupportedModelError(f"--optimize changed the graph's outputs from {want} to {got}")
