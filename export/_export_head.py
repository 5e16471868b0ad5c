"""Export of reranker and sparse bundles: the same bundle format and checks as embedding bundles.

    reranker: inputs input_ids, attention_mask[, token_type_ids]
              outputs logits [batch, num_labels], scores [batch, num_labels] (the CrossEncoder's activation)
    sparse:   inputs input_ids, attention_mask[, token_type_ids], max_active_dims [1] int64
              outputs sparse_embedding [batch, vocab] (SPLADE weights),
                      sparse_indices [batch, k] int64, sparse_values [batch, k] float32

For sparse graphs ``k`` is computed in the graph: the batch's largest number of non-zero weights,
capped by ``max_active_dims``; rows with fewer have zero values at the end. The bundle is validated
against PyTorch (``_validate_heads``) before it is moved into place.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper

from embedrt._bundle import MODEL_NAME, Manifest
from embedrt._reranker import Reranker
from embedrt._sparse_encoder import MAX_ACTIVE_INPUT, SparseEncoder
from embedrt._types import BundleKind, Precision

from ._archs import ArchSpec, Exporter, Variant, spec_for
from ._attempts import OPENVINO_BF16, SPEED_TEXTS, Job, Setting, auto_settings, measure_speed, run_settings
from ._export import calibration_texts
from ._gate_rerank import gate_pairs, rerank_gate, thresholds_for
from ._graph import EXTERNAL_DATA_BYTES
from ._heads import ScoreModel, SpladeModel, load_head_reference
from ._kinds import HeadSource, read_head_source
from ._manifest import tool_versions
from ._onnx import Written, export_graph, used_inputs
from ._quantize import RECIPE, Int8Recipe
from ._smooth import Feeds, calibration_feeds
from ._tokenizer import bundle_tokenizer
from ._validate_heads import pairs_from_texts, reference_logits, validate_reranker, validate_sparse
from ._window import Window, local_window

Log = Callable[[str], None]


def export_head(
    source: str | Path,
    out: Path,
    kind: BundleKind,
    *,
    opset: int,
    exporter: Exporter,
    validate_texts: list[str] | None,
    log: Log,
    optimize: bool | None = None,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    precision: Precision = Precision.FP32,
    int8_recipes: list[Int8Recipe] | None = None,
    gate_texts: list[str] | None = None,
    gate_thresholds: dict[str, float] | None = None,
    auto: bool = False,
) -> Path:
    """Write the reranker or sparse bundle of ``source`` to ``out`` (which must be absent or empty).

    ``optimize`` as for embedding bundles: ``None`` (default) the graph for onnxruntime's CPU provider
    (attention fused where the architecture fuses, on the flash kernel; a windowed model's global
    layers on it too, rotary embeddings on the rotary kernel, products cut in slices one per slice),
    ``True`` every onnxruntime fusion, ``False`` the plain graph (for OpenVINO).
    ``precision`` ``int8`` (rerankers): the recipes ``int8_recipes`` are tried in order, calibrated on
    (query, document) pairs, and the first whose bundle passes the reranker gate (``_gate_rerank``:
    the order of 50 queries' candidates against PyTorch's, ``gate_texts`` the texts it pairs,
    ``gate_thresholds`` its thresholds changed explicitly) is kept; the misses are recorded.
    ``auto`` (rerankers): ``precision`` is ignored; int8 and fp32, as the default graph and unfused,
    are gated and timed here as an embedding's ``auto`` does (``_attempts``: the fastest that passes
    is the bundle; the plain fp32 graph on OpenVINO's bf16, where it passes its gate and is faster,
    its preferred setting).
    """
    head = read_head_source(source, kind)
    arch = spec_for(head.spec.model_type)
    if optimize:
        arch.check_variant(Variant.FUSED)
    if auto and kind is not BundleKind.RERANKER:
        raise ValueError(f"precision auto is for embedding and reranker bundles; a {kind.value} bundle is fp32")
    if auto or precision is not Precision.FP32:
        if not auto:
            arch.check_variant(Variant(precision.value))
        gate_pairs(gate_texts)  # too few gate texts, or a threshold it has not, fail before any work
        thresholds_for(Precision.INT8, gate_thresholds)
    log(f"source: {head.spec.kind} {kind.value} folder, {head.architecture}, max_seq_length {head.spec.max_seq_length}")
    model, hf_tok = load_head_reference(head)
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if model.with_type_ids else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        log(f"exporting with torch.onnx ({exporter.value}, opset {opset}), inputs {inputs}")
        plain = Path(tmp) / "plain" / MODEL_NAME
        plain.parent.mkdir()
        outputs, written, window = _export_graph(model, hf_tok, inputs, plain, opset, exporter, arch, log,
                                                 external_data_bytes)  # fmt: skip
        local = written.local_attention
        tok, pad_id = bundle_tokenizer(hf_tok, head.spec)
        inputs = used_inputs(written.inputs, inputs, log)  # DeBERTa-v3 takes no token types
        graph_inputs = [*inputs, MAX_ACTIVE_INPUT] if isinstance(model, SpladeModel) else inputs
        base = _manifest(head, model, graph_inputs, outputs, written, pad_id)
        extra = {"external_data": written.external_data, **({"local_attention": local} if local else {})}

        def manifest(prec: Precision, optimizations: dict[str, Any]) -> Manifest:
            return replace(base, precision=prec, optimizations={**optimizations, **extra})

        job = Job(
            spec=head.spec, model=model, hf_tok=hf_tok, fp32=plain, work=Path(tmp), arch=arch, manifest=manifest,
            tokenizer=tok, validate_texts=validate_texts or [], gate_texts=gate_texts or [],
            thresholds=gate_thresholds, say=log,
            calibrate=lambda: _pair_feeds(hf_tok, inputs, head.spec.max_seq_length),
            window=window if local and local.get("local_blocks") else None, check=_check_head,
            bf16_gate=_bf16_gate, unit="pairs",
            time_settings=lambda timed: measure_speed(timed, gate_pairs(gate_texts)[:SPEED_TEXTS], load=Reranker,
                                                      run=lambda m, pairs: m.predict(pairs, batch_size=32)),
        )  # fmt: skip
        if auto:
            settings = auto_settings(optimize, arch)
        else:
            recipes = (int8_recipes or [RECIPE]) if precision is Precision.INT8 else [None]
            settings = [Setting(precision, optimize, r) for r in recipes]
        bundle = run_settings(job, settings, pick_fastest=auto)
        if out.exists():
            shutil.rmtree(out)
        bundle.rename(out)
    return out


def _check_head(job: Job, bundle: Path, setting: Setting) -> dict[str, Any]:
    """A head bundle's parity against PyTorch; for a lossy reranker, then its gate (``_gate_rerank``)."""
    if not isinstance(job.model, ScoreModel):
        encoder = SparseEncoder(bundle)
        job.say(f"graph: {_graph_line(encoder.manifest.optimizations)}")
        job.say("validating against PyTorch")
        report = validate_sparse(encoder, job.model, job.hf_tok, job.validate_texts or None)
        job.say(f"parity: max abs diff {report['max_abs_diff']:.2e}, min cosine {report['min_cosine']:.7f} "
                f"over {report['texts']} texts")  # fmt: skip
        return report
    reranker = Reranker(bundle)
    job.say(f"graph: {_graph_line(reranker.manifest.optimizations)}")
    job.say("validating against PyTorch")
    pairs = pairs_from_texts(job.validate_texts) if job.validate_texts else None
    report = validate_reranker(reranker, job.model, job.hf_tok, pairs)
    job.say(f"parity: max abs logit diff {report['max_abs_diff']:.2e} over {report['pairs']} pairs "
            f"({report['truncated_pairs']} cut at max length)")  # fmt: skip
    if setting.precision is Precision.FP32:
        return report
    report["gate"] = _gate(job, reranker, setting.precision.value)
    return report


def _bf16_gate(job: Job, plain: Path) -> dict[str, Any]:
    """The reranker gate of the plain fp32 bundle on OpenVINO's bf16 (``auto``'s candidate)."""
    return _gate(job, Reranker(plain, verify=False, device="openvino", precision_hint="bf16"), OPENVINO_BF16)


def _gate(job: Job, reranker: Reranker, label: str) -> dict[str, Any]:
    """``reranker``'s gate (``_gate_rerank``); PyTorch's logits computed once per export."""
    gate = gate_pairs(job.gate_texts or None)
    if job.gate_reference is None:
        job.gate_reference, _ = reference_logits(job.model, job.hf_tok, gate, reranker.max_seq_length, batch_size=32,
                                                 log=job.say)  # fmt: skip
    job.say(f"reranker gate ({label}) on {len(gate)} pairs")
    g = rerank_gate(reranker, job.gate_reference, gate, job.thresholds)
    job.say(f"gate: rank correlation {g['rank_corr']:.4f}, top-{g['top_k']} kept {g['top_kept']:.3f}, "
            f"max score error {g['max_err']:.3f} spreads: passed")  # fmt: skip
    return g


def _pair_feeds(hf_tok: Any, inputs: list[str], max_length: int) -> list[Feeds]:
    """The int8 calibration batches of a reranker: the embedding export's calibration texts, each
    paired with the next (a short one meets a long one, other scripts, past the max length)."""
    texts = calibration_texts()
    return calibration_feeds(hf_tok, texts, inputs, max_length, second=texts[1:] + texts[:1])


def _export_graph(
    model: ScoreModel | SpladeModel, hf_tok: Any, inputs: list[str], path: Path, opset: int, exporter: Exporter,
    arch: ArchSpec, log: Log, external_data_bytes: int,
) -> tuple[list[str], Written, Window | None]:
    """The graph's outputs, how it was written (``export_graph``, as an embedding graph: exporter
    fallback, weights over ``external_data_bytes`` in ``model.onnx.data``, local attention in
    blocks) and, for an architecture with local attention, its window."""
    if isinstance(model, ScoreModel):
        sample = hf_tok(["a short query", "a somewhat longer query to pad"], ["a document", "another document"],
                        padding=True, return_tensors="pt")  # fmt: skip
        outputs = ["logits", "scores"]
    else:
        sample = hf_tok(["a short text", "a somewhat longer text to pad the batch"], padding=True, return_tensors="pt")
        outputs = ["sparse_embedding"]
    window = local_window(model.model.config) if arch.windowed else None
    written = export_graph(
        model, tuple(sample[name] for name in inputs), inputs, path, opset=opset, exporter=exporter, arch=arch,
        say=log, external_data_bytes=external_data_bytes, window=window,
        outputs={name: {0: "batch"} for name in outputs},
    )  # fmt: skip
    if isinstance(model, SpladeModel):
        _append_top_k(path)
        outputs = ["sparse_embedding", "sparse_indices", "sparse_values"]
    return outputs, written, window


def _graph_line(record: dict[str, Any]) -> str:
    """What ``apply_variant`` made of the graph, for the export's log."""
    done = [f"{op} {n}" for op, n in sorted((record.get("fused_ops") or {}).items())]
    split = (record.get("split_products") or {}).get("split_products")
    if split:
        done.append(f"{split} products computed slice by slice")
    skipped = (record.get("fusion") or {}).get("skipped")
    if not done:
        return "plain" + (f" ({skipped})" if skipped else "")
    return ", ".join(done)


def _append_top_k(path: Path) -> None:
    """Add the top-k extraction after ``sparse_embedding``::

        sparse_embedding ─► Greater(0) ─► Cast ─► ReduceSum(axis 1) ─► ReduceMax ─┐
        max_active_dims ─────────────────────────────────────────────────────► Min ─► Max(1) = k
        sparse_embedding ─► TopK(k, axis 1) ─► sparse_values, sparse_indices
    """
    model = onnx.load(str(path), load_external_data=False)  # the weights stay in their data file
    g = model.graph
    g.input.append(helper.make_tensor_value_info(MAX_ACTIVE_INPUT, TensorProto.INT64, [1]))
    g.initializer.extend([
        helper.make_tensor("topk_zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("topk_one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("topk_axis", TensorProto.INT64, [1], [1]),
    ])  # fmt: skip
    g.node.extend([
        helper.make_node("Greater", ["sparse_embedding", "topk_zero"], ["topk_active"]),
        helper.make_node("Cast", ["topk_active"], ["topk_active_i64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["topk_active_i64", "topk_axis"], ["topk_counts"], keepdims=0),
        helper.make_node("ReduceMax", ["topk_counts"], ["topk_most"], keepdims=1),
        helper.make_node("Min", ["topk_most", MAX_ACTIVE_INPUT], ["topk_capped"]),
        helper.make_node("Max", ["topk_capped", "topk_one"], ["topk_k"]),
        helper.make_node("TopK", ["sparse_embedding", "topk_k"], ["sparse_values", "sparse_indices"],
                         axis=1, largest=1, sorted=1),
    ])  # fmt: skip
    g.output.extend([
        helper.make_tensor_value_info("sparse_indices", TensorProto.INT64, ["batch", "k"]),
        helper.make_tensor_value_info("sparse_values", TensorProto.FLOAT, ["batch", "k"]),
    ])  # fmt: skip
    onnx.save_model(model, str(path))  # its tensors in a data file keep their place there


def _manifest(
    head: HeadSource, model: ScoreModel | SpladeModel, inputs: list[str], outputs: list[str], written: Written,
    pad_id: int,
) -> Manifest:
    spec = head.spec
    ids = torch.ones((1, 3), dtype=torch.long)
    with torch.inference_mode():
        first = model(ids, torch.ones_like(ids), torch.zeros_like(ids) if model.with_type_ids else None)
    width = int((first[0] if isinstance(first, tuple) else first).shape[-1])
    if head.sparse is not None:
        head.sparse.vocab_size = width
    return Manifest(
        source={
            "path": str(spec.path.resolve()), "name": spec.path.resolve().name,
            "base_model": spec.config.get("_name_or_path"), "kind": spec.kind, "architecture": spec.model_type,
            "model_class": head.architecture, "exporter": written.exporter.value,
            **({"exporter_fallback_from": written.fallback_from} if written.fallback_from else {}),
        },
        pooling=[],
        dimension=width,
        hidden_size=int(spec.config.get("hidden_size") or spec.config.get("dim") or 0),
        max_seq_length=spec.max_seq_length,
        inputs=inputs,
        do_lower_case=spec.do_lower_case,
        prompts=spec.prompts,
        default_prompt_name=spec.default_prompt_name,
        similarity_fn_name=spec.similarity_fn_name,
        precision=Precision.FP32,
        opset=written.opset,
        outputs=outputs,
        pad_token_id=pad_id,
        tools=tool_versions(),
        kind=head.kind,
        reranker=head.reranker,
        sparse=head.sparse,
    )
