"""Which int8 arithmetic this CPU gets from onnxruntime, and how an int8 bundle must run on it.

An int8 bundle multiplies uint8 activations by int8 weights (u8s8). onnxruntime's u8s8 kernels add
the products in int32 where the CPU has VNNI (AVX512-VNNI, AVX-VNNI), AMX-INT8, or is not x86
(ARM's kernels widen before adding), and on x86 CPUs without AVX2, whose SSE kernels widen too. An
x86 CPU with AVX2 or AVX-512 but no VNNI adds the
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

Which of the two this process gets is measured, not only read from the flags: ``measure_u8s8`` runs
onnxruntime's u8s8 product once on a tiny graph whose exact sum a saturating int16 pair sum cannot
reach. The flags explain the result and stand in for it where no session can run. Under QEMU's x86
emulation (``tests/test_int8_cpu.py``, ``benchmarks/emulated_cpus.py``) a Haswell model (AVX2)
saturates and a Sandy Bridge model (AVX, no AVX2) is exact, while the host's /proc/cpuinfo names
VNNI that the emulated CPU lacks: only the measurement sees that.
"""

from __future__ import annotations

import functools
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
    """This CPU's u8s8 arithmetic. ``flags`` and ``machine`` default to this machine's (tests pass their
    own); for this machine the arithmetic is measured (``measure_u8s8``) and the flags explain it."""
    if flags is None and machine is None:
        by_flags = _from_flags(None, platform.machine().lower(), source)
        measured = measure_u8s8()
        if measured is None:
            return by_flags
        arithmetic = Int8Arithmetic.EXACT if measured else Int8Arithmetic.SATURATING
        how = "int32 sums, exact" if measured else "saturating int16 pair sums"
        evidence = f"measured here: {how}; {by_flags.evidence}"
        if by_flags.arithmetic is not Int8Arithmetic.UNKNOWN and by_flags.arithmetic is not arithmetic:
            evidence += " (the flags say otherwise: an emulator or a hypervisor that hides them)"
        return CpuInt8(arithmetic, evidence)
    return _from_flags(flags, (machine if machine is not None else platform.machine()).lower(), source)


def _from_flags(flags: set[str] | None, machine: str, source: str) -> CpuInt8:
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
    if "avx2" not in flags and "avx512bw" not in flags:  # the SSE kernels widen to int16 before adding
        return CpuInt8(Int8Arithmetic.EXACT, f"{machine} without avx2: SSE kernels, no int16 pair sums ({source})")
    simd = "avx512bw" if "avx512bw" in flags else "avx2"
    return CpuInt8(Int8Arithmetic.SATURATING, f"{machine} with {simd}, no {'/'.join(_VNNI_FLAGS)} ({source})")


def plan_int8(quantization: dict[str, Any], cpu: CpuInt8) -> Int8Plan:
    """How a bundle with this manifest ``quantization`` record must run on ``cpu``."""
    method = quantization.get("method")
    if method == "nbits":
        return Int8Plan(False, "MatMulNBits kernels (no u8s8 GEMM)")
    pair_max = quantization.get("u8s8_max_pair_sum")
    if isinstance(pair_max, int) and pair_max <= PAIR_LIMIT:
        return Int8Plan(
            False, f"u8s8 GEMM, exact on every CPU (weight pairs within {pair_max} levels: no int16 pair sum clips them); {cpu.evidence}"
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


_PROBE_K = 64  # the probe's depth: 32 pairs of products of 255 * 127


@functools.lru_cache(maxsize=1)
def measure_u8s8() -> bool | None:
    """Whether this process's onnxruntime adds u8s8 products exactly: True, False where it saturates,
    None where the probe cannot run. Once per process, a few milliseconds.

    The probe multiplies activations of 255 by weights of 127 (a pair sum of 254 levels, past
    ``PAIR_LIMIT``) at one row (the GEMV path) and at 24 (the GEMM path): exactly 255 * 127 * 64 in
    every cell, which a saturating int16 pair sum cannot reach.
    """
    try:
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(_probe_model(), options, providers=["CPUExecutionProvider"])
        exact = 255 * 127 * _PROBE_K
        for rows in (1, 24):
            (out,) = session.run(None, {"a": np.full((rows, _PROBE_K), 255, dtype=np.uint8)})
            if not (out == exact).all():
                return False
        return True
    except Exception:  # any failure leaves the decision to the flags
        return None


def _probe_model() -> bytes:
    """``y = MatMulInteger(a, b)``, a: uint8 [rows, 64], b: int8 [64, 16] of 127, as ONNX protobuf
    bytes (written here: the runtime does not depend on the ``onnx`` package)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number: int, value: int | bytes | str) -> bytes:
        if isinstance(value, int):
            return varint(number << 3) + varint(value)
        data = value.encode() if isinstance(value, str) else value
        return varint(number << 3 | 2) + varint(len(data)) + data

    def tensor_type(elem_type: int, dims: list[int | str]) -> bytes:
        shape = b"".join(field(1, field(1, d) if isinstance(d, int) else field(2, d)) for d in dims)
        return field(1, field(1, elem_type) + field(2, shape))  # TypeProto.tensor_type

    uint8, int8, int32 = 2, 3, 6  # TensorProto.DataType
    weights = (
        field(1, _PROBE_K) + field(1, 16) + field(2, int8) + field(8, "b")
        + field(9, bytes([127]) * (_PROBE_K * 16))  # raw int8 data
    )  # fmt: skip
    node = field(1, "a") + field(1, "b") + field(2, "y") + field(4, "MatMulInteger")
    graph = (
        field(1, node) + field(2, "u8s8_probe") + field(5, weights)
        + field(11, field(1, "a") + field(2, tensor_type(uint8, ["rows", _PROBE_K])))
        + field(12, field(1, "y") + field(2, tensor_type(int32, ["rows", 16])))
    )  # fmt: skip
    return field(1, 8) + field(8, field(1, "") + field(2, 17)) + field(7, graph)  # ir_version 8, opset 17
