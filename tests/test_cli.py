"""The embedrt command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedrt import Embedder
from embedrt.cli import build_parser, main


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "embedrt.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("export", "validate", "encode", "info", "serve", "bench"):
        assert cmd in out.stdout


def test_export_encode_info_validate(tiny_factory, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tiny_factory("distilbert")
    bundle = tmp_path / "b"
    assert main(["export", str(source), "-o", str(bundle)]) == 0
    err = capsys.readouterr().err  # the gate's minutes show progress, side by side
    assert "quality gate (fp32) on 1000 texts" in err and "PyTorch reference" in err
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
    assert "worst: #" not in out and ("every text agrees" in out or "lowest cosine" in out)
    assert "cpu-fp32" in json.loads((bundle / "manifest.json").read_text())["parity"]["gates"]
    assert main(["validate", str(bundle), "--against", str(source), "--no-gate", "--gate", "topk"]) == 2
    assert "expected KEY=NUMBER" in capsys.readouterr().err


def test_errors_are_messages_not_tracebacks(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.txt").write_text("x\n")
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.pkl")]) == 2
    assert "expected one of ('.npy', '.parquet', '.jsonl')" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    out = str(tmp_path / "o.npy")
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", out, "--device", "cuda",
                 "--streams", "2"]) == 2  # fmt: skip
    assert "streams=2 runs batches concurrently on the CPU" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", out, "--streams", "many"])
    assert "argument --streams: expected a positive integer or 'auto', got 'many'" in capsys.readouterr().err
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", out, "--streams", "auto"]) == 0
    assert np.load(out).shape[0] == 1
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", out, "--precision-hint", "bf16"]) == 2
    assert "precision_hint 'bf16' is an OpenVINO option; device is 'cpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "x", "-o", "y", "--precision", "int4"])
    with pytest.raises(SystemExit):
        main(["encode", str(tiny_bert_bundle), "-", "-o", "o.npy", "--max-batch-tokens", "0"])
    assert "expected a positive integer or 'auto', got '0'" in capsys.readouterr().err


def test_batch_commands_default_to_auto_streams_and_the_server_to_one() -> None:
    parser = build_parser()
    assert parser.parse_args(["encode", "b", "in.txt", "-o", "o.npy"]).streams == "auto"
    assert parser.parse_args(["embed-dataset", "in.txt", "out", "-m", "b"]).streams == "auto"
    assert parser.parse_args(["serve", "b"]).streams == 1
    assert parser.parse_args(["encode", "b", "in.txt", "-o", "o.npy", "--streams", "3"]).streams == 3


# -- what a new user runs into ---------------------------------------------------------------------------


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "embedrt.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("embedrt 0.") and "onnxruntime" in out.stdout


def _write_table(path: Path, rows: list[dict]) -> None:  # type: ignore[type-arg]
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("name", ["in.jsonl", "in.ndjson", "in.csv", "in.tsv", "in.parquet"])
def test_encode_reads_the_text_column_of_files_with_columns(tiny_bert_bundle: Path, tmp_path: Path, name: str) -> None:
    texts = ["A man is eating food.", "", "a, \"quoted\"\nline", "대한민국"]
    _write_table(tmp_path / name, [{"id": i, "body": t} for i, t in enumerate(texts)])
    out = tmp_path / "o.npy"
    args = ["encode", str(tiny_bert_bundle), str(tmp_path / name), "-o", str(out), "--text-column", "body"]
    assert main([*args, "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(out), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)


@pytest.mark.parametrize("name", ["in.jsonl.gz", "in.txt.xz"])
def test_encode_reads_compressed_files(tiny_bert_bundle: Path, tmp_path: Path, name: str) -> None:
    import gzip
    import lzma

    from embedrt._lines import COMPRESSED
    from embedrt.dataset._storage import CODECS

    assert set(COMPRESSED) == set(CODECS)  # every compression the readers take is routed to them
    texts = ["A man is eating food.", "", "대한민국", "last"]
    if name.startswith("in.jsonl"):
        data = "".join(json.dumps({"body": t}, ensure_ascii=False) + "\n" for t in texts).encode()
        (tmp_path / name).write_bytes(gzip.compress(data))
    else:
        (tmp_path / name).write_bytes(lzma.compress("".join(t + "\n" for t in texts).encode()))
    out = tmp_path / "o.npy"
    args = ["encode", str(tiny_bert_bundle), str(tmp_path / name), "-o", str(out), "--no-progress"]
    assert main([*args, *(["--text-column", "body"] if "jsonl" in name else [])]) == 0
    np.testing.assert_allclose(np.load(out), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)


def test_encode_of_files_with_columns_names_bad_rows(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n{"text": null}\n', encoding="utf-8")
    out = tmp_path / "o.npy"
    assert main(["encode", str(tiny_bert_bundle), str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src} line 2" in err and "null" in err and "--on-error" in err and not out.exists()
    assert main(["encode", str(tiny_bert_bundle), str(src), "-o", str(out), "--text-column", "body"]) == 2
    assert "body" in capsys.readouterr().err and not out.exists()
    (tmp_path / "in.json").write_text('[{"text": "a"}]', encoding="utf-8")
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.json"), "-o", str(out)]) == 2
    assert ".jsonl" in capsys.readouterr().err and not out.exists()


def test_encode_reads_txt_and_other_extensions_line_by_line(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    texts = ['{"text": "kept as it is"}', "id,text", "plain"]
    expected = Embedder(tiny_bert_bundle).encode(texts)
    for name in ("in.txt", "in.md", "in"):
        (tmp_path / name).write_text("\n".join(texts) + "\n", encoding="utf-8")
        out = tmp_path / f"{name}.npy"
        assert main(["encode", str(tiny_bert_bundle), str(tmp_path / name), "-o", str(out), "--no-progress"]) == 0
        np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_encode_invalid_utf8_names_the_file_and_line(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.txt").write_bytes(b"good line\nanother\nbad \xd2 byte\n")
    out = tmp_path / "o.jsonl"
    argv = ["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "in.txt line 3, column 5: byte 0xd2 is not valid UTF-8" in err and "--errors replace" in err
    assert not out.exists()
    assert main([*argv, "--errors", "replace"]) == 0
    assert "replaced with U+FFFD on 1 line(s)" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["good line", "another", "bad \ufffd byte"]
    assert main([*argv, "--errors", "ignore"]) == 0
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[2])["text"] == "bad  byte"


def test_encode_invalid_utf8_on_stdin(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "embedrt.cli", "encode", str(tiny_bert_bundle), "-", "-o", str(tmp_path / "o.npy")]
    r = subprocess.run(cmd, input=b"ok\nbad \xff\n", capture_output=True)
    assert r.returncode == 2 and b"stdin line 2, column 5: byte 0xff is not valid UTF-8" in r.stderr
    r = subprocess.run([*cmd, "--errors", "replace"], input=b"ok\nbad \xff\n", capture_output=True)
    assert r.returncode == 0 and np.load(tmp_path / "o.npy").shape[0] == 2


def test_encode_shows_progress_from_the_start_in_tokens(tiny_bert_bundle: Path, tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt import _encode_cmd

    monkeypatch.setattr(_encode_cmd, "_TOKENIZE_CHUNK", 16)
    texts = [("word " * (i % 37)).strip() or "x" for i in range(50)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "o.npy"
    assert main(["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", str(out), "--batch-size", "8"]) == 0
    err = capsys.readouterr().err
    # stderr is no terminal here: plain lines (every minute, and at the end), not a bar
    steps = ["[embedrt] reading", "read 50 texts", "[embedrt] tokenize: 50/50 texts", "tokenized:",
             "[embedrt] encode: ", "tokens/s, elapsed", ", 50/50 texts", "wrote 50"]
    positions = [err.find(s) for s in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), err
    assert "\r" not in err
    np.testing.assert_allclose(np.load(out), Embedder(tiny_bert_bundle).encode(texts), atol=1e-6)


def test_progress_counts_padded_tokens_so_the_eta_holds() -> None:
    from embedrt._progress import EncodeProgress, batch_tokens
    from embedrt._tokenize import token_batches

    lengths = np.array([100] + [5] * 99)  # sorted longest first, as batches run
    cost = batch_tokens(lengths, token_batches(lengths, 10, None))
    assert cost == [1000] + [50] * 9
    assert batch_tokens(lengths, token_batches(lengths, 10, 99)) == [100] + [50] * 9 + [45]  # the long row alone
    bar = EncodeProgress(sum(cost), 100, enabled=False)
    bar.update(10, int(cost[0]))
    assert bar.texts_done == 10  # 10% of the texts, but 69% of the work: that is what the bar shows


def test_encode_interrupted_says_what_was_written(tiny_bert_bundle: Path, tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    (tmp_path / "in.txt").write_text("\n".join(f"text {i}" for i in range(40)) + "\n", encoding="utf-8")
    real = Embedder.encode_tokenized
    calls = []

    def interrupted_third_batch(self, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Embedder, "encode_tokenized", interrupted_third_batch)
    out = tmp_path / "o.npy"
    argv = ["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", str(out), "--batch-size", "8",
            "--streams", "1"]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted after embedding 16 of 40 texts; nothing was written to" in err and not out.exists()
    np.save(out, np.zeros(3))
    calls.clear()
    assert main(argv) == 130
    assert f"{out} was left as it was" in capsys.readouterr().err
    assert np.load(out).shape == (3,)


def test_encode_with_streams_hands_each_call_a_run_of_batches(tiny_bert_bundle: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """One batch per call would run on one stream's thread while the others wait: with streams, each
    call takes 8 batches per stream; the vectors are the same either way."""
    texts = [("word " * (i % 23)).strip() or "x" for i in range(60)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    real = Embedder.encode_tokenized
    rows: list[int] = []

    def counted(self, tok, *a, **kw):  # type: ignore[no-untyped-def]
        rows.append(len(tok))
        return real(self, tok, *a, **kw)

    monkeypatch.setattr(Embedder, "encode_tokenized", counted)
    expected = Embedder(tiny_bert_bundle).encode(texts)
    for streams, calls in (("2", [32, 28]), ("1", [2] * 30)):
        rows.clear()
        out = tmp_path / f"o{streams}.npy"
        argv = ["encode", str(tiny_bert_bundle), str(tmp_path / "in.txt"), "-o", str(out), "--batch-size", "2",
                "--threads", "2", "--streams", streams, "--no-progress"]  # fmt: skip
        assert main(argv) == 0
        assert rows == calls
        np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_encode_ctrl_c_exits_130_with_a_message(tiny_bert_bundle: Path, tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "o.npy"
    cmd = [sys.executable, "-m", "embedrt.cli", "encode", str(tiny_bert_bundle), "-", "-o", str(out), "--batch-size", "1"]
    # A test run started in the background of a non-interactive shell inherits SIGINT ignored, and so
    # would the command (Python keeps an ignored SIGINT ignored): give it the default a terminal has.
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(b"a sentence to embed\n" * 20_000)  # 20,000 batches of one: seconds, not milliseconds
    proc.stdin.close()
    seen = b""
    deadline = time.monotonic() + 120
    while b"tokenized:" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read1(4096)  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(60) == 130
    assert b"[embedrt] interrupted after embedding" in rest and b"nothing was written" in rest
    assert not out.exists()


def test_encode_and_info_take_no_verify(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import shutil

    b = tmp_path / "b"
    shutil.copytree(tiny_bert_bundle, b)
    with (b / "tokenizer.json").open("a") as f:
        f.write("\n")  # a change that keeps the file usable
    (tmp_path / "in.txt").write_text("x\n")
    argv = ["encode", str(b), str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.npy"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "altered after export" in err and "verify=False (Python) or --no-verify (CLI)" in err
    assert main([*argv, "--no-verify"]) == 0
    assert main(["info", str(b), "--no-verify"]) == 0


def test_validate_report_names_a_worst_text_only_when_it_tells_something() -> None:
    from embedrt._report import format_validation

    report = {"texts": 10, "precision": "fp32", "provider": "cpu", "mean_cosine": 1.0, "min_cosine": 0.99999999,
              "max_abs_diff": 1e-7, "token_id_mismatches": 0, "passed": True, "failures": [],
              "worst": {"index": 9, "text": "the last one", "cosine": 0.99999999}}
    text = format_validation(report)
    assert "#9" not in text and "every text agrees with PyTorch to 7 decimals" in text
    assert "parity (fp32 on cpu)" in text and "quality gate not run (--no-gate)" in text
    report["worst"] = {"index": 9, "text": "the last one", "cosine": 0.9999871}
    assert "lowest cosine 0.9999871: text #9 'the last one'" in format_validation(report)
    report |= {"passed": False, "failures": ["min cosine 0.5 < 0.99999"],
               "worst": {"index": 3, "text": "t", "cosine": 0.5}}
    assert "lowest cosine 0.5000000: text #3" in format_validation(report) and "FAILED" in format_validation(report)


def test_info_shows_int8_fallback_and_where_gates_were_measured(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from embedrt._bundle import load_manifest, write_manifest

    b = tmp_path / "b"
    shutil.copytree(tiny_bert_bundle, b)
    m = load_manifest(b)
    m.optimizations = {
        "quantization": {"method": "nbits", "operator": "MatMulNBits", "weights": "int8"},
        "fallback_from": [{"method": "smooth", "failed": "int8 on cpu missed its quality gate: mean_cos 0.99100 < 0.995",
                           "mean_cos": 0.991, "topk": 0.9}],
    }
    write_manifest(b, m)
    assert main(["info", str(b)]) == 0
    out = capsys.readouterr().out
    assert "int8 fallback" in out and "smooth missed the checks (int8 on cpu missed its quality gate" in out
    assert "used nbits instead" in out and "measured on cpu" in out
    m.precision = m.precision.__class__("fp16")
    write_manifest(b, m)
    assert main(["info", str(b)]) == 0
    assert "measured on cpu, not on cuda which this bundle is made for" in capsys.readouterr().out


def test_cli_says_when_a_bundle_runs_where_it_was_not_made_for(tiny_bert_bundle: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from embedrt import Precision
    from embedrt._bundle import load_manifest, write_manifest

    b = tmp_path / "b"
    shutil.copytree(tiny_bert_bundle, b)
    m = load_manifest(b)
    m.precision = Precision.FP16  # the manifest of a bundle made for CUDA (the graph stays fp32 here)
    write_manifest(b, m)
    (tmp_path / "in.txt").write_text("x\n")
    assert main(["encode", str(b), str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.npy"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "embedrt encode: warning: bundle" in err and "is fp16, made for the cuda provider" in err


def test_output_is_written_whole(tmp_path: Path) -> None:
    from embedrt._io import write_embeddings

    out = tmp_path / "o.jsonl"
    out.write_text("earlier\n")
    with pytest.raises(ValueError):  # fails halfway: 2 texts, 3 vectors
        write_embeddings(out, ["a", "b"], np.zeros((3, 4), np.float32))
    assert out.read_text() == "earlier\n" and [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]
    write_embeddings(tmp_path / "v.npy", ["a"], np.ones((1, 4), np.float32))
    assert np.load(tmp_path / "v.npy").shape == (1, 4)
