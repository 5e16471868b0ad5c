"""What embedrt knows about each architecture (transformers ``model_type``): one frozen spec each.

A spec says how the encoder is loaded (``encoder_class``: the encoder alone of an encoder-decoder
model, as sentence-transformers loads it), which torch.onnx path exports it first (``exporter``, with
the reason), whether onnxruntime's transformer optimizer knows its layers (``fusion``: the
optimizer's model type, or ``None``), and which variants are refused for it and why (``refused``).

An architecture without a spec is exported with the defaults: torchscript first, dynamo if that
fails, no fusion (the optimizer would pattern-match a graph it was not written for), int8 and fp16
left to their quality gates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from embedrt._errors import UnsupportedModelError


class Exporter(str, Enum):
    """torch.onnx's two paths; ``AUTO`` takes the architecture's first choice and falls back to the other."""

    AUTO = "auto"
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


class Variant(str, Enum):
    FUSED = "fused"  # --optimize
    INT8 = "int8"
    FP16 = "fp16"


@dataclass(frozen=True)
class ArchSpec:
    model_type: str
    encoder_class: str | None = None  # a transformers class to load instead of AutoModel
    exporter: Exporter = Exporter.TORCHSCRIPT
    exporter_reason: str = ""
    fusion: str | None = None  # onnxruntime.transformers optimizer model_type; None: --optimize refused
    refused: Mapping[Variant, str] = field(default_factory=lambda: MappingProxyType({}))
    decoder: bool = False  # a causal-LM backbone (last-token pooling, often left padding)
    # local layers see |i - j| <= config.sliding_window (config.layer_types): computed in blocks (_window)
    windowed: bool = False

    def check_variant(self, variant: Variant) -> None:
        """Raise ``UnsupportedModelError`` naming the architecture and the reason if ``variant`` is refused."""
        if variant is Variant.FUSED and self.fusion is None:
            raise UnsupportedModelError(
                f"--optimize is refused for architecture {self.model_type!r}: onnxruntime's transformer "
                "optimizer has no fusion patterns for its layers (it would return the graph unfused or "
                "match patterns written for another architecture). Export without --optimize; int8 "
                "(--precision int8) is the CPU speed variant to try."
            )
        reason = self.refused.get(variant)
        if reason:
            raise UnsupportedModelError(f"{variant.value} is refused for architecture {self.model_type!r}: {reason}")


SPECS: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.model_type in SPECS:
        raise ValueError(f"architecture {spec.model_type!r} is registered twice")
    SPECS[spec.model_type] = spec
    return spec


def spec_for(model_type: str) -> ArchSpec:
    return SPECS.get(model_type) or ArchSpec(model_type)


def _refused(**reasons: str) -> Mapping[Variant, str]:
    return MappingProxyType({Variant(k): v for k, v in reasons.items()})


_BIDIRECTIONAL = (
    "transformers builds its bidirectional attention mask with vmap-based mask functions that the "
    "TorchScript exporter cannot trace; torch.export (dynamo) handles them"
)

# BERT-style encoders whose layers onnxruntime's optimizer fuses as "bert" (tests check each).
for _t in ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "mpnet", "albert"):
    register(ArchSpec(_t, fusion="bert"))
# The optimizer fuses their residual layer norms and GELUs but not their attention (relative-position /
# rotary with local windows); the manifest lists Attention under not_fused. Outputs measured equal.
register(ArchSpec("deberta-v2", fusion="bert"))
register(ArchSpec("modernbert", fusion="bert", windowed=True))
# Encoder-decoder checkpoints: the encoder alone, as sentence-transformers loads sentence-t5 / GTR.
for _t, _cls in (("t5", "T5EncoderModel"), ("mt5", "MT5EncoderModel"), ("umt5", "UMT5EncoderModel")):
    register(ArchSpec(_t, encoder_class=_cls))
for _t in ("qwen3", "qwen2", "mistral", "llama"):
    register(ArchSpec(_t, decoder=True))
register(ArchSpec("gemma3_text", exporter=Exporter.DYNAMO, exporter_reason=_BIDIRECTIONAL, decoder=True))
