"""Which routes a bundle's kind serves, and the handlers of those beyond /v1/embeddings and /embed.

    kind                 routes (besides /health, /info, /metrics, /v1/models, /tokenize)
    embedding, static    /v1/embeddings, /embeddings, /embed, POST /, /similarity; /embed_chunks (not static:
                         a static bundle has no window)
    reranker             /rerank (TEI), /v1/rerank and /v2/rerank (Cohere / Jina)
    sparse               /embed_sparse (TEI), /embed_chunks

A route of another kind answers 424 naming this server's kind and the routes it does serve, as
text-embeddings-inference answers a model of the wrong type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from tokenizers import Tokenizer

from .._chunking import Chunker
from .._embedder import Embedder
from .._reranker import Reranker
from .._sparse_encoder import SparseEncoder
from .._tokenize import Tokenized
from .._types import BundleKind
from ._protocol import ApiError, postprocess
from ._protocol_kinds import (
    RerankRequest,
    TextsRequest,
    chunks_body,
    cohere_rerank_body,
    parse_cohere_rerank,
    parse_embed_chunks,
    parse_embed_sparse,
    parse_similarity,
    parse_tei_rerank,
    parse_tokenize,
    sparse_body,
    tei_rerank_body,
    tokenize_body,
)

if TYPE_CHECKING:
    from ._app import ServerState

Handler = Callable[[Request], Awaitable[Response]]
ReadJson = Callable[[Request], Awaitable[dict[str, Any]]]
Respond = Callable[[Any, int], Awaitable[Response]]

EMBEDDING_KINDS = (BundleKind.EMBEDDING, BundleKind.STATIC)
# path, method, route name, the kinds that serve it, errors in TEI's shape
KIND_ROUTES: list[tuple[str, str, str, tuple[BundleKind, ...], bool]] = [
    ("/v1/embeddings", "POST", "embeddings", EMBEDDING_KINDS, False),
    ("/embeddings", "POST", "embeddings", EMBEDDING_KINDS, False),
    ("/embed", "POST", "embed", EMBEDDING_KINDS, True),
    ("/", "POST", "embed", EMBEDDING_KINDS, True),  # TEI answers POST / too; huggingface_hub's InferenceClient uses it
    ("/similarity", "POST", "similarity", EMBEDDING_KINDS, True),
    ("/embed_chunks", "POST", "embed_chunks", (BundleKind.EMBEDDING, BundleKind.SPARSE), True),
    ("/rerank", "POST", "rerank", (BundleKind.RERANKER,), True),
    ("/v1/rerank", "POST", "rerank_v1", (BundleKind.RERANKER,), False),
    ("/v2/rerank", "POST", "rerank_v1", (BundleKind.RERANKER,), False),
    ("/embed_sparse", "POST", "embed_sparse", (BundleKind.SPARSE,), True),
]


def served_paths(kind: BundleKind) -> list[str]:
    return [path for path, _, _, kinds, _ in KIND_ROUTES if kind in kinds] + ["/tokenize"]


def wrong_kind(kind: BundleKind, path: str, kinds: tuple[BundleKind, ...]) -> Handler:
    async def refuse(request: Request) -> Response:
        raise ApiError(
            424,
            f"{path} needs a bundle of kind {' or '.join(repr(k.value) for k in kinds)}; this server serves a "
            f"{kind.value!r} bundle, whose routes are {', '.join(served_paths(kind))}",
            code="wrong_model_kind",
        )

    return refuse


def model_call(model: Embedder | Reranker | SparseEncoder, tok: Tokenized) -> np.ndarray:
    """One batcher run: embedding rows; reranker logits; sparse vectors as a (rows, 1) object array."""
    if isinstance(model, Reranker):
        return model.predict_tokenized(tok, batch_size=len(tok))
    if isinstance(model, SparseEncoder):
        out = np.empty((len(tok), 1), dtype=object)
        out[:, 0] = list(model.encode_tokenized(tok, batch_size=len(tok)))
        return out
    vectors = model.encode_tokenized(tok, batch_size=len(tok), normalize=False)
    assert isinstance(vectors, np.ndarray)
    return vectors


def warm_up(model: Embedder | Reranker | SparseEncoder, texts: list[str]) -> object:
    if isinstance(model, Reranker):
        return model.predict([(texts[0], t) for t in texts])
    return model.encode(texts)


def kind_info(model: Embedder | Reranker | SparseEncoder) -> dict[str, Any]:
    """What /info says about the model's kind."""
    m = model.manifest
    if isinstance(model, Reranker):
        return {"num_labels": model.num_labels, "activation": model.activation.value, "labels": model.head.labels}
    if isinstance(model, SparseEncoder):
        return {"dimension": model.dimension, "sparse_pooling": model.head.pooling.value,
                "sparse_activation": model.head.activation.value, "similarity": model.similarity_fn_name.value}  # fmt: skip
    return {"dimension": model.dimension, "pooling": [p.value for p in m.pooling], "normalize": m.normalize,
            "similarity": model.similarity_fn_name.value}  # fmt: skip


def kind_handlers(state: ServerState, read_json: ReadJson, respond: Respond) -> dict[str, Handler]:
    """The handlers of /rerank, /v1/rerank, /embed_sparse, /similarity, /embed_chunks and /tokenize."""
    model, config = state.model, state.config
    limits: dict[str, Any] = {"max_inputs": config.max_inputs, "auto_truncate": config.auto_truncate}
    untruncated = Tokenizer.from_str(model.tokenizer.to_str())  # /tokenize shows every token
    untruncated.no_truncation()

    async def ranked(request: Request, parse: Callable[..., RerankRequest]) -> tuple[RerankRequest, np.ndarray, int]:
        assert isinstance(model, Reranker)
        if model.num_labels != 1:
            raise ApiError(424, f"this reranker has {model.num_labels} labels ({model.head.labels}): ranking needs "
                           "one relevance score per pair", code="wrong_model_kind")  # fmt: skip
        with state.batcher.arriving():
            req = parse(await read_json(request), **limits)
            tok = await state.prepare(
                req, lambda: model.tokenize_pairs([(req.query, d) for d in req.documents]), what="text"
            )
        logits = await state.run_model(tok, request)
        scores = logits[:, 0] if req.raw_scores else model.scores(logits)
        return req, scores, int(tok.lengths.sum())

    async def rerank(request: Request) -> Response:
        req, scores, _ = await ranked(request, parse_tei_rerank)
        return await respond(tei_rerank_body(req, scores), len(scores))

    async def rerank_v1(request: Request) -> Response:
        req, scores, tokens = await ranked(request, parse_cohere_rerank)
        return await respond(cohere_rerank_body(req, scores, config.model_name, tokens), len(scores))

    async def embed_sparse(request: Request) -> Response:
        with state.batcher.arriving():
            req = parse_embed_sparse(await read_json(request), **limits)
            tok = await state.prepare(req)
        return await respond(*_sparse(await state.run_model(tok, request)))

    async def similarity(request: Request) -> Response:
        assert isinstance(model, Embedder)
        with state.batcher.arriving():
            req = parse_similarity(await read_json(request), **limits)
            tok = await state.prepare(req)
        vectors = await state.run_model(tok, request)
        return await respond(model.similarity(vectors[:1], vectors[1:])[0].tolist(), len(vectors))

    def chunker(tokens: object, overlap: object, prompt_name: str | None) -> Chunker:
        """The model's chunker of these settings; bad ones a 400 naming the field."""
        try:
            return model._chunker(tokens, overlap, prompt_name, None)
        except ValueError as e:
            words = str(e)
            param = next((p for p in ("prompt_name", "chunk_overlap") if words.startswith(p)), "chunk_tokens")
            raise ApiError(400, words, param=param) from e

    async def embed_chunks(request: Request) -> Response:
        assert isinstance(model, Embedder | SparseEncoder)
        sparse = isinstance(model, SparseEncoder)
        with state.batcher.arriving():
            req = parse_embed_chunks(await read_json(request), dimension=model.dimension, sparse=sparse, **limits)
            texts = req.embed.texts
            cut = chunker(req.chunk_tokens, req.chunk_overlap, req.embed.prompt_name)
            bad = next((i for i, t in enumerate(texts) if not _encodable(t)), None)
            if bad is not None:
                raise ApiError(400, f"input {bad} is not valid Unicode (it holds a lone surrogate): send real text")
            try:
                windows = await state.sized(texts, lambda: cut.split(texts))
            except ValueError as e:  # a prompt that leaves a text no room
                raise ApiError(400, str(e), param="chunk_tokens") from e
            tok = await state.prepare(req.embed, lambda: windows.tokens)
        out = await state.run_model(tok, request)
        if sparse:
            vectors, size = _sparse(out)
        else:
            dense = postprocess(out, req.embed, model.manifest.normalize)
            vectors, size = dense.tolist(), dense.size
        return await respond(chunks_body(texts, windows.text, windows.start, windows.end, vectors, req.return_text), size)

    async def tokenize(request: Request) -> Response:
        req: TextsRequest = parse_tokenize(await read_json(request), max_inputs=config.max_inputs)
        try:
            texts = model._with_prompt(req.texts, req.prompt_name, None)
        except ValueError as e:  # an unknown prompt_name
            raise ApiError(400, str(e), param="prompt_name") from e
        bad = next((i for i, t in enumerate(texts) if not _encodable(t)), None)
        if bad is not None:
            raise ApiError(400, f"input {bad} is not valid Unicode (it holds a lone surrogate): send real text")
        def body() -> tuple[Any, int]:
            encodings = untruncated.encode_batch(texts, add_special_tokens=req.add_special_tokens)
            return tokenize_body(texts, encodings), sum(len(e.ids) for e in encodings)

        out, tokens = await state.sized(texts, body)  # respond writes a big body's JSON off the loop too
        return await respond(out, tokens)

    return {"rerank": rerank, "rerank_v1": rerank_v1, "embed_sparse": embed_sparse, "similarity": similarity,
            "embed_chunks": embed_chunks, "tokenize": tokenize}  # fmt: skip


def _sparse(out: np.ndarray) -> tuple[list[Any], int]:
    """A sparse model's run (a column of ``SparseVector``) as /embed_sparse's body, and its nonzeros."""
    rows = out[:, 0]
    return sparse_body([(v.indices, v.values) for v in rows]), sum(v.nnz for v in rows)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
