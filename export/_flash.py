"""Attention that never materialises the scores, padding mask included, on onnxruntime's CPU provider.

onnxruntime's CPU ``MultiHeadAttention`` has a flash kernel (``MlasFlashAttention``: blocks of
queries and keys sized to the L2 cache, online softmax), but takes it only when there is no key
padding mask and no attention bias; otherwise it materialises the ``[batch, heads, seq, seq]``
scores, as the packed ``Attention`` that the BERT fusion emits always does. Every batch of
different-length texts needs the padding mask, so the mask is moved into the product itself: each
head's query gets one more dimension that is always 1, and each key one more that is 0 for a real
token and ``mask_filter_value / scale`` for a padding token. Then ``scale * q'.k'`` is exactly the
masked score the packed ``Attention`` computes (``scale * q.k + mask_filter_value``, default
-10000, whose exponential is 0 in fp32), and the flash kernel runs with no mask input::

    X ─ Attention(W [D, 3D], b, mask) ─ Y          becomes

    X ─ MatMul(Wq') ─ Add(bq') ──────────────────── MultiHeadAttention(q, k, v; scale) ─ Y
    X ─ MatMul(Wk') ─ Add(bk') ─ Add(key_pad) ─────┘                │
    X ─ MatMul(Wv)  ─ Add(bv) ──────────────────────────────────────┘
    mask ─ Cast ─ Sub(1, ·) ─ Unsqueeze ─ Mul(e) = key_pad      (once per graph)

``Wq'``/``Wk'`` are ``[D, heads * (head_size + 1)]``: each head's columns, then a zero column (whose
bias is 1 for queries, 0 for keys). The value path keeps its width. The query and key products cost
``(head_size + 1) / head_size`` of what they did; the ``[seq, seq]`` scores are never written out.
Measured: benchmarks/results/NOTES.md ("levers").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._graph import MS_DOMAIN, attr, drop_unused_initializers, ensure_ms_opset


def flash_attention(model: onnx.ModelProto) -> dict[str, Any]:
    """Rewrite every packed ``Attention`` node of ``model`` (in place) as above; return the record.

    A node that cannot be rewritten exactly (past state, attention bias, causal, unequal Q/K/V
    sizes, weights that are not constants) stays as it is and is named in ``kept_packed``.
    """
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    new_nodes: list[onnx.NodeProto] = []
    pads: dict[Any, str] = {}  # mask tensor -> its [B, S, 1] padding indicator; (mask, e) -> key_pad
    converted, kept = 0, []
    for node in model.graph.node:
        why = (
            _unsupported(node, inits, consumers)
            if node.op_type == "Attention" and node.domain == MS_DOMAIN
            else None
        )
        if node.op_type != "Attention" or node.domain != MS_DOMAIN:
            new_nodes.append(node)
        elif why is not None:
            kept.append(f"{node.name}: {why}")
            new_nodes.append(node)
        else:
            mask = node.input[3] if len(node.input) > 3 else ""
            if mask and mask not in pads:
                pads[mask] = pad_indicator(mask, new_nodes, model)
            new_nodes.extend(_rewrite(node, inits, mask or None, pads, model))
            converted += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    inits.clear()
    drop_unused_initializers(model)
    ensure_ms_opset(model)
    return {"flash_attention": converted, "kept_packed": kept}


def _unsupported(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], consumers: dict[str, int]
) -> str | None:
    if attr(node, "unidirectional", 0):
        return "causal (unidirectional)"
    if any(node.input[4:]):
        return "past state or attention bias"
    if any(consumers.get(o, 0) for o in node.output[1:]):
        return "present state is used"
    if (
        len(node.input) < 2
        or node.input[1] not in inits
        or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits)
    ):
        return "weights are not constants"
    sizes = list(attr(node, "qkv_hidden_sizes", []) or [])
    if sizes and len(set(sizes)) != 1:
        return f"unequal Q/K/V sizes {sizes}"
    w = inits[node.input[1]]
    if len(w.dims) != 2 or w.dims[1] % 3 or (w.dims[1] // 3) % int(attr(node, "num_heads", 1)):
        return f"weight shape {list(w.dims)} is not [D, 3 * heads * head_size]"
    return None


def pad_indicator(mask: str, nodes: list[onnx.NodeProto], model: onnx.ModelProto, base: str = "") -> str:
    """[B, S, 1] float: 1 where ``mask`` (0/1, [B, S]) marks padding, 0 on real tokens; its nodes are
    appended to ``nodes``, named from ``base`` (default: by their place in ``nodes``)."""
    base = base or f"EmbedrtFlash_pad_{len(nodes)}"
    one, axis = f"{base}_one", f"{base}_axis"
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(1.0, np.float32), one),
        numpy_helper.from_array(np.array([2], np.int64), axis),
    ])  # fmt: skip
    nodes.extend([
        helper.make_node("Cast", [mask], [f"{base}_f"], name=f"{base}_cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", [one, f"{base}_f"], [f"{base}_inv"], name=f"{base}_sub"),
        helper.make_node("Unsqueeze", [f"{base}_inv", axis], [base], name=f"{base}_unsqueeze"),
    ])  # fmt: skip
    return base


def _widen(w: np.ndarray, heads: int, extra: float) -> np.ndarray:
    """[..., heads * h] -> [..., heads * (h + 1)]: each head followed by one column of ``extra``."""
    h = w.shape[-1] // heads
    split = w.reshape(*w.shape[:-1], heads, h)
    pad = np.full((*w.shape[:-1], heads, 1), extra, dtype=w.dtype)
    return np.concatenate([split, pad], axis=-1).reshape(*w.shape[:-1], heads * (h + 1))


def _rewrite(
    node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], mask: str | None, shared: dict[Any, str],
    model: onnx.ModelProto,
) -> list[onnx.NodeProto]:  # fmt: skip
    heads = int(attr(node, "num_heads", 1))
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    d = w.shape[1] // 3
    b = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
         if len(node.input) > 2 and node.input[2] else np.zeros(3 * d, np.float32))  # fmt: skip
    head = d // heads
    scale = float(attr(node, "scale", 0.0)) or 1.0 / float(np.sqrt(head))
    filler = float(attr(node, "mask_filter_value", -10000.0))
    x, name = node.input[0], node.name or "Attention"
    tensors = {
        "wq": _widen(w[:, :d], heads, 0.0), "bq": _widen(b[:d], heads, 1.0),
        "wk": _widen(w[:, d : 2 * d], heads, 0.0), "bk": _widen(b[d : 2 * d], heads, 0.0),
        "wv": w[:, 2 * d :], "bv": b[2 * d :],
    }  # fmt: skip
    names = {k: f"{name}_flash_{k}" for k in tensors}
    model.graph.initializer.extend(
        numpy_helper.from_array(np.ascontiguousarray(v), names[k]) for k, v in tensors.items()
    )
    out = [
        helper.make_node("MatMul", [x, names["wq"]], [f"{name}_q0"], name=f"{name}_q_matmul"),
        helper.make_node("Add", [f"{name}_q0", names["bq"]], [f"{name}_q"], name=f"{name}_q_add"),
        helper.make_node("MatMul", [x, names["wk"]], [f"{name}_k0"], name=f"{name}_k_matmul"),
        helper.make_node("Add", [f"{name}_k0", names["bk"]], [f"{name}_k1"], name=f"{name}_k_add"),
        helper.make_node("MatMul", [x, names["wv"]], [f"{name}_v0"], name=f"{name}_v_matmul"),
        helper.make_node("Add", [f"{name}_v0", names["bv"]], [f"{name}_v"], name=f"{name}_v_add"),
    ]
    key = f"{name}_k1"
    if mask is not None:
        # [B, S, heads * (head + 1)]: filler / scale in each head's extra column of a padding token;
        # one per mask and layout, shared by the layers
        layout = (mask, heads, d, filler / scale)
        if layout not in shared:
            e = _widen(np.zeros(d, np.float32), heads, filler / scale)
            kpad = f"EmbedrtFlash_keypad_{len(shared)}"
            model.graph.initializer.append(numpy_helper.from_array(e, f"{kpad}_e"))
            out.append(helper.make_node("Mul", [shared[mask], f"{kpad}_e"], [kpad], name=f"{kpad}_mul"))
            shared[layout] = kpad
        out.append(
            helper.make_node("Add", [f"{name}_k1", shared[layout]], [f"{name}_k"], name=f"{name}_kpad_add")
        )
        key = f"{name}_k"
    out.append(helper.make_node(
        "MultiHeadAttention", [f"{name}_q", key, f"{name}_v"], [node.output[0]], name=f"{name}_flash",
        domain=MS_DOMAIN, num_heads=heads, scale=scale,
    ))  # fmt: skip
    return out
