"""Small ONNX graph helpers shared by the variant passes (fusion, int8, fp16)."""

from __future__ import annotations

import onnx

# The reductions that pool token embeddings into a sentence embedding: the graph after them (pooling,
# Dense, Normalize) is kept in fp32 by every lossy pass.
POOLING_OPS = {"ReduceSum", "ReduceMax", "ReduceMean", "ReduceL2"}

# protobuf refuses messages of 2 GiB; beyond this the weights go to a .data file next to the graph.
_EXTERNAL_DATA_BYTES = 1_800_000_000


def downstream_of(model: onnx.ModelProto, op_types: set[str]) -> set[str]:
    """Names of nodes fed (transitively) by any node of ``op_types``."""
    tainted: set[str] = set()
    names: set[str] = set()
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in op_types or any(i in tainted for i in node.input):
            tainted.update(node.output)
            names.add(node.name)
    return names


def needs_external(model: onnx.ModelProto) -> bool:
    """Whether ``model`` must be saved with external data (its weights near protobuf's limit)."""
    return sum(t.ByteSize() for t in model.graph.initializer) > _EXTERNAL_DATA_BYTES
