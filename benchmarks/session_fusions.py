"""onnxruntime's session-time fusions, one at a time, on embedrt bundles: which to leave off.

    python -m benchmarks.session_fusions --bundle fp32=BUNDLE --bundle int8=BUNDLE --out benchmarks/results/session-fusions-X.json

Each bundle is loaded as ``Embedder`` loads it (the int8 plan's session config included), then its
session is rebuilt once per set of disabled onnxruntime optimizers; the same length-sorted batches
of 32 run through each in turn, alternating, ``--rounds`` times: 2000 real sentences and 256
passages. Reported: texts/s per round, and the best round of each set against the set embedrt uses
today for that bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json

# name -> onnxruntime optimizers disabled in the session
SETS: dict[str, list[str]] = {
    "all fusions": [],
    "no SkipLayerNormFusion": ["SkipLayerNormFusion"],
    "no BiasGeluFusion": ["BiasGeluFusion"],
    "no SkipLayerNormFusion, no BiasGeluFusion": ["SkipLayerNormFusion", "BiasGeluFusion"],
}


def main() -> None:
    args, header = bundle_args.parse(__doc__, "session_fusions")
    from benchmarks.corpus import load_passages, load_sentences
    from embedrt import Embedder
    from embedrt._base import INT8_UNFUSED
    from embedrt._bundle import MODEL_NAME
    from embedrt._session import create_session

    sets = {"sentences": load_sentences(2000, seed=0), "passages": load_passages(256, seed=0)}
    out: dict[str, Any] = {
        **header,
        "unit": "texts/s per round",
        "embedrt_disables": {"int8": INT8_UNFUSED, "other": []},
        "results": {},
    }
    for name, path in args.bundles.items():
        model = Embedder(path, threads=args.threads)
        plan = model.int8_plan
        today = INT8_UNFUSED if plan else []
        sessions = {
            label: create_session(
                Path(path) / MODEL_NAME, model.device, args.threads,
                session_config=plan.session_config() if plan else None, disabled_optimizers=disabled,
            )
            for label, disabled in SETS.items()
        }  # fmt: skip
        result: dict[str, Any] = {}
        for set_name, texts in sets.items():
            feeds = bundle_args.feeds(model, texts, 32)
            rates = bundle_args.alternating_rates(sessions, feeds, len(texts), args.rounds)
            base = max(rates[next(k for k, v in SETS.items() if v == today)])
            result[set_name] = {
                "rates": rates,
                "best_vs_embedrt_today": {k: round(max(v) / base, 3) for k, v in rates.items()},
            }
            print(name, set_name, json.dumps(result[set_name]), flush=True)
        out["results"][name] = result
    write_json(args.out, out)


if __name__ == "__main__":
    main()
