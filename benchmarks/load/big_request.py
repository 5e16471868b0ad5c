"""One big request and the small ones behind it: how long a one-sentence request waits while a
request of many passages runs, on two builds of ``embedrt serve`` served from two Python environments
(see ``server_ab``), taking turns.

Each round, per build: one client posts ``--big`` passages to ``/v1/embeddings``; ``--delay`` seconds
later a second client starts posting one sentence at a time, one after another, until the big
request is answered. Reported per build: the small requests' latencies (median and max of every
round's median and max), how many were answered while the big one ran, and the big request's time.

    python -m benchmarks.load.big_request BUNDLE --python-a OLD-VENV/bin/python --label-a before \\
        --label-b after --out benchmarks/results/big-request-X.json
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx

from benchmarks.corpus import load_passages, load_sentences
from benchmarks.load.bench_load import write_result
from benchmarks.load.server_ab import ab_parser, both_servers


def one_round(url: str, passages: list[str], sentences: list[str], delay: float) -> dict[str, Any]:
    big: dict[str, float] = {}

    def post_big() -> None:
        t = time.perf_counter()
        r = httpx.post(f"{url}/v1/embeddings", json={"input": passages}, timeout=600)
        r.raise_for_status()
        big["seconds"] = time.perf_counter() - t

    thread = threading.Thread(target=post_big)
    thread.start()
    time.sleep(delay)
    small: list[float] = []
    with httpx.Client(timeout=600) as client:
        while thread.is_alive():
            t = time.perf_counter()
            r = client.post(f"{url}/v1/embeddings", json={"input": [sentences[len(small) % len(sentences)]]})
            r.raise_for_status()
            small.append(time.perf_counter() - t)
    thread.join()
    return {"big_s": round(big["seconds"], 3), "small_answered": len(small),
            "small_p50_ms": round(1000 * statistics.median(small), 1) if small else None,
            "small_max_ms": round(1000 * max(small), 1) if small else None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = ab_parser(__doc__)
    p.add_argument("--big", type=int, default=256, help="passages in the big request")
    p.add_argument("--delay", type=float, default=0.3, help="seconds before the small requests start")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    passages = (load_passages(64, seed=0) * (args.big // 64 + 1))[: args.big]
    sentences = load_sentences(200, seed=1)
    labels = [args.label_a, args.label_b]
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    with both_servers(args, ["--max-inputs", str(args.big)]) as (_, urls):
        for r in range(args.rounds):
            for label in labels if r % 2 == 0 else labels[::-1]:
                row = one_round(urls[label], passages, sentences, args.delay)
                rounds[label].append(row)
                print(label, r, row, flush=True)
    summary = {
        label: {"small_p50_ms": statistics.median(x["small_p50_ms"] for x in rows if x["small_p50_ms"] is not None),
                "small_max_ms": statistics.median(x["small_max_ms"] for x in rows if x["small_max_ms"] is not None),
                "small_answered": statistics.median(x["small_answered"] for x in rows),
                "big_s": statistics.median(x["big_s"] for x in rows)}
        for label, rows in rounds.items()
    }  # fmt: skip
    for label, s in summary.items():
        print(label, s)
    write_result(args.out, "big_request", argv, "big_request", bundle=str(args.bundle), big_passages=args.big,
                 delay_s=args.delay, server_args=args.server_args, medians=summary, rounds=rounds)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
