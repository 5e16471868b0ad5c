"""torch.onnx: the PyTorch module becomes ``model.onnx`` (plus ``model.onnx.data`` for large graphs).

The exporter is chosen per architecture (``ArchSpec.exporter``); with ``Exporter.AUTO`` a failure of
the first path is logged and the other path is tried, so a model is refused only when both fail.
The graph is written to a scratch folder first, then saved once into the bundle: weights inline
below ``external_data_bytes``, else in one ``model.onnx.data`` file next to the graph (protobuf
cannot hold a message of 2 GiB). Only one ONNX copy of the weights is in memory at a time.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from embedrt._errors import UnsupportedModelError

from ._archs import ArchSpec, Exporter
from ._graph import EXTERNAL_DATA_BYTES, static_reshapes

Log = Callable[[str], None]
DATA_SUFFIX = ".data"
_OUTPUTS = ["sentence_embedding", "token_embeddings"]


@dataclass(frozen=True)
class Written:
    exporter: Exporter
    opset: int
    external_data: bool
    static_reshapes: int
    fallback_from: str | None = None  # why the first exporter failed, when AUTO fell back


def export_graph(
    model: torch.nn.Module,
    sample: tuple[torch.Tensor, ...],
    inputs: list[str],
    path: Path,
    *,
    opset: int,
    exporter: Exporter,
    arch: ArchSpec,
    say: Log,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> Written:
    """Export ``model`` fed ``sample`` (one tensor per name in ``inputs``) to ``path``."""
    if exporter is Exporter.AUTO:
        first = arch.exporter
        order = [first, Exporter.DYNAMO if first is Exporter.TORCHSCRIPT else Exporter.TORCHSCRIPT]
        if arch.exporter_reason:
            say(f"architecture {arch.model_type!r} exports with {first.value} first: {arch.exporter_reason}")
    else:
        order = [exporter]
    failures: list[str] = []
    for used in order:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".raw.") as raw:
            raw_path = Path(raw) / path.name
            try:
                _torch_export(model, sample, inputs, raw_path, opset, used, arch)
            except UnsupportedModelError as e:
                failures.append(str(e))
                if used is not order[-1]:
                    say(f"{used.value} export failed ({str(e)[:160]}...); trying the {order[-1].value} exporter")
                continue
            written_opset, external, n = _finalize(raw_path, path, external_data_bytes)
        note = failures[0][:300] if failures else None
        if note:
            say(f"exported with {used.value} after {order[0].value} failed; the manifest records why")
        return Written(used, written_opset, external, n, note)
    raise UnsupportedModelError(" / ".join(failures))


def _torch_export(
    model: torch.nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], path: Path, opset: int,
    exporter: Exporter, arch: ArchSpec,
) -> None:
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter is Exporter.DYNAMO:
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
                torch.onnx.export(
                    model, args, str(path), input_names=inputs, output_names=_OUTPUTS, opset_version=max(opset, 18),
                    dynamo=True, dynamic_shapes={n: {0: batch, 1: seq} for n in inputs}, verbose=False,
                    external_data=True,
                )  # fmt: skip
            else:
                axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in [*inputs, "token_embeddings"]}
                axes["sentence_embedding"] = {0: "batch"}
                torch.onnx.export(
                    model, args, str(path), input_names=inputs, output_names=_OUTPUTS, opset_version=opset,
                    dynamo=False, dynamic_axes=axes, do_constant_folding=True,
                )  # fmt: skip
    except Exception as e:  # torch.onnx raises many types; all mean the same to the user
        encoder = getattr(model, "encoder", model)
        raise UnsupportedModelError(
            f"torch.onnx.export ({exporter.value}) failed for architecture {arch.model_type!r} "
            f"({type(encoder).__name__}): {type(e).__name__}: {str(e)[:500]}"
        ) from e
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise UnsupportedModelError(
            f"the graph exported for architecture {arch.model_type!r} is not valid ONNX: {str(e)[:500]}"
        ) from e


def _finalize(raw: Path, path: Path, external_data_bytes: int) -> tuple[int, bool, int]:
    """Save ``raw`` (and whatever weight files the exporter wrote) as ``path`` (+ one data file).

    Returns the graph's opset, whether its weights are external, and how many Reshapes got static shapes.
    """
    model = onnx.load(str(raw))  # loads external weight files too
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    weights = sum(t.ByteSize() for t in model.graph.initializer)
    external = weights > external_data_bytes
    n = 0 if external else static_reshapes(model)  # shape inference needs a graph under protobuf's limit
    save_model(model, path, external)
    return opset, external, n


def save_model(model: onnx.ModelProto, path: Path, external: bool) -> None:
    """Write ``model`` to ``path``; with ``external``, its weights to ``path.name + '.data'`` beside it."""
    data = path.with_name(path.name + DATA_SUFFIX)
    if data.exists():
        data.unlink()
    if external:
        onnx.save_model(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
            size_threshold=0,
        )  # fmt: skip
    else:
        onnx.save_model(model, str(path))


def copy_graph(src: Path, dst: Path) -> None:
    """Copy a graph and its external data file, if it has one."""
    shutil.copyfile(src, dst)
    data = src.with_name(src.name + DATA_SUFFIX)
    if data.exists():  # a graph with external weights names its data file relative to itself
        shutil.copyfile(data, dst.with_name(dst.name + DATA_SUFFIX))

