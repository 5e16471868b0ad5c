"""embedrt.export: a sentence-transformers or Hugging Face model folder becomes an embedrt bundle.

Needs the ``export`` extra (torch, transformers, onnx). ``pip install "embedrt[export]"`` after
``pip install torch==2.13.0`` (or another CPU build) so that pip does not pull CUDA packages.
"""

try:
    import onnx  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in the torch-free test
    raise ImportError(
        f"embedrt.export needs the export extra ({e.name} is missing): "
        'pip install torch==2.13.0 "embedrt[export]"'
    ) from e

from ._export import export_model
from ._validate_bundle import validate_bundle

__all__ = ["export_model", "validate_bundle"]
