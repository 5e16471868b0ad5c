"""Every architecture, both sentence-transformers layouts, every pooling mode: the bundle agrees with
sentence-transformers' own encode on the validation grid (long, Korean, emoji, empty texts included)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_models import ARCHS, make_encoder

from embedrt import Embedder, Pooling, UnsupportedModelError
from embedrt.export import export_model
from embedrt.export._texts import validation_texts

TEXTS = validation_texts()


def _assert_matches_st(source: Path, bundle: Path, texts: list[str] = TEXTS) -> None:
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(source), device="cpu").encode(texts, batch_size=7)
    got = Embedder(bundle).encode(texts, batch_size=5)
    assert got.shape == expected.shape and got.dtype == np.float32
    cos = (expected * got).sum(1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() >= 0.99999, f"worst text: {texts[int(cos.argmin())]!r}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("layout", ["new", "old"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architecture_matches_sentence_transformers(
    arch: str, layout: str, tiny_factory: Callable[..., Path], tmp_path: Path
) -> None:
    source = tiny_factory(arch, pooling=("mean", "max", "cls"), dense=[(16, "Tanh")], layout=layout)
    bundle = export_model(source, tmp_path / "b")
    _assert_matches_st(source, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["source"]["architecture"] == arch
    assert ("token_type_ids" in manifest["inputs"]) == ARCHS[arch].type_ids
    assert manifest["max_seq_length"] == 48
    assert manifest["parity"]["passed"] and manifest["parity"]["min_cosine"] >= 0.99999


# sentence-transformers' own modes; "pooler" (the model's pooler_output) is tested against transformers
@pytest.mark.parametrize("mode", [m.value for m in Pooling if m is not Pooling.POOLER])
def test_each_pooling_mode(mode: str, tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    source = tiny_factory("roberta", pooling=(mode,), normalize=False)
    bundle = export_model(source, tmp_path / "b")
    _assert_matches_st(source, bundle)


def test_pooling_combination_order_and_dense_stack(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    modes = ("lasttoken", "weightedmean", "mean_sqrt_len_tokens", "cls")
    source = tiny_factory("bert", pooling=modes, dense=[(24, "ReLU"), (8, "Identity")], normalize=False)
    bundle = export_model(source, tmp_path / "b")
    _assert_matches_st(source, bundle)
    m = Embedder(bundle).manifest
    assert [p.value for p in m.pooling] == list(modes) and m.dimension == 8 and not m.normalize


def test_plain_encoder_folder_with_pooling_option(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling as STPooling
    from sentence_transformers.models import Transformer

    enc = make_encoder("electra", tmp_path / "enc")
    bundle = export_model(enc, tmp_path / "b", pooling="cls,mean")
    t = Transformer(str(enc))
    st = SentenceTransformer(modules=[t, STPooling(t.get_embedding_dimension(), pooling_mode=("cls", "mean"))])
    expected = st.encode(TEXTS)
    np.testing.assert_allclose(Embedder(bundle).encode(TEXTS), expected, atol=1e-5)
    assert Embedder(bundle).max_seq_length == 128  # model_max_length, capped by position embeddings


def test_prompts_from_config(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    source = tiny_factory("bert", prompts={"query": "query: ", "passage": "passage: "})
    model = Embedder(export_model(source, tmp_path / "b"))
    st = SentenceTransformer(str(source), device="cpu")
    np.testing.assert_allclose(
        model.encode(["what is onnx"], prompt_name="query"),
        st.encode(["what is onnx"], prompt_name="query"),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="'nope' is not in this bundle's prompts"):
        model.encode(["x"], prompt_name="nope")


def test_do_lower_case(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "st"
    shutil.copytree(tiny_factory("roberta"), source)  # byte-level BPE: case-sensitive
    cfg = source / "sentence_bert_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "do_lower_case": True}))
    bundle = export_model(source, tmp_path / "b")
    texts = ["Hello WORLD", "hello world", "ÉCOLE Straße"]
    _assert_matches_st(source, bundle, texts)
    got = Embedder(bundle).encode(texts)
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    src = tmp_path / "weird"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    with pytest.raises(UnsupportedModelError, match="no-such-arch"):
        export_model(src, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_unsupported_module_is_named(tiny_factory: Callable[..., Path], tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "st"
    shutil.copytree(tiny_factory("bert"), src)
    modules = json.loads((src / "modules.json").read_text())
    modules.insert(2, {"idx": 9, "name": "9", "path": "", "type": "sentence_transformers.models.LSTM"})
    (src / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedModelError, match="LSTM"):
        export_model(src, tmp_path / "b")


def test_existing_output_is_not_overwritten(tiny_bert_bundle: Path, tiny_factory: Callable[..., Path]) -> None:
    from embedrt import ExportError

    with pytest.raises(ExportError, match="not empty"):
        export_model(tiny_factory("bert"), tiny_bert_bundle)
