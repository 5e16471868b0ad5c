"""The corpus job: every input format, ids and kept columns, bad rows, kill and resume, refusals."""

from __future__ import annotations

import bz2
import csv
import errno
import gzip
import hashlib
import json
import lzma
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from run_threads import count_concurrent_runs  # noqa: E402

from embedrt import Embedder  # noqa: E402
from embedrt.dataset import BadRowError, InputError, OutputError, StorageError, embed_dataset  # noqa: E402

TEXTS = [f"row {i}: " + " ".join(["word", "longer words", "한국어 문장", "🙂"][: i % 4 + 1]) * (i % 5 + 1)
         for i in range(230)] + ["", "   "]  # fmt: skip


def _read(out: Path) -> pa.Table:
    return pq.read_table(out).sort_by("id")


def _vectors(table: pa.Table) -> np.ndarray:
    return np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)


@pytest.fixture(scope="module")
def model(tiny_bert_bundle: Path) -> Embedder:
    return Embedder(tiny_bert_bundle)


@pytest.fixture(scope="module")
def expected(model: Embedder) -> np.ndarray:
    return model.encode(TEXTS)  # type: ignore[return-value]


def _write(path: Path, fmt: str, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "txt":
        path.write_text("".join(f"{r['text']}\n" for r in rows), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt in ("arrow", "feather"):
        _write_arrow(path, pa.Table.from_pylist(rows), stream=fmt == "arrow")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=37)
    return path


def _write_arrow(path: Path, table: pa.Table, stream: bool) -> None:
    """Arrow IPC in batches of 37 rows: the stream format (as Hugging Face datasets writes its .arrow
    files) or the file format (.feather v2)."""
    with pa.OSFile(str(path), "wb") as f, (pa.ipc.new_stream if stream else pa.ipc.new_file)(f, table.schema) as w:
        for b in table.to_batches(max_chunksize=37):
            w.write_batch(b)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet", "arrow", "feather"])
def test_every_format_gives_the_in_memory_vectors(fmt: str, tmp_path: Path, tiny_bert_bundle: Path,
                                                  expected: np.ndarray) -> None:  # fmt: skip
    rows = [{"doc": f"d{i}", "text": t, "n": i} for i, t in enumerate(TEXTS)]
    if fmt == "txt":
        rows = [{"text": t.strip() or t} for t in TEXTS[:-1]]  # a line may not hold a newline; "   " stays
    src = _write(tmp_path / f"in.{fmt}", fmt, rows)
    cols = {} if fmt == "txt" else {"id_column": "doc", "keep_columns": ["n"]}
    summary = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=50, progress=False, **cols)
    assert summary.written == summary.rows == len(rows) and summary.bad_rows == 0
    table = pq.read_table(tmp_path / "out")
    n = len(rows)
    if fmt == "txt":
        assert table.column("id").to_pylist() == list(range(n))
        texts = [r["text"] for r in rows]
    else:
        assert table.column_names == ["id", "n", "embedding"]
        assert table.column("id").to_pylist() == [f"d{i}" for i in range(n)]
        assert table.column("n").to_pylist() == (list(range(n)) if fmt != "csv" else [str(i) for i in range(n)])
        texts = TEXTS
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    want = Embedder(tiny_bert_bundle).encode(texts)
    np.testing.assert_allclose(_vectors(table), want, atol=2e-6)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == n and manifest["dimension"] == 32
    assert manifest["identity"]["format"] == {"feather": "arrow"}.get(fmt, fmt) and len(manifest["parts"]) == -(-n // 50)


def test_vectors_are_written_without_dictionary_or_statistics(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    # a vector's values are all but distinct: no dictionary page, no min/max; other columns keep pyarrow's defaults
    rows = [{"doc": f"d{i}", "text": t, "n": i % 7} for i, t in enumerate(TEXTS)]
    src = _write(tmp_path / "in.jsonl", "jsonl", rows)
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="doc", keep_columns=["n"], progress=False)
    group = pq.ParquetFile(tmp_path / "out" / "part-000000.parquet").metadata.row_group(0)
    cols = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert set(cols) == {"id", "n", "embedding.list.element"}
    assert not cols["embedding.list.element"].has_dictionary_page and not cols["embedding.list.element"].is_stats_set
    assert all(cols[c].has_dictionary_page and cols[c].is_stats_set for c in ("id", "n"))


@pytest.mark.parametrize("raw", [b'{"a": 1}', b'{"a": 1} ', b'{"a":\t2}\r', b'{"a": 1} x', b'{"a":1}{"b":2}',
                                 b'{"a": "\xed\xa0\x80"}', b'{"a": "\xff"}', b'\xef\xbb\xbf{"a": 1}', b'{"a": NaN}',
                                 b'[1, 2]', b'{"a": "caf\xc3\xa9"}', b'{"a"'])  # fmt: skip
def test_a_json_row_parses_as_json_loads_does(raw: bytes) -> None:
    from embedrt.dataset._sources import json_row

    def outcome(parse: Any) -> tuple[str, str]:
        try:
            return "ok", repr(parse(raw))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError, with their messages
            return type(e).__name__, str(e)

    assert outcome(json_row) == outcome(json.loads)


def test_a_saved_hugging_face_dataset_folder(tmp_path: Path, tiny_bert_bundle: Path, expected: np.ndarray) -> None:
    """``datasets.Dataset.save_to_disk``'s layout: Arrow stream shards beside JSON metadata."""
    folder = tmp_path / "saved"
    folder.mkdir()
    rows = [{"doc": f"d{i}", "text": t, "n": i} for i, t in enumerate(TEXTS)]
    for k, lo in enumerate(range(0, len(rows), 150)):
        _write(folder / f"data-{k:05d}-of-00002.arrow", "arrow", rows[lo : lo + 150])
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    out = tmp_path / "out"
    common = {"id_column": "doc", "keep_columns": ["n"], "rows_per_part": 64, "progress": False}
    summary = embed_dataset(folder, out, tiny_bert_bundle, **common)  # type: ignore[arg-type]
    table = pq.read_table(out)
    assert summary.rows == len(rows) and table.column("id").to_pylist() == [r["doc"] for r in rows]
    assert table.schema.field("n").type == pa.int64()  # the file's own types
    np.testing.assert_allclose(_vectors(table), expected, atol=2e-6)
    again = embed_dataset(folder, out, tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert again.rows_embedded == 0
    edited = [{**r, "text": r["text"].upper()} for r in rows[150:]]
    _write(folder / "data-00001-of-00002.arrow", "arrow", edited)  # the second shard's parts computed again
    third = embed_dataset(folder, out, tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert third.parts_resumed == 3 and third.rows_embedded == len(rows) - 150  # 3 parts of 150 rows, 2 of 82
    (folder / "data-00000-of-00002.arrow").write_bytes(b"not arrow")
    with pytest.raises(InputError, match=r"data-00000-of-00002.arrow is not a readable Arrow IPC file"):
        embed_dataset(folder, tmp_path / "o2", tiny_bert_bundle, **common)  # type: ignore[arg-type]


def test_folder_and_glob_of_shards_number_rows_across_files(tmp_path: Path, tiny_bert_bundle: Path,
                                                            expected: np.ndarray) -> None:  # fmt: skip
    for k, lo in enumerate(range(0, 230, 80)):
        _write(tmp_path / "in" / f"shard-{k}.jsonl", "jsonl", [{"text": t} for t in TEXTS[:230][lo : lo + 80]])
    (tmp_path / "in" / "_SUCCESS").write_text("")  # hidden and underscore files are not input
    a = embed_dataset(tmp_path / "in", tmp_path / "a", tiny_bert_bundle, rows_per_part=64, progress=False)
    b = embed_dataset(str(tmp_path / "in" / "*.jsonl"), tmp_path / "b", tiny_bert_bundle, rows_per_part=64,
                      progress=False)  # fmt: skip
    assert a.rows == b.rows == 230 and a.parts == 6  # parts never span files: 80 = 64 + 16, 70 = 64 + 6
    ta, tb = _read(tmp_path / "a"), _read(tmp_path / "b")
    assert ta.column("id").to_pylist() == list(range(230))
    np.testing.assert_array_equal(_vectors(ta), _vectors(tb))
    np.testing.assert_allclose(_vectors(ta), expected[:230], atol=2e-6)


def test_text_file_edges(tmp_path: Path, tiny_bert_bundle: Path, model: Embedder) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"first\r\n\r\nthird\nlast without newline")  # CRLF, an empty text, no final newline
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, progress=False)
    table = _read(tmp_path / "out")
    np.testing.assert_allclose(_vectors(table), model.encode(["first", "", "third", "last without newline"]),
                               atol=2e-6)  # fmt: skip
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for _ in range(2):  # and again: the finished empty job is kept
        s = embed_dataset(empty, tmp_path / "none", tiny_bert_bundle, progress=False)
        table = pq.read_table(tmp_path / "none")  # a reader finds the columns even with no rows
        assert s.rows == 0 and table.num_rows == 0 and table.column_names == ["id", "embedding"]


def _bad_corpus(path: Path) -> Path:
    lines = [json.dumps({"id": f"ok{i}", "text": t}) for i, t in enumerate(TEXTS[:100])]
    lines[10] = json.dumps({"id": "null", "text": None})
    lines[40] = json.dumps({"id": "number", "text": 3})
    lines[55] = json.dumps({"id": "missing", "body": "no text key"})
    lines[70] = '{"id": "surrogate", "text": "bad \\udcff"}'
    raw = "\n".join(lines).encode() + b"\n"
    raw = raw.replace(json.dumps(TEXTS[80]).encode(), b'"caf\xe9 undecodable"')  # row ok80: latin-1 bytes
    raw += b"\n"  # an empty line is not a row
    path.write_bytes(raw)
    return path


def test_cpu_streams_give_the_same_parts(tmp_path: Path, tiny_bert_bundle: Path, expected: np.ndarray,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """By default a job runs one batch per thread at once (CPU streams of one thread each); its parts
    hold the vectors one stream writes, and the streams may change when the job is continued."""
    from embedrt.dataset import _job

    made: list[tuple[Embedder, list[int]]] = []

    class Watched(Embedder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append((self, count_concurrent_runs(self, delay=0.01)))

    monkeypatch.setattr(_job, "Embedder", Watched)
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS])
    summary = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, threads=2, batch_size=4, rows_per_part=50,
                            progress=False)  # fmt: skip
    (model, most), = made
    assert model.streams == 2 and most[0] == 2  # two batches in the model at once
    assert summary.written == len(TEXTS)
    np.testing.assert_allclose(_vectors(pq.read_table(tmp_path / "out")), expected, atol=2e-6)
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, threads=1, rows_per_part=50, progress=False)
    assert again.rows_embedded == 0 and again.written == len(TEXTS) and made[1][0].streams == 1
    embed_dataset(src, tmp_path / "one", tiny_bert_bundle, threads=2, streams=1, batch_size=4, progress=False)
    assert made[2][0].streams == 1 and made[2][1][0] == 1  # streams=1: each batch on both threads, one at a time


def test_the_batch_function_runs_streams_by_default(tiny_bert_bundle: Path) -> None:
    from embedrt.dataset import EmbedBatch

    batch = EmbedBatch(tiny_bert_bundle, threads=2)  # as a Ray Data actor builds it
    assert batch.model.streams == 2
    assert batch(pa.table({"text": TEXTS[:3]})).num_rows == 3
    assert batch.model._solo is None  # a job never loads a second copy of the weights
    assert EmbedBatch(tiny_bert_bundle, threads=2, streams=1).model.streams == 1


def test_the_progress_bar_moves_within_a_part_and_counts_every_row(tmp_path: Path, tiny_bert_bundle: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import embedrt.dataset._job as job

    class Bar:
        def __init__(self, total: int, initial: int, enabled: bool, every: float) -> None:
            self.total, self.updates = total, [initial]

        def update(self, n: int) -> None:
            self.updates.append(n)

        def set_postfix(self, **kw: object) -> None:
            pass

        def close(self) -> None:
            pass

    bars: list[Bar] = []
    monkeypatch.setattr(job, "_progress", lambda *a: bars.append(Bar(*a)) or bars[-1])
    src = _bad_corpus(tmp_path / "in.jsonl")  # 100 rows, 5 bad
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=40, batch_size=8, on_error="skip",
                  streams=1, progress=True)  # fmt: skip
    (bar,) = bars
    assert sum(bar.updates) == bar.total == 100  # every row once, bad rows included
    assert len([n for n in bar.updates if n]) > 3 * 3  # batches of 8 within each of the 3 parts, not 3 steps


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_the_planning_scan_shows_the_rows_it_finds(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedrt.dataset import _sources

    monkeypatch.setattr(_sources, "_BLOCK", 64)  # many blocks (text formats), so the count moves as it goes
    for i in range(2):
        _write(tmp_path / "in" / f"{i}.{fmt}", fmt, [{"text": t} for t in TEXTS[:150]])
    found: list[int] = []
    plan = _sources.plan_input(str(tmp_path / "in"), 40, text="text", id_column=None, keep_columns=(),
                               scanned=found.append)  # fmt: skip
    assert sum(found) == plan.rows == 300
    assert len([n for n in found if n]) >= (2 if fmt == "parquet" else 10)


def test_bad_rows_fail_names_the_row_and_keeps_finished_parts(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _bad_corpus(tmp_path / "in.jsonl")
    with pytest.raises(BadRowError) as e:
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="id", rows_per_part=8, progress=False)
    assert "in.jsonl line 11 (id 'null'): text is null" in str(e.value)
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == ["part-000000.parquet"]
    # the bad line fixed in place, the same call goes on: part 0 is kept, not recomputed
    lines = src.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    lines[10] = json.dumps({"id": "null", "text": "fixed"})
    src.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    kw = {"id_column": "id", "rows_per_part": 8, "on_error": "null", "progress": False}
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 1 and s.rows_embedded == 92 and s.bad_rows == 4
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert _read(tmp_path / "out").equals(_read(tmp_path / "clean"))
    # a later edit recomputes the parts whose rows changed, and only those; a line removed moves every row after it
    lines[20] = json.dumps({"id": "ok20", "text": "edited"})
    src.write_text("\n".join(lines[:60] + lines[61:]), encoding="utf-8", errors="surrogateescape")
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 6 and s.rows_embedded == 8 + 43 and s.rows == 99  # parts 0-1, 3-6 kept
    embed_dataset(src, tmp_path / "clean2", tiny_bert_bundle, **kw)
    assert _read(tmp_path / "out").equals(_read(tmp_path / "clean2"))
    src.write_text("".join(json.dumps({"id": f"x{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS[:100])))
    with pytest.raises(OutputError, match="another input"):  # no finished part matches: another corpus
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)


def test_parquet_edited_in_place_is_recomputed(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A Parquet file changed in place, same length and footer, is not taken for the one embedded."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        table = pa.table({"id": [f"f{i}-{r}" for r in range(12)], "text": [f"file {i} cat {r:02d}" for r in range(12)]})
        pq.write_table(table, src / f"{i}.parquet", compression="none", write_statistics=False)
    kw: dict[str, Any] = {"id_column": "id", "rows_per_part": 8, "progress": False}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    second = src / "1.parquet"
    before = second.read_bytes()
    after = before.replace(b"file 1 cat 05", b"file 1 dog 05")
    assert len(after) == len(before) and after[-200:] == before[-200:] and after != before
    second.write_bytes(after)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 2 and s.rows_embedded == 12  # the first file's parts kept, the second's again
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert _read(tmp_path / "out").equals(_read(tmp_path / "clean"))


@pytest.mark.parametrize("policy", ["skip", "null"])
def test_bad_rows_skip_or_null_are_recorded(policy: str, tmp_path: Path, tiny_bert_bundle: Path,
                                            model: Embedder) -> None:  # fmt: skip
    src = _bad_corpus(tmp_path / "in.jsonl")
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="id", rows_per_part=16,
                      on_error=policy, progress=False)  # fmt: skip
    bad_ids = ["null", "number", "missing", "surrogate", "ok80"]
    assert s.rows == 100 and s.bad_rows == 5 and s.written == (95 if policy == "skip" else 100)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["bad_rows"]["ids"] == bad_ids and manifest["bad_rows"]["count"] == 5
    records = [json.loads(x) for x in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    reasons = {r["id"]: r["reason"] for r in records}
    assert reasons["number"].startswith("text is int") and "missing column 'text'" in reasons["missing"]
    assert "lone surrogate" in reasons["surrogate"] and "invalid UTF-8" in reasons["ok80"]
    assert [r["line"] for r in records] == [11, 41, 56, 71, 81]
    table = pq.read_table(tmp_path / "out")
    ids = table.column("id").to_pylist()
    emb = table.column("embedding")
    if policy == "skip":
        assert not set(bad_ids) & set(ids) and emb.null_count == 0
    else:
        assert ids == [json.loads(x)["id"] for x in src.read_text(errors="replace").splitlines() if x.strip()]
        assert [ids[i] for i in range(len(ids)) if not emb[i].is_valid] == bad_ids
    good = [i for i in range(100) if f"ok{i}" in ids and emb[ids.index(f"ok{i}")].is_valid]
    got = np.stack([emb[ids.index(f"ok{i}")].values.to_numpy() for i in good])
    np.testing.assert_allclose(got, model.encode([TEXTS[i] for i in good]), atol=2e-6)


def test_bad_rows_in_csv_and_parquet(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    c = tmp_path / "in.csv"
    c.write_bytes(b'id,text\na,"fine, quoted\nover two lines"\nb,caf\xe9\nc,short,extra\nd,ok\n')
    s = embed_dataset(c, tmp_path / "c", tiny_bert_bundle, id_column="id", on_error="skip", progress=False)
    assert _read(tmp_path / "c").column("id").to_pylist() == ["a", "d"]
    assert [(b["id"], b["line"]) for b in s.bad_examples] == [("b", 4), (None, 5)]
    p = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": pa.array([b"ok", None, b"\xff\xfe"], pa.binary())}), p)
    s = embed_dataset(p, tmp_path / "p", tiny_bert_bundle, id_column="id", on_error="null", progress=False)
    assert [(b["id"], b["row"], b["reason"][:12]) for b in s.bad_examples] == [(2, 1, "text is null"),
                                                                                (3, 2, "undecodable ")]  # fmt: skip
    with pytest.raises(InputError, match="has no column 'body'"):
        embed_dataset(p, tmp_path / "q", tiny_bert_bundle, text_column="body", progress=False)
    j = tmp_path / "in.jsonl"  # the id of a row that is not UTF-8 is kept, and its type counts for the column
    j.write_bytes(b'{"id": 1, "text": "a"}\n{"id": "abc", "text": "bad \xff"}\n{"id": 3, "text": "c"}\n')
    s = embed_dataset(j, tmp_path / "j", tiny_bert_bundle, id_column="id", on_error="null", progress=False)
    assert s.bad_rows == 1 and pq.read_table(tmp_path / "j").column("id").to_pylist() == ["1", "abc", "3"]


def test_csv_blank_lines_are_no_rows_and_an_unclosed_quote_is_refused(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    c = tmp_path / "in.csv"
    c.write_text('id,text\n1,a\n\n2,"b, quoted"\n\n')
    s = embed_dataset(c, tmp_path / "c", tiny_bert_bundle, id_column="id", rows_per_part=1, progress=False)
    assert s.rows == 2 and s.bad_rows == 0 and _read(tmp_path / "c").column("id").to_pylist() == ["1", "2"]
    c.write_text('id,text\n1,ok\n2,"hello\n3,world\n4,foo\n')  # would swallow rows 3 and 4 into row 2
    with pytest.raises(InputError, match="line 3: a quote opened in this row is never closed"):
        embed_dataset(c, tmp_path / "d", tiny_bert_bundle, id_column="id", progress=False)


def _string_layouts() -> dict[str, object]:
    """Every Arrow layout that holds strings, and UTF-8 bytes."""
    layouts: dict[str, object] = {"string": pa.string(), "large_string": pa.large_string(),
                                  "dictionary": "dictionary", "binary": pa.binary()}  # fmt: skip
    if hasattr(pa, "string_view"):  # pyarrow >= 16
        layouts["string_view"] = pa.string_view()
    return layouts


@pytest.mark.parametrize("layout", list(_string_layouts()))
def test_every_arrow_string_layout_is_text(layout: str, tmp_path: Path, tiny_bert_bundle: Path, model: Embedder,
                                           expected: np.ndarray) -> None:  # fmt: skip
    from embedrt.dataset import EmbedBatch

    kind = _string_layouts()[layout]
    texts = TEXTS[:40]
    if kind == "dictionary":
        column = pa.array(texts).dictionary_encode()
    elif kind == pa.binary():
        column = pa.array([t.encode() for t in texts], pa.binary())
    else:
        column = pa.array(texts, kind)
    table = pa.table({"id": list(range(40)), "text": column})
    pq.write_table(table, tmp_path / "in.parquet")
    s = embed_dataset(tmp_path / "in.parquet", tmp_path / "out", tiny_bert_bundle, id_column="id", progress=False)
    assert s.written == 40 and s.bad_rows == 0
    np.testing.assert_allclose(_vectors(_read(tmp_path / "out")), expected[:40], atol=2e-6)
    batch = EmbedBatch(model, id_column="id")(table)  # the Ray Data batch function takes the same layouts
    np.testing.assert_allclose(np.stack(batch.column("embedding").to_numpy(zero_copy_only=False)),
                               expected[:40], atol=2e-6)  # fmt: skip


def test_output_of_another_job_is_refused(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS[:20]])
    out = tmp_path / "out"
    embed_dataset(src, out, tiny_bert_bundle, progress=False)
    with pytest.raises(OutputError, match="normalize"):
        embed_dataset(src, out, tiny_bert_bundle, normalize=True, progress=False)
    other = _write(tmp_path / "other.jsonl", "jsonl", [{"text": t} for t in TEXTS[20:40]])
    with pytest.raises(OutputError, match="input"):
        embed_dataset(other, out, tiny_bert_bundle, progress=False)
    s = embed_dataset(other, out, tiny_bert_bundle, overwrite=True, progress=False)
    assert s.parts_resumed == 0 and s.written == 20
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write"):
        embed_dataset(other, out, tiny_bert_bundle, overwrite=True, progress=False)


def test_bad_arguments_are_named(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _write(tmp_path / "in.txt", "txt", [{"text": "a"}])
    with pytest.raises(ValueError, match="on_error 'drop'"):
        embed_dataset(src, tmp_path / "o", tiny_bert_bundle, on_error="drop")
    with pytest.raises(InputError, match="no columns"):
        embed_dataset(src, tmp_path / "o", tiny_bert_bundle, id_column="id")
    with pytest.raises(InputError, match="does not exist"):
        embed_dataset(tmp_path / "nope.jsonl", tmp_path / "o", tiny_bert_bundle)
    (tmp_path / "x.json.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"extension '.json' \(a JSON document"):
        embed_dataset(tmp_path / "x.json.gz", tmp_path / "o", tiny_bert_bundle)
    with pytest.raises(ValueError, match="keep_columns may not hold 'embedding'"):
        embed_dataset(src, tmp_path / "o", tiny_bert_bundle, keep_columns=["embedding"])
    folder = tmp_path / "folder"  # a compressed Parquet file in a folder is refused, not left out
    _write(folder / "a.jsonl", "jsonl", [{"doc_id": 1, "text": "a"}, {"text": "b"}])
    (folder / "b.parquet.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"b.parquet.gz' is a compressed Parquet file"):
        embed_dataset(folder, tmp_path / "o", tiny_bert_bundle)
    (folder / "b.parquet.gz").unlink()
    (folder / "meta.json").write_text("{}")  # metadata beside the data is left out, as before
    for option in ({"id_column": "doc_idd"}, {"keep_columns": ["titel"]}):  # in no row at all: misspelled
        with pytest.raises(InputError, match=r"no row of the input has the key '(doc_idd|titel)'.*\['doc_id', 'text'\]"):
            embed_dataset(folder, tmp_path / "o", tiny_bert_bundle, **option)
    s = embed_dataset(folder, tmp_path / "j", tiny_bert_bundle, id_column="doc_id", progress=False)
    assert s.rows == 2 and pq.read_table(tmp_path / "j").column("id").to_pylist() == [1, None]  # missing in one row
    # model options fail before the input is read, on either backend
    for backend in ("local", "ray"):
        with pytest.raises(ValueError, match="streams=2 runs batches concurrently on the CPU"):
            embed_dataset(tmp_path / "nope.jsonl", tmp_path / "o", tiny_bert_bundle, device="cuda", streams=2,
                          backend=backend)  # fmt: skip
        with pytest.raises(ValueError, match="precision_hint 'bf16' is an OpenVINO option"):
            embed_dataset(tmp_path / "nope.jsonl", tmp_path / "o", tiny_bert_bundle, precision_hint="bf16",
                          backend=backend)  # fmt: skip
        with pytest.raises(ValueError, match="device 'tpu'"):
            embed_dataset(tmp_path / "nope.jsonl", tmp_path / "o", tiny_bert_bundle, device="tpu", backend=backend)
    assert not (tmp_path / "o").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "embedrt.cli", "embed-dataset", *args]


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows = [{"id": f"doc-{i}", "text": TEXTS[i % len(TEXTS)] + f" #{i}"} for i in range(12_000)]
    src = _write(tmp_path / "in.jsonl", "jsonl", rows)
    args = [str(src), "", "-m", str(tiny_bert_bundle), "--id-column", "id", "--rows-per-part", "400", "--no-progress",
            "--threads", "1"]
    env = dict(os.environ)
    ref, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(_cli(*[str(ref) if a == "" else a for a in args]), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(*[str(out) if a == "" else a for a in args]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    journal = out / "_parts.jsonl"
    while time.monotonic() < deadline and (not journal.is_file() or journal.read_text().count("\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    journaled = [json.loads(x)["file"] for x in (out / "_parts.jsonl").read_text().splitlines() if x.endswith("}")]
    assert 3 <= len(journaled) < 30, "the kill should land mid-run"
    mtimes = {name: (out / name).stat().st_mtime_ns for name in journaled}
    resumed = subprocess.run(_cli(*[str(out) if a == "" else a for a in args]), env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
    assert f"{len(journaled)} finished by an earlier run" in resumed.stderr
    assert {name: (out / name).stat().st_mtime_ns for name in journaled} == mtimes  # none recomputed
    a, b = _read(ref), _read(out)
    assert b.column("id").to_pylist() == a.column("id").to_pylist() and b.num_rows == 12_000
    assert len(set(b.column("id").to_pylist())) == 12_000
    np.testing.assert_array_equal(_vectors(a), _vectors(b))
    assert not list(out.glob(".*tmp*"))


def test_cli_summary_and_progress(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _write(tmp_path / "in.csv", "csv", [{"key": f"k{i}", "text": t} for i, t in enumerate(TEXTS[:50])])
    r = subprocess.run(_cli(str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--id-column", "key"),
                       capture_output=True, text=True, check=True)  # fmt: skip
    assert "50 rows written" in r.stdout and "texts/s" in r.stdout and "tokens/s" in r.stdout
    # stderr is no terminal here: no bar, whose carriage returns would make one growing line, but
    # plain lines (every 60 s by default) and one at the end
    assert "\r" not in r.stderr and "planning" not in r.stderr
    assert re.search(r"^\[embedrt\] embed-dataset: 50/50 rows \(100\.0%\), [\d,]+ rows/s, elapsed 0m\d\ds, "
                     r"[\d,]+ tokens/s$", r.stderr, re.M)  # fmt: skip
    r = subprocess.run(_cli(str(src), str(tmp_path / "o3"), "-m", str(tiny_bert_bundle), "--progress-every", "0"),
                       capture_output=True, text=True, check=True)  # fmt: skip
    assert "[embedrt] planning: " in r.stderr and r.stderr.count("[embedrt] embed-dataset: ") >= 2
    r = subprocess.run(_cli(str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle)), capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 2 and "option 'id_column'" in r.stderr
    r = subprocess.run(_cli(str(src), str(tmp_path / "o2"), "-m", str(tiny_bert_bundle), "--device", "cuda",
                            "--streams", "2"), capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "streams=2" in r.stderr and "device 'cuda'" in r.stderr


def test_resume_after_a_torn_journal_line_and_a_stale_temporary(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "out"
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    ref = _vectors(_read(out))
    lines = (out / "_parts.jsonl").read_text().splitlines()
    (out / "_parts.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:17])  # killed mid-append
    (out / ".part-000004.parquet.tmp-123").write_bytes(b"PAR1 half")  # killed mid-write
    (out / "part-000005.parquet").unlink()
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    assert s.parts_resumed == 3 and s.rows_embedded == len(TEXTS) - 3 * 40
    np.testing.assert_array_equal(_vectors(_read(out)), ref)
    assert not list(out.glob(".*")) and len((out / "_parts.jsonl").read_text().splitlines()) == s.parts


def test_a_part_written_but_not_journaled_is_not_left_behind_by_a_shorter_input(tmp_path: Path,
                                                                            tiny_bert_bundle: Path) -> None:  # fmt: skip
    """Killed between writing a part and journaling it, then the input loses rows: that part is not in
    the new plan, and its file must not stay in OUTPUT for readers to find."""
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS[:120]])
    out = tmp_path / "out"
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    lines = (out / "_parts.jsonl").read_text().splitlines()
    (out / "_parts.jsonl").write_text("\n".join(lines[:2]) + "\n")  # part 2 written, its journal line not
    _write(src, "jsonl", [{"text": t} for t in TEXTS[:70]])
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    assert s.parts_resumed == 1 and s.written == 70
    assert sorted(p.name for p in out.glob("part-*")) == ["part-000000.parquet", "part-000001.parquet"]
    assert _read(out).num_rows == 70


@pytest.mark.parametrize("block", [7, 64, 8 << 20])
def test_the_planning_scan_hashes_each_part_s_bytes(block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part's hash is of its bytes, from its start to the next part's (or the file's end), however
    the file's blocks fall: lines cut by a block, blank lines, a quoted newline, no final newline."""
    from embedrt.dataset import _sources

    monkeypatch.setattr(_sources, "_BLOCK", block)
    jsonl = "".join(f'{{"text": "t{i}"}}\n' + ("\n" if i % 3 == 0 else "") for i in range(23)) + '{"text": "last"}'
    csv_text = "text,k\n" + "".join(f'"line {i}\nmore",{i}\r\n' + ("\r\n" if i % 4 == 0 else "") for i in range(23))
    txt = "".join(f"text {i} " + "x" * (i * 5) + "\n" for i in range(23))
    for name, body, kw in [("a.jsonl", jsonl, {}), ("a.csv", csv_text, {}), ("a.txt", txt, {})]:
        path = tmp_path / name
        path.write_bytes(body.encode())
        plan = _sources.plan_input(str(path), 5, text="text", id_column=None, keep_columns=(), **kw)
        data = path.read_bytes()
        bounds = [p.byte_offset for p in plan.parts] + [len(data)]
        assert [p.sha256 for p in plan.parts] == [
            hashlib.sha256(data[bounds[i]:bounds[i + 1]]).hexdigest() for i in range(len(plan.parts))], name
        assert len(plan.parts) == 5  # 24 / 23 / 23 rows in parts of 5


def test_a_journal_from_before_part_hashes_still_resumes_an_edited_input(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Entries holding ``input_sha256`` (the key journaled before the planning scan hashed each part)
    are still checked, by reading the parts' bytes again."""
    from embedrt.dataset._sources import plan_input

    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS[:100]])
    out = tmp_path / "out"
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=25, progress=False)
    plan = plan_input(str(src), 25, text="text", id_column=None, keep_columns=())
    entries = [json.loads(x) for x in (out / "_parts.jsonl").read_text().splitlines()]
    for e in entries:
        assert e.pop("part_key") == plan.part_key(plan.parts[e["part"]])
        e["input_sha256"] = plan._first_part_key(plan.parts[e["part"]])
    (out / "_parts.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    lines = src.read_text().splitlines()
    lines[60] = json.dumps({"text": "an edit in the third part"})
    src.write_text("\n".join(lines) + "\n")
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=25, progress=False)
    assert s.parts_resumed == 3 and s.rows_embedded == 25
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, rows_per_part=25, progress=False)
    assert _read(out).equals(_read(tmp_path / "clean"))


_CODECS = {".gz": lambda b: gzip.compress(b[: len(b) // 2]) + gzip.compress(b[len(b) // 2:]),  # two members
           ".bz2": bz2.compress, ".xz": lzma.compress}  # fmt: skip


def _compress(data: bytes, codec: str) -> bytes:
    if codec == ".zst":
        zstd = pytest.importorskip("zstandard").ZstdCompressor()
        return zstd.compress(data[:1000]) + zstd.compress(data[1000:])  # two frames
    return _CODECS[codec](data)


@pytest.mark.parametrize(("codec", "fmt"), [(".gz", "jsonl"), (".bz2", "jsonl"), (".xz", "jsonl"), (".zst", "jsonl"),
                                            (".gz", "csv"), (".zst", "txt")])  # fmt: skip
def test_compressed_text_inputs_equal_the_plain_files(codec: str, fmt: str, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    plain = _write(tmp_path / f"in.{fmt}", fmt, rows)
    packed = tmp_path / "packed" / f"in.{fmt}{codec}"
    packed.parent.mkdir()
    packed.write_bytes(_compress(plain.read_bytes(), codec))
    kw: dict[str, Any] = {"rows_per_part": 40, "progress": False, **({} if fmt == "txt" else {"id_column": "id"})}
    embed_dataset(plain, tmp_path / "a", tiny_bert_bundle, **kw)
    s = embed_dataset(packed.parent, tmp_path / "b", tiny_bert_bundle, **kw)  # found in a folder too
    assert s.rows == len(TEXTS) and s.parts == 6
    assert _read(tmp_path / "b").equals(_read(tmp_path / "a"))
    lines = (tmp_path / "b" / "_parts.jsonl").read_text().splitlines()  # killed after two parts: resume
    (tmp_path / "b" / "_parts.jsonl").write_text("\n".join(lines[:2]) + "\n")
    s = embed_dataset(packed.parent, tmp_path / "b", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 2 and _read(tmp_path / "b").equals(_read(tmp_path / "a"))


@pytest.mark.parametrize("codec", [".gz", ".bz2", ".xz", ".zst"])
def test_a_compressed_input_seeks_both_ways(codec: str, tmp_path: Path) -> None:
    """Parts are read from where their rows begin, in any order (Ray actors): offsets are the
    decompressed bytes', a seek back starts the stream again."""
    from embedrt.dataset._storage import open_input

    data = b"".join(f"line {i} ".encode() * (i % 7 + 1) + b"\n" for i in range(3000))
    path = tmp_path / f"x.txt{codec}"
    path.write_bytes(_compress(data, codec))
    with open_input(str(path)) as f:
        for offset in (len(data) - 100, 5, 40_000, 39_999, 0, len(data)):
            f.seek(offset)
            assert f.tell() == offset and f.read(300) == data[offset:offset + 300]
        f.seek(1234)
        assert f.readline() == data[1234:data.index(b"\n", 1234) + 1]


@pytest.mark.parametrize("codec", [".gz", ".bz2", ".zst"])
def test_a_file_compressed_a_member_at_a_time_is_read_from_the_member_before_a_part(
    codec: str, tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wikipedia's multistream dumps (a bz2 stream every 100 pages), Common Crawl's WARC files (a gzip
    member a record): the planning scan keeps where members begin, and a part's reader (a Ray actor's,
    a resumed job's first) starts decompressing at the member before its first row."""
    from scan_records import recorded

    import embedrt.dataset._scan_record as _scan_record
    from embedrt.dataset import _storage as storage
    from embedrt.dataset._sources import plan_input

    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)  # files written just now are recorded
    monkeypatch.setattr(storage, "SEEK_EVERY", 1)  # every member's start kept, not one a MB
    lines = [json.dumps({"id": f"r{i}", "text": t}).encode() + b"\n" for i, t in enumerate(TEXTS * 3)]
    one = {".gz": gzip.compress, ".bz2": bz2.compress}.get(codec) or pytest.importorskip("zstandard").compress
    members = [one(b"".join(lines[i : i + 7])) for i in range(0, len(lines), 7)]
    src, plain = tmp_path / "in" / f"rows.jsonl{codec}", tmp_path / "plain" / "rows.jsonl"
    src.parent.mkdir()
    plain.parent.mkdir()
    src.write_bytes(b"".join(members))
    plain.write_bytes(b"".join(lines))
    kw: dict[str, Any] = {"id_column": "id", "rows_per_part": 10, "progress": False}
    given: list[tuple[tuple[int, int], ...]] = []  # the seek points the readers give
    reading = storage.reading
    monkeypatch.setattr(storage, "reading", lambda where, seeks=(): given.append(tuple(seeks)) or reading(where, seeks))
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    monkeypatch.setattr(storage, "reading", reading)
    embed_dataset(plain, tmp_path / "plain-out", tiny_bert_bundle, **kw)
    assert s.rows == len(lines) and _read(tmp_path / "out").equals(_read(tmp_path / "plain-out"))

    plan = plan_input(str(src), 10, text="text", id_column="id", keep_columns=())
    seeks, parts = plan.shards[0].seeks, plan.parts
    sizes = np.cumsum([0] + [len(b"".join(lines[i : i + 7])) for i in range(0, len(lines), 7)])
    packed = np.cumsum([0] + [len(m) for m in members])
    assert seeks == tuple((int(sizes[(p.start // 7)]), int(packed[p.start // 7])) for p in parts[1:])
    assert given and set(given) == {seeks}
    assert recorded(tmp_path / "out" / "_input_scan.arrow")["files"][str(src)]["seeks"] == [list(x) for x in seeks]
    damaged = tmp_path / f"damaged.jsonl{codec}"  # its first member unreadable: only a reader that starts
    damaged.write_bytes(b"\xff" * len(members[0]) + b"".join(members[1:]))  # at a later member reads on
    try:
        for part in parts[1:]:
            with storage.reading(str(damaged), seeks) as f:
                f.seek(part.byte_offset)
                assert f.readline() == lines[part.start]
        storage.release()
        with pytest.raises(StorageError, match="its compressed data is truncated or corrupt"), storage.reading(
            str(damaged)
        ) as f:
            f.seek(parts[-1].byte_offset)
    finally:
        storage.release()


def test_what_follows_the_last_member_is_read_as_pythons_readers_read_it(tmp_path: Path) -> None:
    """Zero bytes after a gzip member are padding, bytes after a bz2 stream that begin none are passed
    over (as ``gzip`` and ``bz2`` do); other bytes after a gzip member are an error, after the
    members before them."""
    from embedrt.dataset._storage import open_input

    data = b"a line\n" * 1000
    for name, blob in (("padded.gz", gzip.compress(data) + b"\0" * 100), ("trailing.bz2", bz2.compress(data) + b"junk")):
        (tmp_path / name).write_bytes(blob)
        with open_input(str(tmp_path / name)) as f:
            assert f.read() == data
    (tmp_path / "junk.gz").write_bytes(gzip.compress(data) + b"junk")
    with pytest.raises(StorageError, match="truncated or corrupt after 7,000 decompressed bytes"), open_input(
        str(tmp_path / "junk.gz")
    ) as f:
        f.read()


@pytest.mark.parametrize("codec", [".gz", ".bz2", ".xz", ".zst"])
def test_a_truncated_or_corrupt_compressed_input_is_named(codec: str, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Not a shorter corpus: zstandard's own reader ended a truncated frame without a word."""
    data = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 40).encode()
    packed = _compress(data, codec)
    for name, blob in (("cut", packed[: len(packed) * 3 // 4]), ("bad", packed[:60] + b"\xff" * 200 + packed[260:])):
        path = tmp_path / f"{name}.jsonl{codec}"
        path.write_bytes(blob)
        with pytest.raises(StorageError, match=rf"{name}.jsonl\{codec}: its compressed data is truncated or corrupt "
                                               r"after [\d,]+ decompressed bytes \(.+\); fetch or compress the file again"):  # fmt: skip
            embed_dataset(path, tmp_path / f"out-{name}", tiny_bert_bundle, progress=False)


def test_output_inside_the_input_folder_and_mismatched_parquet_types(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    _write(tmp_path / "data" / "a.parquet", "parquet", [{"k": i, "text": t} for i, t in enumerate(TEXTS[:30])])
    out = tmp_path / "data" / "vectors"
    embed_dataset(tmp_path / "data", out, tiny_bert_bundle, id_column="k", progress=False)
    again = embed_dataset(tmp_path / "data", out, tiny_bert_bundle, id_column="k", progress=False)  # its own parts
    assert again.parts_resumed == 1 and again.rows == 30  # are not read as input
    _write(tmp_path / "data" / "b.parquet", "parquet", [{"k": f"x{i}", "text": t} for i, t in enumerate(TEXTS[:5])])
    with pytest.raises(InputError, match="b.parquet: its columns"):
        embed_dataset(str(tmp_path / "data" / "*.parquet"), tmp_path / "o2", tiny_bert_bundle, id_column="k",
                      progress=False)  # fmt: skip


def test_progress_lines_come_every_so_often_and_at_the_end() -> None:
    from embedrt._progress import LineProgress

    lines: list[str] = []
    quiet = LineProgress("embed-dataset", "row", total=1_000, initial=200, every=3600, write=lines.append)
    for _ in range(8):
        quiet.update(100)
    assert lines == []  # none within the hour
    quiet.set_postfix(tokens_per_s="1234")
    quiet.close()
    quiet.close()
    (line,) = lines
    assert line.startswith("[embedrt] embed-dataset: 1,000/1,000 rows (100.0%), ") and line.endswith(", 1234 tokens/s")
    assert "ETA" not in line
    lines.clear()
    chatty = LineProgress("planning", "row", every=0, write=lines.append)
    chatty.update(5)
    chatty.update(7)
    assert [s.split(",")[0] for s in lines] == ["[embedrt] planning: 5 rows", "[embedrt] planning: 12 rows"]
    lines.clear()
    half = LineProgress("embed-dataset", "row", total=100, every=0, write=lines.append)
    half.update(50)
    assert "50/100 rows (50.0%)" in lines[0] and "ETA " in lines[0]


def test_a_bad_progress_interval_is_named(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS[:5]])
    with pytest.raises(ValueError, match="progress_every must be a number of seconds >= 0, got -1"):
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, progress_every=-1)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow"])
def test_keep_every_column(fmt: str, tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows: list[dict[str, object]] = [{"doc": f"d{i}", "text": t, "n": i, "title": f"T{i}"} for i, t in enumerate(TEXTS[:30])]
    src = _write(tmp_path / f"in.{fmt}", fmt, rows)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="doc", keep_columns=["*"], rows_per_part=12,
                      progress=False)  # fmt: skip
    got = pq.read_table(tmp_path / "out")  # in the input's order
    assert got.column_names == ["id", "text", "n", "title", "embedding"] and s.written == 30
    want = {k: [str(r[k]) if fmt == "csv" else r[k] for r in rows] for k in ("doc", "text", "n", "title")}
    assert got.column("id").to_pylist() == want["doc"] and got.column("n").to_pylist() == want["n"]
    assert got.column("title").to_pylist() == want["title"] and got.column("text").to_pylist() == want["text"]
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["identity"]["keep_columns"] == ["text", "n", "title"]  # the columns it found
    for keep in (["*"], ["text", "n", "title"], "text, n,title"):  # the same job: every part kept
        s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="doc", keep_columns=keep, rows_per_part=12,
                          progress=False)  # fmt: skip
        assert s.parts_resumed == 3 and s.rows_embedded == 0


def test_keep_every_column_of_jsonl_rows_with_other_keys(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows: list[dict[str, object]] = [{"text": "a", "x": 1}, {"y": [1, 2], "text": "b"}, {"text": "c", "x": 2.5, "z": None}]
    src = _write(tmp_path / "in.jsonl", "jsonl", rows)
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, keep_columns="*", progress=False)
    got = pq.read_table(tmp_path / "out")
    assert got.column_names == ["id", "text", "x", "y", "z", "embedding"]  # every key, first met first
    assert got.drop(["embedding"]).to_pylist() == [
        {"id": 0, "text": "a", "x": 1.0, "y": None, "z": None},
        {"id": 1, "text": "b", "x": None, "y": "[1, 2]", "z": None},
        {"id": 2, "text": "c", "x": 2.5, "y": None, "z": None},
    ]


def test_keep_every_column_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows: list[dict[str, object]] = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS[:5])]
    src = _write(tmp_path / "in.parquet", "parquet", rows)
    with pytest.raises(InputError, match=r"keep_columns '\*' \(every column\): the input has a column the output "
                                         r"names too: .*'id'.*pass it as --id-column"):  # fmt: skip
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, keep_columns=["*"], progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"keep_columns \['\*', 'text'\]: '\*' \(every column\) stands alone"):
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, keep_columns=["*", "text"], progress=False)
    folder = tmp_path / "folder"  # a later file without a column of the first
    _write(folder / "a.parquet", "parquet", [{"doc": 1, "text": "a", "title": "t"}])
    _write(folder / "b.parquet", "parquet", [{"doc": 2, "text": "b"}])
    with pytest.raises(InputError, match=r"b.parquet has no column 'title'.*every file needs the first's columns"):
        embed_dataset(folder, tmp_path / "out", tiny_bert_bundle, id_column="doc", keep_columns=["*"], progress=False)
    r = subprocess.run([sys.executable, "-m", "embedrt.cli", "embed-dataset", str(folder / "a.parquet"),
                        str(tmp_path / "cli"), "-m", str(tiny_bert_bundle), "--keep-columns", "*", "--id-column", "doc",
                        "--no-progress"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and "keeping every column of the input: text, title" in r.stderr, r.stderr
    assert _read(tmp_path / "cli").column_names == ["id", "text", "title", "embedding"]


def test_a_full_disk_is_named_and_the_same_command_continues(tmp_path: Path, tiny_bert_bundle: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset._storage import LocalFolder

    src, out = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS]), tmp_path / "out"
    write = LocalFolder.write

    def full_at_part_1(self: LocalFolder, name: str, fill: Any) -> int:
        def half(f: Any) -> None:  # the disk fills up while the part is written
            fill(f)
            raise OSError(errno.ENOSPC, "No space left on device")

        return write(self, name, half if name == "part-000001.parquet" else fill)

    monkeypatch.setattr(LocalFolder, "write", full_at_part_1)
    with pytest.raises(OutputError, match=r"could not write part-000001.parquet in '.*out': No space left on device; "
                                          r"the parts finished so far are kept: make room"):  # fmt: skip
        embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["_input_scan.arrow", "_manifest.json", "_parts.jsonl", "part-000000.parquet"]
    monkeypatch.setattr(LocalFolder, "write", lambda self, name, fill: (_ for _ in ()).throw(
        OSError(errno.EIO, "Input/output error")))  # fmt: skip
    with pytest.raises(OSError, match="Input/output error"):  # other errors as they are
        embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, progress=False)
    monkeypatch.undo()
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, progress=False)
    assert s.parts_resumed == 1 and s.written == len(TEXTS)


def test_an_input_changed_while_the_job_runs_stops_it(tmp_path: Path, tiny_bert_bundle: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset import _sources
    from embedrt.dataset._output import OutputFolder

    rows = [{"text": t} for t in TEXTS]
    src, out = _write(tmp_path / "in.jsonl", "jsonl", rows), tmp_path / "out"
    edited = rows[:16] + [{"text": "edited " + str(r["text"])} for r in rows[16:]]  # parts 2 on, of 8 rows
    record = OutputFolder.record

    def edit_after_the_first_part(self: OutputFolder, entry: dict[str, Any]) -> dict[str, Any]:
        done = record(self, entry)
        if entry["part"] == 0:
            _write(src, "jsonl", edited)  # other offsets for every later row: the plan's no longer hold
        return done

    monkeypatch.setattr(OutputFolder, "record", edit_after_the_first_part)
    with pytest.raises(InputError, match=r"in.jsonl changed while the job ran .* so part \d+ would not hold the rows "
                                         r"planned; run the same command again"):  # fmt: skip
        embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, progress=False)
    monkeypatch.undo()
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, progress=False)  # planned anew
    assert s.parts_resumed >= 1 and s.written == len(TEXTS)
    embed_dataset(src, tmp_path / "fresh", tiny_bert_bundle, rows_per_part=8, progress=False)
    assert _read(out).equals(_read(tmp_path / "fresh"))

    scan = _sources._scan_lines

    def written_to_while_scanned(path: str, *args: Any, **kwargs: Any) -> Any:
        found = scan(path, *args, **kwargs)
        with open(path, "a") as f:  # a writer appends while the scan reads
            f.write(json.dumps({"text": "late"}) + "\n")
        return found

    monkeypatch.setattr(_sources, "_scan_lines", written_to_while_scanned)
    with pytest.raises(InputError, match="in.jsonl changed while it was being scanned"):
        embed_dataset(src, tmp_path / "o2", tiny_bert_bundle, progress=False)


def test_an_input_changed_while_a_part_is_read_is_named_not_its_bad_rows(tmp_path: Path, tiny_bert_bundle: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A change after a part's first check, while its rows are read: the bytes at the planned offsets
    are not the rows' (here undecodable), and the job names the change, not a bad row to fix."""
    from embedrt.dataset import _readers

    src = _write(tmp_path / "in.jsonl", "jsonl", [{"text": t} for t in TEXTS])
    read_file = _readers._read_file

    def changed_as_read(plan: Any, shard: Any, part: Any, *args: Any) -> Any:  # run at the first slice's read
        if part.index == 2:
            size, stat = src.stat().st_size, src.stat()
            src.write_bytes(b"\xff" * (size - 1) + b"\n")  # the same size, another modification time
            os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        yield from read_file(plan, shard, part, *args)

    monkeypatch.setattr(_readers, "_read_file", changed_as_read)
    with pytest.raises(InputError, match=r"in.jsonl changed while the job ran .* so part 2 would not hold the rows"):
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=8, progress=False)


def test_an_input_file_removed_while_the_job_runs_is_named(tmp_path: Path, tiny_bert_bundle: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from embedrt.dataset._output import OutputFolder

    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b"):
        _write(src / f"{name}.jsonl", "jsonl", [{"text": f"{name} {t}"} for t in TEXTS[:40]])
    record = OutputFolder.record

    def remove_after_the_first_part(self: OutputFolder, entry: dict[str, Any]) -> dict[str, Any]:
        done = record(self, entry)
        (src / "b.jsonl").unlink(missing_ok=True)
        return done

    monkeypatch.setattr(OutputFolder, "record", remove_after_the_first_part)
    with pytest.raises(InputError, match=r"b.jsonl was removed while the job ran, so part \d+ cannot be read; the "
                                         r"finished parts are kept: run the same command again"):  # fmt: skip
        embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, streams=1, progress=False)
    monkeypatch.undo()
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=8, progress=False)  # a.jsonl's parts kept
    assert s.parts_resumed >= 1 and s.rows == 40


@pytest.mark.parametrize(("fmt", "encoding", "name"), [("txt", "utf-16", "UTF-16"), ("csv", "utf-16-be", "UTF-16"),
                                                       ("jsonl", "utf-32", "UTF-32")])  # fmt: skip
def test_a_utf16_or_utf32_text_input_is_refused_with_what_to_do(fmt: str, encoding: str, name: str, tmp_path: Path,
                                                               tiny_bert_bundle: Path) -> None:  # fmt: skip
    text = {"txt": "hello\nworld\n", "csv": "text\nhello\n", "jsonl": '{"text": "hello"}\n'}[fmt]
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(("\ufeff" if encoding == "utf-16-be" else "").encode(encoding) + text.encode(encoding))
    with pytest.raises(InputError, match=rf"in.{fmt} is {name} text \(it begins with a {name} byte order mark\); "
                                         rf"text inputs are read as UTF-8: convert it first \(iconv -f {name} -t UTF-8\)"):  # fmt: skip
        embed_dataset(path, tmp_path / "out", tiny_bert_bundle, progress=False)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # UTF-8's own mark is read past
    assert embed_dataset(path, tmp_path / "ok", tiny_bert_bundle, progress=False).written == text.count("\n") - (fmt == "csv")


def test_a_csv_of_another_delimiter(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """';' as spreadsheets save CSV where the comma is the decimal mark: read with csv_delimiter, and
    named in the error where the header reads as one column."""
    rows = [{"id": f"r{i}", "text": t.replace("\n", " "), "n": f"{i},5"} for i, t in enumerate(TEXTS[:40])]
    rows[3]["text"] = 'quoted; with "the delimiter"; inside'
    semi = tmp_path / "semi.csv"
    with semi.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "n"], delimiter=";")
        w.writeheader()
        w.writerows(rows)
    kw: dict[str, Any] = {"id_column": "id", "keep_columns": ["n"], "rows_per_part": 16, "progress": False}
    with pytest.raises(InputError, match=r"its header looks separated by ';': pass --csv-delimiter ';'"):
        embed_dataset(semi, tmp_path / "o", tiny_bert_bundle, **kw)
    embed_dataset(semi, tmp_path / "out", tiny_bert_bundle, csv_delimiter=";", **kw)
    plain = _write(tmp_path / "plain.csv", "csv", rows)
    embed_dataset(plain, tmp_path / "want", tiny_bert_bundle, **kw)
    assert _read(tmp_path / "out").equals(_read(tmp_path / "want"))
    s = embed_dataset(plain, tmp_path / "want", tiny_bert_bundle, csv_delimiter=",", **kw)  # the format's own: the same job
    assert s.parts_resumed == 3
    one = _write(tmp_path / "one.csv", "csv", [{"text": f"text {i}"} for i in range(5)])  # read alike either way
    embed_dataset(one, tmp_path / "one", tiny_bert_bundle, progress=False)
    with pytest.raises(OutputError, match="option 'csv_delimiter'"):  # but another delimiter is another job
        embed_dataset(one, tmp_path / "one", tiny_bert_bundle, csv_delimiter="|", progress=False)
    for bad in ("ab", '"', "\n", 1):
        with pytest.raises(ValueError, match="csv_delimiter must be one character"):
            embed_dataset(semi, tmp_path / "o", tiny_bert_bundle, csv_delimiter=bad, **kw)  # type: ignore[arg-type]
    tabbed = tmp_path / "tabbed.csv"  # a .csv of tabs, named on the command line as a shell passes it
    with tabbed.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "n"], delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    from embedrt.cli import main

    for name in ("tab", "\\t"):
        assert main(["embed-dataset", str(tabbed), str(tmp_path / f"cli-{len(name)}"), "-m", str(tiny_bert_bundle),
                     "--id-column", "id", "--keep-columns", "n", "--rows-per-part", "16", "--csv-delimiter", name,
                     "--no-progress"]) == 0  # fmt: skip
        assert _read(tmp_path / f"cli-{len(name)}").equals(_read(tmp_path / "want"))
    assert main(["encode", str(tiny_bert_bundle), str(semi), "-o", str(tmp_path / "e.npy"), "--csv-delimiter", ";"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), _vectors(pq.read_table(tmp_path / "want")), atol=1e-6)
    with pytest.raises(InputError, match=r"csv_delimiter \(--csv-delimiter\) ';' is for .csv and .tsv input"):
        embed_dataset(_write(tmp_path / "x.jsonl", "jsonl", rows), tmp_path / "o", tiny_bert_bundle, csv_delimiter=";")


def test_a_resume_that_would_change_a_column_s_type_is_refused(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """JSONL types come from the values: a file added whose values of a kept column are floats, where
    the finished parts hold integers, would leave parts of two schemas (a dataset no reader takes)."""
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "a.jsonl", "jsonl", [{"text": t, "n": i} for i, t in enumerate(TEXTS[:30])])
    kw: dict[str, Any] = {"keep_columns": ["n"], "rows_per_part": 10, "progress": False}
    embed_dataset(src, out, tiny_bert_bundle, **kw)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["identity"]["schema"]["n"] == "int64"
    _write(src / "b.jsonl", "jsonl", [{"text": t, "n": i + 0.5} for i, t in enumerate(TEXTS[30:40])])
    with pytest.raises(OutputError, match=r"another schema \(n: int64 there, double now: the input's values of the "
                                          r"column changed type"):  # fmt: skip
        embed_dataset(src, out, tiny_bert_bundle, **kw)
    s = embed_dataset(src, out, tiny_bert_bundle, overwrite=True, **kw)
    assert s.parts_resumed == 0 and pq.read_table(out).schema.field("n").type == pa.float64()
    # an OUTPUT whose identity has no schema (an older embedrt's) resumes as before
    manifest = json.loads((out / "_manifest.json").read_text())
    del manifest["identity"]["schema"]
    (out / "_manifest.json").write_text(json.dumps(manifest))
    assert embed_dataset(src, out, tiny_bert_bundle, **kw).parts_resumed == 4
