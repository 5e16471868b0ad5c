"""torch.onnx: the PyTorch module becomes ``model.onnx`` (plus ``model.onnx.data`` for large graphs).

The exporter is chosen per architecture (``ArchSpec.exporter``); with ``Exporter.AUTO`` a failure of
the first path is logged and the other path is tried, so a model is refused only when both fail.
The graph is written to a scratch folder first, then saved once into the bundle: weights inline
below ``external_data_bytes``, else in one ``model.onnx.data`` file next to the graph (protobuf
cannot hold a message of 2 GiB).

Memory: both exporters write the weights to a data file beside the scratch graph, straight from the
module's own tensors (the TorchScript exporter would otherwise build the whole model in a protobuf,
serialize it and hand the bytes to Python: four copies of the weights at once). The bundle's graph
then takes them inline (one protobuf copy plus its serialization) or keeps the data file, moved into
place without reading it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor

from embedrt._describe import describe_local_attention
from embedrt._errors import UnsupportedModelError

from ._archs import ArchSpec, Exporter
from ._graph import EXTERNAL_DATA_BYTES, needs_external, static_reshapes
from ._window import Window, window_blocks

Log = Callable[[str], None]
DATA_SUFFIX = ".data"
# An embedding graph's outputs and their dynamic axes (other kinds name theirs: ``export_graph``)
_OUTPUTS = {"sentence_embedding": {0: "batch"}, "token_embeddings": {0: "batch", 1: "sequence"}}


@dataclass(frozen=True)
class Written:
    exporter: Exporter
    opset: int
    external_data: bool
    static_reshapes: int
    fallback_from: str | None = None  # why the first exporter failed, when AUTO fell back
    inputs: tuple[str, ...] = ()  # what the graph takes (an exporter drops inputs the model ignores)
    local_attention: dict[str, Any] | None = None  # the local attention layers in blocks (``_window``)


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
    window: Window | None = None,
    outputs: dict[str, dict[int, str]] | None = None,
) -> Written:
    """Export ``model`` fed ``sample`` (one tensor per name in ``inputs``) to ``path``; with ``window``,
    its local attention layers are computed in blocks (``_window``). ``outputs``: the graph's output
    names and their dynamic axes (default an embedding graph's)."""
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
                _torch_export(model, sample, inputs, raw_path, opset, used, arch, outputs or _OUTPUTS)
            except UnsupportedModelError as e:
                failures.append(str(e))
                if used is not order[-1]:
                    say(f"{used.value} export failed ({str(e)[:160]}...); trying the {order[-1].value} exporter")
                continue
            written_opset, external, n, taken, attention = _finalize(raw_path, path, external_data_bytes, window)
        note = failures[0][:300] if failures else None
        if note:
            say(f"exported with {used.value} after {order[0].value} failed; the manifest records why")
        say(f"wrote opset {written_opset} with the {used.value} exporter"
            + (", weights in model.onnx.data (external data)" if external else "")
            + (f"; {n} Reshapes given constant target shapes" if n else ""))
        if attention:
            say(f"local attention: {describe_local_attention(attention)}")
        return Written(used, written_opset, external, n, note, taken, attention)
    raise UnsupportedModelError(" / ".join(failures))


def _torch_export(
    model: torch.nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], path: Path, opset: int,
    exporter: Exporter, arch: ArchSpec, outputs: dict[str, dict[int, str]],
) -> None:
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter is Exporter.DYNAMO:
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
                torch.onnx.export(
                    model, args, str(path), input_names=inputs, output_names=list(outputs), opset_version=max(opset, 18),
                    dynamo=True, dynamic_shapes={n: {0: batch, 1: seq} for n in inputs}, verbose=False,
                    external_data=True,
                )  # fmt: skip
            else:
                axes = {**{n: {0: "batch", 1: "sequence"} for n in inputs}, **outputs}
                with _weights_beside(path) as written:
                    torch.onnx.export(
                        model, args, str(path), input_names=inputs, output_names=list(outputs), opset_version=opset,
                        dynamo=False, dynamic_axes=axes, do_constant_folding=True,
                    )  # fmt: skip
                written()
    except Exception as e:  # torch.onnx raises many types; all mean the same to the user
        encoder = getattr(model, "encoder", None) or getattr(model, "model", model)  # an embedding or a head wrapper
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


def _finalize(
    raw: Path, path: Path, external_data_bytes: int, window: Window | None
) -> tuple[int, bool, int, tuple[str, ...], dict[str, Any] | None]:
    """Save ``raw`` (and whatever weight files the exporter wrote) as ``path`` (+ one data file).

    Returns the graph's opset, whether its weights are external, how many Reshapes got static shapes,
    the graph's input names and the record of its attention rewrite (``None`` without ``window``).
    """
    model = onnx.load(str(raw), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    outside = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    weights = sum(t.ByteSize() for t in model.graph.initializer) + sum(_external_length(t, raw.parent) for t in outside)
    external = weights > external_data_bytes
    n = static_reshapes(model)  # reads the small tensors only (shape constants), inline in every raw graph
    attention = window_blocks(model, window) if window is not None else None  # nodes and small constants
    data = path.with_name(path.name + DATA_SUFFIX)
    files = {ExternalDataInfo(t).location for t in outside}
    if external and files == {data.name} and not needs_external(model, _INLINE_LIMIT):
        # the exporter's data file already holds every weight: move it, do not read it
        shutil.move(str(raw.with_name(data.name)), str(data))
        onnx.save_model(model, str(path))
    elif external:
        onnx.external_data_helper.load_external_data_for_model(model, str(raw.parent))
        save_model(model, path, True)
    else:
        _save_inline(model, path, raw.parent)
    return opset, external, n, tuple(i.name for i in model.graph.input), attention


def _save_inline(model: onnx.ModelProto, path: Path, folder: Path | None = None) -> None:
    """Write ``model`` with every weight inline (external tensors read from ``folder`` one at a time).

    ``onnx.save_model`` serializes the whole model into one bytes object first: a second copy of the
    weights. Protobuf merges concatenated messages (repeated fields append), so the file here is the
    model without its initializers followed by one single-initializer model per tensor: readers parse
    the whole model, and no more than one tensor is copied at a time. ``model`` is left as it was.
    """
    head = onnx.ModelProto()
    _copy_fields(model, head, skip="graph")
    _copy_fields(model.graph, head.graph, skip="initializer")
    with open(path, "wb") as f:
        f.write(head.SerializeToString())
        for t in model.graph.initializer:
            piece = onnx.ModelProto()  # its own arena, freed after each tensor (the graph's would keep the bytes)
            inline = piece.graph.initializer.add()
            inline.CopyFrom(t)
            if t.data_location == onnx.TensorProto.EXTERNAL and folder is not None:
                load_external_data_for_tensor(inline, str(folder))
                del inline.external_data[:]
                inline.data_location = onnx.TensorProto.DEFAULT
            f.write(piece.SerializeToString())


def _copy_fields(src: Any, dst: Any, skip: str) -> None:
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED:
            getattr(dst, field.name).extend(value)
        elif field.message_type is not None:
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def _external_length(t: onnx.TensorProto, folder: Path) -> int:
    info = ExternalDataInfo(t)
    return int(info.length) if info.length else (folder / info.location).stat().st_size


_SMALL_TENSOR = 1024  # bytes: shape constants and the like stay inline in the graph
_INLINE_LIMIT = 64 << 20  # bytes of inline tensors a graph with a data file may keep
_ONNX_TYPES = {
    torch.float32: onnx.TensorProto.FLOAT, torch.float16: onnx.TensorProto.FLOAT16,
    torch.bfloat16: onnx.TensorProto.BFLOAT16, torch.float64: onnx.TensorProto.DOUBLE,
    torch.int64: onnx.TensorProto.INT64, torch.int32: onnx.TensorProto.INT32, torch.int16: onnx.TensorProto.INT16,
    torch.int8: onnx.TensorProto.INT8, torch.uint8: onnx.TensorProto.UINT8, torch.bool: onnx.TensorProto.BOOL,
}  # fmt: skip


@contextlib.contextmanager
def _weights_beside(path: Path) -> Iterator[Callable[[], None]]:
    """Let the TorchScript exporter write ``path`` without its weights, then add them from the tensors.

    The exporter hands its initializers to ``Graph._export_onnx``, which copies them into a protobuf
    and serializes it. Here that call gets none (they stay graph inputs); the function yielded, called
    after the export, writes each tensor to ``path.name + '.data'`` (small ones inline) and turns those
    inputs into initializers. Where this torch has no such hook, the export keeps its own way.
    """
    with _HOOK_LOCK, _hooked(path) as written:  # the hook is on the class: one export at a time
        yield written


_HOOK_LOCK = threading.Lock()


@contextlib.contextmanager
def _hooked(path: Path) -> Iterator[Callable[[], None]]:
    captured: dict[str, torch.Tensor] = {}
    graph_type = getattr(torch._C, "Graph", None)
    original = getattr(graph_type, "_export_onnx", None)

    def without_weights(self: Any, params: dict[str, torch.Tensor], *rest: Any) -> Any:
        captured.update(params)
        return original(self, {}, *rest)  # type: ignore[misc]

    hooked = False
    if original is not None:
        try:
            graph_type._export_onnx = without_weights  # type: ignore[union-attr]
            hooked = True
        except (AttributeError, TypeError):
            pass
    try:
        yield lambda: _add_weights(path, captured) if hooked else None
    finally:
        if hooked:
            graph_type._export_onnx = original  # type: ignore[union-attr]


def _add_weights(path: Path, params: dict[str, torch.Tensor]) -> None:
    model = onnx.load(str(path), load_external_data=False)
    names = {i.name for i in model.graph.input}
    missing = [n for n in params if n in names and params[n].dtype not in _ONNX_TYPES]
    if missing:
        raise UnsupportedModelError(f"weights of a type ONNX cannot hold: {missing[:5]}")
    data = path.with_name(path.name + DATA_SUFFIX)
    offset = 0
    with open(data, "wb") as f:
        for name, tensor in params.items():
            if name not in names:
                continue
            t = tensor.detach().cpu().contiguous()
            proto = onnx.TensorProto(name=name, dims=list(t.shape), data_type=_ONNX_TYPES[t.dtype])
            raw = t.reshape(-1).view(torch.uint8).numpy()  # the tensor's own bytes, not a copy
            if raw.nbytes <= _SMALL_TENSOR:
                proto.raw_data = raw.tobytes()
            else:
                offset += -offset % 64
                f.seek(offset)
                f.write(raw.data)
                proto.data_location = onnx.TensorProto.EXTERNAL
                for key, value in (("location", data.name), ("offset", offset), ("length", raw.nbytes)):
                    proto.external_data.add(key=key, value=str(value))
                offset += raw.nbytes
            model.graph.initializer.append(proto)
    kept = [i for i in model.graph.input if i.name not in params]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    onnx.save_model(model, str(path))


def save_model(model: onnx.ModelProto, path: Path, external: bool) -> None:
    """Write ``model`` to ``path``; with ``external``, its weights to ``path.name + '.data'`` beside it."""
    data = path.with_name(path.name + DATA_SUFFIX)
    if data.exists():
        data.unlink()
    if external:
        onnx.save_model(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
            size_threshold=_SMALL_TENSOR,  # shape constants inline: onnxruntime's shape inference reads them
        )  # fmt: skip
    else:
        _save_inline(model, path)


def has_data_file(path: Path) -> bool:
    return path.with_name(path.name + DATA_SUFFIX).exists()


def keep_data_file(path: Path, external: bool) -> None:
    """Save the graph at ``path`` with a data file again where its source had one (``external``) and
    a variant pass saved it inline (passes decide by size alone)."""
    if external and not has_data_file(path):
        save_model(onnx.load(str(path)), path, True)


def copy_graph(src: Path, dst: Path) -> None:
    """Copy a graph and its external data file, if it has one, as ``dst`` and ``dst.name + '.data'``:
    a graph names its data file, so a copy under another name is given the new name."""
    data, target = src.with_name(src.name + DATA_SUFFIX), dst.with_name(dst.name + DATA_SUFFIX)
    if not data.exists() or data.name == target.name:
        shutil.copyfile(src, dst)
    else:
        model = onnx.load(str(src), load_external_data=False)
        for t in model.graph.initializer:
            for entry in t.external_data if t.data_location == onnx.TensorProto.EXTERNAL else ():
                if entry.key == "location":
                    entry.value = target.name
        onnx.save_model(model, str(dst))
    if data.exists():
        shutil.copyfile(data, target)


def used_inputs(taken: tuple[str, ...], inputs: list[str], say: Log) -> list[str]:
    """``inputs`` less those the exporter dropped from the graph (DeBERTa without token types takes no
    ``token_type_ids``): the manifest lists what the graph takes."""
    dropped = [n for n in inputs if n not in taken]
    if dropped:
        say(f"the model does not use {dropped}: the graph takes {[n for n in inputs if n in taken]}")
    return [n for n in inputs if n in taken]
