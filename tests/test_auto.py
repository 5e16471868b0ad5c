"""``export --precision auto``: int8 and fp32, fused and not, gated and timed; the fastest that passes
is the bundle, and its manifest says what was measured and why it won."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
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


def test_auto_holds_openvinos_bf16_as_the_preferred_setting_where_it_is_faster(
    tiny_factory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenVINO's bf16 timed fastest: the bundle's own graph stays the CPU provider's fastest (it runs on
    # every CPU), and the bundle holds the plain graph as its preferred setting, pinned by its manifest
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
    manifest = load_manifest(bundle)
    auto = manifest.optimizations["auto"]
    assert auto["chosen"] != attempts.OPENVINO_BF16 and auto["faster_here"]["setting"] == attempts.OPENVINO_BF16
    assert auto["faster_here"]["times_the_chosen"] > 1 and "device 'auto'" in auto["faster_here"]["how"]
    preferred, held = manifest.preferred, load_manifest(bundle / "preferred")
    assert preferred is not None and (preferred["device"], preferred["precision_hint"]) == ("openvino", "bf16")
    assert preferred["times_the_bundle"] == auto["faster_here"]["times_the_chosen"]
    assert preferred["cpu_flags"] in (["amx_bf16"], ["avx512_bf16"])
    assert (held.precision.value, held.optimizations.get("optimize")) == ("fp32", False)  # the plain graph
    pinned = json.loads((bundle / "preferred" / "manifest.json").read_text())["manifest_sha256"]
    assert preferred["manifest_sha256"] == pinned
    assert Embedder(bundle, device="cpu").path == bundle  # its own graph, the chosen one
    from embedrt._describe import describe_variant

    rows = dict(describe_variant(manifest, bundle))
    assert "preferred/" in rows["preferred setting"] and "preferred/" in rows["size"]
    assert "faster here" not in rows  # said once, by the preferred setting's row
    # a bundle of an auto that only recorded the faster setting (no preferred/) still names it
    assert "faster here" in dict(describe_variant(replace(manifest, preferred=None)))


def test_auto_keeps_the_preferred_setting_in_a_tie_and_the_fastest_otherwise() -> None:
    from embedrt.export._attempts import pick_fastest

    order = {"int8 fused": 49.8, "int8 unfused": 50.5, "fp32 fused": 38.4, "fp32 unfused": 36.3}
    assert pick_fastest(order) == ("int8 fused", ["int8 unfused"])  # 1.4% apart: a tie
    assert pick_fastest({**order, "int8 unfused": 56.0}) == ("int8 unfused", [])  # 12% apart: faster
    assert pick_fastest({"a": 10.0, "b": 9.6, "c": 9.4}, tie=0.05) == ("a", ["b"])
    assert pick_fastest({"a": 9.4, "b": 10.0}, tie=0.05) == ("b", [])  # 6% slower than the fastest: out


def test_auto_stops_timing_a_candidate_far_behind_the_fastest() -> None:
    import time

    from embedrt.export._attempts import SPEED_DROP, measure_speed

    cost = {"int8": 0.02, "close": 0.022, "far": 0.02 * 3}  # CPU seconds a call
    runs = dict.fromkeys(cost, 0)

    def spin(name: str, _texts: list[str]) -> None:
        runs[name] += 1
        t0 = time.process_time()
        while time.process_time() - t0 < cost[name]:
            pass

    bundles = {k: (Path(k), {}) for k in cost}
    speed = measure_speed(bundles, ["t"] * 4, rounds=3, load=lambda b, **_: str(b), run=spin)  # type: ignore[arg-type]
    assert runs == {"int8": 4, "close": 4, "far": 2}  # a warm-up and rounds; "far" after one round only
    assert speed["far"] < speed["int8"] / SPEED_DROP < speed["close"]
    assert speed["int8"] == pytest.approx(4 / 0.02, rel=0.5)


def test_auto_is_a_precision_the_cli_offers() -> None:
    from embedrt.cli import build_parser

    args = build_parser().parse_args(["export", "src", "-o", "out", "--precision", "auto", "--no-optimize"])
    assert args.precision == "auto" and args.optimize is False
    assert build_parser().parse_args(["export", "src", "-o", "out"]).optimize is None


def test_auto_on_a_decoder_weighs_its_default_graph_with_the_rotary_kernel(tmp_path: Path) -> None:
    # onnxruntime fuses nothing in a decoder, but the default graph has its rotary embeddings on the
    # rotary kernel: auto's candidates are that graph (int8 and fp32) and the plain fp32 one (OpenVINO's)
    from tiny_families import make_family

    import embedrt.export._attempts as attempts

    bundle = export_model(make_family("qwen3", tmp_path / "src"), tmp_path / "b", precision="auto")
    opt = load_manifest(bundle).optimizations
    labels = {c["setting"] for c in opt["auto"]["candidates"]} - {attempts.OPENVINO_BF16}
    assert labels == {"int8 smooth, fused where it fuses", "fp32, fused where it fuses", "fp32, unfused"}
    if opt["auto"]["chosen"] != "fp32, unfused":
        assert opt["rotary"]["rotary"] > 0 and opt["fused_ops"]["RotaryEmbedding"] == opt["rotary"]["rotary"]


def test_auto_gates_a_graph_with_nothing_to_fuse_or_rewrite_once(tmp_path: Path) -> None:
    # T5's encoder: no fusion, no rotary embeddings, no product in slices: its default graph is the
    # plain one, made and gated once per precision
    from tiny_families import make_family

    import embedrt.export._attempts as attempts

    said: list[str] = []
    bundle = export_model(make_family("t5", tmp_path / "src"), tmp_path / "b", precision="auto", log=said.append)
    auto = load_manifest(bundle).optimizations["auto"]
    labels = [c["setting"] for c in auto["candidates"] if c["setting"] != attempts.OPENVINO_BF16]
    assert sorted(labels) == ["fp32, unfused", "int8 smooth, unfused"]
    assert sum("nothing in this graph was fused or rewritten" in line for line in said) == 2
    assert sum(line.startswith("making ") for line in said) == 2
