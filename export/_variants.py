"""The exporter's variant hook: fusion, int8 and fp16, applied to the validated-shape fp32 graph.

``apply_variant`` is called by ``export_model`` with the fp32 ``model.onnx`` it wrote; it writes
the variant to ``out_path`` and returns the manifest's ``optimizations`` record. Each step is in
its own module: ``_optimize`` (onnxruntime's transformer fusions), ``_quantize`` (int8 for CPU),
``_fp16`` (fp16 for CUDA).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedrt._types import Precision, parse

from ._fp16 import convert_fp16
from ._optimize import fused_counts, optimize_graph
from ._quantize import RECIPE, Int8Recipe, quantize_int8
from ._smooth import Feeds


def apply_variant(
    fp32_path: Path,
    out_path: Path,
    precision: Precision | str,
    optimize: bool,
    info: dict[str, Any],
    *,
    int8_recipe: Int8Recipe | None = None,
    calibration: list[Feeds] | None = None,
) -> dict[str, Any]:
    """Write the ``precision`` (and, with ``optimize``, fused) graph of ``fp32_path`` to ``out_path``.

    ``info`` carries ``spec`` (the ``SourceSpec``, whose ``config`` names heads and hidden size) or
    a plain ``config`` dict. ``int8_recipe`` defaults to ``_quantize.RECIPE``; ``calibration``
    (batches of graph inputs) is what its ``smooth`` method calibrates on. Returns ``{"precision", "optimize", "fused_ops", "quantization" | "fp16"}``.
    """
    prec = parse(Precision, precision, "precision")
    config = _config(info)
    record: dict[str, Any] = {"precision": prec.value, "optimize": bool(optimize)}
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".variant.") as tmp:
        src = Path(fp32_path)
        if optimize:
            fused = Path(tmp) / "fused.onnx"
            record["fusion"] = optimize_graph(src, fused, config)
            src = fused
        if prec is Precision.INT8:
            with without_preprocess_notice():
                record["quantization"] = quantize_int8(
                    src, out_path, int8_recipe or RECIPE, fused=optimize, calibration=calibration
                )
        elif prec is Precision.FP16:
            record["fp16"] = convert_fp16(src, out_path)
        else:
            _copy_graph(src, out_path)
    record["fused_ops"] = fused_counts(out_path) if optimize else {}
    return record


class _DropPreprocessNotice(logging.Filter):
    """onnxruntime's quantizer logs "Please consider to run pre-processing before quantization" on
    the root logger for every graph it is given. It says nothing about this graph: what tells whether
    the int8 graph is good is the quality gate the export runs on it next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def without_preprocess_notice() -> Iterator[None]:
    """That one notice dropped from the root logger; every other message passes."""
    root = logging.getLogger()
    notice = _DropPreprocessNotice()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


def _config(info: dict[str, Any]) -> dict[str, Any]:
    spec = info.get("spec")
    if spec is not None and getattr(spec, "config", None):
        cfg = dict(spec.config)
        cfg.setdefault("model_type", getattr(spec, "model_type", ""))
        return cfg
    return dict(info.get("config") or {})


def _copy_graph(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    data = src.with_name(src.name + ".data")
    if data.exists():  # a graph with external weights names its data file relative to itself
        shutil.copyfile(data, dst.with_name(data.name))
