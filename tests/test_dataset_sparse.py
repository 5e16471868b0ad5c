"""The corpus job with a sparse (SPLADE) bundle: token weights per row, as SparseEncoder.encode gives them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt import BundleError, SparseEncoder  # noqa: E402
from embedrt.dataset import EmbedBatch, embed_dataset  # noqa: E402

TEXTS = [f"document {i}: " + " ".join(["a cat sat", "on the mat", "dogs run fast", "한국어 문장"][: i % 4 + 1]) * (i % 3 + 1)
         for i in range(90)] + [""]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sparse-corpus") / "in.jsonl"
    rows = [{"doc": f"d{i}", "text": t} for i, t in enumerate(TEXTS)]
    rows.insert(5, {"doc": "bad", "text": 12})
    rows.insert(9, {"doc": "again", "text": TEXTS[3]})  # embedded once with d3
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(table: pa.Table) -> dict[str, tuple[list[int], list[float]] | None]:
    return {r["id"]: (r["embedding"]["indices"], r["embedding"]["values"]) if r["embedding"] else None
            for r in table.to_pylist()}  # fmt: skip


@pytest.mark.parametrize("max_active_dims", [None, 5])
def test_sparse_vectors_are_the_encoders(tmp_path: Path, corpus: Path, tiny_sparse: tuple[Path, Path],
                                         max_active_dims: int | None) -> None:  # fmt: skip
    _source, bundle = tiny_sparse
    summary = embed_dataset(corpus, tmp_path / "out", bundle, id_column="doc", on_error="null", rows_per_part=40,
                            progress=False, max_active_dims=max_active_dims)  # fmt: skip
    assert summary.written == len(TEXTS) + 2 and summary.bad_rows == 1 and summary.repeats == 1
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("embedding").type == pa.struct([("indices", pa.list_(pa.int32())),
                                                              ("values", pa.list_(pa.float32()))])  # fmt: skip
    got = _rows(table)
    assert got["bad"] is None and got["again"] == got["d3"]
    want = SparseEncoder(bundle).encode(TEXTS, max_active_dims=max_active_dims)
    for i, v in enumerate(want):
        row = got[f"d{i}"]
        assert row is not None
        indices, values = row
        assert indices == v.indices.tolist() and len(indices) > 0
        np.testing.assert_allclose(values, v.values, rtol=1e-5, atol=1e-6)
        if max_active_dims:
            assert len(indices) <= max_active_dims
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["dimension"] == want.dim
    assert manifest["identity"].get("max_active_dims") == max_active_dims


def test_sparse_windows(tmp_path: Path, corpus: Path, tiny_sparse: tuple[Path, Path]) -> None:
    _source, bundle = tiny_sparse
    summary = embed_dataset(corpus, tmp_path / "out", bundle, id_column="doc", on_error="skip", progress=False,
                            chunk_tokens=12, chunk_text=True)  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    assert summary.chunked and table.num_rows > len(TEXTS)
    # windows of English words re-tokenize to their own tokens (a Korean word split into jamo pieces
    # longer than half a window may be cut inside, README says)
    rows = [r for r in table.to_pylist() if str(r["chunk_text"]).isascii()]
    want = SparseEncoder(bundle).encode([r["chunk_text"] for r in rows])
    assert len(rows) > len(TEXTS) // 2
    for r, v in zip(rows, want, strict=True):
        assert r["embedding"]["indices"] == v.indices.tolist()


def test_settings_of_the_other_kind_are_refused(tmp_path: Path, corpus: Path, tiny_sparse: tuple[Path, Path],
                                                tiny_bert_bundle: Path, tiny_reranker: tuple[Path, Path]) -> None:  # fmt: skip
    _source, bundle = tiny_sparse
    for kw, name in [({"normalize": True}, "normalize"), ({"precision": "int8"}, "precision"),
                     ({"truncate_dim": 8}, "truncate_dim")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"{name} applies to dense vectors; a sparse \\(SPLADE\\) bundle's"):
            embed_dataset(corpus, tmp_path / "out", bundle, progress=False, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_active_dims applies to sparse"):
        embed_dataset(corpus, tmp_path / "out", tiny_bert_bundle, progress=False, max_active_dims=4)
    with pytest.raises(ValueError, match="max_active_dims must be a positive integer, got 0"):
        embed_dataset(corpus, tmp_path / "out", bundle, progress=False, max_active_dims=0)
    with pytest.raises(BundleError, match=r"is a reranker \(it scores text pairs\): give the column of each pair's query"):
        embed_dataset(corpus, tmp_path / "out", tiny_reranker[1], progress=False)
    with pytest.raises(BundleError, match=r"is a reranker \(it scores text pairs\); embedding texts needs an embedding "
                                          r"or sparse bundle \(a reranker's pairs: ScoreBatch"):  # fmt: skip
        EmbedBatch(tiny_reranker[1])
    assert not (tmp_path / "out").exists()


def test_cli_sparse(tmp_path: Path, corpus: Path, tiny_sparse: tuple[Path, Path]) -> None:
    _source, bundle = tiny_sparse
    done = subprocess.run([sys.executable, "-m", "embedrt.cli", "embed-dataset", str(corpus), str(tmp_path / "out"),
                           "-m", str(bundle), "--id-column", "doc", "--on-error", "skip", "--max-active-dims", "3",
                           "--no-progress", "--threads", "1"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == len(TEXTS) + 1
    assert max(len(e["indices"]) for e in table.column("embedding").to_pylist()) == 3
