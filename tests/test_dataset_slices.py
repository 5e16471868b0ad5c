"""A part read, embedded and written a slice at a time: the slices join to the part in every format,
a job in slices writes what a job in whole parts writes, and a job stopped mid-part leaves no file."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import BadRowError, EmbedBatch, embed_dataset  # noqa: E402
from embedrt.dataset import _job as job  # noqa: E402
from embedrt.dataset import _readers as readers  # noqa: E402
from embedrt.dataset._readers import read_part, read_slices  # noqa: E402
from embedrt.dataset._sources import plan_input  # noqa: E402

TEXTS = [f"text {i}: " + "a few words more " * (i % 9) + ("한국어 문장" if i % 4 else "") for i in range(300)]


def _rows(n: int = 300) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [{"key": f"k{i}", "text": TEXTS[i % len(TEXTS)], "n": i} for i in range(n)]
    for i in (5, 140, 141):
        rows[i]["text"] = None
    for i in range(200, 220):
        rows[i]["text"] = TEXTS[7]  # repeats, some in another slice than their first
    return rows


def _write(path: Path, fmt: str, rows: list[dict[str, object]]) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "txt":
        path.write_text("".join(f"{r['text'] or ''}\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["key", "text", "n"])
            w.writeheader()
            w.writerows([{**r, "text": r["text"] or ""} for r in rows])
    elif fmt == "arrow":  # the stream format, in batches of 37 rows
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
            for b in table.to_batches(max_chunksize=37):
                w.write_batch(b)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=37)
    return path


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet", "arrow"])
def test_the_slices_of_a_part_join_to_it(fmt: str, tmp_path: Path) -> None:
    rows = _rows()
    if fmt in ("csv", "parquet", "arrow"):  # a record over several lines (csv: quoted)
        rows = [{**r, "text": f"{r['text']}\nits second line"} if i % 7 == 3 and r["text"] else r
                for i, r in enumerate(rows)]  # fmt: skip
    src = _write(tmp_path / f"in.{fmt}", fmt, rows)
    cols = {"id_column": None, "keep_columns": ()} if fmt == "txt" else {"id_column": "key", "keep_columns": ("n",)}
    plan = plan_input(src, 120, text="text", **cols)  # type: ignore[arg-type]
    limit = 500
    for part in plan.parts:
        whole = read_part(plan, part, "text", **cols)  # type: ignore[arg-type]
        slices = list(read_slices(plan, part, "text", chars=limit, **cols))  # type: ignore[arg-type]
        assert len(slices) > 3 and all(s.num_rows for s in slices)
        assert pa.concat_tables(slices).equals(whole) and slices[0].schema.metadata == whole.schema.metadata
        for s in slices:
            sizes = [len(t or "") for t in s.column(readers.TEXT).to_pylist()]
            assert sum(sizes[:-1]) < limit  # a slice ends once it holds the limit
        assert slices[0].column("id").to_pylist() == whole.column("id").to_pylist()[: slices[0].num_rows]
    one = list(read_slices(plan, plan.parts[0], "text", chars=None, **cols))  # type: ignore[arg-type]
    assert len(one) == 1 and one[0].equals(read_part(plan, plan.parts[0], "text", **cols))  # type: ignore[arg-type]


def _embedded(out: Path) -> tuple[pa.Table, np.ndarray]:
    table = pq.read_table(out)
    values = table.column("embedding").to_pylist()
    dim = len(next(v for v in values if v is not None))
    vectors = np.stack([np.zeros(dim, np.float32) if v is None else np.asarray(v, np.float32) for v in values])
    return table.drop_columns(["embedding"]), vectors


@pytest.mark.parametrize("chunks", [{}, {"chunk_tokens": 12, "chunk_overlap": 3, "chunk_text": True}])
def test_a_job_in_slices_writes_what_a_job_in_whole_parts_writes(
    chunks: dict[str, object], tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "in.jsonl", "jsonl", _rows())
    common = {"id_column": "key", "keep_columns": ["n"], "rows_per_part": 120, "on_error": "null", "progress": False,
              "repeat_cache_mb": 0, **chunks}  # fmt: skip
    whole = embed_dataset(src, tmp_path / "whole", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    prepared: list[int] = []
    prepare = EmbedBatch.prepare
    monkeypatch.setattr(EmbedBatch, "prepare", lambda self, t: prepared.append(t.num_rows) or prepare(self, t))
    monkeypatch.setattr(readers, "SLICE_CHARS", 600)
    sliced = embed_dataset(src, tmp_path / "sliced", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert len(prepared) > 4 * sliced.parts and max(prepared) < 60  # no part was read whole
    assert (sliced.written, sliced.bad_rows) == (whole.written, whole.bad_rows)
    # without the cache, repeats are found within a slice: a text first met in an earlier slice is embedded again
    assert 0 < sliced.repeats < whole.repeats and sliced.tokens > whole.tokens
    a, va = _embedded(tmp_path / "whole")
    b, vb = _embedded(tmp_path / "sliced")
    assert a.equals(b)
    np.testing.assert_allclose(va, vb, atol=2e-6)
    assert json.loads((tmp_path / "sliced" / "_manifest.json").read_text())["bad_rows"]["count"] == 3


def test_a_job_stopped_in_a_later_slice_keeps_no_part_of_it(
    tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "SLICE_CHARS", 600)
    rows = [{**r, "text": TEXTS[i]} for i, r in enumerate(_rows())]
    rows[230]["text"] = None  # in the second part's seventh slice or so
    src = _write(tmp_path / "in.jsonl", "jsonl", rows)
    ref = tmp_path / "ref"
    common = {"id_column": "key", "rows_per_part": 120, "progress": False}
    embed_dataset(src, ref, tiny_bert_bundle, on_error="null", **common)  # type: ignore[arg-type]
    out = tmp_path / "out"
    with pytest.raises(BadRowError, match=r"line 231 \(id 'k230'\): text is null"):
        embed_dataset(src, out, tiny_bert_bundle, **common)  # type: ignore[arg-type]
    journal = [json.loads(x)["file"] for x in (out / "_parts.jsonl").read_text().splitlines()]
    assert journal == ["part-000000.parquet"]  # the first part, whole; nothing of the second
    assert sorted(p.name for p in out.iterdir()) == ["_input_scan.arrow", "_manifest.json", "_parts.jsonl", "part-000000.parquet"]
    done = embed_dataset(src, out, tiny_bert_bundle, on_error="null", **common)  # type: ignore[arg-type]
    assert done.parts == 3 and done.parts_resumed == 1
    a, va = _embedded(ref)
    b, vb = _embedded(out)
    assert a.equals(b)
    np.testing.assert_array_equal(va, vb)


def test_a_part_of_many_bytes_is_written_in_row_groups(
    tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write(tmp_path / "in.jsonl", "jsonl", [r for r in _rows() if r["text"] is not None])
    embed_dataset(src, tmp_path / "one", tiny_bert_bundle, progress=False)
    monkeypatch.setattr(readers, "SLICE_CHARS", 600)
    monkeypatch.setattr(job, "ROW_GROUP_BYTES", 2000)
    embed_dataset(src, tmp_path / "many", tiny_bert_bundle, progress=False)
    one, many = pq.ParquetFile(tmp_path / "one" / "part-000000.parquet"), pq.ParquetFile(tmp_path / "many" / "part-000000.parquet")
    assert one.metadata.num_row_groups == 1 and many.metadata.num_row_groups > 5
    a, va = _embedded(tmp_path / "one")
    b, vb = _embedded(tmp_path / "many")
    assert a.equals(b) and one.schema_arrow == many.schema_arrow
    np.testing.assert_allclose(va, vb, atol=2e-6)


def test_text_sizes_in_every_arrow_layout() -> None:
    from embedrt.dataset._readers import text_sizes as _text_sizes

    values = ["ab", None, "한국"]
    for arr in (pa.array(values), pa.array(values, pa.large_string()), pa.array(values).dictionary_encode(),
                pa.array(values, pa.string_view()), pa.array([b"ab", None, "한국".encode()], pa.binary_view())):  # fmt: skip
        assert _text_sizes(pa.chunked_array([arr])).tolist() == [2, 0, 6], arr.type
    assert _text_sizes(pa.chunked_array([pa.array([1, None])])).tolist() == [0, 0]  # no text: bad rows, one slice


def test_a_large_table_is_embedded_a_slice_at_a_time(tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [r["text"] for r in _rows()]
    texts[5] = texts[140] = texts[141] = "fine"
    table = pa.table({"key": [f"k{i}" for i in range(len(texts))], "text": texts})
    batch = EmbedBatch(tiny_bert_bundle, chunk_tokens=12, chunk_overlap=3)
    whole = batch(table)
    prepared: list[int] = []
    prepare = EmbedBatch.prepare
    monkeypatch.setattr(EmbedBatch, "prepare", lambda self, t, first=0: prepared.append(t.num_rows) or prepare(self, t, first))
    monkeypatch.setattr(readers, "SLICE_CHARS", 600)
    sliced = batch(table)
    assert len(prepared) > 10 and max(prepared) < 60 and sum(prepared) == table.num_rows
    assert sliced.drop_columns(["embedding"]).equals(whole.drop_columns(["embedding"]))
    np.testing.assert_allclose(np.stack(sliced.column("embedding").to_numpy(zero_copy_only=False)),
                               np.stack(whole.column("embedding").to_numpy(zero_copy_only=False)), atol=2e-6)  # fmt: skip
    texts[250] = None
    with pytest.raises(BadRowError, match=r"bad row in row \(id 250\): text is null"):  # numbered in the table
        batch(pa.table({"text": texts}))


def test_a_parquet_row_group_is_read_a_buffer_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow reads a row group's whole column chunk at once unless told to buffer: a row group of
    long documents would be held whole, however small the slices. Buffered, it reads a page at a
    time (pyarrow's writer ends a page after at most 1,024 rows)."""
    import random

    from embedrt.dataset import _storage as storage

    rng = random.Random(0)
    texts = ["".join(rng.choice("abcdefghij ") for _ in range(12_000)) for _ in range(500)]  # 6 MB, one group
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts}), src, row_group_size=len(texts), use_dictionary=False, compression="none",
                   write_batch_size=16)  # pages of 16 rows: a page is read whole, buffer or not  # fmt: skip
    monkeypatch.setattr(storage, "PARQUET_BUFFER", 1 << 20)
    reads: list[int] = []
    real = pq.ParquetFile

    class Counting:  # the file, its reads recorded
        def __init__(self, path: str) -> None:
            self.f = open(path, "rb")  # noqa: SIM115
            self.closed = False

        def read(self, n: int = -1) -> bytes:
            data = self.f.read(n)
            reads.append(len(data))
            return data

        def __getattr__(self, name: str) -> object:
            return getattr(self.f, name)

    monkeypatch.setattr(pq, "ParquetFile", lambda source, **kw: real(Counting(str(source)), **kw))
    plan = plan_input(src, 10_000, text="text", id_column=None, keep_columns=())
    reads.clear()
    got = [t for s in read_slices(plan, plan.parts[0], "text", None, (), 2_000_000) for t in s.column(readers.TEXT).to_pylist()]
    assert got == texts
    assert sum(reads) > 6_000_000 and max(reads) <= 1 << 20  # the 6 MB column chunk in reads of the buffer's size


def test_an_arrow_stream_on_object_storage_is_read_once_across_its_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.fs as pafs

    from embedrt.dataset import _storage as storage

    rows = [{"key": f"k{i}", "text": f"text {i}"} for i in range(100)]
    src = _write(tmp_path / "in.arrow", "arrow", rows)  # batches of 37 rows; parts of 10 end inside them
    os.utime(src, ns=(1_700_000_000 * 10**9,) * 2)  # whole seconds, as an object's time stamp is
    plan = plan_input(src, 10, text="text", id_column="key", keep_columns=())
    opened: list[str] = []
    real = storage._ArrowStream.__init__

    def counting(self, where, source):  # type: ignore[no-untyped-def]
        opened.append(where)
        real(self, where, source)

    monkeypatch.setattr(storage, "is_uri", lambda where: True)  # as an object store's file: no memory map
    monkeypatch.setattr(storage, "split_uri", lambda where: (pafs.LocalFileSystem(), where))
    monkeypatch.setattr(storage._ArrowStream, "__init__", counting)
    storage.release()
    parts = [read_part(plan, p, "text", "key", ()) for p in plan.parts]
    assert [k for t in parts for k in t.column("id").to_pylist()] == [r["key"] for r in rows]
    assert [t for t in parts[3].column(readers.TEXT).to_pylist()] == [f"text {i}" for i in range(30, 40)]
    assert len(opened) == 1  # read forward once, not from the start for each of the 10 parts
    assert read_part(plan, plan.parts[1], "text", "key", ()).equals(parts[1])  # going back opens it again
    assert len(opened) == 2
    storage.release()


def test_a_parquet_row_group_is_read_once_across_its_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader skips to a row group, not to a row inside one: each part is read on from where the
    previous one stopped, not its row group decoded from the start again."""
    from embedrt.dataset import _storage as storage

    rows = [{"key": f"k{i}", "text": f"text {i}"} for i in range(3000)]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=2000)  # row groups of 2,000 and 1,000 rows
    plan = plan_input(src, 300, text="text", id_column="key", keep_columns=())  # parts end inside batches
    decoded: list[int] = []
    real = pq.ParquetFile.iter_batches

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        for b in real(self, *args, **kwargs):
            decoded.append(b.num_rows)
            yield b

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    storage.release()
    parts = [read_part(plan, p, "text", "key", ()) for p in plan.parts]
    assert [k for t in parts for k in t.column("id").to_pylist()] == [r["key"] for r in rows]
    assert sum(decoded) == 3000  # every row once (from each row group's start for every part: 11,656)
    decoded.clear()
    assert read_part(plan, plan.parts[8], "text", "key", ()).equals(parts[8])  # rows 2,400-2,700: going back
    assert sum(decoded) == 3 * 256  # the second row group from its start; the first skipped
    assert read_part(plan, plan.parts[1], "text", "key", ()).equals(parts[1])
    storage.release()
