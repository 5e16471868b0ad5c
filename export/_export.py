"""``export_model``: a model folder becomes a validated bundle."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedrt import Embedder
from embedrt._bundle import MODEL_NAME, Manifest, write_manifest
from embedrt._errors import BundleError, ExportError, ParityError, ProviderWarning, UnsupportedModelError
from embedrt._types import MADE_FOR, BundleKind, Device, Pooling, Precision, parse

from ._archs import ArchSpec, Exporter, Variant, spec_for
from ._gate import gate_texts as default_gate_texts
from ._graph import EXTERNAL_DATA_BYTES
from ._kinds import check_head_options, detect_kind
from ._manifest import build_manifest
from ._model import EmbeddingModel, load_reference
from ._onnx import Written, export_graph
from ._progress import quiet
from ._quantize import AUTO, METHODS, RECIPES, Int8Recipe
from ._source import SourceSpec, read_source
from ._texts import validation_texts
from ._tokenizer import bundle_tokenizer, write_tokenizer
from ._validate import quality_gate, validate

DEFAULT_OPSET = 17
EXPORTERS = tuple(e.value for e in Exporter)

Log = Callable[[str], None]


def export_model(
    source: str | Path,
    out_dir: str | Path,
    *,
    pooling: list[str] | str | None = None,
    precision: str | Precision = Precision.FP32,
    optimize: bool = False,
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

    ``exporter``: ``"auto"`` (the architecture's first choice, then the other path if it fails),
    ``"torchscript"`` or ``"dynamo"``. ``int8_method`` (precision int8 only): ``"smooth"``,
    ``"nbits"`` or ``"dynamic"`` (see ``_quantize``); ``"auto"`` tries ``smooth`` and falls back to
    ``nbits`` when its graph misses the checks, recording the miss in the manifest.
    ``trust_remote_code`` runs modeling code shipped in the folder (config.json ``auto_map``).
    Weights of graphs over ``external_data_bytes`` go to ``model.onnx.data``.

    ``kind`` (``"embedding"``, ``"reranker"``, ``"sparse"``) forces the bundle kind; by default the
    folder decides (``_kinds.detect_kind``): CrossEncoder folders become rerankers, SPLADE
    SparseEncoder folders sparse bundles.
    """
    say = log or quiet
    prec = parse(Precision, precision, "precision")
    _int8_recipes(int8_method)  # a bad method fails before the model is loaded
    how = parse(Exporter, exporter, "exporter")
    modes = _parse_pooling(pooling)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)")
    bundle_kind = detect_kind(source, kind)
    if bundle_kind is not BundleKind.EMBEDDING:
        check_head_options(bundle_kind, prec, optimize, pooling)
        from ._export_head import export_head

        head_exporter = "dynamo" if how is Exporter.DYNAMO else "torchscript"
        return export_head(source, out, bundle_kind, opset=opset, exporter=head_exporter,
                           validate_texts=validate_texts, log=say)  # fmt: skip

    from ._static import export_static, is_static_folder

    if is_static_folder(source):
        return export_static(source, out, precision=prec, optimize=optimize, validate_texts=validate_texts,
                             gate_texts=gate_texts, gate_thresholds=gate_thresholds, say=say)  # fmt: skip
    spec = read_source(source, modes, trust_remote_code)
    arch = spec_for(spec.model_type)
    _check_variants(arch, prec, optimize)
    say(f"source: {spec.kind} folder, architecture {spec.model_type!r}, pooling "
        f"{[p.value for p in spec.pooling]}, max_seq_length {spec.max_seq_length}")
    model, hf_tok = load_reference(spec, say)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        bundle = work / "bundle"
        bundle.mkdir()
        fp32_dir = work / "fp32" if (prec is not Precision.FP32 or optimize) else bundle
        fp32_dir.mkdir(exist_ok=True)
        inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.with_type_ids else [])
        sample = hf_tok(["a short text", "a somewhat longer text to pad the batch"], padding=True, return_tensors="pt")
        say(f"exporting with torch.onnx ({how.value}), inputs {inputs}")
        written = export_graph(
            model, tuple(sample[n] for n in inputs), inputs, fp32_dir / MODEL_NAME, opset=opset, exporter=how,
            arch=arch, say=say, external_data_bytes=external_data_bytes,
        )  # fmt: skip
        say(f"wrote opset {written.opset} with the {written.exporter.value} exporter"
            + (", weights in model.onnx.data (external data)" if written.external_data else "")
            + (f"; {written.static_reshapes} Reshapes given constant target shapes" if written.static_reshapes else ""))
        inputs = _used_inputs(fp32_dir / MODEL_NAME, inputs, say)
        job = _Job(spec, model, hf_tok, inputs, prec, optimize, written, validate_texts, gate_texts, gate_thresholds, say)
        manifest = job.run(fp32_dir, bundle, _int8_recipes(int8_method) if prec is Precision.INT8 else [None])
        write_manifest(bundle, manifest)
        if out.exists():
            shutil.rmtree(out)
        bundle.rename(out)
    return out


def _check_variants(arch: ArchSpec, prec: Precision, optimize: bool) -> None:
    if optimize:
        arch.check_variant(Variant.FUSED)
    if prec is not Precision.FP32:
        arch.check_variant(Variant(prec.value))


class _Job:
    """The variant attempts of one export: build, write, validate; int8 ``auto`` falls back by recipe."""

    def __init__(
        self, spec: SourceSpec, model: EmbeddingModel, hf_tok: Any, inputs: list[str], prec: Precision,
        optimize: bool, written: Written, validate_texts: list[str] | None, gate_texts: list[str] | None,
        gate_thresholds: dict[str, float] | None, say: Log,
    ) -> None:  # fmt: skip
        self.spec, self.model, self.hf_tok, self.inputs = spec, model, hf_tok, inputs
        self.prec, self.optimize, self.written, self.say = prec, optimize, written, say
        self.validate_texts, self.gate_texts, self.gate_thresholds = validate_texts, gate_texts, gate_thresholds

    def run(self, fp32_dir: Path, bundle: Path, recipes: list[Int8Recipe | None]) -> Manifest:
        calibration = None
        if any(r is not None and r.method == "smooth" for r in recipes):
            from ._smooth import calibration_feeds

            calibration = calibration_feeds(self.hf_tok, calibration_texts(), self.inputs, self.spec.max_seq_length)
        tok, pad_id = bundle_tokenizer(self.hf_tok, self.spec)
        attempts: list[dict[str, Any]] = []
        for i, recipe in enumerate(recipes):
            optimizations: dict[str, Any] = {}
            if fp32_dir is not bundle:
                from ._variants import apply_variant  # owned by the variants work

                self.say(f"making the {self.prec.value} variant" + (" with graph fusion" if self.optimize else "")
                         + (f" (int8 method {recipe.method})" if recipe is not None else ""))
                optimizations = apply_variant(
                    fp32_dir / MODEL_NAME, bundle / MODEL_NAME, self.prec, self.optimize, {"spec": self.spec},
                    int8_recipe=recipe, calibration=calibration,
                )  # fmt: skip
                if attempts:
                    optimizations["fallback_from"] = attempts
            write_tokenizer(tok, bundle)
            manifest = build_manifest(self.spec, self.model, self.inputs, self.prec, optimizations, self.written,
                                      pad_id, str(self.hf_tok.padding_side))  # fmt: skip
            write_manifest(bundle, manifest)
            try:
                manifest.parity = self._check(bundle)
                return manifest
            except ParityError as e:
                if i + 1 == len(recipes) or recipe is None:
                    raise
                gate_report = getattr(e, "report", {}) or {}
                attempts.append({"method": recipe.method, "failed": str(e).splitlines()[0][:300],
                                 **{k: gate_report[k] for k in ("mean_cos", "min_cos", "topk") if k in gate_report}})
                following = recipes[i + 1]
                self.say(f"int8 method {recipe.method} missed the checks ({str(e).splitlines()[0][:200]}); "
                         f"falling back to {following.method if following is not None else 'the next'}")
                for f in bundle.iterdir():
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        raise AssertionError("unreachable: the last recipe raises or returns")  # pragma: no cover

    def _check(self, bundle: Path) -> dict[str, Any]:
        self.say("validating against PyTorch")
        try:
            embedder = _validation_embedder(bundle, self.prec, self.say)
        except BundleError as e:  # a variant pass wrote a graph onnxruntime refuses
            raise UnsupportedModelError(
                f"the {self.prec.value}{' fused' if self.optimize else ''} graph of architecture "
                f"{self.spec.model_type!r} cannot be run by onnxruntime ({str(e)[:400]}); export it in fp32"
            ) from e
        report = validate(embedder, self.model, self.hf_tok, self.validate_texts or validation_texts(), log=self.say)
        self.say(f"parity: min cosine {report['min_cosine']:.7f}, max abs diff {report['max_abs_diff']:.2e} "
                 f"over {report['texts']} texts")
        texts = self.gate_texts or default_gate_texts()
        self.say(f"quality gate ({self.prec.value}) on {len(texts)} texts")
        report["gate"] = gate = quality_gate(embedder, self.model, self.hf_tok, texts, self.gate_thresholds, log=self.say)
        self.say(f"gate: mean cosine {gate['mean_cos']:.6f}, min {gate['min_cos']:.6f}, "
                 f"top-10 agreement {gate['topk']:.4f}: passed")
        return report


def _used_inputs(path: Path, inputs: list[str], say: Log) -> list[str]:
    """``inputs`` less those the exporter dropped from the graph (DeBERTa without token types takes no
    ``token_type_ids``): the manifest lists what the graph takes."""
    import onnx

    taken = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    dropped = [n for n in inputs if n not in taken]
    if dropped:
        say(f"the model does not use {dropped}: the graph takes {[n for n in inputs if n in taken]}")
    return [n for n in inputs if n in taken]


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
