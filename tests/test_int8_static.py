"""int8 inputs quantized per tensor on scales fixed at export (the default int8's layer-norm
outputs): the graph rewrite against numpy, ranges from real tokens only, what stays dynamic,
vectors that no longer depend on the batch, exact on every CPU kernel, and the recipe's checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from int8_bundles import assert_exact_on_every_kernel, batch_gap, int8_bundles, pair_limited
from onnx import TensorProto, helper, numpy_helper

from embedrt._bundle import MODEL_NAME, load_manifest
from embedrt.export._quantize import AUTO, RECIPE, RESIDUAL_RECIPE, Int8Recipe, quantize_int8
from embedrt.export._static_scales import static_tensor_scales

K, N = 64, 48


def _dynamic_matmul(tmp_path: Path) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """``x @ w + b`` on ``x [batch, tokens, K]`` beside an ``attention_mask`` input, quantized by
    onnxruntime's ``quantize_dynamic`` (``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul``,
    the bias ``Add`` after it) with pair-limited weights; returns it, the dequantized weight and b."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(3)
    w = rng.standard_normal((K, N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"], name="mm"), helper.make_node("Add", ["xw", "b"], ["y"], name="add")],
        "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", K]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", N])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "fp32.onnx"))
    quantize_dynamic(tmp_path / "fp32.onnx", tmp_path / "q.onnx", per_channel=True, weight_type=QuantType.QInt8)
    model = onnx.load(str(tmp_path / "q.onnx"))
    return model, pair_limited(model, w), b


def test_static_scales_cover_the_real_tokens_and_compute_what_numpy_says(tmp_path: Path) -> None:
    """The range is the calibration's real tokens' (loud padding rows left out), as
    ``DynamicQuantizeLinear`` would take it (0 included); the rewritten graph is one
    ``QuantizeLinear`` and one ``MatMulIntegerToFloat`` with the bias inside, and computes numpy's
    model of it, clipping what lies beyond the range; a row's output does not depend on the others."""
    model, wq, b = _dynamic_matmul(tmp_path)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, K)) * 1.5 + 0.4).astype(np.float32)
    mask = np.ones((2, 5), np.int64)
    mask[1, 3:] = 0
    x[1, 3:] = 1000.0  # padding: must not widen the range
    assert static_tensor_scales(model, [{"x": x, "attention_mask": mask}]) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["QuantizeLinear", "MatMulIntegerToFloat"], ops
    mm = model.graph.node[1]
    assert mm.input[6] == "b" and mm.output[0] == "y"
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    real = x[mask.astype(bool)]
    lo, hi = min(float(real.min()), 0.0), max(float(real.max()), 0.0)
    s, z = (hi - lo) / 255, int(np.round(-lo / ((hi - lo) / 255)))
    assert float(inits[mm.input[2]]) == pytest.approx(s, rel=1e-6) and int(inits[mm.input[4]]) == z
    x2 = (rng.standard_normal((3, 7, K)) * 2.5).astype(np.float32)  # beyond the range in places: clipped
    session = ort.InferenceSession(model.SerializeToString())
    y = session.run(None, {"x": x2, "attention_mask": np.ones((3, 7), np.int64)})[0]
    sf = np.float32(inits[mm.input[2]])
    levels = np.clip(np.round(x2 / sf) + z, 0, 255)
    assert levels.max() == 255 or levels.min() == 0  # the clipping is exercised
    np.testing.assert_allclose(y, ((levels - z) * sf) @ wq + b, rtol=1e-5, atol=1e-4)
    alone = session.run(None, {"x": x2[:1, :2], "attention_mask": np.ones((1, 2), np.int64)})[0]
    np.testing.assert_array_equal(alone, y[:1, :2])


def test_an_input_whose_scale_is_read_elsewhere_stays_dynamic(tmp_path: Path) -> None:
    model, _, _ = _dynamic_matmul(tmp_path)
    dql = next(n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear")
    model.graph.output.append(helper.make_tensor_value_info(dql.output[1], TensorProto.FLOAT, []))
    model.graph.node.append(helper.make_node("Identity", [dql.output[1]], ["seen"], name="reader"))
    before = model.SerializeToString()
    x = np.ones((1, 2, K), np.float32)
    assert static_tensor_scales(model, [{"x": x, "attention_mask": np.ones((1, 2), np.int64)}]) == 0
    assert model.SerializeToString() == before


@pytest.fixture(scope="module")
def bundles(tiny_factory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The tiny BERT's int8 graph (flash attention) by the default recipe and by the same recipe
    with run-time scales, in bundles, without the export's gate."""
    dynamic = dataclasses.replace(RECIPE, tensor_scales="dynamic")
    return int8_bundles(tiny_factory("bert"), tmp_path_factory.mktemp("int8-static"),
                        {"static": RECIPE, "dynamic": dynamic})  # fmt: skip


def test_default_graph_fixes_the_layer_norm_inputs(bundles: dict[str, Path]) -> None:
    """Every input the run-time recipe quantizes per tensor (``DynamicQuantizeLinear``) is a static
    ``QuantizeLinear`` in the default, each product one ``MatMulIntegerToFloat``; the per-row inputs
    are untouched; the manifest says how many of each."""
    ops = {k: [n.op_type for n in onnx.load(str(bundles[k] / MODEL_NAME)).graph.node] for k in ("static", "dynamic")}
    per_tensor = ops["dynamic"].count("DynamicQuantizeLinear")
    per_row = ops["dynamic"].count("QuantizeLinear")
    assert per_tensor > 0 and per_row > 0
    assert "DynamicQuantizeLinear" not in ops["static"] and "MatMulInteger" not in ops["static"]
    assert ops["static"].count("QuantizeLinear") == per_tensor + per_row
    assert ops["static"].count("MatMulIntegerToFloat") == ops["dynamic"].count("MatMulIntegerToFloat") + ops[
        "dynamic"
    ].count("MatMulInteger")
    model = onnx.load(str(bundles["static"] / MODEL_NAME))
    onnx.checker.check_model(model)
    inits = {t.name for t in model.graph.initializer}
    static = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.name.endswith("_static")]
    assert len(static) == per_tensor and all(n.input[1] in inits and n.input[2] in inits for n in static)
    q = load_manifest(bundles["static"]).optimizations["quantization"]
    assert q["static_scale_inputs"] == per_tensor and q["recipe"]["tensor_scales"] == "static"
    assert q["activations"].endswith(f"; static per tensor (scales fixed at export), {per_tensor} tensors"), q["activations"]
    assert q["operator"] == "QuantizeLinear static per tensor, QuantizeLinear per row + MatMulIntegerToFloat"
    assert load_manifest(bundles["dynamic"]).optimizations["quantization"]["static_scale_inputs"] == 0


def test_default_vectors_do_not_depend_on_the_batch(bundles: dict[str, Path]) -> None:
    """Embedded alone or batched with longer and louder texts: the same vector with static scales;
    with run-time scales per tensor the neighbours move it (which this test would miss if broken)."""
    diffs = {name: batch_gap(bundles[name]) for name in ("static", "dynamic")}
    assert diffs["static"] < 1e-6, diffs
    assert diffs["dynamic"] > 20 * max(diffs["static"], 1e-7), diffs


def test_default_vectors_are_exact_through_every_kernel(bundles: dict[str, Path]) -> None:
    """This CPU's u8s8 kernel and onnxruntime's exact u8u8 path agree on the static graph."""
    assert_exact_on_every_kernel(bundles["static"])


def test_static_scales_recipe_checks(tmp_path: Path) -> None:
    """Bad values name themselves; static scales need the smoothing's calibration and do not combine
    with a residual pass; the exporter's automatic order keeps a run-time-scale attempt before nbits."""
    fp32 = tmp_path / "fp32.onnx"
    _dynamic_matmul(tmp_path)
    with pytest.raises(ValueError, match="invalid int8 tensor_scales 'fixed': expected one of"):
        quantize_int8(fp32, tmp_path / "o.onnx", Int8Recipe(tensor_scales="fixed"))
    with pytest.raises(ValueError, match="static tensor_scales apply to int8 method 'smooth'"):
        quantize_int8(fp32, tmp_path / "o.onnx", Int8Recipe(method="dynamic", tensor_scales="static"))
    with pytest.raises(ValueError, match="do not combine"):
        quantize_int8(fp32, tmp_path / "o.onnx", dataclasses.replace(RECIPE, residual_inputs="block_inputs"))
    assert RESIDUAL_RECIPE.tensor_scales == "dynamic" and RECIPE.tensor_scales == "static"
    assert [(r.method, r.tensor_scales) for r in AUTO] == [("smooth", "static"), ("smooth", "dynamic"), ("nbits", "dynamic")]


def test_an_added_constant_that_is_not_a_bias_vector_stays_an_add(tmp_path: Path) -> None:
    """``MatMulIntegerToFloat`` takes a ``[N]`` bias only: a constant of another shape is added after it."""
    model, wq, b = _dynamic_matmul(tmp_path)
    for t in model.graph.initializer:
        if t.name == "b":
            t.CopyFrom(numpy_helper.from_array(b.reshape(1, 1, N), "b"))
    x = np.random.default_rng(1).standard_normal((2, 3, K)).astype(np.float32)
    feed = {"x": x, "attention_mask": np.ones((2, 3), np.int64)}
    assert static_tensor_scales(model, [feed]) == 1
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "MatMulIntegerToFloat", "Add"]
    assert len(model.graph.node[1].input) == 6
    y = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    np.testing.assert_allclose(y, x @ wq + b, atol=0.05 * float(np.abs(x @ wq).max()))
