"""int8 on OpenVINO's runtime: does it beat OpenVINO's bf16 for embedrt's graph on this CPU?

OpenVINO runs int8 weights stored behind ``DequantizeLinear`` as compressed weights, and with
``DYNAMIC_QUANTIZATION_GROUP_SIZE`` it quantizes the activations at run time (per group of that many
channels) to use the CPU's int8 instructions (AMX, VNNI). This takes a plain embedrt bundle, writes a
copy of its graph whose weight matrices are int8 (symmetric, one scale per output column), and runs
the same length-sorted batches of 32 real sentences through: the fp32 graph in f32 and bf16, the int8
graph with dynamic quantization (group 32) and without (group 0), one infer request of ``--threads``
each, alternating, ``--rounds`` times. Fidelity: cosine against the fp32 graph's vectors.

    python -m benchmarks.openvino_int8 --bundle benchmarks/.cache/artifacts/bundle-fp32-unfused \\
        --out benchmarks/results/openvino-int8-X.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.int8_cpu import cpu_info
from benchmarks.results_file import write_json


def int8_weights_copy(model_path: Path, out: Path) -> int:
    """``out``: the graph of ``model_path`` with every 2-D MatMul weight (both sides >= 64) stored
    as int8 behind a per-column ``DequantizeLinear``; returns how many were converted."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(model_path))
    inits = {t.name: t for t in m.graph.initializer}
    front: list[onnx.NodeProto] = []
    done = 0
    for node in m.graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if w is None or len(w.dims) != 2 or min(w.dims) < 64:
            continue
        arr = numpy_helper.to_array(w)
        scale = np.abs(arr).max(0) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(arr / scale), -127, 127).astype(np.int8)
        name = f"{w.name}_int8"
        m.graph.initializer.remove(w)
        m.graph.initializer.extend([numpy_helper.from_array(q, name),
                                    numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")])  # fmt: skip
        front.append(helper.make_node("DequantizeLinear", [name, f"{name}_scale"], [w.name], axis=1,
                                      name=f"{name}_dq"))  # fmt: skip
        inits.pop(w.name)
        done += 1
    nodes = front + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, str(out))
    return done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="a plain (--no-optimize) fp32 bundle")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sentences", type=int, default=2000)
    args = p.parse_args()

    import openvino as ov
    from tokenizers import Tokenizer

    from benchmarks.corpus import load_sentences

    bundle = Path(args.bundle)
    texts = load_sentences(args.sentences, seed=0)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    enc = tok.encode_batch(texts)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
    batches = []
    for b in range(0, len(order), 32):
        rows = order[b : b + 32]
        ids = np.zeros((len(rows), max(len(enc[i].ids) for i in rows)), np.int64)
        for j, i in enumerate(rows):
            ids[j, : len(enc[i].ids)] = enc[i].ids
        batches.append(ids)

    core = ov.Core()
    base = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "int8.onnx"
        converted = int8_weights_copy(bundle / "model.onnx", int8_path)
        plain = str(bundle / "model.onnx")
        settings: dict[str, tuple[str, dict[str, Any]]] = {
            "fp32": (plain, {"INFERENCE_PRECISION_HINT": "f32"}),
            "bf16": (plain, {"INFERENCE_PRECISION_HINT": "bf16"}),
            "int8 weights, dynamic int8 activations (group 32)": (
                str(int8_path), {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}),
            "int8 weights, fp32 activations (group 0)": (
                str(int8_path), {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}),
        }  # fmt: skip
        requests = {}
        for name, (path, cfg) in settings.items():
            requests[name] = core.compile_model(path, "CPU", {**base, **cfg}).create_infer_request()
        with_types = "token_type_ids" in {i.get_any_name() for i in requests["fp32"].model_inputs}

        def feed(ids: np.ndarray) -> dict[str, np.ndarray]:
            f = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
            if with_types:
                f["token_type_ids"] = np.zeros_like(ids)
            return f

        def encode(name: str) -> np.ndarray:
            req = requests[name]
            return np.concatenate([np.array(req.infer(feed(ids))["sentence_embedding"]) for ids in batches])

        vectors = {name: encode(name) for name in settings}  # also the warm-up
        rates: dict[str, list[float]] = {name: [] for name in settings}
        for r in range(args.rounds):
            names = list(settings)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t = time.perf_counter()
                encode(name)
                rates[name].append(round(len(texts) / (time.perf_counter() - t), 1))

    ref = vectors["fp32"]
    results: dict[str, Any] = {}
    for name, v in vectors.items():
        cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
        results[name] = {"texts_s": rates[name], "best_texts_s": max(rates[name]),
                         "cos_vs_fp32": {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 5)}}  # fmt: skip
    flags = " ".join(f"--{k} {v}" for k, v in vars(args).items())
    out = {
        "command": f"python -m benchmarks.openvino_int8 {flags}",
        "cpu": cpu_info(),
        "openvino": ov.__version__,
        "threads": args.threads,
        "weights_converted": converted,
        "unit": "texts/s per round, 32-text length-sorted batches of real sentences",
        "results": results,
    }
    write_json(args.out, out)
    for name, r in results.items():
        print(f"{name}: best {r['best_texts_s']} texts/s, cos mean {r['cos_vs_fp32']['mean']} min {r['cos_vs_fp32']['min']}")


if __name__ == "__main__":
    main()
