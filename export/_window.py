"""Sliding-window attention in blocks: a local layer's cost grows with the length, not its square.

ModernBERT's local layers let token ``i`` see token ``j`` when ``|i - j| <= w`` (``w`` = 64 in the
released models). Exported as written, such a layer computes the scores of every pair of tokens,
adds a ``[batch, 1, seq, seq]`` mask that removes all but ``2w + 1`` of each row, and normalises
the whole row: at 512 tokens three quarters of that work is thrown away, at 8192 almost all of it,
and the scores of one sequence alone take ``heads * seq * seq`` floats (3 GB at 8192 tokens and 12
heads). Past ``from_tokens`` tokens the rewritten layer cuts the queries into blocks of ``block``
and gives each block the keys it can see, ``w`` either side of it::

    q [B, H, S, d] ─ Pad to n*b ─ Reshape [B, H, n, b, d] ─┐
    k [B, H, S, d] ─ Gather(windows) ─ Transpose ─────────── MatMul ─ Mul(scale) ─ Add(bias) ─ Softmax ─┐
    v [B, H, S, d] ─ Gather(windows): [B, H, n, b + 2w, d] ───────────────────────────────────────── MatMul
                                                  ─ Reshape [B, H, n * b, d] ─ Slice :S ─ y [B, H, S, d]
    bias [B, 1, n, b, b + 2w]: 0 where the key is in the query's window, a real token and inside the
    sequence, float32's lowest value elsewhere, as in the exported mask (once per graph, from
    attention_mask; an Add, where a Where per layer would cost ten times as much on the CPU)

Up to ``from_tokens`` tokens, where blocks would cost more than they save, the same nodes run with
one block of ``S`` queries and no extra keys: the plain layer's work. The result is the plain
layer's to rounding: every key that gets weight is the same key with the same score, and a masked
one gets none either way.

The rewrite is taken only where the graph is what the architecture's config says: one attention
chain (``MatMul``, scale, ``Add`` of a mask, ``Softmax``, ``MatMul``) per layer, the local layers
all reading one mask tensor that no global layer reads. Otherwise the graph is left as it was and
the record says why. The blocks are standard ONNX operators: every variant (and OpenVINO) gets them.

The global layers still hold ``[batch, heads, seq, seq]`` scores. For onnxruntime's CPU provider
(the variants made with fusion, the default) ``flash_globals`` rewrites them as
``MultiHeadAttention``, whose flash kernel takes no mask, so the padding mask moves into one more
column of each head's query and key as in ``_flash``. The blocks and the flash kernel together keep
a long input's memory linear in its length (measured: NOTES.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._flash import pad_indicator
from ._graph import MS_DOMAIN, attr, drop_dead, ensure_ms_opset, links


@dataclass(frozen=True)
class Window:
    """Local attention as an architecture's config describes it: which layers are local and how far
    they see (token ``i`` sees ``j`` when ``|i - j| <= half``)."""

    local: tuple[bool, ...]
    half: int
    heads: int

    @property
    def block(self) -> int:
        return self.half

    @property
    def from_tokens(self) -> int:
        """Longest input still computed as one block (blocks pay from about 4 half windows: NOTES.md)."""
        return 4 * self.half


def local_window(config: Any) -> Window | None:
    """The local attention of a transformers config whose local layers are bidirectional windows
    (``layer_types`` naming them ``sliding_attention``, ``sliding_window`` the half width, as
    ModernBERT's config has them); ``None`` when it has no local layer."""
    types = list(getattr(config, "layer_types", None) or [])
    half = getattr(config, "sliding_window", None)
    heads = getattr(config, "num_attention_heads", None)
    if "sliding_attention" not in types or not isinstance(half, int) or half < 1 or not isinstance(heads, int):
        return None
    return Window(tuple(t == "sliding_attention" for t in types), half, heads)


@dataclass
class _Chain:
    first: onnx.NodeProto  # MatMul(q, k^T)
    last: onnx.NodeProto  # MatMul(p, v)
    q: str
    k: str  # before its transpose
    v: str
    scale: onnx.NodeProto | None  # Mul or Div by a constant
    factor: float  # what the scores are multiplied by
    mask: str
    nodes: list[onnx.NodeProto]


def window_blocks(model: onnx.ModelProto, window: Window, mask_input: str = "attention_mask") -> dict[str, Any]:
    """Rewrite ``model``'s local attention layers (in place) in blocks; return the manifest's record.
    The global layers stay plain (``flash_globals`` rewrites them for onnxruntime's CPU provider)."""
    chains = _chains(model)
    why = _mismatch(model, chains, window, mask_input)
    if why:
        return {"local_blocks": 0, "skipped": why}
    local = [c for c, is_local in zip(chains, window.local, strict=True) if is_local]
    per_layer = {c.last.output[0]: _layer(c, f"window_block_{i}") for i, c in enumerate(local)}
    _splice(model, local, per_layer, _shared(window, mask_input), _constants(window))
    return {"local_blocks": len(local), "window": window.half, "block": window.block,
            "blocks_from_tokens": window.from_tokens + 1}  # fmt: skip


def flash_globals(model: onnx.ModelProto, heads: int, mask_input: str = "attention_mask") -> dict[str, Any]:
    """Rewrite the plain attention layers left in a graph whose local layers ``window_blocks`` took
    (in place; ``heads`` per layer) as ``MultiHeadAttention`` on the flash kernel, an onnxruntime
    contrib operator (so not in graphs meant for OpenVINO); return the record."""
    chains = _chains(model)
    if not chains or mask_input not in {i.name for i in model.graph.input}:
        return {"global_flash": 0}
    shared: list[onnx.NodeProto] = []
    pad = pad_indicator(mask_input, shared, model, base="window_flash_pad")  # [B, S, 1]
    shared.append(helper.make_node("Unsqueeze", [pad, "flash_axis_3"], ["flash_pad"], name="flash_pad_Unsqueeze"))
    per_layer, inits = {}, []
    for i, c in enumerate(chains):
        per_layer[c.last.output[0]], consts = _flash_layer(c, f"window_flash_{i}", heads)
        inits += consts
    _splice(model, chains, per_layer, shared, inits + _flash_constants(heads))
    ensure_ms_opset(model)
    return {"global_flash": len(chains)}


def _splice(model: onnx.ModelProto, chains: list[_Chain], per_layer: dict[str, list[onnx.NodeProto]],
            shared: list[onnx.NodeProto], inits: list[TensorProto]) -> None:  # fmt: skip
    """Each chain's nodes replaced by ``per_layer[its output]``, ``shared`` first, dead nodes dropped
    (nodes are told apart by their first output: names may be empty)."""
    drop = {n.output[0] for c in chains for n in c.nodes}
    nodes = list(shared)
    for n in model.graph.node:
        if n.output and n.output[0] in per_layer:
            nodes.extend(per_layer[n.output[0]])
        elif not n.output or n.output[0] not in drop:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    drop_dead(model)


def _chains(model: onnx.ModelProto) -> list[_Chain]:
    readers, producer = links(model)
    consts = {t.name: t for t in model.graph.initializer if t.data_location != TensorProto.EXTERNAL}
    consts.update({n.output[0]: n.attribute[0].t for n in model.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})  # fmt: skip
    chains = []
    for sm in model.graph.node:
        if sm.op_type != "Softmax" or attr(sm, "axis", -1) not in (-1, 3):
            continue
        add = producer.get(sm.input[0])
        if add is None or add.op_type != "Add":
            continue
        scores, mask = add.input
        scale = producer.get(scores)
        factor = 1.0
        if scale is not None and scale.op_type in ("Mul", "Div") and scale.input[1] in consts:
            scores = scale.input[0]
            value = float(numpy_helper.to_array(consts[scale.input[1]]).reshape(-1)[0])
            factor = value if scale.op_type == "Mul" else 1.0 / value
        else:
            scale = None
        first = producer.get(scores)
        kt = producer.get(first.input[1]) if first is not None and first.op_type == "MatMul" else None
        if first is None or kt is None or kt.op_type != "Transpose" or list(attr(kt, "perm", [])) != [0, 1, 3, 2]:
            continue
        chain = [first, *([scale] if scale else []), add, sm]
        out = sm.output[0]
        while len(readers.get(out, [])) == 1 and readers[out][0].op_type == "Cast" and attr(readers[out][0], "to", 0) == TensorProto.FLOAT:
            chain.append(readers[out][0])
            out = readers[out][0].output[0]
        last = readers.get(out, [])
        if len(last) != 1 or last[0].op_type != "MatMul" or last[0].input[0] != out:
            continue
        inner = [n.output[0] for n in chain]
        if any(len(readers.get(t, [])) != 1 for t in inner) or len(readers.get(kt.output[0], [])) != 1:
            continue
        chains.append(_Chain(first, last[0], first.input[0], kt.input[0], last[0].input[1], scale, factor, mask,
                             [kt, *chain, last[0]]))  # fmt: skip
    return chains


def _mismatch(model: onnx.ModelProto, chains: list[_Chain], window: Window, mask_input: str) -> str | None:
    if mask_input not in {i.name for i in model.graph.input}:
        return f"the graph has no {mask_input!r} input"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        return f"opset {opset} (the blocks need 13 or later)"
    if len(chains) != len(window.local):
        return f"found {len(chains)} attention chains, the config has {len(window.local)} layers"
    local = {c.mask for c, is_local in zip(chains, window.local, strict=True) if is_local}
    other = {c.mask for c, is_local in zip(chains, window.local, strict=True) if not is_local}
    if len(local) != 1 or local & other:
        return "the local layers do not read one mask of their own"
    return None


def _i64(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _constants(window: Window) -> list[TensorProto]:
    return [
        _i64("window_half", [window.half]), _i64("window_block", [window.block]),
        _i64("window_from", [window.from_tokens]), _i64("window_zero", [0]), _i64("window_one", [1]),
        _i64("window_two", [2]), _i64("window_axes_0", [0]), _i64("window_axes_1", [1]), _i64("window_axes_13", [1, 3]),
        _i64("window_axis_2", [2]), _i64("window_keep2", [0, 0]), _i64("window_minus1", [-1]),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "window_f0"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).min, dtype=np.float32), "window_min"),
    ]  # fmt: skip


def _shared(window: Window, mask: str) -> list[onnx.NodeProto]:
    """Nodes computed once per graph: block size, windows' key positions, the bias, pads, shapes."""

    def n(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, outputs, name=f"{outputs[0]}_{op}", **attrs)

    return [
        n("Shape", [mask], ["window_shape"]),
        n("Gather", ["window_shape", "window_axes_1"], ["window_S"], axis=0),  # [1]: tokens
        n("Greater", ["window_S", "window_from"], ["window_long"]),
        n("Where", ["window_long", "window_block", "window_S"], ["window_b"]),
        n("Where", ["window_long", "window_half", "window_zero"], ["window_p"]),
        n("Add", ["window_S", "window_b"], ["window_Sb"]),
        n("Sub", ["window_Sb", "window_one"], ["window_Sb1"]),
        n("Div", ["window_Sb1", "window_b"], ["window_n"]),  # ceil(S / b)
        n("Mul", ["window_n", "window_b"], ["window_P"]),
        n("Sub", ["window_P", "window_S"], ["window_right"]),
        n("Mul", ["window_p", "window_two"], ["window_2p"]),
        n("Add", ["window_b", "window_2p"], ["window_kw"]),  # keys per block
        n("Add", ["window_right", "window_p"], ["window_rp"]),
        # key positions of each block in the padded sequence: [n, kw]
        n("Squeeze", ["window_n", "window_axes_0"], ["window_n0"]),
        n("Squeeze", ["window_kw", "window_axes_0"], ["window_kw0"]),
        n("Squeeze", ["window_b", "window_axes_0"], ["window_b0"]),
        n("Squeeze", ["window_zero", "window_axes_0"], ["window_zero0"]),
        n("Squeeze", ["window_one", "window_axes_0"], ["window_one0"]),
        n("Range", ["window_zero0", "window_n0", "window_one0"], ["window_blocks"]),
        n("Mul", ["window_blocks", "window_b"], ["window_starts"]),
        n("Unsqueeze", ["window_starts", "window_axes_1"], ["window_starts1"]),
        n("Range", ["window_zero0", "window_kw0", "window_one0"], ["window_cols"]),
        n("Unsqueeze", ["window_cols", "window_axes_0"], ["window_cols0"]),
        n("Add", ["window_starts1", "window_cols0"], ["window_idx"]),  # in the padded mask
        # the same keys in the unpadded k and v: those past either end read the first or last token,
        # which the bias masks (one gather of k and v instead of a pad and a gather)
        n("Sub", ["window_idx", "window_p"], ["window_kpos"]),
        n("Sub", ["window_S", "window_one"], ["window_last"]),
        n("Squeeze", ["window_last", "window_axes_0"], ["window_last0"]),
        n("Clip", ["window_kpos", "window_zero0", "window_last0"], ["window_kidx"]),
        # the window: query r of a block sees column c when |r - (c - p)| <= half
        n("Range", ["window_zero0", "window_b0", "window_one0"], ["window_rows"]),
        n("Unsqueeze", ["window_rows", "window_axes_1"], ["window_rows1"]),
        n("Sub", ["window_cols0", "window_p"], ["window_rel"]),
        n("Sub", ["window_rows1", "window_rel"], ["window_dist"]),
        n("Abs", ["window_dist"], ["window_adist"]),
        n("Greater", ["window_adist", "window_half"], ["window_far"]),
        n("Not", ["window_far"], ["window_near"]),  # [b, kw]
        # real keys (not padding, not past either end): [B, 1, n, 1, kw]
        n("Concat", ["window_zero", "window_p", "window_zero", "window_rp"], ["window_mpads"], axis=0),
        n("Pad", [mask, "window_mpads"], ["window_maskp"]),
        n("Gather", ["window_maskp", "window_idx"], ["window_keys"], axis=1),
        n("Cast", ["window_keys"], ["window_real"], to=TensorProto.BOOL),
        n("Unsqueeze", ["window_real", "window_axes_13"], ["window_real5"]),
        n("And", ["window_real5", "window_near"], ["window_seen"]),  # [B, 1, n, b, kw]
        n("Where", ["window_seen", "window_f0", "window_min"], ["window_bias"]),
        # pads of q: [0, 0, 0, 0, 0, 0, right, 0]
        n("Concat", ["window_keep2", "window_zero", "window_zero", "window_keep2", "window_right", "window_zero"],
          ["window_qpads"], axis=0),
        n("Concat", ["window_keep2", "window_n", "window_b", "window_minus1"], ["window_qshape"], axis=0),
        n("Concat", ["window_keep2", "window_P", "window_minus1"], ["window_oshape"], axis=0),
    ]  # fmt: skip


def _layer(c: _Chain, name: str) -> list[onnx.NodeProto]:
    n = helper.make_node
    t = {k: f"{name}_{k}" for k in ("qp", "qb", "kb", "kbt", "vb", "s", "s2", "s3", "p", "y", "y2")}
    scale = (
        [n(c.scale.op_type, [t["s"], c.scale.input[1]], [t["s2"]], name=f"{name}_scale")] if c.scale is not None else []
    )
    scored = t["s2"] if c.scale is not None else t["s"]
    return [
        n("Pad", [c.q, "window_qpads"], [t["qp"]], name=f"{name}_qpad"),
        n("Reshape", [t["qp"], "window_qshape"], [t["qb"]], name=f"{name}_qblocks"),
        n("Gather", [c.k, "window_kidx"], [t["kb"]], axis=2, name=f"{name}_kwindows"),
        n("Transpose", [t["kb"]], [t["kbt"]], perm=[0, 1, 2, 4, 3], name=f"{name}_kt"),
        n("Gather", [c.v, "window_kidx"], [t["vb"]], axis=2, name=f"{name}_vwindows"),
        n("MatMul", [t["qb"], t["kbt"]], [t["s"]], name=f"{name}_scores"),
        *scale,
        n("Add", [scored, "window_bias"], [t["s3"]], name=f"{name}_mask"),
        n("Softmax", [t["s3"]], [t["p"]], axis=-1, name=f"{name}_softmax"),
        n("MatMul", [t["p"], t["vb"]], [t["y"]], name=f"{name}_values"),
        n("Reshape", [t["y"], "window_oshape"], [t["y2"]], name=f"{name}_unblock"),
        n("Slice", [t["y2"], "window_zero", "window_S", "window_axis_2"], [c.last.output[0]], name=f"{name}_trim"),
    ]


def _flash_constants(heads: int) -> list[TensorProto]:
    return [_i64("flash_axis_3", [3]), _i64("flash_last_pad", [0, 0, 0, 0, 0, 0, 0, 1]), _i64("flash_flat", [0, 0, -1]),
            _i64("flash_heads_shape", [0, 0, heads, -1])]  # fmt: skip


def _flash_layer(c: _Chain, name: str, heads: int) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """A global layer as ``MultiHeadAttention`` on the flash kernel: the padding mask moves into one
    more column of each head's query (``e``) and key (``-e`` for a padding token, else 0), so that
    ``factor * q'.k' = factor * q.k - 10000`` exactly where the mask was (``exp`` of it is 0)."""
    n = helper.make_node
    e = float(np.sqrt(10000.0 / abs(c.factor)))
    t = {k: f"{name}_{k}" for k in ("qt", "q1", "q", "kcol", "kt", "k1", "k", "vt", "v", "y", "y4")}
    consts = [numpy_helper.from_array(np.array(e, dtype=np.float32), f"{name}_e"),
              numpy_helper.from_array(np.full((1, 1, heads, 1), -e, dtype=np.float32), f"{name}_minus_e")]  # fmt: skip
    return [
        n("Transpose", [c.q], [t["qt"]], perm=[0, 2, 1, 3], name=f"{name}_qt"),
        n("Pad", [t["qt"], "flash_last_pad", f"{name}_e"], [t["q1"]], name=f"{name}_qcol"),
        n("Reshape", [t["q1"], "flash_flat"], [t["q"]], name=f"{name}_qflat"),
        n("Transpose", [c.k], [t["kt"]], perm=[0, 2, 1, 3], name=f"{name}_kt"),
        n("Mul", ["flash_pad", f"{name}_minus_e"], [t["kcol"]], name=f"{name}_kpad"),  # [B, S, heads, 1]
        n("Concat", [t["kt"], t["kcol"]], [t["k1"]], axis=3, name=f"{name}_kcol"),
        n("Reshape", [t["k1"], "flash_flat"], [t["k"]], name=f"{name}_kflat"),
        n("Transpose", [c.v], [t["vt"]], perm=[0, 2, 1, 3], name=f"{name}_vt"),
        n("Reshape", [t["vt"], "flash_flat"], [t["v"]], name=f"{name}_vflat"),
        n("MultiHeadAttention", [t["q"], t["k"], t["v"]], [t["y"]], domain=MS_DOMAIN, num_heads=heads,
          scale=c.factor, name=f"{name}_attention"),
        n("Reshape", [t["y"], "flash_heads_shape"], [t["y4"]], name=f"{name}_heads"),
        n("Transpose", [t["y4"]], [c.last.output[0]], perm=[0, 2, 1, 3], name=f"{name}_out"),
    ], consts
