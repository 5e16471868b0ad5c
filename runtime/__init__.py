"""embedrt: sentence-embedding models as one ONNX graph, served by ONNX Runtime without PyTorch.

    >>> from embedrt import Embedder
    >>> model = Embedder("bundles/all-MiniLM-L6-v2")
    >>> model.encode(["a sentence", "another"]).shape
    (2, 384)

Exporting (``embedrt.export``) needs the ``export`` extra; this package itself never imports torch.
"""

from ._bundle import SCHEMA_VERSION, Manifest, load_manifest
from ._embedder import Embedder
from ._errors import (
    BundleError,
    EmbedrtError,
    ExportError,
    ParityError,
    ProviderError,
    ProviderWarning,
    UnsupportedModelError,
)
from ._session import available_cpus, onnxruntime_build
from ._tokenize import Tokenized
from ._types import BundleKind, Device, Pooling, Precision

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "BundleError",
    "BundleKind",
    "Device",
    "Embedder",
    "EmbedrtError",
    "ExportError",
    "Manifest",
    "ParityError",
    "Pooling",
    "Precision",
    "ProviderError",
    "ProviderWarning",
    "Tokenized",
    "UnsupportedModelError",
    "__version__",
    "available_cpus",
    "load_manifest",
    "onnxruntime_build",
]
