"""The server's routes per bundle kind, against a live uvicorn: TEI /rerank and Cohere-style
/v1/rerank for rerankers, /embed_sparse for sparse bundles, /similarity, /tokenize and packed
encoding formats for embeddings; routes of another kind answer 424; bad input gets a clear 4xx and
the server keeps serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from server_helpers import live_server  # noqa: E402

from embedrt import Embedder, Reranker, SparseEncoder, quantize_embeddings  # noqa: E402
from embedrt.server import ServerConfig  # noqa: E402

LONG = "the history of computing is longer than the history of computing hardware " * 10
DOCS = ["Berlin has 3.5 million inhabitants.", "Berlin is known for museums.", "", "서울은 수도이다.", LONG]
CONFIG = ServerConfig(model_name="test-model", max_inputs=8, warmup=False)


@pytest.fixture(scope="module")
def reranker(tiny_reranker: tuple[Path, Path]) -> Reranker:
    return Reranker(tiny_reranker[1])


@pytest.fixture(scope="module")
def rerank_server(reranker: Reranker):  # type: ignore[no-untyped-def]
    with live_server(reranker, CONFIG) as s:
        yield s


def _post(url: str, body: object) -> httpx.Response:
    return httpx.post(url, json=body, timeout=60)


def test_tei_rerank(rerank_server, reranker: Reranker) -> None:  # type: ignore[no-untyped-def]
    want = reranker.rank("How many people live in Berlin?", DOCS)
    r = _post(f"{rerank_server.url}/rerank", {"query": "How many people live in Berlin?", "texts": DOCS})
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()] == [x["corpus_id"] for x in want] and "text" not in r.json()[0]
    np.testing.assert_allclose([x["score"] for x in r.json()], [x["score"] for x in want], atol=1e-6)
    r = _post(f"{rerank_server.url}/rerank", {"query": "q", "texts": DOCS, "raw_scores": True, "return_text": True})
    raw = reranker.predict([("q", d) for d in DOCS], activation_fn="identity")
    assert [x["text"] for x in r.json()] == [DOCS[x["index"]] for x in r.json()]
    np.testing.assert_allclose([x["score"] for x in r.json()], np.sort(raw)[::-1], atol=1e-5)


def test_cohere_rerank(rerank_server, reranker: Reranker) -> None:  # type: ignore[no-untyped-def]
    docs = [DOCS[0], {"text": DOCS[1]}, DOCS[3]]
    r = _post(f"{rerank_server.url}/v1/rerank", {"model": "x", "query": "Berlin", "documents": docs, "top_n": 2,
                                                  "return_documents": True})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    want = reranker.rank("Berlin", [DOCS[0], DOCS[1], DOCS[3]], top_k=2)
    assert body["model"] == "test-model" and body["id"] and body["usage"]["total_tokens"] > 0
    assert [x["index"] for x in body["results"]] == [w["corpus_id"] for w in want]
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], [w["score"] for w in want], atol=1e-6)
    assert body["results"][0]["document"]["text"] in (DOCS[0], DOCS[1], DOCS[3])
    r = _post(f"{rerank_server.url}/v2/rerank", {"query": "Berlin", "documents": DOCS})
    assert len(r.json()["results"]) == len(DOCS) and "document" not in r.json()["results"][0]


BAD_RERANK = [
    ("/rerank", {"query": "q", "texts": []}, 400, "empty list"),
    ("/rerank", {"query": "q"}, 422, "'texts' is required"),
    ("/rerank", {"texts": ["d"]}, 422, "'query' is required"),
    ("/rerank", {"query": 3, "texts": ["d"]}, 400, "'query' must be a string"),
    ("/rerank", {"query": "q", "texts": "d"}, 400, "wrap one document in a list"),
    ("/rerank", {"query": "q", "texts": ["d", None]}, 400, "texts[1]"),
    ("/rerank", {"query": "q", "texts": ["d"] * 9}, 413, "9 items"),
    ("/rerank", {"query": "q", "texts": ["d", LONG], "truncate": False}, 413, "text 1 is longer than the model's maximum of 40"),
    ("/rerank", {"query": LONG, "texts": ["d"], "truncate": False}, 413, "text 0 is longer"),
    ("/rerank", {"query": "q", "texts": ["d"], "raw_scores": "yes"}, 400, "'raw_scores' must be true or false"),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, "empty list"),
    ("/v1/rerank", {"query": "q"}, 400, "'documents' is required"),
    ("/v1/rerank", {"query": "q", "documents": [{"title": "x"}]}, 400, "without a string 'text'"),
    ("/v1/rerank", {"query": "q", "documents": ["d"], "top_n": 0}, 400, "'top_n' must be a positive integer"),
    ("/v1/embeddings", {"input": "x"}, 424, "needs a bundle of kind 'embedding' or 'static'; this server serves a 'reranker' bundle, whose routes are /rerank, /v1/rerank, /v2/rerank, /tokenize"),
    ("/embed", {"inputs": "x"}, 424, "serves a 'reranker' bundle"),
    ("/embed_sparse", {"inputs": "x"}, 424, "needs a bundle of kind 'sparse'"),
]


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_RERANK, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_RERANK)])
def test_rerank_bad_input(rerank_server, path: str, body: object, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    r = _post(f"{rerank_server.url}{path}", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    message = err if isinstance(err, str) else err["message"]
    assert words in message
    assert _post(f"{rerank_server.url}/rerank", {"query": "still", "texts": ["serving"]}).status_code == 200


def test_long_pairs_are_cut_by_default_and_info(rerank_server, reranker: Reranker) -> None:  # type: ignore[no-untyped-def]
    r = _post(f"{rerank_server.url}/rerank", {"query": LONG, "texts": [LONG, "short"]})
    assert r.status_code == 200
    want = reranker.predict([(LONG, LONG), (LONG, "short")])
    np.testing.assert_allclose(sorted(x["score"] for x in r.json()), sorted(want), atol=1e-6)
    info = httpx.get(f"{rerank_server.url}/info").json()
    assert info["kind"] == "reranker" and info["num_labels"] == 1 and info["activation"] == "sigmoid"
    tokens = _post(f"{rerank_server.url}/tokenize", {"inputs": ["Berlin"]}).json()
    assert [t["id"] for t in tokens[0]] == reranker.tokenizer.encode("Berlin").ids


def test_sparse_server(tiny_sparse: tuple[Path, Path]) -> None:
    model = SparseEncoder(tiny_sparse[1])
    with live_server(model, CONFIG) as s:
        r = _post(f"{s.url}/embed_sparse", {"inputs": DOCS, "prompt_name": "query"})
        assert r.status_code == 200, r.text
        want = model.encode_query(DOCS)
        for row, vec in zip(r.json(), want, strict=True):
            assert [x["index"] for x in row] == vec.indices.tolist()
            np.testing.assert_allclose([x["value"] for x in row], vec.values, atol=1e-6)
        assert len(_post(f"{s.url}/embed_sparse", {"inputs": "one"}).json()) == 1
        texts = [LONG, "one"]
        r = _post(f"{s.url}/embed_chunks", {"inputs": texts, "chunk_tokens": 16, "chunk_overlap": 2, "return_text": True,
                                            "prompt_name": "query"})  # fmt: skip
        assert r.status_code == 200, r.text
        want = model.encode_chunks(texts, chunk_tokens=16, chunk_overlap=2, prompt_name="query")
        flat = [w for windows in r.json() for w in windows]
        assert len(r.json()[0]) > 3 and len(r.json()[1]) == 1 and [w["text"] for w in flat] == want.texts(texts)
        assert [(w["start"], w["end"]) for w in flat] == list(zip(want.start.tolist(), want.end.tolist(), strict=True))
        for w, vec in zip(flat, want.embeddings, strict=True):
            assert [x["index"] for x in w["embedding"]] == vec.indices.tolist()
            np.testing.assert_allclose([x["value"] for x in w["embedding"]], vec.values, atol=1e-6)
        for body, words in [({"inputs": "a", "dimensions": 8}, "'dimensions' applies to dense vectors"),
                            ({"inputs": "a", "normalize": False}, "'normalize' applies to dense vectors"),
                            ({"inputs": "a", "chunk_tokens": 0}, "chunk_tokens must be an integer")]:  # fmt: skip
            r = _post(f"{s.url}/embed_chunks", body)
            assert r.status_code == 400 and words in r.json()["error"], r.text
        for body, status in [({"inputs": []}, 400), ({"input": "x"}, 422), ({"inputs": "x", "prompt_name": "nope"}, 400),
                             ({"inputs": "x", "truncation_direction": "left"}, 400)]:  # fmt: skip
            r = _post(f"{s.url}/embed_sparse", body)
            assert r.status_code == status and r.json()["error_type"], r.text
        r = _post(f"{s.url}/rerank", {"query": "q", "texts": ["d"]})
        assert r.status_code == 424 and "this server serves a 'sparse' bundle" in r.json()["error"]
        assert httpx.get(f"{s.url}/health").status_code == 200


def test_embedding_server_similarity_tokenize_and_packed_formats(tiny_bert_bundle: Path) -> None:
    model = Embedder(tiny_bert_bundle)
    with live_server(model, CONFIG) as s:
        r = _post(f"{s.url}/similarity", {"inputs": {"source_sentence": "a cat", "sentences": DOCS}})
        assert r.status_code == 200, r.text
        vectors = model.encode(["a cat", *DOCS])
        np.testing.assert_allclose(r.json(), model.similarity(vectors[:1], vectors[1:])[0], atol=1e-5)
        for body, status in [({"inputs": {"source_sentence": "a"}}, 422), ({"inputs": {"source_sentence": "a", "sentences": []}}, 400),
                             ({"inputs": "a"}, 422)]:  # fmt: skip
            assert _post(f"{s.url}/similarity", body).status_code == status
        tokens = _post(f"{s.url}/tokenize", {"inputs": ["a cat", LONG]}).json()
        assert [t["id"] for t in tokens[0]] == model.tokenizer.encode("a cat").ids
        assert tokens[0][0]["special"] and tokens[0][0]["start"] is None and tokens[0][1]["text"] == "a"
        assert len(tokens[1]) > model.max_seq_length  # /tokenize shows every token
        big = _post(f"{s.url}/tokenize", {"inputs": [LONG * 4] * 8}).json()  # tokenized off the event loop
        assert len(big) == 8 and len(big[7]) == 4 * len(tokens[1]) - 6
        plain = _post(f"{s.url}/tokenize", {"inputs": "a cat", "add_special_tokens": False}).json()
        assert not any(t["special"] for t in plain[0])
        texts = ["a cat", "two dogs", LONG]
        for fmt in ("binary", "ubinary"):
            r = _post(f"{s.url}/v1/embeddings", {"input": texts, "encoding_format": fmt})
            got = np.array([d["embedding"] for d in r.json()["data"]])
            np.testing.assert_array_equal(got, quantize_embeddings(model.encode(texts), fmt))
        r = _post(f"{s.url}/v1/embeddings", {"input": texts, "encoding_format": "ubinary", "dimensions": 16})
        assert np.array([d["embedding"] for d in r.json()["data"]]).shape == (3, 2)
        for fmt, words in [("int8", "needs calibration ranges"), ("int4", "must be one of 'float', 'base64', 'binary', 'ubinary'")]:
            r = _post(f"{s.url}/v1/embeddings", {"input": texts, "encoding_format": fmt})
            assert r.status_code == 400 and words in r.json()["error"]["message"]
        r = _post(f"{s.url}/rerank", {"query": "q", "texts": ["d"]})
        assert r.status_code == 424 and "serves a 'embedding' bundle" in r.json()["error"]
        assert _post(f"{s.url}/embed", {"inputs": "still serving"}).status_code == 200


def test_embed_chunks(tiny_bert_bundle: Path) -> None:
    model = Embedder(tiny_bert_bundle)
    texts = [LONG, "a cat", "One sentence here. Another one there.\n\nA new paragraph " + LONG]
    with live_server(model, CONFIG) as s:
        r = _post(f"{s.url}/embed_chunks", {"inputs": texts, "chunk_tokens": 16, "chunk_overlap": 2, "return_text": True})
        assert r.status_code == 200, r.text
        body = r.json()
        want = model.encode_chunks(texts, chunk_tokens=16, chunk_overlap=2, normalize=True)
        assert [len(windows) for windows in body] == [want.of(i).stop - want.of(i).start for i in range(3)]
        flat = [w for windows in body for w in windows]
        assert [(w["start"], w["end"]) for w in flat] == list(zip(want.start.tolist(), want.end.tolist(), strict=True))
        assert [w["text"] for w in flat] == want.texts(texts) and len(body[1]) == 1
        np.testing.assert_allclose([w["embedding"] for w in flat], want.embeddings, atol=1e-5)
        r = _post(f"{s.url}/embed_chunks", {"inputs": LONG, "dimensions": 8})  # the model's window, cut vectors
        got = np.array([w["embedding"] for w in r.json()[0]])
        assert got.shape == (len(model.encode_chunks(LONG)), 8) and "text" not in r.json()[0][0]
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
        window = model.max_seq_length
        for body, status, words in [
            ({"chunk_tokens": 16}, 422, "'inputs' is required"),
            ({"inputs": "a", "chunk_tokens": 0}, 400, f"chunk_tokens must be an integer from 1 to {window} (the "
                                                      f"model's max_seq_length) or 'max', got 0"),
            ({"inputs": "a", "chunk_tokens": "all"}, 400, "or 'max', got 'all'"),
            ({"inputs": "a", "chunk_tokens": True}, 400, "or 'max', got True"),
            ({"inputs": "a", "chunk_overlap": -1}, 400, "chunk_overlap must be an integer >= 0, got -1"),
            ({"inputs": "a", "chunk_tokens": 6, "chunk_overlap": 4}, 400, "chunk_tokens=6 leaves 4 tokens"),
            ({"inputs": "a", "prompt_name": "nope"}, 400, "prompt_name 'nope' is not in this bundle's prompts"),
            (b'{"inputs": ["a", "\\ud800"]}', 400, "input 1 is not valid Unicode"),  # JSON may escape a lone surrogate
            ({"inputs": "a", "return_text": "yes"}, 400, "'return_text' must be true or false"),
        ]:  # fmt: skip
            r = (httpx.post(f"{s.url}/embed_chunks", content=body, headers={"content-type": "application/json"})
                 if isinstance(body, bytes) else _post(f"{s.url}/embed_chunks", body))  # fmt: skip
            assert r.status_code == status and words in r.json()["error"], (body, r.text)
        assert _post(f"{s.url}/embed", {"inputs": "still serving"}).status_code == 200
