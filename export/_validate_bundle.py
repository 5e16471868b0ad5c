"""``validate_bundle``: re-run the PyTorch parity check of an existing bundle, on the user's texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedrt import Embedder

from ._model import EmbeddingModel, accepts_type_ids, load_encoder
from ._source import read_source
from ._texts import validation_texts
from ._tokenizer import load_hf_tokenizer
from ._validate import validate


def validate_bundle(
    bundle: str | Path, source: str | Path, texts: list[str] | None = None, raise_on_failure: bool = True
) -> dict[str, Any]:
    """Compare ``bundle`` with the PyTorch model in ``source`` on ``texts`` (default: the export grid)."""
    embedder = Embedder(bundle)
    m = embedder.manifest
    spec = read_source(source, None if (Path(source) / "modules.json").is_file() else m.pooling)
    if spec.max_seq_length != m.max_seq_length or spec.pooling != m.pooling:
        spec.max_seq_length = m.max_seq_length
    encoder = load_encoder(spec)
    hf_tok = load_hf_tokenizer(spec)
    model = EmbeddingModel(encoder, spec, accepts_type_ids(encoder, list(hf_tok.model_input_names))).eval()
    return validate(embedder, model, hf_tok, texts or validation_texts(), raise_on_failure=raise_on_failure)
