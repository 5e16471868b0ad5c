"""Tokens per run of a static bundle's graph: the cost of the graph alone for 2000 sentences at
several run sizes, next to the tokenization of the same sentences (one process, best of 5).

    python -m benchmarks.static_runs --out benchmarks/results/static-runs.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_file import write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import onnxruntime as ort

    from benchmarks.corpus import load_sentences
    from benchmarks.static_speed import build_model2vec
    from embedrt._tokenize import flat_batches, flat_ids
    from embedrt.export._static import read_static
    from embedrt.export._static_graph import static_graph

    texts = load_sentences(2000, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        src = read_static(build_model2vec(Path(tmp) / "m2v"))
    src.tokenizer.enable_truncation(src.max_length)
    flat, lengths = flat_ids(src.tokenizer, texts)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.enable_cpu_mem_arena = 2, False
    sess = ort.InferenceSession(static_graph(src.table, src.normalize, src.drop_id).SerializeToString(), so)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def run(budget: int) -> None:
        for piece in flat_batches(lengths, 100_000, budget):
            first = starts[piece.start]
            sess.run(None, {"input_ids": flat[first : starts[piece.stop]], "offsets": starts[piece] - first})

    def best(fn: object) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        return round(min(times), 4)

    result = {
        "command": "python -m benchmarks.static_runs " + " ".join(sys.argv[1:]),
        "texts": len(texts), "tokens": int(lengths.sum()),
        "cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith("avx")}),
        "load_average": os.getloadavg(),
        "tokenize_seconds": best(lambda: flat_ids(src.tokenizer, texts)),
        "graph_seconds_by_tokens_per_run": {b: best(lambda b=b: run(b)) for b in (256, 1024, 4096, 16384)},
    }  # fmt: skip
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
