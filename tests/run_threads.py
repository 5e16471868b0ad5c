"""Which threads a model's runs happen on, and how many run at once (the concurrent ``streams`` path),
for the tests of both venvs."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


def record_run_threads(model: Any) -> set[str]:
    """Wrap ``model._run`` so that each run adds its thread's name to the returned set."""
    seen: set[str] = set()
    run = model._run

    def spy(outputs: list[str], feed: dict[str, np.ndarray], alone: bool = False) -> list[np.ndarray]:
        seen.add(threading.current_thread().name)
        return run(outputs, feed, alone)  # type: ignore[no-any-return]

    model._run = spy
    return seen


def count_concurrent_runs(model: Any, delay: float = 0.05) -> list[int]:
    """Wrap ``model._run`` so that each run lasts ``delay`` seconds longer (long enough for the next
    batch to start beside it); the returned one-item list holds the most runs seen at once."""
    inside, most = [0], [0]
    lock = threading.Lock()
    run = model._run

    def slow_run(outputs: list[str], feed: dict[str, np.ndarray], alone: bool = False) -> list[np.ndarray]:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(delay)
            return run(outputs, feed, alone)  # type: ignore[no-any-return]
        finally:
            with lock:
                inside[0] -= 1

    model._run = slow_run
    return most
