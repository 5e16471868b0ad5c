"""``embedrt serve`` under a query stream that repeats its popular queries, with the cache
(``--cache-mb``) and without.

Starts two servers as their own processes (``python -m embedrt.server BUNDLE``, one with
``--cache-mb MB``) on 127.0.0.1, then drives them, alternately, with closed-loop clients
(``bench_load.drive``), one sentence per request: the sentences of ``benchmarks.corpus``, made
``--distinct`` distinct texts by a numbered suffix, drawn (seed 0) with a probability in proportion
to 1 / rank ** ``--zipf`` (search queries are about Zipf 1.0). Each server sees the same stream;
the cached one warms up over the runs as a long-running server would, and each run records the
share of inputs it answered from the cache (``embedrt_cache_hits_total``). Medians of
``--repeats`` runs per cell.

    python -m benchmarks.load.cache_load BUNDLE --cache-mb 64 --concurrency 1 8 --duration 10 --repeats 3 \\
        --out benchmarks/results/server-cache-X.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.corpus import load_sentences
from benchmarks.load.bench_load import _free_port, drive, start_server, summary_row, write_result


def _metric(url: str, name: str) -> float:
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith(name + " "))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--cache-mb", type=float, default=64)
    p.add_argument("--distinct", type=int, default=50_000)
    p.add_argument("--zipf", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    sentences = load_sentences(2000, seed=0)
    rng = np.random.default_rng(0)
    weights = 1 / np.arange(1, args.distinct + 1) ** args.zipf
    ranks = rng.choice(args.distinct, size=200_000, p=weights / weights.sum())
    stream = [[f"{sentences[r % len(sentences)]} (#{r})"] for r in ranks.tolist()]
    configs = {"no cache": [], f"cache {args.cache_mb:g} MB": ["--cache-mb", str(args.cache_mb)]}
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[dict[str, Any]] = []
    try:
        urls = {}
        for name, extra in configs.items():
            port = _free_port()
            procs.append(start_server(args.bundle, port, extra))
            urls[name] = f"http://127.0.0.1:{port}"
        offset = 0  # each run goes on along the stream, the same requests for both servers
        for c in args.concurrency:
            reps: dict[str, list[dict[str, Any]]] = {n: [] for n in configs}
            for rep in range(args.repeats):
                requests = stream[offset:] + stream[:offset]
                for name in configs if rep % 2 == 0 else list(configs)[::-1]:
                    hits0, inputs0 = (_metric(urls[name], m) for m in ("embedrt_cache_hits_total", "embedrt_inputs_total"))
                    run = asyncio.run(drive(urls[name], requests, c, args.duration))
                    hits1, inputs1 = (_metric(urls[name], m) for m in ("embedrt_cache_hits_total", "embedrt_inputs_total"))
                    run["cache_hit_share"] = round((hits1 - hits0) / max(inputs1 - inputs0, 1), 3)
                    run["load_avg_1m"] = round(os.getloadavg()[0], 2)
                    reps[name].append(run)
                offset += 5_000
            for name, runs in reps.items():
                keys = ("texts_per_s", "p50_ms", "p99_ms", "cache_hit_share")
                rows.append(summary_row({"server": name, "concurrency": c}, runs, keys, digits=3))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
    write_result(args.out, "cache_load", argv, "server repeat cache", distinct=args.distinct, zipf=args.zipf,
                 cache_mb=args.cache_mb, rows=rows)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
