"""The runtime's contract: shapes, order, batching, bad input, damaged bundles, providers, threads."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from run_threads import count_concurrent_runs, record_run_threads

from embedrt import BundleError, Embedder, ProviderError, available_cpus
from embedrt._session import SessionStreams, check_streams, resolve_streams, split_threads
from embedrt._types import Device, InferencePrecision

TEXTS = ["short", "a much longer sentence with many more tokens in it than the others", "", "mid length text",
         "대한민국은 민주공화국이다.", "🙂🚀"] * 5


@pytest.fixture(scope="module")
def model(tiny_bert_bundle: Path) -> Embedder:
    return Embedder(tiny_bert_bundle)


def test_shapes_and_dtype(model: Embedder) -> None:
    assert model.encode("one text").shape == (model.dimension,)
    out = model.encode(TEXTS)
    assert out.shape == (len(TEXTS), model.dimension) and out.dtype == np.float32
    assert model.encode([]).shape == (0, model.dimension)


def test_order_and_padding_do_not_change_results(model: Embedder) -> None:
    alone = np.stack([model.encode(t) for t in TEXTS])
    for batch_size in (1, 3, 32):
        np.testing.assert_allclose(model.encode(TEXTS, batch_size=batch_size), alone, atol=1e-5)


def test_token_embeddings_unpadded(model: Embedder) -> None:
    out = model.encode(TEXTS[:3], output_value="token_embeddings")
    lengths = model.tokenize(TEXTS[:3]).lengths
    assert [t.shape for t in out] == [(n, model.manifest.hidden_size) for n in lengths]
    assert all(t.dtype == np.float32 for t in out)


def test_normalize_flag(tiny_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from embedrt.export import export_model

    m = Embedder(export_model(tiny_factory("bert", normalize=False), tmp_path / "b"))
    raw = m.encode(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(m.encode(TEXTS, normalize=True), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        (["ok", 3], r"texts\[1\] must be a str, got int"),
        (["ok", None, "x"], r"texts\[1\] must be a str, got NoneType"),
        (b"bytes", r"texts must be a str or a sequence of str \(a list, .*\), got bytes"),
        (42, "got int"),
        ({"b", "a"}, "got set"),  # no order: the rows would not match the texts
        ({"a": 1}, "got dict"),
        ((t for t in ["a"]), "got generator"),
    ],
)
def test_bad_texts(model: Embedder, texts: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        model.encode(texts)  # type: ignore[arg-type]
    assert model.encode("still works").shape == (model.dimension,)


def test_columns_of_strings_are_texts(model: Embedder) -> None:
    want = model.encode(["one text", "another"])
    columns: list[object] = [("one text", "another"), np.array(["one text", "another"])]
    for module, make in (("pandas", "Series"), ("pyarrow", "array"), ("polars", "Series")):
        lib = pytest.importorskip(module) if module == "pyarrow" else _optional(module)
        if lib is not None:
            columns.append(getattr(lib, make)(["one text", "another"]))
    for column in columns:
        np.testing.assert_array_equal(model.encode(column), want)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got NoneType"):
        model.encode(np.array(["a", None], dtype=object))  # type: ignore[arg-type]


def _optional(module: str) -> object:
    try:
        return __import__(module)
    except ImportError:
        return None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"output_value": "pooled"}, "invalid output_value 'pooled': expected one of"),
    ],
)
def test_bad_arguments(model: Embedder, kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        model.encode(["x"], **kwargs)


def test_bad_device_and_missing_provider(tiny_bert_bundle: Path) -> None:
    with pytest.raises(ValueError, match="invalid device 'tpu': expected one of 'cpu', 'cuda'"):
        Embedder(tiny_bert_bundle, device="tpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ProviderError, match=r"needs CUDAExecutionProvider.*available: \[.*'CPUExecutionProvider'.*embedrt\[gpu\]"):
            Embedder(tiny_bert_bundle, device="cuda")


def test_cuda_loads_the_pip_cuda_libraries_quietly(tiny_bert_bundle: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """On device cuda the session first has onnxruntime load the CUDA libraries of the nvidia-* pip
    packages (nothing else puts them on the loader's path without PyTorch), once per process; what
    onnxruntime prints about them goes to stderr, never into an `encode` written to stdout."""
    import onnxruntime as ort

    from embedrt import _session

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA build: the session would not fall back (benchmarks.gpu checks the loading there)")
    calls = []

    def fake_preload(**kwargs: bool) -> None:
        calls.append(kwargs)
        print("Failed to load libcublasLt.so.13")
        raise RuntimeError("no nvidia site packages")

    providers = [*ort.get_available_providers(), "CUDAExecutionProvider"]
    monkeypatch.setattr(_session.ort, "get_available_providers", lambda: providers)
    monkeypatch.setattr(_session.ort, "preload_dlls", fake_preload, raising=False)
    _session._load_cuda_libraries.cache_clear()
    try:
        for _ in range(2):  # the real CPU build cannot give the CUDA provider: refused, not a CPU session
            with pytest.raises(ProviderError, match="CUDAExecutionProvider was requested but the session fell back"):
                Embedder(tiny_bert_bundle, device="cuda")
    finally:
        _session._load_cuda_libraries.cache_clear()
    assert calls == [{"cuda": True, "cudnn": True, "msvc": False}]
    out, err = capsys.readouterr()
    assert "libcublasLt" not in out and "libcublasLt" in err


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def test_missing_file(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    b = _copy(tiny_bert_bundle, tmp_path)
    (b / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="missing tokenizer.json"):
        Embedder(b)


def test_altered_file(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    b = _copy(tiny_bert_bundle, tmp_path)
    with (b / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="model.onnx was altered after export"):
        Embedder(b)
    with pytest.raises(BundleError, match="model.onnx cannot be loaded by onnxruntime"):
        Embedder(b, verify=False)  # opting out of the check still gives a clear error


def test_newer_schema(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    b = _copy(tiny_bert_bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema_version 99, newer than this embedrt understands"):
        Embedder(b)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a directory"):
        Embedder(tmp_path / "nothing")
    with pytest.raises(BundleError, match="has no manifest.json"):
        Embedder(tmp_path)


def test_threads(tiny_bert_bundle: Path) -> None:
    assert available_cpus() >= 1
    assert Embedder(tiny_bert_bundle).threads == available_cpus()
    assert Embedder(tiny_bert_bundle, threads=1).threads == 1
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        Embedder(tiny_bert_bundle, threads=0)


def test_streams_are_checked(tiny_bert_bundle: Path) -> None:
    assert Embedder(tiny_bert_bundle).streams == 1
    with pytest.raises(ValueError, match=r"streams=2 runs batches concurrently on the CPU .* device 'cuda'"):
        Embedder(tiny_bert_bundle, device="cuda", streams=2)
    for bad in (0, -1, "2", "Auto", True, 1.5, None):
        with pytest.raises(ValueError, match=f"streams must be a positive integer or 'auto', got {bad!r}"):
            Embedder(tiny_bert_bundle, streams=bad)  # type: ignore[arg-type]


def test_auto_streams_are_one_per_thread_on_the_cpu_only(tiny_bert_bundle: Path) -> None:
    m = Embedder(tiny_bert_bundle, threads=3, streams="auto")
    assert m.streams == 3 and isinstance(m.session, SessionStreams)
    assert m.session.get_session_options().intra_op_num_threads == 1  # one shared single-thread session
    assert Embedder(tiny_bert_bundle, threads=1, streams="auto").streams == 1
    assert resolve_streams(Device.CPU, "auto", 4) == 4
    assert resolve_streams(Device.CUDA, "auto", 4) == 1  # one batch at a time there: no refusal
    assert resolve_streams(Device.OPENVINO, "auto", 4) == 1  # fp32 on OpenVINO: level with one, for more memory
    assert resolve_streams(Device.OPENVINO, "auto", 4, InferencePrecision.BF16) == 4  # its throughput mode pays in bf16
    assert resolve_streams(Device.CPU, 3, 2) == 2  # a stream needs a thread of its own
    assert check_streams(Device.CUDA, "auto") == "auto"


def test_split_threads() -> None:
    assert split_threads(2, 2) == [1, 1]
    assert split_threads(5, 2) == [3, 2]
    assert split_threads(1, 2) == [1]
    assert split_threads(4, 1) == [4]


def test_cpu_streams_are_sessions_with_a_share_of_the_threads(tiny_bert_bundle: Path) -> None:
    m = Embedder(tiny_bert_bundle, threads=5, streams=2)
    assert isinstance(m.session, SessionStreams) and m.streams == 2
    assert [s.get_session_options().intra_op_num_threads for s in m.session.sessions] == [3, 2]
    assert m.providers == ["CPUExecutionProvider"]
    shared = Embedder(tiny_bert_bundle, threads=2, streams=2)  # one thread each: one session, weights held once
    assert shared.session.sessions[0] is shared.session.sessions[1]
    assert shared.session.get_session_options().intra_op_num_threads == 1
    one = Embedder(tiny_bert_bundle, threads=1, streams=2)  # a stream needs a thread: one session
    assert one.streams == 1 and not isinstance(one.session, SessionStreams)


def test_cpu_streams_run_a_lone_batch_on_all_threads_when_asked(tiny_bert_bundle: Path) -> None:
    """In ``all_threads`` a call of one batch runs on a session of all the threads, made on its first
    use; outside it, several batches, or a lone run already holding that session keep to the streams."""
    serial = Embedder(tiny_bert_bundle, threads=2)
    m = Embedder(tiny_bert_bundle, threads=2, streams=2)
    m.encode(TEXTS[:3])
    assert m._solo is None  # not asked: one stream's thread, no second copy of the weights
    with m.all_threads():
        np.testing.assert_allclose(m.encode(TEXTS * 12, batch_size=4), serial.encode(TEXTS * 12, batch_size=4),
                                   atol=1e-6)  # fmt: skip
        assert m._solo is None  # many batches: the streams
        with m._solo_lock:  # another lone run holds it: this one takes a stream, without waiting
            np.testing.assert_allclose(m.encode(TEXTS[:3]), serial.encode(TEXTS[:3]), atol=1e-6)
        assert m._solo is None
        np.testing.assert_allclose(m.encode(TEXTS[:3]), serial.encode(TEXTS[:3]), atol=1e-6)
    assert m._solo.get_session_options().intra_op_num_threads == 2
    assert Embedder(tiny_bert_bundle, threads=2)._solo_runs is False  # one stream: its session has every thread


def test_cpu_streams_share_a_call_of_fewer_batches_than_streams(tiny_bert_bundle: Path) -> None:
    """A call of one batch is cut into a piece per stream, run at once (else one stream's thread would
    run it all while the other idles); in ``all_threads`` it stays one batch, for the session of all
    the threads, and in ``batches_as_cut`` too; a call of enough batches is cut as before."""
    serial = Embedder(tiny_bert_bundle)
    m = Embedder(tiny_bert_bundle, threads=2, streams=2)
    rows: list[int] = []
    run = m._run

    def spy(outputs: list[str], feed: dict[str, np.ndarray], alone: bool = False) -> list[np.ndarray]:
        rows.append(feed["input_ids"].shape[0])
        return run(outputs, feed, alone)  # type: ignore[no-any-return]

    m._run = spy  # type: ignore[method-assign]
    most = count_concurrent_runs(m)
    np.testing.assert_allclose(m.encode(TEXTS[:3]), serial.encode(TEXTS[:3]), atol=1e-6)
    assert sorted(rows) == [1, 2] and most == [2]  # the long text alone, the two short ones together
    rows.clear()
    np.testing.assert_allclose(m.encode(TEXTS[:1]), serial.encode(TEXTS[:1]), atol=1e-6)
    assert rows == [1]  # one row: nothing to share
    rows.clear()
    with m.all_threads():
        np.testing.assert_allclose(m.encode(TEXTS[:3]), serial.encode(TEXTS[:3]), atol=1e-6)
    assert rows == [3]
    rows.clear()
    with m.batches_as_cut():  # the caller shares the work between the streams itself
        m.encode(TEXTS[:3])
    assert rows == [3]
    rows.clear()
    m.encode(TEXTS * 4, batch_size=4)
    assert rows == [4] * 30


def test_concurrent_batches_keep_rows_and_order(tiny_bert_bundle: Path) -> None:
    """The concurrent path (streams > 1 on the CPU provider: one shared single-thread session here):
    every row lands in its place, token states included, on several threads."""
    texts = [f"{t} {i} " * (1 + i % 7) for i, t in enumerate(TEXTS * 12)]
    serial = Embedder(tiny_bert_bundle)
    m = Embedder(tiny_bert_bundle, threads=3, streams=3)
    seen = record_run_threads(m)
    np.testing.assert_allclose(m.encode(texts, batch_size=4), serial.encode(texts, batch_size=4), atol=1e-6)
    assert len(seen) > 1 and all(name.startswith("embedrt-stream") for name in seen)
    for a, b in zip(m.encode(texts, batch_size=4, output_value="token_embeddings"),
                    serial.encode(texts, batch_size=4, output_value="token_embeddings"), strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_failed_concurrent_batch_stops_the_rest(tiny_bert_bundle: Path) -> None:
    m = Embedder(tiny_bert_bundle, threads=2, streams=2)
    calls = []

    def failing(outputs: list[str], feed: dict[str, np.ndarray], alone: bool = False) -> list[np.ndarray]:
        calls.append(feed["input_ids"].shape)
        raise BundleError("batch failed")

    m._run = failing  # type: ignore[method-assign]
    with pytest.raises(BundleError, match="batch failed"):
        m.encode(TEXTS * 40, batch_size=2)
    assert len(calls) <= 4  # at most two per stream had been queued: the rest never ran
    m._run = Embedder._run.__get__(m)  # type: ignore[method-assign]
    np.testing.assert_allclose(m.encode(TEXTS), Embedder(tiny_bert_bundle).encode(TEXTS), atol=1e-6)


def test_memory_arena_off_unless_asked(tiny_bert_bundle: Path) -> None:
    assert not Embedder(tiny_bert_bundle).session.get_session_options().enable_cpu_mem_arena
    on = Embedder(tiny_bert_bundle, memory_arena=True)
    assert on.session.get_session_options().enable_cpu_mem_arena
    np.testing.assert_allclose(on.encode(TEXTS), Embedder(tiny_bert_bundle).encode(TEXTS), atol=1e-6)


def test_concurrent_encode_from_threads(model: Embedder) -> None:
    expected = model.encode(TEXTS)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            order = np.random.default_rng(seed).permutation(len(TEXTS))
            got = model.encode([TEXTS[i] for i in order], batch_size=4)
            results.append(got[np.argsort(order)])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


# -- what a new user runs into ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["encode", "tokenize"])
def test_lone_surrogate_is_named_by_index(model: Embedder, call: str) -> None:
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode: it holds a lone surrogate '\\udcff' at character 4"):
        getattr(model, call)(["fine", "bad \udcff", "also fine"])
    assert model.encode("still works").shape == (model.dimension,)


def _edit_manifest(bundle: Path, **changes: object) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    m.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def test_edited_manifest_is_refused(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    b = _copy(tiny_bert_bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    assert m["max_positions"] == 128 and m["max_seq_length"] == 48 and len(m["manifest_sha256"]) == 64
    _edit_manifest(b, max_seq_length=64)  # within the graph's reach: only the manifest's own hash tells
    with pytest.raises(BundleError, match=r"manifest.json was edited after export .*--no-verify"):
        Embedder(b)
    assert Embedder(b, verify=False).max_seq_length == 64  # the user's explicit choice


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"max_seq_length": 2000}, "max_seq_length 2000 is more than the 128 tokens the graph's position"),
        ({"dimension": 64}, "says dimension 64, but model.onnx's output sentence_embedding has 32"),
        ({"hidden_size": 7}, "says hidden_size 7, but model.onnx's output token_embeddings has 32"),
        ({"inputs": ["input_ids", "attention_mask"]}, r"lists inputs \['input_ids', 'attention_mask'\], but model.onnx takes"),
        ({"max_seq_length": "256"}, "max_seq_length must be a positive integer, got '256'"),
    ],
    ids=["past-positions", "dimension", "hidden", "inputs", "string-length"],
)
def test_manifest_is_checked_against_the_graph(tiny_bert_bundle: Path, tmp_path: Path, changes: dict, match: str) -> None:  # type: ignore[type-arg]
    b = _copy(tiny_bert_bundle, tmp_path)
    _edit_manifest(b, **changes)
    with pytest.raises(BundleError, match=match):
        Embedder(b, verify=False)  # checked even when the hashes are not


def test_run_errors_name_the_bundle_the_batch_and_the_cause(tiny_bert_bundle: Path, tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    b = _copy(tiny_bert_bundle, tmp_path)
    _edit_manifest(b, max_seq_length=200, max_positions=None)  # as a manifest written before max_positions
    model = Embedder(b, verify=False)
    capfd.readouterr()
    with pytest.raises(BundleError) as e:
        model.encode(["word " * 300, "short"])
    msg = str(e.value)
    assert f"bundle {str(b)!r} on a batch of 2 x 200 tokens" in msg
    assert "as long as manifest.json's max_seq_length (200)" in msg and "onnxruntime said:" in msg
    assert "Non-zero status code" not in capfd.readouterr().err  # said once, in the error, not logged too
    assert model.encode("short").shape == (model.dimension,)


def test_bundle_on_a_provider_it_was_not_made_for_warns(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    import warnings

    from embedrt import Precision, ProviderWarning
    from embedrt._bundle import load_manifest, write_manifest

    with warnings.catch_warnings():
        warnings.simplefilter("error", ProviderWarning)
        Embedder(tiny_bert_bundle)  # fp32 on cpu: nothing to say
    b = _copy(tiny_bert_bundle, tmp_path)
    m = load_manifest(b)
    m.precision = Precision.FP16
    write_manifest(b, m)
    with pytest.warns(ProviderWarning, match=r"is fp16, made for the cuda provider, and runs here on cpu"):
        Embedder(b)


def test_manifest_is_written_whole(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    from embedrt._bundle import load_manifest, write_manifest

    b = _copy(tiny_bert_bundle, tmp_path)
    umask = os.umask(0o022)
    try:
        write_manifest(b, load_manifest(b))
    finally:
        os.umask(umask)
    assert sorted(p.name for p in b.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]
    assert set(load_manifest(b).files) == {"model.onnx", "tokenizer.json"}
    assert stat.S_IMODE((b / "manifest.json").stat().st_mode) == 0o644  # readable by a server run as another user


def test_a_file_written_whole_keeps_the_old_one_on_failure_and_gets_open_s_modes(tmp_path: Path) -> None:
    from embedrt._files import write_text_whole, written_whole

    umask = os.umask(0o027)
    try:
        write_text_whole(tmp_path / "a.json", "{}\n")
        with pytest.raises(RuntimeError, match="killed"), written_whole(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
        with written_whole(tmp_path / "sub" / "b.bin", durable=True) as tmp:
            tmp.write_bytes(b"whole")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").read_text() == "{}\n" and (tmp_path / "sub" / "b.bin").read_bytes() == b"whole"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a.json", "sub", "sub/b.bin"]
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
