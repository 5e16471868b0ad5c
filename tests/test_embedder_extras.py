"""Embedder's sentence-transformers conveniences, each against sentence-transformers itself:
quantize_embeddings and encode(precision=...), similarity / similarity_pairwise with every
similarity_fn_name, truncate_dim, encode_query / encode_document and the model's similarity_fn_name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embedrt import Embedder, quantize_embeddings
from embedrt._quantization import quantization_ranges

st = pytest.importorskip("sentence_transformers")
torch = pytest.importorskip("torch")

TEXTS = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "대한민국은 민주공화국이다.", "", "Someone in a gorilla costume is playing a set of drums. " * 30,
]
PRECISIONS = ["float32", "int8", "uint8", "binary", "ubinary"]
FUNCTIONS = ["cosine", "dot", "euclidean", "manhattan"]


@pytest.fixture(scope="module")
def minilm(minilm_bundle: Path) -> Embedder:
    return Embedder(minilm_bundle)


@pytest.fixture(scope="module")
def vectors(minilm: Embedder) -> np.ndarray:
    from tiny_models import CORPUS

    return minilm.encode(CORPUS[:150] + TEXTS)  # type: ignore[return-value]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_quantize_embeddings_is_sentence_transformers(vectors: np.ndarray, precision: str) -> None:
    from sentence_transformers.util import quantize_embeddings as st_quantize

    ours = quantize_embeddings(vectors, precision)
    theirs = st_quantize(vectors, precision)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    if precision in ("int8", "uint8"):
        calib, rest = vectors[:100], vectors[100:]
        np.testing.assert_array_equal(
            quantize_embeddings(rest, precision, calibration_embeddings=calib),
            st_quantize(rest, precision, calibration_embeddings=calib),
        )
        ranges = quantization_ranges(calib)
        np.testing.assert_array_equal(quantize_embeddings(rest[:1], precision, ranges=ranges),
                                      st_quantize(rest[:1], precision, ranges=ranges))


def test_quantize_bad_input(vectors: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"invalid precision 'int4': expected one of 'float32', 'float16', 'int8', 'uint8', 'binary', 'ubinary'"):
        quantize_embeddings(vectors, "int4")
    with pytest.raises(ValueError, match="from a single embedding: pass ranges="):
        quantize_embeddings(vectors[:1], "int8")
    with pytest.raises(ValueError, match="quantized already"):
        quantize_embeddings(quantize_embeddings(vectors, "uint8"), "int8")
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 384\)"):
        quantize_embeddings(vectors, "int8", ranges=np.zeros((2, 3)))
    assert quantize_embeddings(vectors[:0], "binary").shape == (0, 48)


def test_float16_halves_the_bytes_within_its_rounding(vectors: np.ndarray) -> None:
    half = quantize_embeddings(vectors, "float16")
    assert half.dtype == np.float16 and half.shape == vectors.shape
    np.testing.assert_array_equal(half, vectors.astype(np.float16))  # the nearest half float
    big = np.abs(vectors) >= 6.1e-5
    rel = np.abs(half.astype(np.float32) - vectors)[big] / np.abs(vectors[big])
    assert rel.max() <= 2**-11 and np.abs(half.astype(np.float32) - vectors)[~big].max(initial=0) <= 3e-8
    assert quantize_embeddings(vectors[:0], "float16").dtype == np.float16
    with pytest.raises(ValueError, match=r"precision 'float16' holds values up to 65504; these vectors reach 70000: "
                                         r"normalize them or keep float32"):  # fmt: skip
        quantize_embeddings(np.array([[1.0, -70000.0]], np.float32), "float16")


def test_encode_precision_matches_sentence_transformers(minilm: Embedder, minilm_st) -> None:  # type: ignore[no-untyped-def]
    floats = minilm.encode(TEXTS)
    for precision in PRECISIONS[1:]:
        ours = minilm.encode(TEXTS, precision=precision)
        np.testing.assert_array_equal(ours, quantize_embeddings(floats, precision))
        theirs = minilm_st.encode(TEXTS, precision=precision)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        # ONNX Runtime and PyTorch differ by ~1e-7: a value on a bucket edge may land one bucket over
        if precision.endswith("int8"):
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        else:
            assert (ours != theirs).mean() < 0.01
    with pytest.raises(ValueError, match="from a single embedding"):
        minilm.encode("one text", precision="int8")
    ranges = quantization_ranges(floats)
    assert minilm.encode("one text", precision="uint8", ranges=ranges).shape == (384,)
    np.testing.assert_array_equal(minilm.encode(TEXTS, precision="float16"), floats.astype(np.float16))
    with pytest.raises(ValueError, match="invalid precision 'int4'"):
        minilm.encode(TEXTS, precision="int4")


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_similarity_matches_sentence_transformers(minilm_bundle: Path, minilm_st, vectors: np.ndarray, fn: str) -> None:  # type: ignore[no-untyped-def]
    model = Embedder(minilm_bundle, similarity_fn_name=fn)
    assert model.similarity_fn_name.value == fn
    a, b = vectors[:40], vectors[40:95]
    minilm_st.similarity_fn_name = fn
    try:
        theirs = minilm_st.similarity(a, b).numpy()
        theirs_pairwise = minilm_st.similarity_pairwise(a, b[:40]).numpy()
    finally:
        minilm_st.similarity_fn_name = "cosine"
    ours = model.similarity(a, b)
    assert ours.shape == (40, 55) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.similarity_pairwise(a, b[:40]), theirs_pairwise, rtol=1e-5, atol=1e-5)
    assert model.similarity(a[0], b).shape == (1, 55)


def test_similarity_bad_input(minilm: Embedder, vectors: np.ndarray) -> None:
    assert minilm.similarity_fn_name.value == "cosine"  # all-MiniLM-L6-v2 names none: the default
    with pytest.raises(ValueError, match="invalid similarity_fn_name 'jaccard'"):
        Embedder(minilm.path, similarity_fn_name="jaccard")
    with pytest.raises(ValueError, match="different dimensions"):
        minilm.similarity(vectors, vectors[:, :10])
    with pytest.raises(ValueError, match="as many rows on both sides"):
        minilm.similarity_pairwise(vectors[:3], vectors[:4])


def test_truncate_dim_matches_sentence_transformers(minilm_bundle: Path, minilm_path: Path) -> None:
    reference = st.SentenceTransformer(str(minilm_path), device="cpu", truncate_dim=64)
    model = Embedder(minilm_bundle, truncate_dim=64)
    assert model.get_sentence_embedding_dimension() == reference.get_embedding_dimension() == 64
    np.testing.assert_allclose(model.encode(TEXTS), reference.encode(TEXTS), atol=2e-6)
    np.testing.assert_allclose(model.encode(TEXTS, normalize=True),
                               reference.encode(TEXTS, normalize_embeddings=True), atol=2e-6)
    np.testing.assert_allclose(model.encode(TEXTS, truncate_dim=16), reference.encode(TEXTS, truncate_dim=16),
                               atol=2e-6)
    binary = model.encode(TEXTS, precision="ubinary")
    assert binary.shape == (len(TEXTS), 8)
    np.testing.assert_array_equal(binary, reference.encode(TEXTS, precision="ubinary"))
    for bad in (0, 385, 2.5):
        with pytest.raises(ValueError, match="truncate_dim must be an integer from 1 to 384"):
            Embedder(minilm_bundle, truncate_dim=bad)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prompted(tiny_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Embedder, object]:
    from embedrt.export import export_model

    source = tiny_factory("bert", prompts={"query": "query: ", "document": "doc: ", "clf": "classify: "},
                          default_prompt_name="clf", similarity_fn_name="dot")
    bundle = export_model(source, tmp_path_factory.mktemp("prompted") / "b")
    return Embedder(bundle), st.SentenceTransformer(str(source), device="cpu")


def test_query_document_prompts_and_similarity_fn(prompted: tuple[Embedder, object]) -> None:
    model, reference = prompted
    assert model.manifest.similarity_fn_name is not None and model.manifest.similarity_fn_name.value == "dot"
    assert model.similarity_fn_name.value == reference.similarity_fn_name == "dot"  # type: ignore[attr-defined]
    for ours, theirs in [(model.encode_query, reference.encode_query),  # type: ignore[attr-defined]
                         (model.encode_document, reference.encode_document),  # type: ignore[attr-defined]
                         (model.encode, reference.encode)]:  # type: ignore[attr-defined]
        np.testing.assert_allclose(ours(TEXTS), theirs(TEXTS), atol=2e-6)
        np.testing.assert_allclose(ours(TEXTS, prompt_name="query"), theirs(TEXTS, prompt_name="query"), atol=2e-6)
    vectors = model.encode_document(TEXTS)
    np.testing.assert_allclose(model.similarity(vectors, vectors),
                               reference.similarity(vectors, vectors).numpy(), rtol=1e-5)  # type: ignore[attr-defined]
    q = model.encode_query("q")
    assert q.shape == (model.dimension,)
    np.testing.assert_allclose(q, model.encode("query: q", prompt=""), atol=1e-6)


def test_sentence_transformers_call_shapes(prompted: tuple[Embedder, object]) -> None:
    """What a sentence-transformers user writes works, or is refused saying why."""
    model, reference = prompted
    theirs = reference.encode(TEXTS, normalize_embeddings=True, batch_size=np.int64(4))  # type: ignore[attr-defined]
    np.testing.assert_allclose(model.encode(TEXTS, normalize_embeddings=True, batch_size=np.int64(4)), theirs, atol=2e-6)
    np.testing.assert_allclose(model.encode(TEXTS, truncate_dim=np.int32(8)), model.encode(TEXTS)[:, :8], atol=0)
    rows = model.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 2 and rows[0].shape == (model.dimension,)
    with pytest.raises(ValueError, match="convert_to_tensor=True needs torch"):
        model.encode(TEXTS, convert_to_tensor=True)
    with pytest.raises(ValueError, match="disagree"):
        model.encode(TEXTS, normalize=False, normalize_embeddings=True)
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got np.int64\(0\)"):
        model.encode(TEXTS, batch_size=np.int64(0))
    # an empty list comes back in the asked precision, as a non-empty one does
    for precision, dtype, columns in [("int8", np.int8, 32), ("ubinary", np.uint8, 4), ("binary", np.int8, 4)]:
        empty = model.encode([], precision=precision)
        assert empty.dtype == dtype and empty.shape == (0, columns), (precision, empty.dtype, empty.shape)
    # a lone surrogate is named where the caller put it, not counting the prompt in front of it
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode: it holds a lone surrogate '\\udcff' at character 1"):
        model.encode(["fine", "a\udcff"], prompt_name="query")
