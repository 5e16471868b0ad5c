"""A bundle's graph compiled by OpenVINO's own runtime (the ``openvino`` package), for ``device="openvino"``.

OpenVINO reads the bundle's ``model.onnx`` itself; nothing goes through onnxruntime. The session
below offers what ``BundleModel`` uses of an onnxruntime session (``run``, ``get_inputs``,
``get_outputs``, ``get_providers``). Each run takes one of ``streams`` infer requests and waits for
it outside the GIL (``start_async`` + ``wait``: a blocking ``infer`` call holds the GIL, so two
streams driven from two threads would take turns).
"""

from __future__ import annotations

import importlib.util
import queue
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ProviderError

PROVIDER = "OpenVINO"
INSTALL = 'pip install "embedrt[openvino]"'


@dataclass(frozen=True)
class GraphIO:
    """One input or output of the compiled graph, named and shaped as onnxruntime names and shapes them."""

    name: str
    shape: list[int | None]


def openvino_version() -> str | None:
    """The installed OpenVINO runtime's version, or None where the ``openvino`` package is missing
    (found without importing it: ``embedrt --version`` stays quick)."""
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        return version("openvino")
    except PackageNotFoundError:  # importable but not pip-installed (a source build on the path)
        return "unknown"


class OpenVINOSession:
    """``model_path`` compiled for OpenVINO's CPU plugin with ``config`` (its property names, e.g.
    ``INFERENCE_PRECISION_HINT``), serving up to ``streams`` runs at once."""

    def __init__(self, model_path: Path, config: dict[str, Any], streams: int) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise ProviderError(
                f"device 'openvino' needs OpenVINO's runtime, which is not installed ({e}). Install it: {INSTALL}"
            ) from e
        self._compiled = ov.Core().compile_model(str(model_path), "CPU", config)
        # OpenVINO's Python binding builds its table of numpy dtypes on first use, in a function-local
        # static whose initialiser takes the GIL: two threads' first runs at once deadlock on it (one
        # holds the static's guard and waits for the GIL, the other holds the GIL and waits for the
        # guard; 5 of 40 fresh processes hung so). Build it here, on one thread, before any run.
        for port in (*self._compiled.inputs, *self._compiled.outputs):
            port.get_element_type().to_dtype()
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(streams):
            self._requests.put(self._compiled.create_infer_request())

    @staticmethod
    def _io(ports: Any) -> list[GraphIO]:
        """One entry per name: OpenVINO gives a tensor all the names the graph had for it (a graph
        output that is also an inner node's result has two), any of which ``run`` accepts."""
        out: list[GraphIO] = []
        for port in ports:
            dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            out.extend(GraphIO(name, dims) for name in sorted(port.get_names()))
        return out

    def get_inputs(self) -> list[GraphIO]:
        return self._io(self._compiled.inputs)

    def get_outputs(self) -> list[GraphIO]:
        return self._io(self._compiled.outputs)

    def get_providers(self) -> list[str]:
        return [PROVIDER]

    def get_property(self, name: str) -> Any:
        return self._compiled.get_property(name)

    def run(self, outputs: list[str], feed: dict[str, np.ndarray], run_options: Any = None) -> list[np.ndarray]:
        request = self._requests.get()
        try:
            request.start_async(feed, share_inputs=True)  # the arrays outlive the run: no copy in
            request.wait()
            # the request's output buffers are reused by its next run: copy them out
            return [np.array(request.get_tensor(name).data, copy=True) for name in outputs]
        finally:
            self._requests.put(request)
