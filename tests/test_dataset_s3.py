"""The corpus job on object storage (S3 through moto's server): input and output as s3:// URIs."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("moto.server")

from s3_store import listing, put, put_folder, s3_server  # noqa: E402

import embedrt.dataset._claim as _claim  # noqa: E402
from embedrt import Embedder  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import (  # noqa: E402
    BadRowError,
    InputError,
    OutputError,
    OutputInUseError,
    StorageError,
    _scan_record,
    embed_dataset,
    output_status,
)
from embedrt.dataset._sources import plan_input  # noqa: E402
from embedrt.dataset._storage import ObjectFolder  # noqa: E402

TEXTS = [f"row {i}: " + "word " * (i % 7) + ("한국어 문장" if i % 3 else "") for i in range(60)]


@pytest.fixture(scope="module")
def s3() -> Iterator[None]:
    with s3_server("corpus", "vectors", "bundles"):
        yield


@pytest.fixture(autouse=True)
def _quick_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_claim, "SETTLE_SECONDS", 0.1)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _read(uri: str) -> pa.Table:
    return pq.read_table(uri).sort_by("id")


def test_s3_input_and_output_equal_a_local_run_and_resume(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows = [{"id": f"d{i}", "text": t, "n": i} for i, t in enumerate(TEXTS)]
    put("s3://corpus/a/part-1.jsonl", _jsonl(rows[:25]))
    put("s3://corpus/a/sub/part-2.jsonl", _jsonl(rows[25:]))
    put("s3://corpus/a/_SUCCESS", b"")  # hidden, as in a folder Spark wrote
    local = tmp_path / "in"
    (local / "sub").mkdir(parents=True)
    (local / "part-1.jsonl").write_bytes(_jsonl(rows[:25]))
    (local / "sub" / "part-2.jsonl").write_bytes(_jsonl(rows[25:]))
    kw: dict[str, Any] = {"id_column": "id", "keep_columns": ["n"], "rows_per_part": 8, "progress": False}
    s = embed_dataset("s3://corpus/a/", "s3://vectors/run1", tiny_bert_bundle, **kw)
    assert s.rows == s.written == 60 and s.parts == 9  # 25 + 35 rows: parts of 8, 8, 8, 1 and 8, 8, 8, 8, 3
    embed_dataset(local, tmp_path / "out", tiny_bert_bundle, **kw)
    got, want = _read("s3://vectors/run1"), _read(str(tmp_path / "out"))
    assert got.equals(want)
    np.testing.assert_allclose(np.stack(got.column("embedding").to_numpy(zero_copy_only=False)),
                               Embedder(tiny_bert_bundle).encode([r["text"] for r in sorted(rows, key=lambda r: r["id"])]),
                               atol=1e-5)  # fmt: skip
    objects = listing("s3://vectors/run1")
    assert sorted(n for n in objects if n.startswith("part-")) == [f"part-{i:06d}.parquet" for i in range(9)]
    assert sorted(n for n in objects if n.startswith("_journal/")) == [f"_journal/part-{i:06d}.json" for i in range(9)]
    assert not [n for n in objects if ".tmp-" in n] and "_lock.json" not in objects  # the lease let go
    manifest = json.loads(_get("s3://vectors/run1/_manifest.json"))
    assert manifest["complete"] and manifest["rows"] == 60
    assert [f["path"] for f in manifest["input"]["files"]] == ["s3://corpus/a/part-1.jsonl",
                                                               "s3://corpus/a/sub/part-2.jsonl"]  # fmt: skip
    # run again: every part is kept from the journal objects, nothing is computed
    s = embed_dataset("s3://corpus/a/", "s3://vectors/run1", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 9 and s.rows_embedded == 0
    assert _read("s3://vectors/run1").equals(want)


def test_s3_parts_move_when_a_file_lands_before_theirs(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A shard added among the others (as UUID-named shards land): the later files' parts are kept,
    moved under their new numbers with their row-number ids shifted (copies on the store)."""
    rows = [{"text": t} for t in TEXTS]
    put("s3://corpus/m/m.jsonl", _jsonl(rows[:30]))
    put("s3://corpus/m/t.jsonl", _jsonl(rows[30:]))
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    embed_dataset("s3://corpus/m/", "s3://vectors/m", tiny_bert_bundle, **kw)
    added = [{"text": f"added {t}"} for t in TEXTS[:12]]
    put("s3://corpus/m/a.jsonl", _jsonl(added))  # two parts before the six finished ones
    before = listing("s3://vectors/m")
    s = embed_dataset("s3://corpus/m/", "s3://vectors/m", tiny_bert_bundle, dry_run=True, **kw)
    assert (s.parts_resumed, s.parts_moved, s.rows_to_embed) == (6, 6, 12) and listing("s3://vectors/m") == before
    s = embed_dataset("s3://corpus/m/", "s3://vectors/m", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 6 and s.rows_embedded == 12
    local = tmp_path / "in"
    local.mkdir()
    for name, part in (("a", added), ("m", rows[:30]), ("t", rows[30:])):
        (local / f"{name}.jsonl").write_bytes(_jsonl(part))
    embed_dataset(local, tmp_path / "out", tiny_bert_bundle, **kw)
    assert _read("s3://vectors/m").equals(_read(str(tmp_path / "out")))
    objects = listing("s3://vectors/m")
    assert sorted(n for n in objects if n.startswith("part-")) == [f"part-{i:06d}.parquet" for i in range(8)]
    assert sorted(n for n in objects if n.startswith("_journal/")) == [f"_journal/part-{i:06d}.json" for i in range(8)]
    assert not [n for n in objects if ".tmp-" in n]


def test_s3_documents_under_a_glob_equal_a_local_run(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    local = tmp_path / "docs"
    for i, t in enumerate(TEXTS[:24]):
        name = f"notes/{i % 4}/{i:02d}.md"
        put(f"s3://corpus/docs/{name}", t.encode())
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_text(t)
    put("s3://corpus/docs/notes/logo.png", b"\x89PNG")  # left out by the glob
    kw: dict[str, Any] = {"documents": True, "rows_per_part": 6, "progress": False}
    s = embed_dataset("s3://corpus/docs/**/*.md", "s3://vectors/docs", tiny_bert_bundle, **kw)
    embed_dataset(str(local / "**" / "*.md"), tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.written == 24 and _read("s3://vectors/docs").equals(_read(str(tmp_path / "out")))
    assert _read("s3://vectors/docs").column("id").to_pylist()[:2] == ["notes/0/00.md", "notes/0/04.md"]
    put("s3://corpus/docs/notes/1/05.md", b"rewritten")  # another upload: its part only is computed again
    again = embed_dataset("s3://corpus/docs/**/*.md", "s3://vectors/docs", tiny_bert_bundle, **kw)
    assert 1 <= again.rows_embedded <= 4 * 6 and again.parts_resumed >= again.parts - 1


def _get(uri: str) -> bytes:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_input_stream(path) as f:
        return bytes(f.read())


def test_s3_bad_row_then_resume_keeps_finished_parts(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A run stopped by a bad row keeps its parts on S3; the fixed input goes on from them."""
    rows: list[dict[str, Any]] = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS[:30])]
    rows[20]["text"] = None
    put("s3://corpus/b/in.jsonl", _jsonl(rows))
    kw: dict[str, Any] = {"id_column": "id", "rows_per_part": 8, "progress": False}
    with pytest.raises(BadRowError, match=r"s3://corpus/b/in.jsonl line 21 \(id 'd20'\): text is null"):
        embed_dataset("s3://corpus/b/in.jsonl", "s3://vectors/b", tiny_bert_bundle, **kw)
    assert sorted(n for n in listing("s3://vectors/b") if n.startswith("part-")) == ["part-000000.parquet",
                                                                                    "part-000001.parquet"]  # fmt: skip
    # a run killed while writing leaves a temporary object behind; a resume deletes it
    put("s3://vectors/b/.part-000002.parquet.tmp-0badc0de", b"PAR1 half")
    put("s3://vectors/b/_journal/.part-000002.json.tmp-0badc0de", b"{")
    rows[20]["text"] = "fixed"
    put("s3://corpus/b/in.jsonl", _jsonl(rows))
    s = embed_dataset("s3://corpus/b/in.jsonl", "s3://vectors/b", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 2 and s.rows_embedded == 14
    assert not [n for n in listing("s3://vectors/b") if ".tmp-" in n]
    (tmp_path / "in.jsonl").write_bytes(_jsonl(rows))
    embed_dataset(tmp_path / "in.jsonl", tmp_path / "clean", tiny_bert_bundle, **kw)
    assert _read("s3://vectors/b").equals(_read(str(tmp_path / "clean")))
    # an OUTPUT made with other options is refused, as on a local disk
    with pytest.raises(OutputError, match="option 'rows_per_part'"):
        embed_dataset("s3://corpus/b/in.jsonl", "s3://vectors/b", tiny_bert_bundle, **{**kw, "rows_per_part": 9})


def test_s3_parquet_glob_and_csv(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    for i in range(3):
        t = pa.table({"key": [f"f{i}-{r}" for r in range(11)], "text": TEXTS[i * 11:(i + 1) * 11]})
        sink = pa.BufferOutputStream()
        pq.write_table(t, sink, row_group_size=4)
        put(f"s3://corpus/c/year={2020 + i}/data.parquet", sink.getvalue().to_pybytes())
    put("s3://corpus/c/notes.txt", b"not matched by the glob\n")
    kw: dict[str, Any] = {"id_column": "key", "rows_per_part": 5, "progress": False}
    s = embed_dataset("s3://corpus/c/**/*.parquet", "s3://vectors/c", tiny_bert_bundle, **kw)
    assert s.rows == 33 and s.parts == 9  # 3 files, 11 rows each: parts of 5, 5, 1
    got = _read("s3://vectors/c")
    assert got.column("id").to_pylist() == sorted(f"f{i}-{r}" for i in range(3) for r in range(11))
    csv = "key,text\n" + "".join(f'k{i},"{t}"\n' for i, t in enumerate(TEXTS[:12]))
    put("s3://corpus/d/in.csv", csv.encode())
    s = embed_dataset("s3://corpus/d/in.csv", tmp_path / "local-out", tiny_bert_bundle, **kw)
    assert s.rows == 12 and pq.read_table(tmp_path / "local-out").num_rows == 12  # S3 in, local out
    put("s3://corpus/d2/in.csv.gz", gzip.compress(csv.encode()))  # compressed on S3: read as one stream
    s = embed_dataset("s3://corpus/d2/in.csv.gz", tmp_path / "gz-out", tiny_bert_bundle, **kw)
    assert pq.read_table(tmp_path / "gz-out").equals(pq.read_table(tmp_path / "local-out"))
    for stream in (True, False):  # Arrow IPC on S3, the stream format (Hugging Face datasets') and the file format
        t = pa.table({"key": [f"k{i}" for i in range(12)], "text": TEXTS[:12]})
        sink = pa.BufferOutputStream()
        with (pa.ipc.new_stream if stream else pa.ipc.new_file)(sink, t.schema) as w:
            for b in t.to_batches(max_chunksize=5):
                w.write_batch(b)
        put(f"s3://corpus/a{int(stream)}/data-00000-of-00001.arrow", sink.getvalue().to_pybytes())
        s = embed_dataset(f"s3://corpus/a{int(stream)}/", tmp_path / f"arrow-out-{stream}", tiny_bert_bundle, **kw)
        assert pq.read_table(tmp_path / f"arrow-out-{stream}").equals(pq.read_table(tmp_path / "local-out"))


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "csv", "parquet", "arrow", "mbox"])
def test_s3_small_objects_share_parts_and_are_read_ahead(fmt: str, s3: None, tmp_path: Path, tiny_bert_bundle: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Many small objects: parts of several objects, each object's bytes read ahead with the next
    ones' (one request each, a few at once), the result a local run's; a bad row names its object."""
    from embedrt.dataset import _storage

    local = tmp_path / "in"
    local.mkdir()
    for k in range(20):
        rows = [{"key": f"f{k}-{r}", "text": TEXTS[(k * 3 + r) % len(TEXTS)]} for r in range(k % 4 + 1)]
        if k == 13:
            rows[0]["text"] = None if fmt != "csv" else rows[0]["text"]
        if fmt.startswith("jsonl"):
            data = _jsonl(rows)
            data = gzip.compress(data) if fmt.endswith(".gz") else data
        elif fmt == "mbox":  # a message without headers is the bad row
            data = b"".join(b"From a@example.com Mon Jan  1 00:00:00 2024\n" + (
                f"Message-ID: {r['key']}\n\n{r['text']}\n" if r["text"] is not None else "no headers\n").encode()
                for r in rows)  # fmt: skip
        elif fmt == "csv":
            data = ("key,text\n" + "".join(f'{r["key"]},"{r["text"]}"\n' for r in rows)
                    + (",,extra\n" if k == 13 else "")).encode()  # fmt: skip
        else:
            t, sink = pa.Table.from_pylist(rows, pa.schema([("key", pa.string()), ("text", pa.string())])), pa.BufferOutputStream()
            if fmt == "parquet":
                pq.write_table(t, sink)
            else:
                with pa.ipc.new_file(sink, t.schema) as w:
                    w.write_table(t)
            data = sink.getvalue().to_pybytes()
        put(f"s3://corpus/small-{fmt}/{k:03d}.{fmt}", data)
        (local / f"{k:03d}.{fmt}").write_bytes(data)
    fetched: list[str] = []
    whole = _storage._object_bytes
    monkeypatch.setattr(_storage, "_object_bytes", lambda uri: fetched.append(uri) or whole(uri))
    key = "message_id" if fmt == "mbox" else "key"
    kw: dict[str, Any] = {"id_column": key, "rows_per_part": 100, "on_error": "skip", "progress": False}
    s = embed_dataset(f"s3://corpus/small-{fmt}/", tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts < 5 and s.bad_rows == 1  # 20 objects
    plan = plan_input(f"s3://corpus/small-{fmt}/", 100, text="text", id_column=key, keep_columns=())
    shared = [plan.shards[k].path for p in plan.parts if p.files > 1 for k in range(p.shard, p.shard + p.files)]
    assert len(shared) > 10 and sorted(fetched) == shared  # each object of a shared part once, read ahead
    assert not _storage._ahead  # nothing held after the part
    embed_dataset(local, tmp_path / "local-out", tiny_bert_bundle, **kw)
    got, want = pq.read_table(tmp_path / "out"), pq.read_table(tmp_path / "local-out")
    assert got.column("id").equals(want.column("id"))
    np.testing.assert_allclose(np.stack(got.column("embedding").to_numpy(zero_copy_only=False)),
                               np.stack(want.column("embedding").to_numpy(zero_copy_only=False)), atol=1e-6)  # fmt: skip
    bad = json.loads((tmp_path / "out" / "_bad_rows.jsonl").read_text())
    where = {"csv": ("line", 4), "parquet": ("row", 0), "arrow": ("row", 0)}.get(fmt, ("line", 1))
    assert bad["file"] == f"s3://corpus/small-{fmt}/013.{fmt}" and bad[where[0]] == where[1], bad


def test_s3_objects_are_scanned_several_at_once(s3: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planning scan reads several objects at once (each mostly round trips); the plan is the one
    of the same files on disk, scanned one by one, and the scan record keeps every object's findings."""
    from embedrt.dataset import _sources

    local = tmp_path / "in"
    local.mkdir()
    for k in range(30):
        data = _jsonl([{"text": TEXTS[(k + r) % len(TEXTS)], "n": k} for r in range(k % 5 + 2)])
        put(f"s3://corpus/scan/{k:03d}.jsonl", data)
        (local / f"{k:03d}.jsonl").write_bytes(data)
    running, most = [0], [0]
    lock = threading.Lock()
    scan = _sources._scan_file

    def spy(path: str, *args: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.02)
            return scan(path, *args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(_sources, "_scan_file", spy)
    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)  # just uploaded
    record = _scan_record.ScanRecord(None)
    plan = plan_input("s3://corpus/scan/", 20, text="text", id_column=None, keep_columns=("n",), record=record)
    assert most[0] > 1
    most[0] = 0
    alone = plan_input(local, 20, text="text", id_column=None, keep_columns=("n",))
    assert most[0] == 1  # local files: one by one
    assert [(s.rows, s.first_row, s.sha256) for s in plan.shards] == [(s.rows, s.first_row, s.sha256) for s in alone.shards]
    assert [dataclasses.replace(p, sha256="") for p in plan.parts] == [dataclasses.replace(p, sha256="") for p in alone.parts]
    assert plan.fingerprint() == alone.fingerprint() and plan.json_types == alone.json_types
    assert len(record._pending) == 30


def test_a_failed_upload_leaves_no_object_under_the_real_name(s3: None) -> None:
    folder = ObjectFolder("s3://vectors/e")

    def half(f: Any) -> None:
        f.write(b"PAR1" + b"x" * 1000)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        folder.write("part-000000.parquet", half)
    assert listing("s3://vectors/e") == {}  # neither the part nor its temporary
    assert folder.write("part-000000.parquet", lambda f: f.write(b"whole")) == 5
    assert listing("s3://vectors/e") == {"part-000000.parquet": 5}


def test_s3_locations_that_cannot_be_used_are_named(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    put("s3://corpus/f/in.txt", b"one\ntwo\n")
    with pytest.raises(StorageError, match="bucket 's3://no-such-bucket' does not exist"):
        embed_dataset("s3://corpus/f/in.txt", "s3://no-such-bucket/out", tiny_bert_bundle, progress=False)
    with pytest.raises(StorageError, match="options in the URI"):
        embed_dataset("s3://corpus/f/in.txt?endpoint_override=x", tmp_path / "o", tiny_bert_bundle, progress=False)
    with pytest.raises(StorageError, match="unknown storage scheme 'ftp'"):
        embed_dataset("ftp://host/in.txt", tmp_path / "o", tiny_bert_bundle, progress=False)
    with pytest.raises(InputError, match="'s3://corpus/f/missing.txt' does not exist"):
        embed_dataset("s3://corpus/f/missing.txt", tmp_path / "o", tiny_bert_bundle, progress=False)
    put("s3://vectors/g/notes.md", b"mine")
    with pytest.raises(OutputError, match=r"holds files embedrt did not write \(notes.md\)"):
        embed_dataset("s3://corpus/f/in.txt", "s3://vectors/g", tiny_bert_bundle, progress=False)
    put("s3://vectors/h", b"a file")
    with pytest.raises(OutputError, match="is a file"):
        embed_dataset("s3://corpus/f/in.txt", "s3://vectors/h", tiny_bert_bundle, progress=False)


def test_a_bundle_on_s3_is_fetched_once_per_machine(s3: None, tmp_path: Path, tiny_bert_bundle: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("EMBEDRT_CACHE", str(tmp_path / "cache"))
    put_folder(tiny_bert_bundle, "s3://bundles/tiny")
    put("s3://corpus/i/in.txt", "".join(t + "\n" for t in TEXTS[:20]).encode())
    kw: dict[str, Any] = {"rows_per_part": 8, "progress": False}
    embed_dataset("s3://corpus/i/in.txt", tmp_path / "a", "s3://bundles/tiny", **kw)
    embed_dataset("s3://corpus/i/in.txt", tmp_path / "b", tiny_bert_bundle, **kw)
    assert _read(str(tmp_path / "a")).equals(_read(str(tmp_path / "b")))
    (home,) = (tmp_path / "cache" / "bundles").iterdir()  # one copy, named by the manifest's hash
    copy = home / "tiny"  # under the bundle's own folder name
    assert (copy / "manifest.json").read_bytes() == (tiny_bert_bundle / "manifest.json").read_bytes()
    stamp = (copy / "manifest.json").stat().st_mtime_ns
    s = embed_dataset("s3://corpus/i/in.txt", tmp_path / "a", "s3://bundles/tiny", **kw)
    assert s.parts_resumed == 3  # the same bundle: its identity is the manifest's, wherever it was read
    assert (copy / "manifest.json").stat().st_mtime_ns == stamp  # not fetched again
    with pytest.raises(StorageError, match="'s3://bundles/none' holds no manifest.json"):
        embed_dataset("s3://corpus/i/in.txt", tmp_path / "c", "s3://bundles/none", **kw)
    # the runtime takes the URI too: Embedder, and every command that takes a bundle
    np.testing.assert_array_equal(Embedder("s3://bundles/tiny").encode(TEXTS[:4]), Embedder(tiny_bert_bundle).encode(TEXTS[:4]))
    r = subprocess.run([sys.executable, "-m", "embedrt.cli", "info", "s3://bundles/tiny"], capture_output=True, text=True,
                       env=dict(os.environ))  # fmt: skip
    assert r.returncode == 0 and "embedding" in r.stdout, r.stderr
    assert len(list((tmp_path / "cache" / "bundles").iterdir())) == 1


def test_cli_killed_mid_run_on_s3_then_resumed(s3: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """SIGKILL while parts are being uploaded: the same command goes on from the journal objects, keeps
    every journaled part, deletes what the kill left, and equals a clean run."""
    rows = [{"id": f"doc-{i}", "text": TEXTS[i % len(TEXTS)] + f" #{i}"} for i in range(4_000)]
    put("s3://corpus/k/in.jsonl", _jsonl(rows))
    (tmp_path / "in.jsonl").write_bytes(_jsonl(rows))

    def cli(src: str, out: str) -> list[str]:
        return [sys.executable, "-m", "embedrt.cli", "embed-dataset", src, out, "-m", str(tiny_bert_bundle),
                "--id-column", "id", "--rows-per-part", "200", "--no-progress", "--threads", "1"]  # fmt: skip

    env = dict(os.environ)  # the server's endpoint and credentials, as a user's shell would hold them
    proc = subprocess.Popen(cli("s3://corpus/k/in.jsonl", "s3://vectors/k"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len([n for n in listing("s3://vectors/k") if n.startswith("_journal/p")]) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    journaled = [n for n in listing("s3://vectors/k") if n.startswith("_journal/part-")]
    assert 3 <= len(journaled) < 20, "the kill should land mid-run"
    assert "_lock.json" in listing("s3://vectors/k")  # the killed run's lease: a resume would wait for it to
    ObjectFolder("s3://vectors/k").delete("_lock.json")  # expire (test_dataset_claim), here it has
    resumed = subprocess.run(cli("s3://corpus/k/in.jsonl", "s3://vectors/k"), env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
    kept = int(resumed.stderr.split(" finished by an earlier run")[0].rsplit(" ", 1)[1])
    assert kept == len(journaled) and "4000 rows written to s3://vectors/k" in resumed.stdout
    subprocess.run(cli(str(tmp_path / "in.jsonl"), str(tmp_path / "ref")), env=env, check=True, capture_output=True)
    a, b = _read(str(tmp_path / "ref")), _read("s3://vectors/k")
    assert b.num_rows == 4_000 and b.column("id").to_pylist() == a.column("id").to_pylist()
    np.testing.assert_array_equal(np.stack(a.column("embedding").to_numpy(zero_copy_only=False)),
                                  np.stack(b.column("embedding").to_numpy(zero_copy_only=False)))  # fmt: skip
    assert not [n for n in listing("s3://vectors/k") if ".tmp-" in n]
    # SIGTERM (a batch system, Kubernetes) lets the lease go: the next run need not wait for it
    proc = subprocess.Popen(cli("s3://corpus/k/in.jsonl", "s3://vectors/k2"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not [n for n in listing("s3://vectors/k2") if n.startswith("_journal/p")]:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    left = listing("s3://vectors/k2")
    assert "_lock.json" not in left and not [n for n in left if ".tmp-" in n] and "_manifest.json" in left


def test_s3_parquet_is_fingerprinted_by_its_object_not_its_bytes(s3: None, tiny_bert_bundle: Path) -> None:
    """An object is never edited in place: its size, time stamp and footer name it, and planning does not
    download it; a new upload (same size, other text) has another time stamp, and its parts are computed again."""

    def upload(name: str, word: str) -> None:
        t = pa.table({"key": [f"{name}{r:02d}" for r in range(12)], "text": [f"{word} {r:02d}" for r in range(12)]})
        sink = pa.BufferOutputStream()
        pq.write_table(t, sink, compression="none", write_statistics=False)
        put(f"s3://corpus/p/{name}.parquet", sink.getvalue().to_pybytes())

    upload("a", "cat")
    upload("b", "cat")
    kw: dict[str, Any] = {"id_column": "key", "rows_per_part": 5, "progress": False}
    embed_dataset("s3://corpus/p/", "s3://vectors/p", tiny_bert_bundle, **kw)
    assert embed_dataset("s3://corpus/p/", "s3://vectors/p", tiny_bert_bundle, **kw).parts_resumed == 6
    time.sleep(1.1)  # S3 time stamps are whole seconds
    upload("b", "dog")  # the same size
    s = embed_dataset("s3://corpus/p/", "s3://vectors/p", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 3 and s.rows_embedded == 12  # a's parts kept, b's computed again
    got = _read("s3://vectors/p")
    assert got.num_rows == 24
    np.testing.assert_allclose(np.stack(got.column("embedding").to_numpy(zero_copy_only=False))[12:],
                               Embedder(tiny_bert_bundle).encode([f"dog {r:02d}" for r in range(12)]), atol=1e-5)


def test_s3_a_run_is_refused_while_another_renews_its_lease_and_stops_when_it_loses_it(
        s3: None, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(_claim, "REFRESH_SECONDS", 0.1)
    put("s3://corpus/l/in.jsonl", _jsonl([{"text": t} for t in TEXTS]))
    kw: dict[str, Any] = {"rows_per_part": 3, "progress": False}
    put("s3://vectors/l/.part-000000.parquet.tmp-1234abcd", b"PAR1 half")  # another run's upload in flight
    other = ObjectFolder("s3://vectors/l")
    with _claim.claim_object(other, "s3://vectors/l", print):
        with pytest.raises(OutputInUseError, match="which renewed its lease"):
            embed_dataset("s3://corpus/l/in.jsonl", "s3://vectors/l", tiny_bert_bundle, **kw)
        assert sorted(listing("s3://vectors/l")) == [".part-000000.parquet.tmp-1234abcd", "_lock.json"]
    assert listing("s3://vectors/l") == {".part-000000.parquet.tmp-1234abcd": 9}

    done = threading.Event()

    def take_over() -> None:  # another run takes the lease once this one has journaled a part, and renews it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [n for n in listing("s3://vectors/l") if n.startswith("_journal/")]:
            time.sleep(0.02)
        while not done.wait(0.05):  # more often than this run's renewals, which may land on a write of ours
            put("s3://vectors/l/_lock.json", b'{"pid": 7, "host": "other", "since": "now"}')

    thread = threading.Thread(target=take_over)
    thread.start()
    try:
        with pytest.raises(OutputInUseError, match="pid 7 on host other, since now, which took over this run's lease"):
            embed_dataset("s3://corpus/l/in.jsonl", "s3://vectors/l", tiny_bert_bundle, **kw)
    finally:
        done.set()
        thread.join()
    assert len([n for n in listing("s3://vectors/l") if n.startswith("_journal/")]) < len(TEXTS) // 3


def test_s3_status_complete_leased_and_expired(s3: None, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    put("s3://corpus/st/in.jsonl", _jsonl([{"text": t} for t in TEXTS]))
    embed_dataset("s3://corpus/st/in.jsonl", "s3://vectors/st", tiny_bert_bundle, rows_per_part=25, progress=False)
    s = output_status("s3://vectors/st")
    assert (s.state, s.parts_done, s.parts, s.rows_done, s.rows, s.rows_written) == ("complete", 3, 3, 60, 60, 60)
    assert main(["info", "s3://vectors/st"]) == 0
    assert "3 of 3 parts, 60 of 60 input rows (100.0%)" in capsys.readouterr().out
    monkeypatch.setattr(_claim, "REFRESH_SECONDS", 0.1)
    with _claim.claim_object(ObjectFolder("s3://vectors/st"), "s3://vectors/st", print):  # a run holding the lease
        s = output_status("s3://vectors/st")
        assert s.state == "running" and s.holder is not None and s.holder["pid"] == os.getpid()
        assert re.search(r" \(lease renewed \d s ago\)$", dict(s.lines())["state"])
    put("s3://corpus/st/bad.jsonl", _jsonl([{"text": t if i != 40 else None} for i, t in enumerate(TEXTS)]))
    with pytest.raises(BadRowError):
        embed_dataset("s3://corpus/st/bad.jsonl", "s3://vectors/st2", tiny_bert_bundle, rows_per_part=25, progress=False)
    s = output_status("s3://vectors/st2")
    assert (s.state, s.holder, s.parts_done, s.parts) == ("stopped", None, 1, 3)
    put("s3://vectors/st2/_lock.json", b'{"pid": 7, "host": "other", "since": "2026-01-01T00:00:00+00:00"}')
    assert output_status("s3://vectors/st2").state == "running"
    monkeypatch.setattr(_claim, "LEASE_SECONDS", 0.5)
    time.sleep(1.1)  # a lease no longer renewed: its run was killed
    s = output_status("s3://vectors/st2")
    assert s.state == "stopped" and "its last run (pid 7 on host other, since 2026-01-01" in dict(s.lines())["state"]


def test_s3_a_resume_downloads_only_the_objects_that_changed(s3: None, tiny_bert_bundle: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The planning scan's findings kept in OUTPUT: an object of the same size and time stamp is not
    downloaded again; a new upload under a name is."""
    from embedrt.dataset import _scan_record, _sources

    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)
    read: list[str] = []
    scan = _sources._scan_file
    monkeypatch.setattr(_sources, "_scan_file", lambda path, *a: read.append(path) or scan(path, *a))
    rows = [{"text": t} for t in TEXTS]
    put("s3://corpus/r/a.jsonl", _jsonl(rows[:30]))
    put("s3://corpus/r/b.jsonl", _jsonl(rows[30:]))
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    embed_dataset("s3://corpus/r/", "s3://vectors/r", tiny_bert_bundle, **kw)
    assert sorted(read) == ["s3://corpus/r/a.jsonl", "s3://corpus/r/b.jsonl"] and "_input_scan.arrow" in listing("s3://vectors/r")
    read.clear()
    time.sleep(1.1)  # S3 time stamps are whole seconds
    put("s3://corpus/r/b.jsonl", _jsonl([{"text": t.upper()} for t in TEXTS[30:]]))  # the same size
    s = embed_dataset("s3://corpus/r/", "s3://vectors/r", tiny_bert_bundle, **kw)
    assert read == ["s3://corpus/r/b.jsonl"] and s.parts_resumed == 3 and s.rows_embedded == 30
    np.testing.assert_allclose(np.stack(_read("s3://vectors/r").column("embedding").to_numpy(zero_copy_only=False))[30:],
                               Embedder(tiny_bert_bundle).encode([t.upper() for t in TEXTS[30:]]), atol=1e-5)  # fmt: skip


def test_s3_planning_takes_the_objects_stamps_from_their_listing(s3: None, tiny_bert_bundle: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A listed object's size and time come with its listing: a resume with nothing to do asks no
    object, a first run asks each only to check it (after its scan, before and after its part). A
    store that gives a listing's time to the millisecond and an object's to the second, or the other
    way round, agrees with itself (whole seconds)."""
    from collections import Counter

    from embedrt.dataset import _storage

    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)
    asked: list[str] = []
    info, keep = _storage.object_info, _storage._keep_listed

    def head(uri: str) -> tuple[int, int]:  # an object's own time to the millisecond
        asked.append(uri)
        size, mtime = info(uri)
        return size, mtime + 456_000_000

    def listed(like: str, infos: Any) -> None:  # a listing's another millisecond of the same second
        keep(like, [pa.fs.FileInfo(i.path, i.type, size=i.size, mtime_ns=(i.mtime_ns or 0) + 789_000_000)
                    for i in infos])  # fmt: skip

    monkeypatch.setattr(_storage, "object_info", head)
    monkeypatch.setattr(_storage, "_keep_listed", listed)
    objects = [f"s3://corpus/listed/{k}.jsonl" for k in range(6)]
    for k, uri in enumerate(objects):
        put(uri, _jsonl([{"text": t} for t in TEXTS[k * 5:(k + 1) * 5]]))
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    for where, out in (("s3://corpus/listed/", "s3://vectors/listed"), ("s3://corpus/listed/*.jsonl", "s3://vectors/listed-glob")):
        asked.clear()
        first = embed_dataset(where, out, tiny_bert_bundle, **kw)
        assert Counter(asked) == dict.fromkeys(objects, 3) and first.rows_embedded == 30
        asked.clear()
        again = embed_dataset(where, out, tiny_bert_bundle, **kw)
        assert asked == [] and again.parts_resumed == first.parts == 3
        assert _storage._listing.stamps is None  # a listing's stamps serve its plan only
    time.sleep(1.1)  # S3 time stamps are whole seconds
    put(objects[4], _jsonl([{"text": t.upper()} for t in TEXTS[20:25]]))  # the same size
    s = embed_dataset("s3://corpus/listed/", "s3://vectors/listed", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 2 and s.rows_embedded == 10


def test_s3_zip_archive_is_read_as_a_folder_of_documents(s3: None, tiny_bert_bundle: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """An archive's members on object storage: the archive's stamp serves all of them (asked once
    per check, not once per member), a zip's directory is read once, a compressed tar is read in
    order (a few times, not once a member), a resume asks nothing."""
    import io
    import tarfile
    import zipfile

    from embedrt.dataset import _archives, _storage

    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)
    asked: list[str] = []
    info = _storage.object_info
    monkeypatch.setattr(_storage, "object_info", lambda uri: asked.append(uri) or info(uri))
    opened: list[str] = []
    directory = _archives._Zip
    monkeypatch.setattr(_archives, "_Zip", lambda a: opened.append(a) or directory(a))
    local = tmp_path / "docs"
    local.mkdir()
    with zipfile.ZipFile(local / "export.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for k, text in enumerate(TEXTS[:40]):
            z.writestr(f"notes/{k:02d}.md", text)
    (local / "top.md").write_text("beside the archive")
    with tarfile.open(local / "more.tgz", "w:gz") as t:  # read in order, not eight members at once
        for k, text in enumerate(TEXTS[40:60]):
            member = tarfile.TarInfo(f"more/{k:02d}.md")
            member.size = len(text.encode())
            t.addfile(member, io.BytesIO(text.encode()))
    readers: list[str] = []
    reader = _archives._Tar._reader
    monkeypatch.setattr(_archives._Tar, "_reader", lambda self: readers.append(self.archive) or reader(self))
    put_folder(local, "s3://corpus/zipped")
    kw: dict[str, Any] = {"documents": True, "archives": True, "rows_per_part": 10, "progress": False}
    first = embed_dataset("s3://corpus/zipped/", "s3://vectors/zipped", tiny_bert_bundle, **kw)
    assert first.written == 61 and first.parts >= 3 and 0 < len(readers) <= 6, readers
    archive = "s3://corpus/zipped/export.zip"
    assert 0 < asked.count(archive) <= 2 * first.parts + 2 and opened == [archive], (asked, opened)
    embed_dataset(local, tmp_path / "out", tiny_bert_bundle, **kw)
    remote, here = _read("s3://vectors/zipped"), pq.read_table(tmp_path / "out").sort_by("id")
    assert remote.column("id").to_pylist() == here.column("id").to_pylist()
    assert remote.column("id").to_pylist()[0] == "export.zip/notes/00.md"
    np.testing.assert_allclose(np.stack(remote.column("embedding").to_numpy(zero_copy_only=False)),
                               np.stack(here.column("embedding").to_numpy(zero_copy_only=False)), atol=1e-6)  # fmt: skip
    asked.clear()
    again = embed_dataset("s3://corpus/zipped/", "s3://vectors/zipped", tiny_bert_bundle, **kw)
    assert asked == [] and again.parts_resumed == first.parts


def test_s3_a_large_compressed_object_is_decompressed_ahead_by_workers(s3: None, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Worker processes read their ranges of the object themselves (ranged reads): the plan of the
    same file on disk, scanned without them."""
    import bz2

    from embedrt.dataset import _storage as storage
    from embedrt.dataset import _unpack
    from embedrt.dataset._scan_workers import ProcessScans

    monkeypatch.setattr(_unpack, "RANGE", 2048)
    monkeypatch.setattr(_unpack, "SMALLEST", {".bz2": 1, ".gz": 1})
    monkeypatch.setattr(storage, "SEEK_EVERY", 1)
    rows = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)] + f" {i}"} for i in range(1500)]
    data = b"".join(bz2.compress(_jsonl(rows[i:i + 25])) for i in range(0, len(rows), 25))
    put("s3://corpus/ahead/rows.jsonl.bz2", data)
    (tmp_path / "rows.jsonl.bz2").write_bytes(data)
    workers = ProcessScans()
    monkeypatch.setattr(workers, "size", 2)
    asked: list[int] = []
    unpack = workers.unpack
    monkeypatch.setattr(workers, "unpack", lambda path, suffix, begin, *a: asked.append(begin) or unpack(path, suffix, begin, *a))
    try:
        kw: dict[str, Any] = {"text": "text", "id_column": "id", "keep_columns": ()}
        plan = plan_input("s3://corpus/ahead/rows.jsonl.bz2", 300, unpack=workers, **kw)
    finally:
        workers.close()
    alone = plan_input(str(tmp_path / "rows.jsonl.bz2"), 300, **kw)
    assert sorted(asked) == list(range(0, len(data), 2048)) and plan.parts == alone.parts and len(plan.parts) == 5
    assert [(s.rows, s.sha256, s.seeks) for s in plan.shards] == [(s.rows, s.sha256, s.seeks) for s in alone.shards]
