"""``export --precision auto``: int8 and fp32, fused and not, gated and timed; the fastest that passes
is the bundle, and its manifest says what was measured and why it won."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from embedrt import Embedder
from embedrt._bundle import load_manifest
from embedrt._openvino import openvino_version
from embedrt._session import cpu_precision_hints
from embedrt._types import InferencePrecision
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
    onnxruntime_settings = {"int8 smooth, fused where it fuses", "int8 smooth, unfused", "fp32, fused where it fuses",
                            "fp32, unfused"}  # fmt: skip
    openvino_bf16 = openvino_version() is not None and InferencePrecision.BF16 in cpu_precision_hints()
    assert labels == onnxruntime_settings | ({attempts.OPENVINO_BF16} if openvino_bf16 else set())
    speeds = {c["setting"]: c["texts_per_cpu_second"] for c in auto["candidates"]
              if c["passed"] and c["setting"] != attempts.OPENVINO_BF16}  # fmt: skip
    assert auto["chosen"] == attempts.pick_fastest(speeds)[0] and "fastest" in auto["why"]
    assert speeds[auto["chosen"]] >= max(speeds.values()) * (1 - attempts.SPEED_TIE)
    assert auto["chosen"].startswith(opt["precision"]) and "CPU time" in auto["measured"]
    assert Embedder(bundle).encode(["a text"]).shape == (1, 32)


def test_auto_says_where_openvinos_bf16_is_faster_but_keeps_a_bundle_that_runs_as_chosen(
    tiny_factory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenVINO's bf16 timed fastest: recorded with how to run it; the bundle stays the fastest setting
    # of onnxruntime's CPU provider, which is what loading it runs
    import embedrt.export._attempts as attempts

    monkeypatch.setattr(attempts, "_openvino_bf16", lambda job, passed: {"mean_cos": 0.99999, "min_cos": 0.9999,
                                                                        "topk": 0.99})  # fmt: skip
    real = attempts.measure_speed

    def timed(bundles: dict[str, Any], texts: list[str]) -> dict[str, float]:
        ov = attempts.OPENVINO_BF16
        assert bundles[ov] == (bundles["fp32, unfused"][0], attempts._OPENVINO_BF16)  # the plain graph
        speeds = real({k: b for k, b in bundles.items() if k != ov}, texts)
        return {**speeds, ov: 10 * max(speeds.values())}

    monkeypatch.setattr(attempts, "measure_speed", timed)
    bundle = export_model(tiny_factory("bert"), tmp_path / "b", precision="auto")
    auto = load_manifest(bundle).optimizations["auto"]
    assert auto["chosen"] != attempts.OPENVINO_BF16 and auto["faster_here"]["setting"] == attempts.OPENVINO_BF16
    assert auto["faster_here"]["times_the_chosen"] > 1 and "device='openvino'" in auto["faster_here"]["how"]
    from embedrt._describe import describe_variant

    assert any(name == "faster here" for name, _ in describe_variant(load_manifest(bundle), bundle))


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
