#!/usr/bin/env bash
# The comparative suite in one command: creates the peers' environments when missing (PyPI, by name),
# then runs every system on the same inputs. Arguments go to `python -m benchmarks.run`
# (e.g. --quick for a smoke test). Needs the main environment active: pip install -e ".[dev]" matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -c "import matplotlib, sentence_transformers, embedrt.export" 2>/dev/null || {
    echo "main environment lacks matplotlib / sentence-transformers / embedrt[export]:" >&2
    echo "  pip install torch==2.13.0 && pip install -e '.[dev]' matplotlib" >&2
    exit 2
}
python -m benchmarks.envs --create
exec python -m benchmarks.run "$@"
