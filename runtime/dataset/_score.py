"""A reranker over a corpus: each row's (query, text) pair scored, as ``CrossEncoder.predict`` scores it.

Hard-negative mining, distillation sets and offline reranking of retrieval results score millions of
pairs; ``ScoreBatch`` is the corpus job's batch function for them (``embed_dataset(...,
query_column=...)`` with a reranker bundle, ``--query-column`` on the command line): the same parts,
resume, bad rows and backends as embedding, and a ``score`` column where an embedding job writes its
vectors (float32, or a fixed-size list of them for a model of several labels), after the model's
own activation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._cache import (
    JOB_CACHE_MB,
    VectorCache,
    check_cache_mb,
    distinct_items,
    text_keys,
)
from .._errors import BundleError
from .._reranker import Reranker
from .._types import BundleKind, EmbeddingPrecision, check_int, parse
from ._batch import (
    TEXT_KINDS,
    BadRowError,
    BatchResult,
    OnError,
    Prepared,
    _output_rows,
    _texts,
    bad_row,
    cached_tokens,
    fixed_size_column,
    refuse_options,
    text_source,
    with_cached,
)
from ._readers import INTERNAL

SCORE = "score"


def check_job_kind(bundle: object, kind: BundleKind, query_column: str | None) -> None:
    """A reranker scores pairs (it needs ``query_column``); the other kinds embed single texts."""
    if kind is BundleKind.RERANKER:
        if query_column is None:
            raise BundleError(f"bundle {str(bundle)!r} is a reranker (it scores text pairs): give the column of each "
                              "pair's query, query_column= (--query-column), to score each row's (query, text) pair")  # fmt: skip
    elif kind not in TEXT_KINDS:
        raise BundleError(f"bundle {str(bundle)!r} is a {kind.value}; a corpus job embeds texts or scores pairs")
    elif query_column is not None:
        raise ValueError(f"query_column {query_column!r} is for a reranker bundle, which scores pairs; bundle "
                         f"{str(bundle)!r} ({kind.value}) embeds single texts")  # fmt: skip


def pair_settings(normalize: bool, precision: str | EmbeddingPrecision, truncate_dim: int | None, ranges: object,
                  chunk_tokens: object, max_active_dims: int | None) -> None:  # fmt: skip
    """The embedding options refused for a reranker, whose output is a score per pair."""
    refuse_options("applies to embeddings; a reranker's output is a score per pair", normalize=normalize,
                   precision=precision, truncate_dim=truncate_dim, ranges=ranges, chunk_tokens=chunk_tokens,
                   max_active_dims=max_active_dims)  # fmt: skip


def score_type(num_labels: int) -> pa.DataType:
    """The score column's type: float32 for one label, a fixed-size list of float32 for several."""
    return pa.float32() if num_labels == 1 else pa.list_(pa.float32(), num_labels)


class ScoreBatch:
    """``table -> table`` with a ``score`` column: the reranker's score of each row's pair (its
    ``query_column``, its text). A pair repeated within a slice is scored once.

    Args:
        model: a ``Reranker``, or a reranker bundle folder (then loaded here, with ``device``,
            ``threads`` and ``streams``).
        query_column: the column of each pair's first text (the query).
        text_column / text_template: each pair's second text, as ``EmbedBatch`` takes them.
        keep_query: keep the query column in the output (the corpus job reads it for the pairs and
            drops it unless it is a kept column).
        on_error, id_column, batch_size, prompt_name, prompt, output_column: as ``EmbedBatch``.
        repeat_cache_mb: megabytes of the scores of the pairs scored last, kept so that a pair met
            again in a later batch (or slice of a part) is neither tokenized nor scored again (0:
            none); a pair repeated within a batch is scored once either way.
    """

    def __init__(
        self,
        model: Reranker | str | Path,
        *,
        query_column: str,
        text_column: str = "text",
        text_template: str | None = None,
        keep_query: bool = True,
        id_column: str | None = None,
        on_error: str | OnError = OnError.FAIL,
        batch_size: int = 32,
        prompt_name: str | None = None,
        prompt: str | None = None,
        output_column: str = SCORE,
        device: str = "auto",
        threads: int | None = None,
        streams: int | str = "auto",
        repeat_cache_mb: float = JOB_CACHE_MB,
    ) -> None:
        if not isinstance(query_column, str) or not query_column:
            raise ValueError(f"query_column must be a column name, got {query_column!r}")
        self.model = model if isinstance(model, Reranker) else Reranker(model, device, threads=threads, streams=streams)
        self.query, self.keep_query = query_column, keep_query
        self.text = text_source(text_column, text_template)
        self.id_column = id_column
        self.on_error = parse(OnError, on_error, "on_error")
        self.batch_size = check_int(batch_size, "batch_size")
        self.prompt_name, self.prompt = prompt_name, prompt
        self.model.tokenize_pairs([], prompt_name, prompt)  # a bad prompt name fails here, not mid-job
        self.output_column = output_column
        self.type = score_type(self.model.num_labels)
        size = check_cache_mb(repeat_cache_mb, "repeat_cache_mb")
        self.cache = VectorCache(int(size * 2**20)) if size else None

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.run(self.prepare(table)).table

    def prepare(self, table: pa.Table, first: int = 0) -> Prepared:
        """Check every row (raises ``BadRowError`` under ``fail``) and tokenize the good rows' pairs."""
        missing = [c for c in (*self.text.missing(table.column_names), self.query) if c not in table.column_names]
        if missing:
            raise ValueError(f"the batch has no column {missing[0]!r}; its columns are {table.column_names}")
        if self.output_column in table.column_names:
            raise ValueError(f"the batch already has a column {self.output_column!r}; choose another output_column")
        texts, reasons = _texts(table, self.text)
        queries = table.column(self.query).to_pylist()
        reasons = [r if r is not None else _query_problem(self.query, q) for r, q in zip(reasons, queries, strict=True)]
        bad = [bad_row(table, i, r, self.id_column, first) for i, r in enumerate(reasons) if r is not None]
        if bad and self.on_error is OnError.FAIL:
            raise BadRowError(bad[0])
        good = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
        keep = good if self.on_error is OnError.SKIP else np.arange(len(texts), dtype=np.int64)
        dropped = [*INTERNAL, *(() if self.keep_query else (self.query,))]
        public = table.drop_columns([c for c in dropped if c in table.column_names])
        pairs, of = distinct_items([(queries[i], texts[i]) for i in good.tolist()])  # a pair repeated: once
        keys = held = None
        todo = pairs
        if self.cache is not None:  # the pairs it holds are neither tokenized nor scored again
            keys = text_keys([f"{len(q)}:{q}{t}" for q, t in pairs])
            held = self.cache.lookup(keys)
            todo = pairs if not len(held.held) else [pairs[i] for i in held.missing.tolist()]
        tokens = self.model.tokenize_pairs(todo, self.prompt_name, self.prompt)
        return Prepared(public, good, tokens, bad, keep, vector_of=of, repeats=len(good) - len(pairs), keys=keys,
                        held=held)  # fmt: skip

    def run(self, prep: Prepared, on_rows: Callable[[int], None] | None = None) -> BatchResult:
        """Score the prepared pairs; the output keeps the input's row order. ``on_rows(n)`` as each
        model batch of ``n`` pairs is done."""
        found, tokens, repeats = cached_tokens(prep, self.cache)
        scores = np.empty((0, self.model.num_labels), np.float32)
        if tokens.lengths.size:  # (pairs, labels): a row per pair, as the cache keeps it
            scores = np.asarray(self.model.scores(self.model.predict_tokenized(tokens, self.batch_size, on_rows=on_rows)),
                                np.float32).reshape(len(tokens.lengths), -1)  # fmt: skip
        scores, cut = with_cached(prep, self.cache, found, scores)
        if prep.vector_of is not None:
            scores, cut = scores[prep.vector_of], cut[prep.vector_of]
        take, has_score = _output_rows(prep)
        table = prep.table if take is None else prep.table.take(pa.array(take))
        column = self._column(scores if self.model.num_labels > 1 else scores.reshape(-1), has_score, table.num_rows)
        return BatchResult(table.append_column(self.output_column, column), prep.bad, int(tokens.lengths.sum()),
                           int(cut.sum()), repeats)  # fmt: skip

    def _column(self, scores: np.ndarray, has_score: np.ndarray | None, n: int) -> pa.Array:
        """``n`` output rows' scores: ``scores`` at the rows ``has_score`` marks, the others null."""
        if self.model.num_labels > 1:
            return fixed_size_column(scores, has_score, n, pa.float32())
        if has_score is None:
            return pa.array(scores, pa.float32())
        full = np.zeros(n, np.float32)
        full[has_score] = scores
        return pa.array(full, pa.float32(), mask=~has_score)


def _query_problem(column: str, value: Any) -> str | None:
    """Why ``value`` cannot be a pair's query (None where it can)."""
    if isinstance(value, str):
        return None
    if value is None:
        return f"query column {column!r} is null"
    return f"query column {column!r} is {type(value).__name__} ({value!r:.40}), expected a string"
