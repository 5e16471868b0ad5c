"""The PyTorch modules that become reranker and sparse graphs, and their plain references.

- ``ScoreModel``: a ``*ForSequenceClassification`` model returning ``logits`` [batch, labels] and
  ``scores`` (the CrossEncoder's activation applied) — what ``CrossEncoder.predict`` computes.
- ``SpladeModel``: a ``*ForMaskedLM`` model with SPLADE pooling, returning the vocabulary-sized
  ``sparse_embedding`` [batch, vocab]. Max pooling uses that log(1 + relu(x)) never decreases: the
  maximum over tokens is taken on the masked logits first and transformed once, so the [batch,
  tokens, vocab] tensor is only reduced, not transformed element by element. ``splade_reference``
  is the plain formula, as sentence-transformers' ``SpladePooling`` writes it, for validation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from embedrt._errors import UnsupportedModelError
from embedrt._types import ScoreActivation, SpladeActivation, SpladePooling

from ._kinds import HeadSource
from ._model import accepts_type_ids


def activate(activation: ScoreActivation, logits: Tensor) -> Tensor:
    if activation is ScoreActivation.SIGMOID:
        return torch.sigmoid(logits)
    if activation is ScoreActivation.TANH:
        return torch.tanh(logits)
    if activation is ScoreActivation.SOFTMAX:
        return torch.softmax(logits, dim=-1)
    return logits


class ScoreModel(nn.Module):
    """Sequence classifier -> (logits, scores), both float32 [batch, num_labels]."""

    def __init__(self, model: nn.Module, activation: ScoreActivation, with_type_ids: bool) -> None:
        super().__init__()
        self.model = model
        self.activation = activation
        self.with_type_ids = with_type_ids

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.with_type_ids and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        logits = self.model(**kwargs).logits.to(torch.float32)
        return logits, activate(self.activation, logits)


class SpladeModel(nn.Module):
    """MLM -> SPLADE vocabulary weights [batch, vocab] (float32)."""

    def __init__(self, model: nn.Module, pooling: SpladePooling, activation: SpladeActivation, with_type_ids: bool) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.activation = activation
        self.with_type_ids = with_type_ids

    def logits(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.with_type_ids and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(**kwargs).logits.to(torch.float32)  # type: ignore[no-any-return]

    def transform(self, x: Tensor) -> Tensor:
        out = torch.log1p(torch.relu(x))
        return torch.log1p(out) if self.activation is SpladeActivation.LOG1P_RELU else out

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        logits = self.logits(input_ids, attention_mask, token_type_ids)
        mask = attention_mask.unsqueeze(-1) > 0
        if self.pooling is SpladePooling.MAX:
            floor = torch.full_like(logits, torch.finfo(logits.dtype).min)
            return self.transform(torch.where(mask, logits, floor).amax(dim=1))
        return (self.transform(logits) * mask.to(logits.dtype)).sum(dim=1)

    def reference(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """sentence-transformers' SpladePooling formula: transform(logits * mask), then max or sum."""
        logits = self.logits(input_ids, attention_mask, token_type_ids)
        weights = self.transform(logits * attention_mask.unsqueeze(-1).to(logits.dtype))
        return weights.amax(dim=1) if self.pooling is SpladePooling.MAX else weights.sum(dim=1)


def load_head_reference(head: HeadSource) -> tuple[ScoreModel | SpladeModel, Any]:
    """The PyTorch module of ``head`` (eval mode, fp32, eager attention) and its transformers tokenizer."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    from ._tokenizer import load_hf_tokenizer

    auto = AutoModelForSequenceClassification if head.reranker is not None else AutoModelForMaskedLM
    path = head.spec.transformer_path
    try:
        model = auto.from_pretrained(str(path), attn_implementation="eager", dtype=torch.float32).eval()
    except (ValueError, KeyError, OSError) as e:
        raise UnsupportedModelError(
            f"architecture {head.architecture!r} at {path} cannot be loaded by transformers.{auto.__name__}: {e}"
        ) from e
    hf_tok = load_hf_tokenizer(head.spec)
    with_type_ids = accepts_type_ids(model, list(hf_tok.model_input_names))
    if head.reranker is not None:
        return ScoreModel(model, head.reranker.activation, with_type_ids).eval(), hf_tok
    assert head.sparse is not None
    return SpladeModel(model, head.sparse.pooling, head.sparse.activation, with_type_ids).eval(), hf_tok
