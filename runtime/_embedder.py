"""``Embedder``: encode texts with a bundle, the way sentence-transformers users know."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from ._base import (
    AUTO,
    DOCUMENT_PROMPTS,
    QUERY_PROMPTS,
    BundleModel,
    check_batch_size,
    check_texts,
    task_prompt,
)
from ._chunking import EmbeddedChunks
from ._progress import EncodeProgress
from ._quantization import quantize_embeddings
from ._similarity import similarity, similarity_pairwise
from ._tokenize import Tokenized, flat_batches, flat_ids, tokenize
from ._types import BundleKind, Device, EmbeddingPrecision, OutputValue, SimilarityFunction, check_int, parse

# Tokens per run of a static bundle: its graph sums with a [texts, tokens] membership matrix, whose
# cost grows with both; 1024 measured fastest (2000 sentences: 0.35 s at 1024, 1.8 s at 16384).
STATIC_RUN_TOKENS = 1024


class Embedder(BundleModel):
    """Sentence embeddings from an embedrt bundle, through ONNX Runtime, without PyTorch.

    Args:
        bundle: folder written by ``embedrt export``.
        device: ``"cpu"``, ``"cuda"`` (needs onnxruntime-gpu and a GPU), ``"openvino"`` (needs
            ``embedrt[openvino]``) or ``"auto"`` (default): the bundle's preferred setting where this
            machine can run it, else ``"cpu"`` (``device_choice`` says which and why).
        threads: intra-op threads; default: the CPUs this process may use (affinity, cgroup quota).
        verify: check the sha256 of every bundle file against the manifest.
        provider_options: passed to the execution provider.
        precision_hint: ``"bf16"`` / ``"fp32"``: the compute precision OpenVINO uses for the graph
            (``device="openvino"`` only; needs ``embedrt[openvino]``).
        memory_arena: keep onnxruntime's CPU memory arena. Off by default: it keeps the largest
            batch's memory for good (RSS 1240 vs 508 MB measured); on, long inputs run ~5-18% faster.
        max_batch_tokens: the most padded tokens one model run may hold (rows x longest row), on
            top of ``batch_size``; ``None`` lifts it. Bounds memory on models with long windows.
            ``"auto"``: 1024 on the CPU provider (the fastest there), 512 where each run has one
            thread (streams of one thread, ``threads=1``), 2048 on OpenVINO, 16384 on CUDA.
        truncate_dim: keep only the first ``truncate_dim`` dimensions of every embedding
            (Matryoshka models); ``encode(truncate_dim=...)`` overrides it per call.
        similarity_fn_name: ``"cosine"``, ``"dot"``, ``"euclidean"`` or ``"manhattan"`` for
            ``similarity``; default: the model's own (from its sentence-transformers config), else cosine.

    ``encode`` may be called from several threads at once: tokenization runs in parallel, and the
    model runs one batch at a time on its own thread pool, so threads are never oversubscribed.
    """

    KINDS = (BundleKind.EMBEDDING, BundleKind.STATIC)

    def __init__(
        self,
        bundle: str | Path,
        device: str | Device = AUTO,
        *,
        threads: int | None = None,
        verify: bool = True,
        provider_options: dict[str, Any] | None = None,
        precision_hint: str | None = None,
        memory_arena: bool = False,
        max_batch_tokens: int | str | None = AUTO,
        truncate_dim: int | None = None,
        similarity_fn_name: str | SimilarityFunction | None = None,
        streams: int | str = 1,
    ) -> None:
        super().__init__(
            bundle, device, threads=threads, verify=verify, provider_options=provider_options,
            precision_hint=precision_hint, memory_arena=memory_arena, max_batch_tokens=max_batch_tokens,
            streams=streams,
        )
        self._static = self.manifest.kind is BundleKind.STATIC
        self.truncate_dim = self._check_truncate_dim(truncate_dim)
        fn = similarity_fn_name or self.manifest.similarity_fn_name or SimilarityFunction.COSINE
        self.similarity_fn_name = parse(SimilarityFunction, fn, "similarity_fn_name")

    # -- properties in sentence-transformers' shape ------------------------------------------------

    @property
    def dimension(self) -> int:
        """The width of ``encode``'s vectors: ``truncate_dim`` if set, else the model's."""
        return self.truncate_dim or self.manifest.dimension

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"Embedder({str(self.path)!r}, architecture={m.source.get('architecture')!r}, dim={self.dimension}, "
            f"pooling={[p.value for p in m.pooling]}, precision={m.precision.value!r}, "
            f"providers={self.providers}, threads={self.threads})"
        )

    # -- encoding ------------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], prompt_name: str | None = None, prompt: str | None = None) -> Tokenized:
        """Token ids of ``texts`` (prompt prepended), truncated to ``max_seq_length``, unpadded."""
        return tokenize(self.tokenizer, self._prepare(texts, prompt_name, prompt), texts)

    def _prepare(self, texts: Sequence[str], prompt_name: str | None, prompt: str | None) -> list[str]:
        out = self._with_prompt(check_texts(texts), prompt_name, prompt)
        limit = self.manifest.max_chars
        return [t[:limit] for t in out] if limit is not None else out

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        output_value: str = "sentence_embedding",
        show_progress_bar: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        *,
        precision: str | EmbeddingPrecision = EmbeddingPrecision.FLOAT32,
        truncate_dim: int | None = None,
        ranges: np.ndarray | None = None,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed ``texts``.

        Returns float32: a ``str`` gives shape ``(dim,)``, a list gives ``(n, dim)`` in the caller's order.
        With ``output_value="token_embeddings"``: one ``(tokens, hidden)`` array per text, without padding.
        ``normalize=True`` L2-normalizes on top of what the model does; ``None``/``False`` leave the
        model's output as it is (a model with a Normalize module is always normalized, as in
        sentence-transformers). ``prompt_name`` picks a prompt from the manifest; ``prompt`` gives one.

        ``truncate_dim`` keeps the first dimensions (before ``normalize``, as sentence-transformers
        does); ``precision`` (``float32``, ``float16``, ``int8``, ``uint8``, ``binary``, ``ubinary``) quantizes the
        result as ``embedrt.quantize_embeddings`` does, int8/uint8 with ``ranges`` (shape
        ``(2, dim)``) or, without them, ranges from these embeddings.

        sentence-transformers' names work too: ``normalize_embeddings`` is ``normalize``;
        ``convert_to_numpy=False`` gives a list of 1-D arrays; ``convert_to_tensor=True`` is refused
        (no torch here: ``torch.from_numpy`` the result).
        """
        if normalize_embeddings is not None:
            if normalize is not None and bool(normalize) != bool(normalize_embeddings):
                raise ValueError(f"normalize={normalize!r} and normalize_embeddings={normalize_embeddings!r} "
                                 "disagree: give one of them")  # fmt: skip
            normalize = normalize_embeddings
        if convert_to_tensor:
            raise ValueError("convert_to_tensor=True needs torch, which embedrt does not use: take the numpy array "
                             "(torch.from_numpy(vectors) makes a tensor of it without a copy)")  # fmt: skip
        prec = parse(EmbeddingPrecision, precision, "precision")
        what = parse(OutputValue, output_value, "output_value")
        if what is OutputValue.TOKEN_EMBEDDINGS and prec is not EmbeddingPrecision.FLOAT32:
            raise ValueError(f"precision {prec.value!r} applies to sentence embeddings, not token_embeddings")
        single = isinstance(texts, str)
        batch: Sequence[str] = [texts] if single else texts  # type: ignore[list-item]
        out: np.ndarray | list[np.ndarray]
        if self._static and what is OutputValue.SENTENCE_EMBEDDING:
            check_batch_size(batch_size)
            flat, lengths = flat_ids(self.tokenizer, self._prepare(batch, prompt_name, prompt), batch)
            out = self._encode_flat(flat, lengths, batch_size, normalize, show_progress_bar, truncate_dim)
        else:
            tok = self.tokenize(batch, prompt_name, prompt)
            out = self.encode_tokenized(tok, batch_size, normalize, what.value, show_progress_bar, truncate_dim)
        if prec is not EmbeddingPrecision.FLOAT32:  # an empty list too: (0, columns) of the precision's type
            assert isinstance(out, np.ndarray)
            out = quantize_embeddings(out, prec, ranges=ranges)
        if single:
            return out[0]
        return list(out) if not convert_to_numpy and isinstance(out, np.ndarray) else out

    def encode_chunks(
        self,
        texts: str | Sequence[str],
        chunk_tokens: int | str = "max",
        chunk_overlap: int = 0,
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress_bar: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        *,
        precision: str | EmbeddingPrecision = EmbeddingPrecision.FLOAT32,
        truncate_dim: int | None = None,
        ranges: np.ndarray | None = None,
    ) -> EmbeddedChunks[np.ndarray]:
        """Embed ``texts`` whole: each is cut into windows of at most ``chunk_tokens`` model inputs
        (special tokens and the prompt included; ``"max"``: the model's ``max_seq_length``), and
        every window gets a vector, where ``encode`` would cut the text to its first window.

        Each text is tokenized once; consecutive windows share ``chunk_overlap`` tokens; a window
        ends at the best break in its second half (a paragraph, else a sentence's end, a line break,
        a word start), as the corpus job's ``--chunk-tokens`` does (``embedrt._chunking``). A text
        that fits one window gets one, with the vector ``encode`` gives it. The other arguments are
        ``encode``'s. Returns an ``EmbeddedChunks``: ``embeddings`` a row per window, in the texts'
        order, with each window's text (``text``), place in it (``chunk``) and characters
        (``start``, ``end``); ``of(i)`` the rows of text ``i``, ``texts(texts)`` the windows' texts.
        """
        prec = parse(EmbeddingPrecision, precision, "precision")
        if self._static:
            raise ValueError("encode_chunks: a static-embedding bundle has no token window (every text is embedded "
                             "whole): use encode")  # fmt: skip
        windows = self._split_windows(texts, chunk_tokens, chunk_overlap, prompt_name, prompt)
        vectors = self.encode_tokenized(windows.tokens, batch_size, normalize, show_progress_bar=show_progress_bar,
                                        truncate_dim=truncate_dim)  # fmt: skip
        assert isinstance(vectors, np.ndarray)  # sentence embeddings
        if prec is not EmbeddingPrecision.FLOAT32:
            vectors = quantize_embeddings(vectors, prec, ranges=ranges)
        return windows.embedded(vectors)

    def encode_query(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        """``encode`` with the bundle's ``query`` prompt (none if it has none); takes ``encode``'s arguments."""
        return self.encode(texts, **task_prompt(self.manifest.prompts, QUERY_PROMPTS, kwargs))

    def encode_document(self, texts: str | Sequence[str], **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        """``encode`` with the bundle's ``document`` prompt, else ``passage``, else ``corpus`` (else none)."""
        return self.encode(texts, **task_prompt(self.manifest.prompts, DOCUMENT_PROMPTS, kwargs))

    def encode_tokenized(
        self,
        tok: Tokenized,
        batch_size: int = 32,
        normalize: bool | None = None,
        output_value: str = "sentence_embedding",
        show_progress_bar: bool = False,
        truncate_dim: int | None = None,
        *,
        on_rows: Callable[[int], None] | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Embed already tokenized texts (see ``tokenize``). ``on_rows(n)``: called as each batch of
        ``n`` texts is done (a caller's own progress)."""
        check_batch_size(batch_size)
        what = parse(OutputValue, output_value, "output_value")
        if self._static:
            if what is not OutputValue.SENTENCE_EMBEDDING:
                raise ValueError("a static-embedding bundle gives sentence_embedding only (its graph has no token states)")
            flat = np.fromiter(chain.from_iterable(tok.ids), dtype=np.int64, count=int(tok.lengths.sum()))
            vectors = self._encode_flat(flat, tok.lengths, batch_size, normalize, show_progress_bar, truncate_dim)
            if on_rows is not None:
                on_rows(len(tok))
            return vectors
        dim = self._check_truncate_dim(truncate_dim) or self.dimension
        n = len(tok)
        sentences = np.empty((n, self.manifest.dimension), dtype=np.float32)
        tokens: list[np.ndarray] = [np.empty((0, self.manifest.hidden_size), np.float32)] * n
        for rows, (out,) in self._run_batches([what.value], self._batches(tok, batch_size, show_progress_bar)):
            if on_rows is not None:
                on_rows(len(rows))
            if what is OutputValue.SENTENCE_EMBEDDING:
                sentences[rows] = out
            else:
                hidden = out
                width = hidden.shape[1]
                for r, i in enumerate(rows):
                    n_i = int(tok.lengths[i])
                    tokens[i] = (hidden[r, width - n_i :] if self._left else hidden[r, :n_i]).copy()
        if what is OutputValue.TOKEN_EMBEDDINGS:
            return tokens
        return _finish(sentences, dim, normalize)

    def _encode_flat(
        self, flat: np.ndarray, lengths: np.ndarray, batch_size: int, normalize: bool | None,
        show_progress_bar: bool, truncate_dim: int | None,
    ) -> np.ndarray:  # fmt: skip
        """Static bundles: each batch is a slice of the flat token array plus its offsets, in the
        caller's order (no sort, no padding)."""
        dim = self._check_truncate_dim(truncate_dim) or self.dimension
        sentences = np.empty((len(lengths), self.manifest.dimension), dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        bar = EncodeProgress(int(lengths.sum()), len(lengths), show_progress_bar)
        budget = min(self.max_batch_tokens or STATIC_RUN_TOKENS, STATIC_RUN_TOKENS)
        for piece in flat_batches(lengths, batch_size, budget):
            first = starts[piece.start]
            feed = {"input_ids": flat[first : starts[piece.stop]], "offsets": starts[piece] - first}
            (sentences[piece],) = self._run(["sentence_embedding"], feed)
            bar.update(piece.stop - piece.start, int(starts[piece.stop] - first))
        bar.close()
        return _finish(sentences, dim, normalize)

    # -- similarity ----------------------------------------------------------------------------------

    def similarity(self, embeddings1: object, embeddings2: object) -> np.ndarray:
        """The ``(n, m)`` similarity matrix under ``similarity_fn_name`` (float32 numpy)."""
        return similarity(embeddings1, embeddings2, self.similarity_fn_name)

    def similarity_pairwise(self, embeddings1: object, embeddings2: object) -> np.ndarray:
        """The ``(n,)`` similarity of row ``i`` with row ``i`` under ``similarity_fn_name``."""
        return similarity_pairwise(embeddings1, embeddings2, self.similarity_fn_name)

    # -- helpers -------------------------------------------------------------------------------------

    def _check_truncate_dim(self, value: int | None) -> int | None:
        if value is None:
            return None
        return check_int(value, "truncate_dim", 1, self.manifest.dimension, why=" (the model's dimension)")


def _finish(sentences: np.ndarray, dim: int, normalize: bool | None) -> np.ndarray:
    """The first ``dim`` columns (Matryoshka), then L2-normalized when asked (as sentence-transformers orders them)."""
    if dim < sentences.shape[1]:
        sentences = np.ascontiguousarray(sentences[:, :dim])
    if normalize:
        sentences /= np.maximum(np.linalg.norm(sentences, axis=1, keepdims=True), 1e-12)
    return sentences
