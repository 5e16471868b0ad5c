"""A product whose output is cut in slices (GeGLU's chunk) becomes one product per slice: the same
values, and nothing rewritten where the product or its shape serves anything else."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from embedrt.export._products import split_products

K, N = 4, 6


def _chunked(step: int = 1, bound: str = "width", extra_reader: str | None = None) -> onnx.ModelProto:
    """``a, b = (x @ w).chunk(2, -1)``; ``y = a * b``, the half computed from the product's shape as
    the exporter writes it (``bound="width"``) or from its length (``"length"``), slices of ``step``;
    ``extra_reader``: ``"product"`` also adds the product's sum to ``y``, ``"overlap"`` its first half
    once more, ``"shape"`` also outputs its shape."""
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "w"], ["p"]),
        n("Shape", ["p"], ["shape"]),
        n("Gather", ["shape", "last" if bound == "width" else "one"], ["width"], axis=0),
        n("Div", ["width", "two"], ["half"]),
        n("Unsqueeze", ["half", "zero_axis"], ["half_v"]),
        n("Mul", ["half_v", "two_v"], ["full_v"]),
        n("Slice", ["p", "start", "half_v", "axis_last", "step"], ["a"]),
        n("Slice", ["p", "half_v", "full_v", "axis_last", "step"], ["b"]),
        n("Mul", ["a", "b"], ["ab"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader == "product":
        nodes += [n("ReduceSum", ["p", "axis_last"], ["total"], keepdims=1), n("Add", ["ab", "total"], ["y"])]
    elif extra_reader == "overlap":  # a third slice over the first: more columns than the weight has
        nodes += [n("Slice", ["p", "start", "half_v", "axis_last", "step"], ["c"]), n("Add", ["ab", "c"], ["y"])]
    else:
        nodes.append(n("Identity", ["ab"], ["y"]))
    if extra_reader == "shape":
        outputs.append(helper.make_tensor_value_info("shape", TensorProto.INT64, None))
    w = np.random.default_rng(1).standard_normal((K, N)).astype(np.float32)
    ints = {"last": -1, "one": 1, "two": 2, "zero_axis": [0], "two_v": [2], "start": [0], "axis_last": [-1],
            "step": [step]}  # fmt: skip
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in ints.items()]
    graph = helper.make_graph(nodes, "chunk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", K])],
                              outputs, [*inits, numpy_helper.from_array(w, "w")])  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_each_slice_becomes_its_own_product_with_the_same_values() -> None:
    plain, split = _chunked(), _chunked()
    assert split_products(split) == {"split_products": 1}
    assert sorted(node.op_type for node in split.graph.node) == ["Identity", "MatMul", "MatMul", "Mul"]
    assert sorted(tuple(t.dims) for t in split.graph.initializer) == [(K, N // 2), (K, N // 2)]
    for batch, seq in ((1, 1), (3, 5)):
        x = np.random.default_rng(seq).standard_normal((batch, seq, K)).astype(np.float32)
        np.testing.assert_array_equal(_run(split, x), _run(plain, x))


def test_a_product_or_shape_that_serves_more_than_the_slices_is_left_alone() -> None:
    for reader in ("product", "shape"):
        model = _chunked(extra_reader=reader)
        before = model.SerializeToString()
        assert split_products(model) == {}, reader
        assert model.SerializeToString() == before


def test_slices_it_cannot_express_as_columns_are_left_with_the_reason() -> None:
    for model in (_chunked(step=2), _chunked(extra_reader="overlap")):
        record = split_products(model)
        assert record["split_products"] == 0 and record["why"].startswith("no product is cut in column ranges")
    by_length = _chunked(bound="length")  # the cut moves with the text's length: no fixed columns
    record = split_products(by_length)
    assert record["split_products"] == 0 and "depends on the batch or the length" in record["why"]
