"""Sessions, built in exactly one place: ONNX Runtime's for the CPU and CUDA, OpenVINO's own for
``device="openvino"`` (``_openvino``).

The requested provider is checked against what this onnxruntime build offers before the session is
made, and against what the session actually uses after: a silent fallback to CPU is an error.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import onnxruntime as ort

from ._errors import ProviderError
from ._openvino import OpenVINOSession, openvino_version
from ._types import AUTO, Device, InferencePrecision, check_int, parse

# onnxruntime's providers; device "openvino" runs on OpenVINO's own runtime instead (``_openvino``)
_PROVIDERS: dict[Device, str] = {
    Device.CPU: "CPUExecutionProvider",
    Device.CUDA: "CUDAExecutionProvider",
}
# Devices whose ``streams`` run batches concurrently, each on its share of the threads: the CPU
# provider (SessionStreams), OpenVINO in its throughput mode.
STREAM_DEVICES = (Device.CPU, Device.OPENVINO)

# The onnxruntime builds all install the module `onnxruntime`: only one may be installed at a time.
# distribution -> (embedrt extra, devices it offers through onnxruntime)
BUILDS: dict[str, tuple[str, tuple[Device, ...]]] = {
    "onnxruntime": ("(default)", (Device.CPU,)),
    "onnxruntime-gpu": ("gpu", (Device.CUDA, Device.CPU)),
    "onnxruntime-openvino": ("none (device 'openvino' uses the openvino package)", (Device.CPU,)),
}
# The base install brings the CPU build; the gpu extra adds another build of the same module, whose
# files must then be laid over the CPU build's (pip gives no order between the two). Measured: after
# `pip install onnxruntime onnxruntime-openvino` the module was the CPU build; the force-reinstall fixes it.
_INSTALL = {
    Device.CUDA: 'pip install "embedrt[gpu]" && pip install --force-reinstall --no-deps onnxruntime-gpu',
}
# OpenVINO's names for its CPU plugin's INFERENCE_PRECISION_HINT.
_OV_HINTS = {InferencePrecision.FP32: "f32", InferencePrecision.BF16: "bf16", InferencePrecision.FP16: "f16"}


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


@functools.cache
def _load_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries onnxruntime-gpu links to from the ``nvidia-*`` pip packages
    beside it, as onnxruntime advises (``onnxruntime.preload_dlls``): without PyTorch imported, nothing
    else puts them on the loader's path and the CUDA provider would fail to load. Libraries installed
    system-wide are found either way. onnxruntime prints what it could not load: to stderr here, so
    that nothing lands in an ``embedrt encode`` written to stdout."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # onnxruntime < 1.21
        return
    with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(Exception):
        preload(cuda=True, cudnn=True, msvc=False)


def provider_available(device: Device) -> bool:
    if device is Device.OPENVINO:
        return openvino_version() is not None
    return _PROVIDERS[device] in ort.get_available_providers()


def onnxruntime_build() -> dict[str, Any]:
    """Which onnxruntime build is installed, the devices it offers, and conflicts between builds.

    ``installed`` lists every onnxruntime distribution pip knows of; more than one means they
    overwrote each other's files and the module is whichever was installed last. ``devices`` also
    holds ``openvino`` where OpenVINO's runtime (the ``openvino`` package, version in ``openvino``) imports.
    """
    installed = {}
    for name in (*BUILDS, "onnxruntime-directml"):
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            continue
    providers = ort.get_available_providers()
    offers = [d.value for d, p in _PROVIDERS.items() if p in providers]
    package = next(iter(installed), "unknown")
    if Device.CUDA.value in offers:
        package = "onnxruntime-gpu"
    elif "OpenVINOExecutionProvider" in providers:
        package = "onnxruntime-openvino"
    ov_version = openvino_version()
    if ov_version is not None:
        offers.append(Device.OPENVINO.value)
    out: dict[str, Any] = {
        "package": package,
        "version": ort.__version__,
        "providers": providers,
        "devices": offers,
        "installed": installed,
        "openvino": ov_version,
    }
    if ov_version is not None:
        out["openvino_precision_hints"] = [p.value for p in cpu_precision_hints()]
    if len(installed) > 1:
        out["conflict"] = (
            f"several onnxruntime builds are installed ({', '.join(installed)}); they share the module "
            f"`onnxruntime`, whose files are now those of {package}: to use another, lay its files over "
            f"with `pip install --force-reinstall --no-deps <that build>`"
        )
    return out


def cpu_precision_hints() -> list[InferencePrecision]:
    """Inference precisions this CPU runs natively (bf16 needs AVX512_BF16 or AMX)."""
    hints = [InferencePrecision.FP32]
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return hints
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        hints.append(InferencePrecision.BF16)
    if "avx512_fp16" in flags or "amx_fp16" in flags:
        hints.append(InferencePrecision.FP16)
    return hints


def check_precision_hint(device: Device, hint: str | InferencePrecision | None) -> InferencePrecision | None:
    """``hint`` as an enum; a ``ValueError`` for a bad value or a device that takes no hint."""
    if hint is None:
        return None
    parsed = parse(InferencePrecision, hint, "precision_hint")
    if device is not Device.OPENVINO:
        raise ValueError(f"precision_hint {parsed.value!r} is an OpenVINO option; device is {device.value!r}")
    return parsed


def check_streams(device: Device, streams: object) -> int | str:
    """``streams`` checked: a positive integer, above 1 only where batches can run concurrently (the CPU),
    or ``"auto"`` (``resolve_streams`` makes it a number once the threads are known)."""
    if streams == AUTO:
        return AUTO
    streams = check_int(streams, "streams", also=" or 'auto'")
    if streams > 1 and device not in STREAM_DEVICES:
        raise ValueError(
            f"streams={streams} runs batches concurrently on the CPU (device 'cpu': onnxruntime's CPU provider; "
            f"device 'openvino': OpenVINO's throughput mode); device {device.value!r} runs one batch at a time: "
            f"use streams=1"
        )
    return streams


def resolve_streams(device: Device, streams: int | str, threads: int, hint: InferencePrecision | None = None) -> int:
    """The streams a model runs: ``"auto"`` is one stream per thread on the CPU provider (one
    single-thread session shared by all; for work that queues, measured level on an AVX2 CPU and
    faster on the VNNI ones) and on OpenVINO in bf16 (its throughput mode: 1.09x and 1.12x one stream
    in corpus jobs on an AMX Xeon; in fp32 level, so one), and one elsewhere; a number is capped at
    ``threads``, since a stream needs a thread of its own (with fewer, the runs would only take turns)."""
    if streams == AUTO:
        per_thread = device is Device.CPU or (device is Device.OPENVINO and hint is InferencePrecision.BF16)
        return threads if per_thread else 1
    assert isinstance(streams, int)
    return min(streams, threads)


def split_threads(threads: int, streams: int) -> list[int]:
    """``threads`` shared out between ``streams`` sessions (at most ``threads`` of them), as evenly as
    they divide: 5 threads and 2 streams are ``[3, 2]``."""
    n = max(1, min(streams, threads))
    return [threads // n + (1 if i < threads % n else 0) for i in range(n)]


class SessionStreams:
    """The CPU provider's throughput mode (as OpenVINO's streams): ``sessions`` holds one entry per
    stream, and a run takes a free one and waits for it outside the GIL (onnxruntime releases it), so
    ``BundleModel._run_batches`` keeps every stream busy with a batch of its own. Offers what
    ``BundleModel`` uses of one session.

    Streams of one thread each are one session listed once per stream: onnxruntime's ``Run`` is
    thread-safe, a session of one thread runs on its caller's thread, and the weights (with
    onnxruntime's packed int8 copy) are held once. Streams of several threads are a session each, with
    its own thread pool and its own copy of the weights.
    """

    def __init__(self, sessions: list[ort.InferenceSession]) -> None:
        self.sessions = sessions
        self._free: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for s in sessions:
            self._free.put(s)

    def get_inputs(self) -> Any:
        return self.sessions[0].get_inputs()

    def get_outputs(self) -> Any:
        return self.sessions[0].get_outputs()

    def get_providers(self) -> list[str]:
        return self.sessions[0].get_providers()  # type: ignore[no-any-return]

    def get_session_options(self) -> ort.SessionOptions:
        return self.sessions[0].get_session_options()

    def run(self, outputs: list[str], feed: dict[str, Any], run_options: Any = None) -> list[Any]:
        session = self._free.get()
        try:
            return session.run(outputs, feed, run_options)  # type: ignore[no-any-return]
        finally:
            self._free.put(session)


def openvino_config(
    threads: int, user: dict[str, Any] | None, precision_hint: InferencePrecision | None, streams: int = 1
) -> dict[str, Any]:
    """OpenVINO CPU-plugin properties for a session: ``user`` (``provider_options``, OpenVINO's own
    property names) over embedrt's threads, precision hint and performance mode."""
    # OpenVINO pins its threads to cores unless told not to, each process choosing alone: two
    # one-thread processes (Ray actors, server workers) then share one core. On 2 CPUs, two processes
    # x 1 thread: 66 texts/s pinned, 131 unpinned; one process with both CPUs: unpinned 1.02x / 1.10x
    # (1 / 2 streams). benchmarks/results/openvino-pinning-*.json; ENABLE_CPU_PINNING turns it back on.
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}
    if precision_hint is not None and precision_hint not in cpu_precision_hints():
        raise ProviderError(
            f"precision_hint {precision_hint.value!r}: this CPU has no native "
            f"{precision_hint.value} (OpenVINO would silently run fp32); "
            f"available: {[p.value for p in cpu_precision_hints()]}"
        )
    # No hint: the graph's own fp32. OpenVINO's CPU plugin computes in bf16 by default where the CPU
    # has AMX (measured on an AMX Xeon: cosine 0.99998 to the fp32 vectors unless f32 is asked for).
    config["INFERENCE_PRECISION_HINT"] = _OV_HINTS[precision_hint or InferencePrecision.FP32]
    streams = min(streams, threads)  # a stream needs a thread of its own (BundleModel caps its streams so too)
    if streams > 1:
        # OpenVINO's throughput mode: the threads split into ``streams`` infer requests, each
        # taking one of the batches that run concurrently (BundleModel._run_batches)
        config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=str(streams))
    else:
        config["PERFORMANCE_HINT"] = "LATENCY"
    config.update(user or {})
    return config


def create_session(
    model_path: Path,
    device: Device,
    threads: int,
    provider_options: dict[str, Any] | None = None,
    *,
    precision_hint: str | InferencePrecision | None = None,
    memory_arena: bool = False,
    session_config: dict[str, str] | None = None,
    disabled_optimizers: list[str] | None = None,
    streams: int = 1,
) -> ort.InferenceSession | SessionStreams | OpenVINOSession:
    """The one place sessions are made. Raises ``ProviderError`` if ``device`` cannot be honoured.

    ``precision_hint`` (OpenVINO only): the compute precision for the graph, e.g. ``"bf16"`` on a
    CPU with AVX512_BF16/AMX; refused where the CPU cannot run it natively. ``session_config``:
    onnxruntime session config entries (e.g. the exact int8 path, ``_int8_cpu``);
    ``disabled_optimizers``: onnxruntime graph optimizers not to run (by name). ``streams`` (CPU and
    OpenVINO): batches that can run at once, each on its share of ``threads``: on the CPU provider
    a ``SessionStreams``, on OpenVINO its throughput mode.
    ``provider_options``: the provider's options, or for OpenVINO properties of its CPU plugin (e.g.
    ``{"NUM_STREAMS": "4"}``).
    """
    device = parse(Device, device, "device")
    hint = check_precision_hint(device, precision_hint)
    if device is Device.OPENVINO:
        return OpenVINOSession(model_path, openvino_config(threads, provider_options, hint, streams), streams)
    provider = _PROVIDERS[device]
    available = ort.get_available_providers()
    if provider not in available:
        install = f" Install its build: {_INSTALL[device]}." if device in _INSTALL else ""
        build = onnxruntime_build()
        install += f" Note: {build['conflict']}." if "conflict" in build else ""
        raise ProviderError(
            f"device {device.value!r} needs {provider}, which this onnxruntime build "
            f"({build['package']} {ort.__version__}) does not offer; available: {available}.{install}"
        )
    if device is Device.CUDA:
        _load_cuda_libraries()
    shares = split_threads(threads, streams)  # streams checked by the caller (BundleModel, the corpus job)
    options = (provider_options, memory_arena, session_config, disabled_optimizers)
    if len(shares) > 1 and max(shares) == 1:  # one single-thread session serves every stream (SessionStreams)
        return SessionStreams([_ort_session(model_path, device, 1, *options)] * len(shares))
    sessions = [_ort_session(model_path, device, n, *options) for n in shares]
    return sessions[0] if len(sessions) == 1 else SessionStreams(sessions)


def _ort_session(
    model_path: Path,
    device: Device,
    threads: int,
    provider_options: dict[str, Any] | None,
    memory_arena: bool,
    session_config: dict[str, str] | None,
    disabled_optimizers: list[str] | None,
) -> ort.InferenceSession:
    provider = _PROVIDERS[device]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The CPU arena grows to the largest batch ever seen and never gives memory back: with varying
    # shapes RSS ratchets up (1240 MB kept vs 508 MB without, benchmarks/results/memory-*.json). It is
    # faster on long inputs (+18% at 512 tokens, +5% at 128, benchmarks/results/arena-*.json), so a
    # batch job with steady shapes may opt in.
    so.enable_cpu_mem_arena = memory_arena
    so.log_severity_level = 3
    for key, value in (session_config or {}).items():
        so.add_session_config_entry(key, value)
    providers: list[Any] = [(provider, dict(provider_options or {}))]
    if device is not Device.CPU:
        providers.append("CPUExecutionProvider")  # for the few nodes an accelerator lacks
    session = ort.InferenceSession(
        str(model_path), sess_options=so, providers=providers, disabled_optimizers=disabled_optimizers or []
    )
    used = session.get_providers()
    if provider not in used:
        raise ProviderError(f"{provider} was requested but the session fell back to {used}")
    return session
