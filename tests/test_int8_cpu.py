"""int8 that is right on every CPU: the weight layout no u8s8 kernel saturates, the CPU check at load
time (simulated flag sets), and both checked against this machine's real onnxruntime kernels."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import embedrt._base as base_module
from embedrt import Embedder, Precision
from embedrt._bundle import MODEL_NAME, load_manifest, write_manifest
from embedrt._int8_cpu import PRECISION_OPTION, CpuInt8, Int8Arithmetic, detect_cpu, plan_int8
from embedrt.export._int8_weights import (
    PAIR_LIMIT,
    WeightRange,
    feedback_factor,
    max_pair_sum,
    quantize_columns,
    round_with_feedback,
)

AVX2 = {"sse4_2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


@pytest.mark.parametrize(
    ("machine", "flags", "expected"),
    [
        ("x86_64", AVX2, Int8Arithmetic.SATURATING),  # EPYC Zen 2/3, Haswell..Coffee Lake
        ("x86_64", AVX512, Int8Arithmetic.SATURATING),  # Skylake-SP: AVX-512 without VNNI
        ("x86_64", AVX512 | {"avx512_vnni"}, Int8Arithmetic.EXACT),  # Cascade Lake, Zen 4
        ("x86_64", AVX2 | {"avx512_vnni"}, Int8Arithmetic.SATURATING),  # no AVX512BW: kernel not taken
        ("x86_64", AVX2 | {"avx_vnni"}, Int8Arithmetic.EXACT),  # Alder Lake
        ("x86_64", AVX512 | {"avx512_vnni", "amx_int8"}, Int8Arithmetic.EXACT),  # Sapphire Rapids
        ("x86_64", {"sse4_2", "avx"}, Int8Arithmetic.EXACT),  # Sandy Bridge: SSE kernels widen first
        ("AMD64", AVX2, Int8Arithmetic.SATURATING),  # Windows' spelling
        ("x86_64", None, Int8Arithmetic.UNKNOWN),
        ("aarch64", None, Int8Arithmetic.EXACT),
        ("arm64", set(), Int8Arithmetic.EXACT),
    ],
    ids=[
        "avx2",
        "avx512-no-vnni",
        "avx512-vnni",
        "vnni-flag-no-bw",
        "avx-vnni",
        "amx",
        "avx-no-avx2",
        "windows",
        "unknown",
        "aarch64",
        "arm64",
    ],
)
def test_cpu_arithmetic_from_flags(machine: str, flags: set[str] | None, expected: Int8Arithmetic,
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import embedrt._int8_cpu as cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: (None, "no flags in this test"))
    got = detect_cpu(flags, machine)
    assert got.arithmetic is expected and got.evidence


@pytest.mark.parametrize(
    ("measured", "expected"),
    [(True, Int8Arithmetic.EXACT), (False, Int8Arithmetic.SATURATING), (None, Int8Arithmetic.EXACT)],
    ids=["measured-exact", "measured-saturating", "probe-failed"],
)
def test_this_machine_is_measured_and_the_flags_explain_it(
    measured: bool | None, expected: Int8Arithmetic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measurement decides; flags that disagree are named; without one the flags stand in."""
    import embedrt._int8_cpu as cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: (AVX512 | {"avx512_vnni"}, "/proc/cpuinfo"))
    monkeypatch.setattr(cpu, "measure_u8s8", lambda: measured)
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    got = detect_cpu()
    assert got.arithmetic is expected
    assert ("measured here" in got.evidence) is (measured is not None)
    assert ("the flags say otherwise" in got.evidence) is (measured is False)
    assert "avx512_vnni" in got.evidence


def test_the_probe_is_a_valid_graph_whose_exact_sum_no_saturating_kernel_reaches() -> None:
    from embedrt._int8_cpu import _PROBE_K, _probe_model, measure_u8s8

    model = onnx.load_from_string(_probe_model())
    onnx.checker.check_model(model, full_check=True)
    (node,) = model.graph.node
    w = numpy_helper.to_array(model.graph.initializer[0])
    assert node.op_type == "MatMulInteger" and w.shape == (_PROBE_K, 16) and (w == 127).all()
    assert max_pair_sum(w) > PAIR_LIMIT
    a = np.full((3, _PROBE_K), 255, dtype=np.uint8)
    exact = a.astype(np.int64) @ w.astype(np.int64)
    saturated = np.full_like(exact, 32767 * (_PROBE_K // 2))  # what int16 pair sums give
    assert (saturated != exact).all()
    assert (_matmul_integer(w, a, {PRECISION_OPTION: "1"}) == exact).all()  # the exact path: always
    assert measure_u8s8() is bool((_matmul_integer(w, a, {}) == exact).all())


def test_the_measurement_agrees_with_the_flags_on_this_cpu() -> None:
    """On real hardware the flags predict onnxruntime's kernel; a change in its dispatch shows here."""
    from embedrt._int8_cpu import cpu_flags, measure_u8s8

    flags, source = cpu_flags()
    if flags is None or source != "/proc/cpuinfo":
        pytest.skip(f"no /proc/cpuinfo flags to compare ({source})")
    by_flags = detect_cpu(flags, None, source)
    assert measure_u8s8() is (by_flags.arithmetic is Int8Arithmetic.EXACT), by_flags.evidence


SAT = CpuInt8(Int8Arithmetic.SATURATING, "x86_64 with avx2")
UNKNOWN = CpuInt8(Int8Arithmetic.UNKNOWN, "x86_64, flags unreadable")
EXACT = CpuInt8(Int8Arithmetic.EXACT, "x86_64 with avx512_vnni")


@pytest.mark.parametrize(
    ("quantization", "cpu", "precise"),
    [
        ({"method": "smooth", "u8s8_max_pair_sum": PAIR_LIMIT}, SAT, False),  # exact everywhere
        ({"method": "smooth", "u8s8_max_pair_sum": 254}, SAT, True),  # would saturate: exact path
        ({"method": "smooth", "u8s8_max_pair_sum": 254}, UNKNOWN, True),  # cannot tell: exact path
        ({"method": "smooth", "u8s8_max_pair_sum": 254}, EXACT, False),  # VNNI: fast and exact
        ({"method": "smooth"}, SAT, True),  # made before the pair sum was recorded
        ({"method": "nbits"}, SAT, False),  # no u8s8 GEMM
    ],
    ids=["pairs", "full-avx2", "full-unknown", "full-vnni", "unrecorded", "nbits"],
)
def test_plan_per_bundle_and_cpu(quantization: dict[str, object], cpu: CpuInt8, precise: bool) -> None:
    plan = plan_int8(quantization, cpu)
    assert plan.precise is precise
    assert plan.session_config() == ({PRECISION_OPTION: "1"} if precise else {})
    if precise:
        assert "slower" in plan.text and cpu.evidence in plan.text


def test_pair_layout_keeps_pairs_within_the_limit_and_most_of_the_precision() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((385, 96)).astype(np.float32)  # odd K: the last row pairs with a zero
    w[7] *= 20  # an outlier row, as SmoothQuant makes them
    errors = {}
    for layout in ("full", "7bit", "pairs"):
        q, scale = quantize_columns(w, layout)
        assert q.dtype == np.int8 and scale.shape == (96,) and np.abs(q).max() <= 127
        errors[layout] = float(np.square(w - q * scale).sum())
    assert max_pair_sum(quantize_columns(w, "pairs")[0]) <= PAIR_LIMIT
    assert max_pair_sum(quantize_columns(w, "7bit")[0]) <= PAIR_LIMIT
    assert max_pair_sum(quantize_columns(w, "full")[0]) > PAIR_LIMIT
    assert errors["full"] <= errors["pairs"] < errors["7bit"]


@pytest.mark.parametrize("layout", ["full", "7bit", "pairs"])
def test_rounding_with_feedback_keeps_the_products_closer_within_the_layout(layout: str) -> None:
    rng = np.random.default_rng(1)
    k, n = 129, 64  # odd K: the last row pairs with a zero
    # correlated input channels of unequal size, as a transformer's activations are
    mix = np.eye(k) + 0.4 * rng.standard_normal((k, k)) / np.sqrt(k)
    x = ((rng.standard_normal((4000, k)) * np.exp(rng.standard_normal(k))) @ mix).astype(np.float32)
    w = (0.05 * rng.standard_normal((k, n))).astype(np.float32)
    w[3] *= 15  # an outlier row: its pairs hit the limit
    fit, test = x[:3000], x[3000:]  # the error is measured on rows the rounding never saw
    q, scale = quantize_columns(w, layout, row_weight=np.mean(np.square(fit), axis=0))
    fed = round_with_feedback(w, scale, feedback_factor(fit.T.astype(np.float64) @ fit), layout, start=q)
    assert fed.dtype == np.int8 and fed.shape == (k, n)
    top = 64 if layout == "7bit" else 127
    assert np.abs(fed.astype(np.int32)).max() <= top
    if layout != "full":
        assert max_pair_sum(fed) <= PAIR_LIMIT
    ref = test @ w

    def error(levels: np.ndarray) -> float:
        return float(np.linalg.norm(ref - test @ (levels * scale)) / np.linalg.norm(ref))

    assert error(fed) < 0.8 * error(q)


def test_rounding_in_pair_order_keeps_the_limit_and_the_products_closer() -> None:
    """Rows rounded by pairs, the heaviest inputs first (act-order): the pair limit still holds and
    the levels come back in the weight's own row order (a wrong un-permutation would wreck the
    error). On correlated input channels of unequal size, as a transformer's are, the products come
    closer than in index order (15-22% on four seeds; the exporter still keeps it only where its
    simulation says so: on independent channels it can lose a little)."""
    from embedrt.export._smooth import _round_in_pair_order

    rng = np.random.default_rng(2)
    k, n = 128, 64
    mix = np.eye(k) + 0.4 * rng.standard_normal((k, k)) / np.sqrt(k)
    x = ((rng.standard_normal((5000, k)) * np.exp(rng.standard_normal(k))) @ mix).astype(np.float32)
    w = (0.05 * rng.standard_normal((k, n))).astype(np.float32)
    fit, test = x[:4000], x[4000:]
    gram = fit.T.astype(np.float64) @ fit
    q, scale = quantize_columns(w, "pairs", row_weight=np.mean(np.square(fit), axis=0))
    in_order = round_with_feedback(w, scale, feedback_factor(gram), "pairs", start=q)
    by_weight = _round_in_pair_order(w, scale, gram, WeightRange.PAIRS, q)
    assert by_weight.dtype == np.int8 and max_pair_sum(by_weight) <= PAIR_LIMIT
    ref = test @ w

    def error(levels: np.ndarray) -> float:
        return float(np.linalg.norm(ref - test @ (levels * scale)) / np.linalg.norm(ref))

    assert error(by_weight) < 0.9 * error(in_order) < 0.9 * error(q)


def _matmul_integer(w: np.ndarray, a: np.ndarray, config: dict[str, str]) -> np.ndarray:
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "W"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, w.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, w.shape[1]])],
        [numpy_helper.from_array(w, "W")],
    )  # fmt: skip
    so = ort.SessionOptions()
    for k, v in config.items():
        so.add_session_config_entry(k, v)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return session.run(None, {"A": a})[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("rows", [1, 24], ids=["gemv", "gemm"])
def test_this_cpus_kernels_agree_with_the_check(rows: int) -> None:
    """On the CPU running the tests: pair-limited weights are exact; full-range weights are wrong
    exactly where ``detect_cpu`` says the kernel saturates, and the exact path fixes them."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((384, 64)).astype(np.float32)
    a = rng.integers(192, 256, size=(rows, 384), dtype=np.uint8)  # large activations: worst case
    for layout in ("pairs", "full"):
        q, _ = quantize_columns(w, layout)
        exact = a.astype(np.int64) @ q.astype(np.int64)
        wrong = int((_matmul_integer(q, a, {}) != exact).sum())
        if layout == "pairs" or detect_cpu().arithmetic is Int8Arithmetic.EXACT:
            assert wrong == 0, f"{layout} weights computed wrong on {detect_cpu().evidence}"
        elif detect_cpu().arithmetic is Int8Arithmetic.SATURATING:
            assert wrong > 0, (
                f"full-range weights were exact on {detect_cpu().evidence}: the check is too strict"
            )
        fixed = _matmul_integer(q, a, {PRECISION_OPTION: "1"})
        assert (fixed == exact).all()


def _precise(model: Embedder) -> bool:
    try:
        return model.session.get_session_options().get_session_config_entry(PRECISION_OPTION) == "1"
    except RuntimeError:  # onnxruntime raises for an entry never set
        return False


@pytest.fixture(scope="module")
def int8_bundle(tiny_factory, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The tiny BERT's default int8 graph (smooth recipe, flash attention) in a bundle, without the export's gate."""
    from transformers import AutoTokenizer

    from embedrt.export import export_model
    from embedrt.export._export import calibration_texts
    from embedrt.export._smooth import calibration_feeds
    from embedrt.export._variants import apply_variant

    root = tmp_path_factory.mktemp("int8")
    plain = export_model(tiny_factory("bert"), root / "plain", optimize=False)
    out = root / "bundle"
    shutil.copytree(plain, out)
    tok = AutoTokenizer.from_pretrained(str(tiny_factory("bert")))
    feeds = calibration_feeds(tok, calibration_texts(32), ["input_ids", "attention_mask", "token_type_ids"], 64)
    cfg = {"config": {"model_type": "bert", "num_attention_heads": 2, "hidden_size": 32}, "fusion": "bert"}
    record = apply_variant(plain / MODEL_NAME, out / MODEL_NAME, "int8", None, cfg, calibration=feeds)
    assert record["attention"]["flash_attention"] == 2
    manifest = load_manifest(out, verify=False)
    manifest.precision, manifest.optimizations = Precision.INT8, record
    write_manifest(out, manifest)
    return out


def test_default_int8_bundle_runs_the_fast_kernel_everywhere(int8_bundle: Path) -> None:
    q = load_manifest(int8_bundle).optimizations["quantization"]
    assert q["weight_range"] == "pairs" and q["u8s8_max_pair_sum"] <= PAIR_LIMIT
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(int8_bundle / MODEL_NAME)).graph.initializer]
    assert (
        max(max_pair_sum(w) for w in weights if w.dtype == np.int8 and w.ndim == 2) == q["u8s8_max_pair_sum"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = Embedder(int8_bundle)
    assert model.int8_plan is not None and not model.int8_plan.precise
    assert _precise(model) is False


def test_int8_vectors_do_not_depend_on_the_cpus_kernel(int8_bundle: Path) -> None:
    """The default int8 bundle through this CPU's u8s8 kernel (AVX2, AVX-512 VNNI or AMX alike)
    gives the vectors of onnxruntime's exact u8u8 path: no pair of products saturates anywhere."""
    from embedrt._base import INT8_UNFUSED
    from embedrt._session import create_session
    from embedrt.export._texts import validation_texts

    texts = validation_texts()  # Korean, emoji, empty and over-long texts included
    fast = Embedder(int8_bundle)
    exact = Embedder(int8_bundle)
    exact.session = create_session(int8_bundle / MODEL_NAME, "cpu", exact.threads, session_config={PRECISION_OPTION: "1"},
                                   disabled_optimizers=INT8_UNFUSED)  # fmt: skip
    assert not _precise(fast) and _precise(exact)
    np.testing.assert_allclose(fast.encode(texts), exact.encode(texts), atol=2e-6)


def _without_pair_record(bundle: Path, old: Path) -> Path:
    """A copy of ``bundle`` as older embedrt wrote it: no weight pair sum recorded, no manifest hash."""
    shutil.copytree(bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["optimizations"]["quantization"]["u8s8_max_pair_sum"]
    manifest.pop("manifest_sha256", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


@pytest.mark.parametrize("cpu", [SAT, EXACT], ids=["avx2", "vnni"])
def test_bundle_without_recorded_pairs_takes_the_exact_path_where_needed(
    cpu: CpuInt8, int8_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _without_pair_record(int8_bundle, tmp_path / "old")
    monkeypatch.setattr(base_module, "detect_cpu", lambda: cpu)
    texts = ["a short one", "대한민국은 민주공화국이다."]
    if cpu is SAT:
        with pytest.warns(RuntimeWarning, match="saturate.*x64quantprecision"):
            model = Embedder(old)
        assert model.int8_plan is not None and model.int8_plan.precise
        assert _precise(model) is True
    else:
        model = Embedder(old)
        assert model.int8_plan is not None and not model.int8_plan.precise
    got, ref = model.encode(texts), Embedder(int8_bundle).encode(texts)
    np.testing.assert_allclose(got, ref, atol=1e-5)  # pair-limited weights: every path is exact


def test_server_info_says_how_int8_runs_here(int8_bundle: Path) -> None:
    from embedrt.server import ServerConfig
    from embedrt.server._app import ServerState

    info = ServerState(Embedder(int8_bundle), ServerConfig()).info()
    assert info["precision"] == "int8"
    assert "exact on every CPU" in info["int8_on_this_cpu"] and "measured here" in info["int8_on_this_cpu"]


def test_info_says_how_int8_runs_here(int8_bundle: Path) -> None:
    from embedrt._describe import describe_variant

    rows = dict(describe_variant(load_manifest(int8_bundle), int8_bundle))
    assert "exact on every CPU" in rows["int8 on this CPU"]
    assert "within 128" in rows["quantization"]
    assert "smoothed" in rows["smoothing"] and "error feedback" in rows["smoothing"]


_EMULATED = r"""
import json, sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[3])
from test_int8_cpu import _matmul_integer as matmul_integer
from embedrt import Embedder
from embedrt._int8_cpu import PRECISION_OPTION, detect_cpu, measure_u8s8
from embedrt.export._int8_weights import quantize_columns

rng = np.random.default_rng(1)
w = rng.standard_normal((384, 64)).astype(np.float32)
a = rng.integers(192, 256, size=(24, 384), dtype=np.uint8)
wrong = {}
for layout in ("pairs", "full"):
    q, _ = quantize_columns(w, layout)
    exact = a.astype(np.int64) @ q.astype(np.int64)
    wrong[layout] = int((matmul_integer(q, a, {}) != exact).sum())
    wrong[layout + "+exact-path"] = int((matmul_integer(q, a, {PRECISION_OPTION: "1"}) != exact).sum())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old = Embedder(sys.argv[2])
texts = ["a short one", "대한민국은 민주공화국이다."]
json.dump({"measured": measure_u8s8(), "arithmetic": detect_cpu().arithmetic.value, "wrong": wrong,
           "precise": bool(old.int8_plan.precise), "warned": [str(w.message) for w in caught],
           "old": old.encode(texts).tolist(), "default": Embedder(sys.argv[1]).encode(texts).tolist()},
          sys.stdout)
"""


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs QEMU's user-mode emulator (qemu-user)")
@pytest.mark.parametrize(("model", "exact"), [("Haswell-v4", False), ("SandyBridge", True)],
                         ids=["avx2", "avx-no-avx2"])  # fmt: skip
def test_emulated_cpus_get_the_arithmetic_the_check_measures(
    model: str, exact: bool, int8_bundle: Path, tmp_path: Path
) -> None:
    """This process under QEMU as a CPU without VNNI: the probe sees what the kernels do even though
    /proc/cpuinfo is the host's; a bundle of unrecorded weight range then takes the exact path where
    the kernel saturates, and every bundle gives the host's vectors."""
    import platform
    import subprocess
    import sys

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("emulates x86 CPUs on an x86 host")
    old = _without_pair_record(int8_bundle, tmp_path / "old")
    done = subprocess.run(
        ["qemu-x86_64", "-cpu", model, sys.executable, "-c", _EMULATED, str(int8_bundle), str(old),
         str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["measured"] is exact
    assert got["arithmetic"] == ("exact" if exact else "saturating")
    assert got["wrong"]["pairs"] == 0 and got["wrong"]["pairs+exact-path"] == 0
    assert got["wrong"]["full+exact-path"] == 0
    assert (got["wrong"]["full"] == 0) is exact
    assert got["precise"] is not exact
    assert any("x64quantprecision" in w for w in got["warned"]) is not exact
    host = Embedder(int8_bundle).encode(["a short one", "대한민국은 민주공화국이다."])
    np.testing.assert_allclose(np.array(got["default"]), host, atol=1e-5)
    np.testing.assert_allclose(np.array(got["old"]), host, atol=1e-5)
