"""onnxruntime's thread-pool settings on embedrt bundles: spinning and the dynamic block base.

    python -m benchmarks.session_threads --bundle int8=BUNDLE --bundle fp32=BUNDLE --out benchmarks/results/session-threads-X.json

Each bundle is loaded as ``Embedder`` loads it (the int8 plan's session config and disabled
optimizers included), then its session is rebuilt once per setting below, added to that config.
The same length-sorted batches of 32 run through each in turn, alternating, ``--rounds`` times
(2000 real sentences, 256 passages: texts/s per round), and 200 other sentences one at a time
(``session.run`` p50 per round, ms). Reported against embedrt's setting today (onnxruntime's
defaults: worker threads spin while waiting, static partitioning).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json

# name -> onnxruntime session config entries added to what embedrt sets
SETS: dict[str, dict[str, str]] = {
    "embedrt today": {},
    "no spinning": {"session.intra_op.allow_spinning": "0"},
    "dynamic block base 4": {"session.dynamic_block_base": "4"},
}


def main() -> None:
    args, header = bundle_args.parse(__doc__, "session_threads")
    from benchmarks.corpus import load_passages, load_sentences
    from embedrt import Embedder
    from embedrt._base import INT8_UNFUSED
    from embedrt._bundle import MODEL_NAME
    from embedrt._session import create_session

    sets = {"sentences": load_sentences(2000, seed=0), "passages": load_passages(256, seed=0)}
    single = load_sentences(200, seed=1)
    out: dict[str, Any] = {**header, "settings": SETS, "results": {}}
    for name, path in args.bundles.items():
        model = Embedder(path, threads=args.threads)
        plan = model.int8_plan
        base = plan.session_config() if plan else {}
        sessions = {
            label: create_session(
                Path(path) / MODEL_NAME, model.device, args.threads, session_config={**base, **extra},
                disabled_optimizers=INT8_UNFUSED if plan else None,
            )
            for label, extra in SETS.items()
        }  # fmt: skip
        result: dict[str, Any] = {}
        for set_name, texts in sets.items():
            feeds = bundle_args.feeds(model, texts, 32)
            rates = bundle_args.alternating_rates(sessions, feeds, len(texts), args.rounds)
            result[set_name] = {
                "texts_per_s": rates,
                "best_vs_embedrt_today": {k: round(max(v) / max(rates["embedrt today"]), 3) for k, v in rates.items()},
            }
            print(name, set_name, json.dumps(result[set_name]), flush=True)
        feeds = bundle_args.feeds(model, single, 1)
        p50: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):
            ms: dict[str, list[float]] = {k: [] for k in sessions}
            for feed in feeds:  # settings alternate text by text
                for label, session in sessions.items():
                    t = time.perf_counter()
                    session.run(["sentence_embedding"], feed)
                    ms[label].append(1000 * (time.perf_counter() - t))
            for label, v in ms.items():
                p50[label].append(round(statistics.median(v), 3))
        result["batch1_p50_ms"] = {
            "per_round": p50,
            "best_vs_embedrt_today": {k: round(min(v) / min(p50["embedrt today"]), 3) for k, v in p50.items()},
        }
        print(name, "batch 1", json.dumps(result["batch1_p50_ms"]), flush=True)
        out["results"][name] = result
    write_json(args.out, out)


if __name__ == "__main__":
    main()
