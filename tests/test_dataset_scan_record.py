"""The planning scan's findings kept in OUTPUT: a file unchanged since the last run is not read again,
the plan is the one a full scan makes, and a file that changed (in place too) is read again."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from scan_records import as_older, recorded  # noqa: E402

from embedrt.dataset import _scan_record, _sources, embed_dataset  # noqa: E402
from embedrt.dataset._scan_record import ScanRecord  # noqa: E402
from embedrt.dataset._sources import plan_input  # noqa: E402

WORDS = ["river", "stone", "quiet", "engine", "paper", "한국어", "light", "music"]


def _text(i: int, tag: str = "") -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(i % 5 + 1)) + f" {tag}{i}"


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def settled_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago count as settled (a test cannot wait for the file system's clock)."""
    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.0)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the planning scan reads."""
    read: list[str] = []
    scan = _sources._scan_file

    def spy(path: str, *args: Any) -> Any:
        read.append(Path(path).name)
        return scan(path, *args)

    monkeypatch.setattr(_sources, "_scan_file", spy)
    return read


def _inputs(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """One small corpus of two or three files per format, with what plan_input is called with."""
    made: dict[str, tuple[Path, dict[str, Any]]] = {}
    j = root / "jsonl"  # kinds that change across files, a key only the second file has, a blank line
    _jsonl(j / "a.jsonl", [{"text": _text(i), "n": i, "id": f"a{i}"} for i in range(23)])
    _jsonl(j / "b.jsonl", [{"text": _text(i), "n": i + 0.5, "extra": True, "id": f"b{i}"} for i in range(9)])
    with (j / "b.jsonl").open("a") as f:
        f.write("\n")
    with gzip.open(j / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": _text(i), "id": f"c{i}"}) + "\n" for i in range(12)))
    made["jsonl"] = (j, {"text": "text", "id_column": "id", "keep_columns": ("n",)})
    made["jsonl-every"] = (j, {"text": "text", "id_column": "id", "keep_columns": ("*",)})
    c = root / "csv"
    c.mkdir()
    for name, n in (("a", 14), ("b", 7)):
        (c / f"{name}.csv").write_text("id;text\n" + "".join(f'{name}{i};"{_text(i)}; quoted"\n' for i in range(n)))
    made["csv"] = (c, {"text": "text", "id_column": "id", "keep_columns": (), "delimiter": ";"})
    made["csv-content"] = (c, {**made["csv"][1], "content_cuts": True})
    made["jsonl-content"] = (j, {**made["jsonl"][1], "content_cuts": True})
    t = root / "txt"
    t.mkdir()
    (t / "a.txt").write_text("".join(_text(i) + "\n" for i in range(17)) + "\n")
    (t / "b.txt").write_text("".join(_text(i) + "\n" for i in range(4)))
    made["txt"] = (t, {"text": "text", "id_column": None, "keep_columns": ()})
    p = root / "parquet"
    p.mkdir()
    for name, n in (("a", 19), ("b", 6)):
        pq.write_table(pa.table({"text": [_text(i) for i in range(n)], "k": list(range(n))}), p / f"{name}.parquet")
    made["parquet"] = (p, {"text": "text", "id_column": None, "keep_columns": ("k",)})
    a = root / "arrow"
    a.mkdir()
    with pa.OSFile(str(a / "a.arrow"), "wb") as f, pa.ipc.new_stream(f, pa.schema([("text", pa.string())])) as w:
        w.write_table(pa.table({"text": [_text(i) for i in range(11)]}), max_chunksize=4)
    made["arrow"] = (a, {"text": "text", "id_column": None, "keep_columns": ()})
    return made


@pytest.mark.parametrize("case", ["jsonl", "jsonl-every", "csv", "txt", "parquet", "arrow", "csv-content", "jsonl-content"])
def test_a_plan_from_the_record_equals_a_full_scan(case: str, tmp_path: Path, settled_now: None,
                                                  scans: list[str]) -> None:  # fmt: skip
    where, kw = _inputs(tmp_path)[case]
    record = ScanRecord()
    first = plan_input(where, 5, record=record, **kw)
    assert record.changed and len(recorded(record.data())["files"]) == len(first.shards)
    scans.clear()
    again = ScanRecord(record.data())
    second = plan_input(where, 5, record=again, **kw)
    assert scans == [] and not again.changed  # nothing read, nothing new to write
    assert second == first == plan_input(where, 5, **kw)
    if case == "jsonl":
        assert second.json_types == {"id": "string", "n": "float64"}
    if case == "jsonl-every":
        assert second.every_column == ("text", "n", "extra")
    # other settings (the parts' size, how they are cut): the record's findings do not apply
    for other in ({**kw, "rows_per_part": 4}, {**kw, "content_cuts": not kw.get("content_cuts", False)}):
        if other.get("content_cuts") and where.name in ("parquet", "arrow"):
            continue
        other.setdefault("rows_per_part", 5)
        third = ScanRecord(record.data())
        scans.clear()
        assert plan_input(where, record=third, **other) == plan_input(where, **other)
        assert len(scans) == 2 * len(first.shards) and third.changed


def test_a_grown_corpus_reads_only_its_new_file(tmp_path: Path, settled_now: None, scans: list[str],
                                                tiny_bert_bundle: Path) -> None:  # fmt: skip
    src, out = tmp_path / "in", tmp_path / "out"
    _jsonl(src / "b.jsonl", [{"text": _text(i, "b")} for i in range(30)])
    _jsonl(src / "c.jsonl", [{"text": _text(i, "c")} for i in range(25)])
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert scans == ["b.jsonl", "c.jsonl"] and (out / "_input_scan.arrow").is_file()
    scans.clear()
    _jsonl(src / "a.jsonl", [{"text": _text(i, "a")} for i in range(12)])  # sorts first: the others' parts move
    logged: list[str] = []
    s = embed_dataset(src, out, tiny_bert_bundle, log=logged.append, **kw)
    assert scans == ["a.jsonl"] and s.rows_embedded == 12 and s.parts_moved == 6
    assert any("2 of 3 input file(s) unchanged since the scan recorded" in m for m in logged), logged
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "clean"))
    # a dry run reads the record and writes nothing
    scans.clear()
    before = (out / "_input_scan.arrow").read_bytes()
    (src / "c.jsonl").unlink()
    s = embed_dataset(src, out, tiny_bert_bundle, dry_run=True, **kw)
    assert scans == [] and s.rows_to_embed == 0 and (out / "_input_scan.arrow").read_bytes() == before
    # rescan: every file read again
    s = embed_dataset(src, out, tiny_bert_bundle, rescan=True, **kw)
    assert scans == ["a.jsonl", "b.jsonl"] and s.rows_embedded == 0
    assert sorted(recorded(out / "_input_scan.arrow")["files"]) == [
        str((src / n).resolve()) for n in ("a.jsonl", "b.jsonl")
    ]


def test_an_edit_in_place_that_keeps_size_and_time_is_read_again(tmp_path: Path, settled_now: None,
                                                                 scans: list[str], tiny_bert_bundle: Path) -> None:  # fmt: skip
    """The inode change time moves with any write, and no user call sets it back."""
    src, out = tmp_path / "in", tmp_path / "out"
    rows = [{"text": _text(i, "x")} for i in range(30)]
    _jsonl(src / "a.jsonl", rows)
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    embed_dataset(src, out, tiny_bert_bundle, **kw)
    st = os.stat(src / "a.jsonl")
    rows[14] = {"text": rows[14]["text"][::-1]}  # the same length: the same size
    _jsonl(src / "a.jsonl", rows)
    os.utime(src / "a.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(src / "a.jsonl").st_size, os.stat(src / "a.jsonl").st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    scans.clear()
    s = embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert scans == ["a.jsonl"] and s.parts_resumed == 2 and s.rows_embedded == 10
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "clean"))


def test_a_file_written_just_before_its_scan_is_not_recorded(tmp_path: Path, scans: list[str],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tiny_bert_bundle: Path) -> None:  # fmt: skip
    """Within the file system's time stamp resolution a second write could keep every stamp: a file
    changed shortly before its scan is read again next time."""
    src, out = tmp_path / "in", tmp_path / "out"
    _jsonl(src / "old.jsonl", [{"text": _text(i)} for i in range(8)])
    _jsonl(src / "new.jsonl", [{"text": _text(i, "n")} for i in range(8)])
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    embed_dataset(src, out, tiny_bert_bundle, **kw)  # scanned at once: neither is settled
    assert recorded(out / "_input_scan.arrow")["files"] == {}
    scans.clear()
    embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert scans == ["new.jsonl", "old.jsonl"]
    time.sleep(1.0)
    _jsonl(src / "new.jsonl", [{"text": _text(i, "m")} for i in range(8)])
    monkeypatch.setattr(_scan_record, "SETTLED_S", 0.5)  # old.jsonl settled, new.jsonl not
    record = ScanRecord()
    plan_input(src, 10, text="text", id_column=None, keep_columns=(), record=record)
    assert [Path(p).name for p in recorded(record.data())["files"]] == ["old.jsonl"]


def test_an_unreadable_record_is_named_and_every_file_read(tmp_path: Path, settled_now: None, scans: list[str],
                                                           tiny_bert_bundle: Path) -> None:  # fmt: skip
    src, out = tmp_path / "in", tmp_path / "out"
    _jsonl(src / "a.jsonl", [{"text": _text(i)} for i in range(12)])
    kw: dict[str, Any] = {"rows_per_part": 5, "progress": False}
    embed_dataset(src, out, tiny_bert_bundle, **kw)
    data = (out / "_input_scan.arrow").read_bytes()
    record = recorded(data)
    assert len(record["files"]) == 1
    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    meta = json.loads(table.schema.metadata[b"embedrt"])
    torn = table.set_column(5, "findings", pa.array(['{"starts": "x"}'], pa.string()))
    for bad, named in ((data[:len(data) // 2], True), (_ipc(table, {**meta, "version": 99}), True),
                       (_ipc(table.drop_columns(["key_hash"]), meta), True), (_ipc(torn, meta), False),
                       (b"{torn", True), (as_older(record, version=99), True)):  # fmt: skip
        (out / "_input_scan.arrow").write_bytes(bad)
        scans.clear()
        logged: list[str] = []
        s = embed_dataset(src, out, tiny_bert_bundle, log=logged.append, **kw)
        assert scans == ["a.jsonl"] and s.parts_resumed == 3 and s.rows_embedded == 0
        assert any("_input_scan.arrow in the output folder is unreadable" in m for m in logged) == named, logged
        assert recorded(out / "_input_scan.arrow")["files"] == record["files"]


def test_an_older_versions_record_is_read_and_replaced(tmp_path: Path, settled_now: None, scans: list[str],
                                                       tiny_bert_bundle: Path) -> None:  # fmt: skip
    src, out = tmp_path / "in", tmp_path / "out"
    _jsonl(src / "a.jsonl", [{"text": _text(i)} for i in range(12)])
    kw: dict[str, Any] = {"rows_per_part": 5, "progress": False}
    embed_dataset(src / "a.jsonl", out, tiny_bert_bundle, **kw)
    record = recorded(out / "_input_scan.arrow")
    (out / "_input_scan.arrow").unlink()
    (out / "_input_scan.json").write_bytes(as_older(record))  # as older versions wrote it
    scans.clear()
    s = embed_dataset(src / "a.jsonl", out, tiny_bert_bundle, **kw)
    assert scans == [] and s.parts_resumed == 3 and s.rows_embedded == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("_input")) == ["_input_scan.arrow"]
    assert recorded(out / "_input_scan.arrow")["files"] == record["files"]
    for bad in (b"{torn", as_older(record, version=99)):  # named as the file read
        (out / "_input_scan.arrow").unlink()
        (out / "_input_scan.json").write_bytes(bad)
        logged: list[str] = []
        embed_dataset(src / "a.jsonl", out, tiny_bert_bundle, log=logged.append, **kw)
        assert any("_input_scan.json in the output folder is unreadable" in m for m in logged), logged
        assert not (out / "_input_scan.json").exists()


def _ipc(table: pa.Table, meta: dict[str, Any]) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema.with_metadata({b"embedrt": json.dumps(meta).encode()})) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()
