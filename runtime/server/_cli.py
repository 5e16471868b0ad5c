"""``embedrt serve``: argparse wiring for the HTTP server. Starlette and uvicorn are imported lazily."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

from .._model_args import add_model_arguments, model_options
from ._config import API_KEY_ENV, ServerConfig, default_model_name

_MISSING_EXTRA = 'the HTTP server needs the "server" extra: pip install "embedrt[server]"'


def require_server_extra() -> None:
    """Raise ``ImportError`` naming the pip command when starlette, uvicorn, prometheus-client or orjson
    is missing (uvloop and httptools make uvicorn faster, and it runs without them)."""
    try:
        import orjson  # noqa: F401
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{_MISSING_EXTRA} ({e})") from e


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an argparse ``subparsers`` object; its ``func`` is ``run_serve``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve a bundle over HTTP (OpenAI /v1/embeddings, TEI /embed, /rerank, /embed_sparse)",
        description="Serve a bundle over HTTP. Embedding bundles: OpenAI-compatible POST /v1/embeddings, "
        "TEI-compatible POST /embed and /similarity; reranker bundles: TEI POST /rerank and Cohere/Jina-style "
        "POST /v1/rerank; sparse bundles: TEI POST /embed_sparse; every kind: POST /tokenize, GET /health, "
        "/info, /metrics. Requests arriving together are batched into one model call.",
    )
    add_serve_arguments(p)
    p.set_defaults(run=run_serve, func=run_serve)  # `embedrt` dispatches on `run`
    return p


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    d = ServerConfig()
    p.add_argument("bundle", type=Path, help="folder written by `embedrt export`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    add_model_arguments(p, "ONNX Runtime intra-op threads (default: CPUs available)")
    p.add_argument("--model-name", default=None, help="model id the API reports (default: from the bundle)")
    p.add_argument(
        "--served-model-name",
        dest="aliases",
        action="append",
        default=[],
        metavar="NAME",
        help="another name OpenAI requests may give as 'model' (repeatable); any other name gets 404 "
        "model_not_found, as OpenAI answers",
    )
    p.add_argument(
        "--no-verify", action="store_true", help="skip the sha256 check of the bundle's files and manifest"
    )
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on every endpoint but /health (default: ${API_KEY_ENV})",
    )
    g = p.add_argument_group("batching")
    g.add_argument("--no-batching", dest="batching", action="store_false", help="one request per model call")
    g.add_argument(
        "--max-batch-tokens",
        type=int,
        default=d.max_batch_tokens,
        help="token budget of one merged batch (default: %(default)s)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="most rows per ONNX Runtime run (default: %(default)s)",
    )
    g.add_argument(
        "--max-run-tokens",
        type=int,
        default=d.max_run_tokens,
        help="padded tokens (rows x longest) per ONNX Runtime run (default: the model's, 1024 on the CPU, "
        "the fastest there, 512 with one thread per run; 2048 on OpenVINO; 16384 on a GPU)",
    )
    g.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help="how long an idle server waits for more requests to merge (default: %(default)s)",
    )
    g.add_argument(
        "--cache-mb",
        type=float,
        default=d.cache_mb,
        metavar="MB",
        help="keep the model's rows for the inputs run last, up to MB megabytes, and answer an input sent "
        "again (the same tokens) from them without a model run; least recently used out first "
        "(default: %(default)s, no cache)",
    )
    g = p.add_argument_group("limits")
    g.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help="requests waiting for the model before 503 (default: %(default)s)",
    )
    g.add_argument(
        "--max-inputs", type=int, default=d.max_inputs, help="texts per request (default: %(default)s)"
    )
    g.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help="request body size (default: %(default)s)",
    )
    g.add_argument(
        "--request-timeout",
        type=float,
        default=d.request_timeout_s,
        help="seconds a request may wait and run (default: %(default)s)",
    )
    g.add_argument(
        "--no-auto-truncate",
        dest="auto_truncate",
        action="store_false",
        help="answer 413 for inputs longer than max_seq_length unless the request says truncate=true",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def config_from_args(args: argparse.Namespace, source: dict[str, Any]) -> ServerConfig:
    return ServerConfig(
        model_name=args.model_name or default_model_name(source, Path(args.bundle)),
        aliases=tuple(args.aliases),
        batching=args.batching,
        max_batch_tokens=args.max_batch_tokens,
        batch_size=args.batch_size,
        max_run_tokens=args.max_run_tokens,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_inputs=args.max_inputs,
        max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.request_timeout,
        auto_truncate=args.auto_truncate,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        cache_mb=args.cache_mb,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Load the bundle, then serve it until SIGINT/SIGTERM; in-flight requests finish first."""
    require_server_extra()
    import uvicorn

    from .._base import AUTO
    from .._load import load_model
    from ._app import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("embedrt.server")
    model = load_model(  # the bundle's kind picks the class
        args.bundle, **model_options(args), verify=not args.no_verify, max_batch_tokens=args.max_run_tokens or AUTO,
    )  # fmt: skip
    config = config_from_args(args, model.manifest.source)
    if not _is_loopback(args.host) and config.api_key is None:
        log.warning(
            "binding %s without an API key: anyone who can reach this address can use the server", args.host
        )
    app = create_app(model, config)
    state = app.state.embedrt

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.begin_drain()  # answer 503 on kept-alive connections while in-flight requests finish
            super().handle_exit(sig, frame)

    server = _Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=int(config.request_timeout_s) + 5,
            lifespan="on",
        )
    )
    server.run()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
