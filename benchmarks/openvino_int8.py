"""int8 on OpenVINO's runtime: does it beat OpenVINO's bf16 for embedrt's graph on this CPU?

OpenVINO runs int8 weights stored behind ``DequantizeLinear`` as compressed weights, and with
``DYNAMIC_QUANTIZATION_GROUP_SIZE`` it quantizes the activations at run time (per group of that many
channels) to use the CPU's int8 instructions (AMX, VNNI). This takes a plain embedrt bundle, writes a
copy of its graph whose weight matrices are int8 (symmetric, one scale per output column), and runs
the same length-sorted batches of 32 real sentences through: the fp32 graph in f32 and bf16, the int8
graph with dynamic quantization (group 32) and without (group 0), one infer request of ``--threads``
each, alternating, ``--rounds`` times. Where ``nncf`` is installed (it is not one of embedrt's
dependencies: ``pip install nncf``), also the graph quantized by NNCF's post-training quantization
(``ModelType.TRANSFORMER``: SmoothQuant, static int8 activations calibrated on 512 other sentences),
with one infer request and in throughput mode (2 streams). Fidelity against the fp32 graph's
vectors: cosine (all, Korean) and the share of each sentence's 10 nearest neighbours kept.

    python -m benchmarks.openvino_int8 --bundle benchmarks/.cache/artifacts/bundle-fp32-unfused \\
        --out benchmarks/results/openvino-int8-X.json
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.int8_cpu import cpu_info
from benchmarks.results_file import write_json


def batches_of(tok: Any, texts: list[str], size: int = 32) -> tuple[list[int], list[np.ndarray]]:
    """The texts' indices in length order, and their token ids in that order, ``size`` texts a batch,
    zero-padded."""
    enc = tok.encode_batch(texts)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
    batches = []
    for b in range(0, len(order), size):
        rows = order[b : b + size]
        ids = np.zeros((len(rows), max(len(enc[i].ids) for i in rows)), np.int64)
        for j, i in enumerate(rows):
            ids[j, : len(enc[i].ids)] = enc[i].ids
        batches.append(ids)
    return order, batches


def nncf_static(model: Any, calibration: list[dict[str, np.ndarray]]) -> Any:
    """``model`` quantized by NNCF for a transformer: int8 weights, static int8 activations."""
    import nncf

    return nncf.quantize(model, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(calibration))  # fmt: skip


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def neighbours(v: np.ndarray, k: int = 10) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine (``v`` unit rows)."""
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


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
    order, batches = batches_of(tok, texts)

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
        with_types = "token_type_ids" in {i.get_any_name() for i in core.read_model(plain).inputs}

        def feed(ids: np.ndarray) -> dict[str, np.ndarray]:
            f = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
            if with_types:
                f["token_type_ids"] = np.zeros_like(ids)
            return f

        models: dict[str, Any] = {}
        if importlib.util.find_spec("nncf") is not None:
            seen = set(texts)  # calibrated on other sentences than those measured
            calibration = [t for t in load_sentences(1024, seed=7) if t not in seen][:512]
            models["nncf"] = nncf_static(
                core.read_model(plain), [feed(ids) for ids in batches_of(tok, calibration)[1]]
            )
            settings["int8 static activations (NNCF)"] = ("nncf", {})
            settings["int8 static activations (NNCF), 2 streams"] = (
                "nncf",
                {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2},
            )
        queues = {}
        for name, (path, cfg) in settings.items():
            compiled = core.compile_model(models.get(path, path), "CPU", {**base, **cfg})
            queues[name] = ov.AsyncInferQueue(compiled, int(cfg.get("NUM_STREAMS", 1)))

        def encode(name: str) -> np.ndarray:
            out: list[np.ndarray] = [np.empty(0)] * len(batches)
            queue = queues[name]
            queue.set_callback(lambda req, i: out.__setitem__(i, req.get_output_tensor(0).data.copy()))
            for i, ids in enumerate(batches):
                queue.start_async(feed(ids), i)
            queue.wait_all()
            return np.concatenate(out)

        vectors = {name: encode(name) for name in settings}  # also the warm-up
        rates: dict[str, list[float]] = {name: [] for name in settings}
        for r in range(args.rounds):
            names = list(settings)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t = time.perf_counter()
                encode(name)
                rates[name].append(round(len(texts) / (time.perf_counter() - t), 1))

    sorted_texts = [texts[i] for i in order]  # the vectors' order
    korean = np.array([re.search("[\uac00-\ud7a3]", t) is not None for t in sorted_texts])
    ref = unit(vectors["fp32"])
    near_ref = neighbours(ref)
    results: dict[str, Any] = {}
    for name, v in vectors.items():
        cos = (unit(v) * ref).sum(1)
        kept = (near_ref[:, :, None] == neighbours(unit(v))[:, None, :]).any(2).mean(1)
        results[name] = {"texts_s": rates[name], "best_texts_s": max(rates[name]),
                         "cos_vs_fp32": {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 5),
                                         "korean_mean": round(float(cos[korean].mean()), 6)},
                         "top10_kept": {"all": round(float(kept.mean()), 4), "korean": round(float(kept[korean].mean()), 4)}}  # fmt: skip
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
        print(
            f"{name}: best {r['best_texts_s']} texts/s, cos mean {r['cos_vs_fp32']['mean']} min "
            f"{r['cos_vs_fp32']['min']}, top-10 kept {r['top10_kept']['all']} (Korean {r['top10_kept']['korean']})"
        )


if __name__ == "__main__":
    main()
