"""`embedrt bench`: a fast smoke test on the real all-MiniLM-L6-v2 bundle (small sizes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from embedrt import _bench


def _args(bundle: Path, out: Path, *more: str) -> argparse.Namespace:
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
        *more,
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
    machine = result["machine"]
    for when in ("before", "after"):  # a figure from a loaded machine must say so
        assert len(machine["load_average"][when]) == 3 and min(machine["load_average"][when]) >= 0
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert ("avx2" in machine["cpu_flags"]) == (" avx2 " in cpuinfo.replace("\n", " "))
    assert all(f.startswith(("avx2", "avx512", "avx_vnni", "amx")) or "vnni" in f for f in machine["cpu_flags"])
    assert "load average (1/5/15 min) before" in table and "flags" in table


def test_bench_runs_the_bundle_as_it_will_be_served(
    minilm_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the model options of encode, serve and embed-dataset: the figures are those of that setting
    args = _args(minilm_bundle, tmp_path / "bench.json", "--threads", "2", "--streams", "2")
    assert args.run(args) == 0
    assert "threads=2  streams=2" in capsys.readouterr().out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (result["threads"], result["streams"], result["precision_hint"]) == (2, 2, None)
    assert result["device_choice"] == "cpu (auto: the bundle has no preferred setting)"
    hinted = _args(minilm_bundle, tmp_path / "no.json", "--precision-hint", "bf16")
    with pytest.raises(ValueError, match="OpenVINO option; device is 'cpu'"):
        hinted.run(hinted)
    with pytest.raises(SystemExit):  # argparse names the choices
        _args(minilm_bundle, tmp_path / "no.json", "--device", "tpu")


def test_cpu_flags_keep_only_the_ones_that_decide_kernel_speed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni avx512_bf16 avx_vnni "
                       "amx_tile amx_int8 fma\n")
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: real(cpuinfo if str(self) == "/proc/cpuinfo" else self, *a, **k))
    assert _bench.cpu_flags() == ["amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni"]


def test_fixed_length_inputs_have_the_exact_length(minilm_bundle: Path) -> None:
    from embedrt import Embedder

    model = Embedder(minilm_bundle)
    tok = _bench.fixed_length(model.tokenize(_bench.stdlib_sentences(20)), 100, 5)
    assert len(tok) == 5 and set(map(len, tok.ids)) == {100} and list(tok.lengths) == [100] * 5
    assert tok.ids[0][0] == 101 and tok.ids[0][-1] == 102  # [CLS] ... [SEP]


def test_stdlib_sentences_are_deterministic() -> None:
    a, b = _bench.stdlib_sentences(50), _bench.stdlib_sentences(50)
    assert a == b and len(a) == 50 and all(s[-1] in ".!?" for s in a)
