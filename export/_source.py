"""Reading a model folder: a sentence-transformers folder (any version's layout) or a plain encoder.

Nothing here imports sentence-transformers: the folder formats are read as JSON, so that folders
saved by old and new versions alike are understood, and the export does not depend on the library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedrt._errors import UnsupportedModelError
from embedrt._types import Pooling, SimilarityFunction, parse

# sentence-transformers' legacy boolean pooling flags, in the order it concatenates them.
_LEGACY_POOLING_FLAGS: dict[str, Pooling] = {
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_max_tokens": Pooling.MAX,
    "pooling_mode_mean_tokens": Pooling.MEAN,
    "pooling_mode_mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
    "pooling_mode_weightedmean_tokens": Pooling.WEIGHTED_MEAN,
    "pooling_mode_lasttoken": Pooling.LAST_TOKEN,
}

# Dense activations we fold into the graph, by the class name sentence-transformers records.
DENSE_ACTIVATIONS = ("identity", "tanh", "relu", "gelu", "sigmoid", "silu", "leakyrelu", "elu", "softplus")

_SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")


@dataclass
class DenseLayer:
    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str
    residual: bool = False


@dataclass
class SourceSpec:
    """What a model folder holds, as embedrt needs it."""

    path: Path
    kind: str  # "sentence-transformers" | "transformers"
    transformer_path: Path
    model_type: str
    max_seq_length: int
    pooling: list[Pooling]
    do_lower_case: bool = False
    dense: list[DenseLayer] = field(default_factory=list)
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: SimilarityFunction | None = None
    config: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False  # run modeling code shipped in the folder (config.json auto_map)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UnsupportedModelError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def read_source(
    source: str | Path, pooling: list[Pooling] | None = None, trust_remote_code: bool = False
) -> SourceSpec:
    """Describe the model folder ``source``. ``pooling`` is for plain encoder folders (default mean).

    A model whose config maps its classes to Python files in the folder (``auto_map``) is refused
    unless ``trust_remote_code``: that code runs on the exporting machine.
    """
    spec = _read_folder(source, pooling)
    _check_remote_code(spec, trust_remote_code)
    spec.trust_remote_code = trust_remote_code
    return spec


def _check_remote_code(spec: SourceSpec, trust: bool) -> None:
    auto_map = spec.config.get("auto_map") or {}
    if trust or not isinstance(auto_map, dict) or not any(k in auto_map for k in ("AutoModel", "AutoConfig")):
        return
    where = spec.transformer_path / "config.json"
    raise UnsupportedModelError(
        f"architecture {spec.model_type!r} ships its own modeling code ({where} auto_map: "
        f"{ {k: v for k, v in auto_map.items() if k in ('AutoConfig', 'AutoModel')} }), which embedrt runs only "
        "when asked: read that code, then pass --trust-remote-code (export_model(..., trust_remote_code=True)). "
        "The exported graph needs no Python code at run time."
    )


def _read_folder(source: str | Path, pooling: list[Pooling] | None) -> SourceSpec:
    root = Path(source)
    if not root.is_dir():
        raise UnsupportedModelError(
            f"source {str(root)!r} is not a folder: give a local sentence-transformers or Hugging Face model "
            "folder (embedrt does not download from the hub)"
        )
    if (root / "modules.json").is_file():
        if pooling:
            raise ValueError(
                f"{root} is a sentence-transformers folder, whose pooling comes from its Pooling module; "
                "--pooling applies to plain encoder folders only"
            )
        return _read_sentence_transformers(root)
    if (root / "config.json").is_file():
        return _read_plain(root, pooling or [Pooling.MEAN])
    raise UnsupportedModelError(f"{root} has neither modules.json (sentence-transformers) nor config.json (transformers)")


def _read_plain(root: Path, pooling: list[Pooling]) -> SourceSpec:
    config = _read_json(root / "config.json")
    return SourceSpec(
        path=root,
        kind="transformers",
        transformer_path=root,
        model_type=str(config.get("model_type", "unknown")),
        max_seq_length=_default_max_seq_length(root, config),
        pooling=pooling,
        config=config,
    )


def _read_sentence_transformers(root: Path) -> SourceSpec:
    modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    if not isinstance(modules, list) or not modules:
        raise UnsupportedModelError(f"{root / 'modules.json'} should be a non-empty list of modules")
    kinds = [(str(m.get("type", "")).rsplit(".", 1)[-1], root / str(m.get("path", ""))) for m in modules]
    unknown = [k for k, _ in kinds if k not in _SUPPORTED_MODULES]
    if unknown:
        raise UnsupportedModelError(
            f"{root} uses sentence-transformers module(s) {unknown}; embedrt exports {list(_SUPPORTED_MODULES)}"
        )
    if kinds[0][0] != "Transformer" or sum(k == "Transformer" for k, _ in kinds) != 1:
        raise UnsupportedModelError(f"{root}: expected one Transformer module first, found {[k for k, _ in kinds]}")
    tpath = kinds[0][1]
    config = _read_json(tpath / "config.json")
    st_config = _find_st_config(root, tpath)
    max_len = st_config.get("max_seq_length")
    spec = SourceSpec(
        path=root,
        kind="sentence-transformers",
        transformer_path=tpath,
        model_type=str(config.get("model_type", "unknown")),
        max_seq_length=int(max_len) if max_len else _default_max_seq_length(tpath, config),
        pooling=[],
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        config=config,
    )
    for kind, path in kinds[1:]:
        if kind == "Pooling":
            if spec.pooling:
                raise UnsupportedModelError(f"{root} has more than one Pooling module")
            spec.pooling = _read_pooling(path / "config.json")
        elif kind == "Dense":
            if not spec.pooling:
                raise UnsupportedModelError(f"{root}: a Dense module before Pooling is not supported")
            spec.dense.append(_read_dense(path))
        elif kind == "Normalize":
            spec.normalize = True
        elif kind == "Transformer":  # pragma: no cover - rejected above
            pass
    if not spec.pooling:
        raise UnsupportedModelError(f"{root} has no Pooling module: its output is not a sentence embedding")
    prompts_file = root / "config_sentence_transformers.json"
    if prompts_file.is_file():
        cst = _read_json(prompts_file)
        spec.prompts, spec.default_prompt_name, spec.similarity_fn_name = read_model_config(cst, prompts_file)
    return spec


def read_model_config(
    cst: dict[str, Any], path: Path
) -> tuple[dict[str, str], str | None, SimilarityFunction | None]:
    """Prompts, default prompt name and similarity function from config_sentence_transformers.json.

    A prompt saved as null means "not set" (sentence-transformers fills it at load time): left out.
    """
    prompts = {str(k): str(v) for k, v in (cst.get("prompts") or {}).items() if v is not None}
    fn = cst.get("similarity_fn_name")
    if fn is not None and fn not in [f.value for f in SimilarityFunction]:
        raise UnsupportedModelError(
            f"{path}: similarity_fn_name {fn!r} is not supported; supported: {[f.value for f in SimilarityFunction]}"
        )
    similarity = parse(SimilarityFunction, fn, "similarity_fn_name") if fn is not None else None
    return prompts, cst.get("default_prompt_name") or None, similarity


def _find_st_config(root: Path, tpath: Path) -> dict[str, Any]:
    for folder in (tpath, root):
        f = folder / "sentence_bert_config.json"
        if f.is_file():
            return _read_json(f)
    return {}


def _default_max_seq_length(folder: Path, config: dict[str, Any]) -> int:
    """As sentence-transformers does without max_seq_length: the tokenizer's model_max_length,
    capped by the position embeddings (less the padding offset that RoBERTa-style models use)."""
    limit = int(config.get("max_position_embeddings") or 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= int(config.get("pad_token_id") or 1) + 1
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        value = _read_json(tok_config).get("model_max_length")
        if isinstance(value, int | float) and 0 < value < 1e9:
            return min(int(value), limit)
    return limit


def _read_pooling(path: Path) -> list[Pooling]:
    cfg = _read_json(path) if path.is_file() else {}
    if cfg.get("include_prompt") is False:
        raise UnsupportedModelError(
            f"{path}: include_prompt=false (prompt tokens excluded from pooling) is not supported yet"
        )
    mode = cfg.get("pooling_mode")
    if mode is not None:
        modes = [mode] if isinstance(mode, str) else list(mode)
        return [parse(Pooling, m, "pooling mode") for m in modes]
    active = [p for flag, p in _LEGACY_POOLING_FLAGS.items() if cfg.get(flag)]
    return active or [Pooling.MEAN]


def _read_dense(folder: Path) -> DenseLayer:
    cfg = _read_json(folder / "config.json")
    act_path = str(cfg.get("activation_function") or "torch.nn.modules.activation.Tanh")
    activation = act_path.rsplit(".", 1)[-1].lower()
    if activation not in DENSE_ACTIVATIONS:
        raise UnsupportedModelError(
            f"{folder}: Dense activation {act_path!r} is not supported; supported: {list(DENSE_ACTIVATIONS)}"
        )
    if cfg.get("module_input_name", "sentence_embedding") != "sentence_embedding":
        raise UnsupportedModelError(f"{folder}: a Dense module on token embeddings is not supported")
    return DenseLayer(
        path=folder,
        in_features=int(cfg["in_features"]),
        out_features=int(cfg["out_features"]),
        bias=bool(cfg.get("bias", True)),
        activation=activation,
        residual=bool(cfg.get("use_residual", False)),
    )


# Architectures whose positions are a learned table: an input longer than the table fails in the graph.
_ABSOLUTE_POSITIONS = ("bert", "roberta", "xlm-roberta", "camembert", "longformer", "distilbert", "electra", "mpnet")
_PADDING_OFFSET = ("roberta", "xlm-roberta", "camembert", "longformer", "mpnet")  # positions start at pad + 1


def position_limit(config: dict[str, Any]) -> int | None:
    """Tokens the position table of an absolute-position architecture covers; None for the others."""
    model_type = config.get("model_type")
    size = config.get("max_position_embeddings")
    if model_type not in _ABSOLUTE_POSITIONS or not isinstance(size, int) or size < 1:
        return None
    if model_type in _PADDING_OFFSET:
        size -= int(config.get("pad_token_id") or 1) + 1
    return size
