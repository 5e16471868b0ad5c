"""Server settings: one frozen dataclass, checked once at the boundary."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

API_KEY_ENV = "EMBEDRT_API_KEY"


@dataclass(frozen=True)
class ServerConfig:
    """How the HTTP server batches, limits and identifies itself.

    Batching: requests waiting together are merged into one model call while their tokens fit in
    ``max_batch_tokens``; an idle server waits at most ``max_wait_ms`` for company before running.
    ``batching=False`` runs one request per model call (for comparison).
    """

    model_name: str = "embedrt"
    batching: bool = True
    max_batch_tokens: int = 16384
    batch_size: int = 32  # rows per ONNX Runtime run inside a merged batch
    max_wait_ms: float = 2.0
    max_queue: int = 256  # requests waiting for the model; more get 503 + Retry-After
    max_inputs: int = 512  # texts per request
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout_s: float = 30.0
    auto_truncate: bool = True  # default of `truncate`; `truncate: false` turns long inputs into 413
    api_key: str | None = None
    warmup: bool = True

    def __post_init__(self) -> None:
        positive_ints = ("max_batch_tokens", "batch_size", "max_queue", "max_inputs", "max_body_bytes")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty string or None")

    def limits(self) -> dict[str, Any]:
        """What /info shows: every setting but the key."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("api_key", "model_name")
        }


def default_model_name(source: dict[str, Any], bundle: Path) -> str:
    """A model id for the API: the source's id where the manifest has one, else the bundle folder's name."""
    for key in ("model_id", "name", "id"):
        value = source.get(key)
        if isinstance(value, str) and value:
            return value
    path = source.get("path")
    if isinstance(path, str) and Path(path).name not in ("", "model", "."):
        return Path(path).name
    return bundle.resolve().name
