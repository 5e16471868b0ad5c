"""Which int8 arithmetic this CPU gets from onnxruntime, and how an int8 bundle must run on it.

An int8 bundle multiplies uint8 activations by int8 weights (u8s8). onnxruntime's u8s8 kernels add
the products in int32 where the CPU has VNNI (AVX512-VNNI, AVX-VNNI), AMX-INT8, or is not x86
(ARM's kernels widen before adding). Every other x86 CPU (AVX2 only, AVX-512 without VNNI) adds the
products of rows ``2j`` and ``2j + 1`` of K in a *saturating int16* (``vpmaddubsw``): a pair
``|w_2j| + |w_2j+1|`` of more than 128 weight levels can exceed 32,767 and be clipped, and the
vector comes out wrong without any error. Measured on an AVX2-only EPYC with a bundle whose weights
span the full 8 bits: gate mean cosine 0.9959 against 0.9983 computed exactly
(benchmarks/results/int8-avx2.json).

The exporter records the largest pair sum of a bundle's int8 weights (``u8s8_max_pair_sum``);
its default layout keeps it within 128, which no kernel saturates. For a bundle past that (made by an
older embedrt, or with ``weight_range="full"``) on a CPU that saturates, or whose CPU cannot be
identified, the session is made with onnxruntime's ``session.x64quantprecision``: it turns such
weights into uint8 and runs the u8u8 kernels, which widen to int16 before multiplying and are exact,
at a speed cost. So a vector is never silently worse than the bundle's gate promised.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

PAIR_LIMIT = 128  # 255 * 128 = 32,640: the largest pair of weight levels no int16 sum clips
PRECISION_OPTION = "session.x64quantprecision"
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


class Int8Arithmetic(str, Enum):
    """How this CPU's onnxruntime u8s8 kernels add products."""

    EXACT = "exact"  # int32 sums: VNNI, AMX-INT8, or not x86
    SATURATING = "saturating"  # x86 without VNNI: pairs of products in a saturating int16
    UNKNOWN = "unknown"  # x86 whose flags could not be read: treated as saturating


@dataclass(frozen=True)
class CpuInt8:
    arithmetic: Int8Arithmetic
    evidence: str  # what the decision rests on, for messages and `embedrt info`


@dataclass(frozen=True)
class Int8Plan:
    """How an int8 bundle runs here: ``precise`` sets onnxruntime's exact u8u8 path."""

    precise: bool
    text: str

    def session_config(self) -> dict[str, str]:
        return {PRECISION_OPTION: "1"} if self.precise else {}


def cpu_flags() -> tuple[set[str] | None, str]:
    """The CPU's feature flags in /proc/cpuinfo's spelling, and where they came from."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split()), "/proc/cpuinfo"
    except OSError:
        pass
    # numpy knows AVX512-VNNI on every OS (not AVX-VNNI or AMX: those stay unknown)
    feats: dict[str, bool] | None = None
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, 1
        try:
            feats = getattr(importlib.import_module(module), "__cpu_features__", None)
        except ImportError:
            continue
        if feats is not None:
            break
    if feats is None:
        return None, "no source of CPU flags"
    names = {"AVX2": "avx2", "AVX512BW": "avx512bw", "AVX512VNNI": "avx512_vnni"}
    return {flag for key, flag in names.items() if feats.get(key)}, "numpy's CPU feature table"


def detect_cpu(flags: set[str] | None = None, machine: str | None = None, source: str = "given") -> CpuInt8:
    """This CPU's u8s8 arithmetic. ``flags`` and ``machine`` default to this machine's (tests pass their own)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in _X86:
        return CpuInt8(
            Int8Arithmetic.EXACT, f"{machine or 'unknown architecture'}: not x86, no int16 pair sums"
        )
    if flags is None:
        flags, source = cpu_flags()
    if flags is None:
        return CpuInt8(Int8Arithmetic.UNKNOWN, f"{machine}, CPU flags unreadable ({source})")
    vnni = [f for f in _VNNI_FLAGS if f in flags]
    if "avx512_vnni" in vnni and "avx512bw" not in flags:
        vnni.remove("avx512_vnni")  # onnxruntime takes the AVX512-VNNI kernel only with AVX512BW/DQ/VL
    if vnni:
        return CpuInt8(Int8Arithmetic.EXACT, f"{machine} with {', '.join(vnni)} ({source})")
    simd = "avx512bw" if "avx512bw" in flags else "avx2" if "avx2" in flags else "sse"
    return CpuInt8(Int8Arithmetic.SATURATING, f"{machine} with {simd}, no {'/'.join(_VNNI_FLAGS)} ({source})")


def plan_int8(quantization: dict[str, Any], cpu: CpuInt8) -> Int8Plan:
    """How a bundle with this manifest ``quantization`` record must run on ``cpu``."""
    method = quantization.get("method")
    if method == "nbits":
        return Int8Plan(False, "MatMulNBits kernels (no u8s8 GEMM)")
    pair_max = quantization.get("u8s8_max_pair_sum")
    if isinstance(pair_max, int) and pair_max <= PAIR_LIMIT:
        return Int8Plan(
            False, f"u8s8 GEMM, exact on every CPU (weight pairs within {pair_max} levels); {cpu.evidence}"
        )
    weights = "full 8-bit weights" if isinstance(pair_max, int) else "weights of unrecorded range"
    if cpu.arithmetic is Int8Arithmetic.EXACT:
        return Int8Plan(
            False,
            f"u8s8 GEMM, exact on this CPU ({cpu.evidence}); {weights} would not be on x86 without VNNI",
        )
    return Int8Plan(
        True,
        f"{weights} would saturate this CPU's u8s8 kernel ({cpu.evidence}): running onnxruntime's exact "
        f"u8u8 kernel instead ({PRECISION_OPTION}), slower; export the bundle again with this embedrt "
        "for weights that are exact and fast on every CPU",
    )
