"""Which kind of bundle a model folder becomes, and how reranker and sparse folders are read.

- A sentence-transformers ``CrossEncoder`` folder (``config_sentence_transformers.json`` says
  ``"model_type": "CrossEncoder"``, or its one Transformer module does ``sequence-classification``),
  or a plain Hugging Face ``*ForSequenceClassification`` folder: a **reranker**.
- A sentence-transformers ``SparseEncoder`` folder (a ``SpladePooling`` module after an MLM
  Transformer): a **sparse** encoder. A plain ``*ForMaskedLM`` folder is one only when asked
  (``kind="sparse"``): base models ship MLM heads and are exported as embedding models by default.
- Everything else: an **embedding** model (``_source.read_source``).

The folders are read as JSON, as ``_source`` does: sentence-transformers is not needed to export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt._bundle import RerankerSpec, SparseSpec
from embedrt._errors import UnsupportedModelError
from embedrt._types import BundleKind, Precision, ScoreActivation, SpladeActivation, SpladePooling, parse

from ._source import SourceSpec, _default_max_seq_length, _find_st_config, _read_json, read_model_config

# CrossEncoder activation_fn paths (torch classes) -> what the graph and runtime compute
_ACTIVATIONS = {
    "sigmoid": ScoreActivation.SIGMOID,
    "identity": ScoreActivation.IDENTITY,
    "tanh": ScoreActivation.TANH,
    "softmax": ScoreActivation.SOFTMAX,
}
_TRANSFORMER_MODULES = ("Transformer", "MLMTransformer")


@dataclass
class HeadSource:
    """A reranker or sparse-encoder folder, as embedrt needs it (``spec.pooling`` is empty)."""

    spec: SourceSpec
    kind: BundleKind
    architecture: str
    reranker: RerankerSpec | None = None
    sparse: SparseSpec | None = None


def detect_kind(source: str | Path, kind: str | BundleKind | None = None) -> BundleKind:
    """The bundle kind ``source`` exports to; ``kind`` forces one (checked against the folder later)."""
    if kind is not None:
        forced = parse(BundleKind, kind, "kind")
        if forced is BundleKind.STATIC:
            raise UnsupportedModelError("kind 'static' bundles are not exported by this version of embedrt")
        return forced
    root = Path(source)
    modules = _modules(root)
    if modules is not None:
        names = [name for name, _ in modules]
        if "SpladePooling" in names:
            return BundleKind.SPARSE
        model_type = _read_json(root / "config_sentence_transformers.json").get("model_type") if (
            root / "config_sentence_transformers.json").is_file() else None
        if model_type == "CrossEncoder" or (names == ["Transformer"] and _task(root, modules) == "sequence-classification"):
            return BundleKind.RERANKER
        if model_type == "SparseEncoder":
            raise UnsupportedModelError(
                f"{root} is a SparseEncoder made of modules {names}; embedrt exports SPLADE sparse encoders "
                "(an MLM Transformer followed by SpladePooling)"
            )
        return BundleKind.EMBEDDING
    if (root / "config.json").is_file() and _architecture(_read_json(root / "config.json")).endswith(
        "ForSequenceClassification"
    ):
        return BundleKind.RERANKER
    return BundleKind.EMBEDDING


def check_head_options(kind: BundleKind, precision: Precision, pooling: object) -> None:
    """Reranker bundles are exported in fp32 or int8, sparse bundles in fp32, with the pooling of their head."""
    allowed = (Precision.FP32, Precision.INT8) if kind is BundleKind.RERANKER else (Precision.FP32,)
    if precision not in allowed:
        raise ValueError(f"a {kind.value} bundle is exported in {' or '.join(p.value for p in allowed)} for now; "
                         f"got precision {precision.value!r}")  # fmt: skip
    if pooling:
        raise ValueError(f"--pooling applies to embedding models; a {kind.value} bundle pools as its head says")


def read_head_source(source: str | Path, kind: BundleKind) -> HeadSource:
    """Describe a reranker or sparse-encoder folder."""
    root = Path(source)
    if not root.is_dir():
        raise UnsupportedModelError(f"source {str(root)!r} is not a folder: give a local model folder")
    modules = _modules(root)
    names = [name for name, _ in modules] if modules is not None else []
    expected = ["Transformer"] if kind is BundleKind.RERANKER else ["Transformer", "SpladePooling"]
    if modules is not None and [n if n not in _TRANSFORMER_MODULES else "Transformer" for n in names] != expected:
        raise UnsupportedModelError(
            f"{root} has modules {names}; a {kind.value} bundle is exported from {expected} "
            "(sentence-transformers' CrossEncoder / SPLADE SparseEncoder layouts)"
        )
    tpath = modules[0][1] if modules else root
    config = _read_json(tpath / "config.json")
    architecture = _architecture(config)
    spec = _spec(root, tpath, config, sentence_transformers=modules is not None)
    if kind is BundleKind.RERANKER:
        if not architecture.endswith("ForSequenceClassification"):
            raise UnsupportedModelError(
                f"{root}: a reranker needs a *ForSequenceClassification model, found {architecture!r}"
                + (" (causal-LM rerankers that score yes/no tokens are not supported)" if "CausalLM" in architecture else "")
            )
        return HeadSource(spec, kind, architecture, reranker=_reranker_spec(root, config))
    if not architecture.endswith("ForMaskedLM"):
        raise UnsupportedModelError(f"{root}: a SPLADE sparse encoder needs a *ForMaskedLM model, found {architecture!r}")
    pooling_cfg = _read_json(modules[1][1] / "config.json") if modules and (modules[1][1] / "config.json").is_file() else {}
    return HeadSource(spec, kind, architecture, sparse=_sparse_spec(root, config, pooling_cfg))


def _modules(root: Path) -> list[tuple[str, Path]] | None:
    path = root / "modules.json"
    if not path.is_file():
        return None
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UnsupportedModelError(f"cannot read {path}: {e}") from e
    if not isinstance(modules, list) or not modules:
        raise UnsupportedModelError(f"{path} should be a non-empty list of modules")
    return [(str(m.get("type", "")).rsplit(".", 1)[-1], root / str(m.get("path", ""))) for m in modules]


def _task(root: Path, modules: list[tuple[str, Path]]) -> str | None:
    task = _find_st_config(root, modules[0][1]).get("transformer_task")
    return str(task) if task else None


def _architecture(config: dict[str, Any]) -> str:
    archs = config.get("architectures") or []
    return str(archs[0]) if archs else ""


def _spec(root: Path, tpath: Path, config: dict[str, Any], sentence_transformers: bool) -> SourceSpec:
    st_config = _find_st_config(root, tpath)
    max_len = st_config.get("max_seq_length")
    spec = SourceSpec(
        path=root,
        kind="sentence-transformers" if sentence_transformers else "transformers",
        transformer_path=tpath,
        model_type=str(config.get("model_type", "unknown")),
        max_seq_length=int(max_len) if max_len else _default_max_seq_length(tpath, config),
        pooling=[],
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        config=config,
    )
    cst = root / "config_sentence_transformers.json"
    if cst.is_file():
        spec.prompts, spec.default_prompt_name, spec.similarity_fn_name = read_model_config(_read_json(cst), cst)
    return spec


def _reranker_spec(root: Path, config: dict[str, Any]) -> RerankerSpec:
    """Labels and activation as sentence-transformers' CrossEncoder resolves them, newest format first."""
    labels = [str(v) for _, v in sorted((config.get("id2label") or {}).items(), key=lambda kv: int(kv[0]))]
    num_labels = len(labels) or int(config.get("num_labels") or 1)
    cst = root / "config_sentence_transformers.json"
    path = _read_json(cst).get("activation_fn") if cst.is_file() else None
    path = path or (config.get("sentence_transformers") or {}).get("activation_fn")
    path = path or config.get("sbert_ce_default_activation_function")
    if path is None:
        activation = ScoreActivation.SIGMOID if num_labels == 1 else ScoreActivation.IDENTITY
    else:
        name = str(path).rsplit(".", 1)[-1].lower()
        if not str(path).startswith("torch.") or name not in _ACTIVATIONS:
            raise UnsupportedModelError(
                f"{root}: CrossEncoder activation_fn {path!r} is not supported; supported: torch.nn "
                f"{', '.join(k.capitalize() for k in _ACTIVATIONS)}"
            )
        activation = _ACTIVATIONS[name]
    return RerankerSpec(num_labels=num_labels, activation=activation, labels=labels)


def _sparse_spec(root: Path, config: dict[str, Any], pooling_cfg: dict[str, Any]) -> SparseSpec:
    try:
        pooling = parse(SpladePooling, pooling_cfg.get("pooling_strategy", "max"), "SpladePooling pooling_strategy")
        activation = parse(
            SpladeActivation, pooling_cfg.get("activation_function", "relu"), "SpladePooling activation_function"
        )
    except ValueError as e:
        raise UnsupportedModelError(f"{root}: {e}") from e
    return SparseSpec(pooling=pooling, activation=activation, vocab_size=int(config.get("vocab_size") or 0))
