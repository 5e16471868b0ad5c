"""The planning scan's record in an output folder (``_input_scan.arrow``) read as a dict, and written in
the JSON shape of older versions (``_input_scan.json``), for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa


def recorded(where: Path | bytes) -> dict[str, Any]:
    """A record (a file or its bytes) as {"settings", "files": {key: {"stamp", "size", "sha256", and
    a text file's findings}}}."""
    data = where.read_bytes() if isinstance(where, Path) else where
    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    meta = json.loads(table.schema.metadata[b"embedrt"])
    files = {}
    for row in table.to_pylist():
        stamp = [v for v in row["stamp"] if v != -1]
        files[row["key"]] = {"stamp": stamp, "size": row["size"], "sha256": row["sha256"].hex(),
                             **json.loads(row["findings"] or "{}")}  # fmt: skip
    return {**meta, "files": files}


def as_older(record: dict[str, Any], version: int = 1) -> bytes:
    """A record (``recorded``) in the JSON of older versions (``_input_scan.json``)."""
    return json.dumps({**record, "version": version}).encode()
