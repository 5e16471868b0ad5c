"""Throughput mode on the CPU provider, through the product's path: ``Embedder(threads=T)`` against
``Embedder(threads=T, streams=T)`` (streams of one thread each, one onnxruntime session shared by
them, each batch on its own stream). 2000 real sentences and 256 passages, one ``encode`` call per
set at batch 32 (as the suite and a corpus job call it), the models alternating, the order
rotated every round; texts/s per round.

    python -m benchmarks.streams --bundle fp32=BUNDLE --bundle int8=BUNDLE --rounds 5 --out benchmarks/results/streams-X.json
    python -m benchmarks.streams --bundle int8=BUNDLE --run-tokens 256 512 1024 --rounds 4 --out ...

``--run-tokens``: the streams model once per token budget per run (``max_batch_tokens``), to find
the run size that suits runs of one thread; the one-stream model keeps its default.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-tokens", type=int, nargs="+", help="token budgets per run for the streams model")


def main() -> None:
    args, header = bundle_args.parse(__doc__, "streams", _options)
    from benchmarks.corpus import load_passages, load_sentences
    from embedrt import Embedder

    sets = {"sentences": load_sentences(2000, seed=0), "passages": load_passages(256, seed=0)}
    out: dict[str, Any] = {**header, "unit": "texts/s per round", "results": {}}
    for name, path in args.bundles.items():
        models = {f"1 stream, {args.threads} threads": Embedder(path, threads=args.threads)}
        for budget in args.run_tokens or ["auto"]:
            label = f"{args.threads} streams, 1 thread each" + (f", runs of {budget} tokens" if args.run_tokens else "")
            models[label] = Embedder(path, threads=args.threads, streams=args.threads, max_batch_tokens=budget)
        for model in models.values():
            model.encode(sets["sentences"][:256], batch_size=32)  # warm-up
        rates: dict[str, dict[str, list[float]]] = {s: {k: [] for k in models} for s in sets}
        for r in range(args.rounds):
            for set_name, texts in sets.items():
                k = r % len(models)
                for label in list(models)[k:] + list(models)[:k]:  # rotated: none always first
                    t = time.perf_counter()
                    models[label].encode(texts, batch_size=32)
                    rates[set_name][label].append(round(len(texts) / (time.perf_counter() - t), 1))
        out["results"][name] = rates
        print(name, json.dumps(rates), flush=True)
    write_json(args.out, out)


if __name__ == "__main__":
    main()
