"""fp16 for the CUDA provider: matmuls in half precision, the numerically fragile parts in fp32.

Inputs and outputs do not change (int64 ids in, float32 embeddings out: ``keep_io_types``). Kept
in fp32:

- layer norm (its variance of squares overflows fp16 on large activations) and softmax;
- the residual additions that feed a layer norm: the residual stream of some encoders passes
  fp16's 65504 on long inputs, and an inf there is a NaN after the norm;
- pooling, Dense and Normalize: everything downstream of the pooling reductions (sums over up to
  max_seq_length tokens, divisions by token counts, the L2 norm).

Constants beyond fp16's range (attention-mask fills such as ``finfo(float32).min``) are clamped to
fp16's own finite extremes by the converter, so no -1e9/-3.4e38 sentinel turns into -inf.
``check_fp16_graph`` verifies those properties on the written graph (tests run it on CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ._graph import POOLING_OPS, downstream_of, needs_external

FP32_OPS = [
    "LayerNormalization",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "Softmax",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceL2",
    "Sqrt",
    "Pow",
]
_NORM_OPS = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"}


def convert_fp16(src_path: Path, out_path: Path) -> dict[str, Any]:
    """Write the fp16 graph of ``src_path`` (fp32, fused or not) to ``out_path``."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src_path))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    keep = sorted(downstream_of(model, POOLING_OPS) | _residual_adds(model))
    # OnnxModel's converter runs symbolic shape inference, which knows onnxruntime's contrib ops
    # (fused graphs): plain onnx shape inference leaves their outputs untyped and casts go missing.
    wrapper = OnnxModel(model)
    wrapper.convert_float_to_float16(
        use_symbolic_shape_infer=True, keep_io_types=True, op_block_list=FP32_OPS, node_block_list=keep
    )
    converted = wrapper.model
    _drop_duplicate_casts(converted)
    onnx.save(converted, str(out_path), save_as_external_data=needs_external(converted))
    report = check_fp16_graph(converted)
    return {
        "converter": "onnxruntime.transformers.float16",
        "keep_io_types": True,
        "fp32_ops": FP32_OPS,
        "fp32_nodes": len(keep),
        **report,
    }


def _drop_duplicate_casts(model: onnx.ModelProto) -> None:
    """The converter inserts one identical Cast per blocked consumer of a tensor; keep one of each."""
    seen: set[bytes] = set()
    kept = []
    for node in model.graph.node:
        key = node.SerializeToString(deterministic=True)
        if node.op_type == "Cast" and key in seen:
            continue
        seen.add(key)
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _residual_adds(model: onnx.ModelProto) -> set[str]:
    """The ``Add`` nodes whose output feeds a layer norm: the residual stream."""
    norm_inputs = {i for n in model.graph.node if n.op_type in _NORM_OPS for i in n.input}
    return {n.name for n in model.graph.node if n.op_type == "Add" and n.output[0] in norm_inputs}


def check_fp16_graph(model: onnx.ModelProto) -> dict[str, Any]:
    """What the fp16 graph is: io types unchanged, which ops compute in fp16, no non-finite constants.

    Raises ``ValueError`` on a graph that breaks a promise above.
    """
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    bad_io = {
        k: TensorProto.DataType.Name(t)
        for k, t in io.items()
        if t not in (TensorProto.INT64, TensorProto.FLOAT)
    }
    if bad_io:
        raise ValueError(f"fp16 graph changed input/output types: {bad_io}")
    fp16_weights = 0
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT16:
            fp16_weights += 1
            arr = numpy_helper.to_array(t)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"fp16 initializer {t.name!r} holds inf/NaN")
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.t.data_type == TensorProto.FLOAT16 and not np.all(
                    np.isfinite(numpy_helper.to_array(a.t))
                ):
                    raise ValueError(f"fp16 constant {node.name!r} holds inf/NaN")
    if fp16_weights == 0:
        raise ValueError("fp16 conversion left no fp16 weights: the graph would run in fp32")
    casts = sum(1 for n in model.graph.node if n.op_type == "Cast")
    return {"fp16_initializers": fp16_weights, "casts": casts}
