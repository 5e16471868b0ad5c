"""Architecture x variant: which exports pass their gate, which are refused and why.

Every architecture is a tiny random model built as in the tests (tests/tiny_models.py,
tests/tiny_families.py), exported in fp32, fused (--optimize), int8, int8 with activations per token
row (``--int8-method smooth-rows``), int8 with the per-tensor inputs in two passes
(``--int8-method smooth-residual``) and fp16, each through its own gate on the built-in 1000 texts. Random weights say nothing about a real checkpoint's int8 quality;
what the matrix shows is which paths export, run and agree with PyTorch, and which are refused.

    python -m benchmarks.coverage_matrix --out benchmarks/results/coverage-matrix.json [--only qwen3 t5] [--variants int8-rows]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results_file import write_json

VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fused": {"optimize": True},
    "int8": {"precision": "int8"},
    "int8-rows": {"precision": "int8", "int8_method": "smooth-rows"},  # asked for: no fallback to nbits
    "int8-residual": {"precision": "int8", "int8_method": "smooth-residual"},  # asked for: no fallback either
    "fp16": {"precision": "fp16"},
}


def _source(name: str, root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tiny_families import FAMILIES, make_family
    from tiny_models import make_st_folder

    return make_family(name, root) if name in FAMILIES else make_st_folder(name, root)


def run_one(source: Path, variant: str, out: Path) -> dict[str, Any]:
    from embedrt import ExportError, UnsupportedModelError
    from embedrt.export import export_model

    t0 = time.perf_counter()
    try:
        bundle = export_model(source, out, **VARIANTS[variant])
    except UnsupportedModelError as e:
        refused = "refused" in str(e) or "fp32 only" in str(e)
        return {"status": "refused" if refused else "failed", "reason": str(e)[:400]}
    except ExportError as e:
        report = getattr(e, "report", None) or {}
        return {"status": "failed", "reason": str(e)[:400],
                "gate": {k: report[k] for k in ("mean_cos", "min_cos", "topk") if k in report}}
    manifest = json.loads((bundle / "manifest.json").read_text())
    gate = manifest["parity"]["gate"]
    opt = manifest["optimizations"]
    return {
        "status": "passed",
        "seconds": round(time.perf_counter() - t0, 1),
        "grid_min_cosine": manifest["parity"]["min_cosine"],
        "gate": {k: gate[k] for k in ("mean_cos", "min_cos", "topk")},
        "fused_ops": opt.get("fused_ops") or {},
        "not_fused": (opt.get("fusion") or {}).get("not_fused"),
        "int8_method": (opt.get("quantization") or {}).get("method"),
        "exporter": manifest["source"]["exporter"],
    }


def main() -> None:
    from tiny_families import FAMILIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--only", nargs="*", help="architectures (default: all)")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = p.parse_args()
    names = args.only or ["bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", *FAMILIES]
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            source = _source(name, Path(tmp) / name)
            for variant in args.variants:
                row = run_one(source, variant, Path(tmp) / f"{name}-{variant}")
                results.setdefault(name, {})[variant] = row
                print(name, variant, row["status"], row.get("reason", "")[:200] or row.get("gate"), flush=True)
                write_json(out, results)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    main()
