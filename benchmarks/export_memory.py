"""Peak RSS of an export, in copies of the weights: the graph-writing step, then the whole export.

A random BERT (``--hidden``, ``--layers``; a 400-token vocabulary so that the layers hold the weights)
is saved, loaded as ``embedrt export`` loads it, and written by ``export_graph`` (torch.onnx, then one
save into the bundle: inline, or as ``model.onnx.data`` with ``--external``), each in a fresh process.
The process reports its peak RSS (VmHWM) after loading and after the export step. Then a whole
``export_model`` (fp32, the default fusion, validation and the 1000-text gate) runs in a fresh process
whose peak RSS is read at each of its log lines and reset there (``/proc/self/clear_refs``), so each
phase gets its own peak.

    python -m benchmarks.export_memory --out benchmarks/results/export-memory.json [--hidden 768 --layers 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.results_file import write_json

CHILD = r"""
import json, sys
from pathlib import Path
import torch
from embedrt import Pooling
from embedrt.export._archs import Exporter, spec_for
from embedrt.export._model import load_reference
from embedrt.export._onnx import export_graph
from embedrt.export._source import read_source
# VmHWM (this process's peak RSS), not ru_maxrss, which Linux carries across exec from the parent
peak = lambda: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
base = peak()
spec = read_source(sys.argv[1], [Pooling.MEAN])
model, tok = load_reference(spec)
loaded = peak()
sample = tok(["a short text", "a longer text to pad the batch"], padding=True, return_tensors="pt")
inputs = ["input_ids", "attention_mask", "token_type_ids"]
w = export_graph(model, tuple(sample[n] for n in inputs), inputs, Path(sys.argv[2]) / "model.onnx", opset=17,
                 exporter=Exporter.TORCHSCRIPT, arch=spec_for("bert"), say=lambda m: None,
                 external_data_bytes=0 if sys.argv[3] == "external" else 1_800_000_000)
print(json.dumps({"rss_after_imports_mib": round(base), "rss_after_load_mib": round(loaded),
                  "peak_rss_after_export_mib": round(peak()), "external_data": w.external_data}))
"""

WHOLE = r"""
import json, sys
from embedrt.export import export_model
status = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
phases, current = [], ["imports"]
def log(message):
    phases.append({"phase": current[0][:100], "peak_mib": round(status("VmHWM")), "after_mib": round(status("VmRSS"))})
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the next phase's peak starts from the current RSS
    current[0] = message
export_model(sys.argv[1], sys.argv[2], pooling=["mean"], log=log)
log("end")
print(json.dumps(phases))
"""


def _whole_export(enc: Path, out: Path, weights: int) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-c", WHOLE, str(enc), str(out)], capture_output=True, text=True, check=True)
    phases = json.loads(run.stdout.strip().splitlines()[-1])
    loaded = next(p["after_mib"] for p in phases if p["phase"].startswith("loading the PyTorch model"))
    top = max(phases, key=lambda p: p["peak_mib"])
    # the steps that hold the ONNX weights, each above the RSS the loaded PyTorch model leaves
    steps = {name: max((p["peak_mib"] for p in phases if p["phase"].startswith(prefix)), default=None)
             for name, prefix in (("torch.onnx export", "exporting with torch.onnx"),
                                  ("fusion", "making fp32"), ("validation and gate", "validating"))}  # fmt: skip
    return {
        "peak_rss_mib": top["peak_mib"], "peak_phase": top["phase"], "rss_after_load_mib": loaded,
        "peak_in_weight_copies_above_load": round((top["peak_mib"] - loaded) * 1048576 / weights, 2),
        "step_peaks_mib": steps, "phases": phases,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import tiny_models
    from tiny_models import make_encoder
    from transformers import BertConfig

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tiny_models.ARCHS["bert-big"] = tiny_models.Arch(
            "bert-big",
            lambda vocab: BertConfig(vocab_size=vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                     num_attention_heads=12, intermediate_size=4 * args.hidden),
            "wordpiece", True,
        )  # fmt: skip
        enc = make_encoder("bert-big", Path(tmp) / "enc")
        weights = (enc / "model.safetensors").stat().st_size
        for mode in ("inline", "external"):
            out = Path(tmp) / mode
            out.mkdir()
            run = subprocess.run([sys.executable, "-c", CHILD, str(enc), str(out), mode],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            row = json.loads(run.stdout.strip().splitlines()[-1])
            row["export_step_mib"] = row["peak_rss_after_export_mib"] - row["rss_after_load_mib"]
            row["export_step_in_weight_copies"] = round(row["export_step_mib"] * 1048576 / weights, 2)
            rows[mode] = row
            print(mode, row, flush=True)
        whole = _whole_export(enc, Path(tmp) / "bundle", weights)
        print("export_model", {k: v for k, v in whole.items() if k != "phases"}, flush=True)
    result = {
        "command": f"python -m benchmarks.export_memory --out {args.out} --hidden {args.hidden} --layers {args.layers}",
        "weights_mib": round(weights / 1048576),
        "cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith("avx")}),
        "runs": rows,
        "export_model_fp32_default": whole,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
