"""The systems of the suite, the environment each runs in, and how those environments are made.

A peer whose pins conflict with the main stack gets its own virtual environment under
``$EMBEDRT_BENCH_VENVS`` (default ``/work/venvs``), installed from PyPI by name
(``python -m benchmarks.envs --create``). embedrt's OpenVINO rows run in the main environment
(``embedrt[openvino]``: OpenVINO's own runtime); the reference row of the same graph through
onnxruntime-openvino's execution provider needs an environment of its own, as that build shares
the module name ``onnxruntime`` with onnxruntime. A system whose environment, library or artifact
is missing is a row skipped with a note.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import prepare

HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("EMBEDRT_BENCH_VENVS", "/work/venvs"))

# env name -> (pip requirements, module that proves it works, install embedrt --no-deps?)
ENVS: dict[str, tuple[list[str], str, bool]] = {
    "openvino": (["openvino", "tokenizers", "numpy"], "openvino", False),
    "fastembed": (["fastembed"], "fastembed", False),
    # transformers<5 and torch only for the converter (ct2-transformers-converter)
    "ct2": (["ctranslate2", "tokenizers", "numpy", "torch==2.13.0", "transformers<5"], "ctranslate2", False),
    "ort-openvino": (["onnxruntime-openvino", "tokenizers", "numpy", "tqdm"], "onnxruntime", True),
}


def python_of(env: str) -> Path:
    return VENVS / env / "bin" / "python"


def create(env: str) -> None:
    reqs, _, with_embedrt = ENVS[env]
    py = python_of(env)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / env)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *reqs], check=True)
    if with_embedrt:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(HERE.parent)], check=True
        )


def env_problem(env: str) -> str | None:
    """Why ``env`` cannot run, or None."""
    py = python_of(env)
    if not py.exists():
        return f"no environment {VENVS / env} (create it: python -m benchmarks.envs --create)"
    module = ENVS[env][1]
    r = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, text=True)
    if r.returncode:
        return f"{module} does not import in {VENVS / env}: {r.stderr.strip().splitlines()[-1:]}"
    return None


def _openvino_problem() -> str | None:
    """Why embedrt's device "openvino" cannot run in this (the main) environment, or None."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return 'OpenVINO\'s runtime is not installed in the main environment (pip install -e ".[openvino]")'
    return None


def system_specs(
    src: Path, threads: int, only: list[str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every system as a worker spec, and a note for each that cannot run here."""
    main_py = sys.executable
    art = prepare.ARTIFACTS
    notes: dict[str, str] = {}
    specs: list[dict[str, Any]] = [
        {
            "name": "st-torch-fp32",
            "label": "sentence-transformers, PyTorch fp32",
            "runner": "sentence-transformers",
            "python": main_py,
            "precision": "fp32",
        },
        {
            "name": "st-torch-bf16",
            "label": "sentence-transformers, PyTorch bf16 (AMX)",
            "runner": "sentence-transformers",
            "python": main_py,
            "precision": "bf16",
            "params": {"dtype": "bf16"},
        },
        {
            "name": "hf-torch-fp32",
            "label": "transformers + PyTorch pooling (unsorted batches)",
            "runner": "transformers",
            "python": main_py,
            "precision": "fp32",
        },
    ]
    # every export setting's bundle, then the int8 one again in the CPU provider's throughput mode (two
    # streams of one thread sharing one session, two batches at once, as OpenVINO's streams run)
    rows: list[tuple[str, str, str, dict[str, Any]]] = [
        (f"embedrt-{setting}", setting, f"embedrt {setting}", {}) for setting in prepare.BUNDLE_SETTINGS
    ]
    rows.append(("embedrt-int8-tput", "int8", "embedrt int8, 2 streams (CPU provider)", {"streams": 2}))
    for name, setting, label, extra in rows:
        if only and name not in only:  # an export with its gate takes minutes: only the rows asked for
            continue
        path, note = prepare.bundle(src, setting)
        specs.append(
            {
                "name": name,
                "label": label,
                "runner": "embedrt",
                "python": main_py,
                "precision": "int8" if "int8" in setting else "fp32",
                "params": {"bundle": str(path or art / f"bundle-{setting}"), **extra},
            }
        )
        if path is None:
            notes[name] = note
    ov_bundle, note = prepare.bundle(src, prepare.PLAIN)
    specs.append(
        {
            "name": "embedrt-ov-bf16",
            "label": "embedrt, device openvino (OpenVINO runtime) bf16",
            "runner": "embedrt",
            "python": main_py,
            "precision": "bf16",
            "params": {
                "bundle": str(ov_bundle),
                "device": "openvino",
                "precision_hint": "bf16",
            },
        }
    )
    # the same in OpenVINO's throughput mode: two infer requests of one thread each, two batches at once
    specs.append({**specs[-1], "name": "embedrt-ov-bf16-tput", "label": "embedrt, device openvino (OpenVINO runtime) bf16, 2 streams",
                  "params": {**specs[-1]["params"], "streams": 2}})  # fmt: skip
    problem = _openvino_problem() or (None if ov_bundle else note)
    if problem:
        notes["embedrt-ov-bf16"] = notes["embedrt-ov-bf16-tput"] = problem
    # The same graph and batching through onnxruntime-openvino's execution provider (a session made
    # by the suite): how OpenVINO's runtime compares with the provider built on an older OpenVINO.
    specs.append(
        {
            "name": "ortgraph-ov-ep-bf16",
            "label": "embedrt fp32 graph, ORT OpenVINO provider bf16 (session made by the suite)",
            "runner": "ort-graph",
            "python": str(python_of("ort-openvino")),
            "precision": "bf16",
            "params": {
                "onnx": str(ov_bundle) + "/model.onnx",
                "provider": "OpenVINOExecutionProvider",
                "provider_options": {
                    "device_type": "CPU",
                    "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}),
                },
            },
        }
    )
    problem = env_problem("ort-openvino")
    if problem or ov_bundle is None:
        notes["ortgraph-ov-ep-bf16"] = problem or note
    enc = prepare.encoder_onnx(src)
    for sort in (False, True):
        name = "fastembed-sorted" if sort else "fastembed"
        specs.append(
            {
                "name": name,
                "label": "fastembed" + (" (texts sorted by length first)" if sort else " (as is, unsorted)"),
                "runner": "fastembed",
                "python": str(python_of("fastembed")),
                "precision": "fp32",
                "params": {"fastembed_dir": str(enc), "sort": sort},
            }
        )
    for label, prec, hint in (
        ("fp32", "f32", "LATENCY"),
        ("bf16", "bf16", "LATENCY"),
        ("bf16-tput", "bf16", "THROUGHPUT"),
    ):
        specs.append(
            {
                "name": f"openvino-{label}",
                "label": f"OpenVINO {prec} {hint.lower()} hint",
                "runner": "openvino",
                "python": str(python_of("openvino")),
                "precision": "bf16" if prec == "bf16" else "fp32",
                "params": {"onnx": str(enc / "model.onnx"), "precision": prec, "hint": hint},
            }
        )
    specs.append(
        {
            "name": "ct2-int8",
            "label": "CTranslate2 int8",
            "runner": "ctranslate2",
            "python": str(python_of("ct2")),
            "precision": "int8",
            "params": {},
        }
    )
    for env, prefix in (("fastembed", "fastembed"), ("openvino", "openvino-"), ("ct2", "ct2-")):
        problem = env_problem(env)
        for s in specs:
            if s["name"].startswith(prefix) and problem:
                notes.setdefault(s["name"], problem)
    if "ct2-int8" not in notes:
        try:
            specs[-1]["params"]["ct2_dir"] = str(prepare.ct2_model(src, python_of("ct2")))
        except subprocess.CalledProcessError as e:
            notes["ct2-int8"] = f"CTranslate2 conversion failed: {e}"
    for s in specs:
        s["model_dir"] = str(src)
        s["threads"] = threads
        if only and s["name"] not in only and s["name"] != "st-torch-fp32":
            notes.setdefault(s["name"], "not selected (--only)")
    return specs, notes


def bundle_parity_reports(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """The quality-gate numbers each embedrt bundle's export recorded in its manifest."""
    out = {}
    for s in specs:
        if s["runner"] != "embedrt":
            continue
        m = Path(s["params"]["bundle"]) / "manifest.json"
        if m.exists():
            man = json.loads(m.read_text())
            out[s["name"]] = {
                "precision": man.get("precision"),
                "optimizations": man.get("optimizations"),
                "parity": man.get("parity"),
            }
    return out


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="create or check the peers' environments")
    p.add_argument("--create", action="store_true", help="create the missing environments from PyPI")
    a = p.parse_args()
    for env in ENVS:
        problem = env_problem(env)
        if problem and a.create:
            print(f"creating {env} ...", flush=True)
            try:
                create(env)
            except subprocess.CalledProcessError as e:
                print(f"  failed: {e}")
            problem = env_problem(env)
        print(f"{env:12s} {problem or 'ok'}")
