"""The OpenVINO execution provider, in its own environment (onnxruntime-openvino, no torch).

Run by ``tests/openvino/run.sh``, which builds that environment and the bundles (prepare.py).
Skipped where the installed onnxruntime build has no OpenVINO provider.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
if "OpenVINOExecutionProvider" not in ort.get_available_providers():
    pytest.skip(
        "this onnxruntime build has no OpenVINO provider (see tests/openvino/run.sh)", allow_module_level=True
    )

from run_threads import record_run_threads  # noqa: E402

from embedrt import Embedder, ProviderError, onnxruntime_build  # noqa: E402
from embedrt._session import cpu_precision_hints  # noqa: E402
from embedrt._types import InferencePrecision  # noqa: E402

DATA = Path(os.environ.get("EMBEDRT_OV_DATA", "")) if os.environ.get("EMBEDRT_OV_DATA") else None
TEXTS = [
    "a short one",
    "The quick brown fox jumps over the lazy dog.",
    "대한민국은 민주공화국이다.",
    "x " * 300,
]
HAS_BF16 = InferencePrecision.BF16 in cpu_precision_hints()


def _data(name: str) -> Path:
    if DATA is None or not (DATA / name).exists():
        pytest.skip(f"EMBEDRT_OV_DATA has no {name}: run tests/openvino/run.sh (it runs prepare.py)")
    return DATA / name


def _gate() -> ModuleType:
    """``embedrt.export._gate`` without ``embedrt.export``'s package import (which needs torch)."""
    import embedrt

    path = Path(embedrt.__file__).resolve().parents[1] / "export" / "_gate.py"
    spec = importlib.util.spec_from_file_location("_embedrt_gate", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_says_it_is_openvino() -> None:
    build = onnxruntime_build()
    assert build["package"] == "onnxruntime-openvino" and "openvino" in build["devices"]
    assert "conflict" not in build, build.get("conflict")
    assert "fp32" in build["openvino_precision_hints"]


def test_cuda_is_refused_with_the_fix() -> None:
    with pytest.raises(ProviderError, match=r"embedrt\[gpu\]"):
        Embedder(_data("tiny-bert"), device="cuda")


def test_precision_hint_is_openvino_only() -> None:
    with pytest.raises(ValueError, match="OpenVINO option"):
        Embedder(_data("tiny-bert"), device="cpu", precision_hint="bf16")


def test_tiny_bert_fp32_matches_cpu_provider() -> None:
    bundle = _data("tiny-bert")
    ov = Embedder(bundle, device="openvino", precision_hint="fp32")
    assert ov.providers[0] == "OpenVINOExecutionProvider"
    np.testing.assert_allclose(ov.encode(TEXTS), Embedder(bundle).encode(TEXTS), atol=1e-5)


def test_streams_run_batches_concurrently_with_the_same_vectors() -> None:
    bundle = _data("tiny-bert")
    texts = [f"{t} {i} " * (1 + i % 5) for i, t in enumerate(TEXTS * 10)]
    one = Embedder(bundle, device="openvino", precision_hint="fp32")
    two = Embedder(bundle, device="openvino", precision_hint="fp32", streams=2)
    seen = record_run_threads(two)
    np.testing.assert_allclose(two.encode(texts, batch_size=4), one.encode(texts, batch_size=4), atol=1e-5)
    assert len(seen) == 2 and all(name.startswith("embedrt-stream") for name in seen)


def test_corpus_job_on_openvino_streams(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from embedrt.dataset import OutputError, embed_dataset

    bundle = _data("tiny-bert")
    texts = [f"{t} {i} " * (1 + i % 5) for i, t in enumerate(TEXTS * 25)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    summary = embed_dataset(src, tmp_path / "out", bundle, device="openvino", precision_hint="fp32", streams=2,
                            batch_size=8, rows_per_part=40, progress=False)  # fmt: skip
    assert summary.written == len(texts)
    table = pq.read_table(tmp_path / "out")
    got = np.stack(table.sort_by("id").column("embedding").to_numpy(zero_copy_only=False))
    want = Embedder(bundle).encode([line for line in src.read_text(encoding="utf-8").splitlines()])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the same job again: finished, whatever the streams; without the hint it is another job
    again = embed_dataset(src, tmp_path / "out", bundle, device="openvino", precision_hint="fp32", progress=False,
                          batch_size=8, rows_per_part=40)  # fmt: skip
    assert again.rows_embedded == 0 and again.written == len(texts)
    with pytest.raises(OutputError, match="precision_hint"):
        embed_dataset(src, tmp_path / "out", bundle, batch_size=8, rows_per_part=40, progress=False)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bf16 (AVX512_BF16 / AMX)")
@pytest.mark.parametrize("hint", ["fp32", "bf16"])
def test_minilm_gate_and_speed(hint: str) -> None:
    texts = json.loads(_data("gate_texts.json").read_text(encoding="utf-8"))
    ref = np.load(_data("minilm_reference.npy"))
    ov = Embedder(_data("minilm"), device="openvino", precision_hint=hint)
    cpu = Embedder(_data("minilm"))
    ov.encode(texts[:64])
    t0 = time.perf_counter()
    got = ov.encode(texts, batch_size=32)
    t1 = time.perf_counter()
    cpu.encode(texts, batch_size=32)
    t2 = time.perf_counter()
    report = _gate().run_gate(ref, got, "fp32", "openvino", hint=hint, texts=texts)
    report["texts_s"] = {"openvino": len(texts) / (t1 - t0), "cpu_fp32": len(texts) / (t2 - t1)}
    print(json.dumps(report))
    assert report["passed"]
