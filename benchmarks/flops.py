"""FLOP counts of all-MiniLM-L6-v2 and the CPU's measured matrix-product peaks.

Useful work only (no padding): per text of L tokens, the dense layers cost
``2 * L * layers * (4 h^2 + 2 h f)`` and attention ``4 * L^2 * h * layers`` (QK^T and AV), i.e.
21.2 MFLOP per token plus 9.2 kFLOP per token per token of length, for h=384, f=1536, 6 layers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

LAYERS, HIDDEN, FFN = 6, 384, 1536


def flop_of_length(n: int) -> float:
    dense = 2 * n * LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 4 * n * n * HIDDEN * LAYERS
    return float(dense + attention)


def flop_of_lengths(lengths: Iterable[int]) -> float:
    return float(sum(flop_of_length(int(n)) for n in lengths))


def measure_peaks(threads: int, size: int = 2048, seconds: float = 1.0) -> dict[str, Any]:
    """Best sustained FLOP/s of a square matrix product in fp32, bf16 (AMX) and int8 (the faster of
    torch's and onnxruntime's; both recorded)."""
    import torch

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"size": size, "threads": threads}

    def best(fn: Any) -> float:
        fn()
        rates: list[float] = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(rates) < 3:
            t = time.perf_counter()
            fn()
            rates.append(2 * size**3 / (time.perf_counter() - t))
        return max(rates)

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    out["fp32"] = best(lambda: a @ b)
    a16, b16 = a.bfloat16(), b.bfloat16()
    out["bf16"] = best(lambda: a16 @ b16)
    try:
        ai = torch.randint(-128, 127, (size, size), dtype=torch.int8)
        bi = torch.randint(-128, 127, (size, size), dtype=torch.int8)
        out["int8_torch"] = best(lambda: torch._int_mm(ai, bi))
    except (RuntimeError, AttributeError) as e:
        out["int8_note"] = f"torch._int_mm unavailable on CPU: {e}"[:200]
    # torch's CPU int8 product is a reference loop where there is no VNNI/AMX (about 2 GFLOP/s on an
    # AVX2-only EPYC); onnxruntime's u8s8 GEMM is the kernel embedrt's int8 graphs run on
    out["int8_onnxruntime"] = best(_ort_int8_matmul(size, threads))
    out["int8"] = max(out.get("int8_torch", 0.0), out["int8_onnxruntime"])
    return out


def _ort_int8_matmul(size: int, threads: int) -> Any:
    """``MatMulInteger`` of uint8 activations by constant int8 weights in an onnxruntime session."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-64, 64, (size, size), dtype=np.int8), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "int8_peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])], [w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (size, size), dtype=np.uint8)}
    return lambda: session.run(None, feed)


PEAK_OF_PRECISION = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}
