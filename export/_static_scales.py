"""int8 inputs quantized per tensor on scales fixed at export (static) instead of at run time.

``quantize_dynamic`` quantizes each input per tensor at run time: ``DynamicQuantizeLinear`` takes
the batch's min and max (a pass over the activations) and its scale then depends on every text in
the batch, so a text's vector changes a little with its batch mates. ``static_tensor_scales`` runs
the int8 graph on the calibration batches, takes each such input's range over their real tokens
(padding left out), and rewrites::

    q, s, z = DynamicQuantizeLinear(x)              q = QuantizeLinear(x, S, Z)    (S, Z constants)
    y = MatMulInteger(q, W, z, wz) -> Cast     ->   y = MatMulIntegerToFloat(q, W, S, ws, Z, wz, bias)
        -> Mul(s * ws) [-> Add(bias)]

The uint8 levels go through the same u8s8 GEMM. Meant for the layer norms' outputs, which the
smoothing (``_smooth``) has balanced channel by channel: their ranges hold across texts. Measured on
all-MiniLM-L6-v2 (benchmarks/results/int8-static-*.json): the same fidelity to fp32 as run-time
scales on every text set, a text's vector the same alone as in any batch, a little less CPU time.
A range widened by half already loses fidelity and one narrowed by a fifth loses much more, so the
range is the calibration's own, and the export's quality gate checks the result as for any recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from embedrt._errors import UnsupportedModelError

from ._graph import links
from ._row_activations import dequantize_chain, splice
from ._smooth import Feeds, probe_session

# (MatMulInteger, Cast, Mul by the scales, the scales' Mul, the bias Add or None)
_Chain = tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, onnx.NodeProto, onnx.NodeProto | None]


def static_tensor_scales(model: onnx.ModelProto, calibration: Sequence[Feeds]) -> int:
    """Rewrite (in place) every ``DynamicQuantizeLinear`` of ``model`` that feeds only
    ``MatMulInteger -> Cast -> Mul`` chains to static scales from ``calibration``; return how many.
    Other ``DynamicQuantizeLinear`` nodes (another reader of their scale, a residual pass) stay."""
    plans = _plans(model)
    if not plans:
        return 0
    return _rewrite(model, plans, _ranges(model, [q.input[0] for q, _ in plans], calibration))


def fix_scales(model: onnx.ModelProto, ranges: Mapping[str, tuple[float, float]]) -> int:
    """``static_tensor_scales`` with the ranges given: each rewritable input named in ``ranges``
    takes the scale and zero point of its ``(min, max)``; return how many."""
    return _rewrite(model, [(q, chains) for q, chains in _plans(model) if q.input[0] in ranges], ranges)


def _rewrite(
    model: onnx.ModelProto, plans: list[tuple[onnx.NodeProto, list[_Chain]]],
    ranges: Mapping[str, tuple[float, float]],
) -> int:  # fmt: skip
    """Each of ``plans`` (``_plans``) on the constant scale and zero point of its input's range."""
    drop: set[int] = set()
    put: dict[int, list[onnx.NodeProto]] = {}  # a replaced node -> the node that takes its place
    new_inits: list[onnx.TensorProto] = []
    for q, chains in plans:
        x, xq = q.input[0], q.output[0]
        scale, zero = _uint8(*ranges[x])
        s_name, z_name = f"{q.name}_static_scale", f"{q.name}_static_zero"
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), s_name),
                      numpy_helper.from_array(np.array(zero, np.uint8), z_name)]  # fmt: skip
        put[id(q)] = [helper.make_node("QuantizeLinear", [x, s_name, z_name], [xq], name=f"{q.name}_static")]
        for mm, cast, mul, scales, bias_add in chains:
            w_scale = next(i for i in scales.input if i != q.output[1])
            w_zero = mm.input[3] if len(mm.input) > 3 else ""
            inputs = [xq, mm.input[1], s_name, w_scale, z_name, w_zero]
            out = mul.output[0]
            if bias_add is not None:
                inputs.append(next(i for i in bias_add.input if i != out))
                out = bias_add.output[0]
                drop.add(id(bias_add))
            put[id(mm)] = [helper.make_node("MatMulIntegerToFloat", inputs, [out], domain="com.microsoft",
                                            name=f"{mm.name}_static")]  # fmt: skip
            drop.update({id(cast), id(mul), id(scales)})
    if plans:
        splice(model, put, drop, new_inits)
    return len(plans)


def _plans(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, list[_Chain]]]:
    """Each ``DynamicQuantizeLinear`` that can take a static scale, with the chains it feeds."""
    readers, producer = links(model)
    inits = {t.name: t for t in model.graph.initializer}
    plans = []
    for q in [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]:
        chains = _chains(q, readers, producer, inits)
        if chains is not None:
            plans.append((q, chains))
    return plans


def _chains(
    q: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]], producer: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
) -> list[_Chain] | None:  # fmt: skip
    """``(MatMulInteger, Cast, Mul, scales Mul, bias Add or None)`` per reader of ``q``'s levels, or
    None where ``q`` feeds anything else (then it stays dynamic)."""
    xq, xs, xz = q.output[0], q.output[1], q.output[2]
    mms = readers.get(xq, [])
    if not mms or any(m.op_type != "MatMulInteger" or m.input[1] not in inits or m.input[2] != xz for m in mms):
        return None
    chains: list[_Chain] = []
    for mm in mms:
        try:
            cast, mul, scales, _ = dequantize_chain(mm, readers, producer, xs, "static int8 scales")
        except UnsupportedModelError:
            return None
        width = int(inits[mm.input[1]].dims[-1])
        chains.append((mm, cast, mul, scales, _bias_add(mul.output[0], width, readers, inits)))
    own = {id(c[3]) for c in chains} | {id(c[0]) for c in chains}
    if any(id(r) not in own for r in readers.get(xs, []) + readers.get(xz, [])):
        return None
    return chains


def _bias_add(
    out: str, width: int, readers: dict[str, list[onnx.NodeProto]], inits: dict[str, onnx.TensorProto]
) -> onnx.NodeProto | None:
    """The ``Add`` of a constant ``[width]`` vector that is ``out``'s only reader (the projection's
    bias, which ``MatMulIntegerToFloat`` takes), if any."""
    users = readers.get(out, [])
    if len(users) != 1 or users[0].op_type != "Add" or len(users[0].input) != 2:
        return None
    other = inits.get(next((i for i in users[0].input if i != out), ""))
    return users[0] if other is not None and list(other.dims) == [width] else None


def _ranges(model: onnx.ModelProto, tensors: list[str], calibration: Sequence[Feeds]) -> dict[str, tuple[float, float]]:
    """(min, max) of each tensor over the real tokens of the calibration batches."""
    session = probe_session(model, tensors)
    lo = dict.fromkeys(tensors, np.inf)
    hi = dict.fromkeys(tensors, -np.inf)
    for feed in calibration:
        mask = feed.get("attention_mask")
        real = mask.reshape(-1).astype(bool) if mask is not None else None
        for t, value in zip(tensors, session.run(tensors, feed), strict=True):
            x = value.reshape(-1, value.shape[-1])
            if real is not None and x.shape[0] == real.size:
                x = x[real]
            if x.size:
                lo[t] = min(lo[t], float(x.min()))
                hi[t] = max(hi[t], float(x.max()))
    return {t: (lo[t], hi[t]) if lo[t] <= hi[t] else (0.0, 0.0) for t in tensors}


def _uint8(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of ``[lo, hi]`` widened to hold 0, as ``DynamicQuantizeLinear`` makes them."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if scale <= 0:
        return 1.0, 0  # zero on every calibration token: any scale, zero point 0
    return scale, int(np.clip(np.round(-lo / scale), 0, 255))
