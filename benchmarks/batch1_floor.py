"""What one text costs at batch 1, and the floor under it: the transformer's matrix products alone.

For the median real sentence (17 tokens), all-MiniLM-L6-v2's 36 weight products (per layer: QKV
[384x1152], attention output [384x384], FFN in [384x1536], FFN out [1536x384]) are run as a graph of
nothing else through onnxruntime, fp32 (``MatMul``) and int8 (``DynamicQuantizeMatMul``, the op of
embedrt's int8 bundles), next to the whole bundle's ``session.run`` and ``Embedder.encode`` of that
text, alternating in one process, best of ``--rounds`` medians.

    python -m benchmarks.batch1_floor --fp32 benchmarks/.cache/artifacts/bundle-fp32 \\
        --int8 benchmarks/.cache/artifacts/bundle-int8 --out benchmarks/results/batch1-floor-X.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.int8_cpu import cpu_info
from benchmarks.results_file import write_json

TEXT = "A man is playing a guitar on the street while people walk past him."  # 17 tokens, the median
SHAPES = ((384, 1152), (384, 384), (384, 1536), (1536, 384))
LAYERS = 6


def products_graph(int8: bool, tokens: int) -> bytes:
    """The 36 weight products of the encoder, chained, as an ONNX graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for layer in range(LAYERS):
        outs = []
        for j, (k, n) in enumerate(SHAPES):
            name = f"w{layer}_{j}"
            src = x if j < 2 else outs[-1]  # QKV and the output projection read x; the FFN chains
            if int8:
                inits += [
                    numpy_helper.from_array(rng.integers(-64, 64, (k, n), dtype=np.int8), name),
                    numpy_helper.from_array(np.full(n, 0.01, np.float32), name + "_s"),
                ]
                nodes.append(helper.make_node(
                    "DynamicQuantizeMatMul", [src, name, name + "_s"], [name + "_y"], domain="com.microsoft"
                ))  # fmt: skip
            else:
                inits.append(numpy_helper.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), name))
                nodes.append(helper.make_node("MatMul", [src, name], [name + "_y"]))
            outs.append(name + "_y")
        x = outs[-1]
    graph = helper.make_graph(
        nodes, "products", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, 384])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", required=True, help="an fp32 MiniLM bundle")
    p.add_argument("--int8", required=True, help="an int8 MiniLM bundle")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import onnxruntime as ort

    from embedrt import Embedder

    models = {"fp32": Embedder(args.fp32, threads=args.threads), "int8": Embedder(args.int8, threads=args.threads)}
    tok = models["fp32"].tokenize([TEXT])
    tokens = len(tok.ids[0])
    x = np.random.default_rng(1).standard_normal((1, tokens, 384)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.enable_cpu_mem_arena, so.log_severity_level = args.threads, False, 3
    calls: dict[str, Callable[[], Any]] = {}
    for precision, model in models.items():
        products = ort.InferenceSession(products_graph(precision == "int8", tokens), so, providers=["CPUExecutionProvider"])
        _, feed = next(model._batches(model.tokenize([TEXT]), 1))
        calls[f"{precision} products only"] = lambda s=products: s.run(None, {"x": x})
        calls[f"{precision} session.run"] = lambda m=model, f=feed: m.session.run(["sentence_embedding"], f)
        calls[f"{precision} Embedder.encode"] = lambda m=model: m.encode([TEXT])
    medians: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            for _ in range(20):
                call()
            times = []
            for _ in range(200):
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
            medians[name].append(statistics.median(times) * 1e3)
    flops = 2 * tokens * LAYERS * sum(k * n for k, n in SHAPES)
    result = {
        "command": f"python -m benchmarks.batch1_floor --fp32 {args.fp32} --int8 {args.int8} --rounds {args.rounds} "
        f"--threads {args.threads} --out {args.out}",
        "cpu": cpu_info(),
        "threads": args.threads,
        "text": TEXT,
        "tokens": tokens,
        "product_gflop": flops / 1e9,
        "p50_ms": {k: {"best": round(min(v), 3), "all": [round(t, 3) for t in v]} for k, v in medians.items()},
        "product_gflops": {k: round(flops / min(v) / 1e6, 1) for k, v in medians.items() if "products" in k},
    }
    for k, v in result["p50_ms"].items():
        print(f"{k:28s} {v['best']:.2f} ms")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
