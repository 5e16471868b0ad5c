"""Reranker bundles against sentence-transformers' CrossEncoder: export of each folder layout,
predict and rank on pairs that cross the max length, activations, label counts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedrt import BundleError, Embedder, Reranker, load_model

st = pytest.importorskip("sentence_transformers")
torch = pytest.importorskip("torch")

LONG = "The history of computing is longer than the history of computing hardware. " * 12
QUERIES = ["How many people live in Berlin?", "", "대한민국의 수도는 어디인가?", LONG]
DOCUMENTS = [
    "Berlin had a population of 3,520,031 registered inhabitants.", "Berlin is well known for its museums.",
    "", "서울은 대한민국의 수도이다.", LONG, "🙂🚀 emoji", "a",
]
PAIRS = [(q, d) for q in QUERIES for d in DOCUMENTS]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reranker]:
    """XLM-R with 3 labels, saved as a plain Hugging Face folder (sentence-transformers < 4 layout)."""
    from tiny_models import make_cross_encoder

    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("reranker-multi")
    source = make_cross_encoder("xlm-roberta", root, num_labels=3, layout="plain")
    return source, Reranker(export_model(source, root / "bundle"))


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reranker]:
    """ModernBERT, one label, a Tanh activation saved in the folder."""
    from tiny_models import make_cross_encoder

    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("reranker-modernbert")
    source = make_cross_encoder("modernbert", root, activation="Tanh", max_length=48)
    return source, Reranker(export_model(source, root / "bundle"))


def test_predict_and_rank_match_cross_encoder(tiny_reranker: tuple[Path, Path]) -> None:
    source, bundle = tiny_reranker
    ours, theirs = Reranker(bundle), st.CrossEncoder(str(source), device="cpu")
    assert ours.max_seq_length == theirs.max_seq_length == 40
    assert ours.num_labels == 1 and ours.activation.value == "sigmoid"
    tok = ours.tokenize_pairs(PAIRS)
    assert tok.truncated.sum() >= 8  # the grid crosses the max length on either side
    features = theirs.preprocess([list(p) for p in PAIRS])  # what CrossEncoder feeds its model
    for ids, row, mask in zip(tok.ids, features["input_ids"].tolist(), features["attention_mask"].tolist(), strict=True):
        assert ids == row[: sum(mask)]
    np.testing.assert_allclose(ours.predict(PAIRS, batch_size=5), theirs.predict(PAIRS, batch_size=5), atol=1e-5)
    raw = ours.predict(PAIRS, activation_fn="identity")
    np.testing.assert_allclose(raw, theirs.predict(PAIRS, activation_fn=torch.nn.Identity()), atol=1e-5)
    assert np.ptp(raw) > 0.1  # scores that differ by more than float noise
    single = ours.predict(PAIRS[0])
    assert np.ndim(single) == 0 and single == pytest.approx(float(theirs.predict(PAIRS[0])), abs=1e-5)
    for query in QUERIES:
        want = theirs.rank(query, DOCUMENTS, top_k=4, return_documents=True)
        got = ours.rank(query, DOCUMENTS, top_k=4, return_documents=True)
        assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
        assert [r["text"] for r in got] == [r["text"] for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)
    assert ours.rank("q", []) == theirs.rank("q", []) == []


def test_several_labels_plain_folder(multi: tuple[Path, Reranker]) -> None:
    source, ours = multi
    theirs = st.CrossEncoder(str(source), device="cpu")
    assert ours.num_labels == 3 and ours.activation.value == "identity" and ours.head.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert ours.manifest.source["kind"] == "transformers" and ours.max_seq_length == theirs.max_seq_length
    got = ours.predict(PAIRS)
    assert got.shape == (len(PAIRS), 3)
    np.testing.assert_allclose(got, theirs.predict(PAIRS), atol=1e-5)
    np.testing.assert_allclose(ours.predict(PAIRS, apply_softmax=True), theirs.predict(PAIRS, apply_softmax=True), atol=1e-5)
    assert ours.predict(PAIRS[0]).shape == (3,)
    with pytest.raises(ValueError, match=r"rank needs a reranker with one label; this model has 3"):
        ours.rank("q", ["d"])


def test_modernbert_with_tanh(modern: tuple[Path, Reranker]) -> None:
    source, ours = modern
    theirs = st.CrossEncoder(str(source), device="cpu")
    assert ours.activation.value == "tanh" and ours.max_seq_length == theirs.max_seq_length == 48
    opt = ours.manifest.optimizations  # the CPU graph: global layers on the flash kernel, rotary kernel, GeGLU in two
    layers = json.loads((source / "config.json").read_text())["num_hidden_layers"]
    assert opt["optimize"] is True
    assert opt["attention"]["global_flash"] >= 1 and opt["split_products"]["split_products"] == layers
    assert opt["rotary"]["rotary"] == 2 * layers and opt["fused_ops"]["RotaryEmbedding"] == 2 * layers
    # its local layers (each token sees 8 either side) run in blocks from 33 tokens: pairs up to 48 cross that
    assert ours.manifest.optimizations["local_attention"]["blocks_from_tokens"] == 33
    assert max(len(ids) for ids in ours.tokenize_pairs(PAIRS).ids) == 48
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=1e-5)
    np.testing.assert_allclose(ours.predict(PAIRS, activation_fn=np.exp),
                               theirs.predict(PAIRS, activation_fn=torch.exp), rtol=1e-4)


def _family_cross_encoder(name: str, folder: Path) -> Path:
    """A CrossEncoder folder around ``tiny_families``' ``name`` backbone, a one-label random head."""
    from tiny_families import FAMILIES, make_encoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    backbone = make_encoder(FAMILIES[name], folder / "backbone")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, initializer_range=0.3).save_pretrained(folder / "raw")
    AutoTokenizer.from_pretrained(backbone).save_pretrained(folder / "raw")
    st.CrossEncoder(str(folder / "raw"), max_length=40, device="cpu").save(str(folder / "ce"))
    return folder / "ce"


def test_deberta_v3_without_token_types(tmp_path: Path) -> None:
    # mxbai-rerank's architecture: DeBERTa-v2 with no token types, whose graph takes no token_type_ids
    from embedrt.export import export_model

    source = _family_cross_encoder("deberta-v2", tmp_path)
    said: list[str] = []
    ours = Reranker(export_model(source, tmp_path / "bundle", log=said.append))
    assert ours.manifest.inputs == ["input_ids", "attention_mask"]
    assert any("does not use ['token_type_ids']" in line for line in said)
    np.testing.assert_allclose(ours.predict(PAIRS), st.CrossEncoder(str(source), device="cpu").predict(PAIRS), atol=1e-5)


def test_decoder_sequence_classifier_on_the_rotary_kernel(tmp_path: Path) -> None:
    # a Qwen3 sequence classifier (the last token's score): its rotary embeddings on onnxruntime's kernel
    from embedrt.export import export_model

    source = _family_cross_encoder("qwen3", tmp_path)
    ours = Reranker(export_model(source, tmp_path / "bundle"))
    opt = ours.manifest.optimizations
    assert opt["rotary"]["rotary"] > 0 and opt["fused_ops"]["RotaryEmbedding"] == opt["rotary"]["rotary"]
    np.testing.assert_allclose(ours.predict(PAIRS), st.CrossEncoder(str(source), device="cpu").predict(PAIRS), atol=1e-5)


def test_manifest_and_graph(tiny_reranker: tuple[Path, Path]) -> None:
    import onnxruntime as ort

    source, bundle = tiny_reranker
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["kind"] == "reranker" and m["reranker"] == {"num_labels": 1, "activation": "sigmoid", "labels": ["LABEL_0"]}
    assert m["outputs"] == ["logits", "scores"] and m["parity"]["passed"] and m["parity"]["truncated_pairs"] > 0
    session = ort.InferenceSession(str(bundle / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["logits", "scores"]
    # the graph made for onnxruntime's CPU provider, as an embedding bundle's: attention on the flash kernel
    layers = json.loads((source / "config.json").read_text())["num_hidden_layers"]
    opt = m["optimizations"]
    assert opt["optimize"] is True and opt["attention"]["flash_attention"] == layers
    assert opt["fused_ops"] == {"MultiHeadAttention": layers}


def test_bad_input(tiny_reranker: tuple[Path, Path]) -> None:
    ours = Reranker(tiny_reranker[1])
    assert ours.predict([]).shape == (0,)
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a pair of two str \(query, document\), got \('only',\)"):
        ours.predict([("q", "d"), ("only",)])
    with pytest.raises(TypeError, match=r"pairs\[0\] must hold two str, got a int"):
        ours.predict([("q", 3)])
    with pytest.raises(TypeError, match="documents must be a sequence of str, got a str"):
        ours.rank("q", "one document")
    with pytest.raises(ValueError, match="top_k must be an integer >= 0 or None, got -1"):
        ours.rank("q", ["d"], top_k=-1)
    assert ours.rank("q", ["d"], top_k=0) == []  # as CrossEncoder.rank's results[:0]
    with pytest.raises(TypeError, match=r"documents\[0\] must be a str"):
        ours.rank("q", [1], top_k=0)  # the documents are checked all the same
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str, got NoneType"):
        ours.rank("q", ["d", None])
    ranked = ours.rank("q", np.array(["a", "b"]), top_k=np.int64(1), return_documents=True)
    assert len(ranked) == 1 and type(ranked[0]["text"]) is str
    with pytest.raises(ValueError, match="invalid activation_fn 'relu': expected one of 'sigmoid'"):
        ours.predict([("q", "d")], activation_fn="relu")
    assert ours.predict([("still", "works")]).shape == (1,)


def test_kinds_are_served_by_their_class(tiny_reranker: tuple[Path, Path], tiny_bert_bundle: Path) -> None:
    _, bundle = tiny_reranker
    with pytest.raises(BundleError, match=r"is of kind 'reranker'; Embedder serves kinds 'embedding', 'static' \(load it with embedrt.Reranker\)"):
        Embedder(bundle)
    with pytest.raises(BundleError, match=r"is of kind 'embedding'; Reranker serves kinds 'reranker' \(load it with embedrt.Embedder\)"):
        Reranker(tiny_bert_bundle)
    assert isinstance(load_model(bundle), Reranker) and isinstance(load_model(tiny_bert_bundle), Embedder)


def test_export_options_and_folders(tiny_reranker: tuple[Path, Path], tiny_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from embedrt import UnsupportedModelError
    from embedrt.export import export_model
    from embedrt.export._kinds import detect_kind

    source, _ = tiny_reranker
    with pytest.raises(ValueError, match="a reranker bundle is exported in fp32 or int8 for now; got precision 'fp16'"):
        export_model(source, tmp_path / "x", precision="fp16")
    with pytest.raises(UnsupportedModelError, match=r"has modules \['Transformer', 'Pooling', 'Normalize'\]; a reranker bundle is exported from \['Transformer'\]"):
        export_model(tiny_factory("bert"), tmp_path / "y", kind="reranker")
    with pytest.raises(UnsupportedModelError, match=r"a reranker needs a \*ForSequenceClassification model, found 'BertModel'"):
        export_model(tiny_factory("bert").parent / "_encoder", tmp_path / "y", kind="reranker")
    assert detect_kind(tiny_factory("bert")).value == "embedding"
    assert detect_kind(source).value == "reranker"
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_pytorch_reference_batches_by_length(tiny_reranker: tuple[Path, Path]) -> None:
    """The reference logits that parity and the reranker gate compare with: pairs of mixed lengths
    run longest first (little padding), each logit back at its pair's place, as alone."""
    from embedrt._types import BundleKind
    from embedrt.export._heads import load_head_reference
    from embedrt.export._kinds import read_head_source
    from embedrt.export._validate_heads import reference_logits

    source, _ = tiny_reranker
    model, hf_tok = load_head_reference(read_head_source(source, BundleKind.RERANKER))
    shapes: list[tuple[int, int]] = []

    def recording(input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
        shapes.append(tuple(input_ids.shape))
        return model(input_ids, attention_mask, token_type_ids)

    pairs = [(LONG, LONG) if i % 2 else ("short", "pair") for i in range(16)]  # long and short in turn
    logits, ids = reference_logits(recording, hf_tok, pairs, 40, batch_size=8)  # type: ignore[arg-type]
    assert shapes == [(8, 40), (8, shapes[1][1])] and shapes[1][1] < 10  # long ones, then short (given order: 40 tokens twice)
    alone = [reference_logits(model, hf_tok, [p], 40)[0][0] for p in pairs[:2]]
    np.testing.assert_allclose(logits, np.array([alone[i % 2] for i in range(16)]), atol=1e-5)
    assert [len(x) for x in ids] == [40 if i % 2 else len(ids[0]) for i in range(16)] and len(ids[0]) < 10
