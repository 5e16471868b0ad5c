"""embedrt against sentence-transformers (PyTorch) on base-size models of other architectures.

    python -m benchmarks.arch_speed --out benchmarks/results/arch-speed-MACHINE.json
    python -m benchmarks.arch_speed --archs mpnet modernbert --rounds 5 --out ...

The comparative suite measures all-MiniLM-L6-v2. Users bring other models: all-mpnet-base-v2 (MPNet,
whose attention onnxruntime's optimizer does not fuse), gte/nomic-style ModernBERT (rotary, local
and global attention), bge/e5-base (BERT, fused), Qwen3-Embedding (a decoder: grouped-query
attention, rotary, last-token pooling). No real weights can be downloaded here, so each model is
built at its real checkpoint's width, heads and feed-forward size with random weights and a tokenizer
trained locally (``tests/tiny_families.py``); its speed is that of the real model. The Qwen3 model
keeps Qwen3-Embedding-0.6B's layer shape with 8 of its 28 layers (the ratio per layer is what is
measured; fewer layers keep the export's time and memory small).

Each is exported once per ``--precisions`` entry with ``export``'s defaults otherwise (fp32, int8
with its default recipe, or ``auto``: the fastest setting that passes its gates here, which on an
AMX CPU with OpenVINO installed can be OpenVINO's bf16, held as the bundle's preferred setting;
cached in ``--work``), then each embedrt bundle (``Embedder`` with its default device, ``--threads``;
a bundle with a preferred setting also with ``device="cpu"``, its own graph: ``auto (cpu)``)
and sentence-transformers fp32 (``SentenceTransformer.encode``, the same threads; with
``--pytorch-bf16`` also the model cast to bf16, the reference of bf16 settings) alternate on the
same texts of exactly 16, 128 and 512 tokens, ``--rounds`` times. Reported: the median time of each
and the median of the per-round ratios (PyTorch time / embedrt time), against fp32 PyTorch and, with
``--pytorch-bf16``, against bf16 PyTorch (``ratio_bf16``); each bundle's ``device_choice`` says what ran.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent
BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
SHAPES = ("32x16", "32x128", "8x512")  # batch x tokens


def families() -> dict[str, Any]:
    """The base-size families, as ``tests/tiny_families.Family`` records."""
    from tiny_families import FAMILIES, Family, _special

    return {
        # bge-base / e5-base: BERT, whose attention onnxruntime fuses
        "bert": Family("bert", "BertConfig", {**BASE, "max_position_embeddings": 512}, "wordpiece",
                       ("[CLS]", "[SEP]"), _special(cls="[CLS]", sep="[SEP]", pad="[PAD]", unk="[UNK]", mask="[MASK]"),
                       max_seq_length=512, type_ids=True),
        # all-mpnet-base-v2: relative position bias; no fusion
        "mpnet": Family("mpnet", "MPNetConfig",
                        {**BASE, "max_position_embeddings": 514, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
                        "wordpiece", ("<s>", "</s>"),
                        _special(cls="<s>", pad="<pad>", sep="</s>", unk="[UNK]", mask="<mask>"), max_seq_length=512),
        # ModernBERT-base: 22 layers, GLU of 1152, a 128-token local window, global every third layer
        "modernbert": replace(FAMILIES["modernbert"], max_seq_length=512, config_kw={
            "hidden_size": 768, "num_hidden_layers": 22, "num_attention_heads": 12, "intermediate_size": 1152,
            "max_position_embeddings": 8192, "local_attention": 128, "global_attn_every_n_layers": 3}),
        # Qwen3-Embedding-0.6B's layer (1024 wide, 16 query and 8 key/value heads of 128, FFN 3072), 8 layers
        "qwen3": replace(FAMILIES["qwen3"], max_seq_length=512, config_kw={
            "hidden_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 8,
            "head_dim": 128, "intermediate_size": 3072, "max_position_embeddings": 32768}),
    }  # fmt: skip


def exact_texts(tokenizer: Any, words: list[str], length: int, n: int) -> list[str]:
    """``n`` texts of real words that tokenize to exactly ``length`` tokens, special tokens included.

    Cut at a token's end offset, not filled with one-token words as the suite's ``fixed_length_texts``
    does: a byte-level BPE tokenizer trained here has no such word (" a" merges differently)."""
    special = len(tokenizer.encode("").ids)
    out: list[str] = []
    pos = 0
    while len(out) < n:
        if pos >= len(words):
            raise RuntimeError(f"only {len(out)} texts of exactly {length} tokens found, wanted {n}")
        text = " ".join(words[pos : pos + 2 * length])
        pos += 37
        enc = tokenizer.encode(text, add_special_tokens=False)
        if len(enc.ids) < length:
            continue
        cut = text[: enc.offsets[length - special - 1][1]]
        if len(tokenizer.encode(cut).ids) == length:  # a cut inside a merge can retokenize differently
            out.append(cut)
    return out


def prepare(name: str, family: Any, work: Path, precisions: list[str]) -> tuple[Path, dict[str, Path], dict[str, float | None]]:
    """(sentence-transformers folder, bundle per precision, export seconds per precision: None if cached)."""
    from tiny_families import make_family

    from embedrt.export import export_model

    root = work / name
    source = root / "st"
    if not (source / "modules.json").exists():
        source = make_family(family, root)
    bundles: dict[str, Path] = {}
    seconds: dict[str, float | None] = {}
    for precision in precisions:
        bundle = root / ("bundle" if precision == "fp32" else f"bundle-{precision}")
        seconds[precision] = None
        if not (bundle / "manifest.json").exists():
            t0 = time.perf_counter()
            export_model(source, bundle, precision=precision)
            seconds[precision] = round(time.perf_counter() - t0, 1)
        bundles[precision] = bundle
    return source, bundles, seconds


def measure(
    source: Path, bundles: dict[str, Path], manifests: dict[str, dict[str, Any]], shapes: list[str], rounds: int,
    threads: int, bf16: bool = False,
) -> dict[str, Any]:
    """What each bundle ran (``device_choice``) and per shape PyTorch's median time (fp32, and bf16
    where asked) and per precision embedrt's, the ratios and the least cosine (against PyTorch fp32)."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from benchmarks import corpus
    from embedrt import Embedder

    torch.set_num_threads(threads)
    tok = Tokenizer.from_file(str(next(iter(bundles.values())) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    words = [w for p in corpus.load_corpus()["en_passages"] for w in p.split()]
    ours = {precision: Embedder(str(b), threads=threads) for precision, b in bundles.items()}
    for precision, b in bundles.items():  # a bundle with a preferred setting: its own graph too
        if manifests[precision].get("preferred"):
            ours[f"{precision} (cpu)"] = Embedder(str(b), threads=threads, device="cpu")
    theirs = SentenceTransformer(str(source), device="cpu")
    refs = {"pytorch": theirs}
    if bf16:
        refs["pytorch_bf16"] = SentenceTransformer(str(source), device="cpu").to(torch.bfloat16)
    rows: dict[str, Any] = {}
    for shape in shapes:
        batch, length = (int(x) for x in shape.split("x"))
        texts = exact_texts(tok, words, length, batch)
        ref = theirs.encode(texts, batch_size=batch)
        cos = {}
        for precision, emb in ours.items():
            a = emb.encode(texts, batch_size=batch)
            cos[precision] = float(((a * ref).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(ref, axis=1))).min())
        times: dict[str, list[float]] = {**{r: [] for r in refs}, **{p: [] for p in ours}}
        for _ in range(rounds):
            for precision, emb in ours.items():
                t0 = time.perf_counter()
                emb.encode(texts, batch_size=batch)
                times[precision].append(time.perf_counter() - t0)
            for ref_name, model in refs.items():
                t0 = time.perf_counter()
                model.encode(texts, batch_size=batch)
                times[ref_name].append(time.perf_counter() - t0)
        row: dict[str, Any] = {f"{r}_s": round(statistics.median(times[r]), 4) for r in refs}
        for precision in ours:
            entry: dict[str, Any] = {"embedrt_s": round(statistics.median(times[precision]), 4)}
            for ref_name, key in (("pytorch", "ratio"), ("pytorch_bf16", "ratio_bf16")):
                if ref_name in refs:
                    ratios = [t / o for o, t in zip(times[precision], times[ref_name], strict=True)]
                    entry[key] = round(statistics.median(ratios), 2)
                    entry[key + "s"] = [round(r, 2) for r in ratios]
            entry["min_cosine"] = round(cos[precision], 6)
            row[precision] = entry
            versus = ", ".join(f"x{entry[k]:.2f} {k} (rounds {entry[k + 's']})" for k in ("ratio", "ratio_bf16") if k in entry)
            print(f"  {shape} {precision}: embedrt {entry['embedrt_s']:.3f} s, PyTorch {row['pytorch_s']:.3f} s, "
                  f"{versus}, min cosine {cos[precision]:.5f}", flush=True)  # fmt: skip
        rows[shape] = row
    return {"device_choice": {precision: emb.device_choice for precision, emb in ours.items()}, "shapes": rows}


def main() -> None:
    from embedrt._bench import _machine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["bert", "mpnet", "modernbert", "qwen3"])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), help="batch x tokens")
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "int8", "auto"])
    p.add_argument("--pytorch-bf16", action="store_true", help="also time sentence-transformers cast to bf16")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=HERE / ".cache" / "arch-speed")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    fams = families()
    unknown = [a for a in args.archs if a not in fams]
    if unknown:
        p.error(f"unknown architecture(s) {unknown}; expected some of {sorted(fams)}")
    result: dict[str, Any] = {"machine": _machine(None), "threads": args.threads, "rounds": args.rounds, "models": {}}
    for name in args.archs:
        print(f"{name}: building and exporting (cached in {args.work / name})", flush=True)
        source, bundles, seconds = prepare(name, fams[name], args.work, args.precisions)
        manifests = {p: json.loads((b / "manifest.json").read_text()) for p, b in bundles.items()}
        result["models"][name] = {
            "config": fams[name].config_kw,
            "export_seconds": seconds,
            "optimizations": {p: m["optimizations"] for p, m in manifests.items()},
            "gate": {p: {k: m["parity"]["gate"].get(k) for k in ("mean_cos", "min_cos", "topk")}
                     for p, m in manifests.items() if m["parity"].get("gate")},
            **measure(source, bundles, manifests, args.shapes, args.rounds, args.threads, args.pytorch_bf16),
        }
        write_json(args.out, result, default=str)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(HERE.parent / "tests"))
    main()
