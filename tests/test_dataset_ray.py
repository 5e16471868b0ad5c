"""The corpus job on Ray Data (a local Ray, 2 actors): the local backend's output, vector for vector."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pc = pytest.importorskip("pyarrow.compute")

from document_files import make_docx, make_epub, make_pdf, make_pptx, make_scanned_pdf, pptx_shape  # noqa: E402
from preferred_bundles import hold_preferred  # noqa: E402
from s3_store import put, put_folder, s3_server  # noqa: E402

from embedrt import Embedder  # noqa: E402
from embedrt.dataset import BadRowError, PartFailedError, RayOptions, embed_dataset, embed_ray_dataset  # noqa: E402
from embedrt.dataset import _readers as readers  # noqa: E402

TEXTS = [f"text {i} " + "word " * (i % 13) + ("한국어" if i % 3 else "") for i in range(900)]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 endpoint on localhost; bundle caches for this process and, apart, for the actors (their
    environment is Ray's), so that the actors fetch a bundle themselves."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EMBEDRT_CACHE", str(tmp_path_factory.mktemp("driver-cache")))
    with s3_server("ray-corpus", "ray-vectors", "ray-bundles") as env:
        yield {**env, "EMBEDRT_CACHE": str(tmp_path_factory.mktemp("actors-cache"))}
    mp.undo()


@pytest.fixture(scope="module")
def local_ray(s3_env: dict[str, str]) -> Iterator[None]:
    # 3 logical CPUs on this 2-core machine: 2 one-CPU actors and one left for Ray's own tasks.
    # actors' output reaches the test's captured output, with a Python traceback if one crashes
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=True,
             runtime_env={"env_vars": {"PYTHONFAULTHANDLER": "1", **s3_env}})  # fmt: skip
    # a stuck run fails in minutes here (Ray Data's own limit is 30 minutes)
    ray.data.DataContext.get_current().execution_no_progress_timeout_s = 300
    yield
    ray.shutdown()


def _vectors(table: pa.Table) -> np.ndarray:
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def test_ray_backend_equals_local_backend(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"key": f"k{i}", "text": t, "n": i}) + "\n" for i, t in enumerate(TEXTS)))
    common = {"id_column": "key", "keep_columns": ["n"], "rows_per_part": 100, "progress": False}
    local = embed_dataset(src, tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    rayed = embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    assert rayed.written == local.written == 900 and rayed.parts == 9
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.schema == b.schema
    assert b.column("id").to_pylist() == [f"k{i}" for i in range(900)]  # parts are written in input order
    np.testing.assert_array_equal(_vectors(a), _vectors(b))
    # the Ray run resumes like the local one: every part is found finished
    again = embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2),
                          **common)  # type: ignore[arg-type]  # fmt: skip
    assert again.parts_resumed == 9 and again.rows_embedded == 0


def test_a_finished_job_run_again_on_ray_starts_no_cluster(tmp_path: Path, tiny_bert_bundle: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Nothing to do: the job says so without starting or joining Ray (a local Ray takes seconds)."""
    from embedrt.dataset import _ray

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:50]))
    first = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=20, progress=False)

    def refused(*_a: Any) -> bool:
        raise AssertionError("Ray was started for a job with nothing to do")

    monkeypatch.setattr(_ray, "_connect", refused)
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=20, progress=False, backend="ray",
                          ray=RayOptions(num_actors=2))  # fmt: skip
    assert again.parts_resumed == first.parts == 3 and again.rows_embedded == 0
    (tmp_path / "more.jsonl").write_text(json.dumps({"text": "one more"}) + "\n")
    with pytest.raises(AssertionError, match="nothing to do"):  # a part to do: Ray is asked for
        embed_dataset([src, tmp_path / "more.jsonl"], tmp_path / "out", tiny_bert_bundle, rows_per_part=20,
                      progress=False, backend="ray", ray=RayOptions(num_actors=2))  # fmt: skip


def test_ray_backend_chunks_as_the_local_backend(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    src = tmp_path / "in.jsonl"
    long = [t * (i % 5 + 1) for i, t in enumerate(TEXTS[:200])]
    long[3:50:4] = [long[2]] * 12  # repeats across a part's slices: found within a slice only
    src.write_text("".join(json.dumps({"key": f"k{i}", "text": t}) + "\n" for i, t in enumerate(long)))
    common = {"id_column": "key", "rows_per_part": 50, "progress": False, "chunk_tokens": 20, "chunk_overlap": 4,
              "repeat_cache_mb": 0}  # repeats within a slice only: the same on both backends
    monkeypatch.setattr(readers, "SLICE_CHARS", 1000)  # parts of about six slices, on both backends (actors too)
    local = embed_dataset(src, tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    rayed = embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    assert rayed.written == local.written > 300 and rayed.chunked
    assert 0 < rayed.repeats == local.repeats < 12 * 8  # the actors cut the parts into the same slices
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.drop_columns(["embedding"]).equals(b.drop_columns(["embedding"]))
    np.testing.assert_array_equal(_vectors(a), _vectors(b))
    ds = ray.data.from_items([{"key": f"k{i}", "text": t} for i, t in enumerate(long)], override_num_blocks=2)
    out = embed_ray_dataset(ds, tiny_bert_bundle, num_actors=2, chunk_tokens=20, chunk_overlap=4)
    mine = pa.concat_tables(list(out.iter_batches(batch_format="pyarrow")))
    assert mine.column_names == ["key", "text", "chunk", "chunk_start", "chunk_end", "embedding"]
    mine = mine.sort_by([("key", "ascending"), ("chunk", "ascending")])
    ordered = a.sort_by([("id", "ascending"), ("chunk", "ascending")])
    assert mine.column("chunk_end").equals(ordered.column("chunk_end"))
    np.testing.assert_allclose(_vectors(mine), _vectors(ordered), atol=2e-6)
    with pytest.raises(ValueError, match="chunk_overlap applies to chunking"):
        embed_ray_dataset(ds, tiny_bert_bundle, chunk_overlap=3)


def test_ray_backend_reads_parts_of_small_files_as_the_local_backend(local_ray: None, tmp_path: Path,
                                                                       tiny_bert_bundle: Path) -> None:  # fmt: skip
    src = tmp_path / "in"
    src.mkdir()
    for k in range(40):  # 1-8 rows a file: parts of several files
        rows = [{"key": f"f{k}-{r}", "text": TEXTS[(k * 7 + r) % len(TEXTS)]} for r in range(k % 8 + 1)]
        if k == 21:
            rows[1]["text"] = None
        (src / f"{k:03d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = {"id_column": "key", "rows_per_part": 40, "progress": False, "on_error": "skip"}
    local = embed_dataset(src, tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    rayed = embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2),
                          **common)  # type: ignore[arg-type]  # fmt: skip
    assert rayed.parts == local.parts < 20 and rayed.written == local.written and rayed.bad_rows == 1
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.column("id").equals(b.column("id"))
    np.testing.assert_allclose(_vectors(a), _vectors(b), atol=1e-6)
    bad = json.loads((tmp_path / "ray" / "_bad_rows.jsonl").read_text())
    assert bad["file"] == str(src / "021.jsonl") and bad["line"] == 2 and bad["id"] == "f21-1"


def test_ray_backend_with_a_sparse_bundle(local_ray: None, tmp_path: Path, tiny_sparse: tuple[Path, Path]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"key": f"k{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:200])))
    common = {"id_column": "key", "rows_per_part": 50, "progress": False, "max_active_dims": 16}
    embed_dataset(src, tmp_path / "local", tiny_sparse[1], **common)  # type: ignore[arg-type]
    embed_dataset(src, tmp_path / "ray", tiny_sparse[1], backend="ray", ray=RayOptions(num_actors=2),
                  **common)  # type: ignore[arg-type]  # fmt: skip
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.equals(b) and a.num_rows == 200
    ds = ray.data.from_items([{"key": f"k{i}", "text": t} for i, t in enumerate(TEXTS[:200])], override_num_blocks=2)
    mine = pa.concat_tables(list(embed_ray_dataset(ds, tiny_sparse[1], max_active_dims=16).iter_batches(
        batch_format="pyarrow"))).sort_by("key")  # fmt: skip
    ordered = a.sort_by("id")
    got = [e["indices"] for e in mine.column("embedding").to_pylist()]
    assert got == [e["indices"] for e in ordered.column("embedding").to_pylist()]
    with pytest.raises(ValueError, match="normalize applies to dense vectors"):
        embed_ray_dataset(ds, tiny_sparse[1], normalize=True)


def test_ray_backend_on_s3_equals_local_backend(local_ray: None, s3_env: dict[str, str], tmp_path: Path,
                                                tiny_bert_bundle: Path) -> None:  # fmt: skip
    """Input, output and bundle on an object store: each actor reads its part, fetches the bundle into
    its machine's cache and writes its part there; the driver journals. A cluster needs no shared disk."""
    rows = "".join(json.dumps({"key": f"k{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:300]))
    put("s3://ray-corpus/in.jsonl", rows.encode())
    put_folder(tiny_bert_bundle, "s3://ray-bundles/tiny")
    (tmp_path / "in.jsonl").write_text(rows)
    common = {"id_column": "key", "rows_per_part": 50, "progress": False}
    rayed = embed_dataset("s3://ray-corpus/in.jsonl", "s3://ray-vectors/out", "s3://ray-bundles/tiny", backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    local = embed_dataset(tmp_path / "in.jsonl", tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert rayed.written == local.written == 300 and rayed.parts == 6
    a, b = pq.read_table(tmp_path / "local"), pq.read_table("s3://ray-vectors/out")
    assert b.column("id").to_pylist() == [f"k{i}" for i in range(300)]
    np.testing.assert_array_equal(_vectors(a), _vectors(b))
    assert len(list((Path(s3_env["EMBEDRT_CACHE"]) / "bundles").iterdir())) == 1  # the actors' one copy
    again = embed_dataset("s3://ray-corpus/in.jsonl", "s3://ray-vectors/out", "s3://ray-bundles/tiny", backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    assert again.parts_resumed == 6 and again.rows_embedded == 0
    mapped = embed_ray_dataset(ray.data.read_parquet("s3://ray-vectors/out").select_columns(["id"]).add_column(
        "text", lambda t: pa.array([f"id {i}" for i in t["id"].to_pylist()]), batch_format="pyarrow"),
        "s3://ray-bundles/tiny")  # the job's output read back by Ray from S3, embedded with the bundle on S3
    got = sorted(mapped.take_all(), key=lambda r: r["id"])
    assert len(got) == 300
    np.testing.assert_allclose(np.stack([r["embedding"] for r in got[:5]]),
                               Embedder(tiny_bert_bundle).encode([f"id {r['id']}" for r in got[:5]]), atol=1e-5)  # fmt: skip


def test_ray_backend_reads_a_compressed_input(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Each actor reads its parts of one gzip file from where their rows begin."""
    rows = "".join(json.dumps({"key": f"k{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:400]))
    (tmp_path / "in.jsonl").write_text(rows)
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "in.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    common = {"id_column": "key", "rows_per_part": 50, "progress": False}
    rayed = embed_dataset(tmp_path / "gz", tmp_path / "ray", tiny_bert_bundle, backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    embed_dataset(tmp_path / "in.jsonl", tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert rayed.written == 400 and rayed.parts == 8
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert b.column("id").to_pylist() == a.column("id").to_pylist()
    np.testing.assert_array_equal(_vectors(a), _vectors(b))


def test_ray_backend_reads_an_mbox_as_the_local_backend(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Each actor reads its parts of a mailbox from the From line they begin at."""
    rows = b"".join(b"From a@example.com Mon Jan  1 00:00:00 2024\nSubject: note %d\nMessage-ID: <%d@x>\n\n%s\n\n"
                    % (i, i, t.encode()) for i, t in enumerate(TEXTS[:120]))  # fmt: skip
    (tmp_path / "box.mbox").write_bytes(rows)
    common = {"id_column": "message_id", "keep_columns": ["subject"], "rows_per_part": 25, "progress": False}
    rayed = embed_dataset(tmp_path / "box.mbox", tmp_path / "ray", tiny_bert_bundle, backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    embed_dataset(tmp_path / "box.mbox", tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert rayed.written == 120 and rayed.parts == 5
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert b.column("id").to_pylist() == a.column("id").to_pylist() == [f"<{i}@x>" for i in range(120)]
    assert b.column("subject").to_pylist() == [f"note {i}" for i in range(120)]
    np.testing.assert_array_equal(_vectors(a), _vectors(b))


def test_ray_progress_moves_within_a_part_and_counts_every_row(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import embedrt.dataset._job as job
    import embedrt.dataset._ray as ray_backend

    updates: list[int] = []

    class Bar:
        def __init__(self, total: int, initial: int, enabled: bool, every: float) -> None:
            self.total = total

        def update(self, n: int) -> None:
            updates.append(n)

        def set_postfix(self, **kw: object) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(job, "_progress", Bar)
    monkeypatch.setattr(ray_backend, "_POLL_S", 0.01)
    src = tmp_path / "in.txt"
    src.write_text("".join(t + "\n" for t in TEXTS))
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=1),
                  rows_per_part=450, batch_size=2, progress=True)  # fmt: skip
    assert sum(updates) == len(TEXTS) and min(updates) >= 0  # every row once: none counted twice
    assert len([n for n in updates if n]) > 2 * 2  # within each of the 2 parts, not once per part


def test_ray_backend_names_a_bad_row(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": t}) for t in TEXTS[:300]]
    lines[250] = json.dumps({"text": None})
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadRowError, match=r"in.jsonl line 251 \(id 250\): text is null"):
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=100, backend="ray",
                      ray=RayOptions(num_actors=2), progress=False)  # fmt: skip
    assert (tmp_path / "out" / "part-000000.parquet").is_file()
    (tmp_path / "mixed").mkdir()  # an error raised on an actor reaches the caller as one error, not a Ray traceback
    for name, ids in (("a", [1, 2]), ("b", ["x", "y"])):
        pq.write_table(pa.table({"id": ids, "text": ["one", "two"]}), tmp_path / "mixed" / f"{name}.parquet")
    with pytest.raises(PartFailedError, match=r"part 0 failed on a Ray actor: .*b.parquet: its columns' types \(id: string\) "
                       r"differ from those of .*a.parquet \(id: int64\), read with it in part 0.*InputError"):  # small files: one part
        embed_dataset(tmp_path / "mixed", tmp_path / "o2", tiny_bert_bundle, id_column="id", backend="ray",
                      ray=RayOptions(num_actors=1), progress=False)  # fmt: skip


def test_embed_ray_dataset_adds_a_column(local_ray: None, tiny_bert_bundle: Path) -> None:
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:200])] + [{"id": 200, "text": None}]
    ds = ray.data.from_items(rows, override_num_blocks=4)
    out = embed_ray_dataset(ds, tiny_bert_bundle, id_column="id", on_error="skip", num_actors=2, rows_per_batch=64)
    table = pa.concat_tables(list(out.iter_batches(batch_format="pyarrow"))).sort_by("id")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert table.column_names == ["id", "text", "embedding"] and table.num_rows == 200
    want = Embedder(tiny_bert_bundle).encode(TEXTS[:200])
    np.testing.assert_allclose(_vectors(table), want, atol=2e-6)
    with pytest.raises(ValueError, match="on_error 'ignore'"):
        embed_ray_dataset(ds, tiny_bert_bundle, on_error="ignore")
    with pytest.raises(ValueError, match="streams must be a positive integer or 'auto', got 0"):
        embed_ray_dataset(ds, tiny_bert_bundle, streams=0)


def test_ray_backend_keeps_the_rows_of_a_where_condition_as_the_local_backend(local_ray: None, tmp_path: Path,
                                                                             tiny_bert_bundle: Path) -> None:  # fmt: skip
    pytest.importorskip("duckdb")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(TEXTS[:300])))
    common = {"rows_per_part": 100, "progress": False, "where": "n % 3 = 0 AND text LIKE '%word%'"}
    local = embed_dataset(src, tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    rayed = embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2),
                          **common)  # type: ignore[arg-type]  # fmt: skip
    assert (rayed.written, rayed.left_out) == (local.written, local.left_out) == (92, 208)
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.column("id").to_pylist() == b.column("id").to_pylist() == [i for i in range(0, 300, 3) if i % 13]
    np.testing.assert_array_equal(_vectors(a), _vectors(b))


def test_ray_backend_scans_many_files_on_the_cluster_as_the_local_backend(local_ray: None, tmp_path: Path,
                                                                          tiny_bert_bundle: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset import InputError, _sources

    monkeypatch.setattr(_sources, "SCAN_ELSEWHERE_BYTES", 0)  # these small files too
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):  # compressed, a member each 50 rows: the readers start at the members the tasks found
        with gzip.open(folder / f"f{k}.jsonl.gz", "wt") as f:
            f.write("".join(json.dumps({"key": f"{k}-{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:130])))
    common: dict[str, Any] = {"id_column": "key", "rows_per_part": 40, "progress": False}
    said: list[str] = []
    rayed = embed_dataset(folder, tmp_path / "ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2),
                          log=said.append, **common)  # fmt: skip
    assert any(m.startswith("scanning 3 file(s) on the Ray cluster, ") for m in said)
    local = embed_dataset(folder, tmp_path / "local", tiny_bert_bundle, **common)
    assert rayed.written == local.written == 390 and rayed.parts == local.parts == 12
    ray_scan = json.loads((tmp_path / "ray" / "_manifest.json").read_text())["input"]
    assert ray_scan == json.loads((tmp_path / "local" / "_manifest.json").read_text())["input"]
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_array_equal(_vectors(a), _vectors(b))
    (folder / "f1.jsonl.gz").write_bytes(b"not gzip at all")  # a task's error, as the driver's own scan raises it
    with pytest.raises(Exception) as here:
        embed_dataset(folder, tmp_path / "bad", tiny_bert_bundle, **common)
    with pytest.raises(type(here.value), match=re.escape(str(here.value))):
        embed_dataset(folder, tmp_path / "bad-ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2), **common)
    (folder / "f1.jsonl.gz").write_bytes(gzip.compress('{"key": "k", "text": "UTF-16"}\n'.encode("utf-16")))
    with pytest.raises(InputError) as here:
        embed_dataset(folder, tmp_path / "bad2", tiny_bert_bundle, **common)
    with pytest.raises(InputError, match=re.escape(str(here.value))):
        embed_dataset(folder, tmp_path / "bad2-ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2),
                      **common)  # fmt: skip


def test_ray_composes_a_text_template_as_the_local_backend(local_ray: None, tmp_path: Path,
                                                          tiny_bert_bundle: Path) -> None:
    template = "title: {title|none} | text: {text}"
    rows = [{"key": f"k{i}", "title": None if i % 4 else f"t{i}", "text": t} for i, t in enumerate(TEXTS[:300])]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    common = {"id_column": "key", "rows_per_part": 100, "progress": False, "text_template": template}
    embed_dataset(src, tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=2),
                  **common)  # type: ignore[arg-type]  # fmt: skip
    np.testing.assert_array_equal(_vectors(pq.read_table(tmp_path / "local")), _vectors(pq.read_table(tmp_path / "ray")))
    ds = ray.data.from_items(rows, override_num_blocks=3)
    out = embed_ray_dataset(ds, tiny_bert_bundle, id_column="key", num_actors=2, rows_per_batch=64,
                            text_template=template)  # fmt: skip
    table = pa.concat_tables(list(out.iter_batches(batch_format="pyarrow")))
    order = np.argsort([int(k[1:]) for k in table.column("key").to_pylist()])
    composed = [f"title: {r['title'] or 'none'} | text: {r['text']}" for r in rows]
    np.testing.assert_allclose(_vectors(table)[order], Embedder(tiny_bert_bundle).encode(composed), atol=2e-6)
    with pytest.raises(ValueError, match="lone '}'"):
        embed_ray_dataset(ds, tiny_bert_bundle, text_template="{title}}")


def test_ray_actors_on_openvino_equal_the_cpu_provider(
    local_ray: None, tmp_path: Path, tiny_factory, tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
    tiny_bert_bundle: Path,
) -> None:
    pytest.importorskip("openvino")
    from embedrt.export import export_model

    plain = export_model(tiny_factory("bert"), tmp_path_factory.mktemp("ray-ov") / "bundle", optimize=False)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS[:300]) + "\n", encoding="utf-8")
    summary = embed_dataset(src, tmp_path / "out", plain, backend="ray", ray=RayOptions(num_actors=2),
                            device="openvino", precision_hint="fp32", streams=2, rows_per_part=100,
                            progress=False)  # fmt: skip
    assert summary.written == 300
    got = _vectors(pq.read_table(tmp_path / "out").sort_by("id"))
    np.testing.assert_allclose(got, Embedder(plain).encode(TEXTS[:300]), atol=1e-5)
    # a bundle's preferred setting (the plain graph on OpenVINO, in bf16 where the CPU has it): the default
    # device, resolved where the job starts, reaches every actor with its hint; so in embed_ray_dataset
    from embedrt._session import cpu_precision_hints
    from embedrt._types import InferencePrecision

    hint = "bf16" if InferencePrecision.BF16 in cpu_precision_hints() else "fp32"
    held = hold_preferred(tiny_bert_bundle, plain, tmp_path, precision_hint=hint)
    want = Embedder(plain, device="openvino", precision_hint=hint).encode(TEXTS[:300])
    embed_dataset(src, tmp_path / "held", held, backend="ray", ray=RayOptions(num_actors=2), rows_per_part=100,
                  progress=False)  # fmt: skip
    np.testing.assert_allclose(_vectors(pq.read_table(tmp_path / "held").sort_by("id")), want, atol=1e-5)
    rows = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS[:100])], override_num_blocks=2)
    table = pa.concat_tables(list(embed_ray_dataset(rows, held, id_column="id", num_actors=1)
                                  .iter_batches(batch_format="pyarrow"))).sort_by("id")  # fmt: skip
    np.testing.assert_allclose(_vectors(table), want[:100], atol=1e-5)


def test_ray_actors_refuse_a_bundle_other_than_the_planned_one(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import embedrt.dataset._job as job

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:40]))
    # the driver planned with another bundle under that path (a node's own copy, or one re-exported since)
    monkeypatch.setattr(job, "bundle_digest", lambda bundle: "f" * 64)
    with pytest.raises(PartFailedError, match=r"the bundle at '.*' on node .* is not the one the job was planned "
                                              r"with \(its manifest's sha256 [0-9a-f]{16}\.\.\., the job's "
                                              r"ffffffffffffffff\.\.\.\): every node must read the same bundle"):  # fmt: skip
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, backend="ray", ray=RayOptions(num_actors=1),
                      rows_per_part=20, progress=False)  # fmt: skip
    assert not list((tmp_path / "out").glob("part-*"))


def test_ray_backend_scores_pairs_as_the_local_backend(local_ray: None, tmp_path: Path,
                                                       tiny_reranker: tuple[Path, Path]) -> None:  # fmt: skip
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"q": f"query {i % 5}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:200])))
    common: dict[str, Any] = {"query_column": "q", "keep_columns": ["q"], "rows_per_part": 50, "progress": False}
    local = embed_dataset(src, tmp_path / "local", tiny_reranker[1], **common)
    rayed = embed_dataset(src, tmp_path / "ray", tiny_reranker[1], backend="ray", ray=RayOptions(num_actors=2), **common)
    assert rayed.written == local.written == 200
    assert pq.read_table(tmp_path / "ray").equals(pq.read_table(tmp_path / "local"))


def test_score_batch_in_ones_own_ray_pipeline(local_ray: None, tiny_reranker: tuple[Path, Path]) -> None:
    from embedrt import Reranker
    from embedrt.dataset import ScoreBatch

    rows = [{"k": i, "q": f"query {i % 3}", "text": t} for i, t in enumerate(TEXTS[:60])]
    ds = ray.data.from_items(rows).map_batches(
        ScoreBatch, fn_constructor_kwargs={"model": str(tiny_reranker[1]), "query_column": "q", "threads": 1},
        batch_size=25, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1),
    )  # fmt: skip
    got = sorted(ds.take_all(), key=lambda r: r["k"])
    want = Reranker(tiny_reranker[1]).predict([(r["q"], r["text"]) for r in rows])
    np.testing.assert_allclose([r["score"] for r in got], want, atol=1e-6)


def test_embed_ray_dataset_scores_pairs_with_a_reranker(local_ray: None, tiny_reranker: tuple[Path, Path],
                                                        tiny_bert_bundle: Path) -> None:  # fmt: skip
    from embedrt import BundleError, Reranker

    rows: list[dict[str, Any]] = [{"k": i, "q": f"query {i % 3}", "body": t} for i, t in enumerate(TEXTS[:60])]
    rows[7]["q"] = None  # a bad pair, kept with a null score
    ds = embed_ray_dataset(ray.data.from_items(rows), tiny_reranker[1], query_column="q", text_column="body",
                           id_column="k", on_error="null", num_actors=1, rows_per_batch=25)  # fmt: skip
    got = sorted(ds.take_all(), key=lambda r: r["k"])
    assert [r["k"] for r in got] == list(range(60)) and got[7]["score"] is None and got[0]["q"] == "query 0"
    good = [r for r in rows if r["q"] is not None]
    want = Reranker(tiny_reranker[1]).predict([(r["q"], r["body"]) for r in good])
    np.testing.assert_allclose([r["score"] for r in got if r["k"] != 7], want, atol=1e-6)
    plain = ray.data.from_items(rows)
    with pytest.raises(BundleError, match="query_column="):  # a reranker needs the pairs' queries
        embed_ray_dataset(plain, tiny_reranker[1])
    with pytest.raises(ValueError, match="for a reranker bundle"):
        embed_ray_dataset(plain, tiny_bert_bundle, query_column="q")
    with pytest.raises(ValueError, match="normalize"):
        embed_ray_dataset(plain, tiny_reranker[1], query_column="q", normalize=True)


def test_ray_backend_embeds_documents_as_the_local_backend(local_ray: None, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "docs"
    for i, t in enumerate(TEXTS[:60]):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"{i:02d}.md").write_text(t * (1 + i % 5))
    (src / "d1" / "30.md").write_bytes(b"\xc3(")  # not UTF-8: a bad row, named by its file
    lines = [t for t in TEXTS if t.isascii()][:5]  # Helvetica's
    (src / "d2" / "paper.pdf").write_bytes(make_pdf([lines[:3], [], lines[3:]]))  # read as their text
    (src / "d0" / "memo.docx").write_bytes(make_docx("".join(f"<w:p><w:r><w:t>{t}</w:t></w:r></w:p>" for t in lines)))
    (src / "d1" / "talk.pptx").write_bytes(make_pptx([(pptx_shape(lines[:2]), lines[2]), (pptx_shape(lines[3:]), None)]))
    (src / "d2" / "book.epub").write_bytes(make_epub([("c1.xhtml", f"<p>{lines[0]}</p>"), ("c2.xhtml", f"<p>{lines[1]}</p>")]))
    with zipfile.ZipFile(src / "d1" / "more.zip", "w", zipfile.ZIP_DEFLATED) as z:  # its files read on the actors
        for i, t in enumerate(TEXTS[60:75]):
            z.writestr(f"z/{i:02d}.md", t)
        z.writestr("z/memo.docx", make_docx(f"<w:p><w:r><w:t>{lines[4]}</w:t></w:r></w:p>"))
    ocr = importlib.util.find_spec("rapidocr") is not None
    if ocr:  # a scanned page, read by OCR on the actors as in the local run
        (src / "d0" / "scan.pdf").write_bytes(make_scanned_pdf(make_pdf([lines[:2]], size=(300, 200))))
    common = {"documents": True, "pdf_text": True, "docx_text": True, "pptx_text": True, "epub_text": True, "ocr": ocr, "archives": True, "rows_per_part": 10, "on_error": "null", "chunk_tokens": "max", "progress": False,
              "repeat_cache_mb": 0}  # repeats within a slice only: the same on both backends
    local = embed_dataset(src, tmp_path / "local", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    rayed = embed_dataset(src, tmp_path / "ray", tiny_bert_bundle, backend="ray",
                          ray=RayOptions(num_actors=2), **common)  # type: ignore[arg-type]  # fmt: skip
    assert rayed.written == local.written > 76 and rayed.bad_rows == local.bad_rows == 1 and rayed.parts > 2
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    assert a.drop_columns(["embedding"]).equals(b.drop_columns(["embedding"]))
    assert a.column("embedding").null_count == b.column("embedding").null_count == 1
    # to float rounding: the actors run one thread each, the local run two
    np.testing.assert_allclose(*(_vectors(t.filter(t.column("embedding").is_valid())) for t in (a, b)), atol=1e-6)
    assert (tmp_path / "ray" / "_bad_rows.jsonl").read_text() == (tmp_path / "local" / "_bad_rows.jsonl").read_text()
    assert json.loads((tmp_path / "ray" / "_bad_rows.jsonl").read_text())["file"] == str(src / "d1" / "30.md")
    for name in ("d1/more.zip/z/00.md", "d1/more.zip/z/memo.docx", "d2/paper.pdf", "d0/memo.docx", "d1/talk.pptx", "d2/book.epub", *(["d0/scan.pdf"] if ocr else [])):
        read = b.filter(pc.equal(b.column("id"), name))
        assert read.num_rows > 0 and read.column("embedding").null_count == 0
