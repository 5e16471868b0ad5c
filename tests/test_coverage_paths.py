"""The pooler output, static embeddings (model2vec and sentence-transformers StaticEmbedding),
weights as ONNX external data, token-budget batching, exporter choice and progress lines."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_models import make_encoder

from embedrt import BundleError, BundleKind, Embedder, UnsupportedModelError
from embedrt._tokenize import flat_batches, share_batches, token_batches
from embedrt.export import export_model
from embedrt.export._texts import validation_texts

TEXTS = validation_texts()


# -- pooler_output ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    enc = make_encoder("bert", tmp_path_factory.mktemp("plain-bert") / "enc")
    config = enc / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "model_max_length": 48}))  # a quick gate
    return enc


def test_pooler_matches_transformers_pooler_output(plain_bert: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    bundle = export_model(plain_bert, tmp_path / "b", pooling="pooler")
    model, tok = AutoModel.from_pretrained(str(plain_bert)).eval(), AutoTokenizer.from_pretrained(str(plain_bert))
    with torch.inference_mode():
        expected = model(**tok(TEXTS, padding=True, truncation=True, max_length=48, return_tensors="pt")).pooler_output
    got = Embedder(bundle).encode(TEXTS)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert [p.value for p in Embedder(bundle).manifest.pooling] == ["pooler"]


def test_cls_on_a_plain_bert_says_it_is_not_the_pooler(plain_bert: Path) -> None:
    from embedrt import Pooling
    from embedrt.export._model import load_reference
    from embedrt.export._source import read_source

    lines: list[str] = []
    load_reference(read_source(plain_bert, [Pooling.CLS]), lines.append)
    note = [line for line in lines if "pooler_output" in line]
    assert note and "--pooling pooler" in note[0] and "BertModel" in note[0]
    lines.clear()
    load_reference(read_source(plain_bert, [Pooling.MEAN]), lines.append)
    assert not any("pooler_output" in line for line in lines)


def test_pooler_refused_without_a_pooler(tmp_path: Path) -> None:
    enc = make_encoder("distilbert", tmp_path / "enc")
    with pytest.raises(UnsupportedModelError, match="'distilbert'.*has no pooler layer"):
        export_model(enc, tmp_path / "b", pooling="pooler")


def test_pooler_refused_when_its_weights_are_missing(plain_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = tmp_path / "nopooler"
    shutil.copytree(plain_bert, src)
    weights = {k: v for k, v in load_file(str(src / "model.safetensors")).items() if "pooler" not in k}
    save_file(weights, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UnsupportedModelError, match="no trained pooler weights"):
        export_model(src, tmp_path / "b", pooling="pooler")


# -- static embeddings -----------------------------------------------------------------------------------


def _tokenizer(plain_bert: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(plain_bert / "tokenizer.json"))


@pytest.fixture(scope="module")
def model2vec_folders(plain_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model2vec folder as ``StaticModel.save_pretrained`` writes it, plain and vocabulary-quantized."""
    from model2vec import StaticModel

    tok = _tokenizer(plain_bert)
    vocab = tok.get_vocab_size()
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("m2v")
    config = {"model_type": "model2vec", "architectures": ["StaticModel"]}
    plain = StaticModel(rng.normal(size=(vocab, 24)).astype(np.float32), tok, config=config, normalize=True, max_length=16)
    plain.save_pretrained(root / "plain")
    quantized = StaticModel(
        rng.normal(size=(50, 24)).astype(np.float32), tok, config=config, normalize=False, max_length=None,
        token_mapping=rng.integers(0, 50, size=vocab), weights=rng.uniform(0.5, 2, size=vocab).astype(np.float32),
    )  # fmt: skip
    quantized.save_pretrained(root / "quantized")
    return {"plain": root / "plain", "quantized": root / "quantized"}


@pytest.mark.parametrize("which", ["plain", "quantized"])
def test_model2vec_folder_matches_model2vec(which: str, model2vec_folders: dict[str, Path], tmp_path: Path) -> None:
    from model2vec import StaticModel

    source = model2vec_folders[which]
    bundle = export_model(source, tmp_path / "b")
    model = Embedder(bundle)
    texts = [*TEXTS, "[UNK] unknown ⟁⟁⟁ glyphs", "word " * 500]
    expected = StaticModel.from_pretrained(str(source)).encode(texts)  # float32 sums in another order
    np.testing.assert_allclose(model.encode(texts), expected, rtol=1e-4, atol=1e-5)
    m = model.manifest
    assert m.kind is BundleKind.STATIC and m.inputs == ["input_ids", "offsets"]
    assert m.parity["reference"] == "model2vec StaticModel.encode"
    assert not any(n.startswith("token_type") for n in m.inputs)


def test_sentence_transformers_static_embedding_matches(plain_bert: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, StaticEmbedding

    st = SentenceTransformer(modules=[StaticEmbedding(_tokenizer(plain_bert), embedding_dim=20), Normalize()],
                             prompts={"query": "query: "})  # fmt: skip
    st.save(str(tmp_path / "st"))
    bundle = export_model(tmp_path / "st", tmp_path / "b")
    model = Embedder(bundle)
    # float32 sums in another order: ~1e-6 apart on the 1000-token text (no truncation here)
    np.testing.assert_allclose(model.encode(TEXTS, batch_size=4), st.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(model.encode(TEXTS[:5], prompt_name="query"),
                               st.encode(TEXTS[:5], prompt_name="query"), atol=1e-5)  # fmt: skip
    # the path the server takes: tokenize, then encode the tokens
    np.testing.assert_allclose(model.encode_tokenized(model.tokenize(TEXTS)), st.encode(TEXTS), atol=1e-5)
    with pytest.raises(ValueError, match="sentence_embedding only"):
        model.encode(TEXTS, output_value="token_embeddings")
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode: it holds a lone surrogate '\\udcff' at character 2"):
        model.encode(["ok", "ab\udcff"], prompt_name="query")
    with pytest.raises(UnsupportedModelError, match="fp32 only"):
        export_model(tmp_path / "st", tmp_path / "b8", precision="int8")


# -- external data ---------------------------------------------------------------------------------------


def test_external_data_forced_on_a_small_model(tiny_factory: Callable[..., Path], tiny_bert_bundle: Path,
                                               tmp_path: Path) -> None:  # fmt: skip
    lines: list[str] = []
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", external_data_bytes=0, log=lines.append)
    m = Embedder(bundle).manifest
    assert (bundle / "model.onnx.data").is_file() and "model.onnx.data" in m.files
    assert m.optimizations["external_data"] is True and any("external data" in line for line in lines)
    np.testing.assert_allclose(Embedder(bundle).encode(TEXTS), Embedder(tiny_bert_bundle).encode(TEXTS), atol=1e-6)
    data = bundle / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"model\.onnx\.data was altered"):
        Embedder(bundle)


def test_a_graph_copied_under_another_name_takes_its_data_file_along(tmp_path: Path) -> None:
    """A graph saved with a data file (the optimizer's ``fused.onnx`` + ``fused.onnx.data``) copied as a
    bundle's ``model.onnx``: the copy names ``model.onnx.data``, and nothing else is left beside it."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from embedrt.export._onnx import copy_graph, save_model

    weight = np.arange(32 * 16, dtype=np.float32).reshape(32, 16)  # 2 KB: past the size kept inline
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])], [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    (tmp_path / "work").mkdir()
    (tmp_path / "bundle").mkdir()
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "work" / "fused.onnx",
               external=True)  # fmt: skip
    copy_graph(tmp_path / "work" / "fused.onnx", tmp_path / "bundle" / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == ["model.onnx", "model.onnx.data"]
    for p in (tmp_path / "work").iterdir():
        p.unlink()
    model = onnx.load(str(tmp_path / "bundle" / "model.onnx"), load_external_data=False)
    assert [e.value for e in model.graph.initializer[0].external_data if e.key == "location"] == ["model.onnx.data"]
    x = np.ones((2, 32), np.float32)
    y = ort.InferenceSession(str(tmp_path / "bundle" / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, x @ weight)


@pytest.mark.parametrize("kind", ["reranker", "sparse"])
def test_reranker_and_sparse_bundles_with_their_weights_in_a_data_file(
    tiny_reranker: tuple[Path, Path], tiny_sparse: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    """A model over 2 GB (bge-reranker-v2-m3, an XLM-R large, is 2.2 GB in fp32) keeps its weights
    in model.onnx.data, as an embedding bundle does: forced here on the tiny models, default and plain graph."""
    from embedrt import Reranker, SparseEncoder

    source, inline = tiny_reranker if kind == "reranker" else tiny_sparse
    cls = Reranker if kind == "reranker" else SparseEncoder
    pairs = [("how many people live in Berlin?", "Berlin has 3.5 million inhabitants."), ("q", "")]
    for optimize in (None, False):
        lines: list[str] = []
        bundle = export_model(source, tmp_path / f"b-{optimize}", external_data_bytes=0, optimize=optimize,
                              log=lines.append)  # fmt: skip
        model = cls(bundle)
        assert sorted(p.name for p in bundle.glob("*.onnx*")) == ["model.onnx", "model.onnx.data"]
        assert "model.onnx.data" in model.manifest.files and model.manifest.optimizations["external_data"] is True
        assert any("external data" in line for line in lines)
        assert model.manifest.optimizations["optimize"] is (optimize is None)
        if optimize is None:  # the flash layers' shape constants stay inline, where onnxruntime reads them
            assert model.manifest.optimizations["attention"]["flash_attention"] > 0
            assert not model.manifest.optimizations.get("fallback_from")
        if isinstance(model, Reranker):
            np.testing.assert_allclose(model.predict(pairs), Reranker(inline).predict(pairs), atol=1e-6)
        else:
            texts = [p for pair in pairs for p in pair]
            np.testing.assert_allclose(model.encode(texts).to_dense(), SparseEncoder(inline).encode(texts).to_dense(),
                                       atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("threshold", [0, 1_800_000_000], ids=["external", "inline"])
def test_weights_written_from_the_tensors_match_torchs_own_graph(tiny_factory: Callable[..., Path], tmp_path: Path,
                                                                 threshold: int) -> None:  # fmt: skip
    """The export writes the weights itself (not through torch's protobuf): the same tensors, the same graph."""
    import onnx
    import torch
    from onnx import numpy_helper

    from embedrt.export._archs import Exporter, spec_for
    from embedrt.export._model import load_reference
    from embedrt.export._onnx import export_graph
    from embedrt.export._source import read_source

    model, tok = load_reference(read_source(tiny_factory("bert"), None))
    sample = tok(["a short text", "a longer text to pad the batch"], padding=True, return_tensors="pt")
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    args = tuple(sample[n] for n in inputs)
    w = export_graph(model, args, inputs, tmp_path / "model.onnx", opset=17, exporter=Exporter.TORCHSCRIPT,
                     arch=spec_for("bert"), say=lambda m: None, external_data_bytes=threshold)  # fmt: skip
    assert w.external_data is (threshold == 0) and (tmp_path / "model.onnx.data").exists() is (threshold == 0)
    assert sorted(tmp_path.iterdir()) == sorted([tmp_path / "model.onnx", *[tmp_path / "model.onnx.data"] * (threshold == 0)])
    ours = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(ours)
    torch.onnx.export(model, args, str(tmp_path / "torch.onnx"), input_names=inputs, opset_version=17, dynamo=False,
                      do_constant_folding=True, dynamic_axes={n: {0: "b", 1: "s"} for n in inputs})  # fmt: skip
    theirs = onnx.load(str(tmp_path / "torch.onnx"))
    big = {t.name: numpy_helper.to_array(t) for t in theirs.graph.initializer if t.ByteSize() > 1024}
    got = {t.name: numpy_helper.to_array(t) for t in ours.graph.initializer}
    assert len(big) >= 10 and set(big) <= set(got)
    for name, value in big.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name
    assert [i.name for i in ours.graph.input] == inputs


# -- batching by a token budget --------------------------------------------------------------------------


def test_token_batches_bound_padded_tokens() -> None:
    lengths = np.array([8000, 3000, 600, 500, 40, 30, 20, 10])
    pieces = token_batches(lengths, batch_size=4, max_tokens=2048)
    assert [(p.start, p.stop) for p in pieces] == [(0, 1), (1, 2), (2, 5), (5, 8)]
    assert all((p.stop - p.start) * max(lengths[p.start], 1) <= 2048 or p.stop - p.start == 1 for p in pieces)
    assert [(p.start, p.stop) for p in token_batches(lengths, 3, None)] == [(0, 3), (3, 6), (6, 8)]
    flat = flat_batches(np.array([5, 0, 9, 3, 3]), batch_size=10, max_tokens=8)
    assert [(p.start, p.stop) for p in flat] == [(0, 2), (2, 3), (3, 5)]


def test_share_batches_cuts_the_costliest_piece_where_its_halves_balance() -> None:
    lengths = np.array([10, 8, 8, 3, 3, 3, 3, 3])  # sorted longest first, as token_batches takes them
    spans = lambda pieces: [(p.start, p.stop) for p in pieces]  # noqa: E731
    one = [slice(0, 8)]
    assert spans(share_batches(lengths, one, 2)) == [(0, 3), (3, 8)]  # padded tokens 30 and 15 (cut at 4: 40, 12)
    assert spans(share_batches(lengths, one, 4)) == [(0, 1), (1, 2), (2, 3), (3, 8)]
    assert spans(share_batches(lengths, [slice(0, 2), slice(2, 8)], 2)) == [(0, 2), (2, 8)]  # enough pieces: kept
    assert spans(share_batches(np.array([7, 5]), [slice(0, 1), slice(1, 2)], 4)) == [(0, 1), (1, 2)]  # one row each
    assert spans(share_batches(np.array([7]), [slice(0, 1)], 2)) == [(0, 1)]


def test_budget_does_not_change_vectors(tiny_bert_bundle: Path) -> None:
    texts = TEXTS * 3
    free = Embedder(tiny_bert_bundle, max_batch_tokens=None).encode(texts, batch_size=64)
    tight = Embedder(tiny_bert_bundle, max_batch_tokens=64).encode(texts, batch_size=64)
    np.testing.assert_allclose(tight, free, atol=1e-5)
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive integer, None or 'auto', got 0"):
        Embedder(tiny_bert_bundle, max_batch_tokens=0)
    with pytest.raises(ValueError, match="got 'fast'"):
        Embedder(tiny_bert_bundle, max_batch_tokens="fast")


def test_the_default_budget_follows_the_device_and_the_threads_per_run(tiny_bert_bundle: Path) -> None:
    """On the CPU a run on one thread (streams of one thread each, or one thread) gets half the tokens
    of a run on several: one core's caches."""
    from embedrt._base import (
        CPU_RUN_TOKENS,
        CPU_THREAD_RUN_TOKENS,
        DEFAULT_MAX_BATCH_TOKENS,
        OPENVINO_RUN_TOKENS,
        run_tokens,
    )
    from embedrt._types import Device

    assert Embedder(tiny_bert_bundle, threads=2).max_batch_tokens == CPU_RUN_TOKENS == 1024
    assert Embedder(tiny_bert_bundle, threads=2, streams=2).max_batch_tokens == CPU_THREAD_RUN_TOKENS == 512
    assert Embedder(tiny_bert_bundle, threads=2, streams="auto").max_batch_tokens == 512
    assert Embedder(tiny_bert_bundle, threads=1).max_batch_tokens == 512
    assert Embedder(tiny_bert_bundle, threads=4, streams=2).max_batch_tokens == 1024  # two threads per run
    assert Embedder(tiny_bert_bundle, threads=2, streams=2, max_batch_tokens=2048).max_batch_tokens == 2048
    assert run_tokens("auto", Device.CUDA, 1) == DEFAULT_MAX_BATCH_TOKENS == 16384  # a GPU wants big runs
    # OpenVINO: 2048, as fast as bigger runs and lighter, on one thread per run too
    assert run_tokens("auto", Device.OPENVINO, 1) == run_tokens("auto", Device.OPENVINO, 2) == OPENVINO_RUN_TOKENS == 2048
    assert run_tokens(None, Device.CPU, 1) is None and run_tokens(300, Device.CUDA, 2) == 300


def test_left_padding_in_the_runtime() -> None:
    from embedrt._tokenize import Tokenized, pad_batch

    tok = Tokenized(ids=[[5, 6, 7], [8]], type_ids=[[0, 0, 0], [0]], lengths=np.array([3, 1]),
                    truncated=np.array([False, False]))  # fmt: skip
    feed = pad_batch(tok, np.array([0, 1]), pad_id=0, with_type_ids=False, left=True)
    assert feed["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert feed["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


# -- exporter choice, opset and progress -----------------------------------------------------------------


def test_bad_exporter_is_named(tmp_path: Path) -> None:
    # The opset a dynamo export really writes is logged and recorded: see the Gemma3 test (test_families).
    with pytest.raises(ValueError, match="invalid exporter 'tvm': expected one of 'auto', 'torchscript', 'dynamo'"):
        export_model(tmp_path, tmp_path / "c", exporter="tvm")


def test_progress_reports_an_estimate() -> None:
    from embedrt.export._progress import Progress

    lines: list[str] = []
    p = Progress(lines.append, "PyTorch reference", 100, every=0.0)
    p.update(25)
    p.update(75)
    p.close()
    assert lines[0] == "PyTorch reference: 100 texts"  # said at the start, however fast the work
    assert lines[1].startswith("PyTorch reference: 25/100 texts") and "left" in lines[1]
    assert lines[-1].startswith("PyTorch reference: 100 texts in")


def test_progress_estimates_from_the_work_where_the_first_inputs_cost_most(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedrt.export._progress as progress

    clock = iter([0.0, 30.0, 40.0])  # the start, then two updates
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    p = progress.Progress(lines.append, "PyTorch logits", 100, unit="pairs", every=0.0, work=1000)
    p.update(25, 750)  # the longest quarter of the pairs: three quarters of the tokens, in 30 s
    p.update(25, 125)
    assert lines[1] == "PyTorch logits: 25/100 pairs, 30 s, ~10 s left"  # by count: ~90 s
    assert lines[2] == "PyTorch logits: 50/100 pairs, 40 s, ~6 s left"


def test_manifest_records_padding_side(tiny_bert_bundle: Path) -> None:
    manifest = json.loads((tiny_bert_bundle / "manifest.json").read_text())
    assert manifest["padding_side"] == "right" and manifest["max_chars"] is None
