"""The flash-attention rewrite: a packed ``Attention`` and its ``MultiHeadAttention`` form compute
the same rows, padding mask included, up to 512 tokens; what cannot be rewritten exactly is kept."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from embedrt.export._flash import flash_attention

HEADS, HEAD = 4, 8
D = HEADS * HEAD


def _packed(**attrs: object) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((D, 3 * D)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(3 * D) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["mask"], ["mask32"], to=TensorProto.INT32),
        helper.make_node(
            "Attention",
            ["x", "w", "b", "mask32"],
            ["y"],
            name="attn",
            domain="com.microsoft",
            num_heads=HEADS,
            **attrs,
        ),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", D]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["B", "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", D])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("length", [1, 7, 128, 512])
def test_rewrite_computes_the_packed_attention_on_real_rows(length: int) -> None:
    packed = _packed()
    flash = onnx.ModelProto()
    flash.CopyFrom(packed)
    record = flash_attention(flash)
    assert record == {"flash_attention": 1, "kept_packed": []}
    ops = [n.op_type for n in flash.graph.node]
    assert "Attention" not in ops and ops.count("MultiHeadAttention") == 1
    assert {t.name for t in flash.graph.initializer}.isdisjoint({"w", "b"})  # the packed weights are gone
    rng = np.random.default_rng(length)
    batch = 3
    x = rng.standard_normal((batch, length, D)).astype(np.float32)
    lengths = [length, max(1, length // 2), 1]  # unpadded, half padding, one real token
    mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    feed = {"x": x, "mask": mask}
    want, got = _run(packed, feed), _run(flash, feed)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=2e-5, rtol=1e-4)


def test_causal_attention_is_kept_and_named() -> None:
    model = _packed(unidirectional=1)
    record = flash_attention(model)
    assert record["flash_attention"] == 0 and record["kept_packed"] == ["attn: causal (unidirectional)"]
    assert [n.op_type for n in model.graph.node].count("Attention") == 1
