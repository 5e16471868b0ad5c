"""embedrt: sentence-embedding models as one ONNX graph, served by ONNX Runtime without PyTorch.

    >>> from embedrt import Embedder
    >>> model = Embedder("bundles/all-MiniLM-L6-v2")
    >>> model.encode(["a sentence", "another"]).shape
    (2, 384)

Reranker bundles load as ``Reranker`` (``predict``, ``rank``), sparse ones as ``SparseEncoder``
(``encode`` to indices and values); ``load_model`` picks the class from the bundle's kind.

Exporting (``embedrt.export``) needs the ``export`` extra; this package itself never imports torch.
"""

from ._bundle import SCHEMA_VERSION, Manifest, load_manifest
from ._chunking import EmbeddedChunks
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
from ._load import load_model
from ._quantization import quantization_ranges, quantize_embeddings
from ._reranker import Reranker
from ._session import available_cpus, onnxruntime_build
from ._sparse import SparseEmbeddings, SparseVector
from ._sparse_encoder import SparseEncoder
from ._tokenize import Tokenized
from ._types import BundleKind, Device, EmbeddingPrecision, Pooling, Precision, SimilarityFunction

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "BundleError",
    "BundleKind",
    "Device",
    "EmbeddedChunks",
    "Embedder",
    "EmbeddingPrecision",
    "EmbedrtError",
    "ExportError",
    "Manifest",
    "ParityError",
    "Pooling",
    "Precision",
    "ProviderError",
    "ProviderWarning",
    "Reranker",
    "SimilarityFunction",
    "SparseEmbeddings",
    "SparseEncoder",
    "SparseVector",
    "Tokenized",
    "UnsupportedModelError",
    "__version__",
    "available_cpus",
    "load_manifest",
    "load_model",
    "onnxruntime_build",
    "quantization_ranges",
    "quantize_embeddings",
]
