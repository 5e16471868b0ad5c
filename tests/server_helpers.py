"""Helpers for the server tests: a live uvicorn server on a free loopback port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import uvicorn

from embedrt import Embedder, Tokenized
from embedrt.server import ServerConfig, create_app
from embedrt.server._app import ServerState


@dataclass
class Live:
    url: str
    server: uvicorn.Server
    state: ServerState


@contextlib.contextmanager
def live_server(embedder: Embedder, config: ServerConfig | None = None) -> Iterator[Live]:
    """Serve ``embedder`` on 127.0.0.1 (a port the OS picks) until the block ends."""
    app = create_app(embedder, config or ServerConfig(model_name="test-model"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):  # bounded: 60 s
        if server.started or not thread.is_alive():
            break
        time.sleep(0.1)
    if not server.started:
        raise RuntimeError("the test server did not start")
    try:
        yield Live(f"http://127.0.0.1:{port}", server, app.state.embedrt)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


@contextlib.contextmanager
def nan_model(state: ServerState) -> Iterator[None]:
    """While inside: the model's rows come out with a NaN in their first component."""
    real = state.batcher._encode

    def broken(tok: Tokenized, alone: bool) -> np.ndarray:
        out: np.ndarray = real(tok, alone)
        out[:, 0] = np.nan
        return out

    state.batcher._encode = broken  # type: ignore[method-assign]
    try:
        yield
    finally:
        state.batcher._encode = real  # type: ignore[method-assign]


def gate_model(state: ServerState) -> tuple[threading.Event, threading.Event]:
    """Make the model wait for ``release`` before each batch; ``entered`` is set when one is waiting."""
    entered, release = threading.Event(), threading.Event()
    real: Callable[[Tokenized, bool], np.ndarray] = state.batcher._encode

    def gated(tok: Tokenized, alone: bool) -> Any:
        entered.set()
        release.wait(timeout=60)
        return real(tok, alone)

    state.batcher._encode = gated
    return entered, release


def post_concurrently(url: str, batches: list[list[str]], clients: int = 8) -> list[np.ndarray]:
    """Each of ``batches`` posted to ``url``'s ``/v1/embeddings`` (model ``m``) by ``clients``
    threads at once; the vectors of each, in order."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def post(batch: list[str]) -> np.ndarray:
        r = httpx.post(f"{url}/v1/embeddings", json={"model": "m", "input": batch}, timeout=60)
        r.raise_for_status()
        return np.array([d["embedding"] for d in r.json()["data"]], np.float32)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(post, batches))
