"""The batch function: an Arrow table of texts in, the same rows with an ``embedding`` column out.

One callable serves every backend: the local job calls ``prepare`` (checks and tokenization, on a
reader thread) and ``run`` (the model) separately so that the two overlap; Ray Data actors call it
as ``table -> table``. The model is built once per instance.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._base import BundleModel
from .._bundle import TOKENIZER_NAME, load_manifest
from .._cache import (
    JOB_CACHE_MB,
    Lookup,
    VectorCache,
    Vectors,
    check_cache_mb,
    distinct_items,
    first_places,
    look_up_again,
    merged,
    text_keys,
    token_keys,
)
from .._chunking import Chunker, Chunks, window_chunker
from .._embedder import Embedder
from .._errors import BundleError, EmbedrtError
from .._quantization import quantization_ranges, quantize_embeddings, quantized_shape
from .._sparse import SparseEmbeddings
from .._sparse_encoder import SparseEncoder
from .._tokenize import Tokenized, load_tokenizer
from .._types import BundleKind, EmbeddingPrecision, check_int, parse
from . import _readers
from ._readers import BAD, FILE, FILE_KEY, INTERNAL, LINE, POSITION_KEY, TEXT
from ._template import TextSource


class OnError(str, Enum):
    """What a job does with a bad row (null, not a string, undecodable, missing its column)."""

    FAIL = "fail"  # stop, naming the row; finished parts are kept for a resume
    SKIP = "skip"  # leave the row out of the output
    NULL = "null"  # keep the row, with a null embedding


@dataclass(frozen=True)
class BadRow:
    id: Any
    reason: str
    file: str | None = None
    line: int | None = None
    position: str = "line"  # "line" (1-based line of a text file) or "row" (0-based row of a Parquet file)

    def describe(self) -> str:
        where = f"{self.file} {self.position} {self.line}" if self.file and self.line is not None else self.file or "row"
        return f"{where} (id {self.id!r}): {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, self.position: self.line, "reason": self.reason}


class BadRowError(EmbedrtError, ValueError):
    """A bad row met with ``on_error="fail"``; ``row`` says which and why."""

    def __init__(self, row: BadRow) -> None:
        super().__init__(
            f"bad row in {row.describe()}. Fix the input and run the same command again (finished parts "
            "are kept), or choose on_error='skip' / 'null' (--on-error skip|null)"
        )
        self.row = row


@dataclass
class Prepared:
    table: pa.Table  # the input rows, internal columns dropped
    rows: np.ndarray  # indices into ``table`` of the rows to embed
    tokens: Tokenized  # what the model embeds: each distinct text (or window of one) once
    bad: list[BadRow]
    keep: np.ndarray  # indices into ``table`` of the output rows (skip: the good ones; else all)
    chunks: Chunks | None = None  # with chunking: the windows of ``rows``, a text's in order, texts in order
    chunk_texts: list[str] | None = None  # each window's text, where asked for
    vector_of: np.ndarray | None = None  # the vector (of ``tokens``) of each row (window); None: one each
    repeats: int = 0  # good rows whose text an earlier row had (with chunking: their windows), embedded once
    # each distinct text's key in the batch function's cache (with chunking: each window's, by its
    # tokens); None: no cache
    keys: list[bytes] | None = None
    # without chunking, what the cache held of ``keys`` when they were prepared: those texts are not
    # tokenized (``tokens`` holds the missing ones alone)
    held: Lookup | None = None
    chunk_pages: np.ndarray | None = None  # with chunking: the page each window begins on, where asked for


# the columns a chunked output adds (before the embedding), and the one with each chunk's text
CHUNK_COLUMNS = {"chunk": pa.int32(), "chunk_start": pa.int64(), "chunk_end": pa.int64()}
CHUNK_TEXT = "chunk_text"
CHUNK_PAGE = "chunk_page"  # the page a window begins on: the form feeds before it, plus one (``chunk_pages``)


@dataclass
class BatchResult:
    table: pa.Table
    bad: list[BadRow] = field(default_factory=list)
    tokens: int = 0
    truncated: int = 0  # texts cut to the model's max_seq_length (none with chunking)
    repeats: int = 0  # output rows (texts, or windows) an earlier row of the batch had, or the cache held


# a sparse bundle's embedding column: each row's dimensions (token ids, ascending) and their weights
SPARSE_TYPE = pa.struct([("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float32()))])
Model = Embedder | SparseEncoder


def load_embedding_model(bundle: str | Path, **options: Any) -> Model:
    """The model of an embedding, static or sparse bundle (``options`` as ``Embedder`` takes them)."""
    from .._load import load_model

    model = load_model(bundle, **options)
    check_embeds_texts(bundle, model.kind)
    assert isinstance(model, Embedder | SparseEncoder)
    return model


def bundle_digest(bundle: str | Path) -> str:
    """The sha256 of a local bundle's manifest, which names every file's sha256: the bundle's identity."""
    from .._bundle import MANIFEST_NAME

    return hashlib.sha256((Path(bundle) / MANIFEST_NAME).read_bytes()).hexdigest()


TEXT_KINDS = (BundleKind.EMBEDDING, BundleKind.STATIC, BundleKind.SPARSE)  # the bundles that embed single texts


def check_embeds_texts(bundle: str | Path, kind: BundleKind) -> None:
    """A bundle of a kind that does not embed single texts (a reranker) is refused, naming it."""
    if kind not in TEXT_KINDS:
        raise BundleError(f"bundle {str(bundle)!r} is a {kind.value} (it scores text pairs); embedding texts needs "
                          "an embedding or sparse bundle (a reranker's pairs: ScoreBatch, or query_column= in the "
                          "corpus job)")  # fmt: skip


class EmbedBatch:
    """``table -> table`` with an embedding column, as Ray Data's ``map_batches`` takes it (a table
    of many long texts a slice of rows at a time).

    Args:
        model: an ``Embedder``, a ``SparseEncoder`` or a bundle folder (then built here, with
            ``device``/``threads``/``streams``/``precision_hint``; ``streams="auto"``: one batch per
            thread at once on the CPU provider). A sparse (SPLADE) bundle's column is a struct of ``indices`` (token
            ids, ascending) and their ``values``, as ``SparseEncoder.encode`` gives them;
            ``max_active_dims`` keeps each vector's largest weights only.
        text_column: the column holding the texts.
        text_template: each row's text made from several columns instead, as in ``"{title}\n{text}"``
            or ``"title: {title|none} | text: {text}"`` (after ``|``: the text for a null, missing or
            empty value; without one a null value makes a bad row). ``{{``/``}}``: literal braces.
        id_column: the column naming rows in error messages and bad-row records (row index if none).
        on_error: ``"fail"``, ``"skip"`` or ``"null"``.
        output_column: name of the embedding column (a fixed-size list of float32, or of the
            ``precision``'s integers).
        precision: ``float32``, ``float16``, ``int8``, ``uint8``, ``binary`` or ``ubinary``, as
            ``embedrt.quantize_embeddings``; int8/uint8 need ``ranges`` (shape ``(2, dim)``), the same
            for every batch of a corpus (``embedrt.quantization_ranges`` on a sample).
        truncate_dim: keep the first dimensions of every vector (Matryoshka models).
        chunk_tokens: cut each text longer than this many model inputs (special tokens and the prompt
            included; at most the model's ``max_seq_length``, ``"max"`` for it) into windows and embed each one, instead
            of truncating it: one output row per window, with ``chunk`` (its place in the text, from
            0), ``chunk_start`` and ``chunk_end`` (``text[chunk_start:chunk_end]`` is what it covers)
            and, with ``chunk_text``, that text. A window ends at the best break in its second half (a
            paragraph, else a sentence's end, a line break, a word start); consecutive windows share
            ``chunk_overlap`` tokens. See ``embedrt._chunking``.
        chunk_pages: with chunking, also ``chunk_page`` (int32, from 1), the page a window begins
            on: the form feeds (``\f``) before its first character, plus one (a PDF's text as the
            corpus job reads it, or a plain text paged by form feeds).
        repeat_cache_mb: megabytes of the output rows of the texts embedded last, kept so that a text
            met again in a later call (slice, part) is not embedded again (least recently used out
            first; 0: none). Repeats within a slice of rows (a call's, unless it is big) are always
            embedded once. With chunking the cache holds windows, keyed by their tokens, so that a
            document met again (or one that begins as an earlier one did) takes the vectors of
            the windows it shares with it.
    """

    def __init__(
        self,
        model: Model | str | Path,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        on_error: str | OnError = OnError.FAIL,
        batch_size: int = 32,
        normalize: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        output_column: str = "embedding",
        device: str = "auto",
        threads: int | None = None,
        precision: str | EmbeddingPrecision = EmbeddingPrecision.FLOAT32,
        truncate_dim: int | None = None,
        ranges: np.ndarray | None = None,
        streams: int | str = "auto",
        chunk_tokens: int | str | None = None,
        chunk_overlap: int = 0,
        chunk_text: bool = False,
        max_active_dims: int | None = None,
        repeat_cache_mb: float = JOB_CACHE_MB,
        text_template: str | None = None,
        chunk_pages: bool = False,
        precision_hint: str | None = None,
    ) -> None:
        self.text = text_source(text_column, text_template)
        self.model = (
            model if isinstance(model, Embedder | SparseEncoder)
            else load_embedding_model(model, device=device, threads=threads, streams=streams,
                                      precision_hint=precision_hint)
        )  # fmt: skip
        self.id_column = id_column
        self.on_error = parse(OnError, on_error, "on_error")
        self.batch_size = check_int(batch_size, "batch_size")
        self.normalize = normalize
        self.prompt_name, self.prompt = prompt_name, prompt
        self.model.tokenize([], prompt_name, prompt)  # a bad prompt name fails here, not mid-job
        self.output_column = output_column
        self.sparse = isinstance(self.model, SparseEncoder)
        self.max_active_dims = sparse_settings(self.sparse, normalize, precision, truncate_dim, ranges, max_active_dims)
        self.precision, self.truncate_dim, self.ranges, self.type = output_settings(
            self.model.dimension, precision, truncate_dim, ranges, self.sparse
        )
        self.chunker = chunker(self.model, chunk_tokens, chunk_overlap, chunk_text, prompt_name, prompt, chunk_pages)
        self.chunk_text, self.chunk_pages = bool(chunk_text), bool(chunk_pages)
        size = check_cache_mb(repeat_cache_mb, "repeat_cache_mb")
        self.cache = VectorCache(int(size * 2**20)) if size else None

    def __call__(self, table: pa.Table) -> pa.Table:
        """``table`` with the embedding column; a table of more than ``SLICE_CHARS`` characters of
        text is embedded a slice of rows at a time (as the corpus job reads its parts), so that its
        tokens and windows are never all held at once."""
        cuts = [0, table.num_rows]  # without the columns, prepare names them
        if not self.text.missing(table.column_names):
            cuts = _readers.slice_rows(self.text.sizes(table), _readers.SLICE_CHARS)
        out = [self.run(self.prepare(table.slice(a, b - a), a)).table for a, b in itertools.pairwise(cuts)]
        return out[0] if len(out) == 1 else pa.concat_tables(out)

    def prepare(self, table: pa.Table, first: int = 0) -> Prepared:
        """Check every row and tokenize the good ones (raises ``BadRowError`` under ``fail``);
        ``first``: the number of the table's first row, which names a bad row without an id."""
        missing = self.text.missing(table.column_names)
        if missing:
            raise ValueError(f"the batch has no column {missing[0]!r}; its columns are {table.column_names}")
        if self.output_column in table.column_names:
            raise ValueError(f"the batch already has a column {self.output_column!r}; choose another output_column")
        if self.chunker is not None:
            added = (*CHUNK_COLUMNS, *((CHUNK_PAGE,) if self.chunk_pages else ()), *((CHUNK_TEXT,) if self.chunk_text else ()))
            taken = [c for c in added if c in table.column_names]
            if taken:
                raise ValueError(f"the batch already has the column(s) {taken} that chunking adds; rename them")
        texts, reasons = _texts(table, self.text)
        bad_idx = [i for i, r in enumerate(reasons) if r is not None]
        bad = [bad_row(table, i, reasons[i], self.id_column, first) for i in bad_idx]  # type: ignore[arg-type]
        if bad and self.on_error is OnError.FAIL:
            raise BadRowError(bad[0])
        good = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
        keep = good if self.on_error is OnError.SKIP else np.arange(len(texts), dtype=np.int64)
        public = table.drop_columns([c for c in INTERNAL if c in table.column_names])
        distinct, of = distinct_items([texts[i] for i in good])  # a text repeated in the batch is embedded once
        if self.chunker is None:
            keys = held = None
            todo = distinct
            if self.cache is not None:  # the texts it holds are neither tokenized nor embedded again
                keys = text_keys(distinct)
                held = self.cache.lookup(keys)
                todo = distinct if not len(held.held) else [distinct[i] for i in held.missing.tolist()]
            tokens = self.model.tokenize(todo, self.prompt_name, self.prompt)
            return Prepared(public, good, tokens, bad, keep, vector_of=of, repeats=len(good) - len(distinct), keys=keys,
                            held=held)  # fmt: skip
        windows = self.chunker.split(distinct)
        chunks, vector_of = (windows, None) if of is None else windows.of_texts(of)
        pieces = None
        if self.chunk_text:
            spans = zip(windows.text.tolist(), windows.start.tolist(), windows.end.tolist(), strict=True)
            pieces = [distinct[t][a:b] for t, a, b in spans]
            pieces = pieces if vector_of is None else [pieces[k] for k in vector_of.tolist()]
        pages = None
        if self.chunk_pages:
            pages = _pages(distinct, windows)
            pages = pages if vector_of is None else pages[vector_of]
        tokens, keys = windows.tokens, None
        if self.cache is not None:  # windows by their tokens: those alike (of other texts too) run once
            keys, same = distinct_items(token_keys(tokens))
            if same is not None:
                tokens = tokens.select(first_places(same))
                vector_of = same if vector_of is None else same[vector_of]
        repeats = 0 if vector_of is None else len(vector_of) - len(tokens)  # windows embedded once for several
        return Prepared(public, good, tokens, bad, keep, chunks, pieces, vector_of, repeats, keys, chunk_pages=pages)

    def run(self, prep: Prepared, on_rows: Callable[[int], None] | None = None) -> BatchResult:
        """Embed the prepared rows; the output keeps the input's row order. ``on_rows(n)`` as each
        model batch of ``n`` rows is done."""
        found, tokens, repeats = cached_tokens(prep, self.cache)
        vectors = self._vectors(tokens, _rows_done(prep, len(tokens), on_rows))
        vectors, cut = with_cached(prep, self.cache, found, vectors, complete_flags=prep.chunks is None)
        if prep.vector_of is not None:
            vectors = vectors[prep.vector_of]
            cut = cut[prep.vector_of]
        take, has_vector = _output_rows(prep)
        table = prep.table if take is None else prep.table.take(pa.array(take))
        if prep.chunks is not None:
            assert has_vector is not None
            table = _with_chunk_columns(table, prep, has_vector)
        emb = self._column(vectors, has_vector, table.num_rows)
        truncated = 0 if prep.chunks is not None else int(cut.sum())
        return BatchResult(table.append_column(self.output_column, emb), prep.bad, int(tokens.lengths.sum()),
                           truncated, repeats)  # fmt: skip

    def _vectors(self, tokens: Tokenized, on_rows: Callable[[int], None] | None) -> Vectors:
        """The model's vectors of ``tokens``, in the output's precision."""
        if isinstance(self.model, SparseEncoder):
            return self.model.encode_tokenized(tokens, self.batch_size, max_active_dims=self.max_active_dims,
                                               on_rows=on_rows)  # fmt: skip
        vectors = self.model.encode_tokenized(
            tokens, self.batch_size, self.normalize or None, truncate_dim=self.truncate_dim, on_rows=on_rows
        )
        assert isinstance(vectors, np.ndarray)  # sentence embeddings, by construction
        if self.precision is not EmbeddingPrecision.FLOAT32:
            vectors = quantize_embeddings(vectors, self.precision, ranges=self.ranges)
        return vectors

    def _column(self, vectors: Vectors, has_vector: np.ndarray | None, n: int) -> pa.Array:
        """The embedding column of ``n`` output rows: ``vectors`` at the rows ``has_vector`` marks, the others null."""
        if isinstance(vectors, SparseEmbeddings):
            return _sparse_column(vectors, has_vector, n)
        return fixed_size_column(vectors, has_vector, n, self.type.value_type)


def fixed_size_column(rows: np.ndarray, has_row: np.ndarray | None, n: int, value_type: pa.DataType) -> pa.Array:
    """``n`` output rows of fixed-size lists: ``rows`` (``[k, width]``) at the rows ``has_row`` marks,
    the others null (None: every output row has one)."""
    width = rows.shape[1]
    if has_row is None:
        return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1), value_type), width)
    full = np.zeros((n, width), rows.dtype)
    full[has_row] = rows
    return pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1), value_type), width, mask=pa.array(~has_row))


def cached_tokens(prep: Prepared, cache: VectorCache | None) -> tuple[Lookup | None, Tokenized, int]:
    """What of a prepared slice runs through the model: the cache is asked again for the keys it did
    not hold when the slice was prepared (the slice before, run meanwhile, may have added them:
    ``look_up_again``); (that look-up, the tokens left, the slice's repeats in all)."""
    found = look_up_again(cache, prep.keys, prep.held)
    if found is None:
        return None, prep.tokens, prep.repeats
    tokens = prep.tokens if len(found.missing) == len(prep.tokens) else prep.tokens.select(found.missing.tolist())
    return found, tokens, prep.repeats + len(found.held) + (0 if prep.held is None else len(prep.held.held))


def with_cached(
    prep: Prepared, cache: VectorCache | None, found: Lookup | None, values: Any, complete_flags: bool = True
) -> tuple[Any, np.ndarray]:
    """The model's ``values`` for the tokens ``cached_tokens`` left, completed with those the cache
    held at either look-up, in the prepared tokens' order; and each of those tokens' truncation flag
    (``complete_flags``: the cache keeps them too)."""
    cut = prep.tokens.truncated
    if cache is not None and found is not None:
        values = cache.complete(found, values, cut[found.missing] if complete_flags else None)
    early = prep.held
    if early is not None and len(early.held):  # and those it held when this slice was prepared
        values = merged(early, values)
        cut = early.every_flag(cut)
    return values, cut


def _output_rows(prep: Prepared) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The rows of ``prep.table`` in the output, one per output row (None: all of them, once), and
    which output rows get a vector (None: all). With chunking a good row gives a row per window; a
    bad row kept (``null``) stays one row."""
    if prep.chunks is not None:
        counts = np.ones(len(prep.keep), np.int64)
        good = np.searchsorted(prep.keep, prep.rows)  # the good rows' places among the output rows
        counts[good] = np.bincount(prep.chunks.text, minlength=len(prep.rows))
        is_good = np.zeros(len(prep.keep), bool)
        is_good[good] = True
        return np.repeat(prep.keep, counts), np.repeat(is_good, counts)
    take = None if len(prep.keep) == prep.table.num_rows else prep.keep
    if len(prep.keep) == len(prep.rows):
        return take, None
    has_vector = np.zeros(len(prep.keep), bool)
    has_vector[prep.rows] = True
    return take, has_vector


def _sparse_column(vectors: SparseEmbeddings, has_vector: np.ndarray | None, n: int) -> pa.StructArray:
    """The rows of ``vectors`` as ``SPARSE_TYPE``, at the output rows ``has_vector`` marks (the others null)."""
    counts = np.diff(vectors.indptr)
    if has_vector is not None:
        full = np.zeros(n, np.int64)
        full[has_vector] = counts
        counts = full
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    indices = pa.ListArray.from_arrays(offsets, pa.array(vectors.indices.astype(np.int32)))
    values = pa.ListArray.from_arrays(offsets, pa.array(vectors.values, pa.float32()))
    mask = None if has_vector is None else pa.array(~has_vector)
    return pa.StructArray.from_arrays([indices, values], fields=list(SPARSE_TYPE), mask=mask)


def sparse_settings(sparse: bool, normalize: bool, precision: str | EmbeddingPrecision, truncate_dim: int | None,
                    ranges: np.ndarray | None, max_active_dims: int | None) -> int | None:  # fmt: skip
    """``max_active_dims``, checked; the dense-only options refused for a sparse bundle (and it for a dense one)."""
    if not sparse:
        if max_active_dims is not None:
            raise ValueError("max_active_dims applies to sparse (SPLADE) bundles; this bundle gives dense vectors")
        return None
    refuse_options("applies to dense vectors; a sparse (SPLADE) bundle's are token weights (max_active_dims keeps "
                   "the largest of them)", normalize=normalize, truncate_dim=truncate_dim, ranges=ranges,
                   precision=precision)  # fmt: skip
    return None if max_active_dims is None else check_int(max_active_dims, "max_active_dims")


def refuse_options(why: str, *, normalize: bool = False, precision: str | EmbeddingPrecision = EmbeddingPrecision.FLOAT32,
                   **given: object) -> None:  # fmt: skip
    """Refuse the first of these options that is set (``normalize`` true, ``precision`` other than
    float32, any other not None): ``"{name} {why}"``."""
    set_ = {"normalize": normalize or None,
            "precision": None if parse(EmbeddingPrecision, precision, "precision") is EmbeddingPrecision.FLOAT32 else precision,
            **given}  # fmt: skip
    for name, value in set_.items():
        if value is not None:
            raise ValueError(f"{name} {why}")


def chunker(model: BundleModel | Path, tokens: int | str | None, overlap: int, text: bool, prompt_name: str | None,
            prompt: str | None, pages: bool = False) -> Chunker | None:  # fmt: skip
    """The chunker for ``chunk_tokens=tokens`` (None: texts are truncated, as sentence-transformers
    does); ``model``: an ``Embedder``, or a bundle folder (its manifest and tokenizer alone are read)."""
    if tokens is None:
        given = [name for name, v in (("chunk_overlap", overlap), ("chunk_text", text), ("chunk_pages", pages)) if v]
        if given:
            raise ValueError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to chunking: give "
                             f"chunk_tokens too (--chunk-tokens)")  # fmt: skip
        return None
    if isinstance(model, BundleModel):
        return model._chunker(tokens, overlap, prompt_name, prompt)
    manifest = load_manifest(model, verify=False)
    return window_chunker(manifest, load_tokenizer(model / TOKENIZER_NAME, manifest.max_seq_length), tokens, overlap,
                          prompt_name, prompt)  # fmt: skip


def _rows_done(prep: Prepared, work: int, on_rows: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """``on_rows`` for a model run of ``work`` inputs (windows, distinct texts) on behalf of
    ``prep``'s rows, which the caller counts."""
    if on_rows is None or work == len(prep.rows):
        return on_rows
    if work == 0:  # nothing to run: the rows are done now
        on_rows(len(prep.rows))
        return None
    return _RowsDone(len(prep.rows), work, on_rows)


class _RowsDone:
    """``on_rows`` in input rows for a caller that counts rows while the model runs something else
    (windows; distinct texts): the rows' share of the model's work done so far (batches run longest
    first, so rows finish in no set order)."""

    def __init__(self, rows: int, windows: int, on_rows: Callable[[int], None]) -> None:
        self.rows, self.windows, self.on_rows = rows, max(windows, 1), on_rows
        self.done = self.told = 0

    def __call__(self, windows: int) -> None:
        self.done += windows
        rows = self.rows * self.done // self.windows
        if rows > self.told:
            self.on_rows(rows - self.told)
            self.told = rows


def _with_chunk_columns(table: pa.Table, prep: Prepared, has_vector: np.ndarray) -> pa.Table:
    """``table`` (a row per window) with each window's place in its text and the characters it covers."""
    assert prep.chunks is not None
    n, mask = len(has_vector), ~has_vector if not has_vector.all() else None
    columns = {"chunk": prep.chunks.index, "chunk_start": prep.chunks.start, "chunk_end": prep.chunks.end,
               **({CHUNK_PAGE: prep.chunk_pages} if prep.chunk_pages is not None else {})}  # fmt: skip
    for name, values in columns.items():
        full = np.zeros(n, values.dtype)
        full[has_vector] = values
        kind = CHUNK_COLUMNS.get(name, pa.int32())  # the page: int32
        table = table.append_column(name, pa.array(full, kind, mask=mask if name != "chunk" else None))
    if prep.chunk_texts is not None:
        pieces: list[str | None] = [None] * n
        for k, at in enumerate(np.flatnonzero(has_vector).tolist()):
            pieces[at] = prep.chunk_texts[k]
        table = table.append_column(CHUNK_TEXT, pa.array(pieces, pa.string()))
    return table


def _pages(texts: list[str], windows: Chunks) -> np.ndarray:
    """The page each window begins on: the form feeds in its text before its first character, plus one."""
    feeds: dict[int, list[int]] = {}
    out = np.ones(len(windows.start), np.int32)
    for k, (t, a) in enumerate(zip(windows.text.tolist(), windows.start.tolist(), strict=True)):
        if t not in feeds:
            found, at = [], texts[t].find("\f")
            while at >= 0:
                found.append(at)
                at = texts[t].find("\f", at + 1)
            feeds[t] = found
        out[k] += bisect.bisect_left(feeds[t], a)
    return out


def bad_row(table: pa.Table, i: int, reason: str, id_column: str | None, first: int = 0) -> BadRow:
    """Row ``i`` of ``table`` as a ``BadRow``: its file and line from the readers' metadata, its id
    (``first``: the row number of the table's first row, where rows are named by number)."""
    meta = table.schema.metadata or {}
    own = table.column(FILE)[i].as_py() if FILE in table.column_names else None  # a document's
    file = own or meta.get(FILE_KEY, b"").decode() or None
    position = meta.get(POSITION_KEY, b"line").decode()
    line = table.column(LINE)[i].as_py() if LINE in table.column_names else None
    id_col = id_column or ("id" if BAD in table.column_names else None)
    ident = table.column(id_col)[i].as_py() if id_col and id_col in table.column_names else first + i
    if file is None:
        position, line = "row", first + i
    return BadRow(ident, reason, file, line, position)


def output_settings(
    dim: int, precision: str | EmbeddingPrecision, truncate_dim: int | None, ranges: np.ndarray | None,
    sparse: bool = False,
) -> tuple[EmbeddingPrecision, int | None, np.ndarray | None, pa.DataType]:
    """The output settings for ``dim``-wide model vectors, checked, and the embedding column's type.

    One scale for the whole corpus: int8/uint8 need ``ranges``. ``sparse``: a sparse bundle's
    vectors (see ``sparse_settings``)."""
    prec = parse(EmbeddingPrecision, precision, "precision")
    if sparse:
        return prec, None, None, SPARSE_TYPE
    if truncate_dim is not None:
        truncate_dim = check_int(truncate_dim, "truncate_dim", 1, dim, why=" (the model's dimension)")
    if prec in (EmbeddingPrecision.INT8, EmbeddingPrecision.UINT8):
        if ranges is None:
            raise ValueError(
                f"precision {prec.value!r} over a corpus needs fixed calibration ranges, the same for every batch: "
                "compute them on a sample with embedrt.quantization_ranges(vectors) and pass ranges= (--ranges FILE.npy)"
            )
        ranges = quantization_ranges(np.zeros((2, truncate_dim or dim), np.float32), prec, ranges=ranges)
    elif ranges is not None:
        raise ValueError(f"ranges apply to int8/uint8 output, not to precision {prec.value!r}")
    width, dtype = quantized_shape(truncate_dim or dim, prec)
    return prec, truncate_dim, ranges, pa.list_(pa.from_numpy_dtype(dtype), width)


def _texts(table: pa.Table, source: TextSource) -> tuple[list[Any], list[str | None]]:
    """The texts and, per row, why it cannot be embedded (None where it can)."""
    if BAD in table.column_names:  # read by embedrt's readers: problems are already named
        return table.column(TEXT).to_pylist(), table.column(BAD).to_pylist()
    return source.from_table(table)


def text_source(text_column: str, text_template: str | None) -> TextSource:
    """Where rows' texts come from; a column and a template at once are refused."""
    if text_template is not None and text_column != "text":
        raise ValueError(f"give text_column ({text_column!r}) or text_template ({text_template!r}), not both: "
                         "a template names its columns itself")  # fmt: skip
    return TextSource.of(text_column, text_template)


TEXT_COLUMN = TEXT  # the column embedrt's readers put texts in
