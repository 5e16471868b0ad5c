"""`embedrt bench`: a fast smoke test on the real all-MiniLM-L6-v2 bundle (small sizes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from embedrt import _bench


def _args(bundle: Path, out: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _bench.add_bench_parser(parser.add_subparsers())
    argv = [
        "bench",
        str(bundle),
        "--lengths",
        "16",
        "64",
        "--batch-size",
        "4",
        "--n-texts",
        "24",
        "--seconds",
        "0",
        "--no-progress",
        "--json",
        str(out),
    ]
    return parser.parse_args(argv)


def test_bench_writes_table_and_json(
    minilm_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(minilm_bundle, tmp_path / "bench.json")
    assert args.run(args) == 0
    table = capsys.readouterr().out
    assert "p50 ms" in table and "real text" in table
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["inputs"], r["mode"]): r for r in result["rows"]}
    assert {
        ("16 tokens", "latency"),
        ("64 tokens", "batch 4"),
        ("real text", "latency"),
        ("real text", "batch 4"),
    } <= set(rows)
    lat = rows[("16 tokens", "latency")]
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    assert rows[("64 tokens", "batch 4")]["tokens_s"] == pytest.approx(
        rows[("64 tokens", "batch 4")]["texts_s"] * 64
    )
    assert result["real_texts"]["n"] == 24 and result["load_s"] > 0


def test_fixed_length_inputs_have_the_exact_length(minilm_bundle: Path) -> None:
    from embedrt import Embedder

    model = Embedder(minilm_bundle)
    tok = _bench.fixed_length(model.tokenize(_bench.stdlib_sentences(20)), 100, 5)
    assert len(tok) == 5 and set(map(len, tok.ids)) == {100} and list(tok.lengths) == [100] * 5
    assert tok.ids[0][0] == 101 and tok.ids[0][-1] == 102  # [CLS] ... [SEP]


def test_stdlib_sentences_are_deterministic() -> None:
    a, b = _bench.stdlib_sentences(50), _bench.stdlib_sentences(50)
    assert a == b and len(a) == 50 and all(s[-1] in ".!?" for s in a)
