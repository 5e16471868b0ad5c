"""The batch function: an Arrow table of texts in, the same rows with an ``embedding`` column out.

One callable serves every backend: the local job calls ``prepare`` (checks and tokenization, on a
reader thread) and ``run`` (the model) separately so that the two overlap; Ray Data actors call it
as ``table -> table``. The model is built once per instance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._embedder import Embedder
from .._errors import EmbedrtError
from .._quantization import quantization_ranges, quantize_embeddings, quantized_shape
from .._tokenize import Tokenized
from .._types import EmbeddingPrecision, check_int, parse
from ._readers import BAD, FILE_KEY, INTERNAL, LINE, POSITION_KEY, TEXT, arrow_texts


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
        where = f"{self.file} {self.position} {self.line}" if self.file else "row"
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
    tokens: Tokenized
    bad: list[BadRow]
    keep: np.ndarray  # indices into ``table`` of the output rows (skip: the good ones; else all)


@dataclass
class BatchResult:
    table: pa.Table
    bad: list[BadRow] = field(default_factory=list)
    tokens: int = 0


class EmbedBatch:
    """``table -> table`` with an embedding column, as Ray Data's ``map_batches`` takes it.

    Args:
        model: an ``Embedder`` or a bundle folder (then built here, with ``device``/``threads``/
            ``streams``; ``streams="auto"``: one batch per thread at once on the CPU provider).
        text_column: the column holding the texts.
        id_column: the column naming rows in error messages and bad-row records (row index if none).
        on_error: ``"fail"``, ``"skip"`` or ``"null"``.
        output_column: name of the embedding column (a fixed-size list of float32, or of the
            ``precision``'s integers).
        precision: ``float32``, ``int8``, ``uint8``, ``binary`` or ``ubinary``, as
            ``embedrt.quantize_embeddings``; int8/uint8 need ``ranges`` (shape ``(2, dim)``), the same
            for every batch of a corpus (``embedrt.quantization_ranges`` on a sample).
        truncate_dim: keep the first dimensions of every vector (Matryoshka models).
    """

    def __init__(
        self,
        model: Embedder | str | Path,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        on_error: str | OnError = OnError.FAIL,
        batch_size: int = 32,
        normalize: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        output_column: str = "embedding",
        device: str = "cpu",
        threads: int | None = None,
        precision: str | EmbeddingPrecision = EmbeddingPrecision.FLOAT32,
        truncate_dim: int | None = None,
        ranges: np.ndarray | None = None,
        streams: int | str = "auto",
    ) -> None:
        self.model = (
            model if isinstance(model, Embedder) else Embedder(model, device=device, threads=threads, streams=streams)
        )
        self.text_column = text_column
        self.id_column = id_column
        self.on_error = parse(OnError, on_error, "on_error")
        self.batch_size = check_int(batch_size, "batch_size")
        self.normalize = normalize
        self.prompt_name, self.prompt = prompt_name, prompt
        self.model.tokenize([], prompt_name, prompt)  # a bad prompt name fails here, not mid-job
        self.output_column = output_column
        self.precision, self.truncate_dim, self.ranges, self.type = output_settings(
            self.model.dimension, precision, truncate_dim, ranges
        )

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.run(self.prepare(table)).table

    def prepare(self, table: pa.Table) -> Prepared:
        """Check every row and tokenize the good ones (raises ``BadRowError`` under ``fail``)."""
        if self.text_column not in table.column_names:
            raise ValueError(f"the batch has no column {self.text_column!r}; its columns are {table.column_names}")
        if self.output_column in table.column_names:
            raise ValueError(f"the batch already has a column {self.output_column!r}; choose another output_column")
        texts, reasons = _texts(table, self.text_column)
        bad_idx = [i for i, r in enumerate(reasons) if r is not None]
        bad = [bad_row(table, i, reasons[i], self.id_column) for i in bad_idx]  # type: ignore[arg-type]
        if bad and self.on_error is OnError.FAIL:
            raise BadRowError(bad[0])
        good = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
        tokens = self.model.tokenize([texts[i] for i in good], self.prompt_name, self.prompt)  # type: ignore[misc]
        keep = good if self.on_error is OnError.SKIP else np.arange(len(texts), dtype=np.int64)
        public = table.drop_columns([c for c in INTERNAL if c in table.column_names])
        return Prepared(public, good, tokens, bad, keep)

    def run(self, prep: Prepared, on_rows: Callable[[int], None] | None = None) -> BatchResult:
        """Embed the prepared rows; the output keeps the input's row order. ``on_rows(n)`` as each
        model batch of ``n`` rows is done."""
        dim = self.type.list_size
        vectors = self.model.encode_tokenized(
            prep.tokens, self.batch_size, self.normalize or None, truncate_dim=self.truncate_dim, on_rows=on_rows
        )
        assert isinstance(vectors, np.ndarray)  # sentence embeddings, by construction
        if self.precision is not EmbeddingPrecision.FLOAT32:
            vectors = quantize_embeddings(vectors, self.precision, ranges=self.ranges)
        n = len(prep.keep)
        if n == len(prep.rows):  # every output row has a vector
            flat, mask = vectors.reshape(-1), None
        else:
            full = np.zeros((n, dim), vectors.dtype)
            full[prep.rows] = vectors
            flat = full.reshape(-1)
            mask = np.ones(n, bool)
            mask[prep.rows] = False
            mask = pa.array(mask)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(flat, self.type.value_type), dim, mask=mask)
        table = prep.table if n == prep.table.num_rows else prep.table.take(pa.array(prep.keep))
        return BatchResult(table.append_column(self.output_column, emb), prep.bad, int(prep.tokens.lengths.sum()))


def bad_row(table: pa.Table, i: int, reason: str, id_column: str | None) -> BadRow:
    """Row ``i`` of ``table`` as a ``BadRow``: its file and line from the readers' metadata, its id."""
    meta = table.schema.metadata or {}
    file = meta.get(FILE_KEY, b"").decode() or None
    position = meta.get(POSITION_KEY, b"line").decode()
    line = table.column(LINE)[i].as_py() if LINE in table.column_names else None
    id_col = id_column or ("id" if BAD in table.column_names else None)
    ident = table.column(id_col)[i].as_py() if id_col and id_col in table.column_names else i
    if file is None:
        position, line = "row", i
    return BadRow(ident, reason, file, line, position)


def output_settings(
    dim: int, precision: str | EmbeddingPrecision, truncate_dim: int | None, ranges: np.ndarray | None
) -> tuple[EmbeddingPrecision, int | None, np.ndarray | None, pa.DataType]:
    """The output settings for ``dim``-wide model vectors, checked, and the embedding column's type.

    One scale for the whole corpus: int8/uint8 need ``ranges``."""
    prec = parse(EmbeddingPrecision, precision, "precision")
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


def _texts(table: pa.Table, column: str) -> tuple[list[Any], list[str | None]]:
    """The texts and, per row, why it cannot be embedded (None where it can)."""
    col = table.column(column)
    if BAD in table.column_names:  # read by embedrt's readers: problems are already named
        return col.to_pylist(), table.column(BAD).to_pylist()
    return arrow_texts(col)


TEXT_COLUMN = TEXT  # the column embedrt's readers put texts in
