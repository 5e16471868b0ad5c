"""onnxruntime's CPU arena off / on / on with per-run shrinkage: tokens/s at fixed shapes, alternating.

    python benchmarks/arena_speed.py BUNDLE    (a bundle with token_type_ids, e.g. all-MiniLM-L6-v2)

Prints tokens/s (best of 3 alternating rounds) per setting and shape; the memory side of the same
choice is benchmarks/memory.py.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path: str, arena: bool) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = arena
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main() -> int:
    path = sys.argv[1] + "/model.onnx"
    sessions = {"off": session(path, False), "on": session(path, True), "on+shrink": session(path, True)}
    shrink = ort.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    results = {}
    for batch, length, reps in [(32, 512, 2), (32, 128, 4), (32, 16, 20)]:
        ids = np.random.default_rng(0).integers(1000, 20000, (batch, length)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        options = {name: shrink if name == "on+shrink" else None for name in sessions}
        for name, s in sessions.items():  # warm-up
            s.run(["sentence_embedding"], feed, options[name])
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(3):
            for name, s in sessions.items():
                t = time.perf_counter()
                for _ in range(reps):
                    s.run(["sentence_embedding"], feed, options[name])
                times[name].append((time.perf_counter() - t) / reps)
        results[f"{batch}x{length}"] = {k: round(batch * length / min(v)) for k, v in times.items()}
        print(batch, length, "tokens/s:", results[f"{batch}x{length}"], flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
