"""The Starlette app: routes, auth, limits, and the glue between HTTP and the batcher."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from .._cache import VectorCache, distinct_items, first_places, token_keys
from .._embedder import Embedder
from .._reranker import Reranker
from .._sparse_encoder import SparseEncoder
from .._tokenize import Tokenized
from ._batcher import Batcher, QueueFullError, ShuttingDownError
from ._config import ServerConfig
from ._metrics import CONTENT_TYPE, Metrics
from ._protocol import (
    ApiError,
    EmbedRequest,
    openai_body,
    parse_json_body,
    parse_openai,
    parse_tei,
    postprocess,
)
from ._routes import KIND_ROUTES, kind_handlers, kind_info, model_call, warm_up, wrong_kind

log = logging.getLogger("embedrt.server")

Model = Embedder | Reranker | SparseEncoder

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")
_BIG_TEXT_CHARS = 20_000  # tokenize bigger requests off the event loop
_BIG_RESPONSE_FLOATS = 200_000  # serialize bigger responses off the event loop
_WARMUP_TEXTS = ["warm up", "a longer sentence to warm up the model with a second, padded row"]


class ServerState:
    """The model, its batcher and the server's readiness; one per app, at ``app.state.embedrt``.

    The model is an ``Embedder``, a ``Reranker`` or a ``SparseEncoder``; its kind decides what one
    batcher run computes (``_routes.model_call``) and which routes the app serves.
    """

    def __init__(self, model: Model, config: ServerConfig) -> None:
        self.model = model
        self.config = config
        self.metrics = Metrics()
        self.batcher = Batcher(
            self._encode,
            self.metrics,
            batching=config.batching,
            max_batch_tokens=config.max_batch_tokens,
            max_wait_s=config.max_wait_ms / 1000,
            max_queue=config.max_queue,
            max_rows=config.batch_size,
            max_run_tokens=config.max_run_tokens or model.max_batch_tokens or config.max_batch_tokens,
            streams=model.streams,  # the model's concurrent runs: each batch's pieces, that many at once
            solo=model.lone_runs_take_all_threads,  # CPU streams: a lone request on all the threads
        )
        self.cache = VectorCache(int(config.cache_mb * 2**20)) if config.cache_mb else None
        if self.cache is not None:
            cache = self.cache
            self.metrics.cache_bytes.set_function(lambda: cache.bytes)
            self.metrics.cache_entries.set_function(lambda: len(cache))
        self.ready = False
        self.draining = False

    def _encode(self, tok: Tokenized, alone: bool) -> np.ndarray:
        """One model run (the batcher cut it to rows of similar length). With CPU streams a lone
        request's pieces run on all the threads, and pieces that run together on one stream's each,
        as the batcher cut them."""
        with self.model.all_threads() if alone else self.model.batches_as_cut():
            return model_call(self.model, tok)

    def begin_drain(self) -> None:
        """Refuse new requests from now on; those already in flight finish."""
        self.draining = True
        self.metrics.ready.set(0)

    async def start(self) -> None:
        self.batcher.start()
        if self.config.warmup:
            await self.batcher.run_in_model_thread(lambda: warm_up(self.model, _WARMUP_TEXTS))
        self.ready = True
        self.metrics.ready.set(1)
        log.info("embedrt server ready: %r", self.model)

    async def stop(self) -> None:
        self.begin_drain()
        self.ready = False
        await self.batcher.stop()

    async def prepare(
        self, req: EmbedRequest | Any, tokenize: Callable[[], Tokenized] | None = None, what: str = "input"
    ) -> Tokenized:
        """Tokenize ``req`` once: the token-limit check, the usage count and the model input.

        ``tokenize`` replaces the model's ``tokenize(req.texts, prompt_name=...)`` (rerankers tokenize pairs).
        """
        tok = await self._tokenize(req, tokenize)
        if not req.truncate and tok.truncated.any():
            first = int(np.flatnonzero(tok.truncated)[0])
            raise ApiError(
                413,
                f"{what} {first} is longer than the model's maximum of {self.model.max_seq_length} tokens: "
                'shorten it, or send "truncate": true to cut it',
                code="input_too_long",
            )
        m = self.metrics
        m.inputs.inc(len(tok))
        m.tokens.inc(int(tok.lengths.sum()))
        m.truncated.inc(int(tok.truncated.sum()))
        return tok

    async def run(self, req: EmbedRequest, tok: Tokenized, request: Request) -> np.ndarray:
        """The vectors of ``req``, through the batcher, post-processed (dimensions, normalize)."""
        assert isinstance(self.model, Embedder)
        return postprocess(await self.run_model(tok, request), req, self.model.manifest.normalize)

    async def run_model(self, tok: Tokenized, request: Request | None) -> np.ndarray:
        """The model's rows for ``tok`` (see ``_routes.model_call``): those the cache holds (if the
        server keeps one), the others through the batcher. If the client of ``request`` disconnects
        while it waits, its rows are not run (nobody would read them); a small request to an idle
        server runs at once, unwatched."""
        if self.cache is None:
            return await self._run_model(tok, request)
        found = self.cache.lookup(token_keys(tok))
        self.metrics.cache_hits.inc(len(found.held))
        if not len(found.missing):
            return self.cache.complete(found, None)  # type: ignore[return-value]
        _, of = distinct_items([found.keys[i] for i in found.missing.tolist()])  # an input twice runs once
        rows = found.missing if of is None else found.missing[first_places(of)]
        fresh = tok if len(rows) == len(tok) else tok.select(rows.tolist())
        raw = await self._run_model(fresh, request)
        return self.cache.complete(found, raw if of is None else raw[of])  # type: ignore[return-value]

    async def _run_model(self, tok: Tokenized, request: Request | None) -> np.ndarray:
        try:
            raw = await asyncio.wait_for(self._submit(tok, request), self.config.request_timeout_s)
        except QueueFullError as e:
            raise ApiError(
                503,
                f"{e}: retry shortly",
                kind="server_error",
                code="overloaded",
                headers={"Retry-After": "1"},
            ) from e
        except ShuttingDownError as e:
            raise ApiError(503, str(e), kind="server_error", code="shutting_down") from e
        except asyncio.TimeoutError as e:
            raise ApiError(
                504,
                f"the request did not finish within {self.config.request_timeout_s:g} s",
                kind="server_error",
                code="timeout",
            ) from e
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            log.error("the model returned NaN or infinite values for a batch of %d inputs", len(tok))
            raise ApiError(
                500,
                "the model returned NaN or infinite values for this input; see the server log",
                kind="server_error",
                code="non_finite_output",
            )
        return raw

    async def _submit(self, tok: Tokenized, request: Request | None) -> np.ndarray:
        if request is None or not self.batcher.would_wait(tok):  # idle and small: no watcher task to pay for
            return await self.batcher.submit(tok)
        job = asyncio.ensure_future(self.batcher.submit(tok))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait((job, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not job.done():  # the client left, or the timeout: the batcher skips a cancelled job
                job.cancel()
        if job not in done:
            raise _client_gone("before its response was ready")
        return job.result()

    @staticmethod
    async def sized(texts: Sequence[str], fn: Callable[[], T]) -> T:
        """``fn()`` (tokenizing ``texts``), on a thread when they are big enough to stall the event loop."""
        if sum(map(len, texts)) > _BIG_TEXT_CHARS:
            return await asyncio.to_thread(fn)
        return fn()

    async def _tokenize(self, req: EmbedRequest | Any, tokenize: Callable[[], Tokenized] | None) -> Tokenized:
        def run() -> Tokenized:
            if tokenize is not None:
                return tokenize()
            return self.model.tokenize(req.texts, prompt_name=req.prompt_name)  # type: ignore[union-attr]

        try:
            return await self.sized(req.texts, run)
        except (TypeError, ValueError) as e:
            # JSON can carry lone surrogates ("\ud800") the tokenizer refuses; else an unknown prompt_name
            bad = next((i for i, t in enumerate(req.texts) if not _encodable(t)), None)
            if bad is not None:
                raise ApiError(
                    400, f"input {bad} is not valid Unicode (it holds a lone surrogate): send real text"
                ) from e
            if isinstance(e, TypeError):
                raise
            raise ApiError(400, str(e), param="prompt_name") from e

    def info(self) -> dict[str, Any]:
        e, m = self.model, self.model.manifest
        return {
            "model": self.config.model_name,
            "model_id": self.config.model_name,
            "served_model_names": list(self.config.served_names),
            "version": __version__,
            "kind": m.kind.value,
            "architecture": m.source.get("architecture"),
            **kind_info(e),
            "max_input_length": e.max_seq_length,
            "precision": m.precision.value,
            "int8_on_this_cpu": e.int8_plan.text if e.int8_plan else None,  # how the u8s8 products run here
            "device": e.device.value,
            "device_choice": e.device_choice,  # why this device ("auto": the bundle's preferred setting or cpu)
            "precision_hint": e.precision_hint.value if e.precision_hint else None,  # OpenVINO's compute precision
            "providers": e.providers,
            "threads": e.threads,
            "streams": e.streams,
            "prompts": e.prompts,
            "max_client_batch_size": self.config.max_inputs,
            "cache_mb": self.config.cache_mb,
            "limits": self.config.limits(),
        }


def create_app(model: Model, config: ServerConfig | None = None) -> Starlette:
    """The HTTP app serving ``model`` (an ``Embedder``, ``Reranker`` or ``SparseEncoder``: its kind
    decides the routes, see ``_routes``). Run it with any ASGI server (``embedrt serve`` uses uvicorn)."""
    config = config or ServerConfig()
    state = ServerState(model, config)
    limits: dict[str, Any] = {
        "dimension": model.dimension if isinstance(model, Embedder) else 0,
        "max_inputs": config.max_inputs,
        "auto_truncate": config.auto_truncate,
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    async def read_json(request: Request) -> dict[str, Any]:
        return parse_json_body(await _read_body(request, config.max_body_bytes))

    async def embeddings(request: Request) -> Response:
        with state.batcher.arriving():  # a batch forming now waits for this request
            req = parse_openai(await read_json(request), **limits, model_names=config.served_names)
            tok = await state.prepare(req)
        vectors = await state.run(req, tok, request)
        body = openai_body(vectors, req.base64, config.model_name, int(tok.lengths.sum()), req.packed)
        return await _json(body, vectors.size)

    async def embed(request: Request) -> Response:
        with state.batcher.arriving():
            req = parse_tei(await read_json(request), **limits)
            tok = await state.prepare(req)
        vectors = await state.run(req, tok, request)
        return await _json(vectors, vectors.size)

    async def health(request: Request) -> Response:
        if state.ready and not state.draining and state.batcher.running:
            return _plain_json({"status": "ok"})
        status = "draining" if state.draining else "failed" if state.ready else "starting"
        return _plain_json({"status": status}, 503)

    async def info(request: Request) -> Response:
        return _plain_json(state.info())

    async def models(request: Request) -> Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "embedrt"} for name in config.served_names]
        return _plain_json({"object": "list", "data": data})

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    handlers = {"embeddings": embeddings, "embed": embed, **kind_handlers(state, read_json, _json)}
    table = [
        (path, method, name, handlers[name] if model.kind in kinds else wrong_kind(model.kind, path, kinds), tei)
        for path, method, name, kinds, tei in KIND_ROUTES
    ]
    table += [
        ("/tokenize", "POST", "tokenize", handlers["tokenize"], True),
        ("/health", "GET", "health", health, False),
        ("/info", "GET", "info", info, False),
        ("/v1/models", "GET", "models", models, False),
        ("/metrics", "GET", "metrics", metrics, False),
    ]
    public = {"health"}
    tei_paths = {path for path, _, _, _, tei in table if tei}
    routes = [
        Route(path, _guarded(state, name, fn, tei=tei, public=name in public), methods=[method], name=name)
        for path, method, name, fn, tei in table
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        err = ApiError(
            exc.status_code,
            f"{request.method} {request.url.path}: {exc.detail}",
            code="not_found" if exc.status_code == 404 else None,
        )
        body = err.tei_body() if request.url.path in tei_paths else err.openai_body()  # GET /embed: TEI's shape
        return _plain_json(body, exc.status_code, {**(exc.headers or {}), **err.headers})  # 405: Allow

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.embedrt = state
    return app


def _guarded(state: ServerState, name: str, fn: Handler, *, tei: bool, public: bool) -> Handler:
    """``fn`` behind the API key and the drain switch, with errors in the API's shape and metrics."""
    m = state.metrics
    key = state.config.api_key.encode("utf-8") if state.config.api_key else None

    async def handle(request: Request) -> Response:
        start = time.perf_counter()
        m.in_flight.inc()
        try:
            if key is not None and not public:
                _check_key(request, key)
            if state.draining and not public:
                raise ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down")
            response = await fn(request)
        except ApiError as e:
            response = _plain_json(e.tei_body() if tei else e.openai_body(), e.status, e.headers)
            m.errors.labels(name, e.code or e.kind).inc()
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            err = ApiError(500, "internal error while embedding; see the server log", kind="server_error")
            response = _plain_json(err.tei_body() if tei else err.openai_body(), 500)
            m.errors.labels(name, "internal").inc()
        finally:
            m.in_flight.dec()
        m.requests.labels(name, str(response.status_code)).inc()
        m.latency.labels(name).observe(time.perf_counter() - start)
        return response

    return handle


def _check_key(request: Request, key: bytes) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # headers arrive decoded as latin-1: back to the bytes sent, which a client sends as UTF-8
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1"), key):
        raise ApiError(
            401,
            "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def _read_body(request: Request, limit: int) -> bytes:
    too_big = ApiError(
        413, f"the request body is larger than this server's limit of {limit} bytes", code="body_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_big
        except ValueError as e:
            raise ApiError(400, f"bad Content-Length header {declared!r:.40}") from e
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
    except ClientDisconnect as e:
        raise _client_gone("while sending its body") from e
    return bytes(body)


def _client_gone(when: str) -> ApiError:
    """What a request whose client left is logged as (nobody reads it): 499, as nginx logs it."""
    return ApiError(499, f"the client closed the connection {when}", code="client_closed_request")


async def _disconnected(request: Request) -> None:
    """Returns once the client has disconnected (the body was read already, so the next ASGI message
    is ``http.disconnect``, which the server sends when the connection closes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dumps(body: Any) -> bytes:
    """Compact UTF-8 JSON; numpy float32 arrays are written as the shortest decimals that read back to
    the same float32 values (as TEI's serde does), 20-23x faster than ``json`` over ``tolist()``."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(body), status, headers=headers, media_type="application/json")


async def _json(body: Any, floats: int) -> Response:
    if floats > _BIG_RESPONSE_FLOATS:
        return Response(await asyncio.to_thread(_dumps, body), media_type="application/json")
    return _plain_json(body)
