"""A benchmark worker: one system, loaded once, measured on the orchestrator's command.

Run as ``python -m benchmarks.worker SPEC_JSON INPUTS_JSON`` with the Python of the system's own
environment. It reads one JSON command per line on stdin and answers one JSON line on its protocol
fd; whatever the libraries print goes to stderr, never into the protocol.

Commands: ``load``; ``embed`` (set, batch, out: .npy path); ``throughput`` (set, batch, min_time,
min_reps, max_length); ``latency`` (set, max_length); ``rss``; ``quit``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import sys
import time
import traceback
from typing import Any

import numpy as np


def _status_mb(key: str) -> float:
    """A size from /proc/self/status (``VmRSS``, ``VmHWM``) in MB; NaN where there is none."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM. Not ``ru_maxrss``, which Linux carries across exec from the
    process that forked it (for a suite worker, the orchestrator, holding the inputs and PyTorch's
    reference outputs), so a worker smaller than the orchestrator would report the orchestrator's size."""
    peak = _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if math.isnan(peak) else peak


class Worker:
    def __init__(self, spec: dict[str, Any], inputs: dict[str, list[str]]) -> None:
        from benchmarks.systems import make_runner

        self.spec = spec
        self.inputs = inputs
        self.runner = make_runner(spec)
        self.max_length = 256

    def _length(self, n: int | None) -> None:
        n = n or 256
        if n != self.max_length:
            self.runner.set_max_length(n)
            self.max_length = n

    def load(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rss0 = _rss_mb()
        t = time.perf_counter()
        self.runner.load()
        load_s = time.perf_counter() - t
        return {
            "load_s": load_s,
            "rss_before_mb": rss0,
            "rss_after_load_mb": _rss_mb(),
            "info": self.runner.info,
        }

    def embed(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self._length(cmd.get("max_length"))
        emb = self.runner.encode(self.inputs[cmd["set"]], cmd.get("batch", 32))
        np.save(cmd["out"], emb.astype(np.float32))
        return {"shape": list(emb.shape)}

    def throughput(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Whole passes over a set; at least ``min_reps`` passes and ``min_time`` seconds."""
        self._length(cmd.get("max_length"))
        texts = self.inputs[cmd["set"]]
        batch = cmd["batch"]
        # Warm-up: first-call set-up (thread pools, kernels, shape caches), a few texts of the same length.
        self.runner.encode(texts[: min(batch, cmd.get("warmup_texts", 4))], batch)
        times: list[float] = []
        t_end = time.perf_counter() + cmd.get("min_time", 1.0)
        while len(times) < cmd.get("min_reps", 1) or time.perf_counter() < t_end:
            t = time.perf_counter()
            self.runner.encode(texts, batch)
            times.append(time.perf_counter() - t)
            if len(times) >= cmd.get("max_reps", 50):
                break
        return {"times": times, "n_texts": len(texts)}

    def latency(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One text per call, in order; each call timed."""
        self._length(cmd.get("max_length"))
        texts = self.inputs[cmd["set"]]
        for s in texts[:5]:
            self.runner.encode([s], 1)
        ms = []
        for s in texts:
            t = time.perf_counter()
            self.runner.encode([s], 1)
            ms.append((time.perf_counter() - t) * 1e3)
        return {"ms": ms}

    def rss(self, cmd: dict[str, Any]) -> dict[str, Any]:
        gc.collect()
        return {"rss_mb": _rss_mb(), "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    spec = json.loads(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        inputs = json.load(f)
    # The protocol gets the real stdout; fd 1 (Python and C libraries alike) goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker(spec, inputs)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        try:
            reply = {"ok": True, **getattr(worker, op)(cmd)}
        except Exception as e:  # reported to the orchestrator, which skips the system with the note
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        proto.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
