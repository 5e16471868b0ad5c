"""A benchmark's result file: JSON written whole (a temporary name, then renamed, as embedrt writes
its own files), so that an interrupted run never leaves a half file in ``benchmarks/results/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embedrt._files import write_text_whole


def write_json(out: str | Path, result: Any, **dumps: Any) -> None:
    """``result`` as JSON (indent 1 unless ``dumps`` says otherwise) in ``out``, its folder made if missing."""
    write_text_whole(Path(out), json.dumps(result, **{"indent": 1, **dumps}) + "\n")
