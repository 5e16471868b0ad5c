"""Would rotating the int8 activations help? Their rounding error with and without a Hadamard rotation.

    python -m benchmarks.int8_rotation --bundle benchmarks/.cache/artifacts/bundle-int8 \\
        --out benchmarks/results/int8-rotation-X.json

QuaRot and SpinQuant multiply a layer's input by an orthogonal (Hadamard) matrix ``H`` and its
weight by ``H^T``: the product is unchanged, and the rotated input's values spread each large entry
over many channels, so the per-tensor uint8 range shrinks when a few entries set it. Since ``H`` is
orthogonal, the rounding error of ``x H`` passes through ``H^T W`` as the rounding error of ``x``
passes through ``W``: comparing the two rounding errors measures what the rotation could buy at
that product (weights aside).

For every input an int8 bundle quantizes per tensor (``DynamicQuantizeLinear``: the layer norms'
outputs, smoothed), on batches of 32 real texts in the corpus's order, padded as the runtime pads
them (padding rows included),
this records (max - min) / RMS, and the RMS rounding error of onnxruntime's uint8 quantization
(range including 0, zero point rounded) over the RMS of the input, for the input as it is and
rotated by a block-diagonal Hadamard matrix of 32, 64 and 128 channels (an online rotation; a
post-LN encoder's layer norms do not commute with it, so it cannot be folded into the weights
around it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json

BLOCKS = (0, 32, 64, 128)  # 0: no rotation


def hadamard(n: int) -> np.ndarray:
    """The orthonormal Sylvester Hadamard matrix of order ``n`` (a power of two)."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    if h.shape[0] != n:
        raise ValueError(f"Hadamard order must be a power of two, got {n}")
    return h / np.sqrt(n)


def rotate(x: np.ndarray, block: int) -> np.ndarray:
    """``x`` (rows x channels) times a block-diagonal Hadamard matrix of ``block`` channels."""
    if not block:
        return x
    rows, ch = x.shape
    return (x.reshape(rows, ch // block, block) @ hadamard(block)).reshape(rows, ch)


def uint8_error(x: np.ndarray) -> float:
    """RMS error of onnxruntime's ``DynamicQuantizeLinear`` on ``x``, over the RMS of ``x``."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.clip(np.round(-lo / scale), 0, 255)
    q = np.clip(np.round(x / scale) + zero, 0, 255)
    return float(np.sqrt(np.mean(((q - zero) * scale - x) ** 2)) / np.sqrt(np.mean(x**2)))


def measure(bundle: Path, sets: dict[str, list[str]], batch: int) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    from embedrt import Embedder
    from embedrt._tokenize import pad_batch

    model = onnx.load(str(bundle / "model.onnx"))
    sites = [n.input[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]
    for s in sites:
        model.graph.output.append(onnx.helper.make_tensor_value_info(s, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    emb = Embedder(bundle)
    names = {i.name for i in sess.get_inputs()}
    out: dict[str, Any] = {}
    for set_name, texts in sets.items():
        per_site: dict[str, dict[str, list[float]]] = {s: {} for s in sites}
        for i in range(0, len(texts), batch):
            tok = emb.tokenize(texts[i : i + batch])
            feed = pad_batch(tok, np.arange(len(tok)), emb.manifest.pad_token_id, "token_type_ids" in names)
            for s, x in zip(sites, sess.run(sites, feed), strict=True):
                x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
                for block in BLOCKS:
                    xr = rotate(x2, block)
                    rec = per_site[s].setdefault(f"block {block}" if block else "as is", [])
                    rec.append(uint8_error(xr))
                    spread = per_site[s].setdefault(f"range/rms, block {block}" if block else "range/rms", [])
                    spread.append(float((max(xr.max(), 0) - min(xr.min(), 0)) / np.sqrt(np.mean(xr**2))))
        out[set_name] = {
            s: {k: round(float(np.mean(v)), 5) for k, v in d.items()} for s, d in per_site.items()
        }
        ratios = {
            b: float(np.mean([d[f"block {b}"] / d["as is"] for d in out[set_name].values()]))
            for b in BLOCKS[1:]
        }
        out[set_name]["rotated error / error, mean over inputs"] = {
            f"block {b}": round(r, 3) for b, r in ratios.items()
        }
        print(set_name, out[set_name]["rotated error / error, mean over inputs"], flush=True)
    return out


def main() -> None:
    from benchmarks import corpus
    from benchmarks.int8_cpu import cpu_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="an int8 bundle (per-tensor inputs)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--texts", type=int, default=128, help="texts per set")
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    c = corpus.load_corpus()
    sets = {name: c[name][: args.texts] for name in ("ko_sentences", "en_sentences", "en_passages")}
    result = {
        "command": f"python -m benchmarks.int8_rotation --bundle {args.bundle} --out {args.out} "
        f"--texts {args.texts} --batch {args.batch}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_info(),
        "unit": "RMS uint8 rounding error over RMS of the input (per tensor, as DynamicQuantizeLinear); "
        "range/rms = (max - min) / RMS; means over batches",
        "sets": measure(args.bundle, sets, args.batch),
    }  # fmt: skip
    write_json(args.out, result)


if __name__ == "__main__":
    main()
