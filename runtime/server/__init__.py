"""embedrt's HTTP server (extra ``embedrt[server]``): OpenAI ``/v1/embeddings``, TEI ``/embed``,
``/similarity``, ``/rerank``, ``/embed_sparse``, ``/tokenize`` and Cohere-style ``/v1/rerank``, as
the bundle's kind allows, with cross-request batching, limits, API key, health and Prometheus metrics.

    >>> from embedrt import Embedder
    >>> from embedrt.server import ServerConfig, create_app
    >>> app = create_app(Embedder("bundles/all-MiniLM-L6-v2"), ServerConfig(max_wait_ms=2))

This module imports without Starlette; ``create_app`` needs it and says which pip command fixes that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cli import add_serve_parser, require_server_extra, run_serve
from ._config import API_KEY_ENV, ServerConfig

if TYPE_CHECKING:
    from ._app import create_app

__all__ = ["API_KEY_ENV", "ServerConfig", "add_serve_parser", "create_app", "run_serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        require_server_extra()
        from ._app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
