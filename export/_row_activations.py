"""int8 activations with one scale per token row instead of one per tensor.

``quantize_dynamic`` writes each quantized input as ``DynamicQuantizeLinear`` (one uint8 scale and
zero point for the whole ``[batch, tokens, K]`` tensor) feeding ``MatMulInteger -> Cast -> Mul(by
activation scale x weight scale)`` per MatMul. One scale per tensor means a token with large values
anywhere in the batch coarsens every other token's levels, and a text's vector depends on the texts
it is batched with. ``per_row_activations`` replaces each such tensor's quantization by one scale per token row, with
a fixed zero point ``z`` per tensor (128 unless given: symmetric)::

    s = max(max(x_row) / (255 - z), -min(x_row) / z)    (ReduceMax, ReduceMin over K)
    q = QuantizeLinear(x, s, z)                          (blocked: one block = one row of K)
    y = MatMulIntegerToFloat(q, W, 1, w_scale, z) * s

Every row's whole range is kept (no level clips); ``z`` only shares the 255 levels between the two
signs. An input that is mostly positive, such as the GELU activation feeding an FFN output
projection, loses up to half its levels to an unused negative side at ``z = 128``: the smoothing
(``_smooth``) picks each input's ``z`` by the simulated output error on the calibration batches.
The uint8 levels go through the same u8s8 GEMM as before, so the weights' pair limit keeps it
exact on every x86 CPU. Blocked ``QuantizeLinear`` needs opset 21: the graph's
default-domain opset is raised, moving the attributes that became inputs on the way (the Reduce
ops' ``axes``, ``Split``'s output count). Measured on all-MiniLM-L6-v2 (benchmarks/results/
int8-rows-*.json): closer to fp32 on every text set, for more CPU time (the row reductions, the
row scale ``Mul``, the bias ``Add`` no longer fused into the GEMM).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from embedrt._errors import UnsupportedModelError

from ._graph import links

OPSET = 21  # blocked QuantizeLinear
ZERO_POINT = 128  # symmetric: uint8 levels 0..255 for x / s in [-128, 127]
_EPS = 1e-8  # scale of an all-zero row (padding): its levels are all the zero point
# Reduce ops whose ``axes`` moved from an attribute to an input at opset 18 (ReduceSum at 13).
_AXES_AS_INPUT = ("ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
                  "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")  # fmt: skip


def per_row_activations(
    model: onnx.ModelProto, inputs: Collection[str] | None = None, zero_points: Mapping[str, int] | None = None
) -> int:
    """Rewrite every ``DynamicQuantizeLinear`` of ``model`` (in place) to per-row scales; return how many.

    ``inputs``: only those quantizing these tensors (the others stay per tensor); ``None``: all.
    ``zero_points``: the uint8 zero point per input tensor (1..254; ``ZERO_POINT`` for the others).

    Raises ``UnsupportedModelError`` for a graph whose int8 nodes quantize their input themselves
    (``QAttention``, ``DynamicQuantizeMatMul``: per tensor inside the kernel), of ``inputs`` if given."""
    inner = sorted({n.op_type for n in model.graph.node if n.op_type in ("QAttention", "DynamicQuantizeMatMul")
                    and (inputs is None or n.input[0] in inputs)})  # fmt: skip
    if inner:
        raise UnsupportedModelError(
            f"int8 activations per token row: the graph has {', '.join(inner)}, which quantizes its input per "
            "tensor inside the kernel (attention kept packed); use --int8-method smooth for this graph"
        )
    consumers, producer = links(model)
    inits = {t.name: t for t in model.graph.initializer}
    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    zero_points = dict(zero_points or {})
    bad = {t: z for t, z in zero_points.items() if not 0 < int(z) < 255}
    if bad:
        raise ValueError(f"int8 activations per token row: zero points {bad} out of range; expected 1..254")
    new_inits = [
        numpy_helper.from_array(np.array([-1], np.int64), "embedrt_rowq_axes"),
        numpy_helper.from_array(np.array(1.0, np.float32), "embedrt_rowq_one"),
        numpy_helper.from_array(np.array(_EPS, np.float32), "embedrt_rowq_eps"),
    ]
    levels: set[int] = set()  # zero points with their constants written
    count = 0
    for dql in [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]:
        if inputs is not None and dql.input[0] not in inputs:
            continue
        x, xq, xs, xz = dql.input[0], dql.output[0], dql.output[1], dql.output[2]
        mms = consumers.get(xq, [])
        if not mms or any(m.op_type != "MatMulInteger" or m.input[1] not in inits for m in mms):
            raise UnsupportedModelError(
                f"int8 activations per token row: {dql.name!r} feeds {[m.op_type for m in mms]}, "
                "expected MatMulInteger nodes with constant weights"
            )
        k = int(inits[mms[0].input[1]].dims[0])
        p = f"embedrt_rowq_{count}"
        z = int(zero_points.get(x, ZERO_POINT))
        if z not in levels:
            levels.add(z)
            new_inits += [
                numpy_helper.from_array(np.array(1.0 / (255 - z), np.float32), f"embedrt_rowq_hi_{z}"),
                numpy_helper.from_array(np.array(-1.0 / z, np.float32), f"embedrt_rowq_lo_{z}"),
                numpy_helper.from_array(np.array(z, np.uint8), f"embedrt_rowq_zero_{z}"),
            ]
        pre = [
            helper.make_node("ReduceMax", [x, "embedrt_rowq_axes"], [f"{p}_max"], keepdims=1, name=f"{p}_max"),
            helper.make_node("ReduceMin", [x, "embedrt_rowq_axes"], [f"{p}_min"], keepdims=1, name=f"{p}_min"),
            helper.make_node("Mul", [f"{p}_max", f"embedrt_rowq_hi_{z}"], [f"{p}_hi"], name=f"{p}_hi"),
            helper.make_node("Mul", [f"{p}_min", f"embedrt_rowq_lo_{z}"], [f"{p}_lo"], name=f"{p}_lo"),
            helper.make_node("Max", [f"{p}_hi", f"{p}_lo", "embedrt_rowq_eps"], [f"{p}_scale"], name=f"{p}_scale"),
            helper.make_node("Shape", [f"{p}_scale"], [f"{p}_shape"], name=f"{p}_shape"),
            helper.make_node("ConstantOfShape", [f"{p}_shape"], [f"{p}_zero"], name=f"{p}_zero",
                             value=numpy_helper.from_array(np.array([z], np.uint8))),
            helper.make_node("QuantizeLinear", [x, f"{p}_scale", f"{p}_zero"], [f"{p}_q"], axis=-1,
                             block_size=k, name=f"{p}_quantize"),
        ]  # fmt: skip
        replace[id(dql)] = pre
        for mm in mms:
            cast, mul, scales, w_scale = dequantize_chain(mm, consumers, producer, xs, "int8 activations per token row")
            rows = f"{mm.name}_rowq"
            replace[id(mm)] = [
                helper.make_node("MatMulIntegerToFloat",
                                 [f"{p}_q", mm.input[1], "embedrt_rowq_one", w_scale, f"embedrt_rowq_zero_{z}",
                                  mm.input[3] if len(mm.input) > 3 else ""],
                                 [rows], domain="com.microsoft", name=rows),
                helper.make_node("Mul", [rows, f"{p}_scale"], [mul.output[0]], name=f"{mm.name}_rowscale"),
            ]  # fmt: skip
            drop.update({id(cast), id(mul), id(scales)})
        unused = [c for c in consumers.get(xs, []) + consumers.get(xz, []) if id(c) not in drop and id(c) not in replace]
        if unused:
            raise UnsupportedModelError(
                f"int8 activations per token row: the scale of {dql.name!r} is also read by "
                f"{sorted({c.op_type for c in unused})}"
            )
        count += 1
    if not count:
        return 0
    splice(model, replace, drop, new_inits)
    raise_opset(model, OPSET)
    return count


def splice(
    model: onnx.ModelProto, replace: Mapping[int, list[onnx.NodeProto]], drop: Collection[int],
    initializers: list[onnx.TensorProto],
) -> None:  # fmt: skip
    """Put ``replace[id(node)]`` where each such node was, leave out the nodes in ``drop`` (ids), add
    ``initializers``, and declare the ``com.microsoft`` opset (``MatMulIntegerToFloat``'s)."""
    nodes: list[onnx.NodeProto] = []
    for n in model.graph.node:
        if id(n) in replace:
            nodes.extend(replace[id(n)])
        elif id(n) not in drop:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(initializers)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def dequantize_chain(
    mm: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]], producer: dict[str, onnx.NodeProto], xs: str,
    what: str,
) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, str]:  # fmt: skip
    """``MatMulInteger -> Cast -> Mul(by scales)`` with ``scales = Mul(xs, weight scale)``, as
    ``quantize_dynamic`` writes it: (Cast, Mul, the scales' Mul, the weight scale's name). ``what``
    names the rewrite in errors."""
    cast = only_reader(readers, mm, "Cast", what)
    mul = only_reader(readers, cast, "Mul", what)
    scales = producer.get(next((i for i in mul.input if i != cast.output[0]), ""))
    if scales is None or scales.op_type != "Mul" or xs not in scales.input or len(set(scales.input)) != 2:
        raise UnsupportedModelError(
            f"{what}: the output scale of {mm.name!r} is not activation scale x weight scale; the quantizer's graph changed"
        )
    return cast, mul, scales, next(i for i in scales.input if i != xs)


def only_reader(readers: dict[str, list[onnx.NodeProto]], node: onnx.NodeProto, op: str, what: str) -> onnx.NodeProto:
    """The one node reading ``node``'s output, which must be an ``op``."""
    users = readers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != op:
        raise UnsupportedModelError(
            f"{what}: {node.op_type} {node.name!r} should feed one {op}, feeds {[u.op_type for u in users]}; "
            "the quantizer's graph changed"
        )
    return users[0]


def raise_opset(model: onnx.ModelProto, version: int) -> None:
    """Raise ``model``'s default-domain opset to ``version`` (>= 18), moving what opset 18 made
    inputs: the Reduce ops' ``axes`` and ``Split``'s implicit output count. The operators that
    changed between opset 17 and 21 otherwise only gained types or optional inputs."""
    current = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None:
        model.opset_import.append(helper.make_opsetid("", version))
        return
    if current.version >= version:
        return
    if current.version < 18:
        for n in model.graph.node:
            if n.domain not in ("", "ai.onnx"):
                continue
            if n.op_type in _AXES_AS_INPUT:
                axes = next((a for a in n.attribute if a.name == "axes"), None)
                if axes is not None:
                    name = f"{n.name or n.output[0]}_axes"
                    model.graph.initializer.append(numpy_helper.from_array(np.array(list(axes.ints), np.int64), name))
                    n.attribute.remove(axes)
                    n.input.append(name)
            elif n.op_type == "Split" and len(n.input) < 2 and not any(a.name == "num_outputs" for a in n.attribute):
                n.attribute.append(helper.make_attribute("num_outputs", len(n.output)))
    current.version = version
    model.ir_version = max(model.ir_version, 10)
