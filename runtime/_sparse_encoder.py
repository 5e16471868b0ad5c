"""``SparseEncoder``: SPLADE sparse vectors from a sparse bundle, as sentence-transformers'
``SparseEncoder`` computes them, returned as indices and values (no dense vocabulary rows).

The graph pools the MLM logits into vocabulary weights and keeps, per row, the largest
``max_active_dims`` weights (or all non-zero ones) with ONNX's TopK: the runtime receives
``[batch, k]`` indices and values, with ``k`` the batch's largest number of active dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._base import DOCUMENT_PROMPTS, QUERY_PROMPTS, BundleModel, check_texts, task_prompt
from ._bundle import SparseSpec
from ._chunking import EmbeddedChunks
from ._errors import BundleError
from ._sparse import (
    SparseEmbeddings,
    SparseVector,
    as_sparse,
    assemble,
    batch_rows,
    sparse_similarity,
    sparse_similarity_pairwise,
)
from ._tokenize import Tokenized, tokenize
from ._types import AUTO, BundleKind, Device, SimilarityFunction, check_int, parse

MAX_ACTIVE_INPUT = "max_active_dims"  # the graph input that caps the active dimensions per row
OUTPUTS = ["sparse_indices", "sparse_values"]


class SparseEncoder(BundleModel):
    """Sparse (SPLADE) embeddings of texts from a sparse bundle.

    Takes ``BundleModel``'s arguments (``device``, ``threads``, ``verify``, ...) and:
        max_active_dims: keep at most this many dimensions per vector (the largest weights);
            ``encode(max_active_dims=...)`` overrides it per call.
        similarity_fn_name: for ``similarity``; default: the model's own, else ``"dot"``.
    """

    KINDS = (BundleKind.SPARSE,)

    def __init__(
        self,
        bundle: str | Path,
        device: str | Device = AUTO,
        *,
        max_active_dims: int | None = None,
        similarity_fn_name: str | SimilarityFunction | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(bundle, device, **kwargs)
        if self.manifest.sparse is None:
            raise BundleError(f"{self.path}: the manifest of this sparse bundle has no 'sparse' section; export it again")
        self.head: SparseSpec = self.manifest.sparse
        self.max_active_dims = _check_max_active(max_active_dims)
        fn = similarity_fn_name or self.manifest.similarity_fn_name or SimilarityFunction.DOT
        self.similarity_fn_name = parse(SimilarityFunction, fn, "similarity_fn_name")

    @property
    def dimension(self) -> int:
        """The width of the sparse vectors (the vocabulary size)."""
        return self.manifest.dimension

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"SparseEncoder({str(self.path)!r}, architecture={m.source.get('architecture')!r}, dim={self.dimension}, "
            f"pooling={self.head.pooling.value!r}, providers={self.providers}, threads={self.threads})"
        )

    def tokenize(self, texts: Sequence[str], prompt_name: str | None = None, prompt: str | None = None) -> Tokenized:
        checked = check_texts(texts)
        return tokenize(self.tokenizer, self._with_prompt(checked, prompt_name, prompt), checked)

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        max_active_dims: int | None = None,
    ) -> SparseEmbeddings | SparseVector:
        """Sparse vectors of ``texts``: a ``str`` gives a ``SparseVector``, a list ``SparseEmbeddings``
        (in the caller's order). ``max_active_dims`` keeps each vector's largest weights only."""
        single = isinstance(texts, str)
        tok = self.tokenize([texts] if single else texts, prompt_name, prompt)  # type: ignore[list-item]
        out = self.encode_tokenized(tok, batch_size, show_progress_bar, max_active_dims)
        return out[0] if single else out

    def encode_chunks(
        self,
        texts: str | Sequence[str],
        chunk_tokens: int | str = "max",
        chunk_overlap: int = 0,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        max_active_dims: int | None = None,
    ) -> EmbeddedChunks[SparseEmbeddings]:
        """Sparse vectors of ``texts`` embedded whole, a vector per window of at most ``chunk_tokens``
        model inputs (``"max"``: the model's window), neighbours sharing ``chunk_overlap`` tokens: the
        windows of ``Embedder.encode_chunks`` and the corpus job. The other arguments are ``encode``'s."""
        windows = self._split_windows(texts, chunk_tokens, chunk_overlap, prompt_name, prompt)
        vectors = self.encode_tokenized(windows.tokens, batch_size, show_progress_bar, max_active_dims)
        return windows.embedded(vectors)

    def encode_query(self, texts: str | Sequence[str], **kwargs: Any) -> SparseEmbeddings | SparseVector:
        """``encode`` with the bundle's ``query`` prompt (none if it has none)."""
        return self.encode(texts, **task_prompt(self.manifest.prompts, QUERY_PROMPTS, kwargs))

    def encode_document(self, texts: str | Sequence[str], **kwargs: Any) -> SparseEmbeddings | SparseVector:
        """``encode`` with the bundle's ``document`` prompt, else ``passage``, else ``corpus``."""
        return self.encode(texts, **task_prompt(self.manifest.prompts, DOCUMENT_PROMPTS, kwargs))

    def encode_tokenized(
        self, tok: Tokenized, batch_size: int = 32, show_progress_bar: bool = False, max_active_dims: int | None = None,
        *, on_rows: Callable[[int], None] | None = None,
    ) -> SparseEmbeddings:  # fmt: skip
        """Sparse vectors of already tokenized texts (see ``tokenize``). ``on_rows(n)``: called as
        each batch of ``n`` texts is done (a caller's own progress)."""
        cap = _check_max_active(max_active_dims) or self.max_active_dims or self.dimension
        limit = np.array([cap], dtype=np.int64)
        pieces = []
        feeds = ((rows, {**feed, MAX_ACTIVE_INPUT: limit}) for rows, feed in self._batches(tok, batch_size, show_progress_bar))
        for rows, (indices, values) in self._run_batches(OUTPUTS, feeds):
            if on_rows is not None:
                on_rows(len(rows))
            pieces.append((rows, *batch_rows(indices, values, self.dimension)))
        return assemble(pieces, len(tok), self.dimension)

    def decode(
        self, embeddings: SparseVector | SparseEmbeddings, top_k: int | None = None
    ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """``(token, weight)`` pairs, heaviest first: a list for a ``SparseVector``, a list of lists otherwise."""
        if top_k is not None:
            top_k = check_int(top_k, "top_k", also=" or None")
        if isinstance(embeddings, SparseVector):
            return self._decode_one(embeddings, top_k)
        if not isinstance(embeddings, SparseEmbeddings):
            raise TypeError(f"decode takes SparseVector or SparseEmbeddings, got {type(embeddings).__name__}")
        return [self._decode_one(v, top_k) for v in embeddings]

    def _decode_one(self, v: SparseVector, top_k: int | None) -> list[tuple[str, float]]:
        order = np.argsort(-v.values, kind="stable")[:top_k]
        return [(self.tokenizer.id_to_token(int(v.indices[j])) or f"[{v.indices[j]}]", float(v.values[j])) for j in order]

    def similarity(self, embeddings1: object, embeddings2: object) -> np.ndarray:
        """The ``(n, m)`` similarity matrix under ``similarity_fn_name`` (float32 numpy)."""
        return sparse_similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def similarity_pairwise(self, embeddings1: object, embeddings2: object) -> np.ndarray:
        return sparse_similarity_pairwise(embeddings1, embeddings2, self.similarity_fn_name)

    @staticmethod
    def to_sparse(x: object) -> SparseEmbeddings:
        """``x`` (dense rows, a ``SparseVector`` or ``SparseEmbeddings``) as ``SparseEmbeddings``."""
        return as_sparse(x, "embeddings")


def _check_max_active(value: int | None) -> int | None:
    return None if value is None else check_int(value, "max_active_dims", also=" or None")
