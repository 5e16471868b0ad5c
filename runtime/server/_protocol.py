"""Request parsing and response shapes of the two APIs: OpenAI's /v1/embeddings and TEI's /embed.

Everything a client can get wrong becomes an ``ApiError`` with a status and a message naming the
bad value; nothing here touches the model.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._types import EmbeddingPrecision

# encoding_format: OpenAI's "float" and "base64", and sentence-transformers' packed-bit precisions
ENCODING_FORMATS = ("float", "base64", "binary", "ubinary")


class ApiError(Exception):
    """An error answered to the client. ``kind`` is OpenAI's error ``type``; ``code`` its ``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def tei_body(self) -> dict[str, Any]:
        # TEI's shape: {"error": "...", "error_type": "Validation" | "Overloaded" | "Backend" | ...}
        tei_type = {400: "Validation", 413: "Validation", 422: "Validation", 503: "Overloaded"}
        return {"error": self.message, "error_type": tei_type.get(self.status, self.code or self.kind)}


@dataclass(frozen=True)
class EmbedRequest:
    """What both APIs ask for, once validated."""

    texts: list[str]
    truncate: bool
    normalize: bool | None  # None: as the model gives it
    dimensions: int | None
    base64: bool
    prompt_name: str | None
    packed: EmbeddingPrecision | None = None  # OpenAI encoding_format "binary" / "ubinary": bits, 8 per byte


def parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(
            400, f"the request body is not valid UTF-8 (byte {e.start}): send JSON encoded as UTF-8"
        ) from e
    if not text.strip():
        raise ApiError(400, "the request body is empty: send a JSON object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise ApiError(400, "the request body is nested too deeply") from e
    except ValueError as e:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise ApiError(400, f"the request body holds a number JSON cannot carry here: {e}") from e
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_json_type(data)}")
    return data


def parse_openai(
    data: dict[str, Any],
    *,
    dimension: int,
    max_inputs: int,
    auto_truncate: bool,
    model_names: tuple[str, ...] = (),
) -> EmbedRequest:
    """``model_names``: the names ``model`` may take (the served model's and its aliases); empty: any."""
    if "input" not in data:
        hint = " (this body has 'inputs', the TEI field: send it to /embed, or rename it)" if "inputs" in data else ""
        raise ApiError(400, f"'input' is required: a string or a list of strings{hint}", param="input")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, got {_json_type(model)}", param="model")
    if model is not None and model_names and model not in model_names:
        raise ApiError(
            404,
            f"the model {model!r:.100} is not served here: this server serves {list(model_names)} "
            "(send one of those names, or leave 'model' out)",
            param="model",
            code="model_not_found",
        )
    texts = _texts(data["input"], "input", max_inputs)
    fmt = data.get("encoding_format")
    if fmt is None:
        fmt = "float"
    if fmt in ("int8", "uint8"):
        raise ApiError(
            400,
            f"'encoding_format' {fmt!r} needs calibration ranges (per-dimension min/max over your corpus), which "
            "one request does not give: ask for 'binary' or 'ubinary', or for 'float' and quantize with "
            "embedrt.quantize_embeddings(vectors, 'int8', ranges=...)",
            param="encoding_format",
        )
    if fmt not in ENCODING_FORMATS:
        raise ApiError(
            400, f"'encoding_format' must be one of {', '.join(map(repr, ENCODING_FORMATS))}, got {fmt!r:.80}",
            param="encoding_format",
        )
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, f"'user' must be a string, got {_json_type(user)}", param="user")
    return EmbedRequest(
        texts=texts,
        truncate=_bool(data, "truncate", auto_truncate),
        normalize=None,
        dimensions=_dimensions(data.get("dimensions"), dimension),
        base64=fmt == "base64",
        prompt_name=_prompt_name(data.get("prompt_name")),
        packed=EmbeddingPrecision(fmt) if fmt in ("binary", "ubinary") else None,
    )


def parse_tei(data: dict[str, Any], *, dimension: int, max_inputs: int, auto_truncate: bool) -> EmbedRequest:
    if "inputs" not in data:
        hint = " (this body has 'input', the OpenAI field: send it to /v1/embeddings, or rename it)" if "input" in data else ""
        raise ApiError(400, f"'inputs' is required: a string or a list of strings{hint}", param="inputs")
    direction = data.get("truncation_direction")
    if direction is not None and (not isinstance(direction, str) or direction.lower() != "right"):
        raise ApiError(
            400,
            f"'truncation_direction' {direction!r:.40} is not supported: this server cuts long inputs "
            "on the right (send 'Right' or leave it out)",
            param="truncation_direction",
        )
    return EmbedRequest(
        texts=_texts(data["inputs"], "inputs", max_inputs),
        truncate=_bool(data, "truncate", auto_truncate),
        normalize=_bool(data, "normalize", True),
        dimensions=_dimensions(data.get("dimensions"), dimension),
        base64=False,
        prompt_name=_prompt_name(data.get("prompt_name")),
    )


def _texts(value: object, name: str, max_inputs: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ApiError(
            400, f"'{name}' must be a string or a list of strings, got {_json_type(value)}", param=name
        )
    if not value:
        raise ApiError(400, f"'{name}' is an empty list: send at least one string", param=name)
    if len(value) > max_inputs:
        raise ApiError(
            413,
            f"'{name}' has {len(value)} items, more than this server's limit of {max_inputs} per request: "
            "split it into several requests",
            param=name,
            code="too_many_inputs",
        )
    bad = next((i for i, item in enumerate(value) if not isinstance(item, str)), None)
    if bad is None:
        return value
    # OpenAI's token-id forms: one list of ints, or a list of such lists. A list of strings with a
    # stray number is a mistake in one item, and its message names that item.
    if _is_token_ids(value) or all(_is_token_ids(item) for item in value):
        raise ApiError(
            400,
            f"'{name}' holds token ids: this server takes text only, send strings",
            param=name,
            code="token_ids_not_supported",
        )
    raise ApiError(400, f"'{name}[{bad}]' must be a string, got {_json_type(value[bad])}", param=name)


def _is_token_ids(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    )


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false, got {_json_type(value)}", param=name)
    return value


def _dimensions(value: object, dimension: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= dimension:
        raise ApiError(
            400,
            f"'dimensions' must be an integer from 1 to {dimension} (this model's dimension), got {value!r:.80}",
            param="dimensions",
        )
    return value


def _prompt_name(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"'prompt_name' must be a string, got {_json_type(value)}", param="prompt_name")
    return value


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def postprocess(vectors: np.ndarray, req: EmbedRequest, model_normalizes: bool) -> np.ndarray:
    """Cut to ``dimensions`` and L2-normalize where asked (Matryoshka: cut, then re-normalize)."""
    out = vectors
    if req.dimensions is not None and req.dimensions < out.shape[1]:
        out = out[:, : req.dimensions]
        renorm = req.normalize is not False  # Matryoshka: cut, then re-normalize, unless told not to
    else:
        renorm = bool(req.normalize) and not model_normalizes
    if renorm:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)


def openai_body(
    vectors: np.ndarray, as_base64: bool, model: str, tokens: int, packed: EmbeddingPrecision | None = None
) -> dict[str, Any]:
    """OpenAI's response; with ``packed`` (binary / ubinary), each embedding is its packed bytes as
    integers, ``ceil(dim / 8)`` of them, as sentence-transformers' ``quantize_embeddings`` gives them."""
    if packed is not None:
        from .._quantization import quantize_embeddings

        rows: list[Any] = quantize_embeddings(vectors, packed).tolist()
    elif as_base64:
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        rows = list(vectors)  # float32 rows: the JSON encoder writes them from numpy
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
