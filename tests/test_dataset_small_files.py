"""A folder of many small files: runs of them make parts of several whole files (not an output file
each), whose rows, ids and vectors are those of the same rows in one file; an edit changes the
part of the file edited only; bad rows name their own file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import InputError, _job, embed_dataset  # noqa: E402
from embedrt.dataset._sources import plan_input  # noqa: E402

SCHEMA = pa.schema([("doc", pa.string()), ("n", pa.int64()), ("text", pa.string())])
WORDS = ["river", "stone", "quiet", "engine", "paper", "한국어", "light", "music"]


def _rows(name: str, n: int) -> list[dict[str, Any]]:
    return [{"doc": f"{name}-{i}", "n": i, "text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(i % 5 + 1))
             + f" {name} {i}"} for i in range(n)]  # fmt: skip


def _write(path: Path, fmt: str, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        body = "".join(f"{r['doc']}{sep}{r['n']}{sep}{r['text']}\r\n" for r in rows)
        path.write_text(f"\ufeffdoc{sep}n{sep}text\r\n" + body, encoding="utf-8")  # a BOM, a header, CRLF
    elif fmt == "txt":
        path.write_text("".join(r["text"] + "\n" for r in rows), encoding="utf-8")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows, SCHEMA), path, row_group_size=7)
    else:
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, SCHEMA) as w:
            w.write_table(pa.Table.from_pylist(rows, SCHEMA), max_chunksize=7)


def _folder(src: Path, fmt: str, sizes: list[int]) -> list[dict[str, Any]]:
    """Files ``f000.FMT`` ... of ``sizes`` rows; all their rows, in order."""
    every: list[dict[str, Any]] = []
    for k, n in enumerate(sizes):
        rows = _rows(f"f{k}", n)
        _write(src / f"f{k:03d}.{fmt}", fmt, rows)
        every += rows
    return every


SIZES = [3, 0, 5, 1, 8, 2, 0, 4, 6, 3, 7, 2, 9, 1, 4, 40, 5, 3, 2, 6]  # one file of rows_per_part and more


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "txt", "parquet", "arrow"])
def test_small_files_share_parts_and_give_the_rows_of_one_file(fmt: str, tmp_path: Path,
                                                               tiny_bert_bundle: Path) -> None:  # fmt: skip
    every = _folder(tmp_path / "in", fmt, SIZES)
    _write(tmp_path / "one" / f"all.{fmt}", fmt, every)
    kw: dict[str, Any] = {"rows_per_part": 20, "progress": False}
    if fmt != "txt":
        kw.update(id_column="doc", keep_columns=("n",))
    logged: list[str] = []
    s = embed_dataset(tmp_path / "in", tmp_path / "out", tiny_bert_bundle, log=logged.append, **kw)
    one = embed_dataset(tmp_path / "one", tmp_path / "out1", tiny_bert_bundle, **kw)
    assert s.rows == one.rows == sum(SIZES)
    got, want = pq.read_table(tmp_path / "out"), pq.read_table(tmp_path / "out1")
    assert got.schema.remove_metadata() == want.schema.remove_metadata()
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    if fmt != "txt":
        assert got.column("n").to_pylist() == want.column("n").to_pylist()
    vectors = [np.array(t.column("embedding").to_pylist()) for t in (got, want)]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["identity"]["small_files"] == "grouped"
    plan = plan_input(tmp_path / "in", 20, text="text", id_column=None, keep_columns=())
    assert s.parts == len(plan.parts) < len([n for n in SIZES if n])  # fewer output files than files with rows
    assert all(p.rows <= 20 for p in plan.parts)
    big = next(p for p in plan.parts if plan.shards[p.shard].rows == 40)
    assert big.files == 1 and big.rows == 20  # a file of rows_per_part rows or more: parts of its own
    assert any(p.files > 2 for p in plan.parts)
    assert any("small files in" in m for m in logged), logged


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_bad_row_in_a_part_of_small_files_names_its_own_file_and_line(fmt: str, tmp_path: Path,
                                                                         tiny_bert_bundle: Path) -> None:  # fmt: skip
    src = tmp_path / "in"
    _folder(src, fmt, [3, 4, 5])
    rows = _rows("f1", 4)
    rows[2]["text"] = None if fmt != "csv" else rows[2]["text"]
    _write(src / f"f001.{fmt}", fmt, rows)
    if fmt == "csv":  # a record of too many fields, on line 4 (the header is line 1)
        lines = (src / "f001.csv").read_bytes().decode("utf-8").split("\r\n")
        lines[3] += ",extra"
        (src / "f001.csv").write_bytes("\r\n".join(lines).encode("utf-8"))
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=100, on_error="skip", progress=False)
    assert s.parts == 1 and s.bad_rows == 1
    bad = [json.loads(line) for line in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    where = ("row", 2) if fmt == "parquet" else ("line", 4 if fmt == "csv" else 3)
    assert bad[0]["file"].endswith(f"f001.{fmt}") and bad[0][where[0]] == where[1], bad
    assert bad[0]["id"] == 5  # the input's row number: 3 rows of f000 before it
    with pytest.raises(Exception, match=rf"f001.{fmt} {where[0]} {where[1]} \(id 5\)"):
        embed_dataset(src, tmp_path / "out2", tiny_bert_bundle, rows_per_part=100, progress=False)


def test_an_edit_among_small_files_changes_its_own_part_only(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = tmp_path / "in"
    sizes = [(k * 7) % 5 + 1 for k in range(300)]
    _folder(src, "jsonl", sizes)
    kw: dict[str, Any] = {"rows_per_part": 40, "progress": False}
    first = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert 10 < first.parts < 60
    _write(src / "f150b.jsonl", "jsonl", _rows("new", 3))  # added among the others
    _write(src / "f040.jsonl", "jsonl", _rows("edited", 2))
    (src / "f230.jsonl").unlink()
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts - s.parts_resumed <= 6, s  # the parts of the three files, and at most a cut moved after each
    assert s.parts_moved > 0 and s.rows_embedded < first.rows / 4
    clean = embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert s.parts == clean.parts
    assert pq.read_table(tmp_path / "out").equals(pq.read_table(tmp_path / "clean"))
    parts = [json.loads((d / "_manifest.json").read_text())["parts"] for d in (tmp_path / "out", tmp_path / "clean")]
    assert parts[0] == parts[1]


def test_an_output_begun_with_a_part_per_file_goes_on_so(tmp_path: Path, tiny_bert_bundle: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """An OUTPUT made by an embedrt that gave each file its own part keeps that plan (its parts kept,
    new files a part each); ``overwrite`` starts it over with parts of several files."""
    src = tmp_path / "in"
    _folder(src, "jsonl", [3, 4, 5, 2])
    with monkeypatch.context() as m:  # as the older version planned
        m.setattr(_job, "_groups_files", lambda folder, overwrite: False)
        old = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=100, progress=False)
    assert old.parts == 4
    assert "small_files" not in json.loads((tmp_path / "out" / "_manifest.json").read_text())["identity"]
    _write(src / "f009.jsonl", "jsonl", _rows("new", 2))
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=100, progress=False)
    assert (s.parts, s.parts_resumed, s.rows_embedded) == (5, 4, 2)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, rows_per_part=100, progress=False, overwrite=True)
    assert s.parts == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == ["part-000000.parquet"]


def test_parquet_files_of_other_types_are_named(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    (tmp_path / "mixed").mkdir()
    for name, ids in (("a", [1, 2]), ("b", ["x", "y"])):
        pq.write_table(pa.table({"id": ids, "text": ["one", "two"]}), tmp_path / "mixed" / f"{name}.parquet")
    with pytest.raises(InputError, match=r"b.parquet: its columns' types \(id: string\) differ from those of "
                                         r".*a.parquet \(id: int64\), read with it in part 0"):  # fmt: skip
        embed_dataset(tmp_path / "mixed", tmp_path / "o", tiny_bert_bundle, id_column="id", progress=False)
    # files of their own parts: the output's types (the first file's) are named
    with pytest.raises(InputError, match=r"b.parquet: its columns do not match the output's.*"
                                         r"\(id: string there, int64 in the output\)"):  # fmt: skip
        embed_dataset(tmp_path / "mixed", tmp_path / "o2", tiny_bert_bundle, id_column="id", rows_per_part=2,
                      progress=False)  # fmt: skip
    pq.write_table(pa.table({"id": pa.array([3, 4], pa.int32()), "text": ["three", "four"]}), tmp_path / "mixed" / "b.parquet")
    s = embed_dataset(tmp_path / "mixed", tmp_path / "o3", tiny_bert_bundle, id_column="id", progress=False)
    assert s.parts == 1 and pq.read_table(tmp_path / "o3").column("id").to_pylist() == [1, 2, 3, 4]  # int32 widens


def test_a_file_changed_while_its_part_of_small_files_runs_stops_the_part(tmp_path: Path,
                                                                            tiny_bert_bundle: Path) -> None:  # fmt: skip
    from embedrt.dataset._readers import read_slices

    src = tmp_path / "in"
    _folder(src, "jsonl", [3, 4, 5])
    plan = plan_input(src, 100, text="text", id_column=None, keep_columns=())
    assert [p.files for p in plan.parts] == [3]
    _write(src / "f002.jsonl", "jsonl", _rows("other", 6))
    with pytest.raises(InputError, match=r"f002.jsonl changed while the job ran"):
        list(read_slices(plan, plan.parts[0], "text", None, ()))
