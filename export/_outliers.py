"""Outlier channels of the FFN output projections computed in fp32, beside the int8 product.

A few channels of an FFN's intermediate activation (the input of its output projection) can carry
values many times larger than every other channel: in all-MiniLM-L6-v2, one channel in each of the
first three layers peaks at 9-15 times the median channel's peak (20-25 against ~1.6 in the first
two). With one activation scale per tensor that channel alone sets the scale, and the other 1535
keep a handful of levels; smoothing moves part of it into the weights but cannot remove it. This is
the decomposition of LLM.int8() (Dettmers et al., 2022) at its smallest: the few channels found on
the calibration batches are multiplied out in fp32 on their own (``x[..., C] @ W[C, :]``, a product
of depth ``len(C)``), their rows of the int8 weight are zero, and the int8 product sees them as zero
(a ``Mul`` by a 0/1 mask, which folds into the smoothing ``Mul`` where one follows). The graph
computes the same function in exact arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ._graph import index_graph
from ._smooth import Feeds, _activation_stats

# A channel is an outlier when its calibration peak is this many times the median channel's peak.
OUTLIER_RATIO = 8.0


def split_outliers(
    model: onnx.ModelProto, node_names: Sequence[str], feeds: list[Feeds], most: int, ratio: float = OUTLIER_RATIO
) -> list[dict[str, Any]]:
    """Split out up to ``most`` outlier input channels of each MatMul in ``node_names`` (weight =
    input 1, 2-D, used by that node alone), in place; returns per split node its channels and peaks."""
    nodes, weights, uses = index_graph(model)
    candidates = [
        nodes[name] for name in node_names
        if nodes[name].op_type == "MatMul" and uses.get(nodes[name].input[1], 0) == 1
        and len(weights[nodes[name].input[1]].dims) == 2
    ]  # fmt: skip
    if not candidates or most < 1:
        return []
    stats = _activation_stats(model, list(dict.fromkeys(n.input[0] for n in candidates)), feeds, set())
    record: list[dict[str, Any]] = []
    for k, node in enumerate(candidates):
        peak = stats[node.input[0]].absmax
        median = float(np.median(peak)) or 1e-12
        order = np.argsort(-peak)[:most]
        channels = sorted(int(c) for c in order if peak[c] > ratio * median)
        if not channels:
            continue
        _rewrite(model, node, weights[node.input[1]], np.asarray(channels, np.int64), f"EmbedrtOutlier_{k}")
        record.append({
            "node": node.name, "channels": channels,
            "peak_over_median": [round(float(peak[c]) / median, 1) for c in channels],
        })  # fmt: skip
    return record


def _rewrite(model: onnx.ModelProto, node: onnx.NodeProto, weight: onnx.TensorProto, channels: np.ndarray,
             prefix: str) -> None:  # fmt: skip
    w = numpy_helper.to_array(weight).astype(np.float32)
    side_w = w[channels].copy()
    w[channels] = 0.0
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    x, out = node.input[0], node.output[0]
    mask = np.ones(w.shape[0], np.float32)
    mask[channels] = 0.0
    names = {k: f"{prefix}_{k}" for k in ("mask", "masked", "idx", "cols", "w", "side", "sum")}
    model.graph.initializer.extend([
        numpy_helper.from_array(mask, names["mask"]),
        numpy_helper.from_array(channels, names["idx"]),
        numpy_helper.from_array(side_w, names["w"]),
    ])  # fmt: skip
    for consumer in model.graph.node:  # the projection's consumers read the sum
        for i, name in enumerate(consumer.input):
            if name == out:
                consumer.input[i] = names["sum"]
    for o in model.graph.output:
        if o.name == out:
            o.name = names["sum"]
    node.input[0] = names["masked"]
    at = list(model.graph.node).index(node)
    new = [
        helper.make_node("Mul", [x, names["mask"]], [names["masked"]], name=f"{prefix}_Mask"),
        helper.make_node("Gather", [x, names["idx"]], [names["cols"]], name=f"{prefix}_Gather", axis=-1),
        helper.make_node("MatMul", [names["cols"], names["w"]], [names["side"]], name=f"{prefix}_MatMul"),
    ]
    for j, n in enumerate(new):
        model.graph.node.insert(at + j, n)
    model.graph.node.insert(at + len(new) + 1, helper.make_node("Add", [out, names["side"]], [names["sum"]],
                                                                name=f"{prefix}_Add"))  # fmt: skip


def fold_masks(model: onnx.ModelProto) -> int:
    """Fold each outlier mask into the smoothing ``Mul`` that reads it (one pass over the
    activation instead of two); returns how many were folded."""
    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    folded = 0
    for mask_node in [n for n in model.graph.node if n.name.endswith("_Mask") and n.name.startswith("EmbedrtOutlier_")]:
        after = readers.get(mask_node.output[0], [])
        if len(after) != 1 or after[0].op_type != "Mul" or after[0].input[1] not in inits:
            continue
        smooth = after[0]
        scale = numpy_helper.to_array(inits[smooth.input[1]]) * numpy_helper.to_array(inits[mask_node.input[1]])
        inits[smooth.input[1]].CopyFrom(numpy_helper.from_array(scale.astype(np.float32), smooth.input[1]))
        smooth.input[0] = mask_node.input[0]
        model.graph.node.remove(mask_node)
        if not any(mask_node.input[1] in n.input for n in model.graph.node):
            model.graph.initializer.remove(inits[mask_node.input[1]])
        folded += 1
    return folded
