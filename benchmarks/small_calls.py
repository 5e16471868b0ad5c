"""Calls of fewer batches than streams, through the product's path: ``Embedder(threads=T)`` against
``Embedder(threads=T, streams=T)`` with its batches as ``batch_size`` and ``max_batch_tokens`` cut
them (``batches_as_cut()``: one batch of a small call runs on one stream's thread while the others
idle) and as it runs them by default (the call cut further, into a piece per stream). Real sentences
(seed 0): calls of 3, 8 and 32 texts, and 32 texts truncated to 16 tokens (the suite's shortest
length cell: 512 tokens, one run of one thread); each call timed ``--calls`` times, the three ways
alternating and rotated every round; median ms per call per round, the paired ratios per round.

    python -m benchmarks.small_calls --bundle int8=BUNDLE --bundle fp32=BUNDLE --rounds 5 --out benchmarks/results/small-calls-X.json
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json


def _options(p: Any) -> None:
    p.add_argument("--calls", type=int, default=40, help="calls timed per case and round")


def main() -> None:
    args, header = bundle_args.parse(__doc__, "small_calls", _options)
    from benchmarks.corpus import load_sentences
    from embedrt import Embedder

    sentences = load_sentences(400, seed=0)
    out: dict[str, Any] = {**header, "unit": "ms per call, median of --calls, per round", "results": {}}
    for name, path in args.bundles.items():
        one = Embedder(path, threads=args.threads)
        streams = Embedder(path, threads=args.threads, streams=args.threads)
        short = [t for t, n in zip(sentences, streams.tokenize(sentences).lengths, strict=True) if n >= 16][:32]
        cases = {"3 sentences": (sentences[:3], None), "8 sentences": (sentences[3:11], None),
                 "32 sentences": (sentences[11:43], None), "32 texts x 16 tokens": (short, 16)}  # fmt: skip
        single, as_cut, shared = "1 stream", f"{args.threads} streams, batches as cut", f"{args.threads} streams (default)"
        ways = {
            single: (one, contextlib.nullcontext),
            as_cut: (streams, streams.batches_as_cut),
            shared: (streams, contextlib.nullcontext),
        }
        results: dict[str, Any] = {}
        for case, (texts, length) in cases.items():
            for model in (one, streams):
                model.tokenizer.enable_truncation(max_length=length or model.manifest.max_seq_length)
            ms: dict[str, list[float]] = {w: [] for w in ways}
            for model, context in ways.values():  # warm-up
                with context():
                    model.encode(texts, batch_size=32)
            for r in range(args.rounds):
                k = r % len(ways)
                for label in list(ways)[k:] + list(ways)[:k]:
                    model, context = ways[label]
                    times = []
                    with context():
                        for _ in range(args.calls):
                            t = time.perf_counter()
                            model.encode(texts, batch_size=32)
                            times.append((time.perf_counter() - t) * 1e3)
                    ms[label].append(round(statistics.median(times), 3))
            results[case] = {
                "ms": ms,
                "default / as cut, speedup per round": [
                    round(a / d, 3) for a, d in zip(ms[as_cut], ms[shared], strict=True)],
                "default / 1 stream, speedup per round": [
                    round(s / d, 3) for s, d in zip(ms[single], ms[shared], strict=True)],
            }  # fmt: skip
            print(name, case, json.dumps(results[case]), flush=True)
        out["results"][name] = results
    write_json(args.out, out)


if __name__ == "__main__":
    main()
