"""The exporter's variant hook: fusion, int8 and fp16, applied to the validated-shape fp32 graph.

``apply_variant`` is called by ``export_model`` with the fp32 ``model.onnx`` it wrote; it writes
the variant to ``out_path`` and returns the manifest's ``optimizations`` record. Each step is in
its own module: ``_optimize`` (onnxruntime's transformer fusions), ``_quantize`` (int8 for CPU),
``_fp16`` (fp16 for CUDA).
"""

from __future__ import annotations

import gc
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedrt._errors import UnsupportedModelError
from embedrt._types import Precision, parse

from ._flash import flash_attention
from ._fp16 import convert_fp16
from ._graph import needs_external
from ._onnx import copy_graph, has_data_file, keep_data_file, save_model
from ._optimize import fused_counts, optimize_graph
from ._products import split_products
from ._quantize import RECIPE, Int8Recipe, quantize_int8
from ._rotary import fuse_rotary
from ._smooth import Choices, Feeds
from ._window import flash_globals


def apply_variant(
    fp32_path: Path,
    out_path: Path,
    precision: Precision | str,
    optimize: bool | None,
    info: dict[str, Any],
    *,
    int8_recipe: Int8Recipe | None = None,
    calibration: list[Feeds] | None = None,
    smoothing_choices: Choices | None = None,
) -> dict[str, Any]:
    """Write the ``precision`` (and, with ``optimize``, fused) graph of ``fp32_path`` to ``out_path``.

    ``info`` carries ``spec`` (the ``SourceSpec``, whose ``config`` names heads and hidden size) or
    a plain ``config`` dict, and may carry ``fusion`` (the architecture's optimizer type; ``None``:
    onnxruntime's optimizer has no patterns for it). ``optimize=None`` fuses attention where the
    architecture fuses (CPU precisions; fp16 stays unfused) and records why not where it does not;
    ``True`` applies every onnxruntime fusion and fails where nothing fuses. On the CPU precisions
    fused attention is rewritten for the flash kernel (``_flash``); ``info["window"]`` (a
    ``_window.Window``: the fp32 graph has its local layers in blocks) puts the plain global layers
    on the flash kernel there too, unless ``optimize`` is False (a graph for OpenVINO); so do rotary
    embeddings go on onnxruntime's rotary kernel (``_rotary``; tables of the config's
    ``max_position_embeddings`` or the spec's ``max_seq_length`` positions, the longer) and
    products cut in slices become one product per slice (``_products``).
    ``int8_recipe`` defaults to ``_quantize.RECIPE``; ``calibration``
    (batches of graph inputs) is what its ``smooth`` method calibrates on; ``smoothing_choices``, a
    memo shared by the int8 graphs made from one model and calibration, spares each graph after the
    first the smoothing's search where its weights are the same (``_smooth.smooth_model``). Returns ``{"precision",
    "optimize", "fused_ops", "quantization" | "fp16"}``, with ``"rotary"`` and ``"split_products"``
    where the graph has them.
    """
    prec = parse(Precision, precision, "precision")
    config = _config(info)
    cpu = prec is not Precision.FP16  # fp16 is for CUDA, whose fused kernels are all worth having
    fuse = optimize if optimize is not None else cpu
    record: dict[str, Any] = {"precision": prec.value, "optimize": fuse}
    if optimize is None and fuse and "fusion" in info and info["fusion"] is None:
        fuse = False
        record.update(optimize=False, fusion={"skipped": f"architecture {config.get('model_type')!r}: "
                                              "onnxruntime's optimizer has no fusion patterns for its layers"})  # fmt: skip
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".variant.") as tmp, without_tool_notices():
        src = Path(fp32_path)
        if fuse:
            fused = Path(tmp) / "fused.onnx"
            try:
                record["fusion"] = optimize_graph(
                    src, fused, config, attention_only=optimize is None, rewrite=flash_attention if cpu else None
                )
            except UnsupportedModelError as e:
                if optimize:  # asked for explicitly: no silent pass-through
                    raise
                record.update(optimize=False, fusion={"skipped": str(e)})
            else:
                if cpu:
                    record["attention"] = record["fusion"].pop("rewrite")
                src = fused
        if cpu and optimize is not False:  # global flash layers, rotary kernel, split products: where the graph has them
            rewritten = Path(tmp) / "cpu.onnx"
            done = _cpu_rewrites(src, rewritten, info.get("window"), _positions(info, config))
            if done["attention"].get("global_flash"):
                record["attention"] = done["attention"]
            record.update({k: v for k, v in done.items() if v and k != "attention"})
            if done["attention"].get("global_flash") or done["rotary"].get("rotary"):
                record["optimize"] = True  # contrib operators: onnxruntime only
            if _changed(done):
                src = rewritten
        if prec is Precision.INT8:
            record["quantization"] = quantize_int8(
                src, out_path, int8_recipe or RECIPE, fused=bool(record["optimize"]), calibration=calibration,
                choices=smoothing_choices,
            )
        elif prec is Precision.FP16:
            record["fp16"] = convert_fp16(src, out_path)
        else:
            copy_graph(src, out_path)
    keep_data_file(out_path, has_data_file(fp32_path))  # weights in a data file: so are every variant's
    record["fused_ops"] = fused_counts(out_path) if record["optimize"] else {}
    gc.collect()  # onnxruntime's optimizer leaves graphs in reference cycles: free them before validation
    return record


class _DropPreprocessNotice(logging.Filter):
    """onnxruntime's quantizer logs "Please consider to run pre-processing before quantization" on
    the root logger for every graph it is given. It says nothing about this graph: what tells whether
    the int8 graph is good is the quality gate the export runs on it next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


class _DropSliceBoundNotice(logging.Filter):
    """onnxruntime's symbolic shape inference (run by its optimizer and the fp16 converter) warns
    "Unable to determine if S <= P, treat as equal" for every ``Slice`` whose end it cannot compare
    with the dimension sliced. The local attention blocks (``_window``) trim their padded queries so:
    the end is the token count, the dimension the blocks' length, never shorter by construction."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Unable to determine if ")


# onnxruntime.transformers imports the shape inference as a top-level module when it can
_SHAPE_LOGGERS = ("onnxruntime.tools.symbolic_shape_infer", "symbolic_shape_infer")


@contextmanager
def without_tool_notices() -> Iterator[None]:
    """Those two notices dropped from the loggers that write them; every other message passes."""
    root, notice, bound = logging.getLogger(), _DropPreprocessNotice(), _DropSliceBoundNotice()
    root.addFilter(notice)
    for name in _SHAPE_LOGGERS:
        logging.getLogger(name).addFilter(bound)
    try:
        yield
    finally:
        root.removeFilter(notice)
        for name in _SHAPE_LOGGERS:
            logging.getLogger(name).removeFilter(bound)


def _cpu_rewrites(src: Path, out: Path, window: Any, positions: int) -> dict[str, dict[str, Any]]:
    """The graph at ``src`` rewritten for onnxruntime's CPU provider, in one load: a windowed graph's
    plain global layers on the flash kernel (``window``: a ``_window.Window``, or None), rotary
    embeddings on the rotary kernel (tables of ``positions`` rows) and products cut in slices as one
    product per slice; saved to ``out`` where anything was rewritten. The record of each."""
    import onnx

    model = onnx.load(str(src))
    done = {
        "attention": flash_globals(model, window.heads) if window is not None else {},
        "rotary": fuse_rotary(model, positions) if positions else {},
        "split_products": split_products(model),
    }
    if _changed(done):
        save_model(model, out, needs_external(model))
    return done


def _changed(done: dict[str, dict[str, Any]]) -> bool:
    return bool(done["attention"].get("global_flash") or done["rotary"].get("rotary")
                or done["split_products"].get("split_products"))  # fmt: skip


def _positions(info: dict[str, Any], config: dict[str, Any]) -> int:
    """How many positions the rotary tables cover: the model's and the bundle's longest input."""
    spec_length = getattr(info.get("spec"), "max_seq_length", None)
    return max(int(config.get("max_position_embeddings") or 0), int(spec_length or 0))


def _config(info: dict[str, Any]) -> dict[str, Any]:
    spec = info.get("spec")
    if spec is not None and getattr(spec, "config", None):
        cfg = dict(spec.config)
        cfg.setdefault("model_type", getattr(spec, "model_type", ""))
        return cfg
    return dict(info.get("config") or {})
