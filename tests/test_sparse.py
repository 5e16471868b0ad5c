"""Sparse (SPLADE) bundles against sentence-transformers' SparseEncoder: vectors, max_active_dims,
query/document prompts, decode, similarity, the CSR container, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedrt import Embedder, SparseEmbeddings, SparseEncoder, SparseVector
from embedrt._sparse import sparse_similarity

st = pytest.importorskip("sentence_transformers")
torch = pytest.importorskip("torch")

TEXTS = [
    "what is a cat", "A cat is a small domesticated carnivorous mammal. " * 20, "", "대한민국은 민주공화국이다.",
    "🙂🚀 emoji", "a", "The history of computing is longer than the history of computing hardware.",
]


@pytest.fixture(scope="module")
def pair(tiny_sparse: tuple[Path, Path]) -> tuple[SparseEncoder, object]:
    source, bundle = tiny_sparse
    return SparseEncoder(bundle), st.SparseEncoder(str(source), device="cpu")


@pytest.fixture(scope="module")
def summed(tmp_path_factory: pytest.TempPathFactory) -> tuple[SparseEncoder, object]:
    """XLM-R, sum pooling, the log1p_relu activation."""
    from tiny_models import make_sparse_encoder

    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("sparse-sum")
    source = make_sparse_encoder("xlm-roberta", root, pooling="sum", activation="log1p_relu")
    return SparseEncoder(export_model(source, root / "bundle")), st.SparseEncoder(str(source), device="cpu")


def _dense(x: object) -> np.ndarray:
    return x.to_dense() if isinstance(x, SparseEmbeddings | SparseVector) else x.to_dense().numpy()  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["max-relu", "sum-log1p_relu"])
def test_vectors_match_sparse_encoder(pair, summed, which: str) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair if which == "max-relu" else summed
    got, want = ours.encode(TEXTS, batch_size=3), theirs.encode(TEXTS, batch_size=3)
    assert isinstance(got, SparseEmbeddings) and got.shape == tuple(want.shape) == (len(TEXTS), ours.dimension)
    scale = float(np.abs(_dense(want)).max())
    np.testing.assert_allclose(_dense(got), _dense(want), atol=1e-5 * max(scale, 1))
    assert all(np.all(np.diff(v.indices) > 0) and np.all(v.values > 0) for v in got)
    for k in (1, 7):
        np.testing.assert_allclose(_dense(ours.encode(TEXTS, max_active_dims=k)),
                                   _dense(theirs.encode(TEXTS, max_active_dims=k)), atol=1e-5 * max(scale, 1))
        assert max(v.nnz for v in ours.encode(TEXTS, max_active_dims=k)) == k


def test_prompts_decode_and_single(pair) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = pair
    for a, b in [(ours.encode_query, theirs.encode_query), (ours.encode_document, theirs.encode_document)]:
        np.testing.assert_allclose(_dense(a(TEXTS)), _dense(b(TEXTS)), atol=1e-4)
    one = ours.encode_query("what is a cat")
    assert isinstance(one, SparseVector)
    np.testing.assert_allclose(one.to_dense(), _dense(ours.encode("query: what is a cat", prompt="")), atol=1e-6)
    got, want = ours.decode(one, top_k=5), theirs.decode(theirs.encode_query("what is a cat"), top_k=5)
    assert [t for t, _ in got] == [t for t, _ in want]
    np.testing.assert_allclose([w for _, w in got], [w for _, w in want], atol=1e-4)
    batch = ours.decode(ours.encode(TEXTS[:2]))
    assert len(batch) == 2 and len(batch[0]) == ours.encode(TEXTS[0]).nnz  # type: ignore[union-attr]


@pytest.mark.parametrize("fn", ["dot", "cosine", "euclidean", "manhattan"])
def test_similarity_matches_sparse_encoder(tiny_sparse: tuple[Path, Path], pair, fn: str) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = SparseEncoder(tiny_sparse[1], similarity_fn_name=fn), pair[1]
    assert pair[0].similarity_fn_name.value == "dot"  # SparseEncoder's default
    a, b = ours.encode(TEXTS), ours.encode(TEXTS[::-1][:5])
    theirs.similarity_fn_name = fn
    try:
        want = theirs.similarity(torch.from_numpy(a.to_dense()), torch.from_numpy(b.to_dense())).numpy()
        want_pairs = theirs.similarity_pairwise(torch.from_numpy(a.to_dense()[:5]), torch.from_numpy(b.to_dense())).numpy()
    finally:
        theirs.similarity_fn_name = "dot"
    got = ours.similarity(a, b)
    assert got.shape == (len(TEXTS), 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ours.similarity_pairwise(a[:5], b), want_pairs, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ours.similarity(list(a), list(b)), got, rtol=1e-6)  # lists of SparseVector
    np.testing.assert_allclose(ours.similarity(a.to_dense(), b), got, rtol=1e-5, atol=1e-4)  # dense rows accepted


def test_container() -> None:
    dense = np.array([[0, 1.5, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]], np.float32)
    s = SparseEmbeddings.from_dense(dense)
    assert s.shape == (3, 4) and s.nnz == 3 and len(s[1].indices) == 0
    np.testing.assert_array_equal(s.to_dense(), dense)
    assert s[0].to_dict() == {1: 1.5, 3: 2.0} and s[-1].to_dict() == {0: 3.0}
    np.testing.assert_array_equal(SparseEmbeddings.stack(list(s), 4).to_dense(), dense)
    scipy = pytest.importorskip("scipy.sparse")
    assert isinstance(s.to_scipy(), scipy.csr_matrix) and (s.to_scipy().toarray() == dense).all()
    with pytest.raises(IndexError, match="index 3 out of range for 3 sparse vectors"):
        s[3]
    for key in (slice(None, None, -1), slice(1, 1), [2, 0, 2], np.array([2, 0]), np.int64(-1), [True, False, True]):
        want = dense[key]
        got = s[key]
        np.testing.assert_array_equal(got.to_dense(), want)
        if want.ndim == 2:  # rows come back as SparseEmbeddings, a row as a SparseVector
            assert isinstance(got, SparseEmbeddings) and got.shape == want.shape and len(got.indptr) == len(want) + 1
    with pytest.raises(IndexError, match=r"index 5 is out of bounds .*\(indexing 3 sparse vectors\)"):
        s[[0, 5]]
    with pytest.raises(ValueError, match=r"embeddings1: sparse vectors of different widths in one list: \[4, 5\]"):
        sparse_similarity([s[0], SparseEmbeddings.from_dense(np.ones((1, 5)))[0]], s, "dot")


def test_manifest_graph_and_bad_input(tiny_sparse: tuple[Path, Path], pair) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    _, bundle = tiny_sparse
    ours = pair[0]
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["kind"] == "sparse" and m["sparse"] == {"pooling": "max", "activation": "relu", "vocab_size": ours.dimension}
    assert m["inputs"][-1] == "max_active_dims" and m["parity"]["passed"]
    names = [o.name for o in ort.InferenceSession(str(bundle / "model.onnx")).get_outputs()]
    assert names == ["sparse_embedding", "sparse_indices", "sparse_values"]
    assert ours.encode([]).shape == (0, ours.dimension)
    with pytest.raises(ValueError, match="max_active_dims must be a positive integer or None, got 0"):
        ours.encode(TEXTS, max_active_dims=0)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        ours.encode(["a", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="top_k must be a positive integer or None"):
        ours.decode(ours.encode("a"), top_k=-1)
    with pytest.raises(Exception, match="is of kind 'sparse'; Embedder serves"):
        Embedder(bundle)
