"""The ONNX graph of a static-embedding model: a table lookup and a mean per text, EmbeddingBag-style.

Inputs are flat, as ``torch.nn.EmbeddingBag`` takes them: ``input_ids`` [tokens] (every text's ids
one after the other) and ``offsets`` [batch] (where each text starts). No padding, no mask::

    input_ids ─► Gather(table) ─► [tokens, dim] ──────────────┐
    offsets ─► ScatterElements(add) into [tokens+1] ─► CumSum ─► segment id per token
                                   ScatterND(add) by segment ─► sums [batch, dim] ─► / count ─► (L2) ─► sentence_embedding

An empty text has no tokens: its sum and count are 0 and its vector is zero (as EmbeddingBag's mean
and model2vec give). ``drop_id`` (model2vec drops its unknown token) is masked out of sums and counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
INPUTS = ["input_ids", "offsets"]
OUTPUT = "sentence_embedding"


def static_graph(table: np.ndarray, normalize: bool, drop_id: int | None = None) -> onnx.ModelProto:
    """The graph for ``table`` [vocab, dim] (float32): mean of the rows of each text's ids, then L2."""
    dim = int(table.shape[1])
    nodes: list[onnx.NodeProto] = []
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(table, dtype=np.float32), "table"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([dim], np.int64), "dim"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
    ]

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    rows = node("Gather", ["table", "input_ids"], "rows", axis=0)
    n_tok = node("Shape", ["input_ids"], "n_tokens")
    n_txt = node("Shape", ["offsets"], "n_texts")
    # segment id of each token: count the texts starting at or before it, less one
    marks0 = node("ConstantOfShape", [node("Add", [n_tok, "one"], "n_tokens_1")], "marks0",
                  value=helper.make_tensor("z", TensorProto.INT64, [1], [0]))
    starts = node("ScatterElements", [marks0, "offsets", node("Expand", ["one", n_txt], "ones")], "starts",
                  axis=0, reduction="add")
    running = node("CumSum", [starts, "zero"], "running")
    seg = node("Sub", [node("Slice", [running, "zero", n_tok], "running_t"), "one"], "segment")
    if drop_id is not None:
        inits.append(numpy_helper.from_array(np.array(drop_id, np.int64), "drop_id"))
        keep = node("Cast", [node("Not", [node("Equal", ["input_ids", "drop_id"], "is_drop")], "kept")], "keep",
                    to=TensorProto.FLOAT)
        rows = node("Mul", [rows, node("Unsqueeze", [keep, "one"], "keep_col")], "rows_kept")
    else:
        keep = node("ConstantOfShape", [n_tok], "keep", value=helper.make_tensor("o", TensorProto.FLOAT, [1], [1.0]))
    zeros_bd = node("ConstantOfShape", [node("Concat", [n_txt, "dim"], "shape_bd", axis=0)], "zeros_bd",
                    value=helper.make_tensor("zf", TensorProto.FLOAT, [1], [0.0]))
    sums = node("ScatterND", [zeros_bd, node("Unsqueeze", [seg, "one"], "seg_col"), rows], "sums", reduction="add")
    zeros_b = node("ConstantOfShape", [n_txt], "zeros_b", value=helper.make_tensor("zb", TensorProto.FLOAT, [1], [0.0]))
    counts = node("ScatterElements", [zeros_b, seg, keep], "counts", axis=0, reduction="add")
    denom = node("Unsqueeze", [node("Max", [counts, "one_f"], "counts_1"), "one"], "denom")
    out = node("Div", [sums, denom], "mean" if normalize else OUTPUT)
    if normalize:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        norm = node("ReduceL2", [out, "one"], "norm", keepdims=1)
        node("Div", [out, node("Max", [norm, "eps"], "norm_eps")], OUTPUT)
    graph = helper.make_graph(
        nodes, "static_embedding",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["tokens"]),
         helper.make_tensor_value_info("offsets", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", dim])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="embedrt")
    onnx.checker.check_model(model)
    return model
