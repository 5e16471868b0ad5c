#!/usr/bin/env bash
# OpenVINO tests in their own environment: onnxruntime-openvino installs the module `onnxruntime`
# too, so it cannot share a venv with the CPU build.
#
#   tests/openvino/run.sh            # venv in ${EMBEDRT_OV_VENV:-.venvs/ortov}, bundles via $PYTHON
#
# PYTHON: the main environment's python (torch, transformers, sentence-transformers) that exports
# the bundles; default `python`. Exit status is pytest's.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${EMBEDRT_OV_VENV:-$repo/.venvs/ortov}"
data="${EMBEDRT_OV_DATA:-$(mktemp -d)}"
py="${PYTHON:-python}"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "onnxruntime-openvino==1.24.1" tokenizers numpy tqdm pytest
    "$venv/bin/pip" install -q --no-deps -e "$repo"
fi
# the corpus job on the OpenVINO provider (embedrt[parquet]); also into a venv made before it was needed
"$venv/bin/python" -c "import pyarrow" 2>/dev/null || "$venv/bin/pip" install -q pyarrow
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "warning: torch is importable in $venv; the OpenVINO tests are meant to run without it" >&2
fi
HF_HUB_OFFLINE=1 "$py" "$repo/tests/openvino/prepare.py" "$data"
cd "$repo"
EMBEDRT_OV_DATA="$data" HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -s -p no:cacheprovider tests/openvino "$@"
