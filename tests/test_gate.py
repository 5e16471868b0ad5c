"""The quality gate: metrics, thresholds, failures that name the numbers, the default text set, and
the gates on the real all-MiniLM-L6-v2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from embedrt import ParityError
from embedrt.export._gate import (
    DEFAULT_THRESHOLDS,
    GateError,
    gate_metrics,
    gate_texts,
    run_gate,
    thresholds_for,
)


def _emb(n: int = 1000, d: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_identical_embeddings_pass_every_gate() -> None:
    ref = _emb()
    for key in DEFAULT_THRESHOLDS:
        report = run_gate(
            ref, ref.copy(), "fp32" if key == "bf16" else key, hint="bf16" if key == "bf16" else None
        )
        assert report["passed"] and report["mean_cos"] > 0.99999 and report["topk"] == 1.0
        assert report["n_queries"] == len(ref) and report["thresholds_default"]


def test_topk_asks_every_text_not_a_sample() -> None:
    from embedrt.export._gate import QUERIES, query_indices, topk_agreement

    ref = _emb(1000)
    cand = ref + 0.05 * np.random.default_rng(1).standard_normal(ref.shape)
    every = topk_agreement(ref, cand, np.arange(len(ref)))
    sample = topk_agreement(ref, cand, np.linspace(0, 999, 100).round().astype(int))
    report = gate_metrics(ref, cand)
    assert report["n_queries"] == 1000 and report["topk"] == pytest.approx(every.mean())
    assert every.mean() != pytest.approx(sample.mean(), abs=1e-6)  # the sample measured something else
    assert len(query_indices(5000)) == QUERIES == 2000  # past 2000 texts, 2000 evenly spread queries


def test_noisy_int8_fails_with_its_numbers() -> None:
    ref = _emb()
    noisy = ref + 0.3 * _emb(seed=1)
    with pytest.raises(GateError) as e:
        run_gate(ref, noisy, "int8")
    msg = str(e.value)
    assert "mean_cos" in msg and "top-10" in msg and "1000 texts" in msg
    assert isinstance(e.value, ParityError) and e.value.report["passed"] is False


def test_user_can_lower_a_gate_explicitly() -> None:
    ref = _emb()
    noisy = ref + 0.3 * _emb(seed=1)
    m = gate_metrics(ref, noisy)
    report = run_gate(ref, noisy, "int8", thresholds={"mean_cos": 0.9, "topk": 0.0})
    assert report["passed"] and not report["thresholds_default"] and report["mean_cos"] == m["mean_cos"]
    with pytest.raises(ValueError, match="unknown gate threshold"):
        thresholds_for("int8", overrides={"cosine": 0.5})


def test_nonfinite_candidate_is_named() -> None:
    ref = _emb()
    bad = ref.copy()
    bad[17, 3] = np.nan
    with pytest.raises(GateError, match="row 17"):
        run_gate(ref, bad, "fp16")


def test_too_few_texts_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1000"):
        run_gate(_emb(200), _emb(200), "fp32")


def test_gate_texts_are_deterministic_and_mixed() -> None:
    a, b = gate_texts(1000), gate_texts(1000)
    assert a == b and len(set(a)) == 1000
    lengths = np.array([len(t) for t in a])
    assert lengths.min() < 40 and lengths.max() > 2000 and np.median(lengths) > 50
    assert gate_texts(1200)[:1000] == a



def test_calibration_leaves_the_gate_unseen_and_takes_other_scripts() -> None:
    import re

    from embedrt.export._export import calibration_texts
    from embedrt.export._texts import calibration_extra, validation_texts

    cal = calibration_texts()
    assert not set(cal) & set(gate_texts(1000))  # the gate measures texts the int8 recipe never saw
    extra = calibration_extra()
    assert set(extra) <= set(cal) and not set(extra) & set(validation_texts())
    hangul = re.compile("[\uac00-\ud7a3]")
    assert sum(bool(hangul.search(t)) for t in extra) >= 40
    # scripts beyond Latin and Hangul: kana, Han, Cyrillic, Devanagari, Thai
    for block in ("\u3040-\u30ff", "\u4e00-\u9fff", "\u0400-\u04ff", "\u0900-\u097f", "\u0e00-\u0e7f"):
        assert any(re.search(f"[{block}]", t) for t in extra), block

@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_gates_on_minilm(
    precision: str, minilm_path: Path, minilm_st, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from embedrt import Embedder
    from embedrt.export import export_model

    texts = gate_texts(1000)
    ref = minilm_st.encode(texts, batch_size=32)
    bundle = export_model(minilm_path, tmp_path / "b", precision=precision)  # default fusion
    got = Embedder(bundle).encode(texts, batch_size=32)
    report = run_gate(ref, got, precision)
    assert report["passed"]
    if precision == "int8":  # the smoothed u8s8 graph passes on its own: no fallback to nbits
        opt = Embedder(bundle).manifest.optimizations
        assert opt["quantization"]["method"] == "smooth" and opt["quantization"]["u8s8_max_pair_sum"] <= 128
        assert opt["attention"]["flash_attention"] == 6 and "fallback_from" not in opt
        assert report["mean_cos"] > 0.9990 and report["topk"] >= 0.96  # measured on AVX2: 0.99936 / 0.973
        # per token row where no layer norm made the input (attention context, FFN activation): 12 of 24
        # and the layer norms' outputs on scales fixed at export: 12 more
        assert re.search(r"per token row \(zero points? [0-9x, ]+\), 12 tensors; static per tensor \(scales fixed at export\), 12 tensors$",
                         opt["quantization"]["activations"]), opt["quantization"]["activations"]  # fmt: skip
        # the attention context's smoothing divided inside each layer's value projection, no Mul (a
        # group left unsmoothed, alpha None, has nothing to divide)
        groups = opt["quantization"]["smoothing"]["groups"]
        assert sum(g.get("divided_in") == "value projection" for g in groups) == 6
        assert all(("divided_in" in g) == (g["alpha"] is not None) for g in groups)
        # the GELU activations, mostly positive, take zero points below the symmetric 128 (48-80 measured)
        ffn_out = [g["row_zero_point"] for g in groups if "/output/dense/" in g["nodes"][0] and "attention" not in g["nodes"][0]]
        assert len(ffn_out) == 6 and max(ffn_out) < 128, ffn_out
        # every FFN output projection in int8, its outlier channels in fp32 beside it, and `info` says so
        q = opt["quantization"]
        split = q["outlier_channels"]["in_fp32_beside_the_int8_product"]
        assert q["excluded_nodes"] == [] and q["quantized_nodes"] == 36 and 1 <= len(split) <= 6
        from embedrt._describe import describe_variant

        rows = dict(describe_variant(Embedder(bundle).manifest, bundle))
        assert rows["outlier channels"].endswith("FFN output projections computed fp32, beside their int8 products")
