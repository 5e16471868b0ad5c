"""Outlier channels split out of an FFN output projection: same function, outliers gone from the int8 input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from embedrt.export._outliers import fold_masks, split_outliers
from embedrt.export._smooth import smooth_model

OUTLIER = 5


def _ffn() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 64)).astype(np.float32) * 0.3
    w1[:, OUTLIER] *= 40.0  # one intermediate channel tens of times larger than the rest
    w2 = rng.standard_normal((64, 8)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="ffn_in"),
         helper.make_node("Relu", ["h"], ["a"], name="act"),
         helper.make_node("MatMul", ["a", "w2"], ["y0"], name="ffn_out"),
         helper.make_node("Identity", ["y0"], ["y"], name="after")],
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16]),
         helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None]),  # as calibration feeds hold
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((40, 16)).astype(np.float32), "input_ids": np.ones(40, np.int64),
             "attention_mask": np.ones(40, np.int64)} for _ in range(n)]  # fmt: skip


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray], out: str = "y") -> np.ndarray:
    if out == "y":
        onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([out], feed)[0]


def test_split_computes_the_same_and_the_int8_input_has_no_outlier() -> None:
    model, feeds = _ffn(), _feeds()
    want = [_run(model, f) for f in feeds]
    record = split_outliers(model, ["ffn_out"], feeds, most=4)
    assert [r["channels"] for r in record] == [[OUTLIER]] and record[0]["peak_over_median"][0] > 8
    w2 = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w2"))
    assert not w2[OUTLIER].any()  # its row of the (to be int8) weight is zero
    node = next(n for n in model.graph.node if n.name == "ffn_out")
    for feed, y in zip(feeds, want, strict=True):
        np.testing.assert_allclose(_run(model, feed), y, rtol=1e-5, atol=1e-4)
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.append(helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None))
        seen = _run(probe, feed, node.input[0])  # what the int8 product will quantize
        assert not seen[:, OUTLIER].any() and seen.any()


def test_the_mask_folds_into_the_smoothing_mul() -> None:
    model, feeds = _ffn(), _feeds()
    want = [_run(model, f) for f in feeds]
    split_outliers(model, ["ffn_out"], feeds, most=4)
    smoothing = smooth_model(model, ["ffn_out"], feeds, feedback=False)
    assert smoothing.record["groups"][0]["alpha"] is not None, "the test wants a smoothing Mul to fold into"
    assert fold_masks(model) == 1
    assert not any(n.name.endswith("_Mask") for n in model.graph.node)
    assert not any(t.name.endswith("_mask") for t in model.graph.initializer)
    for feed, y in zip(feeds, want, strict=True):
        np.testing.assert_allclose(_run(model, feed), y, rtol=1e-4, atol=1e-3)


def test_no_outlier_no_change() -> None:
    model = _ffn()
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    values = numpy_helper.to_array(w1).copy()
    values[:, OUTLIER] /= 40.0
    w1.CopyFrom(numpy_helper.from_array(values, "w1"))
    before = model.SerializeToString()
    assert split_outliers(model, ["ffn_out"], _feeds(), most=4) == []
    assert model.SerializeToString() == before
