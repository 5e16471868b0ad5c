"""The server's cache (``cache_mb``): an input sent again is answered from the rows the model gave it
before, without a model run; what it answers is what the model answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from server_helpers import live_server, nan_model  # noqa: E402

from embedrt import Embedder, Reranker, SparseEncoder  # noqa: E402
from embedrt.server import ServerConfig  # noqa: E402
from embedrt.server._app import ServerState  # noqa: E402

TEXTS = ["how do I embed a corpus", "what is a sentence embedding", "대한민국 헌법", "the quick brown fox"]


def _post(url: str, body: object) -> httpx.Response:
    r = httpx.post(url, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r


class _Runs:
    """Counts the rows the model runs."""

    def __init__(self, state: ServerState) -> None:
        self.rows = 0
        real = state.batcher._encode

        def counted(tok, alone):  # type: ignore[no-untyped-def]
            self.rows += len(tok)
            return real(tok, alone)

        state.batcher._encode = counted


def _hits(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith("embedrt_cache_hits_total "))


def test_an_input_sent_again_is_answered_without_a_model_run(tiny_bert_bundle: Path) -> None:
    model = Embedder(tiny_bert_bundle)
    with live_server(model, ServerConfig(cache_mb=1, warmup=False)) as s:
        runs = _Runs(s.state)
        first = _post(f"{s.url}/v1/embeddings", {"input": TEXTS[:2]}).json()["data"]
        assert runs.rows == 2 and _hits(s.url) == 0
        again = _post(f"{s.url}/v1/embeddings", {"input": [TEXTS[1], TEXTS[2], TEXTS[0]]}).json()["data"]
        assert runs.rows == 3 and _hits(s.url) == 2  # only the new text ran
        assert again[0]["embedding"] == first[1]["embedding"] and again[2]["embedding"] == first[0]["embedding"]
        want = model.encode([TEXTS[1], TEXTS[2], TEXTS[0]], normalize_embeddings=model.manifest.normalize)
        np.testing.assert_allclose([d["embedding"] for d in again], want, atol=1e-5)
        # what a request asks of its rows (dimensions, normalize) is done on a copy: the held rows stay whole
        short = _post(f"{s.url}/v1/embeddings", {"input": TEXTS[0], "dimensions": 8}).json()["data"][0]["embedding"]
        raw = _post(f"{s.url}/embed", {"inputs": [TEXTS[0]], "normalize": False}).json()[0]
        assert runs.rows == 3 and len(short) == 8
        np.testing.assert_allclose(raw, model.encode([TEXTS[0]], normalize_embeddings=False)[0], atol=1e-5)
        assert _post(f"{s.url}/v1/embeddings", {"input": TEXTS[0]}).json()["data"][0]["embedding"] == first[0]["embedding"]
        # an input twice in one request runs once
        twice = _post(f"{s.url}/embed", {"inputs": [TEXTS[3], "new words", TEXTS[3], TEXTS[0]]}).json()
        assert runs.rows == 5 and twice[0] == twice[2] and _hits(s.url) == 2 + 3 + 1
        np.testing.assert_allclose(twice[1], model.encode(["new words"], normalize_embeddings=True)[0], atol=1e-5)
        # rows are keyed by their tokens: two texts cut to the same window are one row
        long = " ".join(["word"] * 2000)
        _post(f"{s.url}/embed", {"inputs": [long]})
        _post(f"{s.url}/embed", {"inputs": [long + " more"]})
        assert runs.rows == 6 and _hits(s.url) == 2 + 3 + 1 + 1
        metrics = httpx.get(f"{s.url}/metrics", timeout=10).text
        assert f"embedrt_cache_entries {float(len(s.state.cache))}" in metrics and len(s.state.cache) == 6  # type: ignore[arg-type]
        assert f"embedrt_cache_bytes {float(s.state.cache.bytes)}" in metrics  # type: ignore[union-attr]
        assert httpx.get(f"{s.url}/info", timeout=10).json()["cache_mb"] == 1
        sim = _post(f"{s.url}/similarity", {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:3]}}).json()
        np.testing.assert_allclose(sim, model.similarity(model.encode(TEXTS[:1]), model.encode(TEXTS[1:3]))[0], atol=1e-5)


def test_non_finite_rows_are_not_kept(tiny_bert_bundle: Path) -> None:
    with live_server(Embedder(tiny_bert_bundle), ServerConfig(cache_mb=1, warmup=False)) as s:
        with nan_model(s.state):
            assert httpx.post(f"{s.url}/embed", json={"inputs": [TEXTS[0]]}, timeout=30).status_code == 500
        runs = _Runs(s.state)
        vec = _post(f"{s.url}/embed", {"inputs": [TEXTS[0]]}).json()[0]
        assert runs.rows == 1 and np.isfinite(vec).all() and len(s.state.cache) == 1  # type: ignore[arg-type]


def test_sparse_and_reranker_rows_are_kept_too(tiny_sparse: tuple[Path, Path], tiny_reranker: tuple[Path, Path]) -> None:
    sparse = SparseEncoder(tiny_sparse[1])
    with live_server(sparse, ServerConfig(cache_mb=1, warmup=False)) as s:
        runs = _Runs(s.state)
        first = _post(f"{s.url}/embed_sparse", {"inputs": TEXTS}).json()
        again = _post(f"{s.url}/embed_sparse", {"inputs": TEXTS[::-1]}).json()
        assert runs.rows == len(TEXTS) and again == first[::-1] and _hits(s.url) == len(TEXTS)
        for row, vec in zip(again, sparse.encode(TEXTS[::-1]), strict=True):
            assert [x["index"] for x in row] == vec.indices.tolist()
        assert s.state.cache is not None and s.state.cache.bytes > len(TEXTS) * 1000  # each vector's arrays counted
    reranker = Reranker(tiny_reranker[1])
    with live_server(reranker, ServerConfig(cache_mb=1, warmup=False)) as s:
        runs = _Runs(s.state)
        body = {"query": "what is embedding", "texts": TEXTS}
        first = _post(f"{s.url}/rerank", body).json()
        assert _post(f"{s.url}/rerank", body).json() == first and runs.rows == len(TEXTS)
        other = _post(f"{s.url}/rerank", {**body, "query": "another question"}).json()  # another pair: other tokens
        assert runs.rows == 2 * len(TEXTS) and other != first


def test_no_cache_by_default_and_a_bad_size_is_named(tiny_bert_bundle: Path) -> None:
    with live_server(Embedder(tiny_bert_bundle), ServerConfig(warmup=False)) as s:
        assert s.state.cache is None
        runs = _Runs(s.state)
        _post(f"{s.url}/embed", {"inputs": [TEXTS[0]]})
        _post(f"{s.url}/embed", {"inputs": [TEXTS[0]]})
        assert runs.rows == 2
    for bad in (-1, float("nan"), "64", True):
        with pytest.raises(ValueError, match=r"cache_mb must be a number of megabytes >= 0 \(0: no cache\), got "):
            ServerConfig(cache_mb=bad)  # type: ignore[arg-type]
