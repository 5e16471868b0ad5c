"""Which threads a model's runs happen on (the concurrent ``streams`` path), for the tests of both venvs."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


def record_run_threads(model: Any) -> set[str]:
    """Wrap ``model._run`` so that each run adds its thread's name to the returned set."""
    seen: set[str] = set()
    run = model._run

    def spy(outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        seen.add(threading.current_thread().name)
        return run(outputs, feed)  # type: ignore[no-any-return]

    model._run = spy
    return seen
