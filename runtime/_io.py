"""Writing embeddings to files: .npy, .parquet, .jsonl. Never pickle; every file is written whole
(``_files.written_whole``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._files import written_whole
from ._sparse import SparseEmbeddings

FORMATS = (".npy", ".parquet", ".jsonl")


def check_output_path(path: Path) -> Path:
    """Refuse an unknown format before any work is done."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"output {str(path)!r} has extension {path.suffix!r}; expected one of {FORMATS}")
    return path


def write_embeddings(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    """Float vectors as float32; quantized ones (int8, uint8, packed bits) keep their integer type."""
    suffix = check_output_path(path).suffix.lower()
    dtype = vectors.dtype if vectors.dtype in (np.int8, np.uint8) else np.float32
    vectors = np.ascontiguousarray(vectors, dtype=dtype)
    with written_whole(path) as tmp:
        if suffix == ".npy":
            with tmp.open("wb") as f:
                np.save(f, vectors, allow_pickle=False)
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as f:
                for text, vec in zip(texts, vectors, strict=True):
                    f.write(json.dumps({"text": text, "embedding": vec.tolist()}, ensure_ascii=False) + "\n")
        else:
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError as e:
                raise ImportError('writing .parquet needs pyarrow: pip install "embedrt[parquet]"') from e
            flat = pa.array(vectors.reshape(-1))
            embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
            pq.write_table(pa.table({"text": pa.array(texts, pa.string()), "embedding": embedding}), tmp)


def write_sparse(path: Path, texts: list[str], vectors: SparseEmbeddings) -> None:
    """Sparse vectors as .jsonl: ``{"text", "indices", "values"}`` per line (other formats are dense)."""
    if check_output_path(path).suffix.lower() != ".jsonl":
        raise ValueError(f"sparse vectors are written as .jsonl (text, indices, values); got {str(path)!r}")
    with written_whole(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for text, vec in zip(texts, vectors, strict=True):
            row = {"text": text, "indices": vec.indices.tolist(), "values": vec.values.tolist()}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
