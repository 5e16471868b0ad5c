"""The manifest of an exported transformer bundle: what the graph is, from the source and the export."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from embedrt import __version__
from embedrt._bundle import DenseSpec, Manifest
from embedrt._types import PaddingSide, Precision, parse

from ._model import EmbeddingModel
from ._onnx import Written
from ._source import SourceSpec, position_limit


def output_dims(model: EmbeddingModel) -> tuple[int, int]:
    """Sentence and token embedding widths, from a forward pass (config keys differ by architecture)."""
    ids = torch.ones((1, 3), dtype=torch.long)
    with torch.inference_mode():
        sentence, hidden = model(ids, torch.ones_like(ids), torch.zeros_like(ids) if model.with_type_ids else None)
    return int(sentence.shape[-1]), int(hidden.shape[-1])


def tool_versions() -> dict[str, str]:
    versions = {"embedrt": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "onnxscript", "model2vec"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def build_manifest(
    spec: SourceSpec,
    model: EmbeddingModel,
    inputs: list[str],
    precision: Precision,
    optimizations: dict[str, Any],
    written: Written,
    pad_id: int,
    padding_side: str,
) -> Manifest:
    dim, hidden = output_dims(model)
    source = {
        "path": str(spec.path.resolve()),
        "name": spec.path.resolve().name,
        "base_model": spec.config.get("_name_or_path"),
        "kind": spec.kind,
        "architecture": spec.model_type,
        "model_class": type(model.encoder).__name__,
        "exporter": written.exporter.value,
        "trust_remote_code": spec.trust_remote_code,
    }
    if written.fallback_from:
        source["exporter_fallback_from"] = written.fallback_from
    return Manifest(
        source=source,
        pooling=list(spec.pooling),
        dimension=dim,
        hidden_size=hidden,
        max_seq_length=spec.max_seq_length,
        max_positions=position_limit(spec.config),
        inputs=inputs,
        dense=[DenseSpec(d.in_features, d.out_features, d.bias, d.activation, d.residual) for d in spec.dense],
        normalize=spec.normalize,
        do_lower_case=spec.do_lower_case,
        prompts=spec.prompts,
        default_prompt_name=spec.default_prompt_name,
        similarity_fn_name=spec.similarity_fn_name,
        precision=precision,
        optimizations={**optimizations, "external_data": written.external_data,
                       **({"local_attention": written.local_attention} if written.local_attention else {})},
        opset=written.opset,
        pad_token_id=pad_id,
        padding_side=parse(PaddingSide, padding_side, "padding side"),
        tools=tool_versions(),
    )
