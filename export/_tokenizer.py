"""The bundle's tokenizer.json: the tokenizer transformers (and so sentence-transformers) uses,
with truncation at the model's max_seq_length and batch-longest padding, whatever the source file had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, normalizers

from embedrt._errors import UnsupportedModelError

from ._source import SourceSpec


def load_hf_tokenizer(spec: SourceSpec) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(
            str(spec.transformer_path), model_max_length=spec.max_seq_length,
            **({"trust_remote_code": True} if spec.trust_remote_code else {}),
        )  # fmt: skip
    except (ValueError, OSError) as e:
        raise UnsupportedModelError(f"cannot load the tokenizer of {spec.transformer_path}: {e}") from e
    if not getattr(tok, "is_fast", False):
        raise UnsupportedModelError(
            f"the tokenizer of {spec.transformer_path} ({type(tok).__name__}) has no fast (Rust) version; "
            "embedrt needs a tokenizer.json"
        )
    backend = tok.backend_tokenizer
    if spec.do_lower_case and not _lowercases(backend.normalizer):
        # As sentence-transformers does for do_lower_case: a Lowercase normalizer in front. Done on the
        # transformers tokenizer itself, so the PyTorch reference and the bundle tokenize alike.
        parts = [normalizers.Lowercase()]
        if backend.normalizer is not None:
            parts.append(backend.normalizer)
        backend.normalizer = normalizers.Sequence(parts)
    return tok


def bundle_tokenizer(hf_tokenizer: Any, spec: SourceSpec) -> tuple[Tokenizer, int]:
    """A standalone copy of the fast tokenizer, set up for the bundle; returns it and the pad id."""
    tok = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        pad_id = hf_tokenizer.eos_token_id if hf_tokenizer.eos_token_id is not None else 0
    pad_token = hf_tokenizer.pad_token or hf_tokenizer.eos_token or tok.id_to_token(pad_id) or "[PAD]"
    tok.enable_truncation(max_length=spec.max_seq_length, strategy="longest_first", direction="right")
    side = "left" if getattr(hf_tokenizer, "padding_side", "right") == "left" else "right"
    tok.enable_padding(direction=side, pad_id=int(pad_id), pad_token=str(pad_token))
    return tok, int(pad_id)


def _lowercases(normalizer: Any) -> bool:
    if normalizer is None:
        return False
    text = normalizer.normalize_str("ABC")
    return bool(text == "abc")


def write_tokenizer(tok: Tokenizer, bundle: Path) -> Path:
    path = bundle / "tokenizer.json"
    tok.save(str(path), pretty=False)
    return path
