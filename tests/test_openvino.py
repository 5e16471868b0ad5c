"""device="openvino": a bundle's plain graph on OpenVINO's own runtime (the ``openvino`` package, in
the test install), against the onnxruntime CPU provider and sentence-transformers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from run_threads import count_concurrent_runs, record_run_threads

from embedrt import BundleError, Embedder, onnxruntime_build
from embedrt._session import available_cpus, cpu_precision_hints, openvino_config
from embedrt._types import InferencePrecision

TEXTS = [
    "a short one",
    "The quick brown fox jumps over the lazy dog.",
    "대한민국은 민주공화국이다.",
    "x " * 300,
]
HAS_BF16 = InferencePrecision.BF16 in cpu_precision_hints()


@pytest.fixture(scope="module")
def plain_bert(tiny_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT exported without onnxruntime's fusions: OpenVINO takes plain graphs only."""
    from embedrt.export import export_model

    return export_model(tiny_factory("bert"), tmp_path_factory.mktemp("ov-bert") / "bundle", optimize=False)


def test_build_reports_openvino_beside_onnxruntime() -> None:
    import openvino

    build = onnxruntime_build()
    assert "openvino" in build["devices"] and "cpu" in build["devices"]
    assert build["openvino"] == openvino.__version__.split("-")[0]
    assert "conflict" not in build, build.get("conflict")
    assert "fp32" in build["openvino_precision_hints"]


def test_precision_hint_is_openvino_only(plain_bert: Path) -> None:
    with pytest.raises(ValueError, match="OpenVINO option"):
        Embedder(plain_bert, device="cpu", precision_hint="bf16")


def test_tiny_bert_fp32_matches_cpu_provider(plain_bert: Path) -> None:
    ov = Embedder(plain_bert, device="openvino", precision_hint="fp32")
    assert ov.providers == ["OpenVINO"]
    np.testing.assert_allclose(ov.encode(TEXTS), Embedder(plain_bert).encode(TEXTS), atol=1e-5)
    # token states and one text at a time come out as the CPU provider's too
    got = ov.encode(TEXTS[:2], output_value="token_embeddings")
    want = Embedder(plain_bert).encode(TEXTS[:2], output_value="token_embeddings")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)
    np.testing.assert_allclose(ov.encode(TEXTS[1]), Embedder(plain_bert).encode(TEXTS[1]), atol=1e-5)


def test_openvino_properties_pass_through_and_bad_ones_are_named(plain_bert: Path) -> None:
    ov = Embedder(plain_bert, device="openvino", threads=1, provider_options={"NUM_STREAMS": "1"})
    assert ov.session.get_property("INFERENCE_NUM_THREADS") == 1
    with pytest.raises(BundleError, match="OpenVINO"):
        Embedder(plain_bert, device="openvino", provider_options={"NO_SUCH_PROPERTY": "1"})


def test_threads_are_not_pinned_unless_asked(plain_bert: Path) -> None:
    # OpenVINO picks cores per process: two one-thread processes pinned would share one core
    for threads, streams in ((1, 1), (available_cpus(), 2)):
        ov = Embedder(plain_bert, device="openvino", threads=threads, streams=streams)
        assert ov.session.get_property("ENABLE_CPU_PINNING") is False
    asked = Embedder(plain_bert, device="openvino", provider_options={"ENABLE_CPU_PINNING": True})
    assert asked.session.get_property("ENABLE_CPU_PINNING") is True


def test_no_precision_hint_is_fp32_not_openvinos_own_default(plain_bert: Path) -> None:
    # OpenVINO's CPU plugin runs bf16 by default on AMX CPUs: an fp32 bundle must not turn bf16 unasked
    assert openvino_config(2, None, None)["INFERENCE_PRECISION_HINT"] == "f32"
    assert openvino_config(2, {"INFERENCE_PRECISION_HINT": "bf16"}, None)["INFERENCE_PRECISION_HINT"] == "bf16"
    ov = Embedder(plain_bert, device="openvino", threads=1)
    assert ov.session.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    np.testing.assert_allclose(ov.encode(TEXTS), Embedder(plain_bert).encode(TEXTS), atol=1e-5)


def test_server_info_names_openvinos_compute_precision(plain_bert: Path) -> None:
    from embedrt.server._app import ServerState
    from embedrt.server._config import ServerConfig

    hint = "bf16" if HAS_BF16 else "fp32"
    model = Embedder(plain_bert, device="openvino", precision_hint=hint, threads=1)
    info = ServerState(model, ServerConfig()).info()
    assert (info["device"], info["precision"], info["precision_hint"]) == ("openvino", "fp32", hint)


def test_streams_never_outnumber_threads(plain_bert: Path) -> None:
    assert "NUM_STREAMS" not in openvino_config(1, None, None, streams=2)
    assert openvino_config(2, None, None, streams=4)["NUM_STREAMS"] == "2"
    one = Embedder(plain_bert, device="openvino", precision_hint="fp32", threads=1, streams=2)
    assert one.session.get_property("NUM_STREAMS") == 1 and one.streams == 1  # runs one at a time
    texts = [f"{t} {i}" for i, t in enumerate(TEXTS * 8)]
    np.testing.assert_allclose(one.encode(texts, batch_size=4), Embedder(plain_bert).encode(texts, batch_size=4),
                               atol=1e-5)  # fmt: skip


_FIRST_RUNS_AT_ONCE = """
import sys, threading
import numpy as np
from pathlib import Path
from embedrt._openvino import OpenVINOSession
s = OpenVINOSession(Path(sys.argv[1]), {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "THROUGHPUT",
                                        "NUM_STREAMS": "2"}, 2)
feed = {i.name: np.ones((2, 5), np.int64) for i in s.get_inputs()}
start = threading.Barrier(2)
def first_run():
    start.wait()
    s.run(["sentence_embedding"], dict(feed))
threads = [threading.Thread(target=first_run) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_first_runs_from_two_threads_at_once_do_not_deadlock(plain_bert: Path) -> None:
    # A process's first runs, two at once, used to hang in OpenVINO's Python binding (about 1 fresh
    # process in 8 on the 2-core EPYC): 16 fresh processes, two at a time
    import subprocess
    import sys

    model = str(plain_bert / "model.onnx")
    for _ in range(8):
        pair = [subprocess.Popen([sys.executable, "-c", _FIRST_RUNS_AT_ONCE, model]) for _ in range(2)]
        for proc in pair:
            try:
                assert proc.wait(timeout=60) == 0
            except subprocess.TimeoutExpired:
                for q in pair:
                    q.kill()
                pytest.fail("two threads' first OpenVINO runs deadlocked")


def test_fused_bundle_is_refused_with_the_fix(tiny_bert_bundle: Path) -> None:
    with pytest.raises(BundleError, match="--no-optimize"):
        Embedder(tiny_bert_bundle, device="openvino")


def test_a_failed_run_names_openvino_and_the_model_keeps_working(plain_bert: Path) -> None:
    ov = Embedder(plain_bert, device="openvino", precision_hint="fp32")
    bad = {"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    if "token_type_ids" in {i.name for i in ov.session.get_inputs()}:
        bad["token_type_ids"] = np.zeros((1, 3), np.int64)
    with pytest.raises(BundleError, match="OpenVINO failed to run"):
        ov._run(["sentence_embedding"], bad)
    np.testing.assert_allclose(ov.encode(TEXTS), Embedder(plain_bert).encode(TEXTS), atol=1e-5)


def test_streams_run_batches_concurrently_with_the_same_vectors(plain_bert: Path) -> None:
    bundle = plain_bert
    texts = [f"{t} {i} " * (1 + i % 5) for i, t in enumerate(TEXTS * 10)]
    one = Embedder(bundle, device="openvino", precision_hint="fp32")
    two = Embedder(bundle, device="openvino", precision_hint="fp32", streams=2)
    seen = record_run_threads(two)
    np.testing.assert_allclose(two.encode(texts, batch_size=4), one.encode(texts, batch_size=4), atol=1e-5)
    assert len(seen) == 2 and all(name.startswith("embedrt-stream") for name in seen)


def test_corpus_job_on_openvino_streams(plain_bert: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from embedrt.dataset import OutputError, embed_dataset

    bundle = plain_bert
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


@pytest.fixture(scope="module")
def minilm_gate(minilm_path: Path, minilm_st, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(plain MiniLM bundle, gate texts, their sentence-transformers fp32 vectors)."""
    from embedrt.export import export_model
    from embedrt.export._gate import gate_texts

    bundle = export_model(minilm_path, tmp_path_factory.mktemp("ov-minilm") / "bundle", optimize=False)
    texts = gate_texts(1000)
    return bundle, texts, minilm_st.encode(texts, batch_size=32).astype(np.float32)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bf16 (AVX512_BF16 / AMX)")
@pytest.mark.parametrize("hint", ["fp32", "bf16"])
def test_minilm_gate_and_speed(minilm_gate, hint: str) -> None:  # type: ignore[no-untyped-def]
    from embedrt.export._gate import run_gate

    bundle, texts, ref = minilm_gate
    ov = Embedder(bundle, device="openvino", precision_hint=hint)
    cpu = Embedder(bundle)
    ov.encode(texts[:64])
    t0 = time.perf_counter()
    got = ov.encode(texts, batch_size=32)
    t1 = time.perf_counter()
    cpu.encode(texts, batch_size=32)
    t2 = time.perf_counter()
    report = run_gate(ref, got, "fp32", "openvino", hint=hint, texts=texts)
    report["texts_s"] = {"openvino": len(texts) / (t1 - t0), "cpu_fp32": len(texts) / (t2 - t1)}
    print(json.dumps(report))
    assert report["passed"]


TORCH_FREE = r"""
import sys
for name in ("torch", "transformers", "sentence_transformers"):
    sys.modules[name] = None
from embedrt import Embedder
model = Embedder(sys.argv[1], device="openvino", streams=2)
vec = model.encode(["torch-free", "안녕하세요"] * 20, batch_size=4)
assert vec.shape == (40, model.dimension), vec.shape
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("ok", model.providers)
"""


def test_openvino_device_needs_no_torch(plain_bert: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", TORCH_FREE, str(plain_bert)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ['OpenVINO']")


def test_server_on_openvino_streams_answers_concurrent_requests(plain_bert: Path) -> None:
    pytest.importorskip("uvicorn")
    from server_helpers import live_server, post_concurrently

    from embedrt.server import ServerConfig

    model = Embedder(plain_bert, device="openvino", precision_hint="fp32", streams=2)
    ref = Embedder(plain_bert)
    texts = [[f"{t} {i}", f"request {i} " * (1 + i % 4)] for i, t in enumerate(TEXTS * 6)]
    most = count_concurrent_runs(model)
    with live_server(model, ServerConfig(model_name="m", max_wait_ms=0)) as live:
        assert live.state.batcher._streams == 2
        got = post_concurrently(live.url, texts)
    for batch, vectors in zip(texts, got, strict=True):
        np.testing.assert_allclose(vectors, ref.encode(batch), atol=1e-5)
    assert most[0] == 2  # two merged batches were in the model at once, never more
