"""``Reranker``: score (query, document) pairs with a reranker bundle, as sentence-transformers'
``CrossEncoder`` does: ``predict(pairs)`` and ``rank(query, documents)``, without PyTorch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._base import BundleModel, check_texts
from ._bundle import RerankerSpec
from ._errors import BundleError
from ._tokenize import Tokenized, tokenize
from ._types import AUTO, BundleKind, Device, ScoreActivation, check_int, parse

Pair = tuple[str, str]
ActivationArg = str | ScoreActivation | Callable[[np.ndarray], np.ndarray] | None


def activate(activation: ScoreActivation, logits: np.ndarray) -> np.ndarray:
    """``activation`` on ``logits`` [n, labels] (float32), as the graph's ``scores`` output computes it."""
    x = logits.astype(np.float32, copy=False)
    if activation is ScoreActivation.SIGMOID:
        return 1.0 / (1.0 + np.exp(-x))  # type: ignore[no-any-return]
    if activation is ScoreActivation.TANH:
        return np.tanh(x)  # type: ignore[no-any-return]
    if activation is ScoreActivation.SOFTMAX:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]
    return x


class Reranker(BundleModel):
    """Relevance scores of text pairs from a reranker bundle (an exported ``CrossEncoder``).

    Takes ``BundleModel``'s arguments (``device``, ``threads``, ``verify``, ...). Pairs are encoded
    together with the model's pair template and cut longest-first at ``max_seq_length``, as the
    transformers tokenizer does for ``CrossEncoder``. ``predict`` and ``rank`` may be called from
    several threads at once.
    """

    KINDS = (BundleKind.RERANKER,)

    def __init__(self, bundle: str | Path, device: str | Device = AUTO, **kwargs: Any) -> None:
        super().__init__(bundle, device, **kwargs)
        if self.manifest.reranker is None:
            raise BundleError(f"{self.path}: the manifest of this reranker bundle has no 'reranker' section; export it again")
        self.head: RerankerSpec = self.manifest.reranker

    @property
    def num_labels(self) -> int:
        return self.head.num_labels

    @property
    def activation(self) -> ScoreActivation:
        """The activation ``predict`` applies by default (the CrossEncoder's ``activation_fn``)."""
        return self.head.activation

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Reranker({str(self.path)!r}, architecture={m.source.get('architecture')!r}, "
            f"num_labels={self.num_labels}, activation={self.activation.value!r}, "
            f"max_seq_length={self.max_seq_length}, providers={self.providers}, threads={self.threads})"
        )

    def tokenize_pairs(
        self, pairs: Sequence[Sequence[str]], prompt_name: str | None = None, prompt: str | None = None
    ) -> Tokenized:
        """Token ids of each pair (the prompt goes before the first text), truncated, unpadded."""
        checked = check_pairs(pairs)
        text = self._prompt(prompt_name, prompt)
        if text:
            checked = [(text + a, b) for a, b in checked]
        return tokenize(self.tokenizer, checked)

    def predict(
        self,
        pairs: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        activation_fn: ActivationArg = None,
        apply_softmax: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> np.ndarray:
        """Scores of ``pairs`` in the caller's order: ``(n,)`` for one label, ``(n, labels)`` otherwise.

        A single pair gives a scalar (one label) or ``(labels,)``. ``activation_fn``: ``None`` for the
        model's own, a name (``"sigmoid"``, ``"identity"`` for raw logits, ``"tanh"``, ``"softmax"``) or a
        function of the ``(n, labels)`` logits. ``apply_softmax`` normalizes several labels' scores.
        """
        single = is_single_pair(pairs)
        tok = self.tokenize_pairs([pairs] if single else pairs, prompt_name, prompt)  # type: ignore[list-item]
        scores = self.scores(self.predict_tokenized(tok, batch_size, show_progress_bar), activation_fn)
        if apply_softmax and scores.ndim > 1:
            scores = activate(ScoreActivation.SOFTMAX, scores)
        return scores[0] if single else scores  # type: ignore[no-any-return]

    def predict_tokenized(
        self, tok: Tokenized, batch_size: int = 32, show_progress_bar: bool = False, *,
        on_rows: Callable[[int], None] | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Raw logits ``(n, num_labels)`` float32 of already tokenized pairs (see ``tokenize_pairs``).
        ``on_rows(n)``: called as each batch of ``n`` pairs is done (a caller's own progress)."""
        logits = np.empty((len(tok), self.num_labels), dtype=np.float32)
        for rows, (out,) in self._run_batches(["logits"], self._batches(tok, batch_size, show_progress_bar, desc="rerank")):
            logits[rows] = out
            if on_rows is not None:
                on_rows(len(rows))
        return logits

    def scores(self, logits: np.ndarray, activation_fn: ActivationArg = None) -> np.ndarray:
        """``logits`` ``(n, labels)`` through ``activation_fn`` (default: the model's), ``(n,)`` for one label."""
        if callable(activation_fn) and not isinstance(activation_fn, str | ScoreActivation):
            out = np.asarray(activation_fn(logits), dtype=np.float32)
        else:
            name = self.activation if activation_fn is None else parse(ScoreActivation, activation_fn, "activation_fn")
            out = activate(name, logits)
        return out[:, 0] if self.num_labels == 1 and out.ndim == 2 else out

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        activation_fn: ActivationArg = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> list[dict[str, Any]]:
        """``documents`` sorted by their score for ``query``, best first: ``{"corpus_id", "score"[, "text"]}``.

        ``top_k`` keeps the best ``top_k`` (0: none, and nothing is run). Needs a one-label model, as
        ``CrossEncoder.rank`` does.
        """
        if self.num_labels != 1:
            raise ValueError(
                f"rank needs a reranker with one label; this model has {self.num_labels} "
                f"({self.head.labels}): use predict on pairs instead"
            )
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if top_k is not None:
            top_k = check_int(top_k, "top_k", 0, also=" or None")
        if isinstance(documents, str):
            raise TypeError("documents must be a sequence of str, got a str: wrap a single document in a list")
        docs = [str(d) for d in check_texts(documents, "documents")]  # named by index; numpy's str_ as str
        if not docs or top_k == 0:
            return []
        scores = self.predict([(query, d) for d in docs], batch_size, show_progress_bar, activation_fn,
                              prompt_name=prompt_name, prompt=prompt)  # fmt: skip
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [
            {"corpus_id": int(i), "score": float(scores[i]), **({"text": docs[i]} if return_documents else {})}
            for i in order
        ]


def is_single_pair(pairs: object) -> bool:
    """One ``(first, second)`` pair rather than a list of pairs (as CrossEncoder decides it)."""
    return isinstance(pairs, list | tuple) and len(pairs) > 0 and not isinstance(pairs[0], list | tuple)


def check_pairs(pairs: object) -> list[Pair]:
    """``pairs`` as a list of (str, str); a ``TypeError`` naming the first bad item."""
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence | np.ndarray):
        raise TypeError(f"pairs must be a sequence of (str, str) pairs, got {type(pairs).__name__}")
    out: list[Pair] = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence | np.ndarray) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a pair of two str (query, document), got {pair!r:.80}")
        a, b = pair
        if not isinstance(a, str) or not isinstance(b, str):
            bad = a if not isinstance(a, str) else b
            raise TypeError(f"pairs[{i}] must hold two str, got a {type(bad).__name__}: {bad!r:.80}")
        out.append((a, b))
    return out
