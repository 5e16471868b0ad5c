"""``export_model``: a model folder becomes a validated bundle."""

from __future__ import annotations

import platform
import shutil
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from embedrt import Embedder, __version__
from embedrt._bundle import MODEL_NAME, Manifest, write_manifest
from embedrt._errors import ExportError, ParityError, ProviderWarning, UnsupportedModelError
from embedrt._types import MADE_FOR, Device, Pooling, Precision, parse

from ._gate import gate_texts as default_gate_texts
from ._model import EmbeddingModel, load_reference
from ._quantize import AUTO, METHODS, RECIPES, Int8Recipe
from ._source import SourceSpec, position_limit, read_source
from ._texts import validation_texts
from ._tokenizer import bundle_tokenizer, write_tokenizer
from ._validate import quality_gate, validate

DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")

Log = Callable[[str], None]


def export_model(
    source: str | Path,
    out_dir: str | Path,
    *,
    pooling: list[str] | str | None = None,
    precision: str | Precision = Precision.FP32,
    optimize: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    validate_texts: list[str] | None = None,
    gate_texts: list[str] | None = None,
    gate_thresholds: dict[str, float] | None = None,
    overwrite: bool = False,
    int8_method: str = "auto",
    log: Log | None = None,
) -> Path:
    """Export ``source`` (a sentence-transformers or Hugging Face folder) into the bundle ``out_dir``.

    The bundle is validated against PyTorch before it is moved into place: parity on a grid of
    hard texts (``validate_texts``), then the quality gate of its precision on >= 1000 texts
    (``gate_texts``, default: the built-in set; ``gate_thresholds`` lowers a gate explicitly). A
    failure raises ``ParityError`` (``GateError`` for the gate) with the numbers and the worst
    input, and leaves ``out_dir`` untouched.

    ``int8_method`` (precision int8 only): ``"smooth"``, ``"nbits"`` or ``"dynamic"`` (see
    ``_quantize``); ``"auto"`` tries ``smooth`` (fastest) and falls back to ``nbits`` when its
    graph misses the checks, recording the miss in the manifest.
    """
    say = log or (lambda _msg: None)
    prec = parse(Precision, precision, "precision")
    _int8_recipes(int8_method)  # a bad method fails before the model is loaded
    if exporter not in EXPORTERS:
        raise ValueError(f"invalid exporter {exporter!r}: expected one of {EXPORTERS}")
    modes = _parse_pooling(pooling)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)")

    spec = read_source(source, modes)
    say(f"source: {spec.kind} folder, architecture {spec.model_type!r}, pooling "
        f"{[p.value for p in spec.pooling]}, max_seq_length {spec.max_seq_length}")
    model, hf_tok = load_reference(spec)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        bundle = work / "bundle"
        bundle.mkdir()
        fp32_dir = work / "fp32" if (prec is not Precision.FP32 or optimize) else bundle
        fp32_dir.mkdir(exist_ok=True)
        inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.with_type_ids else [])
        say(f"exporting with torch.onnx ({exporter}, opset {opset}), inputs {inputs}")
        _onnx_export(model, hf_tok, inputs, fp32_dir / MODEL_NAME, opset, exporter, spec)
        if (n := _static_reshapes(fp32_dir / MODEL_NAME)) > 0:
            say(f"{n} Reshapes given constant target shapes (their shape subgraphs dropped)")
        recipes = _int8_recipes(int8_method) if prec is Precision.INT8 else [None]
        calibration = None
        if prec is Precision.INT8 and any(r is not None and r.method == "smooth" for r in recipes):
            from ._smooth import calibration_feeds

            calibration = calibration_feeds(hf_tok, calibration_texts(), inputs, spec.max_seq_length)
        tok, pad_id = bundle_tokenizer(hf_tok, spec)
        attempts: list[dict[str, Any]] = []
        for i, recipe in enumerate(recipes):
            optimizations: dict[str, Any] = {}
            if fp32_dir is not bundle:
                from ._variants import apply_variant  # owned by the variants work (issue 3)

                say(f"making the {prec.value} variant" + (" with graph fusion" if optimize else "")
                    + (f" (int8 method {recipe.method})" if recipe is not None else ""))
                optimizations = apply_variant(
                    fp32_dir / MODEL_NAME, bundle / MODEL_NAME, prec, optimize, {"spec": spec},
                    int8_recipe=recipe, calibration=calibration,
                )  # fmt: skip
                if attempts:
                    optimizations["fallback_from"] = attempts
            write_tokenizer(tok, bundle)
            manifest = _manifest(spec, model, inputs, prec, optimizations, opset, pad_id, exporter)
            write_manifest(bundle, manifest)

            say("validating against PyTorch")
            embedder = _validation_embedder(bundle, prec, say)
            try:
                report = validate(embedder, model, hf_tok, validate_texts or validation_texts())
                say(f"parity: min cosine {report['min_cosine']:.7f}, max abs diff {report['max_abs_diff']:.2e} "
                    f"over {report['texts']} texts")
                texts = gate_texts or default_gate_texts()
                say(f"quality gate ({prec.value}) on {len(texts)} texts")
                report["gate"] = gate = quality_gate(
                    embedder, model, hf_tok, texts, gate_thresholds, progress=log is not None
                )
            except ParityError as e:
                del embedder
                if i + 1 == len(recipes):
                    raise
                assert recipe is not None
                gate_report = getattr(e, "report", {}) or {}
                attempts.append({"method": recipe.method, "failed": str(e).splitlines()[0][:300],
                                 **{k: gate_report[k] for k in ("mean_cos", "min_cos", "topk") if k in gate_report}})
                following = recipes[i + 1]
                say(f"int8 method {recipe.method} missed the checks ({str(e).splitlines()[0][:200]}); "
                    f"falling back to {following.method if following is not None else 'the next'}")
                for f in bundle.iterdir():
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
                continue
            break
        say(f"gate: mean cosine {gate['mean_cos']:.6f}, min {gate['min_cos']:.6f}, "
            f"top-10 agreement {gate['topk']:.4f}: passed")
        manifest.parity = report
        write_manifest(bundle, manifest)
        del embedder
        if out.exists():
            shutil.rmtree(out)
        bundle.rename(out)
    return out


def _validation_embedder(bundle: Path, precision: Precision, say: Log) -> Embedder:
    """The bundle on CPU, where export validates; a variant made for another provider is said so once
    here (the numbers record where they were measured), not warned about at every load."""
    if Device.CPU not in MADE_FOR[precision]:
        say(f"{precision.value} is made for {'/'.join(d.value for d in MADE_FOR[precision])}: validating on cpu, "
            "and the manifest records that the numbers were measured there")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProviderWarning)
        return Embedder(bundle)


def _int8_recipes(method: str) -> list[Int8Recipe | None]:
    if method == "auto":
        return list(AUTO)
    if method not in RECIPES:
        raise ValueError(f"invalid int8 method {method!r}: expected 'auto' or one of {METHODS}")
    return [RECIPES[method]]


def calibration_texts(n: int = 256) -> list[str]:
    """Texts the int8 smoothing is calibrated on: the validation grid (many scripts and lengths) and
    ``n`` built-in English texts that follow the quality gate's 1000 (so the gate stays unseen)."""
    return validation_texts() + default_gate_texts(1000 + n)[1000:]


def _parse_pooling(pooling: list[str] | str | None) -> list[Pooling] | None:
    if pooling is None:
        return None
    items = pooling.split(",") if isinstance(pooling, str) else list(pooling)
    modes = [parse(Pooling, p.strip() if isinstance(p, str) else p, "pooling mode") for p in items]
    if not modes:
        raise ValueError("pooling must name at least one mode")
    return modes


@contextmanager
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _onnx_export(
    model: EmbeddingModel, hf_tok: Any, inputs: list[str], path: Path, opset: int, exporter: str, spec: SourceSpec
) -> None:
    sample = hf_tok(["a short text", "a somewhat longer text to pad the batch"], padding=True, return_tensors="pt")
    args = tuple(sample[name] for name in inputs)
    outputs = ["sentence_embedding", "token_embeddings"]
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            if exporter == "dynamo":
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
                torch.onnx.export(
                    model, args, str(path), input_names=inputs, output_names=outputs, opset_version=max(opset, 18),
                    dynamo=True, dynamic_shapes={n: {0: batch, 1: seq} for n in inputs}, verbose=False,
                )
            else:
                axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in [*inputs, "token_embeddings"]}
                axes["sentence_embedding"] = {0: "batch"}
                torch.onnx.export(
                    model, args, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                    dynamo=False, dynamic_axes=axes, do_constant_folding=True,
                )
    except Exception as e:  # torch.onnx raises many types; all mean the same to the user
        raise UnsupportedModelError(
            f"torch.onnx.export ({exporter}) failed for architecture {spec.model_type!r} "
            f"({type(model.encoder).__name__}): {type(e).__name__}: {str(e)[:500]}"
        ) from e
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise UnsupportedModelError(
            f"the graph exported for architecture {spec.model_type!r} is not valid ONNX: {str(e)[:500]}"
        ) from e


def _static_reshapes(path: Path) -> int:
    import onnx

    from ._graph import static_reshapes

    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return 0  # a graph past 2 GiB keeps torch.onnx's own layout of weight files
    n = static_reshapes(model)
    if n:
        onnx.save(model, str(path))
    return n


def _output_dims(model: EmbeddingModel) -> tuple[int, int]:
    """Sentence and token embedding widths, from a forward pass (config keys differ by architecture)."""
    ids = torch.ones((1, 3), dtype=torch.long)
    with torch.inference_mode():
        sentence, hidden = model(ids, torch.ones_like(ids), torch.zeros_like(ids) if model.with_type_ids else None)
    return int(sentence.shape[-1]), int(hidden.shape[-1])


def _tool_versions() -> dict[str, str]:
    versions = {"embedrt": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "onnxscript"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def _manifest(
    spec: SourceSpec,
    model: EmbeddingModel,
    inputs: list[str],
    precision: Precision,
    optimizations: dict[str, Any],
    opset: int,
    pad_id: int,
    exporter: str,
) -> Manifest:
    from embedrt._bundle import DenseSpec

    dim, hidden = _output_dims(model)
    return Manifest(
        source={
            "path": str(spec.path.resolve()),
            "name": spec.path.resolve().name,
            "base_model": spec.config.get("_name_or_path"),
            "kind": spec.kind,
            "architecture": spec.model_type,
            "model_class": type(model.encoder).__name__,
            "exporter": exporter,
        },
        pooling=list(spec.pooling),
        dimension=dim,
        hidden_size=hidden,
        max_seq_length=spec.max_seq_length,
        max_positions=position_limit(spec.config),
        inputs=inputs,
        dense=[
            DenseSpec(d.in_features, d.out_features, d.bias, d.activation, d.residual) for d in spec.dense
        ],
        normalize=spec.normalize,
        do_lower_case=spec.do_lower_case,
        prompts=spec.prompts,
        default_prompt_name=spec.default_prompt_name,
        precision=precision,
        optimizations=optimizations,
        opset=opset if exporter == "torchscript" else max(opset, 18),
        pad_token_id=pad_id,
        tools=_tool_versions(),
    )
