"""Rotary embeddings on onnxruntime's ``RotaryEmbedding`` kernel: each rewritten rotation computes
what the exported one did, and a rotation the kernel would compute differently is left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_families import make_family

from embedrt.export import export_model
from embedrt.export._rotary import fuse_rotary

HEADS, D = 2, 8


def _rope_graph(positions: str = "shape", halves: str = "concat", cut: int = D // 2) -> onnx.ModelProto:
    """``y = x * cos + rotate_half(x) * sin`` as transformers writes it, on ``x [batch, 2, sequence, 8]``,
    with the positions taken from ``x``'s shape (``"shape"``), stretched over the length
    (``"stretched"``) or counted from the mask (``"mask"``),
    the table's halves equal (``"concat"``) or interleaved, and the head cut at ``cut``."""
    n = helper.make_node
    inv = 1.0 / (10000 ** (np.arange(0, D, 2) / D))
    nodes = [n("Shape", ["x"], ["shape"]), n("Gather", ["shape", "two"], ["seq"], axis=0)]
    if positions == "shape":
        nodes.append(n("Range", ["zero", "seq", "one"], ["pos_i"]))
    elif positions == "stretched":  # the positions spread over 0 .. 8 whatever the length: rows depend on it
        nodes += [n("Range", ["zero", "seq", "one"], ["r"]), n("Mul", ["r", "eight"], ["r8"]), n("Div", ["r8", "seq"], ["pos_i"])]
    else:  # position = how many real tokens came before, as some exporters compute it from the mask
        nodes += [n("CumSum", ["mask_row", "zero"], ["count"]), n("Sub", ["count", "one"], ["pos_i"])]
        nodes.insert(0, n("Gather", ["attention_mask", "zero"], ["mask_row"], axis=0))
    nodes += [
        n("Cast", ["pos_i"], ["pos"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["pos", "axis1"], ["pos_col"]),
        n("Mul", ["pos_col", "inv_freq"], ["freqs"]),  # [S, 4]
    ]
    if halves == "concat":
        nodes.append(n("Concat", ["freqs", "freqs"], ["emb"], axis=-1))
    else:  # each frequency twice in a row: the interleaved form, whose halves differ
        nodes += [n("Unsqueeze", ["freqs", "axis_last"], ["f3"]), n("Concat", ["f3", "f3"], ["f2"], axis=-1),
                  n("Reshape", ["f2", "flat_shape"], ["emb"])]  # fmt: skip
    nodes += [
        n("Cos", ["emb"], ["cos2"]), n("Sin", ["emb"], ["sin2"]),
        n("Unsqueeze", ["cos2", "axes01"], ["cos"]), n("Unsqueeze", ["sin2", "axes01"], ["sin"]),
        n("Slice", ["x", "start", "cut", "axis_last"], ["x1"]),
        n("Slice", ["x", "cut", "big", "axis_last"], ["x2"]),
        n("Neg", ["x2"], ["nx2"]),
        n("Concat", ["nx2", "x1"], ["rot"], axis=-1),
        n("Mul", ["x", "cos"], ["a"]), n("Mul", ["rot", "sin"], ["b"]), n("Add", ["a", "b"], ["y"]),
    ]
    ints = {"zero": 0, "one": 1, "two": 2, "eight": 8, "start": [0], "cut": [cut], "big": [2**62], "axis1": [1],
            "axis_last": [-1], "axes01": [0, 1], "flat_shape": [0, -1]}  # fmt: skip
    used = {i for node in nodes for i in node.input}
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in ints.items() if k in used]
    inits.append(numpy_helper.from_array(inv.astype(np.float32), "inv_freq"))
    graph = helper.make_graph(
        nodes, "rope",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", HEADS, "sequence", D]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", HEADS, "sequence", D])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {k: v for k, v in feeds.items() if k in {i.name for i in session.get_inputs()}})


def _feeds(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[-1, seq // 2 + 1:] = 0
    return {"x": rng.standard_normal((batch, HEADS, seq, D)).astype(np.float32), "attention_mask": mask}


def _rotate_half(x: np.ndarray) -> np.ndarray:
    h = x.shape[-1] // 2
    pos = np.arange(x.shape[2])[:, None] * (1.0 / (10000 ** (np.arange(0, D, 2) / D)))[None]
    cos, sin = np.cos(np.concatenate([pos, pos], -1)), np.sin(np.concatenate([pos, pos], -1))
    return x * cos + np.concatenate([-x[..., h:], x[..., :h]], -1) * sin


def test_the_kernel_computes_the_rotation_the_graph_did() -> None:
    plain = _rope_graph()
    fused = _rope_graph()
    assert fuse_rotary(fused, 64) == {"rotary": 1, "positions": 64}
    assert [node.op_type for node in fused.graph.node] == ["RotaryEmbedding"]
    for batch, seq in ((1, 1), (3, 7), (2, 64)):
        feeds = _feeds(batch, seq, seed=seq)
        want = _run(plain, feeds)[0]
        np.testing.assert_allclose(want, _rotate_half(feeds["x"]), atol=1e-5)
        np.testing.assert_allclose(_run(fused, feeds)[0], want, atol=2e-6)


def test_an_input_longer_than_the_tables_is_refused_not_wrapped() -> None:
    fused = _rope_graph()
    fuse_rotary(fused, 16)
    with pytest.raises(Exception, match="cos_cache"):
        _run(fused, _feeds(1, 17))


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ({"positions": "mask"}, "depends on the graph's input 'attention_mask'"),
        ({"halves": "interleaved"}, "are not the rotate-half tables of positions 0 .. S - 1"),
        ({"positions": "stretched"}, "are not the rotate-half tables of positions 0 .. S - 1"),
        ({"cut": 3}, "takes [0:3] of a head of 8, not [0:4]"),
    ],
)
def test_a_rotation_the_kernel_would_compute_differently_is_left_as_exported(kind: dict[str, object], why: str) -> None:
    model = _rope_graph(**kind)  # type: ignore[arg-type]
    before = model.SerializeToString()
    record = fuse_rotary(model, 64)
    assert record["rotary"] == 0 and record["left"] == 1 and why in record["why"]
    assert model.SerializeToString() == before


def test_a_graph_without_rotary_embeddings_records_nothing() -> None:
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    assert fuse_rotary(helper.make_model(graph), 64) == {}


@pytest.mark.parametrize("name", ["modernbert", "qwen3"])
def test_every_query_and_key_rotation_of_an_exported_model_is_unchanged(name: str, tmp_path: Path) -> None:
    """The exported graph (ModernBERT: the query read through ``Cast``s, two rotary bases; Qwen3:
    grouped keys after their norm) with each rotation compared directly, where a tiny model's
    attention would hide a wrong one, at lengths around the tables' first rows, with padding."""
    bundle = export_model(make_family(name, tmp_path / "src"), tmp_path / "b", optimize=False)
    plain = onnx.load(str(bundle / "model.onnx"))
    fused = onnx.ModelProto()
    fused.CopyFrom(plain)
    record = fuse_rotary(fused, 64)
    rotated = [node.output[0] for node in fused.graph.node if node.op_type == "RotaryEmbedding"]
    assert record == {"rotary": 4, "positions": 64} and len(rotated) == 4
    for model in (plain, fused):
        model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in rotated)
    vocab = 100
    for batch, seq in ((1, 3), (3, 40)):
        rng = np.random.default_rng(seq)
        mask = np.ones((batch, seq), np.int64)
        mask[-1, : seq // 2] = 0  # left padding where the family pads left, and nowhere it matters else
        feeds = {"input_ids": rng.integers(3, vocab, (batch, seq)).astype(np.int64), "attention_mask": mask}
        want, got = _run(plain, feeds, rotated), _run(fused, feeds, rotated)
        for t, w, g in zip(rotated, want, got, strict=True):
            assert np.abs(w).max() > 0.1, t  # a rotation of something, not of zeros
            np.testing.assert_allclose(g, w, atol=2e-6 * np.abs(w).max(), err_msg=t)
