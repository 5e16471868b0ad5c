"""int8 activations in two uint8 passes: about 16 bits per input through the same int8 weights.

An input ``x`` quantized to uint8 (``DynamicQuantizeLinear`` per tensor, or ``QuantizeLinear`` per
token row as ``_row_activations`` writes it) keeps a rounding residual ``e = x - x_1`` of up to half
a level. On all-MiniLM-L6-v2 that residual is two thirds of the int8 graph's error against fp32
(benchmarks/results/int8-parts-*.json: the int8 weights with exact inputs keep 0.964 of Korean
top-10 neighbours, the default int8 graph 0.934). ``second_pass`` quantizes the residual to uint8
again and multiplies it through the same int8 weights; the two products add up::

    per tensor:  q_1, s_1, z_1 = DynamicQuantizeLinear(x)
                 e = x - DequantizeLinear(q_1, s_1, z_1)
                 q_2, s_2, z_2 = DynamicQuantizeLinear(e)            (its own dynamic range)
                 y = (q_1 - z_1) @ W * s_1 * w_s + (q_2 - z_2) @ W * s_2 * w_s
    per row:     e = x - DequantizeLinear(q_1, s_row, z_row)
                 q_2 = QuantizeLinear(e, s_row / 254, 128)           (|e| <= s_row / 2: every residual fits)
                 y = y_1 + MatMulIntegerToFloat(q_2, W, 1, w_s, 128) * s_row / 254

The weights and their pair limit are unchanged, so both products stay exact on every x86 kernel
(``_int8_weights``). The cost is a second product per rewritten input and three elementwise passes
(dequantize, subtract, quantize): measured on MiniLM with the inputs that layer norms make (Q/K/V,
FFN input), 1.4-1.6x the one-pass graph's CPU time on an AVX2-only CPU, as much as fp32's there
(benchmarks/results/int8-residual-recipe-*.json).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from embedrt._errors import UnsupportedModelError

from ._graph import links
from ._row_activations import dequantize_chain, only_reader

RESIDUAL_ZERO_POINT = 128  # per row: the residual is symmetric, within half a first-pass level
RESIDUAL_STEP = 1.0 / 254.0  # per row: the residual's scale over the row's (128 levels = half a level)
_WHAT = "int8 second pass"  # how errors name this rewrite
_QUANTIZERS = ("DynamicQuantizeLinear", "QuantizeLinear")
_PRODUCTS = ("MatMulInteger", "MatMulIntegerToFloat")

# Chooses the inputs to rewrite: called with the quantizing node and the int8 products it feeds.
Select = Callable[[onnx.NodeProto, list[onnx.NodeProto]], bool]


def second_pass(model: onnx.ModelProto, select: Select) -> int:
    """Rewrite the int8 ``model`` in place so that every quantized input ``select`` accepts feeds its
    products a second time, through its rounding residual; return how many inputs.

    Reads the graphs ``quantize_dynamic`` writes (``DynamicQuantizeLinear -> MatMulInteger -> Cast ->
    Mul``) and the per-row rewrite's (``QuantizeLinear -> MatMulIntegerToFloat -> Mul``); raises
    ``UnsupportedModelError`` for a selected input whose products are laid out otherwise (checked
    before anything is changed)."""
    g = model.graph
    readers, producer = links(model)
    new: list[onnx.NodeProto] = []
    renames: list[tuple[str, str]] = []  # (a product's output, the sum its readers read instead)
    count = 0
    for node in list(g.node):
        if node.op_type not in _QUANTIZERS:
            continue
        products = [r for r in readers.get(node.output[0], []) if r.op_type in _PRODUCTS]
        if not products or not select(node, products):
            continue
        p = f"embedrt_res_{count}"
        if node.op_type == "DynamicQuantizeLinear":
            new += _per_tensor(g, node, products, readers, producer, p, renames)
        else:
            new += _per_row(g, node, products, readers, p, renames)
        count += 1
    if count:
        for total, summed in renames:
            for r in readers.get(total, []):
                r.input[:] = [summed if name == total else name for name in r.input]
        g.initializer.extend([
            numpy_helper.from_array(np.array(RESIDUAL_STEP, np.float32), "embedrt_res_step"),
            numpy_helper.from_array(np.array(RESIDUAL_ZERO_POINT, np.uint8), "embedrt_res_zero"),
            numpy_helper.from_array(np.array(1.0, np.float32), "embedrt_res_one"),
        ])  # fmt: skip
        nodes = list(g.node) + new
        del g.node[:]
        g.node.extend(_ordered(nodes, {i.name for i in g.input} | {t.name for t in g.initializer}))
    return count


def _per_tensor(
    g: onnx.GraphProto, node: onnx.NodeProto, products: list[onnx.NodeProto],
    readers: dict[str, list[onnx.NodeProto]], producer: dict[str, onnx.NodeProto], p: str,
    renames: list[tuple[str, str]],
) -> list[onnx.NodeProto]:  # fmt: skip
    x = node.input[0]
    new = [
        helper.make_node("DequantizeLinear", list(node.output), [f"{p}_x1"], name=f"{p}_dequantize"),
        helper.make_node("Sub", [x, f"{p}_x1"], [f"{p}_e"], name=f"{p}_residual"),
        helper.make_node("DynamicQuantizeLinear", [f"{p}_e"], [f"{p}_q", f"{p}_s", f"{p}_z"], name=f"{p}_quantize"),
    ]
    for j, mm in enumerate(products):
        _, mul, _, w_scale = dequantize_chain(mm, readers, producer, node.output[1], _WHAT)
        q = f"{p}_{j}"
        new += [
            helper.make_node("MatMulInteger", [f"{p}_q", mm.input[1], f"{p}_z", *mm.input[3:]], [f"{q}_int"], name=f"{q}_product"),
            helper.make_node("Cast", [f"{q}_int"], [f"{q}_f"], to=onnx.TensorProto.FLOAT, name=f"{q}_cast"),
            helper.make_node("Mul", [f"{p}_s", w_scale], [f"{q}_scales"], name=f"{q}_scales"),
            helper.make_node("Mul", [f"{q}_f", f"{q}_scales"], [f"{q}_r"], name=f"{q}_scale"),
            _add_to(g, renames, mul.output[0], f"{q}_r", f"{q}_sum"),
        ]  # fmt: skip
    return new


def _per_row(
    g: onnx.GraphProto, node: onnx.NodeProto, products: list[onnx.NodeProto],
    readers: dict[str, list[onnx.NodeProto]], p: str, renames: list[tuple[str, str]],
) -> list[onnx.NodeProto]:  # fmt: skip
    x, scale, zero = node.input[0], node.input[1], node.input[2]
    block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
    if not block:
        raise UnsupportedModelError(f"{_WHAT}: {node.name!r} is not a per-row (blocked) QuantizeLinear")
    new = [
        helper.make_node("DequantizeLinear", [node.output[0], scale, zero], [f"{p}_x1"], axis=-1, block_size=block,
                         name=f"{p}_dequantize"),
        helper.make_node("Sub", [x, f"{p}_x1"], [f"{p}_e"], name=f"{p}_residual"),
        helper.make_node("Mul", [scale, "embedrt_res_step"], [f"{p}_s"], name=f"{p}_step"),
        helper.make_node("Shape", [f"{p}_s"], [f"{p}_shape"], name=f"{p}_shape"),
        helper.make_node("ConstantOfShape", [f"{p}_shape"], [f"{p}_zeros"], name=f"{p}_zeros",
                         value=numpy_helper.from_array(np.array([RESIDUAL_ZERO_POINT], np.uint8))),
        helper.make_node("QuantizeLinear", [f"{p}_e", f"{p}_s", f"{p}_zeros"], [f"{p}_q"], axis=-1, block_size=block,
                         name=f"{p}_quantize"),
    ]  # fmt: skip
    for j, mm in enumerate(products):
        if mm.op_type != "MatMulIntegerToFloat" or len(mm.input) < 6:
            raise UnsupportedModelError(f"{_WHAT}: {mm.name!r} is not the per-row rewrite's product")
        rowscale = only_reader(readers, mm, "Mul", _WHAT)
        q = f"{p}_{j}"
        new += [
            helper.make_node("MatMulIntegerToFloat",
                             [f"{p}_q", mm.input[1], "embedrt_res_one", mm.input[3], "embedrt_res_zero", mm.input[5]],
                             [f"{q}_f"], domain="com.microsoft", name=f"{q}_product"),
            helper.make_node("Mul", [f"{q}_f", f"{p}_s"], [f"{q}_r"], name=f"{q}_scale"),
            _add_to(g, renames, rowscale.output[0], f"{q}_r", f"{q}_sum"),
        ]  # fmt: skip
    return new


def _add_to(g: onnx.GraphProto, renames: list[tuple[str, str]], total: str, extra: str, new: str) -> onnx.NodeProto:
    """The ``Add`` of ``total`` and ``extra`` (named ``new``); the readers of ``total`` are to read
    ``new`` instead (``renames``, applied once every input has been checked)."""
    if any(o.name == total for o in g.output):
        raise UnsupportedModelError(f"{_WHAT}: {total!r} is a graph output")
    renames.append((total, new))
    return helper.make_node("Add", [total, extra], [new], name=f"{new}_add")


def _ordered(nodes: list[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is made before it is read (a stable topological sort)."""
    made = set(known) | {""}
    done: list[onnx.NodeProto] = []
    waiting = list(nodes)
    while waiting:
        rest = []
        for n in waiting:
            if all(i in made for i in n.input):
                done.append(n)
                made.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(waiting):
            raise ValueError(f"cannot order {len(rest)} nodes, e.g. {rest[0].op_type} {rest[0].name}")
        waiting = rest
    return done
