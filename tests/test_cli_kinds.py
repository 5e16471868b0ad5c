"""The command line for the other kinds and the output precisions: rerank, encode of sparse bundles,
--precision / --truncate-dim / --ranges, export --kind, validate and info of a reranker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from embedrt import Embedder, Reranker, SparseEncoder, quantization_ranges, quantize_embeddings
from embedrt.cli import main

DOCS = ["Berlin has 3.5 million inhabitants.", "Berlin is known for museums.", "", "서울은 수도이다."]


def test_rerank_command(tiny_reranker: tuple[Path, Path], tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, bundle = tiny_reranker
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    want = Reranker(bundle).rank("Berlin?", DOCS, return_documents=True)
    assert main(["rerank", str(bundle), "Berlin?", str(docs)]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [g["corpus_id"] for g in got] == [w["corpus_id"] for w in want] and got[0]["text"] == want[0]["text"]
    out = subprocess.run([sys.executable, "-m", "embedrt.cli", "rerank", str(bundle), "Berlin?", "--top-k", "2",
                          "--raw-scores", "--no-text"], input="\n".join(DOCS), capture_output=True, text=True, check=True)  # fmt: skip
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    raw = Reranker(bundle).predict([("Berlin?", d) for d in DOCS], activation_fn="identity")
    assert len(rows) == 2 and "text" not in rows[0] and rows[0]["score"] == pytest.approx(float(raw.max()), abs=1e-5)
    assert main(["rerank", str(bundle), "q", str(docs), "-o", str(tmp_path / "r.jsonl")]) == 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == len(DOCS)
    assert main(["rerank", str(tiny_bert_bundle), "q", str(docs)]) == 2
    assert "is of kind 'embedding'; Reranker serves kinds 'reranker'" in capsys.readouterr().err


def test_encode_precisions(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    texts = ["hello world", "", "대한민국", "a longer sentence about cats and dogs"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    full = Embedder(tiny_bert_bundle).encode(texts)
    base = ["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "--no-progress", "-o"]
    assert main([*base, str(tmp_path / "b.npy"), "--precision", "ubinary", "--truncate-dim", "16"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), quantize_embeddings(full[:, :16], "ubinary"))
    np.save(tmp_path / "ranges.npy", quantization_ranges(full * 2))
    assert main([*base, str(tmp_path / "q.parquet"), "--precision", "int8", "--ranges", str(tmp_path / "ranges.npy")]) == 0
    import pyarrow.parquet as pq

    column = pq.read_table(tmp_path / "q.parquet").column("embedding")
    assert str(column.type.value_type) == "int8"
    np.testing.assert_array_equal(np.array(column.to_pylist()), quantize_embeddings(full, "int8", ranges=quantization_ranges(full * 2)))
    assert main([*base, str(tmp_path / "x.npy"), "--precision", "int8", "--ranges", str(tmp_path / "b.npy")]) == 2
    assert "ranges must have shape (2, 32)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, str(tmp_path / "x.npy"), "--precision", "int4"])


def test_sparse_encode_export_kind_validate_info(tiny_sparse: tuple[Path, Path], tiny_reranker: tuple[Path, Path],
                                                 tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source, bundle = tiny_sparse
    (tmp_path / "in.txt").write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    assert main(["encode", str(bundle), str(tmp_path / "in.txt"), "-o", str(tmp_path / "s.jsonl"), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    want = SparseEncoder(bundle).encode(DOCS)
    assert [r["text"] for r in rows] == DOCS and rows[1]["indices"] == want[1].indices.tolist()
    assert main(["encode", str(bundle), str(tmp_path / "in.txt"), "-o", str(tmp_path / "s.npy")]) == 2
    assert "sparse vectors are written as .jsonl" in capsys.readouterr().err
    plain = source.parent / "_mlm"  # the bare *ForMaskedLM folder: an embedding model unless told
    assert main(["export", str(plain), "-o", str(tmp_path / "sp"), "--kind", "sparse", "--no-optimize"]) == 0
    manifest = json.loads((tmp_path / "sp" / "manifest.json").read_text())
    assert manifest["kind"] == "sparse" and manifest["optimizations"]["optimize"] is False
    assert {n.domain for n in onnx.load(str(tmp_path / "sp" / "model.onnx")).graph.node} <= {"", "ai.onnx"}  # plain ONNX
    assert json.loads((bundle / "manifest.json").read_text())["optimizations"]["fused_ops"]["MultiHeadAttention"] > 0
    ce_source, ce_bundle = tiny_reranker
    capsys.readouterr()
    assert main(["validate", str(ce_bundle), "--against", str(ce_source)]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert main(["info", str(ce_bundle)]) == 0
    info = capsys.readouterr().out
    assert "reranker" in info and "activation sigmoid" in info and "flash attention" in info
