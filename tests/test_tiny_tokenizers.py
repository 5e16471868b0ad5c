"""The tiny models' tokenizers are read from ``tests/data/tokenizers``, never trained anew in a run."""

from __future__ import annotations

from typing import Any

import pytest
import tiny_families
import tiny_models
from tiny_families import FAMILIES, train_tokenizer
from tiny_models import _train_tokenizer


def _no_training(*args: Any) -> None:
    raise AssertionError(
        f"no kept tokenizer for {args[:2]}: train it once with EMBEDRT_KEEP_TOKENIZERS=1 and commit tests/data/tokenizers"
    )


@pytest.mark.parametrize("kind", ["wordpiece", "mpnet", "bpe", "unigram"])
def test_each_architectures_tokenizer_is_kept(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny_models, "_trained", _no_training)
    tok, specials = _train_tokenizer(kind)
    assert tok.get_vocab_size() == 400
    assert all(tok.token_to_id(t) is not None for t in specials.values())
    assert _train_tokenizer(kind)[0].to_str() == tok.to_str()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_familys_tokenizer_is_kept(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiny_families, "_trained", _no_training)
    family = FAMILIES[name]
    tok = train_tokenizer(family.tokenizer, family.specials, family.template, family.lowercase)
    assert tok.get_vocab_size() == 400
    assert all(tok.token_to_id(t) is not None for t in family.specials.values())
    before, after = family.template
    tokens = tok.encode("a b").tokens
    assert (tokens[0] == before if before else tokens[0] not in family.specials.values()) and tokens[-1] == after
