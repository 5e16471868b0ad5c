"""The embedrt command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedrt import Embedder
from embedrt.cli import main


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "embedrt.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("export", "validate", "encode", "info", "serve", "bench"):
        assert cmd in out.stdout


def test_export_encode_info_validate(tiny_factory, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tiny_factory("distilbert")
    bundle = tmp_path / "b"
    assert main(["export", str(source), "-o", str(bundle)]) == 0
    texts = ["hello world", "", "대한민국", "🙂"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    expected = Embedder(bundle).encode(texts)
    for ext in (".npy", ".jsonl", ".parquet"):
        out = tmp_path / f"out{ext}"
        assert main(["encode", str(bundle), str(tmp_path / "in.txt"), "-o", str(out), "--no-progress"]) == 0
        if ext == ".npy":
            got = np.load(out, allow_pickle=False)
        elif ext == ".jsonl":
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            assert [r["text"] for r in rows] == texts
            got = np.array([r["embedding"] for r in rows], dtype=np.float32)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(out)
            assert table.column("text").to_pylist() == texts
            got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    capsys.readouterr()
    assert main(["info", str(bundle)]) == 0
    info = capsys.readouterr().out
    assert "distilbert" in info and "parity" in info and "passed" in info
    assert main(["validate", str(bundle), "--against", str(source), "--record"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "gate (fp32 on cpu)" in out and "top-10 agreement" in out
    assert "cpu-fp32" in json.loads((bundle / "manifest.json").read_text())["parity"]["gates"]
    assert main(["validate", str(bundle), "--against", str(source), "--no-gate", "--gate", "topk"]) == 2
    assert "expected KEY=NUMBER" in capsys.readouterr().err


def test_errors_are_messages_not_tracebacks(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.txt").write_text("x\n")
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.pkl")]) == 2
    assert "expected one of ('.npy', '.parquet', '.jsonl')" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "x", "-o", "y", "--precision", "int4"])
