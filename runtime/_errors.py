"""The exceptions embedrt raises. All derive from ``EmbedrtError``::

    EmbedrtError
    ├── BundleError             a bundle is missing a file, was altered, or is from a newer embedrt
    ├── ProviderError           a requested execution provider is missing or fell back
    └── ExportError             a model could not be exported
        ├── UnsupportedModelError   an architecture or sentence-transformers module we cannot export
        └── ParityError             the exported graph disagrees with PyTorch beyond the tolerance

Bad argument values raise the built-in ``ValueError`` / ``TypeError`` naming the value.

``ProviderWarning`` (a ``UserWarning``) says a bundle runs on a provider it was not made for, e.g.
an fp16 bundle (made for CUDA) on the CPU provider.
"""

from __future__ import annotations

from typing import Any


class EmbedrtError(Exception):
    """Base class of every embedrt error."""


class BundleError(EmbedrtError):
    """A bundle directory cannot be used as it is."""


class ProviderError(EmbedrtError):
    """An ONNX Runtime execution provider was requested that cannot be used."""


class ExportError(EmbedrtError):
    """A model could not be exported."""


class UnsupportedModelError(ExportError):
    """The source uses an architecture or a module embedrt cannot export."""


class ParityError(ExportError):
    """The exported graph's outputs disagree with the PyTorch reference.

    ``report`` holds the full parity report (every metric, the worst input).
    """

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class ProviderWarning(UserWarning):
    """A bundle runs on an execution provider it was not made for (slow, or not what was measured)."""
