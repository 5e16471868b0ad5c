"""The server's JSON writing alone: Python's ``json`` over ``tolist()`` (the float64 digits of each
float32) against the server's ``_dumps`` (orjson, float32 rows from numpy), on OpenAI response bodies
of 1 / 32 / 256 unit vectors of ``--dim`` floats; best of ``--repeats`` per size, bytes, and whether
the float JSON reads back to the same float32 values.

    python -m benchmarks.load.json_encode --out benchmarks/results/json-encode-X.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load.bench_load import write_result
from embedrt.server._app import _dumps
from embedrt.server._protocol import openai_body


def _python_json(vectors: np.ndarray) -> bytes:
    body = openai_body(vectors, False, "m", 0)
    body["data"] = [{**d, "embedding": d["embedding"].tolist()} for d in body["data"]]
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _best_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(min(times) * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for n in (1, 32, 256):
        v = rng.standard_normal((n, args.dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        ours = _dumps(openai_body(v, False, "m", 0))
        back = np.array([d["embedding"] for d in json.loads(ours)["data"]], np.float32)
        row = {
            "vectors": n,
            "json_tolist_ms": _best_ms(lambda v=v: _python_json(v), args.repeats),
            "server_ms": _best_ms(lambda v=v: _dumps(openai_body(v, False, "m", 0)), args.repeats),
            "json_tolist_bytes": len(_python_json(v)),
            "server_bytes": len(ours),
            "reads_back_exact": bool(np.array_equal(back, v)),
        }
        row["speedup"] = round(row["json_tolist_ms"] / row["server_ms"], 1)
        row["bytes_saved"] = round(1 - row["server_bytes"] / row["json_tolist_bytes"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_result(args.out, "json_encode", argv, "json_encode", results=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
