"""int8 for the CPU provider: weights in int8, computed in int8, retrieval intact.

Measured on all-MiniLM-L6-v2 (benchmarks/results/int8-minilm.json: 1000 gate texts against PyTorch
fp32; speed side by side with fp32 on 2 threads of an AVX-512 VNNI Xeon, alternating):

- ``quantize_dynamic`` with per-tensor weights (onnxruntime's default) loses retrieval: mean cosine
  0.957, top-10 kept 0.82. Per-channel weights: 0.9934 / 0.917, not enough for the 0.995 gate.
- Its loss is in the activations: one dynamic per-tensor scale for a whole [tokens, 1536] GELU
  output. The FFN output projections cost most (layer 0's by far, measured per layer); keeping all
  six in fp32 passes (0.9966 / 0.942) but gives up a third of the int8 speed-up.
- ``MatMulNBits`` with 8-bit symmetric weights in blocks of 128 and ``accuracy_level=4`` (the
  activations are quantized to int8 per block of 128 along K, at run time, then an int8 GEMM): mean
  cosine 0.9992, min 0.998, top-10 kept 0.971, as fast as the best dynamic recipe that passes.

- ``smooth`` (benchmarks/results/int8-smooth-minilm.json): the ``dynamic`` kernels on every MatMul
  but layer 0's FFN output projection, after SmoothQuant channel balancing calibrated per MatMul
  group (``_smooth``): ~1.8x fp32 on real sentences where ``nbits`` gives 1.3x (onnxruntime's u8s8
  VNNI GEMM runs these shapes at ~3.5x fp32, MatMulNBits at ~1.4x), mean cosine 0.998 on English
  and 0.997 on Korean sentences. Its weights are rounded with error feedback (GPTQ, ``_smooth``):
  on the AVX2 EPYC, Korean 0.9976 and English 0.9987 against 0.9959 / 0.9984 rounded to nearest
  (benchmarks/results/int8-feedback-epyc-avx2-20261130.json).

- ``smooth-rows``: ``smooth`` with one activation scale per token row (``_row_activations``) for
  every input and the alphas chosen for it: closer to fp32 on every text set (gate 0.9993, Korean
  0.9988 mean cosine), a text's vector independent of its batch, 9-16% more CPU time
  (benchmarks/results/int8-rows-epyc-avx2-20261130.json). Asked for, never picked by itself.
  ``smooth`` itself takes per-row scales for the inputs that no layer norm makes, where rows differ
  most in range (the attention context, the FFN activation): most of the gain for little of the cost
  (benchmarks/results/int8-rows-unnorm-*.json).

- ``smooth-residual``: ``smooth`` with the inputs of the Q/K/V and FFN input projections (the layer
  norms' outputs) in two uint8 passes, the second over the first's
  rounding residual (``_residual``), the smoothing chosen for that. The 8-bit activations are two
  thirds of ``smooth``'s error (benchmarks/results/int8-parts-*.json); this takes most of it back
  (Korean sentences: mean cosine 0.9991 -> 0.9996, top-10 kept 0.934 -> 0.957) for a second
  product at those inputs: 1.4-1.6x ``smooth``'s CPU time, as slow as fp32 on an AVX2-only CPU
  (benchmarks/results/int8-residual-recipe-*.json); meant for CPUs with VNNI or AMX, where the int8
  products are cheaper beside fp32's. Asked for, never picked by itself.

So ``smooth`` is the default method, on every MatMul with a constant weight in the transformer
layers; the embedding lookup, layer norm, softmax, pooling, Dense and Normalize stay fp32. The
export falls back to ``nbits`` (better fidelity, slower) when a model's smoothed graph misses the
int8 quality gate; ``dynamic`` (FFN output projections excluded) is kept as the measured
alternative. Which MatMul is which is read from the graph, not from node
names: a constant weight ``[h, 4h]`` is an FFN input projection, ``[4h, h]`` an FFN output
projection, ``[h, h]`` an attention projection; layers are counted in topological order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

from embedrt._errors import UnsupportedModelError

from ._graph import POOLING_OPS, downstream_of, links, needs_external
from ._int8_weights import PAIR_LIMIT, WeightRange, max_pair_sum, quantize_columns
from ._outliers import OUTLIER_RATIO, fold_masks, split_outliers
from ._residual import second_pass
from ._row_activations import ZERO_POINT, per_row_activations
from ._smooth import Choices, Feeds, smooth_model
from ._static_scales import static_tensor_scales

# Pooling and what follows it (Dense, Normalize) stay fp32: few FLOPs, all of the output's precision.
_QUANTIZABLE = ("MatMul", "Attention")
# A product to fewer columns than this is a classifier's (a reranker's labels; a decoder's score
# product runs on every token before the last one is taken): fp32, as a head. No layer's is so narrow.
_HEAD_COLUMNS = 8


@dataclass(frozen=True)
class MatMulSite:
    """A MatMul with a constant weight, as the quantizer sees it."""

    name: str
    kind: str  # "ffn_in" | "ffn_out" | "attn_proj" | "attn_qkv" (fused Attention) | "head" (after pooling)
    layer: int
    weight_shape: tuple[int, ...]


@dataclass(frozen=True)
class Int8Recipe:
    """How to quantize. ``exclude``: (kind, layer) pairs kept fp32; layer ``-1`` means every layer.

    ``method="nbits"`` uses ``bits``, ``block_size``, ``accuracy_level``; ``"dynamic"`` and
    ``"smooth"`` (dynamic after calibrated channel balancing) use ``weight_range``
    (``_int8_weights.WeightRange``: ``pairs`` is exact on every x86 CPU, ``full`` only with VNNI);
    ``"smooth"`` rounds its weights with ``rounding``: ``"feedback"`` (GPTQ over the calibration
    inputs, ``_smooth``) or ``"nearest"``. ``activations`` (``"dynamic"``, ``"smooth"``): quantized
    with one dynamic scale per ``"tensor"`` (fastest) or per token ``"row"`` (``_row_activations``:
    closer to fp32, and a text's vector no longer depends on its batch). ``row_inputs`` says which
    inputs get per-row scales: ``"all"``; ``"unnormalized"``: those no layer norm makes (the
    attention context and the FFN activation, whose rows differ in range); or the inputs of the
    MatMul kinds named, joined by ``+`` (``"attn_proj+ffn_out"``); the others per tensor.
    ``residual_inputs`` (``"dynamic"``, ``"smooth"``): which inputs are quantized in two uint8 passes,
    the second over the first's rounding residual (``_residual``: about 16 bits, a second product):
    ``"none"``, ``"block_inputs"`` (the inputs a transformer layer's attention and FFN blocks read,
    the layer norms' outputs: those shared by several products, as Q/K/V's, or feeding a widening
    one, the FFN input projection; per tensor or per row as ``activations`` says) or ``"all"``.
    ``tensor_scales`` (``"smooth"``): the inputs quantized per tensor take their scale at run time
    from each batch (``"dynamic"``) or fixed at export from the calibration batches (``"static"``,
    ``_static_scales``: a text's vector no longer depends on its batch mates; not with a residual pass).
    """

    method: str = "smooth"
    bits: int = 8
    block_size: int = 128
    accuracy_level: int = 4
    weight_range: str = WeightRange.PAIRS.value
    exclude: tuple[tuple[str, int], ...] = ()
    rounding: str = "feedback"
    activations: str = "tensor"
    row_inputs: str = "all"  # with activations "row": "all", "unnormalized", or kinds joined by "+"
    split_outliers: int = 0  # "smooth": up to this many outlier channels per FFN output projection in fp32
    outlier_ratio: float = OUTLIER_RATIO  # a channel whose calibration peak is this many times the median's
    residual_inputs: str = "none"  # "none", "block_inputs" or "all": inputs quantized twice (``_residual``)
    tensor_scales: str = "dynamic"  # "smooth": "dynamic" or "static" scales for the inputs quantized per tensor

    def excludes(self, site: MatMulSite) -> bool:
        if site.kind == "head":
            return True
        return any(kind == site.kind and layer in (-1, site.layer) for kind, layer in self.exclude)


# The FFN output projections' outlier channels (``_outliers``) are computed in fp32 beside the int8
# products. With them out, layer 0's FFN output projection, which had to stay fp32 (it alone took the
# mean cosine on Korean sentences from 0.9967 to 0.9895, benchmarks/results/int8-smooth-minilm.json),
# runs in int8 too: less CPU time, and closer to fp32 on average than with it kept fp32 and no split
# (benchmarks/results/int8-split-*.json). The inputs no layer norm makes (attention context, FFN
# activation) are quantized per token row, the layer norms' outputs per tensor: on all-MiniLM-L6-v2
# 1 - cosine to fp32 falls by 30-42% on every text set (parity min 0.9929 -> 0.9977) for -2 to +17%
# CPU time on one thread (median +4% over 3 shapes x 3 runs) and 0-10% fewer texts/s on two, as
# noisy as the machine measured (benchmarks/results/int8-rows-unnorm-*.json). The layer norms'
# outputs take scales fixed at export: fidelity level with run-time scales on every text set, a
# text's vector the same in any batch, 3-4% less CPU time on one thread (benchmarks/results/int8-static-*.json).
RECIPE = Int8Recipe(split_outliers=4, activations="row", row_inputs="unnormalized", tensor_scales="static")
ROUNDINGS = ("feedback", "nearest")
ACTIVATIONS = ("tensor", "row")
ROW_INPUTS = ("all", "unnormalized")
RESIDUAL_INPUTS = ("none", "block_inputs", "all")
TENSOR_SCALES = ("dynamic", "static")
_KINDS_OF_SITES = ("attn_proj", "attn_qkv", "ffn_in", "ffn_out")
# Ops whose outputs have every token row normalized: one scale per tensor serves their rows alike.
_NORMS = ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
          "SkipSimplifiedLayerNormalization", "RMSNormalization", "EmbedLayerNormalization")  # fmt: skip
# The smoothing re-chosen for, and run with, one activation scale per token row: closer to fp32 on
# every text set measured, for more CPU time (benchmarks/results/int8-rows-*.json). Outlier channels
# split out as in ``RECIPE`` and layer 0's FFN output projection kept fp32: the closest int8 measured
# (benchmarks/results/int8-split-rows-*.json).
ROWS_RECIPE = Int8Recipe(exclude=(("ffn_out", 0),), activations="row", split_outliers=4)
# ``RECIPE`` with the inputs of the Q/K/V and FFN input projections (the layer norms' outputs) in two
# uint8 passes, the smoothing chosen for that: the int8 recipe closest to fp32 measured, for a
# second product at those inputs (benchmarks/results/int8-residual-*.json).
RESIDUAL_RECIPE = replace(RECIPE, residual_inputs="block_inputs", tensor_scales="dynamic")
NBITS_RECIPE = Int8Recipe(method="nbits")
DYNAMIC_RECIPE = Int8Recipe(method="dynamic", exclude=(("ffn_out", -1),))
RECIPES = {"smooth": RECIPE, "smooth-rows": ROWS_RECIPE, "smooth-residual": RESIDUAL_RECIPE, "nbits": NBITS_RECIPE,
           "dynamic": DYNAMIC_RECIPE}  # fmt: skip
METHODS = tuple(RECIPES)
_KINDS = tuple(dict.fromkeys(r.method for r in RECIPES.values()))  # Int8Recipe.method values
# What the exporter tries, in order, when no method is asked for: the first that passes the gate
# (the default with run-time scales where a model's fixed ones miss it, then ``nbits``).
AUTO = (RECIPE, replace(RECIPE, tensor_scales="dynamic"), NBITS_RECIPE)


def find_sites(model: onnx.ModelProto) -> list[MatMulSite]:
    """Every quantizable node with a constant weight, classified, in topological order: attention's
    projections by the attention they feed or read (``_attention_products``), the others by shape
    (an FFN widens, then narrows)."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    after_pooling = downstream_of(model, POOLING_OPS)
    attention = _attention_products(model, set(weights))
    sites: list[MatMulSite] = []
    layer = 0
    for node in model.graph.node:
        if node.op_type not in _QUANTIZABLE or len(node.input) < 2 or node.input[1] not in weights:
            continue
        shape = weights[node.input[1]]
        if node.name in after_pooling or (len(shape) == 2 and shape[1] < _HEAD_COLUMNS):
            kind = "head"
        elif node.op_type == "Attention":
            kind = "attn_qkv"
        elif node.name in attention:
            kind = "attn_proj"  # Q/K/V (grouped-query K/V narrower, fused Q/K one column wider per head), output
        elif _widens(shape):
            kind = "ffn_in"
        elif len(shape) == 2 and shape[0] > shape[1]:
            kind = "ffn_out"
        else:
            kind = "attn_proj"
        sites.append(MatMulSite(node.name, kind, layer, shape))
        if kind == "ffn_out":
            layer += 1  # an FFN output projection closes a transformer layer
    return sites


def _widens(shape: tuple[int, ...]) -> bool:
    """A product to more columns than rows: an FFN's input projection (or a packed Q/K/V)."""
    return len(shape) == 2 and shape[0] < shape[1]


# Operators that hold a whole attention (onnxruntime's), and those a walk between an attention and its
# projections stops at: a product, the softmax, a shape (a tensor read only for its shape is no data).
_ATTENTION_OPS = ("MultiHeadAttention", "GroupQueryAttention")
_WALL_OPS = ("MatMul", "Gemm", "Softmax", "Attention", *_ATTENTION_OPS, "Shape", "Size")


def _attention_products(model: onnx.ModelProto, weights: set[str]) -> set[str]:
    """Names of the constant-weight MatMuls that make an attention's queries, keys or values, or read
    its context. An attention is a ``Softmax`` between two products of activations (scores, then
    context) or an onnxruntime attention operator; its projections are the constant-weight products
    reached from it through anything but a product, a softmax or a shape: backward from the scores'
    and the context's inputs (or the operator's query, key and value), forward from the context."""
    readers, producer = links(model)

    def walk(tensors: Iterable[str], backward: bool) -> list[onnx.NodeProto]:
        """The wall nodes (``_WALL_OPS``) first reached from ``tensors``."""
        seen: set[int] = set()
        walls: list[onnx.NodeProto] = []
        todo = [t for t in tensors if t and t not in weights]
        while todo:
            t = todo.pop()
            nodes = ([producer[t]] if t in producer else []) if backward else readers.get(t, [])
            for n in nodes:
                if id(n) in seen:
                    continue
                seen.add(id(n))
                if n.op_type in _WALL_OPS:
                    walls.append(n)
                else:
                    todo.extend(i for i in (n.input if backward else n.output) if i and i not in weights)
        return walls

    def projections(walls: list[onnx.NodeProto]) -> set[str]:
        return {n.name for n in walls if n.op_type == "MatMul" and n.input[1] in weights}

    def activations_product(n: onnx.NodeProto) -> bool:
        return n.op_type == "MatMul" and not any(i in weights for i in n.input)

    found: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "Softmax":
            for scores in filter(activations_product, walk(node.input[:1], backward=True)):
                found |= projections(walk(scores.input, backward=True))
            for context in filter(activations_product, walk(node.output, backward=False)):
                found |= projections(walk(context.input, backward=True))
                found |= projections(walk(context.output, backward=False))
        elif node.op_type in _ATTENTION_OPS:
            found |= projections(walk(node.input[:3], backward=True)) | projections(walk(node.output[:1], backward=False))
        elif node.op_type == "Attention":  # packed: its Q/K/V product is itself (attn_qkv)
            found |= projections(walk(node.output[:1], backward=False))
    return found


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    recipe: Int8Recipe = RECIPE,
    *,
    fused: bool = False,
    calibration: list[Feeds] | None = None,
    choices: Choices | None = None,
) -> dict[str, Any]:
    """Write the int8 graph of ``fp32_path`` to ``out_path``; return what the manifest records.

    ``calibration`` (batches of graph inputs) is needed by ``method="smooth"`` only, and so is
    ``choices``: the smoothing's memo over the graphs made from one model and calibration
    (``smooth_model``). ``fused``: the
    graph holds onnxruntime contrib operators (no ONNX type inference through them); found out from
    the graph when not said.
    """
    if recipe.method not in _KINDS:
        raise ValueError(f"invalid int8 method {recipe.method!r}: expected one of {_KINDS}")
    WeightRange(recipe.weight_range)  # a bad value fails before any work
    if recipe.rounding not in ROUNDINGS:
        raise ValueError(f"invalid int8 rounding {recipe.rounding!r}: expected one of {ROUNDINGS}")
    if recipe.activations not in ACTIVATIONS:
        raise ValueError(f"invalid int8 activations {recipe.activations!r}: expected one of {ACTIVATIONS}")
    if recipe.row_inputs not in ROW_INPUTS and not set(recipe.row_inputs.split("+")) <= set(_KINDS_OF_SITES):
        raise ValueError(
            f"invalid int8 row_inputs {recipe.row_inputs!r}: expected one of {ROW_INPUTS} "
            f"or MatMul kinds joined by '+' ({', '.join(_KINDS_OF_SITES)})"
        )
    if recipe.activations == "row" and recipe.method == "nbits":
        raise ValueError("int8 activations per 'row' apply to methods 'smooth' and 'dynamic'; 'nbits' quantizes per block")
    if recipe.residual_inputs not in RESIDUAL_INPUTS:
        raise ValueError(f"invalid int8 residual_inputs {recipe.residual_inputs!r}: expected one of {RESIDUAL_INPUTS}")
    if recipe.residual_inputs != "none" and recipe.method == "nbits":
        raise ValueError("a second pass over the residual applies to methods 'smooth' and 'dynamic'; 'nbits' quantizes per block")
    if recipe.residual_inputs != "none" and WeightRange(recipe.weight_range) is WeightRange.FULL:
        # the exact u8u8 path that full-range weights need without VNNI converts each int8 weight for
        # its product, and fails on a weight that two products share
        raise ValueError(
            "a second pass over the residual needs int8 weights exact on every x86 kernel: weight_range "
            f"'{WeightRange.PAIRS.value}' or '{WeightRange.SEVEN_BIT.value}', not weight_range 'full'"
        )
    if recipe.tensor_scales not in TENSOR_SCALES:
        raise ValueError(f"invalid int8 tensor_scales {recipe.tensor_scales!r}: expected one of {TENSOR_SCALES}")
    if recipe.tensor_scales == "static" and recipe.method != "smooth":
        raise ValueError("static tensor_scales apply to int8 method 'smooth' (they need the calibration batches)")
    if recipe.tensor_scales == "static" and recipe.residual_inputs != "none":
        raise ValueError("static tensor_scales and a second pass over the residual do not combine: "
                         "tensor_scales 'dynamic' with residual_inputs")
    if recipe.split_outliers and recipe.method != "smooth":
        raise ValueError("split_outliers applies to int8 method 'smooth' (it needs the calibration batches)")
    model = onnx.load(str(fp32_path))
    fused = fused or any(n.domain == "com.microsoft" for n in model.graph.node)
    _name_unnamed(model)
    sites = find_sites(model)
    if not any(s.kind in ("ffn_in", "ffn_out") for s in sites):
        raise UnsupportedModelError(
            f"{fp32_path} has no feed-forward MatMuls with constant weights to quantize; "
            "int8 would be a no-op for this graph"
        )
    excluded = [s for s in sites if recipe.excludes(s)]
    quantized = [s for s in sites if not recipe.excludes(s)]
    rows = _row_sites(model, recipe, quantized)
    twice = _residual_sites(model, recipe, quantized)
    if recipe.method == "nbits":
        settings = _nbits(model, out_path, recipe, quantized, excluded)
    elif recipe.method == "smooth":
        if not calibration:
            raise ValueError("int8 method 'smooth' needs calibration batches (calibration=...)")
        outliers = split_outliers(
            model, [s.name for s in quantized if s.kind == "ffn_out"], calibration, recipe.split_outliers,
            recipe.outlier_ratio,
        )
        smoothing = smooth_model(
            model, [s.name for s in quantized], calibration, recipe.weight_range,
            feedback=recipe.rounding == "feedback", per_row=rows, two_pass=twice, choices=choices,
        )  # fmt: skip
        fold_masks(model)
        settings = _dynamic(model, out_path, recipe, quantized, excluded, fused, smoothing.weights, rows,
                            smoothing.zero_points, twice, calibration)  # fmt: skip
        settings.update(method="smooth", smoothing=smoothing.record)
        if outliers:
            settings["outlier_channels"] = {"in_fp32_beside_the_int8_product": outliers,
                                            "peak_over_median_at_least": recipe.outlier_ratio}  # fmt: skip
    else:
        settings = _dynamic(model, out_path, recipe, quantized, excluded, fused, {}, rows, twice=twice)
    return {
        **settings,
        "recipe": asdict(recipe),
        "quantized_nodes": len(quantized),
        "quantized_kinds": _count(s.kind for s in quantized),
        "excluded_nodes": sorted(s.name for s in excluded),
        "kept_fp32": ["embedding lookup", "layer norm", "softmax", "pooling", "dense", "normalize"],
    }


def _row_sites(model: onnx.ModelProto, recipe: Int8Recipe, quantized: list[MatMulSite]) -> set[str]:
    """Names of the quantized nodes whose inputs get one scale per token row."""
    if recipe.activations != "row":
        return set()
    if recipe.row_inputs == "all":
        return {s.name for s in quantized}
    if recipe.row_inputs != "unnormalized":
        kinds = set(recipe.row_inputs.split("+"))
        return {s.name for s in quantized if s.kind in kinds}
    nodes = {n.name: n for n in model.graph.node}
    produced = {o: n.op_type for n in model.graph.node for o in n.output}
    # a packed Attention (QAttention once quantized) quantizes its input inside the kernel, per tensor
    return {s.name for s in quantized
            if s.kind != "attn_qkv" and produced.get(nodes[s.name].input[0]) not in _NORMS}  # fmt: skip


def _residual_sites(model: onnx.ModelProto, recipe: Int8Recipe, quantized: list[MatMulSite]) -> set[str]:
    """Names of the quantized nodes whose inputs get a second pass over their rounding residual. A
    packed Attention (QAttention once quantized) quantizes its input inside the kernel: never."""
    if recipe.residual_inputs == "none":
        return set()
    sites = [s for s in quantized if s.kind != "attn_qkv"]
    if recipe.residual_inputs == "all":
        return {s.name for s in sites}
    names = {s.name for s in sites}
    inputs = {n.name: n.input[0] for n in model.graph.node if n.name in names}
    readers = _count(inputs[s.name] for s in sites)
    # a layer norm's output: read by several products (Q/K/V's), or by a widening one (an FFN's input
    # projection, a packed Q/K/V)
    return {s.name for s in sites if _widens(s.weight_shape) or readers[inputs[s.name]] > 1}


def _nbits(
    model: onnx.ModelProto,
    out_path: Path,
    recipe: Int8Recipe,
    quantized: list[MatMulSite],
    excluded: list[MatMulSite],
) -> dict[str, Any]:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    # The fused Attention op takes its QKV weight itself: MatMulNBits cannot replace it, it stays fp32.
    skip = [s.name for s in excluded] + [s.name for s in quantized if s.kind == "attn_qkv"]
    config = DefaultWeightOnlyQuantConfig(
        block_size=recipe.block_size,
        is_symmetric=True,
        accuracy_level=recipe.accuracy_level,
        bits=recipe.bits,
    )
    quantizer = MatMulNBitsQuantizer(
        model, bits=recipe.bits, block_size=recipe.block_size, is_symmetric=True,
        accuracy_level=recipe.accuracy_level, nodes_to_exclude=skip, algo_config=config,
    )  # fmt: skip
    quantizer.process()
    quantizer.model.save_model_to_file(
        str(out_path), use_external_data_format=needs_external(quantizer.model.model)
    )
    return {
        "method": "nbits",
        "operator": "MatMulNBits",
        "weights": f"int{recipe.bits} symmetric, blocks of {recipe.block_size}",
        "activations": f"int8, dynamic per block of {recipe.block_size} (accuracy_level {recipe.accuracy_level})",
        "fp32_attention_qkv": sum(1 for s in quantized if s.kind == "attn_qkv"),
    }


def _dynamic(
    model: onnx.ModelProto, out_path: Path, recipe: Int8Recipe, quantized: list[MatMulSite],
    excluded: list[MatMulSite], fused: bool, chosen: dict[str, tuple[Any, Any]], rows: set[str],
    zero_points: dict[str, int] | None = None, twice: set[str] | None = None,
    calibration: list[Feeds] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``zero_points``: per node quantized per token row, its input's zero point (``ZERO_POINT``
    where not given); ``twice``: the nodes whose inputs get a second pass (``_residual``);
    ``calibration``: the batches that fix the per-tensor inputs' scales where the recipe's
    ``tensor_scales`` is ``"static"`` (``_static_scales``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra: dict[str, Any] = {"MatMulConstBOnly": True}
    if fused:
        # contrib ops (Attention, SkipLayerNormalization, ...) have no ONNX type inference the
        # quantizer can use: it must be told their outputs are float.
        extra["DefaultTensorType"] = onnx.TensorProto.FLOAT
    tmp = out_path.with_name(out_path.stem + ".named.onnx")
    onnx.save(model, str(tmp), save_as_external_data=needs_external(model))
    try:
        quantize_dynamic(
            tmp, out_path, op_types_to_quantize=list(_QUANTIZABLE), per_channel=True,
            reduce_range=False, weight_type=QuantType.QInt8,
            nodes_to_quantize=[s.name for s in quantized], nodes_to_exclude=[s.name for s in excluded],
            extra_options=extra, use_external_data_format=needs_external(model),
        )  # fmt: skip
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)
    per_row = bool(rows)
    row_nodes = [n for n in model.graph.node if n.name in rows]
    row_inputs = {n.input[0] for n in row_nodes}
    zeros = {n.input[0]: (zero_points or {}).get(n.name, ZERO_POINT) for n in row_nodes}
    written, pair_max = _write_weights(model, out_path, WeightRange(recipe.weight_range), chosen)
    count = per_row_activations(written, row_inputs, zeros) if per_row else 0
    fixed = static_tensor_scales(written, calibration or []) if recipe.tensor_scales == "static" else 0
    tensors = sum(1 for n in written.graph.node if n.op_type == "DynamicQuantizeLinear")
    second = 0
    if twice:
        inputs = {n.input[0] for n in model.graph.node if n.name in twice}
        second = second_pass(written, lambda q, _: q.input[0] in inputs)
    onnx.save(written, str(out_path), save_as_external_data=needs_external(written))
    quantizers = (["DynamicQuantizeMatMul per tensor"] if tensors else []) + (
        ["QuantizeLinear static per tensor"] if fixed else []) + (["QuantizeLinear per row"] if count else [])
    return {
        "method": "dynamic",
        "operator": ", ".join(quantizers) + " + MatMulIntegerToFloat" if per_row or fixed
        else "DynamicQuantizeMatMul / QAttention",
        "weights": f"int8 per-channel, {_RANGE_TEXT[WeightRange(recipe.weight_range)]}",
        "weight_range": recipe.weight_range,
        # The largest |w_2j| + |w_2j+1| of any int8 weight: <= PAIR_LIMIT means no u8s8 kernel
        # saturates (the runtime checks this against the CPU it runs on).
        "u8s8_max_pair_sum": pair_max,
        "activations": _activations_text(zeros if per_row else None, count, fixed, tensors) + _second_text(second),
        "residual_pass_inputs": second,
        "static_scale_inputs": fixed,
    }


def _activations_text(zeros: dict[str, int] | None, rows: int, fixed: int, dynamic: int) -> str:
    """How the inputs are quantized: per token row (``zeros``: their zero points; None: none per
    row), per tensor on static scales, per tensor on dynamic ones."""
    parts = [f"dynamic per token row ({_zero_points_text(zeros)}), {rows} tensors"] if zeros is not None else []
    if fixed:
        parts.append(f"static per tensor (scales fixed at export), {fixed} tensors")
    if parts and dynamic:
        parts.append(f"{'dynamic ' if fixed else ''}per tensor, {dynamic} tensors")
    return "uint8, " + ("; ".join(parts) or "dynamic per tensor")


def _second_text(count: int) -> str:
    return f"; {count} inputs in two passes (the second over the rounding residual)" if count else ""


def _zero_points_text(zeros: dict[str, int]) -> str:
    """``zero point 128`` when every input has it, else how many inputs have each one."""
    counts = _count(str(z) for z in zeros.values())
    if len(counts) <= 1:
        return f"zero point {next(iter(zeros.values()), ZERO_POINT)}"
    return "zero points " + ", ".join(f"{z} x{counts[z]}" for z in sorted(counts, key=int, reverse=True))


_RANGE_TEXT = {
    WeightRange.PAIRS: f"levels of each pair of rows within {PAIR_LIMIT} (exact on every x86 CPU)",
    WeightRange.SEVEN_BIT: "7-bit levels (exact on every x86 CPU)",
    WeightRange.FULL: "full 8-bit levels (exact only on CPUs with VNNI or AMX)",
}
# quantize_dynamic's int8 ops and the positions of their weight and weight scale
_INT8_WEIGHTS = {"MatMulInteger": (1, None), "QAttention": (1, 4)}


def _write_weights(
    fp32: onnx.ModelProto, out_path: Path, weight_range: WeightRange, chosen: dict[str, tuple[Any, Any]]
) -> tuple[onnx.ModelProto, int]:
    """The int8 graph at ``out_path`` with every int8 weight laid out as ``weight_range`` says (not
    saved: the caller may rewrite it further), and the largest pair sum.

    ``chosen``: node name -> (q, scale) already fitted (by the smoothing, with activation
    statistics); the other weights are fitted here from their fp32 values in ``fp32``.
    """
    floats = {t.name: t for t in fp32.graph.initializer}
    by_weight = {n.input[1]: chosen[n.name] for n in fp32.graph.node if n.name in chosen}
    model = onnx.load(str(out_path))
    inits = {t.name: t for t in model.graph.initializer}
    pair_max = 0
    for node in model.graph.node:
        if node.op_type not in _INT8_WEIGHTS:
            continue
        w_pos, s_pos = _INT8_WEIGHTS[node.op_type]
        qname = node.input[w_pos]
        base = qname.removesuffix("_quantized")
        sname = node.input[s_pos] if s_pos is not None else f"{base}_scale"
        if qname == base or base not in floats or sname not in inits:
            raise UnsupportedModelError(
                f"int8: cannot find the fp32 weight and scale of {node.op_type} {node.name!r} "
                f"(weight {qname!r}); the quantizer's naming changed"
            )
        if base in by_weight:
            q, scale = by_weight[base]
        else:
            q, scale = quantize_columns(numpy_helper.to_array(floats[base]), weight_range)
        inits[qname].CopyFrom(numpy_helper.from_array(q.astype("int8"), qname))
        inits[sname].CopyFrom(numpy_helper.from_array(scale.astype("float32").reshape(
            numpy_helper.to_array(inits[sname]).shape), sname))  # fmt: skip
        pair_max = max(pair_max, max_pair_sum(q))
    return model, pair_max


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _name_unnamed(model: onnx.ModelProto) -> None:
    """The quantizer selects nodes by name; give the nameless ones a stable one."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
