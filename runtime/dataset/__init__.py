"""Corpus-scale embedding: a whole dataset in, a Parquet dataset of ids and vectors out.

    >>> from embedrt.dataset import embed_dataset
    >>> summary = embed_dataset("corpus/*.jsonl", "vectors/", model="bundles/all-MiniLM-L6-v2", id_column="doc_id")
    >>> print(summary)

Streaming with bounded memory, resumable after a kill, local by default or on Ray Data
(``backend="ray"``, the ``ray`` extra). ``EmbedBatch`` is the batch function both backends run, and
``embed_ray_dataset`` adds an embedding column to a ``ray.data.Dataset`` of your own. Needs pyarrow
(``pip install "embedrt[dataset]"``).
"""

from __future__ import annotations

try:
    import pyarrow  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('corpus jobs need pyarrow: pip install "embedrt[dataset]"') from e

from ._batch import BadRow, BadRowError, EmbedBatch, OnError
from ._claim import OutputInUseError
from ._job import Backend, DatasetSummary, RayOptions, embed_dataset
from ._output import OutputError
from ._ray import ActorLostError, PartFailedError, embed_ray_dataset
from ._score import ScoreBatch
from ._sources import InputError, InputFormat
from ._status import OutputStatus, output_status
from ._storage import StorageError

__all__ = [
    "ActorLostError",
    "Backend",
    "BadRow",
    "BadRowError",
    "DatasetSummary",
    "EmbedBatch",
    "InputError",
    "InputFormat",
    "OnError",
    "OutputError",
    "OutputInUseError",
    "OutputStatus",
    "PartFailedError",
    "RayOptions",
    "ScoreBatch",
    "StorageError",
    "embed_dataset",
    "embed_ray_dataset",
    "output_status",
]
