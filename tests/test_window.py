"""Windowed attention rewritten: a graph of plain attention layers (local ones reading a window
mask, global ones a padding mask) computes the same rows with its local layers in blocks and its
global ones on the flash kernel, padding included, below and above the length where the blocks
start; a graph that is not what the config says is left as it was."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from embedrt.export._window import Window, flash_globals, local_window, window_blocks

HEADS, HEAD, HALF = 2, 8, 3
D = HEADS * HEAD


def _layer(i: int, x: str, mask: str, rng: np.random.Generator) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """One layer as the exporter writes ModernBERT's: heads split, q k^T, scale, mask, softmax, casts, · v."""
    p = f"l{i}_"
    inits = [numpy_helper.from_array((rng.standard_normal((D, D)) * D**-0.5).astype(np.float32), p + w) for w in "qkv"]
    inits += [numpy_helper.from_array(np.array([0, 0, HEADS, HEAD], np.int64), p + "shape"),
              numpy_helper.from_array(np.array([0, 0, D], np.int64), p + "merged"),
              numpy_helper.from_array(np.array(HEAD**-0.5, np.float32), p + "scale")]  # fmt: skip
    nodes = []
    for w in "qkv":
        nodes += [helper.make_node("MatMul", [x, p + w], [p + w + "x"]),
                  helper.make_node("Reshape", [p + w + "x", p + "shape"], [p + w + "r"]),
                  helper.make_node("Transpose", [p + w + "r"], [p + w + "h"], perm=[0, 2, 1, 3])]  # fmt: skip
    nodes += [
        helper.make_node("Transpose", [p + "kh"], [p + "kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", [p + "qh", p + "kt"], [p + "s"]),
        helper.make_node("Mul", [p + "s", p + "scale"], [p + "s2"]),
        helper.make_node("Add", [p + "s2", mask], [p + "s3"]),
        helper.make_node("Softmax", [p + "s3"], [p + "pr"], axis=-1),
        helper.make_node("Cast", [p + "pr"], [p + "pc"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", [p + "pc", p + "vh"], [p + "y"]),
        helper.make_node("Transpose", [p + "y"], [p + "yt"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", [p + "yt", p + "merged"], [p + "out"]),
    ]
    for n, node in enumerate(nodes):
        node.name = f"{p}{node.op_type}_{n}"
    return nodes, inits, p + "out"


def _graph(local: tuple[bool, ...]) -> onnx.ModelProto:
    """Layers in a row; the masks are inputs, so the plain graph is fed the exact window mask."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i, is_local in enumerate(local):
        n, t, x = _layer(i, x, "local_mask" if is_local else "global_mask", rng)
        nodes += n
        inits += t
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "layers",
        [helper.make_tensor_value_info("x", f, ["batch", "sequence", D]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("local_mask", f, ["batch", 1, "sequence", "sequence"]),
         helper.make_tensor_value_info("global_mask", f, ["batch", 1, "sequence", "sequence"])],
        [helper.make_tensor_value_info("y", f, ["batch", "sequence", D])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(lengths: list[int], seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(lengths) * 1000 + seq)
    mask = (np.arange(seq)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    real = mask[:, None, None, :] == 1
    i = np.arange(seq)
    near = np.abs(i[:, None] - i[None, :]) <= HALF
    lowest = np.finfo(np.float32).min  # as the exporter's masks
    return {
        "x": rng.standard_normal((len(lengths), seq, D)).astype(np.float32),
        "attention_mask": mask,
        "global_mask": np.where(real, 0.0, lowest).astype(np.float32),
        "local_mask": np.where(real & near, 0.0, lowest).astype(np.float32),
    }


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    taken = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in taken})[0]


LOCAL = (False, True, True, False, True)


@pytest.fixture(scope="module")
def graphs() -> dict[str, onnx.ModelProto]:
    """The plain graph, its local layers in blocks, and the global layers on the flash kernel too."""
    blocked = _graph(LOCAL)
    assert window_blocks(blocked, Window(LOCAL, HALF, HEADS)) == {
        "local_blocks": 3, "window": HALF, "block": HALF, "blocks_from_tokens": 4 * HALF + 1}  # fmt: skip
    flashed = onnx.ModelProto()
    flashed.CopyFrom(blocked)
    assert flash_globals(flashed, HEADS) == {"global_flash": 2}
    return {"plain": _graph(LOCAL), "blocks": blocked, "flash": flashed}


def test_each_step_takes_its_layers_and_drops_their_mask(graphs: dict[str, onnx.ModelProto]) -> None:
    blocked, flashed = graphs["blocks"], graphs["flash"]
    read = {i for n in blocked.graph.node for i in n.input}
    assert "local_mask" not in read and "global_mask" in read
    assert sum(n.op_type == "Softmax" for n in blocked.graph.node) == len(LOCAL)
    assert not any(n.domain for n in blocked.graph.node)  # standard operators: OpenVINO runs them
    read = {i for n in flashed.graph.node for i in n.input}
    assert "global_mask" not in read
    assert sum(n.op_type == "Softmax" for n in flashed.graph.node) == 3
    assert sum(n.op_type == "MultiHeadAttention" for n in flashed.graph.node) == 2
    assert flash_globals(flashed, HEADS) == {"global_flash": 0}  # nothing plain is left
    for model in (blocked, flashed):
        onnx.checker.check_model(model)
    onnx.checker.check_model(blocked)


@pytest.mark.parametrize(
    "lengths, seq",
    [([1, 3], 3), ([7, 12], 12), ([12, 5, 9], 12), ([13, 13], 13), ([13, 2, 11], 13),
     ([31, 17, 4], 31), ([36, 36], 36), ([50, 1, 49, 38], 50)],
)  # fmt: skip
@pytest.mark.parametrize("step", ["blocks", "flash"])
def test_the_rewrites_compute_the_plain_layers_rows(graphs: dict[str, onnx.ModelProto], step: str, lengths: list[int],
                                                    seq: int) -> None:  # fmt: skip
    feeds = _feeds(lengths, seq)
    want, got = _run(graphs["plain"], feeds), _run(graphs[step], feeds)
    assert np.isfinite(got).all()  # padding queries with every key masked stay finite
    for row, n in enumerate(lengths):  # the real tokens' rows: what pooling reads
        np.testing.assert_allclose(got[row, :n], want[row, :n], rtol=1e-5, atol=1e-5)


def test_a_graph_unlike_its_config_is_left_as_it_was() -> None:
    model = _graph(LOCAL)
    before = model.SerializeToString()
    record = window_blocks(model, Window(LOCAL[:-1], HALF, HEADS))
    assert record["local_blocks"] == 0 and "found 5 attention chains" in str(record["skipped"])
    record = window_blocks(model, Window((True, True, True, False, True), HALF, HEADS))
    assert "one mask of their own" in str(record["skipped"])
    assert model.SerializeToString() == before


def test_the_window_is_read_from_the_config() -> None:
    config = SimpleNamespace(layer_types=["full_attention", "sliding_attention"], sliding_window=64, num_attention_heads=12)
    assert local_window(config) == Window((False, True), 64, 12)
    config.layer_types = ["full_attention"] * 2
    assert local_window(config) is None
    assert local_window(SimpleNamespace(num_hidden_layers=2)) is None


def test_nodes_without_names_are_rewritten_alike() -> None:
    model = _graph(LOCAL)
    for node in model.graph.node:
        node.name = ""
    assert window_blocks(model, Window(LOCAL, HALF, HEADS))["local_blocks"] == 3
    assert flash_globals(model, HEADS) == {"global_flash": 2}
    feeds = _feeds([20, 9], 20)
    want, got = _run(_graph(LOCAL), feeds), _run(model, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1, :9], want[1, :9], rtol=1e-5, atol=1e-5)
