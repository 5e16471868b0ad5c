"""Throughput mode on the CPU: one session with every thread against one single-thread session per
core, each taking every other batch (as OpenVINO's throughput mode runs streams). 2000 real
sentences, batch 32, the same length-sorted batches, alternating, texts/s per round.

    python -m benchmarks.streams --bundle fp32=BUNDLE --bundle int8=BUNDLE --out benchmarks/results/streams-X.json
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.int8_cpu import cpu_info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", required=True, help="NAME=PATH, repeatable")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from benchmarks.corpus import load_sentences
    from embedrt import Embedder

    texts = load_sentences(2000, seed=0)
    out: dict[str, Any] = {
        "command": "python -m benchmarks.streams " + " ".join(f"--bundle {b}" for b in args.bundle)
        + f" --rounds {args.rounds} --threads {args.threads} --out {args.out}",
        "cpu": cpu_info(),
        "unit": "texts/s per round",
        "results": {},
    }
    for name, path in (b.split("=", 1) for b in args.bundle):
        whole = Embedder(path, threads=args.threads)
        streams = [Embedder(path, threads=1) for _ in range(args.threads)]
        feeds = [feed for _, feed in whole._batches(whole.tokenize(texts), 32)]

        def one_session(model: Any = whole, feeds: list[Any] = feeds) -> None:
            for feed in feeds:
                model._run(["sentence_embedding"], feed)

        def per_core(models: list[Any] = streams, feeds: list[Any] = feeds) -> None:
            def work(stream: int) -> None:
                for feed in feeds[stream :: len(models)]:
                    models[stream]._run(["sentence_embedding"], feed)

            with ThreadPoolExecutor(len(models)) as pool:
                list(pool.map(work, range(len(models))))

        ways = {f"one session, {args.threads} threads": one_session, f"{args.threads} sessions, 1 thread each": per_core}
        rates: dict[str, list[float]] = {k: [] for k in ways}
        for run in ways.values():
            run()  # warm-up
        for _ in range(args.rounds):
            for k, run in ways.items():
                t = time.perf_counter()
                run()
                rates[k].append(round(len(texts) / (time.perf_counter() - t), 1))
        out["results"][name] = rates
        print(name, rates, flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
