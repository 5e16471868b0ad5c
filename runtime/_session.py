"""ONNX Runtime sessions, built in exactly one place.

The requested provider is checked against what this onnxruntime build offers before the session is
made, and against what the session actually uses after: a silent fallback to CPU is an error.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import onnxruntime as ort

from ._errors import ProviderError
from ._types import Device

_PROVIDERS: dict[Device, str] = {
    Device.CPU: "CPUExecutionProvider",
    Device.CUDA: "CUDAExecutionProvider",
}


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    try:
        parts = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if parts and parts[0] != "max":
            return int(parts[0]) / int(parts[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def onnxruntime_build() -> dict[str, Any]:
    """Which onnxruntime build is installed, and the providers it offers."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return {"version": ort.__version__, "providers": ort.get_available_providers()}
    dist = "unknown"
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            version(name)
        except PackageNotFoundError:
            continue
        dist = name
        break
    return {"package": dist, "version": ort.__version__, "providers": ort.get_available_providers()}


def create_session(
    model_path: Path,
    device: Device,
    threads: int,
    provider_options: dict[str, Any] | None = None,
) -> ort.InferenceSession:
    """The one place sessions are made. Raises ``ProviderError`` if ``device`` cannot be honoured."""
    provider = _PROVIDERS[device]
    available = ort.get_available_providers()
    if provider not in available:
        hint = (
            ' Install the CUDA build: pip uninstall -y onnxruntime && pip install "embedrt[gpu]".'
            if device is Device.CUDA
            else ""
        )
        raise ProviderError(
            f"device {device.value!r} needs {provider}, which this onnxruntime build "
            f"({onnxruntime_build()['package']} {ort.__version__}) does not offer; available: {available}.{hint}"
        )
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The CPU arena grows to the largest batch ever seen and never gives memory back; with varying
    # shapes that ratchets RSS up. Measured in benchmarks/results/memory-*.json.
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3
    providers: list[Any] = [(provider, provider_options or {})]
    if device is not Device.CPU:
        providers.append("CPUExecutionProvider")  # for the few nodes an accelerator lacks
    session = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
    used = session.get_providers()
    if provider not in used:
        raise ProviderError(f"{provider} was requested but the session fell back to {used}")
    return session
