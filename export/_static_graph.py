"""The ONNX graph of a static-embedding model: a table lookup and a mean per text, EmbeddingBag-style.

Inputs are flat, as ``torch.nn.EmbeddingBag`` takes them: ``input_ids`` [tokens] (every text's ids
one after the other) and ``offsets`` [batch] (where each text starts). No padding, no mask. The sums
are one matrix product with the batch's 0/1 membership matrix (text b owns tokens offsets[b] to
offsets[b+1])::

    input_ids ─► Gather(table) ───────────────────────────────────► rows [tokens, dim] ─┐
    offsets, tokens ─► member [batch, tokens] = start <= t < end (and t not dropped) ─► MatMul ─► / count ─► (L2)

Deterministic, unlike a ScatterND with ``reduction="add"`` (onnxruntime adds duplicate indices from
several threads at once: results changed from run to run), and fast while a run holds a few thousand
tokens (the membership matrix grows with texts x tokens; the runtime keeps static runs that small).
An empty text owns no token: its sum and count are 0 and its vector is zero (as EmbeddingBag's mean
and model2vec give). ``drop_id`` (model2vec drops its unknown token) belongs to no text.
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
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "end"),
        numpy_helper.from_array(np.array(0, np.int64), "zero_s"),
        numpy_helper.from_array(np.array(1, np.int64), "one_s"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
    ]

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    rows = node("Gather", ["table", "input_ids"], "rows", axis=0)
    n_tok = node("Shape", ["input_ids"], "n_tok")
    position = node("Unsqueeze", [node("Range", ["zero_s", node("Squeeze", [n_tok], "n_tok_s"), "one_s"], "pos"),
                                  "zero_s"], "position")  # [1, tokens]
    ends = node("Concat", [node("Slice", ["offsets", "one", "end"], "next_starts"), n_tok], "ends", axis=0)
    starts_col = node("Unsqueeze", ["offsets", "one"], "starts_col")  # [batch, 1]
    ends_col = node("Unsqueeze", [ends, "one"], "ends_col")
    member = node("And", [node("GreaterOrEqual", [position, starts_col], "after_start"),
                          node("Less", [position, ends_col], "before_end")], "member_b")
    if drop_id is not None:
        inits.append(numpy_helper.from_array(np.array(drop_id, np.int64), "drop_id"))
        kept = node("Unsqueeze", [node("Not", [node("Equal", ["input_ids", "drop_id"], "is_drop")], "kept_t"),
                                  "zero_s"], "kept")
        member = node("And", [member, kept], "member_kept")
    weights = node("Cast", [member], "member", to=TensorProto.FLOAT)  # [batch, tokens]
    sums = node("MatMul", [weights, rows], "sums")
    counts = node("ReduceSum", [weights, "one"], "counts", keepdims=1)
    out = node("Div", [sums, node("Max", [counts, "one_f"], "denom")], "mean" if normalize else OUTPUT)
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
