"""Tokens per model run on ``device="openvino"``: speed and peak RSS of ``Embedder.encode`` with
several ``max_batch_tokens`` budgets, each setting in a process of its own (peak RSS is a process's),
alternating between settings over ``--rounds``. Two text sets: the corpus job's generated sentences
(``--rows`` of them) and passages that fill MiniLM's 256-token window (a tenth as many).

    python -m benchmarks.openvino_run_tokens --bundle plain=benchmarks/.cache/artifacts/bundle-fp32-unfused \\
        --out benchmarks/results/openvino-run-tokens-X.json

Settings: bf16 (where the CPU has it) on 2 streams and on one, fp32 on one; budgets ``--budgets``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json

_CHILD = r"""
import json, resource, sys, time
from benchmarks.dataset import generate
from embedrt import Embedder
bundle, hint, streams, budget, rows, long = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "long"
texts = [json.loads(line)["text"] for line in open(generate(rows), encoding="utf-8")]
if long:  # passages past the 256-token window: every batch is 32 x 256 tokens
    texts = [" ".join(texts[i * 6:(i + 1) * 6]) * 3 for i in range(rows // 10)]
model = Embedder(bundle, device="openvino", precision_hint=hint, streams=streams, max_batch_tokens=budget)
t = time.perf_counter()
model.encode(texts, batch_size=32)
seconds = time.perf_counter() - t
print(json.dumps({"texts_per_s": len(texts) / seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budgets", type=int, nargs="+", default=[16384, 2048, 1024])
    p.add_argument("--rows", type=int, default=10000)


def main() -> None:
    args, header = bundle_args.parse(__doc__, "openvino_run_tokens", _options)
    from embedrt._session import cpu_precision_hints
    from embedrt._types import InferencePrecision

    (name, bundle), = args.bundles.items()
    settings = [("fp32", 1)]
    if InferencePrecision.BF16 in cpu_precision_hints():
        settings = [("bf16", 2), ("bf16", 1), *settings]
    runs: dict[str, list[dict[str, float]]] = {}
    for r in range(args.rounds):
        order = [(h, s, b, t) for h, s in settings for b in args.budgets for t in ("sentences", "long")]
        for hint, streams, budget, texts in order if r % 2 == 0 else order[::-1]:
            out = subprocess.run([sys.executable, "-c", _CHILD, bundle, hint, str(streams), str(budget), str(args.rows),
                                  texts], capture_output=True, text=True, check=True)  # fmt: skip
            key = f"{hint} streams={streams} {texts} budget={budget}"
            runs.setdefault(key, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(key, runs[key][-1], flush=True)
    results: dict[str, Any] = {
        key: {"texts_per_s_best": round(max(x["texts_per_s"] for x in v), 1),
              "texts_per_s_all": [round(x["texts_per_s"], 1) for x in v],
              "peak_rss_mb": [round(x["peak_rss_mb"]) for x in v]}
        for key, v in runs.items()
    }  # fmt: skip
    write_json(args.out, {**header, "bundle": name, "unit": "texts/s of one encode call, best of the rounds; "
                          "peak RSS of the process", "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
