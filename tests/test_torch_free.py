"""The runtime imports and encodes with torch, transformers and embedrt.export made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
for name in ("torch", "transformers", "sentence_transformers", "optimum"):
    sys.modules[name] = None  # any import of these now raises ImportError
import embedrt
from embedrt import Embedder
from embedrt.cli import main
model = Embedder(sys.argv[1])
vec = model.encode(["torch-free", "안녕하세요"])
assert vec.shape == (2, model.dimension), vec.shape
assert not any(m in sys.modules and sys.modules[m] is not None for m in ("torch", "transformers"))
assert "embedrt.export" not in sys.modules
print("ok", vec.shape)
"""


def test_runtime_works_without_torch(tiny_bert_bundle: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_bert_bundle)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_export_without_torch_says_what_to_install() -> None:
    code = 'import sys; sys.modules["torch"] = None\ntry:\n import embedrt.export\nexcept ImportError as e:\n print(e)'
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert 'pip install torch==2.13.0 "embedrt[export]"' in out.stdout


KINDS_SCRIPT = r"""
import sys
for name in ("torch", "transformers", "sentence_transformers", "optimum"):
    sys.modules[name] = None
from embedrt import Reranker, SparseEncoder, load_model
from embedrt.server import create_app
scores = Reranker(sys.argv[1]).rank("query", ["a document", "another"])
vectors = SparseEncoder(sys.argv[2]).encode(["torch-free", "안녕하세요"])
assert len(scores) == 2 and len(vectors) == 2 and type(load_model(sys.argv[1])).__name__ == "Reranker"
assert "embedrt.export" not in sys.modules
print("ok")
"""


def test_rerankers_and_sparse_encoders_work_without_torch(
    tiny_reranker: tuple[Path, Path], tiny_sparse: tuple[Path, Path]
) -> None:
    out = subprocess.run([sys.executable, "-c", KINDS_SCRIPT, str(tiny_reranker[1]), str(tiny_sparse[1])],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
