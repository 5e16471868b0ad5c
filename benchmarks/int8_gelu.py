"""Two elementwise levers on the default int8 graph: GELU's tanh approximation, and onnxruntime's arena.

    python -m benchmarks.int8_gelu --bundle int8=BUNDLE --rounds 3 --out benchmarks/results/int8-gelu-X.json

The bundle's graph is optimized by onnxruntime as embedrt's int8 session is (SkipLayerNormFusion
off), which fuses each erf GELU into one contrib ``Gelu`` node; the variant then swaps those for
``FastGelu`` (the tanh approximation, |error| <= 5e-4 before the quantized projection that follows).
Speed: the same length-sorted batches of 32 (2000 real sentences, 256 passages) through each session
in turn, ``--rounds`` times, texts/s, as ``session_threads``; the third session is the unchanged graph
with onnxruntime's CPU arena on (embedrt keeps it off for bounded memory). Fidelity of both graphs
against sentence-transformers fp32 on the int8 studies' sets (gate, parity, Korean, English: mean
cosine / min / top-10 kept), as ``int8_rowquant`` measures them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import bundle_args
from benchmarks.results_file import write_json


def _optimized(bundle: Path, out: Path, fast_gelu: bool) -> int:
    """The bundle's graph after onnxruntime's extended optimizations (as the int8 session runs it),
    with every contrib ``Gelu`` made ``FastGelu`` if asked; returns how many were swapped."""
    import onnx
    import onnxruntime as ort

    from embedrt._base import INT8_UNFUSED

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(out)
    so.log_severity_level = 3
    ort.InferenceSession(str(bundle / "model.onnx"), so, providers=["CPUExecutionProvider"],
                         disabled_optimizers=INT8_UNFUSED)  # fmt: skip
    model = onnx.load(str(out))
    swapped = 0
    for node in model.graph.node:
        if fast_gelu and node.op_type == "Gelu" and node.domain == "com.microsoft":
            node.op_type = "FastGelu"
            swapped += 1
    onnx.save(model, str(out))
    return swapped


def main() -> None:
    args, header = bundle_args.parse(__doc__, "int8_gelu")
    import onnx

    from benchmarks.corpus import load_passages, load_sentences
    from benchmarks.int8_rowquant import Bench, references
    from embedrt import Embedder
    from embedrt._base import INT8_UNFUSED
    from embedrt._session import create_session

    out: dict[str, Any] = {**header, "results": {}}
    sets = {"sentences": load_sentences(2000, seed=0), "passages": load_passages(256, seed=0)}
    for name, path in args.bundles.items():
        bundle = Path(path)
        model = Embedder(bundle, threads=args.threads)
        plan = model.int8_plan
        config = plan.session_config() if plan else {}
        with tempfile.TemporaryDirectory() as tmp:
            bench = Bench(bundle, Path(tmp))
            graphs, swapped = {}, {}
            for label, fast in (("erf Gelu (embedrt)", False), ("FastGelu", True)):
                graph = Path(tmp) / f"{fast}.onnx"
                swapped[label] = _optimized(bundle, graph, fast)
                graphs[label] = bench.bundle(label, onnx.load(str(graph)))
            sessions = {
                label: create_session(g / "model.onnx", model.device, args.threads, session_config=config,
                                      disabled_optimizers=INT8_UNFUSED if plan else None)
                for label, g in graphs.items()
            }  # fmt: skip
            sessions["arena on"] = create_session(bundle / "model.onnx", model.device, args.threads,
                                                  session_config=config, memory_arena=True,
                                                  disabled_optimizers=INT8_UNFUSED if plan else None)  # fmt: skip
            result: dict[str, Any] = {"gelu_nodes_swapped": swapped["FastGelu"]}
            for set_name, texts in sets.items():
                feeds = bundle_args.feeds(model, texts, 32)
                rates = bundle_args.alternating_rates(sessions, feeds, len(texts), args.rounds)
                base = max(rates["erf Gelu (embedrt)"])
                result[set_name] = {"texts_per_s": rates,
                                    "best_vs_embedrt": {k: round(max(v) / base, 3) for k, v in rates.items()}}  # fmt: skip
                print(name, set_name, json.dumps(result[set_name]), flush=True)
            refs = references(bench.sets, Path(model.manifest.source["path"]))
            result["fidelity"] = {label: bench.fidelity(g, refs) for label, g in graphs.items()}
            print(name, "fidelity", json.dumps(result["fidelity"]), flush=True)
        out["results"][name] = result
    write_json(args.out, out)


if __name__ == "__main__":
    main()
