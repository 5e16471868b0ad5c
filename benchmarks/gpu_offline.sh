#!/bin/bash
# Runs benchmarks/gpu.py on a GPU machine that reaches no package registry (its python3 has torch,
# transformers, sentence-transformers, onnx, tokenizers), from two tarballs brought along:
#   ortgpu.tar.xz  the onnxruntime-gpu wheel's files (onnxruntime/ and its dist-info)
#   model.tar.xz   the sentence-transformers folder, as model/
# Usage, from the repository root: bash benchmarks/gpu_offline.sh DIR_WITH_TARBALLS OUT_DIR [gpu.py args]
# onnxruntime-gpu is laid beside a link to the interpreter's nvidia-* packages, as one site-packages
# holds them after `pip install onnxruntime-gpu`, so the CUDA libraries are found as a user's are.
set -uo pipefail
src=$1 out=$2
shift 2
site=/tmp/embedrt-gpu/site pkg=/tmp/embedrt-gpu/pkg model=/tmp/embedrt-gpu/model
mkdir -p "$site" "$pkg/embedrt" "$model" "$out"
[ -d "$site/onnxruntime" ] || xz -dc -T0 "$src/ortgpu.tar.xz" | tar -x -C "$site" || exit 1
[ -d "$model/model" ] || xz -dc -T0 "$src/model.tar.xz" | tar -x -C "$model" || exit 1
purelib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -e "$site/nvidia" ] || ln -s "$purelib/nvidia" "$site/nvidia"
# embedrt from this working tree, laid out as its wheel installs it (embedrt = runtime/, embedrt.export = export/)
for f in "$PWD"/runtime/*; do ln -sfn "$f" "$pkg/embedrt/"; done
ln -sfn "$PWD/export" "$pkg/embedrt/export"
export PYTHONPATH=$site:$pkg:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import onnxruntime as o, embedrt; print(o.__file__, o.__version__, o.get_available_providers(), embedrt.__file__)' || exit 1
python3 -m benchmarks.gpu --source "$model/model" --work /tmp/embedrt-gpu/work --out "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.log"
rc=$?
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_variants.py 2>&1 | tail -n 15 | tee "$out/pytest-gpu.log"
exit $rc
