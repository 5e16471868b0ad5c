"""Writing embeddings to files: .npy, .parquet, .jsonl. Never pickle."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMATS = (".npy", ".parquet", ".jsonl")


def check_output_path(path: Path) -> Path:
    """Refuse an unknown format before any work is done."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"output {str(path)!r} has extension {path.suffix!r}; expected one of {FORMATS}")
    return path


def write_embeddings(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    """Write ``path`` whole: into a temporary file beside it, then renamed over it; an error or an
    interrupt leaves no partial file and any earlier ``path`` as it was."""
    suffix = check_output_path(path).suffix.lower()
    if suffix == ".parquet":
        _require_pyarrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        _write(tmp, suffix, texts, vectors)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write(path: Path, suffix: str, texts: list[str], vectors: np.ndarray) -> None:
    if suffix == ".npy":
        with path.open("wb") as f:
            np.save(f, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    elif suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for text, vec in zip(texts, vectors, strict=True):
                f.write(json.dumps({"text": text, "embedding": vec.tolist()}, ensure_ascii=False) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = vectors.shape[1]
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table({"text": pa.array(texts, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
        pq.write_table(table, path)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError('writing .parquet needs pyarrow: pip install "embedrt[parquet]"') from e
