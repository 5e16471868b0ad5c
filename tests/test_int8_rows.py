"""int8 activations with one scale per token row (``int8_method="smooth-rows"``): the graph rewrite
against a numpy model of it, vectors that no longer depend on the batch, exact on every CPU kernel,
clear errors where it does not apply, and the gate on the real MiniLM."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from int8_bundles import assert_exact_on_every_kernel, batch_gap, int8_bundles, one_matmul, pair_limited
from onnx import TensorProto, helper, numpy_helper

from embedrt import Embedder
from embedrt._bundle import MODEL_NAME, load_manifest
from embedrt._errors import UnsupportedModelError
from embedrt.export._quantize import RECIPE, ROWS_RECIPE, Int8Recipe, quantize_int8
from embedrt.export._row_activations import per_row_activations, raise_opset
from embedrt.export._smooth import _quant_rows


@pytest.fixture(scope="module")
def bundles(tiny_factory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The tiny BERT's int8 graph (flash attention) per recipe, in bundles, without the export's gate."""
    # the two differ in their activations only (the default also quantizes layer 0's FFN output projection)
    tensor = dataclasses.replace(ROWS_RECIPE, activations="tensor")
    mixed = dataclasses.replace(ROWS_RECIPE, row_inputs=RECIPE.row_inputs)  # the default's activations
    return int8_bundles(tiny_factory("bert"), tmp_path_factory.mktemp("int8-rows"),
                        {"tensor": tensor, "row": ROWS_RECIPE, "mixed": mixed})  # fmt: skip


def test_row_graph_quantizes_every_activation_per_row(bundles: dict[str, Path]) -> None:
    model = onnx.load(str(bundles["row"] / MODEL_NAME))
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops
    default_ops = [n.op_type for n in onnx.load(str(bundles["tensor"] / MODEL_NAME)).graph.node]
    assert ops.count("QuantizeLinear") == default_ops.count("DynamicQuantizeLinear") > 0
    assert ops.count("MatMulIntegerToFloat") == default_ops.count("MatMulInteger")
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 21
    onnx.checker.check_model(model)
    q = load_manifest(bundles["row"]).optimizations["quantization"]
    assert q["activations"].startswith("uint8, dynamic per token row")
    assert q["recipe"]["activations"] == "row" and q["smoothing"]["activations_simulated"] == "per token row"
    assert q["u8s8_max_pair_sum"] <= 128


def _origin(tensor: str, producer: dict[str, onnx.NodeProto]) -> str:
    """The op that makes ``tensor``, looking through the smoothing ``Mul`` by a constant."""
    node = producer.get(tensor)
    while node is not None and node.op_type == "Mul" and node.name.startswith("EmbedrtSmooth"):
        node = producer.get(node.input[0])
    return node.op_type if node is not None else "input"


def test_mixed_graph_takes_rows_where_no_layer_norm_made_the_input(bundles: dict[str, Path]) -> None:
    """``row_inputs="unnormalized"``: the attention context and the FFN activation per row, the
    layer norms' outputs per tensor, each MatMul exactly once, and the manifest saying both."""
    model = onnx.load(str(bundles["mixed"] / MODEL_NAME))
    producer = {o: n for n in model.graph.node for o in n.output}
    per_row = [_origin(n.input[0], producer) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    per_tensor = [_origin(n.input[0], producer) for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    assert per_row and per_tensor
    assert set(per_tensor) == {"LayerNormalization"}, per_tensor
    assert "LayerNormalization" not in per_row, per_row
    default_ops = [n.op_type for n in onnx.load(str(bundles["tensor"] / MODEL_NAME)).graph.node]
    assert len(per_row) + len(per_tensor) == default_ops.count("DynamicQuantizeLinear")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") + ops.count("MatMulInteger") == default_ops.count("MatMulInteger")
    onnx.checker.check_model(model)
    q = load_manifest(bundles["mixed"]).optimizations["quantization"]
    assert re.fullmatch(rf"uint8, dynamic per token row \(zero points? [0-9x, ]+\), {len(per_row)} tensors; "
                        rf"per tensor, {len(per_tensor)} tensors", q["activations"]), q["activations"]  # fmt: skip
    assert q["smoothing"]["activations_simulated"].startswith("per token row for ")
    assert q["recipe"]["row_inputs"] == "unnormalized" and q["u8s8_max_pair_sum"] <= 128


def test_mixed_vectors_are_exact_through_every_kernel_and_still_batch_dependent(bundles: dict[str, Path]) -> None:
    """The per-row and per-tensor halves together are exact through onnxruntime's u8u8 path as well;
    the per-tensor inputs on run-time scales still move a text's vector with its neighbours (what
    README says of such bundles: less than with every input per tensor on MiniLM, not a property of
    every random model)."""
    assert batch_gap(bundles["mixed"]) > 1e-6
    assert_exact_on_every_kernel(bundles["mixed"])


def test_row_vectors_do_not_depend_on_the_batch(bundles: dict[str, Path]) -> None:
    """Embedded alone or batched with longer and louder texts: the same vector with per-row scales;
    with one scale per tensor the neighbours move it (which is what this test would miss if broken)."""
    diffs = {name: batch_gap(path) for name, path in bundles.items()}
    assert diffs["row"] < 1e-6, diffs
    assert diffs["tensor"] > 20 * max(diffs["row"], 1e-7), diffs


def test_row_vectors_are_exact_through_every_kernel(bundles: dict[str, Path]) -> None:
    """This CPU's u8s8 kernel and onnxruntime's exact u8u8 path agree: zero point 128 keeps the
    levels within 0..255 and the weights' pairs within the limit."""
    assert_exact_on_every_kernel(bundles["row"])


def test_rewrite_computes_per_row_quantization(tmp_path: Path) -> None:
    """The rewritten graph is numpy's per-row model of it (``_quant_rows``) times the int8 weights,
    and rows 1000x apart in magnitude keep their precision, which one scale per tensor cannot."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, w, b = one_matmul(tmp_path)
    quantize_dynamic(fp32, tmp_path / "tensor.onnx", per_channel=True, weight_type=QuantType.QInt8)
    model = onnx.load(str(tmp_path / "tensor.onnx"))
    wq = pair_limited(model, w)  # as the exporter lays them out: exact on AVX2 as well
    onnx.save(model, str(tmp_path / "tensor.onnx"))
    assert per_row_activations(model) == 1
    onnx.save(model, str(tmp_path / "row.onnx"))
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((8, 64)) * np.logspace(-3, 0, 8)[:, None]).astype(np.float32)
    x[5] = 0.0  # an all-zero (padding-like) row
    run = {p: ort.InferenceSession(str(tmp_path / f"{p}.onnx")).run(None, {"x": x})[0] for p in ("tensor", "row")}
    np.testing.assert_allclose(run["row"], _quant_rows(x) @ wq + b, rtol=1e-5, atol=1e-5)
    exact = x @ w + b
    rel = {p: np.abs(y - exact).max(axis=1) / np.maximum(np.abs(x @ w).max(axis=1), 1e-12) for p, y in run.items()}
    assert rel["row"][0] < 0.05 and rel["tensor"][0] > 0.5  # the smallest row: kept per row, lost per tensor
    np.testing.assert_allclose(run["row"][5], b, atol=1e-6)


def test_rewrite_with_a_zero_point_gives_a_mostly_positive_input_more_levels(tmp_path: Path) -> None:
    """A zero point below 128 is what numpy's model of it says (``_quant_rows(x, z)``), keeps every
    row's whole range (a row that is mostly negative included), and on a GELU-like input (down to
    -0.17, up to a few units) leaves less error than the symmetric one."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32, w, b = one_matmul(tmp_path)
    quantize_dynamic(fp32, tmp_path / "tensor.onnx", per_channel=True, weight_type=QuantType.QInt8)
    base = onnx.load(str(tmp_path / "tensor.onnx"))
    wq = pair_limited(base, w)
    rng = np.random.default_rng(5)
    z = rng.standard_normal((64, 64)).astype(np.float32) * 2
    gelu = (0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z**3)))).astype(np.float32)
    gelu[3] = -np.abs(gelu[3]) - 0.01  # one row all negative: its range must still be kept whole
    dql = next(n for n in base.graph.node if n.op_type == "DynamicQuantizeLinear")
    run = {}
    for zero in (128, 64):
        model = onnx.ModelProto()
        model.CopyFrom(base)
        assert per_row_activations(model, zero_points={dql.input[0]: zero}) == 1
        onnx.checker.check_model(model)
        run[zero] = ort.InferenceSession(model.SerializeToString()).run(None, {"x": gelu})[0]
        np.testing.assert_allclose(run[zero], _quant_rows(gelu, zero) @ wq + b, rtol=1e-5, atol=1e-5)
    exact = gelu @ wq + b
    np.testing.assert_allclose(run[64][3], exact[3], atol=0.05 * np.abs(exact[3]).max())
    err = {zero: float(np.square(y - exact).mean()) for zero, y in run.items()}
    assert err[64] < 0.6 * err[128], err
    with pytest.raises(ValueError, match=r"zero points \{'x': 0\} out of range; expected 1..254"):
        per_row_activations(base, zero_points={"x": 0})


def test_manifest_zero_points_are_the_graphs(bundles: dict[str, Path]) -> None:
    """The zero point the smoothing chose for each per-row input is the one the graph quantizes
    with, and the manifest's count of them matches. (Whether the tiny model's GELU activation takes
    one below 128 is a near tie that moves with its trained tokenizer; MiniLM's do: ``test_gate``.)"""
    model = onnx.load(str(bundles["row"] / MODEL_NAME))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    by_input = {}
    for n in model.graph.node:
        if n.op_type == "MatMulIntegerToFloat":
            by_input[n.input[0]] = int(inits[n.input[4]])
    zeros = {}
    for n in model.graph.node:
        if n.op_type == "ConstantOfShape" and n.name.startswith("embedrt_rowq_"):
            zeros[n.name.removesuffix("_zero")] = int(numpy_helper.to_array(n.attribute[0].t)[0])
    assert zeros and all(by_input[f"{p}_q"] == z for p, z in zeros.items())
    q = load_manifest(bundles["row"]).optimizations["quantization"]
    chosen = [g["row_zero_point"] for g in q["smoothing"]["groups"]]
    assert sorted(chosen) == sorted(zeros.values())  # one group per input, every input smoothed
    assert all(0 < z < 255 for z in zeros.values())
    assert q["smoothing"]["row_zero_points"][0] == 128


def test_stand_in_computes_the_int8_graphs_vectors(tiny_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The float stand-in that the int8 error study takes apart (``benchmarks.int8_parts``) computes,
    with every part int8, the vectors of the int8 graph that the export writes (flash attention, the
    value projection's fold, inputs per tensor and per row, the outlier split), and with every part
    exact those of the fp32 graph. The int8 graph with a second pass over every input's rounding
    residual (``benchmarks.int8_residual``) computes nearly the stand-in with int8 weights and exact
    inputs."""
    from transformers import AutoTokenizer

    from benchmarks.int8_parts import KINDS, captured, stand_in
    from benchmarks.int8_residual import with_residual
    from embedrt.export import export_model
    from embedrt.export._export import calibration_texts
    from embedrt.export._smooth import calibration_feeds
    from embedrt.export._variants import apply_variant

    src = tiny_factory("bert")
    plain = export_model(src, tmp_path / "plain", optimize=False)
    tok = AutoTokenizer.from_pretrained(str(src))
    feeds = calibration_feeds(tok, calibration_texts(32), ["input_ids", "attention_mask", "token_type_ids"], 64)
    cfg = {"config": {"model_type": "bert", "num_attention_heads": 2, "hidden_size": 32}, "fusion": "bert"}
    int8 = tmp_path / "int8.onnx"
    # the tiny model's peaks are even: split some; the stand-in models run-time per-tensor scales
    recipe = dataclasses.replace(RECIPE, outlier_ratio=1.5, tensor_scales="dynamic")
    with captured() as seen:
        record = apply_variant(plain / MODEL_NAME, int8, "int8", None, cfg, int8_recipe=recipe, calibration=feeds)
    groups = record["quantization"]["smoothing"]["groups"]
    assert any(g.get("divided_in") == "value projection" for g in groups)
    assert {"row_zero_point" in g for g in groups} == {True, False}  # inputs per row and per tensor
    assert record["quantization"]["outlier_channels"]["in_fp32_beside_the_int8_product"]
    names = [g["nodes"] for g in groups]
    every = [n for g in names for n in g]
    sm = seen["smoothing"]

    def session(model: onnx.ModelProto | Path) -> ort.InferenceSession:
        data = str(model) if isinstance(model, Path) else model.SerializeToString()
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"])

    def like(**exact: list[str]) -> ort.InferenceSession:
        return session(stand_in(seen["model"], names, sm.weights, seen["rows"], sm.zero_points, **exact))

    like_int8, like_fp32, like_weights = like(), like(exact_weights=every, exact_inputs=every), like(exact_inputs=every)
    graph_int8, graph_fp32 = session(int8), session(plain / MODEL_NAME)
    out = graph_int8.get_outputs()[0].name
    # float sums in another order may move a rare value across a rounding boundary: compare norms
    for feed in feeds[:4]:
        want, ref = graph_int8.run([out], feed)[0], graph_fp32.run([out], feed)[0]
        gap = float(np.linalg.norm(want - ref))
        assert gap > 1e-5  # int8 differs from fp32 ...
        assert np.linalg.norm(like_int8.run([out], feed)[0] - want) < gap / 20  # ... the stand-in is int8
        assert np.linalg.norm(like_fp32.run([out], feed)[0] - ref) < gap / 20  # ... or fp32
    # the second pass over every input's rounding residual (benchmarks.int8_residual) leaves little
    # of that gap: the weights' share
    twice, count = with_residual(onnx.load(str(int8)), KINDS)
    assert count == len(groups)
    graph_twice = session(twice)
    for feed in feeds[:4]:
        gap = float(np.linalg.norm(graph_int8.run([out], feed)[0] - graph_fp32.run([out], feed)[0]))
        assert np.linalg.norm(graph_twice.run([out], feed)[0] - like_weights.run([out], feed)[0]) < gap / 10


def test_raise_opset_moves_what_became_inputs(tmp_path: Path) -> None:
    g = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1, name="mean"),
         helper.make_node("Split", ["x"], ["a", "b"], axis=1, name="split"),
         helper.make_node("Sub", ["a", "m"], ["y"], name="sub")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 2])],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    raise_opset(model, 21)
    onnx.checker.check_model(model, full_check=True)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for got, ref in zip(after, before, strict=True):
        np.testing.assert_array_equal(got, ref)


def test_bad_row_recipes_are_refused(tmp_path: Path) -> None:
    fp32, _, _ = one_matmul(tmp_path)
    with pytest.raises(ValueError, match="invalid int8 activations 'column': expected one of"):
        quantize_int8(fp32, tmp_path / "o.onnx", Int8Recipe(activations="column"))
    with pytest.raises(ValueError, match="invalid int8 row_inputs 'some': expected one of"):
        quantize_int8(fp32, tmp_path / "o.onnx", Int8Recipe(activations="row", row_inputs="some"))
    with pytest.raises(ValueError, match="'nbits' quantizes per block"):
        quantize_int8(fp32, tmp_path / "o.onnx", Int8Recipe(method="nbits", activations="row"))


def test_fused_attention_graph_is_refused_by_name(tmp_path: Path) -> None:
    """QAttention quantizes its input inside the kernel, per tensor: the rewrite says so rather than
    leave part of the graph per tensor behind a manifest that says per row."""
    model = onnx.ModelProto()
    model.graph.node.append(helper.make_node("QAttention", ["x"], ["y"], domain="com.microsoft", name="qa"))
    with pytest.raises(UnsupportedModelError, match="QAttention.*--int8-method smooth"):
        per_row_activations(model)


def test_info_says_per_row(bundles: dict[str, Path]) -> None:
    from embedrt._describe import describe_variant

    rows = dict(describe_variant(load_manifest(bundles["row"]), bundles["row"]))
    assert "per token row" in rows["activations"]


@pytest.mark.slow
def test_rows_gate_on_minilm(minilm_path: Path, minilm_st, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from embedrt.export import export_model
    from embedrt.export._gate import gate_texts, run_gate

    texts = gate_texts(1000)
    ref = minilm_st.encode(texts, batch_size=32)
    bundle = export_model(minilm_path, tmp_path / "b", precision="int8", int8_method="smooth-rows")
    model = Embedder(bundle)
    report = run_gate(ref, model.encode(texts, batch_size=32), "int8")
    assert report["passed"]
    q = model.manifest.optimizations["quantization"]
    assert q["method"] == "smooth" and q["recipe"]["activations"] == "row" and q["u8s8_max_pair_sum"] <= 128
    # closer than the per-tensor graph's 0.9986 measured on these texts (int8-feedback-*.json)
    assert report["mean_cos"] > 0.9988 and report["topk"] >= 0.95


def test_cli_offers_every_int8_method() -> None:
    """The CLI (torch-free, so it cannot import the exporter's table) lists the same methods."""
    from embedrt.cli import build_parser
    from embedrt.export._quantize import METHODS

    args = build_parser().parse_args(["export", "SRC", "-o", "OUT", "--precision", "int8", "--int8-method", "smooth-rows"])
    assert args.int8_method == "smooth-rows"
    export = next(a for a in build_parser()._subparsers._group_actions[0].choices["export"]._actions  # type: ignore[union-attr]
                  if a.dest == "int8_method")  # fmt: skip
    assert list(export.choices) == ["auto", *METHODS]
