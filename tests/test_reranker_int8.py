"""int8 reranker bundles: the reranker gate (the order of each query's candidates against PyTorch's),
the export that keeps the first recipe passing it, and what the manifest and ``embedrt info`` say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedrt import ParityError, Reranker
from embedrt._types import InferencePrecision

st = pytest.importorskip("sentence_transformers")
pytest.importorskip("torch")


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x))


def _says_why(miss: dict[str, Any]) -> bool:
    """A missed int8 recipe's record: the gate's numbers, or the grid's parity it missed (a random
    tiny model's int8 may miss either, by the rounding of the CPU at hand)."""
    gate = "reranker gate (int8 on cpu) missed" in miss["failed"] and {"rank_corr", "top_kept", "max_err"} <= set(miss)
    return gate or miss["failed"].startswith("the exported graph disagrees with PyTorch (max abs diff")


@pytest.fixture(scope="module")
def int8_reranker(tiny_reranker: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embedrt.export import export_model

    source, _ = tiny_reranker
    return export_model(source, tmp_path_factory.mktemp("reranker-int8") / "bundle", precision="int8")


def test_int8_reranker_keeps_the_order_of_pytorchs_scores(tiny_reranker: tuple[Path, Path], int8_reranker: Path) -> None:
    from embedrt.export._gate import gate_texts

    source, fp32 = tiny_reranker
    ours = Reranker(int8_reranker)
    m = ours.manifest
    assert m.precision.value == "int8" and m.kind.value == "reranker"
    q = m.optimizations["quantization"]
    assert q["quantized_nodes"] >= 4 and q["method"] in ("smooth", "nbits")
    gate = m.parity["gate"]
    assert gate["passed"] and gate["thresholds_default"] and gate["provider"] == "cpu"
    assert gate["queries"] == 50 and gate["candidates"] == 19 and gate["labels"] == 1
    assert gate["rank_corr"] >= gate["thresholds"]["rank_corr"] == 0.98
    assert gate["top_kept"] >= gate["thresholds"]["top_kept"] == 0.9
    assert gate["max_err"] <= gate["thresholds"]["max_err"] == 0.5
    for miss in m.optimizations.get("fallback_from") or []:  # a recipe before it missed: what it missed says why
        assert _says_why(miss)
    # on texts the gate never saw: the candidates' order is CrossEncoder's, near enough
    texts = gate_texts(1200)[1000:]
    theirs = st.CrossEncoder(str(source), device="cpu")
    corrs, errors, refs = [], [], []
    for start in range(0, 160, 20):
        query, docs = texts[start], texts[start + 1 : start + 20]
        ref = theirs.predict([(query, d) for d in docs])
        got = ours.predict([(query, d) for d in docs])
        corrs.append(np.corrcoef(_ranks(ref), _ranks(got))[0, 1])
        errors.append(np.abs(got - ref).max())
        refs.append(ref)
    # the tiny model's vocabulary is trained anew each run (tokenizers' WordPiece breaks ties in hash
    # order), so its int8 error moves between runs: one query's worst pair reached one spread. A
    # broken graph (saturated sums, a lost channel) is off by several spreads and loses the order.
    spread = np.concatenate(refs).std()
    assert np.mean(corrs) > 0.95 and np.mean(errors) < 0.5 * spread and max(errors) < 1.5 * spread + 0.05, (
        corrs, errors, spread)
    fp32_scores = Reranker(fp32).predict([(texts[0], d) for d in texts[1:20]])
    assert not np.array_equal(fp32_scores, ours.predict([(texts[0], d) for d in texts[1:20]]))  # int8 computed


def test_info_shows_the_reranker_gate(int8_reranker: Path) -> None:
    from embedrt._info import describe

    rows = dict(describe(Reranker(int8_reranker).manifest, int8_reranker))
    gate = rows["quality gate"]
    assert "rank correlation 0.9" in gate and "top-5 kept" in gate and "50 queries x 19 candidates" in gate
    assert "gate rank_corr >= 0.98, top_kept >= 0.9, max_err <= 0.5" in gate and "passed" in gate


def test_validate_runs_the_reranker_gate_on_the_cpu_at_hand(
    tiny_reranker: tuple[Path, Path], int8_reranker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedrt.cli import main

    source, fp32 = tiny_reranker
    assert main(["validate", str(int8_reranker), "--against", str(source)]) == 0
    out = capsys.readouterr().out
    assert "reranker gate (int8 on cpu): rank correlation 0.9" in out and "50 queries x 19 candidates: passed" in out
    assert main(["validate", str(int8_reranker), "--against", str(source), "--gate", "rank_corr=1.01"]) == 1
    out = capsys.readouterr().out
    assert "candidates: FAILED" in out and "FAILED: reranker gate: rank_corr 0.9" in out and "< 1.01" in out
    assert main(["validate", str(fp32), "--against", str(source)]) == 0  # fp32: parity only
    assert "reranker gate" not in capsys.readouterr().out


def test_a_missed_reranker_gate_keeps_nothing(tiny_reranker: tuple[Path, Path], tmp_path: Path) -> None:
    from embedrt.export import export_model
    from embedrt.export._gate import GateError

    source, _ = tiny_reranker
    with pytest.raises(GateError, match=r"reranker gate \(int8 on cpu\) missed: rank_corr 0\.9\d+ < 1\.01 .*worst query ['\"]"):
        export_model(source, tmp_path / "b", precision="int8", int8_method="nbits", gate_thresholds={"rank_corr": 1.01})
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match=r"unknown reranker gate threshold 'topk': expected one of \('rank_corr', 'top_kept', 'max_err'\)"):
        export_model(source, tmp_path / "c", precision="int8", int8_method="nbits", gate_thresholds={"topk": 0.5})
    with pytest.raises(ValueError, match=r"the reranker gate needs 1000 texts; got 3"):
        export_model(source, tmp_path / "c", precision="int8", gate_texts=["a", "b", "c"])


def test_int8_decoder_reranker_keeps_its_norms_and_score_product_fp32(tmp_path: Path) -> None:
    """A Qwen3 sequence classifier: RMSNorm's reductions are no pooling and its score product (one
    column, on every token before the last is taken) is a head: the layers' products go int8."""
    from test_reranker import _family_cross_encoder

    from embedrt.export import export_model

    source = _family_cross_encoder("qwen3", tmp_path)
    bundle = export_model(source, tmp_path / "b", precision="int8")
    m = Reranker(bundle).manifest
    q = m.optimizations["quantization"]
    assert q["quantized_nodes"] == 14 and q["quantized_kinds"]["ffn_in"] == 4  # 2 layers x (q, k, v, o, gate, up, down)
    assert any("score" in name for name in q["excluded_nodes"])
    assert m.parity["gate"]["passed"] and m.optimizations["rotary"]["rotary"] == 4  # Q and K in each layer
    pairs = [("a query", "a document about something"), ("another query", "")]
    theirs = st.CrossEncoder(str(source), device="cpu").predict(pairs)
    assert np.abs(Reranker(bundle).predict(pairs) - theirs).max() < 0.05


def test_auto_weighs_int8_and_fp32_rerankers_and_openvinos_bf16(
    tiny_reranker: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every candidate gated and timed on pairs; OpenVINO's bf16 timed fastest: the bundle holds it
    import embedrt.export._attempts as attempts
    from embedrt.export import export_model

    source, _ = tiny_reranker
    real = attempts.measure_speed
    seen: list[Any] = []

    def timed(bundles: dict[str, Any], pairs: list[Any], **kw: Any) -> dict[str, float]:
        seen.append(pairs[0])
        ov = attempts.OPENVINO_BF16
        speeds = real({k: b for k, b in bundles.items() if k != ov}, pairs, **kw)
        return {**speeds, **({ov: 10 * max(speeds.values())} if ov in bundles else {})}

    monkeypatch.setattr("embedrt.export._export_head.measure_speed", timed)
    monkeypatch.setattr(attempts, "openvino_version", lambda: "2026.test")  # the candidate, wherever the test runs
    monkeypatch.setattr(attempts, "cpu_precision_hints", lambda: (InferencePrecision.FP32, InferencePrecision.BF16))
    gated: list[Path] = []
    monkeypatch.setattr("embedrt.export._export_head._bf16_gate", lambda job, plain: gated.append(plain) or {
        "rank_corr": 0.997, "top_kept": 0.98, "max_err": 0.03, "passed": True})  # fmt: skip
    bundle = export_model(source, tmp_path / "b", precision="auto")
    m = Reranker(bundle, device="cpu").manifest
    auto = m.optimizations["auto"]
    labels = {c["setting"] for c in auto["candidates"]}
    assert labels == {"int8 smooth, fused where it fuses", "int8 smooth, unfused", "fp32, fused where it fuses",
                      "fp32, unfused", attempts.OPENVINO_BF16}  # fmt: skip
    assert isinstance(seen[0], tuple) and len(seen[0]) == 2  # timed on (query, document) pairs
    assert "pairs per CPU-second" in auto["why"] and "256 gate pairs" in auto["measured"]
    for c in auto["candidates"]:
        if c["setting"].startswith("int8"):  # its reranker-gate numbers, or the parity it missed
            assert {"rank_corr", "top_kept", "max_err"} <= set(c) if c["passed"] else _says_why(c)
    speeds = {c["setting"]: c["texts_per_cpu_second"] for c in auto["candidates"]
              if c["passed"] and c["setting"] != attempts.OPENVINO_BF16}  # fmt: skip
    assert auto["chosen"] == attempts.pick_fastest(speeds)[0] and auto["chosen"].startswith(m.precision.value)
    assert auto["faster_here"]["setting"] == attempts.OPENVINO_BF16 and gated
    held = Reranker(bundle / "preferred", device="cpu").manifest
    assert (held.precision.value, held.optimizations.get("optimize")) == ("fp32", False)  # the plain graph
    assert m.preferred is not None and (m.preferred["device"], m.preferred["precision_hint"]) == ("openvino", "bf16")
    pairs = [("a query", "a document"), ("a query", "")]
    np.testing.assert_allclose(Reranker(bundle / "preferred", device="cpu").predict(pairs),
                               st.CrossEncoder(str(source), device="cpu").predict(pairs), atol=1e-5)  # fmt: skip


def test_sparse_bundles_stay_fp32(tiny_sparse: tuple[Path, Path], tmp_path: Path) -> None:
    from embedrt.export import export_model

    with pytest.raises(ValueError, match="a sparse bundle is exported in fp32 for now; got precision 'int8'"):
        export_model(tiny_sparse[0], tmp_path / "b", precision="int8")


def test_the_gate_reads_orders_not_values() -> None:
    from embedrt.export._gate import GateError
    from embedrt.export._gate_rerank import CANDIDATES, QUERIES, run_rerank_gate

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(QUERIES * CANDIDATES, 1))
    same = run_rerank_gate(ref, ref * 3 + 1, "int8", {"max_err": 100})  # a monotone map: the same order everywhere
    assert same["rank_corr"] == pytest.approx(1.0) and same["top_kept"] == 1.0 and same["passed"]
    assert not same["thresholds_default"] and same["max_err"] > 7
    assert run_rerank_gate(ref, ref + 0.01 * ref.std(), "int8")["max_err"] == pytest.approx(0.01)
    swapped = ref.copy().reshape(QUERIES, CANDIDATES)
    top, bottom = swapped.argmax(1), swapped.argmin(1)
    rows = np.arange(QUERIES)
    swapped[rows, top], swapped[rows, bottom] = swapped[rows, bottom], swapped[rows, top]
    with pytest.raises(GateError, match=r"rank_corr 0\.\d+ < 0\.98; top_kept 0\.8000 < 0\.9; max_err \d\.\d+ > 0\.5"):
        run_rerank_gate(ref, swapped.reshape(-1, 1), "int8")
    flat = np.zeros_like(ref)  # every candidate scored alike: no order at all
    with pytest.raises(GateError, match=r"rank_corr 0\.0000 < 0\.98") as err:
        run_rerank_gate(ref, flat, "int8")
    assert err.value.report["rank_corr"] == 0.0
    assert run_rerank_gate(flat, flat, "int8")["rank_corr"] == 1.0  # both constant: the same non-order
    two = np.concatenate([ref, ref], axis=1)
    bad = two.copy()
    bad[:, 1] = swapped.reshape(-1)  # the second label's order is lost: the gate reads the worst label
    with pytest.raises(GateError) as err:
        run_rerank_gate(two, bad, "int8")
    assert err.value.report["labels"] == 2 and err.value.report["top_kept"] == pytest.approx(0.8)
    assert isinstance(err.value, ParityError)
