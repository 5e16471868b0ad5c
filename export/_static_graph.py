"""The ONNX graph of a static-embedding model: a table lookup and a mean per text, EmbeddingBag-style.

Inputs are flat, as ``torch.nn.EmbeddingBag`` takes them: ``input_ids`` [tokens] (every text's ids
one after the other) and ``offsets`` [batch] (where each text starts). No padding, no mask. A text's
sum is the difference of a running sum (in float64, so long batches lose nothing) at its end and at
its start::

    input_ids ─► Gather(table) ─► Cast(f64) ─► CumSum ─► [0; running] ─┬─ Gather(ends) ─┐
    offsets ──────────────────────────────────────────────────────────┴─ Gather(starts) ┴─► Sub ─► / count ─► (L2)

Deterministic whatever the thread count (a ScatterND with ``reduction="add"`` is not: onnxruntime
adds duplicate indices from several threads at once). An empty text has no tokens: its sum and
count are 0 and its vector is zero (as EmbeddingBag's mean and model2vec give). ``drop_id``
(model2vec drops its unknown token) is left out of sums and counts.
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
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "end"),
        numpy_helper.from_array(np.zeros((1, dim), np.float64), "zero_row"),
        numpy_helper.from_array(np.zeros((1,), np.float64), "zero_count"),
        numpy_helper.from_array(np.array(1.0, np.float64), "one_d"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
    ]

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    rows = node("Cast", [node("Gather", ["table", "input_ids"], "rows32", axis=0)], "rows", to=TensorProto.DOUBLE)
    if drop_id is not None:
        inits.append(numpy_helper.from_array(np.array(drop_id, np.int64), "drop_id"))
        keep = node("Cast", [node("Not", [node("Equal", ["input_ids", "drop_id"], "is_drop")], "kept")], "keep",
                    to=TensorProto.DOUBLE)
        rows = node("Mul", [rows, node("Unsqueeze", [keep, "one"], "keep_col")], "rows_kept")
    else:
        keep = node("ConstantOfShape", [node("Shape", ["input_ids"], "n_tokens")], "keep",
                    value=helper.make_tensor("o", TensorProto.DOUBLE, [1], [1.0]))
    running = node("Concat", ["zero_row", node("CumSum", [rows, "zero"], "cumsum")], "running", axis=0)
    counted = node("Concat", ["zero_count", node("CumSum", [keep, "zero"], "cumcount")], "counted", axis=0)
    n_tok = node("Shape", ["input_ids"], "n_tok")
    ends = node("Concat", [node("Slice", ["offsets", "one", "end"], "next_starts"), n_tok], "ends", axis=0)
    sums = node("Sub", [node("Gather", [running, ends], "at_end", axis=0),
                        node("Gather", [running, "offsets"], "at_start", axis=0)], "sums")
    counts = node("Sub", [node("Gather", [counted, ends], "count_end", axis=0),
                          node("Gather", [counted, "offsets"], "count_start", axis=0)], "counts")
    denom = node("Unsqueeze", [node("Max", [counts, "one_d"], "counts_1"), "one"], "denom")
    out = node("Cast", [node("Div", [sums, denom], "mean64")], "mean" if normalize else OUTPUT, to=TensorProto.FLOAT)
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
