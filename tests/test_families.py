"""Today's embedding families, each built as its real checkpoints are set up (pooling, Dense,
Normalize, prompts, padding side) and exported once: the bundle agrees with sentence-transformers'
own encode, token ids included, on the validation grid (Korean, emoji, empty and over-long texts)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_families import FAMILIES, make_family, make_remote_code

from embedrt import Embedder, UnsupportedModelError
from embedrt._describe import describe_variant
from embedrt.export import export_model
from embedrt.export._archs import SPECS, Variant, spec_for
from embedrt.export._texts import validation_texts

TEXTS = validation_texts()
DECODERS = ("qwen3", "qwen2", "mistral", "llama")


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path, list[str]]]:
    """``family(name)`` -> (source folder, bundle, export log), built and exported once per module."""
    cache: dict[str, tuple[Path, Path, list[str]]] = {}

    def get(name: str) -> tuple[Path, Path, list[str]]:
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            source = make_family(name, root / "src")
            lines: list[str] = []
            cache[name] = (source, export_model(source, root / "bundle", log=lines.append), lines)
        return cache[name]

    return get


def assert_matches(expected: np.ndarray, got: np.ndarray, texts: list[str]) -> None:
    assert got.shape == expected.shape and got.dtype == np.float32
    en, gn = np.linalg.norm(expected, axis=1), np.linalg.norm(got, axis=1)
    zero = en <= 1e-6  # a text whose PyTorch vector is all zeros is compared by norm
    cos = (expected * got).sum(1) / np.maximum(en * gn, 1e-30)
    cos = np.where(zero, gn <= 1e-5, cos)
    assert cos.min() >= 0.99999, f"worst text: {texts[int(cos.argmin())]!r} (cosine {cos.min():.7f})"
    np.testing.assert_allclose(gn, en, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_matches_sentence_transformers(name: str, family: Callable[..., tuple[Path, Path, list[str]]]) -> None:
    from sentence_transformers import SentenceTransformer

    source, bundle, _ = family(name)
    st = SentenceTransformer(str(source), device="cpu")
    model = Embedder(bundle)
    assert model.manifest.padding_side.value == st.tokenizer.padding_side == FAMILIES[name].padding_side
    assert_matches(st.encode(TEXTS, batch_size=7), model.encode(TEXTS, batch_size=5), TEXTS)
    st_ids = st.tokenizer(TEXTS, truncation=True, max_length=st.max_seq_length)["input_ids"]
    assert model.tokenize(TEXTS).ids == st_ids
    for prompt_name in FAMILIES[name].prompts:
        texts = TEXTS[:12]
        assert_matches(st.encode(texts, prompt_name=prompt_name, batch_size=4),
                       model.encode(texts, prompt_name=prompt_name, batch_size=3), texts)  # fmt: skip
    assert model.manifest.source["architecture"] == name


def test_every_registered_architecture_is_tested() -> None:
    from tiny_models import ARCHS

    tested = set(FAMILIES) | set(ARCHS)
    untested = {t for t in SPECS if t not in tested} - {"mt5", "umt5"}  # t5's loader, other vocabularies
    assert not untested, f"architectures registered without a tiny model: {sorted(untested)}"


def test_t5_loads_the_encoder_alone(family: Callable[..., tuple[Path, Path, list[str]]]) -> None:
    _, bundle, _ = family("t5")
    assert Embedder(bundle).manifest.source["model_class"] == "T5EncoderModel"


def test_bidirectional_gemma3_takes_the_path_that_works(family: Callable[..., tuple[Path, Path, list[str]]]) -> None:
    _, bundle, log = family("gemma3_text")
    m = Embedder(bundle).manifest
    assert m.source["exporter"] == "dynamo" and m.opset == 18
    assert any("exports with dynamo first" in line for line in log)
    assert any("wrote opset 18 with the dynamo exporter" in line for line in log)


def test_zero_vectors_are_compared_by_norm(family: Callable[..., tuple[Path, Path, list[str]]]) -> None:
    # The tiny Qwen3's padding token has an all-zero embedding row: "" (that token alone) embeds to 0.
    _, bundle, _ = family("qwen3")
    parity = Embedder(bundle).manifest.parity
    assert parity["zero_reference_rows"] >= 1 and parity["passed"]
    assert np.linalg.norm(Embedder(bundle).encode("")) <= 1e-5


@pytest.mark.parametrize("name", [*DECODERS, "gemma3_text", "modernbert"])
def test_attention_projections_are_told_by_the_attention_they_feed(
    name: str, family: Callable[..., tuple[Path, Path, list[str]]]
) -> None:
    """Grouped-query attention's K/V projections are narrower than the hidden state, a packed Q/K/V
    is wider: the quantizer tells attention's products by the attention they feed or read, not by
    shape, so that its per-kind choices (outlier channels, exclusions) and layer numbers hold."""
    import onnx

    from embedrt._bundle import MODEL_NAME
    from embedrt.export._quantize import find_sites

    _, bundle, _ = family(name)
    sites = [s for s in find_sites(onnx.load(str(bundle / MODEL_NAME))) if s.kind != "head"]
    # ModernBERT: Q/K/V packed, and its GeGLU input projection cut in two (``_products``)
    per_layer = {"attn_proj": 2 if name == "modernbert" else 4, "ffn_in": 2, "ffn_out": 1}
    assert Counter((s.kind, s.layer) for s in sites) == {
        (kind, layer): n for layer in (0, 1) for kind, n in per_layer.items()
    }


@pytest.mark.parametrize("name", ["qwen3", "gemma3_text"])
def test_fusion_is_refused_where_the_optimizer_has_no_patterns(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=rf"--optimize is refused for architecture '{name}'"):
        spec_for(name).check_variant(Variant.FUSED)


def test_unknown_architecture_refuses_fusion_before_loading(tmp_path: Path) -> None:
    src = tmp_path / "odd"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    with pytest.raises(UnsupportedModelError, match="'no-such-arch'.*onnxruntime's transformer optimizer"):
        export_model(src, tmp_path / "b", optimize=True)


# -- code that ships in the model folder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_remote_code(tmp_path_factory.mktemp("remote"))


def test_remote_code_needs_the_flag(remote_source: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"tiny_remote_bert.*own modeling code.*--trust-remote-code"):
        export_model(remote_source, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_remote_code_with_the_flag_matches(remote_source: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    bundle = export_model(remote_source, tmp_path / "b", trust_remote_code=True)
    st = SentenceTransformer(str(remote_source), device="cpu", trust_remote_code=True)
    assert_matches(st.encode(TEXTS), Embedder(bundle).encode(TEXTS), TEXTS)
    m = Embedder(bundle).manifest
    assert m.source["trust_remote_code"] is True and m.source["model_class"] == "TinyRemoteModel"
    # the bundle holds no Python code: the runtime never executes the folder's files
    assert not any(f.suffix == ".py" for f in bundle.iterdir())


def test_modernbert_runs_local_layers_in_blocks_and_global_ones_on_the_flash_kernel(
    family: Callable[..., tuple[Path, Path, list[str]]],
) -> None:
    """The family test above compares this graph with sentence-transformers: texts longer than where
    the blocks start are among its texts."""
    _, bundle, log = family("modernbert")
    record = json.loads((bundle / "manifest.json").read_text())["optimizations"]
    assert record["local_attention"] == {"local_blocks": 1, "window": 4, "block": 4, "blocks_from_tokens": 17}
    assert record["attention"] == {"global_flash": 1} and record["optimize"] is True
    assert record["split_products"] == {"split_products": 2}  # each layer's GeGLU product, in two
    assert "local attention: 1 layer in blocks of 4 tokens from 17 tokens on (each token sees 4 either side)" in log
    assert max(len(ids) for ids in Embedder(bundle).tokenize(TEXTS).ids) > 17
    rows = dict(describe_variant(Embedder(bundle).manifest))
    assert rows["split products"] == "2 products computed slice by slice"
    assert rows["flash attention"] == "1 global layer"
    assert rows["local attention"] == "1 layer in blocks of 4 tokens from 17 tokens on (each token sees 4 either side)"


ROTARY = ("modernbert", "qwen3", "qwen2", "mistral", "llama", "gemma3_text")


@pytest.mark.parametrize("name", ROTARY)
def test_rotary_embeddings_run_on_onnxruntimes_kernel(name: str, family: Callable[..., tuple[Path, Path, list[str]]]) -> None:
    """Every query and key rotation of the default (CPU) graph is one ``RotaryEmbedding``; the family
    test above compares that graph with sentence-transformers, texts at the longest length included."""
    import onnx

    source, bundle, _ = family(name)
    m = Embedder(bundle).manifest
    config = json.loads((source / "config.json").read_text())
    layers = config["num_hidden_layers"]
    want = max(config["max_position_embeddings"], m.max_seq_length)
    assert m.optimizations["rotary"] == {"rotary": 2 * layers, "positions": want}
    graph = onnx.load(str(bundle / "model.onnx")).graph
    assert sum(n.op_type == "RotaryEmbedding" for n in graph.node) == 2 * layers
    assert not any(n.op_type == "Neg" for n in graph.node)  # nothing of the rotations is left behind
    assert m.optimizations["fused_ops"]["RotaryEmbedding"] == 2 * layers and m.optimizations["optimize"] is True
    rows = dict(describe_variant(m))
    assert rows["rotary embeddings"] == f"{2 * layers} on onnxruntime's RotaryEmbedding (tables for {want} positions)"
