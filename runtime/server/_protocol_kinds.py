"""Request parsing and response shapes of the routes beyond embeddings:

- ``POST /rerank`` (text-embeddings-inference): ``query``, ``texts``, ``truncate``, ``raw_scores``,
  ``return_text`` -> ``[{"index", "score"[, "text"]}]`` best first.
- ``POST /v1/rerank`` (Cohere / Jina): ``query``, ``documents`` (strings or ``{"text": ...}``),
  ``top_n``, ``return_documents`` -> ``{"id", "model", "results": [{"index", "relevance_score"[,
  "document": {"text"}]}], "usage"}``.
- ``POST /embed_sparse`` (TEI): ``inputs`` -> ``[[{"index", "value"}]]``.
- ``POST /embed_chunks`` (embedrt): ``inputs``, ``chunk_tokens`` (an integer or ``"max"``, the
  default), ``chunk_overlap``, ``normalize``, ``dimensions``, ``prompt_name``, ``return_text`` ->
  ``[[{"start", "end", "embedding"[, "text"]}]]``: each input's windows (``Embedder.encode_chunks``;
  a sparse bundle's ``embedding`` is ``[{"index", "value"}]`` as /embed_sparse gives it, and
  ``normalize`` and ``dimensions`` are refused for it).
- ``POST /similarity`` (TEI): ``inputs: {source_sentence, sentences}``, ``parameters`` -> ``[score]``.
- ``POST /tokenize`` (TEI): ``inputs``, ``add_special_tokens`` -> ``[[{"id", "text", "special",
  "start", "stop"}]]``.

Like ``_protocol``, nothing here touches the model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._protocol import ApiError, EmbedRequest, _bool, _dimensions, _json_type, _prompt_name, _texts


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: list[str]
    truncate: bool
    raw_scores: bool
    return_text: bool
    top_n: int | None

    @property
    def texts(self) -> list[str]:
        """Every text of the request (the query last), for input checks."""
        return [*self.documents, self.query]


def _query(data: dict[str, Any], status_missing: int) -> str:
    if "query" not in data:
        raise ApiError(status_missing, "'query' is required: the string to rank the documents against", param="query")
    query = data["query"]
    if not isinstance(query, str):
        raise ApiError(400, f"'query' must be a string, got {_json_type(query)}", param="query")
    return query


def parse_tei_rerank(data: dict[str, Any], *, max_inputs: int, auto_truncate: bool) -> RerankRequest:
    query = _query(data, 422)
    if "texts" not in data:
        raise ApiError(422, "'texts' is required: a list of the documents to rank", param="texts")
    if isinstance(data["texts"], str):
        raise ApiError(400, "'texts' must be a list of strings, got a string: wrap one document in a list", param="texts")
    _right_truncation(data)
    return RerankRequest(
        query=query,
        documents=_texts(data["texts"], "texts", max_inputs),
        truncate=_bool(data, "truncate", auto_truncate),
        raw_scores=_bool(data, "raw_scores", False),
        return_text=_bool(data, "return_text", False),
        top_n=None,
    )


def parse_cohere_rerank(data: dict[str, Any], *, max_inputs: int, auto_truncate: bool) -> RerankRequest:
    query = _query(data, 400)
    if "documents" not in data:
        raise ApiError(400, "'documents' is required: a list of strings or of {\"text\": ...} objects", param="documents")
    raw = data["documents"]
    if isinstance(raw, list):
        raw = [d["text"] if isinstance(d, dict) and isinstance(d.get("text"), str) else d for d in raw]
    if isinstance(raw, list) and any(isinstance(d, dict) for d in raw):
        bad = next(i for i, d in enumerate(raw) if isinstance(d, dict))
        raise ApiError(400, f"'documents[{bad}]' is an object without a string 'text'", param="documents")
    if isinstance(raw, str):
        raise ApiError(400, "'documents' must be a list, got a string: wrap one document in a list", param="documents")
    documents = _texts(raw, "documents", max_inputs)
    top_n = data.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ApiError(400, f"'top_n' must be a positive integer, got {top_n!r:.40}", param="top_n")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, got {_json_type(model)}", param="model")
    return RerankRequest(
        query=query,
        documents=documents,
        truncate=_bool(data, "truncate", auto_truncate),
        raw_scores=False,
        return_text=_bool(data, "return_documents", False),
        top_n=top_n,
    )


def ranked(scores: np.ndarray, top_n: int | None) -> list[int]:
    """Indices of ``scores`` best first (ties keep the request's order), at most ``top_n``."""
    return np.argsort(-scores, kind="stable")[:top_n].tolist()  # type: ignore[no-any-return]


def tei_rerank_body(req: RerankRequest, scores: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"index": i, "score": float(scores[i]), **({"text": req.documents[i]} if req.return_text else {})}
        for i in ranked(scores, req.top_n)
    ]


def cohere_rerank_body(req: RerankRequest, scores: np.ndarray, model: str, tokens: int) -> dict[str, Any]:
    results = [
        {"index": i, "relevance_score": float(scores[i]),
         **({"document": {"text": req.documents[i]}} if req.return_text else {})}
        for i in ranked(scores, req.top_n)
    ]  # fmt: skip
    return {"id": str(uuid.uuid4()), "model": model, "results": results,
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens}}  # fmt: skip


@dataclass(frozen=True)
class TextsRequest:
    """/embed_sparse and /tokenize: texts and the options they share with /embed."""

    texts: list[str]
    truncate: bool
    prompt_name: str | None
    add_special_tokens: bool = True


def parse_embed_sparse(data: dict[str, Any], *, max_inputs: int, auto_truncate: bool) -> TextsRequest:
    if "inputs" not in data:
        raise ApiError(422, "'inputs' is required: a string or a list of strings", param="inputs")
    _right_truncation(data)
    return TextsRequest(_texts(data["inputs"], "inputs", max_inputs), _bool(data, "truncate", auto_truncate),
                        _prompt_name(data.get("prompt_name")))  # fmt: skip


def parse_tokenize(data: dict[str, Any], *, max_inputs: int) -> TextsRequest:
    if "inputs" not in data:
        raise ApiError(422, "'inputs' is required: a string or a list of strings", param="inputs")
    return TextsRequest(_texts(data["inputs"], "inputs", max_inputs), True, _prompt_name(data.get("prompt_name")),
                        add_special_tokens=_bool(data, "add_special_tokens", True))  # fmt: skip


def parse_similarity(data: dict[str, Any], *, max_inputs: int, auto_truncate: bool) -> TextsRequest:
    """``source_sentence`` first, then ``sentences``, as one list of texts."""
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        raise ApiError(422, "'inputs' is required: an object {\"source_sentence\": str, \"sentences\": [str]}",
                       param="inputs")  # fmt: skip
    source = inputs.get("source_sentence")
    if not isinstance(source, str):
        raise ApiError(422, f"'inputs.source_sentence' must be a string, got {_json_type(source)}", param="inputs")
    if "sentences" not in inputs or isinstance(inputs["sentences"], str):
        raise ApiError(422, "'inputs.sentences' must be a list of strings", param="inputs")
    sentences = _texts(inputs["sentences"], "inputs.sentences", max_inputs)
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, f"'parameters' must be an object, got {_json_type(params)}", param="parameters")
    _right_truncation(params)
    return TextsRequest([source, *sentences], _bool(params, "truncate", auto_truncate),
                        _prompt_name(params.get("prompt_name")))  # fmt: skip


@dataclass(frozen=True)
class ChunksRequest:
    embed: EmbedRequest  # the texts and what is done to each window's vector (never truncated: windows fit)
    chunk_tokens: object  # an integer or "max", checked where the windows are made
    chunk_overlap: object
    return_text: bool


def parse_embed_chunks(data: dict[str, Any], *, dimension: int, max_inputs: int, auto_truncate: bool,
                       sparse: bool = False) -> ChunksRequest:  # fmt: skip
    if "inputs" not in data:
        raise ApiError(422, "'inputs' is required: a string or a list of strings, each cut into windows", param="inputs")
    for name in ("normalize", "dimensions") if sparse else ():
        if data.get(name) is not None:
            raise ApiError(400, f"'{name}' applies to dense vectors; this server's sparse bundle gives token weights",
                           param=name)  # fmt: skip
    embed = EmbedRequest(
        texts=_texts(data["inputs"], "inputs", max_inputs),
        truncate=True,
        normalize=_bool(data, "normalize", True),
        dimensions=_dimensions(data.get("dimensions"), dimension),
        base64=False,
        prompt_name=_prompt_name(data.get("prompt_name")),
    )
    return ChunksRequest(embed, data.get("chunk_tokens", "max"), data.get("chunk_overlap", 0),
                         _bool(data, "return_text", False))  # fmt: skip


def chunks_body(texts: list[str], text: np.ndarray, start: np.ndarray, end: np.ndarray, vectors: list[Any],
                return_text: bool) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Each input's windows, in order: their characters (``text[start:end]``) and vectors (each
    window's, as JSON values)."""
    out: list[list[dict[str, Any]]] = [[] for _ in texts]
    for k, (t, a, b) in enumerate(zip(text.tolist(), start.tolist(), end.tolist(), strict=True)):
        item: dict[str, Any] = {"start": a, "end": b, "embedding": vectors[k]}
        if return_text:
            item["text"] = texts[t][a:b]
        out[t].append(item)
    return out


def sparse_body(rows: list[tuple[np.ndarray, np.ndarray]]) -> list[list[dict[str, Any]]]:
    return [
        [{"index": i, "value": v} for i, v in zip(idx.tolist(), val.tolist(), strict=True)] for idx, val in rows
    ]


def tokenize_body(texts: list[str], encodings: list[Any]) -> list[list[dict[str, Any]]]:
    """TEI's token list; ``start``/``stop`` are character offsets into the text (null for special tokens)."""
    out = []
    for text, enc in zip(texts, encodings, strict=True):
        tokens = []
        for tid, token, special, (start, stop) in zip(enc.ids, enc.tokens, enc.special_tokens_mask, enc.offsets,
                                                       strict=True):  # fmt: skip
            if special:
                tokens.append({"id": tid, "text": token, "special": True, "start": None, "stop": None})
            else:
                tokens.append({"id": tid, "text": text[start:stop], "special": False, "start": start, "stop": stop})
        out.append(tokens)
    return out


def _right_truncation(data: dict[str, Any]) -> None:
    direction = data.get("truncation_direction")
    if direction is not None and (not isinstance(direction, str) or direction.lower() != "right"):
        raise ApiError(400, f"'truncation_direction' {direction!r:.40} is not supported: this server cuts long "
                       "inputs on the right (send 'Right' or leave it out)", param="truncation_direction")  # fmt: skip
