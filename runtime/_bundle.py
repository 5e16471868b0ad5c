"""The bundle: a directory holding ``model.onnx``, ``tokenizer.json`` and ``manifest.json``.

The manifest is the contract between export (which writes it) and runtime (which reads it). It is
plain JSON; nothing in a bundle is pickled or executed. Every other file of the bundle is listed in
``files`` with its sha256, and the manifest carries the sha256 of its own content
(``manifest_sha256``, over the canonical JSON of every other key), which ``load_manifest`` checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._errors import BundleError
from ._files import write_text_whole
from ._types import (
    BundleKind,
    PaddingSide,
    Pooling,
    Precision,
    ScoreActivation,
    SimilarityFunction,
    SpladeActivation,
    SpladePooling,
    parse,
)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
SELF_HASH_KEY = "manifest_sha256"  # the sha256 of the manifest's other keys, as canonical JSON
_VERIFY_HINT = "pass verify=False (Python) or --no-verify (CLI) if the change is intended"

_HASH_CHUNK = 1 << 20


@dataclass
class DenseSpec:
    in_features: int
    out_features: int
    bias: bool
    activation: str  # a name from embedrt.export's activation table, e.g. "tanh", "identity"
    residual: bool = False


@dataclass
class RerankerSpec:
    """A reranker's head: the graph outputs ``logits`` [batch, num_labels] and ``scores`` (activated)."""

    num_labels: int
    activation: ScoreActivation
    labels: list[str] = field(default_factory=list)


@dataclass
class SparseSpec:
    """A SPLADE head: the graph pools log(1 + relu(MLM logits)) over tokens into vocabulary weights."""

    pooling: SpladePooling
    activation: SpladeActivation
    vocab_size: int


@dataclass
class Manifest:
    """What a bundle is. Written by ``embedrt.export``, read by ``embedrt.Embedder``."""

    source: dict[str, Any]  # path, kind ("sentence-transformers" / "transformers"), architecture
    pooling: list[Pooling]
    dimension: int
    hidden_size: int
    max_seq_length: int
    inputs: list[str]
    dense: list[DenseSpec] = field(default_factory=list)
    normalize: bool = False
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    precision: Precision = Precision.FP32
    optimizations: dict[str, Any] = field(default_factory=dict)
    opset: int = 17
    outputs: list[str] = field(default_factory=lambda: ["sentence_embedding", "token_embeddings"])
    pad_token_id: int = 0
    tools: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    parity: dict[str, Any] = field(default_factory=dict)
    kind: BundleKind = BundleKind.EMBEDDING  # bundles written before kinds existed are embeddings
    padding_side: PaddingSide = PaddingSide.RIGHT  # the side the source's tokenizer pads batches on
    max_chars: int | None = None  # texts are cut to this many characters before tokenizing (model2vec does)
    similarity_fn_name: SimilarityFunction | None = None  # None: the kind's default (cosine; dot for sparse)
    reranker: RerankerSpec | None = None  # kind reranker only
    sparse: SparseSpec | None = None  # kind sparse only
    # Tokens the graph's absolute position embeddings cover (None: no such limit, or not recorded).
    max_positions: int | None = None
    # A faster setting measured where the bundle was exported, held as a bundle in a subfolder (its
    # device, precision hint, needs and manifest sha256: ``_preferred``); None: the graph above only.
    preferred: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pooling"] = [p.value for p in self.pooling]
        d["precision"] = self.precision.value
        d["kind"] = self.kind.value
        d["padding_side"] = self.padding_side.value
        d["similarity_fn_name"] = self.similarity_fn_name.value if self.similarity_fn_name else None
        if self.reranker is not None:
            d["reranker"]["activation"] = self.reranker.activation.value
        if self.sparse is not None:
            d["sparse"].update(pooling=self.sparse.pooling.value, activation=self.sparse.activation.value)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d["pooling"] = [parse(Pooling, p, "pooling mode") for p in d["pooling"]]
        d["precision"] = parse(Precision, d.get("precision", "fp32"), "precision")
        d["kind"] = parse(BundleKind, d.get("kind", "embedding"), "bundle kind")
        d["padding_side"] = parse(PaddingSide, d.get("padding_side", "right"), "padding side")
        d["dense"] = [DenseSpec(**x) for x in d.get("dense", [])]
        if d.get("similarity_fn_name") is not None:
            d["similarity_fn_name"] = parse(SimilarityFunction, d["similarity_fn_name"], "similarity_fn_name")
        if d.get("reranker") is not None:
            r = dict(d["reranker"])
            r["activation"] = parse(ScoreActivation, r["activation"], "reranker activation")
            d["reranker"] = RerankerSpec(**r)
        if d.get("sparse") is not None:
            sp = dict(d["sparse"])
            sp["pooling"] = parse(SpladePooling, sp["pooling"], "sparse pooling")
            sp["activation"] = parse(SpladeActivation, sp["activation"], "sparse activation")
            d["sparse"] = SparseSpec(**sp)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(d: dict[str, Any]) -> str:
    """sha256 of a manifest's keys but ``manifest_sha256``, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in d.items() if k != SELF_HASH_KEY}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    """Hash every file in ``bundle`` (but the manifest) into ``manifest.files`` and write it, whole,
    with the sha256 of its own content."""
    manifest.files = {
        p.name: sha256_file(p)
        for p in sorted(bundle.iterdir())
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(f".{MANIFEST_NAME}.")
    }
    d = json.loads(json.dumps(manifest.to_dict()))  # as a reader will see it (tuples become lists)
    d[SELF_HASH_KEY] = content_sha256(d)
    path = bundle / MANIFEST_NAME
    write_text_whole(path, json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    return path


def load_manifest(bundle: str | Path, verify: bool = True) -> Manifest:
    """Read and check a bundle's manifest; with ``verify``, check every file's sha256 too."""
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"bundle {str(root)!r} is not a directory: pass the folder written by `embedrt export`")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(
            f"bundle {str(root)!r} has no {MANIFEST_NAME}: it was not written by `embedrt export`, "
            "or the file was removed; export the model again"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); export the model again") from e
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"{path} has no integer schema_version; export the model again")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{path} has schema_version {version}, newer than this embedrt understands ({SCHEMA_VERSION}): "
            "upgrade embedrt (pip install -U embedrt)"
        )
    if verify:
        _check_self_hash(path, raw)
    try:
        manifest = Manifest.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{path} is malformed ({e}); export the model again") from e
    _check_consistent(path, manifest)
    for required in (MODEL_NAME, TOKENIZER_NAME):
        if required not in manifest.files:
            raise BundleError(f"{path} does not list {required}; export the model again")
    for name, expected in manifest.files.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"bundle {str(root)!r} is missing {name}; copy the whole bundle folder or export again")
        if verify and sha256_file(file) != expected:
            raise BundleError(
                f"{file} was altered after export (sha256 differs from {MANIFEST_NAME}); "
                f"export the model again, or {_VERIFY_HINT}"
            )
    return manifest


def _check_self_hash(path: Path, raw: dict[str, Any]) -> None:
    """A manifest edited by hand (say max_seq_length 256 -> 512) no longer matches its own hash.
    Manifests written before the self-hash existed have none and are checked against the graph only."""
    claimed = raw.get(SELF_HASH_KEY)
    if claimed is None:
        return
    if claimed != content_sha256(raw):
        raise BundleError(
            f"{path} was edited after export (its content no longer matches its {SELF_HASH_KEY}): "
            f"the runtime reads max_seq_length, inputs, pooling and the rest from it; export the model "
            f"again, or {_VERIFY_HINT}"
        )


def _check_consistent(path: Path, m: Manifest) -> None:
    """What the manifest says that the graph cannot do, checked even without ``verify``."""
    if isinstance(m.max_seq_length, bool) or not isinstance(m.max_seq_length, int) or m.max_seq_length < 1:
        raise BundleError(f"{path}: max_seq_length must be a positive integer, got {m.max_seq_length!r}")
    if m.max_positions is not None and m.max_seq_length > m.max_positions:
        raise BundleError(
            f"{path}: max_seq_length {m.max_seq_length} is more than the {m.max_positions} tokens the "
            f"graph's position embeddings cover; set it to at most {m.max_positions} or export the model again"
        )
    if isinstance(m.dimension, bool) or not isinstance(m.dimension, int) or m.dimension < 1:
        raise BundleError(f"{path}: dimension must be a positive integer, got {m.dimension!r}")


def check_graph(bundle: Path, m: Manifest, inputs: list[Any], outputs: list[Any]) -> None:
    """The manifest against the graph onnxruntime loaded (``session.get_inputs()`` / ``get_outputs()``):
    input names, output names and the static sizes of the outputs."""
    path = bundle / MANIFEST_NAME
    graph_inputs = [i.name for i in inputs]
    if sorted(graph_inputs) != sorted(m.inputs):
        raise BundleError(
            f"{path} lists inputs {m.inputs}, but {MODEL_NAME} takes {graph_inputs}; export the model again"
        )
    shapes = {o.name: list(o.shape) for o in outputs}
    missing = [name for name in m.outputs if name not in shapes]
    if missing:
        raise BundleError(
            f"{path} lists outputs {m.outputs}, but {MODEL_NAME} has no {missing} (it has {sorted(shapes)}); "
            "export the model again"
        )
    for name, field_name, expected in (
        ("sentence_embedding", "dimension", m.dimension),
        ("token_embeddings", "hidden_size", m.hidden_size),
    ):
        shape = shapes.get(name)
        last = shape[-1] if shape else None
        if isinstance(last, int) and last > 0 and last != expected:
            raise BundleError(
                f"{path} says {field_name} {expected}, but {MODEL_NAME}'s output {name} has {last}; "
                "export the model again"
            )
