"""``export --precision auto``: int8 and fp32, fused and not, gated and timed; the fastest that passes
is the bundle, and its manifest says what was measured and why it won."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from embedrt import Embedder
from embedrt._bundle import load_manifest
from embedrt.export import export_model


def test_auto_gates_every_candidate_once_and_keeps_the_fastest(
    tiny_factory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import embedrt.export._attempts as attempts

    calls: list[int] = []
    real = attempts.reference_embeddings

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(attempts, "reference_embeddings", counted)
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", precision="auto")
    assert len(calls) == 1  # the PyTorch side of the gate, once for all four candidates
    opt = load_manifest(bundle).optimizations
    auto = opt["auto"]
    labels = {c["setting"] for c in auto["candidates"]}
    assert labels == {"int8 smooth, fused where it fuses", "int8 smooth, unfused",
                      "fp32, fused where it fuses", "fp32, unfused"}  # fmt: skip
    speeds = {c["setting"]: c["texts_per_cpu_second"] for c in auto["candidates"] if c["passed"]}
    assert auto["chosen"] == attempts.pick_fastest(speeds)[0] and "fastest" in auto["why"]
    assert speeds[auto["chosen"]] >= max(speeds.values()) * (1 - attempts.SPEED_TIE)
    assert auto["chosen"].startswith(opt["precision"]) and "CPU time" in auto["measured"]
    assert Embedder(bundle).encode(["a text"]).shape == (1, 32)


def test_auto_keeps_the_preferred_setting_in_a_tie_and_the_fastest_otherwise() -> None:
    from embedrt.export._attempts import pick_fastest

    order = {"int8 fused": 49.8, "int8 unfused": 50.5, "fp32 fused": 38.4, "fp32 unfused": 36.3}
    assert pick_fastest(order) == ("int8 fused", ["int8 unfused"])  # 1.4% apart: a tie
    assert pick_fastest({**order, "int8 unfused": 56.0}) == ("int8 unfused", [])  # 12% apart: faster
    assert pick_fastest({"a": 10.0, "b": 9.6, "c": 9.4}, tie=0.05) == ("a", ["b"])
    assert pick_fastest({"a": 9.4, "b": 10.0}, tie=0.05) == ("b", [])  # 6% slower than the fastest: out


def test_auto_is_a_precision_the_cli_offers() -> None:
    from embedrt.cli import build_parser

    args = build_parser().parse_args(["export", "src", "-o", "out", "--precision", "auto", "--no-optimize"])
    assert args.precision == "auto" and args.optimize is False
    assert build_parser().parse_args(["export", "src", "-o", "out"]).optimize is None
