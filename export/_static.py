"""Static-embedding models: a sentence-transformers folder whose first module is ``StaticEmbedding``,
or a model2vec folder. The bundle (kind ``static``) is a table lookup and a mean in the graph, the
tokenizer beside it, no transformer.

Each source keeps its own semantics, since a user compares the bundle with the library they used:

- sentence-transformers ``StaticEmbedding``: ids without special tokens, truncated only where the
  tokenizer.json says so, ``EmbeddingBag`` mean; a ``Normalize`` module after it is folded in.
- model2vec ``StaticModel.encode``: the same, plus what model2vec adds: texts cut to
  ``max_length x median token length`` characters before tokenizing and to ``max_length`` tokens
  after (config ``max_length``, default 512), the unknown token dropped, ``normalize`` from the
  config. A vocabulary-quantized model (``mapping``, ``weights``) is folded into one row per token.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from embedrt._bundle import MODEL_NAME, TOKENIZER_NAME, Manifest, write_manifest
from embedrt._errors import UnsupportedModelError
from embedrt._types import BundleKind, Pooling, Precision

from ._progress import Log
from ._static_graph import INPUTS, OPSET, OUTPUT, static_graph

NO_LIMIT = 1_000_000  # tokens: "no truncation" (sentence-transformers' StaticEmbedding has max_seq_length inf)
_M2V_DEFAULT_MAX_LENGTH = 512


@dataclass
class StaticSource:
    path: Path
    kind: str  # "model2vec" | "sentence-transformers"
    table: np.ndarray  # [vocab, dim] float32, mapping and weights folded in
    tokenizer: Tokenizer  # as the library uses it: no padding, no special tokens
    max_length: int  # tokens
    normalize: bool
    max_chars: int | None = None
    drop_id: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def is_static_folder(source: str | Path) -> bool:
    root = Path(source)
    modules = root / "modules.json"
    if modules.is_file():
        try:
            first = json.loads(modules.read_text(encoding="utf-8"))[0]
        except (json.JSONDecodeError, IndexError, KeyError, TypeError):
            return False
        return isinstance(first, dict) and str(first.get("type", "")).endswith("StaticEmbedding")
    return _model2vec_config(root) is not None


def _model2vec_config(root: Path) -> dict[str, Any] | None:
    f = root / "config.json"
    if not (f.is_file() and (root / TOKENIZER_NAME).is_file() and (root / "model.safetensors").is_file()):
        return None
    cfg = json.loads(f.read_text(encoding="utf-8"))
    return cfg if isinstance(cfg, dict) and cfg.get("model_type") == "model2vec" else None


def read_static(source: str | Path) -> StaticSource:
    from safetensors.numpy import load_file

    root = Path(source)
    modules = json.loads((root / "modules.json").read_text()) if (root / "modules.json").is_file() else []
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    extra = [k for k in kinds[1:] if k != "Normalize"]
    if extra:
        raise UnsupportedModelError(
            f"{root}: a StaticEmbedding followed by {extra} is not supported (embedrt exports StaticEmbedding "
            "with an optional Normalize)"
        )
    folder = root / str(modules[0].get("path", "")) if modules else root
    weights = load_file(str(folder / "model.safetensors"))
    tok = Tokenizer.from_file(str(folder / TOKENIZER_NAME))
    tok.no_padding()
    tok.post_processor = None  # both libraries tokenize with add_special_tokens=False
    m2v = _model2vec_config(folder) if "embedding.weight" not in weights else None
    table = _fold(weights)
    st_cfg = _read(root / "config_sentence_transformers.json")
    prompts = {str(k): str(v) for k, v in (st_cfg.get("prompts") or {}).items()}
    common: dict[str, Any] = {"prompts": prompts, "default_prompt_name": st_cfg.get("default_prompt_name") or None}
    if m2v is not None:
        limit = m2v.get("max_length", _M2V_DEFAULT_MAX_LENGTH)
        vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        median = int(np.median([len(t) for t, _ in vocab]))
        return StaticSource(
            root, "model2vec", table, tok, int(limit) if limit else NO_LIMIT, bool(m2v.get("normalize", False)),
            max_chars=int(limit) * median if limit else None, drop_id=_unk_id(tok), **common,
        )  # fmt: skip
    trunc = tok.truncation
    return StaticSource(root, "sentence-transformers", table, tok, int(trunc["max_length"]) if trunc else NO_LIMIT,
                        "Normalize" in kinds, **common)  # fmt: skip


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _fold(weights: dict[str, np.ndarray]) -> np.ndarray:
    """One float32 row per token id: ``embeddings[mapping[id]] * weights[id]`` (as both libraries compute)."""
    if "embedding.weight" in weights:
        return weights["embedding.weight"].astype(np.float32)
    if "embeddings" not in weights:
        raise UnsupportedModelError(f"static weights need 'embedding.weight' or 'embeddings', found {sorted(weights)}")
    table = weights["embeddings"].astype(np.float32)
    if "mapping" in weights:
        table = table[weights["mapping"].astype(np.int64)]
    if "weights" in weights:
        table = table * weights["weights"].astype(np.float32)[:, None]
    return np.ascontiguousarray(table)


def _unk_id(tok: Tokenizer) -> int | None:
    model = json.loads(tok.to_str())["model"]
    if "unk_token" in model:
        return tok.token_to_id(model["unk_token"]) if model["unk_token"] is not None else None
    unk = model.get("unk_id")
    return int(unk) if unk is not None else None


def export_static(
    source: str | Path, out: Path, *, precision: Precision, optimize: bool, validate_texts: list[str] | None,
    gate_texts: list[str] | None, gate_thresholds: dict[str, float] | None, say: Log,
) -> Path:  # fmt: skip
    """Write and validate the static bundle of ``source`` at ``out``."""
    if precision is not Precision.FP32 or optimize:
        raise UnsupportedModelError(
            "static-embedding models export in fp32 only: their graph is one table lookup and a mean, with no "
            "matrix product for int8, fp16 or fusion to speed up (the time goes to tokenization)"
        )
    src = read_static(source)
    say(f"source: {src.kind} static embeddings, {src.table.shape[0]} tokens x {src.table.shape[1]} dims, "
        f"normalize {src.normalize}, truncation {src.max_length if src.max_length < NO_LIMIT else 'none'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        import onnx

        onnx.save_model(static_graph(src.table, src.normalize, src.drop_id), str(bundle / MODEL_NAME))
        tok = Tokenizer.from_str(src.tokenizer.to_str())
        tok.enable_truncation(max_length=src.max_length)
        tok.save(str(bundle / TOKENIZER_NAME), pretty=False)
        manifest = _manifest(src)
        write_manifest(bundle, manifest)
        from ._static_check import check_static

        manifest.parity = check_static(bundle, src, validate_texts, gate_texts, gate_thresholds, say)
        write_manifest(bundle, manifest)
        if out.exists():
            shutil.rmtree(out)
        bundle.rename(out)
    return out


def _manifest(src: StaticSource) -> Manifest:
    from ._manifest import tool_versions

    return Manifest(
        source={"path": str(src.path.resolve()), "name": src.path.resolve().name, "kind": src.kind,
                "architecture": "static", "model_class": "StaticEmbedding" if src.kind != "model2vec" else "StaticModel",
                "drop_token_id": src.drop_id},
        pooling=[Pooling.MEAN], dimension=int(src.table.shape[1]), hidden_size=int(src.table.shape[1]),
        max_seq_length=src.max_length, inputs=list(INPUTS), outputs=[OUTPUT], normalize=src.normalize,
        prompts=src.prompts, default_prompt_name=src.default_prompt_name, precision=Precision.FP32, opset=OPSET,
        kind=BundleKind.STATIC, max_chars=src.max_chars, tools=tool_versions(),
    )  # fmt: skip
