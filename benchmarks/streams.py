"""Throughput mode on the CPU: one session with every thread against one single-thread session per
core, each taking every other batch (as OpenVINO's throughput mode runs streams). 2000 real
sentences, batch 32, the same length-sorted batches, alternating, texts/s per round.

    python -m benchmarks.streams --bundle fp32=BUNDLE --bundle int8=BUNDLE --out benchmarks/results/streams-X.json
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import bundle_args


def main() -> None:
    args, header = bundle_args.parse(__doc__, "streams")
    from benchmarks.corpus import load_sentences
    from embedrt import Embedder

    texts = load_sentences(2000, seed=0)
    out: dict[str, Any] = {
        **header,
        "unit": "texts/s per round",
        "results": {},
    }
    for name, path in args.bundles.items():
        whole = Embedder(path, threads=args.threads)
        streams = [Embedder(path, threads=1) for _ in range(args.threads)]
        feeds = bundle_args.feeds(whole, texts, 32)

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
