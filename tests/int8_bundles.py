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
