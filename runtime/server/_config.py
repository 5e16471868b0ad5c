"""Server settings: one frozen dataclass, checked once at the boundary."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .._cache import check_cache_mb
from .._types import check_int

API_KEY_ENV = "EMBEDRT_API_KEY"


@dataclass(frozen=True)
class ServerConfig:
    """How the HTTP server batches, limits and identifies itself.

    Batching: requests waiting together are merged into one model call while their tokens fit in
    ``max_batch_tokens``; an idle server waits at most ``max_wait_ms`` for company before running.
    ``batching=False`` runs one request per model call (for comparison). Inside a merged batch the
    texts are sorted by length and run in pieces of at most ``batch_size`` rows and ``max_run_tokens``
    padded tokens (``None``: the model's own ``max_batch_tokens``, 1024 on the CPU provider, 512 with one
    thread per run).
    """

    model_name: str = "embedrt"
    aliases: tuple[str, ...] = ()  # more names OpenAI requests may give as `model` (--served-model-name)
    batching: bool = True
    max_batch_tokens: int = 8192  # tokens of all requests merged into one batch
    batch_size: int = 32  # most rows per ONNX Runtime run inside a merged batch
    max_run_tokens: int | None = None  # most padded tokens (rows x longest) per ONNX Runtime run
    max_wait_ms: float = 2.0
    max_queue: int = 1024  # requests waiting for the model; more get 503 + Retry-After
    max_inputs: int = 512  # texts per request
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout_s: float = 60.0
    auto_truncate: bool = True  # default of `truncate`; `truncate: false` turns long inputs into 413
    api_key: str | None = None
    warmup: bool = True
    # megabytes of the model's rows for the inputs run last, kept so that an input sent again (the
    # same tokens: text, prompt and truncation) is answered without a model run; 0: no cache
    cache_mb: float = 0.0

    def __post_init__(self) -> None:
        positive_ints = (
            "max_batch_tokens",
            "batch_size",
            "max_run_tokens",
            "max_queue",
            "max_inputs",
            "max_body_bytes",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if name == "max_run_tokens" and value is None:
                continue
            check_int(value, name)
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s!r}")
        check_cache_mb(self.cache_mb, "cache_mb")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty string or None")
        if not all(isinstance(a, str) and a for a in self.aliases):
            raise ValueError(f"aliases must be non-empty strings, got {self.aliases!r}")

    @property
    def served_names(self) -> tuple[str, ...]:
        """The names an OpenAI request's ``model`` may take: the model's own, then its aliases."""
        return tuple(dict.fromkeys((self.model_name, *self.aliases)))

    def limits(self) -> dict[str, Any]:
        """What /info shows: every setting but the key."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("api_key", "model_name", "aliases")
        }


def default_model_name(source: dict[str, Any], bundle: Path) -> str:
    """A model id for the API: the source folder's name, else the bundle folder's name.

    Generic folder names (a package that ships its weights in ``model/``) are skipped. The config's
    ``_name_or_path`` is not used: it often names the base model the embedding model was tuned from.
    """
    generic = {"", ".", "model", "models", "bundle", "snapshot"}
    candidates = [source.get("name"), source.get("path")]
    for value in candidates:
        if isinstance(value, str) and value:
            name = Path(value).name
            if name.lower() not in generic:
                return name
    return bundle.resolve().name
