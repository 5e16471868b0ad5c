"""A product cut in pieces as separate products: one ``MatMul`` per piece of the weight.

ModernBERT's GeGLU (``input, gate = Wi(x).chunk(2, dim=-1)``) is exported as one ``MatMul`` against
the ``[hidden, 2 * intermediate]`` weight followed by two ``Slice``s of its output, each a copy of
half of it (3% of ModernBERT-base's graph time at 32 x 128 tokens: NOTES.md). Two ``MatMul``s
against the weight's two halves compute the same values (each output column is its own dot
product: bit for bit on onnxruntime's CPU kernel, measured) without the copies.

Taken where a ``MatMul`` with a constant 2-D weight is read only by ``Slice``s of its last axis (and
by ``Shape``s that serve only to compute those slices' bounds), the bounds evaluated at export from
shapes and constants, each piece's step 1, the pieces no wider together than the weight. Standard
operators; made for onnxruntime's CPU provider with its other rewrites.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._graph import drop_dead, inferred_dims, links, shape_values


def split_products(model: onnx.ModelProto) -> dict[str, Any]:
    """Rewrite ``model``'s sliced products (in place); return the record (empty where it has none)."""
    readers, _ = links(model)
    weights = {t.name: t for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    found: list[tuple[onnx.NodeProto, list[onnx.NodeProto]]] = []
    for n in model.graph.node:
        w = weights.get(n.input[1]) if n.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2 or w.data_type != TensorProto.FLOAT:
            continue
        out = readers.get(n.output[0], [])
        slices = [r for r in out if r.op_type == "Slice" and r.input[0] == n.output[0]]
        if len(slices) >= 2 and all(any(r is s for s in slices) or _bounds_only(r, slices, readers, outputs) for r in out):
            found.append((n, slices))
    if not found:
        return {}
    dims = inferred_dims(model)
    bounds = _bounds(model, found, dims, {w.name: int(w.dims[1]) for w in weights.values() if len(w.dims) == 2})
    if isinstance(bounds, str):
        return {"split_products": 0, "why": bounds}
    pieces: dict[str, onnx.NodeProto] = {}
    inits: dict[str, TensorProto] = {}
    split = 0
    for n, slices in found:
        w = numpy_helper.to_array(weights[n.input[1]])
        cuts = [_cut(s, bounds, w.shape[1], len(dims.get(n.output[0]) or [])) for s in slices]
        if any(c is None for c in cuts) or sum(c[1] - c[0] for c in cuts if c) > w.shape[1]:
            continue
        split += 1
        for s, (begin, end) in zip(slices, [c for c in cuts if c], strict=True):
            name = f"{n.input[1]}_cols_{begin}_{end}"
            if name not in inits:
                inits[name] = numpy_helper.from_array(np.ascontiguousarray(w[:, begin:end]), name)
            pieces[s.output[0]] = helper.make_node("MatMul", [n.input[0], name], [s.output[0]],
                                                   name=f"{s.name or s.output[0]}_product")  # fmt: skip
    if not split:
        return {"split_products": 0, "why": "no product is cut in column ranges (its last axis, steps of 1, no wider together than it)"}
    nodes = [pieces.get(n.output[0], n) if n.op_type == "Slice" else n for n in model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits.values())
    drop_dead(model)
    return {"split_products": split}


def _bounds(model: onnx.ModelProto, found: list[tuple[onnx.NodeProto, list[onnx.NodeProto]]],
            dims: dict[str, list[Any]], widths: dict[str, int]) -> dict[str, np.ndarray] | str:  # fmt: skip
    """The slices' bounds. Shape inference does not see past onnxruntime's contrib operators, so a
    product's rank may be unknown there: its last dim is the weight's width, and bounds that hold for
    a rank of 3 and of 4 alike do not depend on the rest."""
    tensors = sorted({t for _, ss in found for s in ss for t in s.input[1:] if t})
    got: list[dict[str, np.ndarray]] = []
    for rank in (3, 4):
        assumed = dict(dims)
        for n, _ in found:
            known = dims.get(n.output[0])
            assumed[n.output[0]] = [*(known[:-1] if known else [None] * (rank - 1)), widths[n.input[1]]]
        values = shape_values(model, tensors, assumed)
        if isinstance(values, str):
            return values
        got.append(values)
    if any(got[0][t].shape != got[1][t].shape or not np.array_equal(got[0][t], got[1][t]) for t in tensors):
        return "the slices' bounds depend on more than the product's width"
    return got[0]


def _bounds_only(node: onnx.NodeProto, slices: list[onnx.NodeProto], readers: dict[str, list[onnx.NodeProto]],
                 outputs: set[str]) -> bool:  # fmt: skip
    """Whether ``node`` is a ``Shape`` whose every use ends in the bounds of ``slices``."""
    if node.op_type != "Shape":
        return False
    bounds = {t for s in slices for t in s.input[1:]}
    todo, seen = [node], {id(node)}
    while todo:
        for out in todo.pop().output:
            if out in outputs:
                return False
            for r in readers.get(out, []):
                if any(r is s for s in slices):
                    if out not in bounds:
                        return False
                elif id(r) not in seen:
                    seen.add(id(r))
                    todo.append(r)
    return True


def _cut(s: onnx.NodeProto, bounds: dict[str, np.ndarray], width: int, rank: int) -> tuple[int, int] | None:
    """The columns ``[begin, end)`` that slice ``s`` takes of a ``width``-wide last axis (of a
    ``rank``-dim tensor; 0: the rank is not known, only axis -1 is the last), or None where it is
    not one such cut in steps of 1."""
    got = [bounds[t].reshape(-1) if t else None for t in s.input[1:]] + [None] * (5 - len(s.input))
    starts, ends, axes, steps = got[:4]
    if starts is None or ends is None or starts.size != 1 or ends.size != 1:
        return None
    if axes is None or axes.size != 1 or int(axes[0]) not in (-1, rank - 1 if rank else -1):  # rank 0: unknown
        return None
    if steps is not None and (steps.size != 1 or int(steps[0]) != 1):
        return None
    begin, end = (int(v) + width if int(v) < 0 else int(v) for v in (starts[0], ends[0]))
    begin, end = min(max(begin, 0), width), min(max(end, 0), width)
    return (begin, end) if end > begin else None
