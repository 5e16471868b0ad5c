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
    """Best sustained FLOP/s of a square matrix product in fp32, bf16 (AMX) and int8 (VNNI/AMX)."""
    import torch

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"size": size, "threads": threads}

    def best(fn: Any) -> float:
        fn()
        rates = []
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
        out["int8"] = best(lambda: torch._int_mm(ai, bi))
    except (RuntimeError, AttributeError) as e:
        out["int8_note"] = f"torch._int_mm unavailable on CPU: {e}"[:200]
    return out


PEAK_OF_PRECISION = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}
