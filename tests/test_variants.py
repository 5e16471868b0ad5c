"""Variants (``--optimize``, int8, fp16) on tiny models of several architectures, and the gates on
the real all-MiniLM-L6-v2. fp16 is checked structurally and numerically on CPU; CUDA runs are
marked ``gpu``."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from embedrt import Embedder, UnsupportedModelError
from embedrt._bundle import MODEL_NAME, load_manifest
from embedrt.export import export_model
from embedrt.export._fp16 import check_fp16_graph
from embedrt.export._quantize import find_sites
from embedrt.export._variants import apply_variant

ARCHS = ["bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra"]
TEXTS = [
    "a short one",
    "The quick brown fox jumps over the lazy dog, twice, and then sleeps.",
    "대한민국은 민주공화국이다.",
    "x " * 300,  # truncated at max_seq_length
]


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


@pytest.fixture(scope="module")
def fp32_bundles(
    tiny_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The plain (unfused) fp32 graph of each architecture: what the variants start from and are compared with."""
    return {a: export_model(tiny_factory(a), tmp_path_factory.mktemp(f"fp32-{a}") / "b", optimize=False) for a in ARCHS}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_optimize_fuses_tiny_bert(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", optimize=True)
    opt = load_manifest(bundle).optimizations
    # every onnxruntime fusion (2 layers: two skip-layer-norms and one BiasGelu each, one embedding LN),
    # the attention rewritten for the flash kernel (one MultiHeadAttention per layer)
    assert opt["fused_ops"] == {
        "MultiHeadAttention": 2, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 4, "BiasGelu": 2,
    }  # fmt: skip
    assert opt["fusion"]["not_fused"] == [] and opt["attention"] == {"flash_attention": 2, "kept_packed": []}
    ops = _ops(bundle / MODEL_NAME)
    assert ops["Attention"] == 0 and ops["ReduceSum"] >= 1  # pooling survived the optimizer


def test_default_fuses_attention_alone(tiny_bert_bundle: Path) -> None:
    opt = load_manifest(tiny_bert_bundle).optimizations
    assert opt["optimize"] is True and opt["fusion"]["attention_only"] is True
    assert opt["fused_ops"] == {"MultiHeadAttention": 2} and opt["attention"]["flash_attention"] == 2


@pytest.mark.parametrize("arch", ARCHS)
def test_optimize_each_arch_fuses_or_says_so(
    arch: str, tiny_factory: Callable[..., Path], fp32_bundles: dict[str, Path], tmp_path: Path
) -> None:
    try:
        bundle = export_model(tiny_factory(arch), tmp_path / "b", optimize=True)
    except UnsupportedModelError as e:
        assert "fused nothing" in str(e) and arch in str(e)
        return
    opt = load_manifest(bundle).optimizations
    assert opt["fused_ops"], f"{arch}: --optimize recorded no fused operators"
    # on the CPU every fused attention is rewritten for the flash kernel (MPNet's attention does not fuse)
    assert opt["attention"]["flash_attention"] == opt["fused_ops"].get("MultiHeadAttention", 0)
    assert ("Attention" in opt["fusion"]["not_fused"]) == (opt["attention"]["flash_attention"] == 0)
    ref = Embedder(fp32_bundles[arch]).encode(TEXTS)
    assert _cos(Embedder(bundle).encode(TEXTS), ref).min() > 0.99999


def test_default_fusion_records_why_an_architecture_did_not_fuse(
    tiny_factory: Callable[..., Path], fp32_bundles: dict[str, Path], tmp_path: Path
) -> None:
    import json

    config = json.loads((tiny_factory("mpnet") / "config.json").read_text())
    out = tmp_path / "m.onnx"
    rec = apply_variant(fp32_bundles["mpnet"] / MODEL_NAME, out, "fp32", None, {"config": config})
    assert rec["optimize"] is False and "fused nothing" in rec["fusion"]["skipped"]
    assert _ops(out) == _ops(fp32_bundles["mpnet"] / MODEL_NAME)  # the plain graph, unchanged
    # an architecture onnxruntime's optimizer has no patterns for is not handed to it at all
    rec = apply_variant(fp32_bundles["mpnet"] / MODEL_NAME, out, "fp32", None, {"config": config, "fusion": None})
    assert rec["optimize"] is False and "no fusion patterns" in rec["fusion"]["skipped"]


def _fp32_weight_matmuls(path: Path) -> int:
    """MatMuls left with a constant fp32 weight before pooling."""
    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for s in find_sites(model) if s.kind != "head")


@pytest.mark.parametrize("arch", ARCHS)
def test_int8_each_arch(
    arch: str, tiny_factory: Callable[..., Path], fp32_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = export_model(tiny_factory(arch), tmp_path / "b", precision="int8")
    m = load_manifest(bundle)
    q = m.optimizations["quantization"]
    assert m.precision.value == "int8" and q["quantized_nodes"] >= 4
    ops = _ops(bundle / MODEL_NAME)
    if q["method"] == "smooth":  # the default; the groups it smoothed carry a Mul by 1/s
        smoothed = [g for g in q["smoothing"]["groups"] if g["alpha"] is not None]
        muls = [g for g in smoothed if g["divided_in"] == "Mul"]  # the others: inside the value projection
        assert sum(1 for n in onnx.load(str(bundle / MODEL_NAME)).graph.node if n.name.startswith("EmbedrtSmooth_")) == len(muls)
        # the others are divided inside the value projection (flash attention; with per-row scales on
        # the attention context a tiny random model may leave that group unsmoothed: MiniLM's test checks it)
        assert {g["divided_in"] for g in smoothed} <= {"Mul", "value projection"}
        assert all(g["rel_err"] <= g["rel_err_unsmoothed"] for g in q["smoothing"]["groups"])
        assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] + ops["MatMulIntegerToFloat"] == q["quantized_nodes"]
        assert ops["QuantizeLinear"] >= 1  # per token row where no layer norm made the input
        assert q["u8s8_max_pair_sum"] <= 128  # exact on every CPU
    else:  # smooth missed the gate on this model: the fallback says why
        assert q["method"] == "nbits" and m.optimizations["fallback_from"][0]["method"] == "smooth"
        assert ops["MatMulNBits"] == q["quantized_nodes"]
    # only what the recipe keeps fp32 by design is left: no projection, and beside each FFN output
    # projection with outlier channels the fp32 product of those channels
    split = (q.get("outlier_channels") or {}).get("in_fp32_beside_the_int8_product", [])
    assert q["excluded_nodes"] == [] and _fp32_weight_matmuls(bundle / MODEL_NAME) == len(split)
    got = Embedder(bundle).encode(TEXTS)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert _cos(got, Embedder(fp32_bundles[arch]).encode(TEXTS)).min() > 0.99


def test_smoothing_alone_changes_nothing_in_fp32(
    tiny_factory: Callable[..., Path], fp32_bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dividing activations by s and multiplying weight rows by s is exact up to rounding."""
    from transformers import AutoTokenizer

    import embedrt.export._smooth as smooth_module
    from embedrt.export._export import calibration_texts
    from embedrt.export._smooth import calibration_feeds, smooth_model

    src = fp32_bundles["bert"] / MODEL_NAME
    model = onnx.load(str(src))
    tok = AutoTokenizer.from_pretrained(str(tiny_factory("bert")))
    feeds = calibration_feeds(tok, calibration_texts(64), ["input_ids", "attention_mask", "token_type_ids"], 128)
    names = [s.name for s in find_sites(model) if s.kind != "head"]
    record = smooth_model(model, names, feeds).record
    assert len(record["groups"]) == 2 * 4  # per layer: QKV input, attention output, FFN in, FFN out
    assert any(g["alpha"] is not None for g in record["groups"])
    assert record["feedback_groups"] == 8 and "GPTQ" in record["rounding"]
    # past the memory budget for x.T @ x, groups are rounded to nearest, and the record says so
    monkeypatch.setattr(smooth_module, "GRAM_BUDGET_BYTES", 4 * 32 * 32)  # one hidden-size gram
    assert smooth_model(onnx.load(str(src)), names, feeds).record["feedback_groups"] == 1
    out = tmp_path / "smoothed.onnx"
    onnx.save(model, str(out))
    import onnxruntime as ort

    before = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for feed in feeds[:3]:
        a, b = (s.run(["sentence_embedding"], feed)[0] for s in (before, after))
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_int8_graphs_of_one_model_share_the_smoothing_search(
    tiny_factory: Callable[..., Path], fp32_bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export's int8 graphs (fused and plain, ``auto``'s two) search each group's smoothing once:
    the second graph takes the first's choice for every group whose weights it shares, and is the
    graph its own search would have made."""
    from transformers import AutoTokenizer

    import embedrt.export._smooth as smooth_module
    from embedrt.export._export import calibration_texts
    from embedrt.export._smooth import Choices, calibration_feeds

    searched: list[tuple[int, ...]] = []
    choose = smooth_module._choose
    monkeypatch.setattr(smooth_module, "_choose", lambda w, *a: searched.append(w.shape) or choose(w, *a))
    plain = fp32_bundles["bert"] / MODEL_NAME
    tok = AutoTokenizer.from_pretrained(str(tiny_factory("bert")))
    feeds = calibration_feeds(tok, calibration_texts(32), ["input_ids", "attention_mask", "token_type_ids"], 64)
    cfg = {"config": {"model_type": "bert", "num_attention_heads": 2, "hidden_size": 32}, "fusion": "bert"}

    def make(name: str, optimize: bool | None, choices: Choices | None) -> tuple[Path, list[dict[str, object]]]:
        searched.clear()
        out = tmp_path / name / MODEL_NAME
        out.parent.mkdir()
        rec = apply_variant(plain, out, "int8", optimize, cfg, calibration=feeds, smoothing_choices=choices)
        return out, rec["quantization"]["smoothing"]["groups"]

    choices: Choices = {}
    make("fused", None, choices)
    assert len(searched) == 8 and len(choices) == 8  # 2 layers: QKV input, attention output, FFN in, FFN out
    shared, groups = make("plain", False, choices)
    # only the Q/K/V groups are searched again: the fused graph's Q and K carry one more column per head
    assert searched == [(32, 96)] * 2 and len(choices) == 10
    alone, alone_groups = make("alone", False, None)
    assert len(searched) == 8
    assert [(g["alpha"], g.get("row_zero_point")) for g in groups] == [
        (g["alpha"], g.get("row_zero_point")) for g in alone_groups
    ]
    import onnxruntime as ort

    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (shared, alone))
    for feed in feeds[:3]:
        x, y = (s.run(["sentence_embedding"], feed)[0] for s in (a, b))
        assert np.abs(x - y).max() <= 1e-5 * np.abs(y).max()
    # a third graph with the same weights searches nothing and is the same graph
    again, _ = make("again", False, choices)
    assert searched == [] and again.read_bytes() == shared.read_bytes()


def test_int8_falls_back_to_nbits_when_smooth_misses_the_gate(
    tiny_factory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedrt.export._quantize as quantize

    real = quantize.smooth_model

    def broken(
        model: onnx.ModelProto, names: list[str], feeds: list[dict[str, np.ndarray]], wr: str, **kw: object
    ) -> object:
        record = real(model, names, feeds, wr, **kw)  # type: ignore[arg-type]
        for t in model.graph.initializer:  # wreck one smoothing scale: the smoothed graph must fail
            if t.name.startswith("embedrt_smooth_inv_"):
                t.CopyFrom(onnx.numpy_helper.from_array(-7 * onnx.numpy_helper.to_array(t), t.name))
                break
        return record

    monkeypatch.setattr(quantize, "smooth_model", broken)
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", precision="int8")
    opt = load_manifest(bundle).optimizations
    assert opt["quantization"]["method"] == "nbits"
    # the default, then the default with run-time scales: both smoothed by the wrecked smoothing
    assert [m["method"] for m in opt["fallback_from"]] == ["smooth", "smooth"]
    assert all("failed" in m for m in opt["fallback_from"])
    with pytest.raises(Exception, match="gate|parity|cosine"):  # asked for explicitly: no fallback
        export_model(tiny_factory("bert"), tmp_path / "c", precision="int8", int8_method="smooth")
    assert not (tmp_path / "c").exists()


def test_int8_method_is_checked_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'fast'.*expected 'auto' or one of"):
        export_model(tmp_path / "no-such-model", tmp_path / "b", precision="int8", int8_method="fast")


def test_int8_dynamic_on_fused_graph_needs_no_type_hints(
    fp32_bundles: dict[str, Path], tmp_path: Path
) -> None:
    """The dynamic recipe on a fused graph (contrib ops, no ONNX type inference) quantizes Q, K, V too."""
    from embedrt.export._quantize import DYNAMIC_RECIPE

    out = tmp_path / "q.onnx"
    cfg = {"config": {"model_type": "bert", "num_attention_heads": 2, "hidden_size": 32}}
    rec = apply_variant(fp32_bundles["bert"] / MODEL_NAME, out, "int8", True, cfg, int8_recipe=DYNAMIC_RECIPE)
    assert rec["quantization"]["method"] == "dynamic" and rec["fused_ops"]["MultiHeadAttention"] == 2
    assert rec["quantization"]["quantized_kinds"] == {"attn_proj": 8, "ffn_in": 2}  # ffn_out excluded
    assert _ops(out)["MatMulInteger"] == 10


def test_sites_are_classified_from_shapes(fp32_bundles: dict[str, Path]) -> None:
    sites = find_sites(onnx.load(str(fp32_bundles["bert"] / MODEL_NAME)))
    kinds = Counter((s.kind, s.layer) for s in sites)
    for layer in (0, 1):
        assert kinds[("attn_proj", layer)] == 4  # q, k, v, output
        assert kinds[("ffn_in", layer)] == 1 and kinds[("ffn_out", layer)] == 1


@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "fused"])
def test_fp16_structure_and_numerics_on_cpu(
    optimize: bool, tiny_factory: Callable[..., Path], fp32_bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", precision="fp16", optimize=optimize)
    model = onnx.load(str(bundle / MODEL_NAME))
    report = check_fp16_graph(model)
    assert report["fp16_initializers"] > 0
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert types["input_ids"] == TensorProto.INT64 and types["sentence_embedding"] == TensorProto.FLOAT
    init16 = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type in (
            "LayerNormalization",
            "SkipLayerNormalization",
            "Softmax",
            "ReduceSum",
            "ReduceL2",
        ):
            assert not set(node.input) & init16, f"{node.op_type} {node.name} takes fp16 weights"
    if not optimize:  # plain ONNX ops: shape inference gives every tensor's type
        inferred = onnx.shape_inference.infer_shapes(model)
        elem = {
            v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]
        }
        elem.update({t.name: t.data_type for t in model.graph.initializer})
        produced_by = {o: n for n in model.graph.node for o in n.output}
        for node in model.graph.node:
            if node.op_type == "LayerNormalization":
                residual = produced_by[node.input[0]]
                assert residual.op_type == "Add"
                assert all(elem.get(i) == TensorProto.FLOAT for i in residual.input), residual.name
    got = Embedder(bundle).encode([*TEXTS, "long " * 2000])
    assert np.isfinite(got).all()
    assert _cos(got[: len(TEXTS)], Embedder(fp32_bundles["bert"]).encode(TEXTS)).mean() > 0.9999


@pytest.mark.gpu
def test_fp16_on_cuda(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA provider in this onnxruntime build")
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", precision="fp16", optimize=True)
    got = Embedder(bundle, device="cuda").encode([*TEXTS, "long " * 2000])
    assert np.isfinite(got).all()


def test_describe_variant_rows(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    from embedrt._describe import describe_variant

    bundle = export_model(tiny_factory("bert"), tmp_path / "b", precision="int8", optimize=True)
    rows = dict(describe_variant(load_manifest(bundle), bundle))
    assert rows["precision"] == "int8" and rows["optimize (fusion)"] == "yes"
    # int8 of the flash-attention graph: Q, K, V projections in the smoothed u8s8 kernels
    assert "MultiHeadAttention 2" in rows["fused ops"] and rows["quantization"].startswith("smooth (QuantizeLinear static per tensor")
    # per row: each layer's attention context and FFN activation; per tensor on static scales: what
    # the fused layer norms make (EmbedLayerNormalization's output into layer 0 included)
    assert re.fullmatch(r"uint8, dynamic per token row \(zero points? [0-9x, ]+\), 4 tensors; "
                        r"static per tensor \(scales fixed at export\), 4 tensors",
                        rows["activations"]), rows["activations"]  # fmt: skip
    assert rows["size"].endswith("files)")


def test_build_report_and_openvino_refusal_without_openvino(
    tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedrt import ProviderError, _session, onnxruntime_build

    build = onnxruntime_build()
    assert build["devices"] and build["version"]
    # as where the openvino package is missing: not found, and `import openvino` fails
    monkeypatch.setattr(_session, "openvino_version", lambda: None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert "openvino" not in onnxruntime_build()["devices"]
    with pytest.raises(ProviderError, match=r"pip install \"embedrt\[openvino\]\""):
        Embedder(tiny_bert_bundle, device="openvino")
    with pytest.raises(ValueError, match="OpenVINO option"):
        Embedder(tiny_bert_bundle, device="cpu", precision_hint="bf16")
