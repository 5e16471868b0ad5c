"""Rotary position embeddings on onnxruntime's ``RotaryEmbedding`` kernel.

transformers applies rotary embeddings (ModernBERT, Qwen, Llama, Mistral, Gemma) to the query and
the key of every layer as ``x * cos + rotate_half(x) * sin``, and the exporter writes each of them
out as it is written::

    x [B, H, S, d] ─ Slice [h:] ─ Neg ─┐
    x ──────────── Slice [:h] ─────── Concat ─ Mul(sin) ─┐
    x ──────────────────────────────────────── Mul(cos) ─ Add ─ y        (h = d / 2)

plus the shape arithmetic that finds ``h``: about 24 nodes and five passes over ``x`` per
application, two applications per layer. onnxruntime's contrib ``RotaryEmbedding`` does the same in
one pass from tables of ``cos`` and ``sin`` per position (``[positions, h]``; measured: NOTES.md).

The tables are what the graph itself computes, evaluated once at export: the ``cos`` and ``sin``
tensors of each application are computed from the inputs' shape alone (positions ``0 .. S - 1``,
whatever the padding), their two halves are equal (the ``rotate_half`` form, not the interleaved
one), and a row does not depend on the batch or the length it was computed at; the slices are
checked to cut ``x``'s last axis at its half. Where any of that does not hold, the application is
left as exported and the record says why. The result is the graph's own to rounding.

An onnxruntime contrib operator: only in graphs for onnxruntime's CPU provider (not for OpenVINO,
not fp16). Inputs longer than the tables are refused by the kernel; the tables cover the model's
``max_position_embeddings`` and the bundle's ``max_seq_length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._graph import (
    BATCH,
    MS_DOMAIN,
    OTHER,
    SEQUENCE,
    attr,
    drop_dead,
    ensure_ms_opset,
    evaluate_from_shapes,
    inferred_dims,
    links,
    shape_values,
)


@dataclass
class _Rotary:
    add: onnx.NodeProto  # the Add whose output is the rotated tensor
    x: str  # the tensor rotated, [B, H, S, d]
    cos: str
    sin: str
    slices: tuple[onnx.NodeProto, onnx.NodeProto]  # x[..., :h], x[..., h:]
    concat: onnx.NodeProto  # [-x[..., h:], x[..., :h]]


def fuse_rotary(model: onnx.ModelProto, positions: int) -> dict[str, Any]:
    """Rewrite ``model``'s rotary embeddings (in place) as ``RotaryEmbedding`` with tables of
    ``positions`` rows; return the manifest's record (empty where the graph has none)."""
    found = _find(model)
    if not found:
        return {}
    dims = inferred_dims(model)
    why: dict[int, str] = {}
    heads: dict[int, int] = {}  # the head size of each application that may be rewritten
    for i, r in enumerate(found):
        shape = dims.get(r.x)
        d = shape[3] if shape and len(shape) == 4 else None
        if not isinstance(d, int) or d <= 0:
            why[i] = f"the rotated tensor {r.x!r} is not [batch, heads, sequence, head] with a known head size ({shape})"
        elif d % 2:
            why[i] = f"the rotated tensor's head size {d} is odd"
        else:
            heads[i] = d
    params = [t for i, r in enumerate(found) if i in heads for s in r.slices for t in s.input[1:] if t]
    cut = shape_values(model, sorted(set(params)), dims)
    if isinstance(cut, str):
        return {"rotary": 0, "left": len(found), "why": cut}
    for i in list(heads):
        bad = _bad_cut(found[i], cut, heads[i])
        if bad:
            why[i] = bad
            del heads[i]
    tables = _tables(model, [t for i in heads for t in (found[i].cos, found[i].sin)], dims, positions, heads, found)
    if isinstance(tables, str):
        return {"rotary": 0, "left": len(found), "why": tables}
    kept = [i for i in heads if found[i].cos in tables and found[i].sin in tables]
    for i in heads:
        if i not in kept:
            why[i] = f"the cos / sin of {found[i].x!r} are not the rotate-half tables of positions 0 .. S - 1"
    if not kept:
        return {"rotary": 0, "left": len(found), "why": why[min(why)]}
    _splice(model, found, kept, tables)
    record: dict[str, Any] = {"rotary": len(kept), "positions": positions}
    if why:
        record.update(left=len(why), why=why[min(why)])
    return record


def _find(model: onnx.ModelProto) -> list[_Rotary]:
    """Every ``Add(Mul(x, cos), Mul(Concat(Neg(Slice(x)), Slice(x)), sin))`` (either order), where
    ``x`` may reach the slices through ``Cast``s to float (ModernBERT's ``q.float()``)."""
    _, producer = links(model)

    def made(t: str, op: str) -> onnx.NodeProto | None:
        n = producer.get(t)
        return n if n is not None and n.op_type == op else None

    def root(t: str) -> str:
        while (n := made(t, "Cast")) is not None and attr(n, "to", None) == TensorProto.FLOAT:
            t = n.input[0]
        return t

    found: list[_Rotary] = []
    for add in model.graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        muls = [made(t, "Mul") for t in add.input]
        if muls[0] is None or muls[1] is None:
            continue
        for rot, plain in (muls, muls[::-1]):
            assert rot is not None and plain is not None
            cat = next((c for t in rot.input if (c := made(t, "Concat")) is not None), None)
            if cat is None or len(cat.input) != 2:
                continue
            neg, low = made(cat.input[0], "Neg"), made(cat.input[1], "Slice")
            high = made(neg.input[0], "Slice") if neg is not None else None
            if low is None or high is None or root(low.input[0]) != root(high.input[0]):
                continue
            x = next((t for t in plain.input if root(t) == root(low.input[0])), None)
            if x is None or len(rot.input) != 2 or len(plain.input) != 2:
                continue
            sin = rot.input[1] if rot.input[0] == cat.output[0] else rot.input[0]
            cos = plain.input[1] if plain.input[0] == x else plain.input[0]
            found.append(_Rotary(add, x, cos, sin, (low, high), cat))
            break
    return found


def _bad_cut(r: _Rotary, values: dict[str, np.ndarray], d: int) -> str | None:
    """Why ``r``'s slices and concat are not ``rotate_half`` of a ``d``-wide last axis (None: they are)."""
    if attr(r.concat, "axis", None) not in (3, -1):
        return f"the concat {r.concat.name!r} does not join the head axis"
    h = d // 2
    want = ((0, h), (h, d))
    for s, (start, end) in zip(r.slices, want, strict=True):
        got = [values[t].reshape(-1) if t else None for t in s.input[1:]] + [None] * (5 - len(s.input))
        starts, ends, axes, steps = got[:4]
        if starts is None or ends is None or starts.size != 1 or ends.size != 1:
            return f"the slice {s.name!r} is not one cut of one axis"
        axis = int(axes[0]) if axes is not None and axes.size == 1 else None
        if axis not in (3, -1) or (steps is not None and (steps.size != 1 or int(steps[0]) != 1)):
            return f"the slice {s.name!r} does not cut the head axis with step 1"
        if int(starts[0]) != start or min(int(ends[0]), d) != end:
            return f"the slice {s.name!r} takes [{int(starts[0])}:{int(ends[0])}] of a head of {d}, not [{start}:{end}]"
    return None


def _tables(model: onnx.ModelProto, tensors: list[str], dims: dict[str, list[Any]], positions: int,
            heads: dict[int, int], found: list[_Rotary]) -> dict[str, np.ndarray] | str:  # fmt: skip
    """``[positions, h]`` tables of the ``cos`` / ``sin`` tensors that are rotate-half tables of
    positions ``0 .. S - 1`` (missing from the result where one is not), or why none can be read."""
    width = {t: heads[i] for i in heads for t in (found[i].cos, found[i].sin)}
    short = evaluate_from_shapes(model, tensors, dims, {BATCH: 2, SEQUENCE: 7, OTHER: 3})
    if isinstance(short, str):
        return short
    # one representative per distinct table (each layer reads its own copy of the same table)
    groups: dict[str, str] = {}
    reps: list[str] = []
    for t in tensors:
        same = next((r for r in reps if short[r].shape == short[t].shape and np.array_equal(short[r], short[t])), None)
        if same is None:
            reps.append(t)
        groups[t] = same or t
    full = evaluate_from_shapes(model, reps, dims, {BATCH: 2, SEQUENCE: positions, OTHER: 3})
    if isinstance(full, str):
        return full
    out: dict[str, np.ndarray] = {}
    for t in tensors:
        table = _rows(full[groups[t]], positions, width[t])
        check = _rows(short[t], 7, width[t])
        if table is None or check is None or not np.array_equal(table[:7], check):
            continue
        h = width[t] // 2
        if not np.array_equal(table[:, :h], table[:, h:]):
            continue
        out[t] = np.ascontiguousarray(table[:, :h], dtype=np.float32)
    return out


def _rows(v: np.ndarray, length: int, d: int) -> np.ndarray | None:
    """``v`` (broadcast against ``[B, H, S, d]``) as ``[S, d]`` rows, or None where it is not one
    row per position shared by every batch row and head."""
    if v.dtype != np.float32 or v.ndim < 2 or v.ndim > 4 or v.shape[-2:] != (length, d):
        return None
    lead = v.reshape(-1, length, d)
    if not all(np.array_equal(lead[0], lead[k]) for k in range(1, lead.shape[0])):
        return None
    return lead[0]


def _splice(model: onnx.ModelProto, found: list[_Rotary], kept: list[int],
            tables: dict[str, np.ndarray]) -> None:  # fmt: skip
    """Each kept application's ``Add`` replaced by one ``RotaryEmbedding``; the tables stored once."""
    names: dict[bytes, str] = {}
    inits: list[TensorProto] = [numpy_helper.from_array(np.array([0], dtype=np.int64), "rotary_first_position")]

    def stored(table: np.ndarray, kind: str) -> str:
        key = kind.encode() + table.tobytes()
        if key not in names:
            names[key] = f"rotary_{kind}_{len(names)}"
            inits.append(numpy_helper.from_array(table, names[key]))
        return names[key]

    by_add = {found[i].add.output[0]: i for i in kept}
    nodes: list[onnx.NodeProto] = []
    for n in model.graph.node:
        i = by_add.get(n.output[0]) if n.op_type == "Add" and n.output else None
        if i is None:
            nodes.append(n)
            continue
        r = found[i]
        nodes.append(helper.make_node(
            "RotaryEmbedding", [r.x, "rotary_first_position", stored(tables[r.cos], "cos"), stored(tables[r.sin], "sin")],
            [n.output[0]], domain=MS_DOMAIN, interleaved=0, name=f"rotary_{i}",
        ))  # fmt: skip
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    ensure_ms_opset(model)
    drop_dead(model)
