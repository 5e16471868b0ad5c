"""``export_model``: a model folder becomes a validated bundle."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedrt._bundle import MODEL_NAME
from embedrt._errors import ExportError
from embedrt._types import BundleKind, Pooling, Precision, parse

from ._archs import ArchSpec, Exporter, Variant, spec_for
from ._attempts import Job, Setting, auto_settings, run_settings
from ._gate import gate_texts as default_gate_texts
from ._graph import EXTERNAL_DATA_BYTES
from ._kinds import check_head_options, detect_kind
from ._manifest import build_manifest
from ._model import load_reference
from ._onnx import export_graph, used_inputs
from ._progress import quiet
from ._quantize import AUTO, METHODS, RECIPES, Int8Recipe
from ._source import read_source
from ._texts import calibration_extra, validation_texts
from ._tokenizer import bundle_tokenizer
from ._window import local_window

DEFAULT_OPSET = 17
EXPORTERS = tuple(e.value for e in Exporter)

Log = Callable[[str], None]


def export_model(
    source: str | Path,
    out_dir: str | Path,
    *,
    pooling: list[str] | str | None = None,
    precision: str | Precision = Precision.FP32,
    optimize: bool | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str | Exporter = Exporter.AUTO,
    validate_texts: list[str] | None = None,
    gate_texts: list[str] | None = None,
    gate_thresholds: dict[str, float] | None = None,
    overwrite: bool = False,
    int8_method: str = "auto",
    trust_remote_code: bool = False,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    kind: str | None = None,
    log: Log | None = None,
) -> Path:
    """Export ``source`` (a sentence-transformers, Hugging Face or model2vec folder) into the bundle ``out_dir``.

    The bundle is validated against PyTorch before it is moved into place: parity on a grid of
    hard texts (``validate_texts``), then the quality gate of its precision on >= 1000 texts
    (``gate_texts``, default: the built-in set; ``gate_thresholds`` lowers a gate explicitly). A
    failure raises ``ParityError`` (``GateError`` for the gate) with the numbers and the worst
    input, and leaves ``out_dir`` untouched.

    ``precision``: ``fp32``, ``int8`` (CPU), ``fp16`` (CUDA) or ``auto``: int8 and fp32, fused and
    not, all gated and timed here; the fastest that passes is kept and the manifest says why. A
    reranker takes fp32, int8 (its own gate, ``_gate_rerank``) and auto; a sparse bundle fp32 (auto: fp32).
    ``optimize``: ``None`` (default) fuses attention for the CPU precisions wherever the
    architecture fuses (the flash-attention graph, ``_flash``), and exports the plain graph where it
    does not, saying why in the manifest; ``True`` requires every onnxruntime fusion; ``False``
    exports the plain graph.
    ``exporter``: ``"auto"`` (the architecture's first choice, then the other path if it fails),
    ``"torchscript"`` or ``"dynamo"``. ``int8_method`` (precision int8 only): ``"smooth"``,
    ``"smooth-rows"`` (activations per token row: closer to fp32, slower), ``"smooth-residual"``
    (the Q/K/V and FFN input projections' inputs quantized twice, the second time over the rounding
    residual: closest to fp32, slower still), ``"nbits"`` or
    ``"dynamic"`` (see ``_quantize``); ``"auto"`` tries ``smooth`` and falls back to
    ``nbits`` when its graph misses the checks, recording the miss in the manifest.
    ``trust_remote_code`` runs modeling code shipped in the folder (config.json ``auto_map``).
    Weights of graphs over ``external_data_bytes`` go to ``model.onnx.data``.

    ``kind`` (``"embedding"``, ``"reranker"``, ``"sparse"``) forces the bundle kind; by default the
    folder decides (``_kinds.detect_kind``): CrossEncoder folders become rerankers, SPLADE
    SparseEncoder folders sparse bundles.
    """
    say = log or quiet
    auto = isinstance(precision, str) and precision.strip().lower() == "auto"
    prec = Precision.INT8 if auto else parse(Precision, precision, "precision")
    recipes = _int8_recipes(int8_method)  # a bad method fails before the model is loaded
    how = parse(Exporter, exporter, "exporter")
    modes = _parse_pooling(pooling)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)")
    bundle_kind = detect_kind(source, kind)
    if bundle_kind is not BundleKind.EMBEDDING:
        check_head_options(bundle_kind, Precision.FP32 if auto else prec, pooling)
        head_auto = auto and bundle_kind is BundleKind.RERANKER
        if auto and not head_auto:
            say(f"precision auto: a {bundle_kind.value} bundle is exported in fp32, its one precision for now")
        from ._export_head import export_head

        return export_head(source, out, bundle_kind, opset=opset, exporter=how, optimize=optimize,
                           validate_texts=validate_texts, log=say, external_data_bytes=external_data_bytes,
                           precision=Precision.FP32 if auto else prec, int8_recipes=recipes,
                           gate_texts=gate_texts, gate_thresholds=gate_thresholds, auto=head_auto)  # fmt: skip

    from ._static import export_static, is_static_folder

    if is_static_folder(source):
        # one table lookup and a mean: fp32 is its only setting (auto included), fusion has nothing to fuse
        return export_static(source, out, precision=Precision.FP32 if auto else prec, optimize=bool(optimize),
                             validate_texts=validate_texts,
                             gate_texts=gate_texts, gate_thresholds=gate_thresholds, say=say)  # fmt: skip
    spec = read_source(source, modes, trust_remote_code)
    arch = spec_for(spec.model_type)
    _check_variants(arch, Precision.FP32 if auto else prec, optimize)  # auto leaves out what is refused
    say(f"source: {spec.kind} folder, architecture {spec.model_type!r}, pooling "
        f"{[p.value for p in spec.pooling]}, max_seq_length {spec.max_seq_length}")
    model, hf_tok = load_reference(spec, say)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        (work / "fp32").mkdir()
        fp32 = work / "fp32" / MODEL_NAME
        inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.with_type_ids else [])
        sample = hf_tok(["a short text", "a somewhat longer text to pad the batch"], padding=True, return_tensors="pt")
        say(f"exporting with torch.onnx ({how.value}), inputs {inputs}")
        window = local_window(model.encoder.config) if arch.windowed else None
        written = export_graph(
            model, tuple(sample[n] for n in inputs), inputs, fp32, opset=opset, exporter=how,
            arch=arch, say=say, external_data_bytes=external_data_bytes,
            window=window,
        )  # fmt: skip
        inputs = used_inputs(written.inputs, inputs, say)
        tok, pad_id = bundle_tokenizer(hf_tok, spec)
        padding_side = str(hf_tok.padding_side)
        job = Job(
            spec=spec, model=model, hf_tok=hf_tok, fp32=fp32, work=work, arch=arch,
            manifest=lambda p, o: build_manifest(spec, model, inputs, p, o, written, pad_id, padding_side),
            tokenizer=tok, validate_texts=validate_texts or validation_texts(),
            gate_texts=gate_texts or default_gate_texts(), thresholds=gate_thresholds, say=say,
            calibrate=lambda: _calibration(hf_tok, inputs, spec.max_seq_length),
            window=window if written.local_attention and written.local_attention["local_blocks"] else None,
        )  # fmt: skip
        settings = auto_settings(optimize, arch) if auto else _settings(prec, optimize, recipes)
        bundle = run_settings(job, settings, pick_fastest=auto)
        if out.exists():
            shutil.rmtree(out)
        bundle.rename(out)
    return out


def _check_variants(arch: ArchSpec, prec: Precision, optimize: bool | None) -> None:
    if optimize:
        arch.check_variant(Variant.FUSED)
    if prec is not Precision.FP32:
        arch.check_variant(Variant(prec.value))


def _settings(prec: Precision, optimize: bool | None, recipes: list[Int8Recipe]) -> list[Setting]:
    """One precision's settings in the order they are tried (int8: one per recipe)."""
    fuse = optimize if (optimize is not None or prec is not Precision.FP16) else False
    if prec is Precision.INT8:
        return [Setting(prec, fuse, r) for r in recipes]
    return [Setting(prec, fuse)]


def _calibration(hf_tok: Any, inputs: list[str], max_length: int) -> Any:
    from ._smooth import calibration_feeds

    return calibration_feeds(hf_tok, calibration_texts(), inputs, max_length)


def _int8_recipes(method: str) -> list[Int8Recipe]:
    if method == "auto":
        return list(AUTO)
    if method not in RECIPES:
        raise ValueError(f"invalid int8 method {method!r}: expected 'auto' or one of {METHODS}")
    return [RECIPES[method]]


def calibration_texts(n: int = 256) -> list[str]:
    """Texts the int8 smoothing and weight rounding are calibrated on: the validation grid (many
    scripts and lengths), everyday sentences in Korean and a dozen other languages, and ``n``
    built-in English texts that follow the quality gate's 1000 (so the gate stays unseen)."""
    return validation_texts() + calibration_extra() + default_gate_texts(1000 + n)[1000:]


def _parse_pooling(pooling: list[str] | str | None) -> list[Pooling] | None:
    if pooling is None:
        return None
    items = pooling.split(",") if isinstance(pooling, str) else list(pooling)
    modes = [parse(Pooling, p.strip() if isinstance(p, str) else p, "pooling mode") for p in items]
    if not modes:
        raise ValueError("pooling must name at least one mode")
    return modes
