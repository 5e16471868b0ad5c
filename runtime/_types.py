"""Closed sets of embedrt, as enums. User strings become enums at the boundary via ``parse``."""

from __future__ import annotations

import numbers
from enum import Enum
from typing import TypeVar

# the value of the options a model resolves for its device and threads (max_batch_tokens, streams)
AUTO = "auto"

E = TypeVar("E", bound=Enum)


class Pooling(str, Enum):
    """Pooling modes, named and computed as sentence-transformers does."""

    CLS = "cls"
    MAX = "max"
    MEAN = "mean"
    MEAN_SQRT_LEN = "mean_sqrt_len_tokens"
    WEIGHTED_MEAN = "weightedmean"
    LAST_TOKEN = "lasttoken"
    POOLER = "pooler"  # the model's own pooler (BERT: dense + tanh over the first token), pooler_output


class PaddingSide(str, Enum):
    """Where a batch's shorter inputs get their padding: the side the model's tokenizer pads."""

    RIGHT = "right"
    LEFT = "left"


class BundleKind(str, Enum):
    """What a bundle's graph computes; it decides the class that serves it and the server's routes."""

    EMBEDDING = "embedding"  # a transformer, pooling inside: one dense vector per text
    STATIC = "static"  # a token-embedding lookup and a pooling, no transformer: one dense vector per text
    RERANKER = "reranker"  # a cross-encoder: one score per (query, document) pair
    SPARSE = "sparse"  # vocabulary-sized weights per text (SPLADE-style)


class Precision(str, Enum):
    """Numeric precision of a bundle's graph (its inputs and outputs stay int64 / float32)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Device(str, Enum):
    """Where a graph runs: an ONNX Runtime execution provider (each needs its onnxruntime build)."""

    CPU = "cpu"
    CUDA = "cuda"
    OPENVINO = "openvino"


# The providers each graph precision is made for: fp16 kernels are CUDA's (the CPU provider runs
# them slowly, converting around each op), int8 ones (DynamicQuantizeMatMul, MatMulNBits) the CPU's.
MADE_FOR: dict[Precision, tuple[Device, ...]] = {
    Precision.FP32: (Device.CPU, Device.CUDA, Device.OPENVINO),
    Precision.FP16: (Device.CUDA,),
    Precision.INT8: (Device.CPU,),
}


class InferencePrecision(str, Enum):
    """A provider's own compute precision for an fp32 graph (OpenVINO's INFERENCE_PRECISION_HINT)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class SimilarityFunction(str, Enum):
    """How two embeddings are compared, as sentence-transformers names it (``similarity_fn_name``)."""

    COSINE = "cosine"
    DOT = "dot"
    EUCLIDEAN = "euclidean"  # negative L2 distance: larger is more similar
    MANHATTAN = "manhattan"  # negative L1 distance


class EmbeddingPrecision(str, Enum):
    """Output precision of embeddings, as sentence-transformers' ``quantize_embeddings`` names it."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"  # half floats: half the bytes, 11 significant bits (not one of sentence-transformers')
    INT8 = "int8"  # per-dimension calibration ranges, 256 buckets, shifted to -128..127
    UINT8 = "uint8"  # the same buckets, 0..255
    BINARY = "binary"  # one bit per dimension (> 0), packed into bytes, shifted to int8
    UBINARY = "ubinary"  # the same bits, packed into uint8


class ScoreActivation(str, Enum):
    """What a reranker applies to its logits (sentence-transformers' CrossEncoder ``activation_fn``)."""

    SIGMOID = "sigmoid"
    IDENTITY = "identity"
    TANH = "tanh"
    SOFTMAX = "softmax"  # over the labels


class SpladePooling(str, Enum):
    """How a sparse (SPLADE) encoder pools its per-token vocabulary weights."""

    MAX = "max"
    SUM = "sum"


class SpladeActivation(str, Enum):
    """The transform of MLM logits before pooling: log(1 + relu(x)), or that applied twice."""

    RELU = "relu"
    LOG1P_RELU = "log1p_relu"


class OutputValue(str, Enum):
    SENTENCE_EMBEDDING = "sentence_embedding"
    TOKEN_EMBEDDINGS = "token_embeddings"


def parse(enum_cls: type[E], value: object, what: str) -> E:
    """Turn ``value`` into a member of ``enum_cls``; a bad value gets an error listing the valid ones."""
    if isinstance(value, enum_cls):
        return value
    for member in enum_cls:
        if value == member.value or (isinstance(value, str) and value.lower() == member.value):
            return member
    valid = ", ".join(repr(m.value) for m in enum_cls)
    raise ValueError(f"invalid {what} {value!r}: expected one of {valid}")


def check_int(value: object, what: str, low: int = 1, high: int | None = None, *, also: str = "", why: str = "") -> int:
    """``value`` as an ``int`` from ``low`` (to ``high``): Python and numpy integers, not bools; else a
    ``ValueError`` naming ``what``, what it must be (``also``: the other values it may take) and the value."""
    n = int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None
    if n is None or n < low or (high is not None and n > high):
        if high is not None:
            expected = f"an integer from {low} to {high}{why}"
        else:
            expected = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{what} must be {expected}{also}, got {value!r}")
    return n
