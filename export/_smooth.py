"""SmoothQuant-style channel balancing, calibrated per MatMul, so that fast per-tensor int8 passes.

onnxruntime's fastest int8 path on x86 (``DynamicQuantizeMatMul``: activations to uint8 with one
dynamic scale per tensor, weights int8 per output channel, a VNNI u8s8 GEMM) runs a MiniLM-sized
GEMM at 3.5x fp32, where ``MatMulNBits`` (per-block activations) reaches 1.4x. Its loss is in the
activations: a few hidden channels carry values tens of times larger than the rest, so one scale
per tensor leaves the others a handful of levels. SmoothQuant (Xiao et al., 2023) divides each
input channel ``j`` by ``s_j`` and multiplies row ``j`` of the weight by it, which leaves ``X @ W``
unchanged in exact arithmetic and moves the outliers into the weights, which are quantized per
output channel and absorb them better::

    s_j = max|X_j| ** alpha / max|W_j,:| ** (1 - alpha)

Here ``alpha`` is chosen per group of MatMuls sharing one input (Q, K and V share the attention
input) by simulating the exact quantization onnxruntime does on calibration activations and
keeping the ``alpha`` (or no smoothing at all) with the smallest relative output error. The
division is a ``Mul`` by ``1 / s`` in front of the group; the weights are rescaled in place. For an
input quantized per token row (``_row_activations``) the search also picks the row quantization's
zero point: the GELU activation feeding an FFN output projection is mostly positive, and a
symmetric zero point leaves it little more than 7 bits.

Each candidate's int8 weights are rounded with error feedback (GPTQ, ``round_with_feedback``): the
rows of a weight are rounded in order and each row's rounding error is moved onto the rows not yet
rounded, through the inverse of the calibration inputs' ``x.T @ x``, so that ``x @ w`` stays close
rather than each weight. It costs nothing at run time (the same int8 graph) and, measured on
all-MiniLM-L6-v2 against round-to-nearest (benchmarks/results/int8-feedback-*.json), moves the mean
cosine on Korean sentences from 0.9959 to 0.9976, on English ones from 0.9984 to 0.9987, and on
the quality gate's texts from 0.9981 to 0.9986.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ._graph import index_graph
from ._int8_weights import WeightRange, feedback_factor, quantize_columns, round_with_feedback
from ._residual import RESIDUAL_STEP, RESIDUAL_ZERO_POINT
from ._row_activations import ZERO_POINT

# None = leave the group unsmoothed; always a candidate, so smoothing never makes a group worse.
ALPHAS: tuple[float | None, ...] = (None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
# Zero points tried for an input quantized per token row: symmetric first, so a tie keeps it.
ROW_ZERO_POINTS = (ZERO_POINT, 112, 96, 80, 64, 48)
# Also round the chosen smoothing's weights with the rows in order of their inputs' weight (GPTQ's
# act-order), kept where that simulates closer than index order.
ACT_ORDER = True
ROWS_PER_BATCH = 256  # token rows per calibration batch on which the output error is measured
# Memory for the calibration inputs' x.T @ x (float32, K x K per group input) that the feedback
# rounding needs: MiniLM's 23 take 58 MB, a 24-layer model of width 1024 / 4096 ~1.9 GB. Groups past
# the budget (the widest first) are rounded to nearest, and the record says how many were.
GRAM_BUDGET_BYTES = 4 << 30

Feeds = dict[str, np.ndarray]


@dataclass
class Smoothing:
    """What ``smooth_model`` did: ``record`` for the manifest, per node the int8 weight (``q``
    [K, N], ``scale`` [N]) that its error was simulated with, for the quantizer to write, and per
    node quantized per token row the zero point chosen for its input."""

    record: dict[str, Any]
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    zero_points: dict[str, int] = field(default_factory=dict)


def calibration_feeds(
    tokenizer: Any, texts: Sequence[str], input_names: Sequence[str], max_length: int, batch_size: int = 32,
    second: Sequence[str] | None = None,
) -> list[Feeds]:
    """Length-sorted, padded batches of ``texts`` as the graph's inputs (as the runtime feeds them);
    with ``second``, of the pairs (``texts[i]``, ``second[i]``), cut longest first (a reranker's)."""

    def encode(idx: Sequence[int], **kw: Any) -> Any:
        seconds = [second[j] for j in idx] if second is not None else None
        return tokenizer([texts[j] for j in idx], seconds, truncation="longest_first", max_length=max_length, **kw)

    lengths = [len(ids) for ids in encode(range(len(texts)))["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    feeds: list[Feeds] = []
    for i in range(0, len(order), batch_size):
        enc = encode(order[i : i + batch_size].tolist(), padding=True, return_tensors="np")
        feed = {name: np.asarray(enc[name], dtype=np.int64) for name in input_names if name in enc}
        if "token_type_ids" in input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        feeds.append(feed)
    return feeds


def smooth_model(
    model: onnx.ModelProto,
    node_names: Sequence[str],
    feeds: list[Feeds],
    weight_range: WeightRange | str = WeightRange.PAIRS,
    *,
    feedback: bool = True,
    per_row: Collection[str] = (),
    two_pass: Collection[str] = (),
    choices: Choices | None = None,
) -> Smoothing:
    """Balance the inputs of the MatMul-like nodes ``node_names`` (weight = input 1) in place.

    ``feeds`` are calibration batches for ``model``; ``weight_range`` is how the int8 weights will
    be laid out (``_int8_weights``), simulated as such; ``feedback``: round them with error
    feedback (``round_with_feedback``) rather than to nearest; ``per_row``: the nodes whose inputs
    will be quantized with one scale per token row (``_row_activations``; the others per tensor),
    which the search simulates; ``two_pass``: the nodes whose inputs will be quantized twice, the
    second time over the first's rounding residual (``_residual``), simulated so.
    ``choices``: the groups' choices already made on these ``feeds`` by an earlier call (another
    graph of the same model: fused, or with other run-time scales), by the group's weights and
    simulation; a group found there is not searched again, and the new ones are added to it.
    Returns the record for the manifest (per group, the chosen ``alpha`` and the simulated relative
    output error with and without smoothing) and the int8 weights of every smoothed group's nodes.
    """
    if not feeds:
        raise ValueError("smoothing needs calibration batches; got none")
    nodes, weights, uses = index_graph(model)
    groups: dict[str, list[onnx.NodeProto]] = {}
    for name in node_names:
        node = nodes[name]
        if uses.get(node.input[1], 0) == 1:  # a weight shared with another node cannot be rescaled
            groups.setdefault(node.input[0], []).append(node)
    widths = {tensor: int(weights[group[0].input[1]].dims[0]) for tensor, group in groups.items()}
    with_gram = _within_budget(widths) if feedback else set()
    row_nodes, twice = set(per_row), set(two_pass)
    wr = WeightRange(weight_range)

    # every group's statistics, searched or not: a group's sample of calibration rows depends on the others'
    stats = _activation_stats(model, list(groups), feeds, with_gram)

    record: list[dict[str, Any]] = []
    chosen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    zero_points: dict[str, int] = {}
    order = {id(n): i for i, n in enumerate(model.graph.node)}
    for k, (tensor, group) in enumerate(groups.items()):
        rows = any(n.name in row_nodes for n in group)
        mats = [numpy_helper.to_array(weights[n.input[1]]).astype(np.float32) for n in group]
        w = np.concatenate([m.reshape(m.shape[0], -1) for m in mats], axis=1)
        passes = 2 if any(n.name in twice for n in group) else 1
        if choices is None:
            choice, err_plain = _choose(w, stats[tensor], wr, feedback, rows, passes)
        else:
            key = (_digest(w), w.shape, wr, feedback, tensor in with_gram, rows, passes)
            if key not in choices:  # kept without the nearest levels: only the search uses them
                found, plain = _choose(w, stats[tensor], wr, feedback, rows, passes)
                choices[key] = (replace(found, nearest=np.empty(0, np.int8)), plain)
            choice, err_plain = choices[key]
        alpha, scale, (q, qscale) = choice.alpha, choice.s, choice.q
        start = 0
        for node, mat in zip(group, mats, strict=True):
            width = int(np.prod(mat.shape[1:]))
            chosen[node.name] = (q[:, start : start + width], qscale[start : start + width])
            start += width
        record.append({
            "nodes": [n.name for n in group], "alpha": alpha,
            "rel_err": round(choice.err, 5), "rel_err_unsmoothed": round(err_plain, 5),
        })  # fmt: skip
        if tensor in with_gram:
            record[-1]["rows_rounded"] = "heaviest input first" if choice.in_pair_order else "in index order"
        if rows:
            record[-1]["row_zero_point"] = choice.zero
            zero_points.update({n.name: choice.zero for n in group})
        if alpha is None:
            continue
        for node, mat in zip(group, mats, strict=True):
            rescaled = (scale.reshape((-1,) + (1,) * (mat.ndim - 1)) * mat).astype(np.float32)
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(rescaled, node.input[1]))
        if _fold_into_value(model, tensor, scale, len(group), uses, weights, chosen):
            record[-1]["divided_in"] = "value projection"
            continue
        record[-1]["divided_in"] = "Mul"
        inv_name, smoothed = f"embedrt_smooth_inv_{k}", f"{tensor}_embedrt_smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv_name))
        for node in group:
            node.input[0] = smoothed
        first = min(order[id(n)] for n in group)
        model.graph.node.insert(first, helper.make_node("Mul", [tensor, inv_name], [smoothed], name=f"EmbedrtSmooth_{k}"))
        order = {id(n): i for i, n in enumerate(model.graph.node)}
    return Smoothing(
        {
            "method": "smoothquant, alpha per group by simulated output error",
            "alpha_grid": [a for a in ALPHAS if a is not None],
            "weight_range": WeightRange(weight_range).value,
            "rounding": "error feedback over the calibration inputs (GPTQ)" if feedback else "nearest",
            "activations_simulated": _simulated(len(row_nodes), len(node_names))
            + (f"; two uint8 passes (the second over the residual) for {len(twice)} nodes" if twice else ""),
            "row_zero_points": list(ROW_ZERO_POINTS) if row_nodes else [],
            "feedback_groups": len(with_gram),
            "calibration_batches": len(feeds),
            "calibration_texts": int(sum(f["input_ids"].shape[0] for f in feeds)),
            "groups": record,
        },
        chosen,
        zero_points,
    )


def _digest(w: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(w).tobytes(), digest_size=16).digest()


def _simulated(rows: int, nodes: int) -> str:
    if not rows:
        return "per tensor"
    return "per token row" if rows >= nodes else f"per token row for {rows} of {nodes} nodes, per tensor for the rest"


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.output), None)


def _fold_into_value(
    model: onnx.ModelProto, tensor: str, scale: np.ndarray, consumers: int, uses: dict[str, int],
    weights: dict[str, onnx.TensorProto], chosen: dict[str, tuple[np.ndarray, np.ndarray]],
) -> bool:  # fmt: skip
    """Divide by ``scale`` inside the value projection instead of with a ``Mul``, where exact.

    An attention output is ``softmax(q.k) . v`` per head, linear in ``v``: dividing its channel ``j``
    by ``s_j`` is dividing column ``j`` of the value projection (and its bias). Done when ``tensor``
    is a ``MultiHeadAttention`` output read only by the group, and its value is ``x @ W (+ b)`` with
    constants used nowhere else. Post-LN encoders give the layer-norm outputs a second reader (the
    residual), so the other groups keep their ``Mul``. Returns whether it folded.
    """
    mha = _producer(model, tensor)
    if mha is None or mha.op_type != "MultiHeadAttention" or len(mha.input) < 3 or uses.get(tensor) != consumers:
        return False
    value, bias = mha.input[2], None
    node = _producer(model, value)
    if node is not None and node.op_type == "Add" and uses.get(value) == 1:
        consts = [i for i in node.input if i in weights]
        rest = [i for i in node.input if i not in weights]
        if len(consts) != 1 or len(rest) != 1 or uses.get(consts[0]) != 1 or uses.get(rest[0]) != 1:
            return False
        bias, node = consts[0], _producer(model, rest[0])
    if node is None or node.op_type != "MatMul" or node.input[1] not in weights or uses.get(node.input[1]) != 1:
        return False
    w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
    if w.shape[-1] != scale.size:
        return False
    weights[node.input[1]].CopyFrom(numpy_helper.from_array((w / scale).astype(np.float32), node.input[1]))
    if bias is not None:
        b = numpy_helper.to_array(weights[bias]).astype(np.float32)
        weights[bias].CopyFrom(numpy_helper.from_array((b / scale).astype(np.float32), bias))
    if node.name in chosen:  # per-column int8 levels do not change when a column is scaled: only its scale
        q, qscale = chosen[node.name]
        chosen[node.name] = (q, (qscale / scale).astype(np.float32))
    return True


class _Stats:
    """Per calibration batch: per-channel min and max over all rows (pads included, as at run
    time the dynamic range is), and a sample of real-token rows to measure the error on."""

    def __init__(self) -> None:
        self.cmin: list[np.ndarray] = []
        self.cmax: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.gram: np.ndarray | None = None  # sum of x.T @ x over every real-token row (float32)

    @property
    def absmax(self) -> np.ndarray:
        return np.max([np.maximum(-lo, hi) for lo, hi in zip(self.cmin, self.cmax, strict=True)], axis=0)


def _within_budget(widths: dict[str, int]) -> set[str]:
    """The tensors (name -> K) whose float32 ``x.T @ x`` fit ``GRAM_BUDGET_BYTES`` together, narrowest first."""
    kept: set[str] = set()
    used = 0
    for tensor, k in sorted(widths.items(), key=lambda tk: tk[1]):
        used += 4 * k * k
        if used > GRAM_BUDGET_BYTES:
            break
        kept.add(tensor)
    return kept


def probe_session(model: onnx.ModelProto, tensors: list[str]) -> Any:
    """An onnxruntime CPU session of a copy of ``model`` that also outputs ``tensors`` (float)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for t in tensors:
        if t not in known:
            probe.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _activation_stats(
    model: onnx.ModelProto, tensors: list[str], feeds: list[Feeds], with_gram: set[str]
) -> dict[str, _Stats]:
    """Calibration statistics per tensor, and ``x.T @ x`` for the tensors in ``with_gram``."""
    session = probe_session(model, tensors)
    rng = np.random.default_rng(0)
    stats = {t: _Stats() for t in tensors}
    for feed in feeds:
        outs = session.run(tensors, feed)
        real = feed["attention_mask"].reshape(-1).astype(bool)
        for t, value in zip(tensors, outs, strict=True):
            x = value.reshape(-1, value.shape[-1])
            st = stats[t]
            st.cmin.append(x.min(axis=0))
            st.cmax.append(x.max(axis=0))
            idx = np.flatnonzero(real) if x.shape[0] == real.size else np.arange(x.shape[0])
            if t in with_gram:
                xr = x[idx].astype(np.float32)
                st.gram = xr.T @ xr if st.gram is None else st.gram + xr.T @ xr
            if idx.size > ROWS_PER_BATCH:
                idx = np.sort(rng.choice(idx, ROWS_PER_BATCH, replace=False))
            st.rows.append(x[idx].astype(np.float32))
    return stats


Quantized = tuple[np.ndarray, np.ndarray]


@dataclass
class _Choice:
    """One group's smoothing as ``_choose`` picked it."""

    err: float  # simulated relative output error
    alpha: float | None  # None: unsmoothed
    zero: int  # the per-row zero point (ZERO_POINT for inputs quantized per tensor)
    s: np.ndarray  # the smoothing scales [K]
    q: Quantized  # int8 levels [K, N] and column scales [N]
    nearest: np.ndarray  # the levels rounded to nearest (the feedback rounding's start)
    in_pair_order: bool = False  # rows rounded heaviest input first (``_round_in_pair_order``)


# The groups' choices made on one model's calibration batches, by (weights' digest, shape, weight
# range, feedback, with x.T @ x, inputs per token row, activation passes): ``smooth_model``'s memo.
Choices = dict[tuple[Any, ...], tuple[_Choice, float]]


def _choose(
    w: np.ndarray, st: _Stats, weight_range: WeightRange, feedback: bool, per_row: bool = False, passes: int = 1
) -> tuple[_Choice, float]:
    """The smoothing (``alpha``, ``None`` for none) and, per row, the zero point with the smallest
    simulated output error, and the error unsmoothed. With ``ACT_ORDER`` the winner's weights are
    rounded again with the rows in order of their inputs' weight, kept if that simulates closer.
    ``passes``: 2 when the input is quantized a second time over its rounding residual."""
    amax = np.maximum(st.absmax, 1e-5)
    wmax = np.maximum(np.abs(w).max(axis=1), 1e-5)
    refs = [x @ w for x in st.rows]
    den = sum(float(np.square(r).sum()) for r in refs) or 1.0
    meansq = np.mean(np.concatenate([np.square(x) for x in st.rows]), axis=0)
    factor = feedback_factor(st.gram) if feedback and st.gram is not None else None

    def error(s: np.ndarray, smoothed: list[np.ndarray], wq: np.ndarray, zero: int) -> float:
        """Simulated relative output error; ``smoothed``: the calibration rows divided by ``s``."""
        num = 0.0
        for xs, lo, hi, ref in zip(smoothed, st.cmin, st.cmax, refs, strict=True):
            if per_row:
                got = _quant_rows(xs, zero, passes)
            else:
                got = _quant_act(xs, float(np.min(lo / s)), float(np.max(hi / s)))
                if passes == 2:  # the residual over its own dynamic range (here: the sample rows')
                    e = xs - got
                    got = got + _quant_act(e, float(e.min()), float(e.max()))
            got = got @ wq
            num += float(np.square(ref - got).sum())
        return (num / den) ** 0.5

    best: _Choice | None = None
    plain = float("inf")
    for alpha in ALPHAS:
        s = np.ones_like(amax) if alpha is None else np.clip(amax**alpha / wmax ** (1 - alpha), 1e-4, 1e4)
        nearest, qscale = quantize_columns(w * s[:, None], weight_range, row_weight=meansq / np.square(s))
        q = nearest
        if factor is not None:  # the factor of the smoothed inputs x / s
            q = round_with_feedback(w * s[:, None], qscale, factor * s[None, :], weight_range, start=nearest)
        wq = q.astype(np.float32) * qscale
        smoothed = [x / s for x in st.rows]  # once per alpha, for every zero point tried
        for zero in ROW_ZERO_POINTS if per_row else (ZERO_POINT,):
            err = error(s, smoothed, wq, zero)
            if alpha is None:
                plain = min(plain, err)
            if best is None or err < best.err:
                best = _Choice(err, alpha, zero, s, (q, qscale), nearest)
    assert best is not None
    if ACT_ORDER and factor is not None and st.gram is not None and w.shape[0] % 2 == 0:
        s, qscale = best.s, best.q[1]
        q = _round_in_pair_order(w * s[:, None], qscale, st.gram / np.outer(s, s), weight_range, best.nearest)
        err = error(s, [x / s for x in st.rows], q.astype(np.float32) * qscale, best.zero)
        if err < best.err:
            best = replace(best, err=err, q=(q, qscale), in_pair_order=True)
    best.s = best.s.astype(np.float32)
    return best, plain


def _round_in_pair_order(
    w: np.ndarray, scale: np.ndarray, gram: np.ndarray, weight_range: WeightRange, start: np.ndarray
) -> np.ndarray:
    """``round_with_feedback`` with the rows taken in order of how much their inputs weigh (the
    diagonal of ``gram``, the smoothed inputs' ``x.T @ x``), largest first, so the rows that matter
    most are rounded while the most rows are left to take up their error (GPTQ's act-order). Rows
    go by pairs (``2j``, ``2j + 1``), the unit of the u8s8 pair limit, so the limit holds as before."""
    d = np.diag(gram)
    pairs = np.argsort(-(d[0::2] + d[1::2]), kind="stable")
    perm = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)
    qp = round_with_feedback(w[perm], scale, feedback_factor(gram[np.ix_(perm, perm)]), weight_range, start=start[perm])
    q = np.empty_like(qp)
    q[perm] = qp
    return q


def _quant_act(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """onnxruntime's DynamicQuantizeLinear (uint8, range widened to include 0), dequantized."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = float(np.clip(np.round(-lo / scale), 0, 255))
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _quant_rows(x: np.ndarray, zero: int = ZERO_POINT, passes: int = 1) -> np.ndarray:
    """``_row_activations``' per-row quantization with uint8 zero point ``zero``, dequantized; with
    ``passes=2`` plus ``_residual``'s second pass over the rounding residual."""
    top, bottom = x.max(axis=1, keepdims=True) / (255.0 - zero), -x.min(axis=1, keepdims=True) / zero
    s = np.maximum(np.maximum(top, bottom), 1e-8)
    got = np.clip(np.round(x / s), -zero, 255 - zero) * s
    if passes == 2:
        step = s * np.float32(RESIDUAL_STEP)
        got = got + np.clip(np.round((x - got) / step), -RESIDUAL_ZERO_POINT, 255 - RESIDUAL_ZERO_POINT) * step
    return got
