"""Small ONNX graph helpers shared by the variant passes (fusion, int8, fp16)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

# The reductions that pool token embeddings into a sentence embedding: the graph after them (pooling,
# Dense, Normalize) is kept in fp32 by every lossy pass.
POOLING_OPS = {"ReduceSum", "ReduceMax", "ReduceMean", "ReduceL2"}

# protobuf refuses messages of 2 GiB; beyond this the weights go to a .data file next to the graph.
EXTERNAL_DATA_BYTES = 1_800_000_000


MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib operators


def attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """``node``'s attribute ``name``, or ``default`` when it has none."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def ensure_ms_opset(model: onnx.ModelProto) -> None:
    """Declare the contrib operators' domain in ``model`` (once)."""
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))


def index_graph(
    model: onnx.ModelProto,
) -> tuple[dict[str, onnx.NodeProto], dict[str, onnx.TensorProto], dict[str, int]]:
    """(nodes by name, initializers by name, how many node inputs read each tensor)."""
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    return {n.name: n for n in model.graph.node}, {t.name: t for t in model.graph.initializer}, uses


def links(model: onnx.ModelProto) -> tuple[dict[str, list[onnx.NodeProto]], dict[str, onnx.NodeProto]]:
    """(the nodes reading each tensor, the node making each tensor)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n
    return readers, producer


def downstream_of(model: onnx.ModelProto, op_types: set[str]) -> set[str]:
    """Names of nodes fed (transitively) by any node of ``op_types`` that is not part of the encoder.

    The encoder is what ``token_embeddings`` depends on: its own reductions (RMSNorm's ReduceMean in
    T5, Qwen, Gemma, Llama layers) are not pooling, so they start nothing here. A graph without that
    output (a reranker's, a sparse encoder's) has its norms told by their axis: a reduction over the
    last axis alone is a norm's, never pooling (which reduces the tokens).
    """
    encoder = _ancestors(model, "token_embeddings")
    has_encoder = bool(encoder)
    consts = {t.name: t for t in model.graph.initializer} | {
        n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute
    }
    tainted: set[str] = set()
    names: set[str] = set()
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        seed = node.op_type in op_types and node.name not in encoder
        seed = seed and (has_encoder or not _over_last_axis(node, consts))
        if seed or any(i in tainted for i in node.input):
            tainted.update(node.output)
            names.add(node.name)
    return names


def _over_last_axis(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto]) -> bool:
    """Whether a Reduce node reduces the last axis alone (axes ``[-1]``, as an attribute or a constant input)."""
    axes: list[int] | None = None
    for a in node.attribute:
        if a.name == "axes":
            axes = list(a.ints)
    if axes is None and len(node.input) > 1 and node.input[1] in consts:
        axes = [int(x) for x in numpy_helper.to_array(consts[node.input[1]]).reshape(-1)]
    return axes == [-1]


def _ancestors(model: onnx.ModelProto, output: str) -> set[str]:
    """Names of the nodes ``output`` depends on (none if the graph has no such output)."""
    if output not in {o.name for o in model.graph.output}:
        return set()
    needed = {output}
    names: set[str] = set()
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            names.add(node.name)
            needed.update(node.input)
    return names


def needs_external(model: onnx.ModelProto, threshold: int = EXTERNAL_DATA_BYTES) -> bool:
    """Whether ``model`` must be saved with external data (its weights near protobuf's limit)."""
    return sum(t.ByteSize() for t in model.graph.initializer) > threshold


def static_reshapes(model: onnx.ModelProto) -> int:
    """Give Reshapes a constant target shape where the exporter computed it at run time.

    torch.onnx writes ``x.view(b, l, heads, -1)`` as ``Reshape(x, Concat(Unsqueeze(Gather(Shape(y),
    i)), ..., [-1], [32]))``: five to eight tiny nodes per Reshape, ~100 per MiniLM run, which cost
    more than the matrix products at batch 1. Where shape inference proves that dim ``i`` of ``y``
    is the same symbolic dim as dim ``i`` of ``x`` (``batch`` / ``sequence`` from the graph's
    inputs), that piece becomes ``0`` (Reshape's "copy this dim"), and a fully constant target shape
    replaces the subgraph. Returns how many Reshapes were rewritten; the dead nodes are dropped.
    """
    dims = inferred_dims(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    consts: dict[str, Any] = {  # shape pieces are small: the weights are neither read nor copied
        t.name: numpy_helper.to_array(t) for t in model.graph.initializer if _small_inline(t, 64 * 8)
    }
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    def piece(name: str, position: int, x_dims: list[str | int | None]) -> int | None:
        if name in consts:
            v = consts[name].reshape(-1)
            return int(v[0]) if v.size == 1 else None
        un = producer.get(name)
        if un is None or un.op_type != "Unsqueeze":
            return None
        ga = producer.get(un.input[0])
        if ga is None or ga.op_type != "Gather" or ga.input[1] not in consts:
            return None
        sh = producer.get(ga.input[0])
        if sh is None or sh.op_type != "Shape" or len(sh.attribute) > 0:
            return None
        idx = int(consts[ga.input[1]].reshape(-1)[0])
        y_dims = dims.get(sh.input[0])
        if idx != position or y_dims is None or position >= len(x_dims) or idx >= len(y_dims):
            return None
        same = x_dims[position] is not None and x_dims[position] == y_dims[idx]
        return 0 if same else None

    rewritten = 0
    for n in model.graph.node:
        if n.op_type != "Reshape" or any(a.name == "allowzero" and a.i for a in n.attribute):
            continue
        cat = producer.get(n.input[1])
        x_dims = dims.get(n.input[0])
        if cat is None or cat.op_type != "Concat" or x_dims is None:
            continue
        values = [piece(i, pos, x_dims) for pos, i in enumerate(cat.input)]
        if any(v is None for v in values):
            continue
        name = f"{n.name or n.output[0]}_static_shape"
        model.graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        n.input[1] = name
        rewritten += 1
    if rewritten:
        drop_dead(model)
    return rewritten


def inferred_dims(model: onnx.ModelProto) -> dict[str, list[str | int | None]]:
    """Each tensor's dims as ONNX shape inference finds them: a size, the symbolic name (``batch``,
    ``sequence``) or None where unknown; tensors without a known rank are left out."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(_skeleton(model))
    dims: dict[str, list[str | int | None]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims[vi.name] = [
                d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
                for d in t.shape.dim
            ]
    return dims


# The symbolic dims of the exported graphs' inputs, and a key for every other unknown dim (shape
# inference loses the names past some operators): each evaluation gives it a size of its own.
BATCH, SEQUENCE, OTHER = "batch", "sequence", ""


def shape_values(model: onnx.ModelProto, tensors: list[str], dims: dict[str, list[Any]],
                 sizes: tuple[dict[str, int], dict[str, int]] = ({BATCH: 1, SEQUENCE: 5, OTHER: 3}, {BATCH: 2, SEQUENCE: 9, OTHER: 4}),
                 ) -> dict[str, np.ndarray] | str:  # fmt: skip
    """The values of ``tensors``, computed from constants and the shapes of other tensors only,
    evaluated at both ``sizes`` of the symbolic dims and required to agree; or why not."""
    first = evaluate_from_shapes(model, tensors, dims, sizes[0])
    if isinstance(first, str):
        return first
    second = evaluate_from_shapes(model, tensors, dims, sizes[1])
    if isinstance(second, str):
        return second
    for t in tensors:
        if first[t].shape != second[t].shape or not np.array_equal(first[t], second[t]):
            return f"{t!r} depends on the batch or the length"
    return first


def evaluate_from_shapes(model: onnx.ModelProto, tensors: list[str], dims: dict[str, list[Any]],
                         sizes: dict[str, int]) -> dict[str, np.ndarray] | str:  # fmt: skip
    """Run the nodes ``tensors`` depend on, each ``Shape`` replaced by its value at ``sizes``;
    why not where a tensor depends on more than constants and shapes."""
    import onnxruntime as ort

    _, producer = links(model)
    inits = {t.name: t for t in model.graph.initializer}
    given = {t: numpy_helper.to_array(inits[t]) for t in tensors if t in inits}
    tensors = [t for t in tensors if t not in inits]
    if not tensors:
        return given
    needed, nodes, seen, consts = list(tensors), set(), set(), []
    while needed:
        t = needed.pop()
        if not t or t in seen:
            continue
        seen.add(t)
        if t in inits:
            consts.append(inits[t])
            continue
        n = producer.get(t)
        if n is None:
            return f"{tensors[0]!r} depends on the graph's input {t!r}, not only on its shape"
        if id(n) in nodes:
            continue
        nodes.add(id(n))
        if n.op_type != "Shape":
            needed.extend(n.input)
    order: list[onnx.NodeProto] = []
    for n in model.graph.node:
        if id(n) not in nodes:
            continue
        if n.op_type == "Shape":
            shape = dims.get(n.input[0])
            if shape is None or any(isinstance(v, int) and v <= 0 for v in shape):
                return f"the rank of {n.input[0]!r} is not known"
            value = [v if isinstance(v, int) else sizes.get(v or "", sizes[OTHER]) for v in shape]
            start, end = attr(n, "start", 0), attr(n, "end", None)
            arr = np.array(value, dtype=np.int64)[start:end]
            order.append(helper.make_node("Constant", [], list(n.output), value=numpy_helper.from_array(arr)))
        else:
            order.append(n)
    graph = helper.make_graph(order, "shape_values", [], [helper.make_empty_tensor_value_info(t) for t in tensors], consts)
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 4  # a failure is returned as the reason, not logged
    try:
        session = ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return {**given, **dict(zip(tensors, session.run(tensors, {}), strict=True))}
    except Exception as e:  # a subgraph onnxruntime cannot run alone: leave the graph as it is
        return f"{tensors[0]!r} could not be computed at export ({str(e).splitlines()[0][:200]})"


def _small_inline(t: onnx.TensorProto, small: int) -> bool:
    """Whether ``t`` holds its data in the graph and is at most ``small`` bytes."""
    return t.data_location != onnx.TensorProto.EXTERNAL and t.ByteSize() <= small


def _skeleton(model: onnx.ModelProto, small: int = 4096) -> onnx.ModelProto:
    """``model`` for shape inference only: initializers over ``small`` bytes become typed graph
    inputs without data. Shapes come out the same (inference reads the values of small tensors
    only), and the weights are not copied (``infer_shapes`` would serialize and parse them twice)."""
    graph = model.graph
    big = [t for t in graph.initializer if not _small_inline(t, small)]
    kept = [t for t in graph.initializer if _small_inline(t, small)]
    declared = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in big]
    skeleton = onnx.helper.make_graph(
        list(graph.node), graph.name, [*graph.input, *declared], list(graph.output), initializer=kept,
        value_info=list(graph.value_info),
    )  # fmt: skip
    return onnx.helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def drop_dead(model: onnx.ModelProto) -> None:
    """Remove the nodes none of whose outputs is read, and the initializers nothing reads; a graph
    with subgraphs (which may read any outer tensor) is left whole."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute):
        return
    live = {o.name for o in model.graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(model.graph.node):
        if any(o in live for o in node.output):
            keep.append(node)
            live.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(keep))
    drop_unused_initializers(model)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove the initializers no node and no graph output reads."""
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    gone = [i for i, t in enumerate(model.graph.initializer) if t.name not in used]
    for i in reversed(gone):  # in place: rebuilding the list would copy every weight that stays
        del model.graph.initializer[i]
