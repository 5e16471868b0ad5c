"""What the int8 recipe tests compare: the tiny BERT's int8 graph (flash attention) by chosen recipes,
in bundles, without the export's gate; and one fp32 MatMul with a bias, to quantize by hand."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from embedrt import Precision
from embedrt._bundle import MODEL_NAME, load_manifest, write_manifest

if TYPE_CHECKING:
    from embedrt.export._quantize import Int8Recipe


def int8_bundles(source: Path, root: Path, recipes: dict[str, Int8Recipe]) -> dict[str, Path]:
    """``{"fp32": the plain fp32 bundle, name: its int8 bundle per recipe}``, built under ``root``."""
    from transformers import AutoTokenizer

    from embedrt.export import export_model
    from embedrt.export._export import calibration_texts
    from embedrt.export._smooth import calibration_feeds
    from embedrt.export._variants import apply_variant

    plain = export_model(source, root / "plain", optimize=False)
    tok = AutoTokenizer.from_pretrained(str(source))
    feeds = calibration_feeds(tok, calibration_texts(32), ["input_ids", "attention_mask", "token_type_ids"], 64)
    cfg = {"config": {"model_type": "bert", "num_attention_heads": 2, "hidden_size": 32}, "fusion": "bert"}
    out: dict[str, Path] = {"fp32": plain}
    for name, recipe in recipes.items():
        path = root / name
        shutil.copytree(plain, path)
        record = apply_variant(plain / MODEL_NAME, path / MODEL_NAME, "int8", None, cfg, int8_recipe=recipe,
                               calibration=feeds)  # fmt: skip
        manifest = load_manifest(path, verify=False)
        manifest.precision, manifest.optimizations = Precision.INT8, record
        write_manifest(path, manifest)
        out[name] = path
    return out


def one_matmul(tmp_path: Path, k: int = 64, n: int = 48) -> tuple[Path, np.ndarray, np.ndarray]:
    """``x @ w + b`` as a fp32 graph at ``tmp_path / "fp32.onnx"``; returns it, ``w`` and ``b``."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"], name="mm"), helper.make_node("Add", ["xw", "b"], ["y"], name="add")],
        "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    path = tmp_path / "fp32.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, w, b


def pair_limited(model: onnx.ModelProto, w: np.ndarray) -> np.ndarray:
    """Give ``quantize_dynamic``'s graph of ``one_matmul`` the exporter's pair-limited int8 weights
    (in place); return their dequantized value."""
    from embedrt.export._int8_weights import quantize_columns

    q, scale = quantize_columns(w, "pairs")
    for t in model.graph.initializer:
        if t.name in ("w_quantized", "w_scale"):
            t.CopyFrom(numpy_helper.from_array(q if t.name == "w_quantized" else scale, t.name))
    return q.astype(np.float32) * scale


def assert_exact_on_every_kernel(bundle: Path) -> None:
    """This CPU's u8s8 kernel and onnxruntime's exact u8u8 path give ``bundle`` the same vectors."""
    from embedrt import Embedder
    from embedrt._base import INT8_UNFUSED
    from embedrt._int8_cpu import PRECISION_OPTION
    from embedrt._session import create_session
    from embedrt.export._texts import validation_texts

    fast = Embedder(bundle)
    exact = Embedder(bundle)
    exact.session = create_session(bundle / MODEL_NAME, "cpu", exact.threads,
                                   session_config={PRECISION_OPTION: "1"}, disabled_optimizers=INT8_UNFUSED)  # fmt: skip
    np.testing.assert_allclose(fast.encode(validation_texts()), exact.encode(validation_texts()), atol=2e-6)


# Texts of every length and kind, batched together: the long and loud ones move a short one's
# int8 vector where a scale depends on the batch.
MIXED_TEXTS = [
    "a short one",
    "대한민국은 민주공화국이다.",
    "A MUCH LONGER SENTENCE, WITH PUNCTUATION!!! AND NUMBERS 1234567890 TO STRETCH THE BATCH OUT",
    "",
    "🙂🚀 emoji",
    "the quick brown fox jumps over the lazy dog " * 6,
]


def batch_gap(bundle: Path) -> float:
    """The largest difference between ``MIXED_TEXTS`` embedded one by one and all in one batch."""
    from embedrt import Embedder

    model = Embedder(bundle)
    alone = np.stack([model.encode([t])[0] for t in MIXED_TEXTS])
    return float(np.abs(alone - model.encode(MIXED_TEXTS, batch_size=len(MIXED_TEXTS))).max())
