"""A bundle's preferred setting: a second graph held in ``preferred/``, run by ``device="auto"`` (the
default) wherever the machine has what the setting needs, and the bundle's own graph elsewhere.

The bundles here are built by hand from two tiny exports (the fused graph as the bundle's own, the
plain one as its preferred setting on OpenVINO in fp32), so that the mechanism is tested on every CPU;
``test_auto`` checks what ``export --precision auto`` writes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from preferred_bundles import hold_preferred

from embedrt import BundleError, Embedder
from embedrt._bundle import load_manifest, write_manifest
from embedrt._describe import describe_variant
from embedrt._types import Device

TEXTS = ["a short one", "The quick brown fox jumps over the lazy dog.", "대한민국은 민주공화국이다."]


@pytest.fixture(scope="module")
def exports(tiny_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The fused tiny BERT (a bundle's own graph) and its plain export (what OpenVINO runs)."""
    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("preferred")
    source = tiny_factory("bert")
    return export_model(source, root / "fused"), export_model(source, root / "plain", optimize=False)


def with_preferred(exports: tuple[Path, Path], where: Path, **preferred: object) -> Path:
    return hold_preferred(*exports, where, **preferred)


def test_auto_runs_the_preferred_setting_where_the_machine_can(exports: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = with_preferred(exports, tmp_path)
    auto = Embedder(bundle, threads=1)
    assert (auto.device, auto.path, auto.precision_hint.value) == (Device.OPENVINO, bundle / "preferred", "fp32")
    assert "preferred setting" in auto.device_choice and "1.2x" in auto.device_choice
    own = Embedder(bundle, device="cpu", threads=1)  # an explicit device runs the bundle's own graph
    assert (own.device, own.path, own.manifest.optimizations.get("optimize")) == (Device.CPU, bundle, True)
    np.testing.assert_allclose(auto.encode(TEXTS), Embedder(exports[1]).encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(own.encode(TEXTS), auto.encode(TEXTS), atol=1e-4)
    row = dict(describe_variant(load_manifest(bundle), bundle))["preferred setting"]
    assert "runs here by default" in row and "preferred/" in row


def test_auto_runs_the_bundles_own_graph_where_the_cpu_lacks_what_was_measured(
    exports: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = with_preferred(exports, tmp_path, cpu_flags=["no_such_unit"])
    model = Embedder(bundle, threads=1)
    assert (model.device, model.path) == (Device.CPU, bundle)
    assert "lacks no_such_unit" in model.device_choice
    assert "not run here" in dict(describe_variant(load_manifest(bundle), bundle))["preferred setting"]
    # a precision hint or provider options name a setting of their own: the preferred one is not taken
    assert Embedder(bundle, threads=1, provider_options={"x": 1}).device is Device.CPU


def test_the_preferred_bundle_is_pinned_by_the_manifest(exports: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = with_preferred(exports, tmp_path)
    held = load_manifest(bundle / "preferred")
    held.max_seq_length = 16  # a changed preferred bundle, consistent in itself
    write_manifest(bundle / "preferred", held)
    with pytest.raises(BundleError, match="is not the one bundle .* was exported with"):
        Embedder(bundle, threads=1)
    assert Embedder(bundle, threads=1, verify=False).path == bundle / "preferred"
    assert Embedder(bundle, device="cpu", threads=1).path == bundle  # the own graph does not need it
    shutil.rmtree(bundle / "preferred")
    with pytest.raises(BundleError, match="preferred/, which is missing: copy the whole bundle folder"):
        Embedder(bundle, threads=1)


def test_a_bad_device_names_auto_among_the_choices(exports: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="invalid device 'tpu'.*or 'auto'"):
        Embedder(exports[0], device="tpu")


def test_the_corpus_job_resolves_auto_once_and_records_the_setting(exports: tuple[Path, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from embedrt.dataset import OutputError, embed_dataset

    bundle = with_preferred(exports, tmp_path, precision_hint="fp32")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    said: list[str] = []
    embed_dataset(src, tmp_path / "out", bundle, progress=False, log=said.append)
    assert any(m.startswith("model: openvino fp32 (auto: the bundle's preferred setting") for m in said)
    vectors = np.stack(pq.read_table(tmp_path / "out").column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(vectors, Embedder(exports[1]).encode(TEXTS), atol=1e-5)
    # the vectors of one output come from one setting: its own graph is another
    with pytest.raises(OutputError, match="was made from another option 'precision_hint' \\('fp32' there, None now\\)"):
        embed_dataset(src, tmp_path / "out", bundle, device="cpu", progress=False)


def test_server_info_says_how_the_device_was_chosen(exports: tuple[Path, Path], tmp_path: Path) -> None:
    from embedrt.server._app import ServerState
    from embedrt.server._config import ServerConfig

    info = ServerState(Embedder(with_preferred(exports, tmp_path), threads=1), ServerConfig()).info()
    assert info["device"] == "openvino" and "preferred setting" in info["device_choice"]
