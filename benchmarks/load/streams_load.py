"""``embedrt serve`` under load with one and with N model streams (OpenVINO's throughput mode, or
the CPU provider's streams with ``--device cpu``).

Starts two servers as their own processes (``python -m embedrt.server BUNDLE --device openvino
--precision-hint HINT``, or ``--device cpu``; one with ``--streams 1``, one with ``--streams N``) on
127.0.0.1, then drives them, alternately, with closed-loop clients (``bench_load.drive``) on the same
real-sentence workloads as ``bench_load``; medians of ``--repeats`` runs per cell.

    python -m benchmarks.load.streams_load BUNDLE-PLAIN --streams 2 --concurrency 8 32 \\
        --out benchmarks/results/server-streams-X.json
    python -m benchmarks.load.streams_load BUNDLE-INT8 --device cpu --streams 2 --concurrency 8 32 \\
        --out benchmarks/results/server-streams-int8-X.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.corpus import load_sentences
from benchmarks.load.bench_load import _free_port, drive, start_server, summary_row, write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="a plain (--no-optimize) bundle for openvino; any for cpu")
    p.add_argument("--device", choices=["openvino", "cpu"], default="openvino")
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--precision-hint", default="bf16", help="OpenVINO's (--device openvino)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-texts", type=int, default=4, help="texts per request in the mixed workload: 1..N")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    rng = random.Random(0)
    sentences = load_sentences(2000, seed=0)
    workloads = {
        "single": [[s] for s in sentences],
        "mixed": [rng.sample(sentences, rng.randint(1, args.max_texts)) for _ in range(2000)],
    }
    hint = ["--precision-hint", args.precision_hint] if args.device == "openvino" else []
    base = ["--device", args.device, *hint]
    configs = {s: [*base, "--streams", str(s)] for s in (1, args.streams)}
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[dict[str, Any]] = []
    try:
        urls = {}
        for streams, extra in configs.items():
            port = _free_port()
            procs.append(start_server(args.bundle, port, extra))
            urls[streams] = f"http://127.0.0.1:{port}"
            asyncio.run(drive(urls[streams], workloads["mixed"], 4, 2.0))  # warm-up, not recorded
        for (name, requests), c in itertools.product(workloads.items(), args.concurrency):
            runs: dict[int, list[dict[str, Any]]] = {s: [] for s in configs}
            order = list(configs)
            for rep in range(args.repeats):
                for streams in order if rep % 2 == 0 else order[::-1]:
                    run = asyncio.run(drive(urls[streams], requests, c, args.duration))
                    run["load_avg_1m"] = round(os.getloadavg()[0], 2)
                    runs[streams].append(run)
            for streams, rs in runs.items():
                head = {"workload": name, "concurrency": c, "streams": streams}
                rows.append(summary_row(head, rs, ("requests_per_s", "texts_per_s", "p50_ms", "p99_ms")))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)
    ratios = {
        f"{w} x{c}": round(
            next(r["texts_per_s"] for r in rows if (r["workload"], r["concurrency"], r["streams"]) == (w, c, args.streams))
            / next(r["texts_per_s"] for r in rows if (r["workload"], r["concurrency"], r["streams"]) == (w, c, 1)),
            2,
        )
        for w, c in itertools.product(workloads, args.concurrency)
    }  # fmt: skip
    write_result(
        args.out,
        "streams_load",
        argv,
        f"embedrt serve --device {args.device}, streams 1 against N (closed-loop clients, /v1/embeddings)",
        texts_per_s_ratio_streams_over_one=ratios,
        results=rows,
    )
    print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
