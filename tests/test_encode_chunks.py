"""``Embedder.encode_chunks``: long texts embedded whole, a vector per window, in process."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
from tiny_models import CORPUS

from embedrt import EmbeddedChunks, Embedder, SparseEmbeddings, SparseEncoder
from embedrt._chunking import window_chunker
from embedrt._types import BundleKind


def _texts(n: int = 40, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    words = [w.strip(".,;:!?()'\"") for w in " ".join(CORPUS).split()]
    words = [w for w in words if w.isascii() and w.isalpha() and len(w) < 8]  # short words: no cut inside one
    return [" ".join(rng.choice(words) for _ in range(rng.choice([0, 3, 20, 60]))) for _ in range(n)]


@pytest.fixture(scope="module")
def model(tiny_bert_bundle: Path) -> Embedder:
    return Embedder(tiny_bert_bundle)


def test_each_window_gets_the_vector_of_its_text(model: Embedder) -> None:
    texts = _texts()
    chunks = model.encode_chunks(texts, chunk_tokens=20, chunk_overlap=3)
    assert isinstance(chunks, EmbeddedChunks) and chunks.embeddings.shape == (len(chunks), model.dimension)
    assert chunks.embeddings.dtype == np.float32 and len(chunks) > len(texts) + 20
    assert chunks.text.tolist() == sorted(chunks.text.tolist()) and set(chunks.text.tolist()) == set(range(len(texts)))
    for i, text in enumerate(texts):
        rows = chunks.of(i)
        assert chunks.chunk[rows].tolist() == list(range(rows.stop - rows.start))
        assert chunks.start[rows][0] == 0 and chunks.end[rows][-1] == len(text)
    pieces = chunks.texts(texts)
    assert pieces == [texts[t][a:b] for t, a, b in zip(chunks.text, chunks.start, chunks.end, strict=True)]
    # short words: every window's text tokenizes to the window's own tokens, so encode gives its vector
    assert np.abs(chunks.embeddings - model.encode(pieces)).max() < 1e-5
    fits = [i for i, t in enumerate(texts) if len(model.tokenize([t]).ids[0]) <= 20]
    assert fits and all(chunks.of(i).stop - chunks.of(i).start == 1 for i in fits)


def test_options_as_encode_takes_them(model: Embedder) -> None:
    texts = [t for t in _texts(12, seed=4) if t]
    plain = model.encode_chunks(texts, chunk_tokens=16)
    pieces = plain.texts(texts)
    short = model.encode_chunks(texts, chunk_tokens=16, truncate_dim=8, precision="int8",
                                ranges=np.array([[-1.0] * 8, [1.0] * 8], np.float32))  # fmt: skip
    expected = model.encode(pieces, truncate_dim=8, precision="int8", ranges=np.array([[-1.0] * 8, [1.0] * 8], np.float32))
    assert short.embeddings.dtype == np.int8 and np.array_equal(short.embeddings, expected)
    prompted = model.encode_chunks(texts, chunk_tokens=16, prompt="query: ")
    assert prompted.start.tolist() != [] and all(0 <= a < b for a, b in zip(prompted.start, prompted.end, strict=True))
    single = model.encode_chunks(texts[0], chunk_tokens=16)
    assert set(single.text.tolist()) == {0} and np.allclose(single.embeddings, plain.embeddings[plain.of(0)], atol=1e-6)
    empty = model.encode_chunks([])
    assert len(empty) == 0 and empty.embeddings.shape == (0, model.dimension)


def test_every_window_holds_the_prompt(model: Embedder) -> None:
    texts = [t for t in _texts(12, seed=5) if len(t) > 40]
    chunks = model.encode_chunks(texts, chunk_tokens=20, prompt="query: ")
    pieces = chunks.texts(texts)
    assert len(chunks) > len(texts)
    assert np.abs(chunks.embeddings - model.encode(pieces, prompt="query: ")).max() < 1e-5


def test_the_same_windows_as_the_corpus_job(model: Embedder, tiny_bert_bundle: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from embedrt.dataset import embed_dataset

    texts = [t.replace(" ", ". ", 1).replace(" ", "\n\n", 3) for t in _texts(30, seed=6)]  # sentences, paragraphs
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, chunk_tokens=18, chunk_overlap=2, rows_per_part=7,
                  progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    chunks = model.encode_chunks(texts, chunk_tokens=18, chunk_overlap=2)
    assert table.column("chunk").to_pylist() == chunks.chunk.tolist()
    assert table.column("chunk_start").to_pylist() == chunks.start.tolist()
    assert table.column("chunk_end").to_pylist() == chunks.end.tolist()
    got = np.asarray(table.column("embedding").to_pylist(), np.float32)
    assert np.abs(got - chunks.embeddings).max() < 1e-5


def test_bad_settings_are_named(model: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    window = model.max_seq_length
    with pytest.raises(ValueError, match=rf"chunk_tokens must be an integer from 1 to {window} \(the model's "
                       rf"max_seq_length\) or 'max', got {window + 1}"):  # fmt: skip
        model.encode_chunks(["a"], chunk_tokens=window + 1)
    with pytest.raises(ValueError, match="chunk_tokens must be .* or 'max', got 'all'"):
        model.encode_chunks(["a"], chunk_tokens="all")
    with pytest.raises(ValueError, match="chunk_tokens=10 leaves 8 tokens .* chunk_overlap=8: raise chunk_tokens"):
        model.encode_chunks(["a"], chunk_tokens=10, chunk_overlap=8)
    with pytest.raises(TypeError, match="texts"):
        model.encode_chunks([None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="static-embedding bundle has no token window"):
        window_chunker(dataclasses.replace(model.manifest, kind=BundleKind.STATIC), model.tokenizer, "max", 0, None, None)
    monkeypatch.setattr(model, "_static", True)
    with pytest.raises(ValueError, match="encode_chunks: a static-embedding bundle .* use encode"):
        model.encode_chunks(["a"])


def test_sparse_windows(tiny_sparse: tuple[Path, Path]) -> None:
    encoder = SparseEncoder(tiny_sparse[1])
    texts = [t for t in _texts(16, seed=7) if t]
    for kw in ({"max_active_dims": 5}, {"prompt_name": "query"}):
        chunks = encoder.encode_chunks(texts, chunk_tokens=16, chunk_overlap=2, **kw)  # type: ignore[arg-type]
        assert isinstance(chunks.embeddings, SparseEmbeddings) and len(chunks.embeddings) == len(chunks) > len(texts)
        want = encoder.encode(chunks.texts(texts), **kw)  # type: ignore[arg-type]
        assert isinstance(want, SparseEmbeddings)
        np.testing.assert_array_equal(chunks.embeddings.indptr, want.indptr)
        np.testing.assert_array_equal(chunks.embeddings.indices, want.indices)
        np.testing.assert_allclose(chunks.embeddings.values, want.values, atol=1e-5)
        rows = chunks.of(1)
        assert len(chunks.embeddings[rows]) == rows.stop - rows.start > 0
