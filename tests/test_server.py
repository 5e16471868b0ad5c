"""The HTTP server against a live uvicorn on 127.0.0.1: OpenAI client, TEI shape, batching, limits."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from run_threads import count_concurrent_runs  # noqa: E402
from server_helpers import gate_model, live_server, nan_model, post_concurrently  # noqa: E402

from embedrt import Embedder  # noqa: E402
from embedrt.server import ServerConfig  # noqa: E402

ATOL = 1e-5  # merged batches pad differently; another text's vector is ~1e-1 away
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "embedding",
    "vector",
    "server",
    "batch",
    "대한민국",
    "헌법",
    "국민",
    "자유",
]


def _texts(n: int, seed: int, max_words: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) + f" #{seed}-{i}" for i in range(n)]


@pytest.fixture(scope="session")
def server_bundle(request: pytest.FixtureRequest) -> Path:
    """all-MiniLM-L6-v2 fp32 (conftest's ``minilm_bundle``); EMBEDRT_TEST_BUNDLE points at a ready one instead."""
    if os.environ.get("EMBEDRT_TEST_BUNDLE"):
        return Path(os.environ["EMBEDRT_TEST_BUNDLE"])
    return Path(request.getfixturevalue("minilm_bundle"))


@pytest.fixture(scope="session")
def embedder(server_bundle: Path) -> Embedder:
    return Embedder(server_bundle)


@pytest.fixture(scope="module")
def live(embedder: Embedder):
    with live_server(
        embedder, ServerConfig(model_name="test-model", max_inputs=64, max_body_bytes=200_000)
    ) as s:
        yield s


def _vector(value: list[float] | str) -> np.ndarray:
    return (
        np.frombuffer(base64.b64decode(value), dtype="<f4") if isinstance(value, str) else np.asarray(value)
    )


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


# -- OpenAI ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding_format", ["float", "base64", None], ids=["float", "base64", "client-default"]
)
def test_openai_client_matches_encode(live, embedder: Embedder, encoding_format: str | None) -> None:
    texts = [*_texts(7, seed=1), "", "a much longer text " * 200]
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    kw = {"encoding_format": encoding_format} if encoding_format else {}
    r = client.embeddings.create(input=texts, model="test-model", **kw)
    # the client decodes base64 itself only when it chose the format; asked explicitly, it hands the string over
    got = np.array([_vector(d.embedding) for d in r.data], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.encode(texts), atol=ATOL)
    assert [d.index for d in r.data] == list(range(len(texts)))
    assert r.model == "test-model"
    assert r.usage.prompt_tokens == r.usage.total_tokens == int(embedder.tokenize(texts).lengths.sum())


def test_openai_single_string_and_dimensions(live, embedder: Embedder) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    r = client.embeddings.create(input="one sentence", model="test-model")
    assert len(r.data) == 1
    np.testing.assert_allclose(r.data[0].embedding, embedder.encode("one sentence"), atol=ATOL)
    r = client.embeddings.create(
        input=["one sentence", "two"], model="test-model", dimensions=64, encoding_format="float"
    )
    full = embedder.encode(["one sentence", "two"])[:, :64]
    want = full / np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(np.array([d.embedding for d in r.data]), want, atol=ATOL)


def test_openai_base64_is_little_endian_float32(live, embedder: Embedder) -> None:
    body = httpx.post(f"{live.url}/v1/embeddings", json={"input": ["x"], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, embedder.encode("x"), atol=ATOL)


def test_float_json_reads_back_to_the_exact_float32_vectors(live) -> None:
    """Float JSON carries each float32 value exactly, in its shortest decimals (not float64's 17 digits)."""
    texts = _texts(6, seed=3)
    exact = np.array(
        [_vector(d["embedding"]) for d in httpx.post(f"{live.url}/v1/embeddings", json={
            "input": texts, "encoding_format": "base64"}).json()["data"]]
    )  # fmt: skip
    r = httpx.post(f"{live.url}/v1/embeddings", json={"input": texts, "encoding_format": "float"})
    np.testing.assert_array_equal(np.array([d["embedding"] for d in r.json()["data"]], np.float32), exact)
    tei = httpx.post(f"{live.url}/embed", json={"inputs": texts})
    np.testing.assert_array_equal(np.array(tei.json(), np.float32), exact)
    numbers = re.findall(rb"-?\d[\d.e+-]*", tei.content)
    assert max(len(n.lstrip(b"-").split(b"e")[0].replace(b".", b"").lstrip(b"0")) for n in numbers) <= 9


def test_non_finite_model_output_is_a_500_and_the_server_goes_on(embedder: Embedder) -> None:
    with live_server(embedder, ServerConfig(warmup=False)) as s:
        with nan_model(s.state):
            r = httpx.post(f"{s.url}/v1/embeddings", json={"input": "x"}, timeout=30)
            assert r.status_code == 500 and r.json()["error"]["code"] == "non_finite_output", r.text
            r = httpx.post(f"{s.url}/embed", json={"inputs": ["x"]}, timeout=30)
            assert r.status_code == 500 and "NaN" in r.json()["error"], r.text
        assert httpx.post(f"{s.url}/v1/embeddings", json={"input": "x"}, timeout=30).status_code == 200


# -- TEI ------------------------------------------------------------------------------------------------


def test_tei_embed(live, embedder: Embedder) -> None:
    texts = _texts(5, seed=2)
    r = httpx.post(f"{live.url}/embed", json={"inputs": texts})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json(), dtype=np.float32), embedder.encode(texts), atol=ATOL)
    r = httpx.post(f"{live.url}/embed", json={"inputs": "single", "normalize": False, "truncate": True})
    assert np.array(r.json()).shape == (1, embedder.dimension)
    r = httpx.post(f"{live.url}/embed", json={"inputs": ["x"], "dimensions": 16})
    assert np.linalg.norm(r.json()[0]) == pytest.approx(1.0, abs=1e-5) and len(r.json()[0]) == 16
    r = httpx.post(f"{live.url}/embed", json={"inputs": ["x"], "dimensions": 16, "normalize": False})
    np.testing.assert_allclose(r.json()[0], embedder.encode("x")[:16], atol=ATOL)  # cut, as asked: not re-normalized


def test_huggingface_hub_inference_client(live, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TEI client most people use: it posts {"inputs": ...} to the server's root."""
    hub = pytest.importorskip("huggingface_hub")
    # conftest sets HF_HUB_OFFLINE, which blocks every URL, loopback too; this one is our own server
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    client = hub.InferenceClient(model=live.url, timeout=60)
    got = client.feature_extraction(["first text", "second one"], normalize=True, truncate=True)
    np.testing.assert_allclose(np.asarray(got), embedder.encode(["first text", "second one"]), atol=ATOL)
    with pytest.raises(Exception, match="truncation_direction"):
        client.feature_extraction("x", truncation_direction="left")


def test_too_long_input_truncates_by_default_and_413_when_told_not_to(live, embedder: Embedder) -> None:
    long = "word " * 2000
    r = httpx.post(f"{live.url}/embed", json={"inputs": [long]})
    assert r.status_code == 200
    np.testing.assert_allclose(r.json()[0], embedder.encode(long), atol=ATOL)
    r = httpx.post(f"{live.url}/embed", json={"inputs": ["short", long], "truncate": False})
    assert r.status_code == 413 and "input 1" in r.json()["error"] and r.json()["error_type"] == "Validation"
    r = httpx.post(f"{live.url}/v1/embeddings", json={"input": [long], "truncate": False})
    assert r.status_code == 413 and r.json()["error"]["code"] == "input_too_long"


# -- bad input -----------------------------------------------------------------------------------------

BAD = [
    ("malformed-json", b'{"input": ["a", ', 400, "not valid JSON"),
    ("not-utf8", b'{"input": "\xff\xfe"}', 400, "UTF-8"),
    ("empty-body", b"", 400, "empty"),
    ("lone-surrogate", b'{"input": ["ok", "\\ud800"]}', 400, "input 1 is not valid Unicode"),
    ("not-an-object", b'["a"]', 400, "JSON object"),
    ("missing-input", b'{"model": "m"}', 400, "'input' is required"),
    ("input-number", b'{"input": 5}', 400, "string or a list of strings"),
    ("input-object", b'{"input": {"a": 1}}', 400, "string or a list of strings"),
    ("empty-list", b'{"input": []}', 400, "empty list"),
    ("mixed-types", b'{"input": ["a", 1.5]}', 400, "input[1]"),
    ("null-item", b'{"input": ["a", null]}', 400, "'input[1]' must be a string, got null"),
    ("stray-number", b'{"input": ["a", 3]}', 400, "'input[1]' must be a string, got a number"),
    ("number-first", b'{"input": [3, "a"]}', 400, "'input[0]' must be a string, got a number"),
    ("tei-field", b'{"inputs": ["a"]}', 400, "this body has 'inputs', the TEI field"),
    ("token-ids", b'{"input": [1, 2, 3]}', 400, "token ids"),
    ("token-id-lists", b'{"input": [[1, 2], [3]]}', 400, "token ids"),
    ("bad-format", b'{"input": "a", "encoding_format": "int8"}', 400, "encoding_format"),
    ("dimensions-zero", b'{"input": "a", "dimensions": 0}', 400, "dimensions"),
    ("dimensions-too-big", b'{"input": "a", "dimensions": 100000}', 400, "dimensions"),
    ("dimensions-string", b'{"input": "a", "dimensions": "8"}', 400, "dimensions"),
    ("model-number", b'{"input": "a", "model": 3}', 400, "model"),
    ("truncate-string", b'{"input": "a", "truncate": "no"}', 400, "truncate"),
    ("unknown-prompt", b'{"input": "a", "prompt_name": "nope"}', 400, "prompt"),
    ("too-many-inputs", b'{"input": [' + b",".join([b'"a"'] * 65) + b"]}", 413, "65 items"),
    ("body-too-large", b'{"input": "' + b"a" * 300_000 + b'"}', 413, "larger than"),
    ("huge-integer", b'{"input": "a", "dimensions": ' + b"9" * 5000 + b"}", 400, "number JSON cannot carry"),
]


@pytest.mark.parametrize(("body", "status", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_in_openai_shape(live, body: bytes, status: int, words: str) -> None:
    r = httpx.post(f"{live.url}/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] and err["type"] == "invalid_request_error"
    assert httpx.get(f"{live.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{", 400),
        (b'{"inputs": []}', 400),
        (b'{"input": "a"}', 400),
        (b'{"inputs": "a", "normalize": 1}', 400),
        (b'{"inputs": ["a", 3]}', 400),
        (b'{"inputs": "a", "dimensions": "8"}', 400),
    ],
)
def test_bad_requests_get_4xx_in_tei_shape(live, body: bytes, status: int) -> None:
    """One rule on both APIs: a request the server cannot use is a 400 (TEI itself says 422 for a body
    that does not match its schema); the limits are 413."""
    r = httpx.post(f"{live.url}/embed", content=body)
    assert r.status_code == status and r.json()["error"] and r.json()["error_type"] == "Validation"


def test_tei_body_sent_with_the_openai_field_says_so(live) -> None:
    r = httpx.post(f"{live.url}/embed", json={"input": ["a"]})
    assert r.status_code == 400 and "this body has 'input', the OpenAI field" in r.json()["error"]


def test_unknown_model_is_404_model_not_found_as_openai_answers(live) -> None:
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(input=["x"], model="text-embedding-3-small")
    assert e.value.status_code == 404 and e.value.code == "model_not_found"
    body = httpx.post(f"{live.url}/v1/embeddings", json={"input": "x", "model": "nope"}).json()
    assert body["error"]["code"] == "model_not_found" and body["error"]["type"] == "invalid_request_error"
    assert "'nope' is not served here" in body["error"]["message"] and "test-model" in body["error"]["message"]
    assert httpx.post(f"{live.url}/v1/embeddings", json={"input": "x"}).status_code == 200  # 'model' left out
    assert httpx.post(f"{live.url}/embed", json={"inputs": "x", "model": "nope"}).status_code == 200  # TEI has none


def test_served_model_names_are_accepted_and_listed(embedder: Embedder) -> None:
    config = ServerConfig(model_name="minilm", aliases=("text-embedding-3-small", "minilm"))
    with live_server(embedder, config) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)
        for name in ("minilm", "text-embedding-3-small"):
            r = client.embeddings.create(input=["x"], model=name)
            assert r.model == "minilm" and len(r.data) == 1
        assert [m.id for m in client.models.list().data] == ["minilm", "text-embedding-3-small"]
        assert httpx.get(f"{s.url}/info").json()["served_model_names"] == ["minilm", "text-embedding-3-small"]
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(input=["x"], model="other")


def test_chunked_body_over_the_limit_is_413(live) -> None:
    def chunks():  # no Content-Length: the limit is enforced while reading
        yield b'{"input": "'
        for _ in range(30):
            yield b"a" * 10_000
        yield b'"}'

    r = httpx.post(f"{live.url}/v1/embeddings", content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert httpx.get(f"{live.url}/health").status_code == 200


def test_unknown_route_and_method(live) -> None:
    assert httpx.get(f"{live.url}/nope").json()["error"]["code"] == "not_found"
    r = httpx.get(f"{live.url}/v1/embeddings")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"]["type"]
    r = httpx.get(f"{live.url}/embed")  # a TEI route answers in TEI's shape
    assert r.status_code == 405 and r.json()["error_type"] and "GET /embed" in r.json()["error"]


# -- health, info, metrics ---------------------------------------------------------------------------


def test_info_and_models(live, embedder: Embedder) -> None:
    info = httpx.get(f"{live.url}/info").json()
    assert info["model"] == "test-model" and info["dimension"] == embedder.dimension
    assert info["precision"] == "fp32" and info["providers"] == ["CPUExecutionProvider"]
    assert info["int8_on_this_cpu"] is None and info["precision_hint"] is None
    assert info["max_input_length"] == embedder.max_seq_length and info["limits"]["max_inputs"] == 64
    assert info["streams"] == 1
    assert httpx.get(f"{live.url}/v1/models").json()["data"][0]["id"] == "test-model"


def test_cpu_streams_answer_concurrent_requests_with_the_same_vectors(server_bundle: Path, embedder: Embedder) -> None:
    """Two CPU streams (one shared onnxruntime session, two runs at once): every request gets its own
    vectors, and two pieces of merged batches are in the model at once, never more."""
    model = Embedder(server_bundle, threads=2, streams=2)
    texts = [[f"{t} {i}", f"request {i} " * (1 + i % 4)] for i, t in enumerate(_texts(48, seed=9, max_words=12))]
    most = count_concurrent_runs(model)
    with live_server(model, ServerConfig(model_name="m", max_wait_ms=0)) as s:
        assert s.state.batcher._streams == 2 and httpx.get(f"{s.url}/info").json()["streams"] == 2
        got = post_concurrently(s.url, texts)
        lone = httpx.post(f"{s.url}/v1/embeddings", json={"input": texts[0]}).json()["data"]
    for batch, vectors in zip(texts, got, strict=True):
        np.testing.assert_allclose(vectors, embedder.encode(batch), atol=ATOL)
    np.testing.assert_allclose([d["embedding"] for d in lone], embedder.encode(texts[0]), atol=ATOL)
    assert most[0] == 2
    assert model._solo is not None  # a lone request ran on the session of both threads


def test_health_is_not_ready_before_warmup(embedder: Embedder) -> None:
    from starlette.testclient import TestClient

    from embedrt.server import create_app

    client = TestClient(create_app(embedder))  # no `with`: the lifespan (load check, warm-up) has not run
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "starting"


def test_metrics_exposes_counts(live) -> None:
    httpx.post(f"{live.url}/embed", json={"inputs": ["count me"]})
    text = httpx.get(f"{live.url}/metrics").text
    for name in (
        "embedrt_requests_total",
        "embedrt_request_duration_seconds_bucket",
        "embedrt_batch_inputs_bucket",
        "embedrt_queue_depth",
        "embedrt_tokens_total",
        "embedrt_inference_duration_seconds_bucket",
    ):
        assert name in text


# -- concurrency and batching --------------------------------------------------------------------------

_BROKEN = [b'{"input": ["a", ', b'{"input": [1, 2]}', b'{"input": []}', b"\xff{", b'{"inputs": 3}']


def test_concurrent_clients_get_their_own_vectors_and_batches_merge(live, embedder: Embedder) -> None:
    # 32 clients x 20 requests; short texts keep it quick on a busy 2-core machine, sizes 1..3 with some 16s
    pool = _texts(200, seed=3, max_words=5)
    expected = embedder.encode(pool)
    rng = random.Random(4)

    def size() -> int:
        return 16 if rng.random() < 0.05 else rng.randint(1, 3)

    plans = [[(rng.sample(range(len(pool)), size()), rng.random()) for _ in range(20)] for _ in range(32)]
    batches_before = _metric(live.url, "embedrt_batch_requests_count")
    failures: list[str] = []

    async def one_client(client: httpx.AsyncClient, plan: list[tuple[list[int], float]]) -> int:
        valid = 0
        for k, (rows, roll) in enumerate(plan):
            if roll < 0.15:  # a broken request among the valid ones
                r = await client.post("/v1/embeddings", content=_BROKEN[k % len(_BROKEN)])
                if not 400 <= r.status_code < 500:
                    failures.append(f"broken request got {r.status_code}: {r.text[:200]}")
                continue
            valid += 1
            texts = [pool[i] for i in rows]
            if roll < 0.6:
                r = await client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
                got = [_vector(d["embedding"]) for d in r.json()["data"]] if r.status_code == 200 else []
            else:
                r = await client.post("/embed", json={"inputs": texts})
                got = r.json() if r.status_code == 200 else []
            if r.status_code != 200:
                failures.append(f"valid request got {r.status_code}: {r.text[:200]}")
            elif not np.allclose(np.array(got, dtype=np.float32), expected[rows], atol=ATOL):
                failures.append(f"request for rows {rows} got other vectors")
        return valid

    async def main() -> int:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=120) as client:
            return sum(await asyncio.gather(*(one_client(client, plan) for plan in plans)))

    valid = asyncio.run(main())
    assert not failures, failures[:5]
    batches = _metric(live.url, "embedrt_batch_requests_count") - batches_before
    assert 0 < batches < valid, f"{valid} requests ran in {batches} model batches: nothing was merged"
    assert httpx.get(f"{live.url}/health").status_code == 200


def test_full_queue_answers_503_with_retry_after(embedder: Embedder) -> None:
    with live_server(embedder, ServerConfig(max_queue=2, warmup=False)) as s:
        entered, release = gate_model(s.state)
        results: list[httpx.Response] = []

        def post(text: str) -> None:
            results.append(httpx.post(f"{s.url}/embed", json={"inputs": [text]}, timeout=60))

        threads = [threading.Thread(target=post, args=("running",))]
        threads[0].start()
        assert entered.wait(30)
        for text in ("queued 1", "queued 2"):
            threads.append(threading.Thread(target=post, args=(text,)))
            threads[-1].start()
        for _ in range(3000):  # bounded: 30 s on a busy machine
            if s.state.batcher.depth == 2:
                break
            time.sleep(0.01)
        r = httpx.post(f"{s.url}/v1/embeddings", json={"input": "one too many"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "overloaded"
        release.set()
        for t in threads:
            t.join(60)
        assert [x.status_code for x in results] == [200, 200, 200]
        assert _metric(s.url, "embedrt_queue_rejected_total") == 1


def test_request_timeout_answers_504_and_the_server_recovers(embedder: Embedder) -> None:
    with live_server(embedder, ServerConfig(request_timeout_s=0.3, warmup=False)) as s:
        _entered, release = gate_model(s.state)
        r = httpx.post(f"{s.url}/v1/embeddings", json={"input": "slow"}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        release.set()
        r = httpx.post(f"{s.url}/v1/embeddings", json={"input": "fast again"}, timeout=30)
        assert r.status_code == 200


def test_a_client_that_leaves_is_not_run_nor_counted_as_a_server_error(embedder: Embedder) -> None:
    """A client gone while its request waits for the model: its texts are not run. A client gone while
    sending its body: no 500, no traceback. Both count as 499 (client closed request)."""
    import socket

    with live_server(embedder, ServerConfig(warmup=False)) as s:
        entered, release = gate_model(s.state)
        calls: list[int] = []
        gated = s.state.batcher._encode
        s.state.batcher._encode = lambda tok, alone: (calls.append(len(tok)), gated(tok, alone))[1]
        first: list[httpx.Response] = []
        t = threading.Thread(target=lambda: first.append(httpx.post(f"{s.url}/embed", json={"inputs": "a"}, timeout=60)))
        t.start()
        assert entered.wait(30)
        host, port = s.url.removeprefix("http://").split(":")
        body = b'{"inputs": ["left", "before", "its turn"]}'
        with socket.create_connection((host, int(port))) as c:
            c.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            for _ in range(3000):  # bounded: 30 s on a busy machine
                if s.state.batcher.depth == 1:
                    break
                time.sleep(0.01)
            assert s.state.batcher.depth == 1
        with socket.create_connection((host, int(port))) as c:  # gone halfway through its body
            c.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\": ")
            time.sleep(0.2)
        for _ in range(3000):
            if _metric(s.url, 'embedrt_requests_total{endpoint="embed",status="499"}') == 2:
                break
            time.sleep(0.01)
        release.set()
        t.join(60)
        assert first[0].status_code == 200
        assert httpx.post(f"{s.url}/embed", json={"inputs": "next"}, timeout=60).status_code == 200
        assert calls == [1, 1]  # the first request, then the next: the three texts of the one gone never ran
        assert _metric(s.url, "embedrt_abandoned_inputs_total") == 3
        assert _metric(s.url, 'embedrt_requests_total{endpoint="embed",status="499"}') == 2
        assert _metric(s.url, 'embedrt_request_errors_total{endpoint="embed",kind="internal"}') == 0


def test_graceful_shutdown_finishes_in_flight_and_refuses_new(embedder: Embedder) -> None:
    with live_server(embedder, ServerConfig(warmup=False)) as s:
        entered, release = gate_model(s.state)
        results: list[httpx.Response] = []
        t = threading.Thread(
            target=lambda: results.append(
                httpx.post(f"{s.url}/embed", json={"inputs": ["in flight"]}, timeout=60)
            )
        )
        t.start()
        assert entered.wait(30)
        s.state.begin_drain()  # what `embedrt serve` does on SIGTERM, before uvicorn stops listening
        s.server.should_exit = True
        time.sleep(0.5)
        try:
            refused = httpx.post(f"{s.url}/embed", json={"inputs": ["new"]}, timeout=5).status_code == 503
        except httpx.TransportError:
            refused = True
        assert refused
        release.set()
        t.join(60)
        assert results[0].status_code == 200 and len(results[0].json()) == 1


# -- API key ---------------------------------------------------------------------------------------------


def test_api_key_guards_everything_but_health(embedder: Embedder) -> None:
    with live_server(embedder, ServerConfig(api_key="s3cret", warmup=False)) as s:
        assert httpx.get(f"{s.url}/health").status_code == 200
        for path in ("/info", "/metrics", "/v1/models"):
            assert httpx.get(f"{s.url}{path}").status_code == 401
        r = httpx.post(f"{s.url}/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error_type"]
        assert httpx.get(f"{s.url}/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{s.url}/v1", api_key="wrong", max_retries=0).embeddings.create(
                input="x", model="m"
            )
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="s3cret", max_retries=0)
        assert len(client.embeddings.create(input=["x", "y"], model="embedrt").data) == 2
    with live_server(embedder, ServerConfig(api_key="clé-ü", warmup=False)) as s:  # sent as UTF-8 bytes, as curl does
        assert httpx.get(f"{s.url}/info", headers={"Authorization": "Bearer clé-ü".encode()}).status_code == 200
        assert httpx.get(f"{s.url}/info", headers={"Authorization": "Bearer cle-u"}).status_code == 401


# -- the command, as a user runs it ---------------------------------------------------------------------


def test_serve_command_end_to_end(server_bundle: Path, embedder: Embedder) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "EMBEDRT_API_KEY": "from-env"}
    cmd = [
        sys.executable,
        "-m",
        "embedrt.server",
        str(server_bundle),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # bounded: 60 s
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.1)
        auth = {"Authorization": "Bearer from-env"}
        assert httpx.get(f"{url}/info").status_code == 401
        r = httpx.post(f"{url}/embed", json={"inputs": ["hello"]}, headers=auth)
        np.testing.assert_allclose(r.json()[0], embedder.encode("hello"), atol=ATOL)
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is the clean exit
        assert proc.wait(60) in (0, -signal.SIGTERM)


def test_server_modules_do_not_import_torch() -> None:
    code = (
        "import sys, embedrt.server, embedrt.server._app; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_parser_defaults_to_loopback() -> None:
    import argparse

    from embedrt.server import ServerConfig, add_serve_parser, run_serve
    from embedrt.server._cli import config_from_args

    parser = argparse.ArgumentParser(prog="embedrt")
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "some/bundle"])
    defaults = (args.host, args.port, args.device, args.batching, args.run)
    assert defaults == ("127.0.0.1", 8080, "auto", True, run_serve)
    config = config_from_args(args, {"name": "all-MiniLM-L6-v2"})
    assert config == ServerConfig(model_name="all-MiniLM-L6-v2", api_key=config.api_key)
    args = parser.parse_args(["serve", "b", "--no-batching", "--max-run-tokens", "512", "--no-auto-truncate"])
    config = config_from_args(args, {"name": "model", "path": "/x/model"})
    assert (config.batching, config.max_run_tokens, config.auto_truncate) == (False, 512, False)
    assert config.model_name == "b"  # generic source folder names fall back to the bundle's
    assert not args.no_verify
    args = parser.parse_args(["serve", "b", "--served-model-name", "x", "--served-model-name", "y", "--no-verify"])
    config = config_from_args(args, {"name": "minilm"})
    assert config.served_names == ("minilm", "x", "y") and args.no_verify
