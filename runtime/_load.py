"""``load_model``: the class a bundle's kind calls for, loaded (one hash check, one session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._bundle import load_manifest
from ._embedder import Embedder
from ._objects import local_bundle
from ._reranker import Reranker
from ._sparse_encoder import SparseEncoder
from ._types import AUTO, BundleKind, Device

CLASSES: dict[BundleKind, type[Embedder | Reranker | SparseEncoder]] = {
    BundleKind.EMBEDDING: Embedder,
    BundleKind.STATIC: Embedder,
    BundleKind.RERANKER: Reranker,
    BundleKind.SPARSE: SparseEncoder,
}


def load_model(bundle: str | Path, device: str | Device = AUTO, **kwargs: Any) -> Embedder | Reranker | SparseEncoder:
    """An ``Embedder``, ``Reranker`` or ``SparseEncoder``, as the bundle's manifest ``kind`` says.

    ``kwargs`` go to that class (``threads``, ``verify``, ...).
    """
    bundle = local_bundle(bundle)  # an s3:// or gs:// bundle: its copy in the local cache
    kind = load_manifest(bundle, verify=False).kind  # the class checks every hash once, below
    return CLASSES[kind](bundle, device, **kwargs)
