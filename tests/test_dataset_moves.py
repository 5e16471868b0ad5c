"""A file added or removed among a corpus's files: the finished parts of the files after it are kept
under their new numbers (their ids shifted where ids are row numbers), not computed again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import _storage, embed_dataset  # noqa: E402

WORDS = ["river", "stone", "quiet", "engine", "paper", "한국어", "light", "music"]


def _rows(name: str, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"doc": f"{name}{i}", "text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(i % 6 + 1)) + f" {name} {i}"}
        for i in range(n)
    ]
    rows[3]["text"] = None  # a bad row in every file: its id is in _bad_rows.jsonl
    return rows


def _write(path: Path, fmt: str, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=17)


def _same(out: Path, clean: Path) -> None:
    """The folder equals a run from scratch: rows, ids, vectors, bad rows, manifest's parts."""
    assert pq.read_table(out).equals(pq.read_table(clean))
    assert (out / "_bad_rows.jsonl").read_text() == (clean / "_bad_rows.jsonl").read_text()
    parts = [json.loads((d / "_manifest.json").read_text())["parts"] for d in (out, clean)]
    assert parts[0] == parts[1]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("id_column", [None, "doc"])
def test_a_file_added_or_removed_before_others_keeps_their_parts(fmt: str, id_column: str | None, tmp_path: Path,
                                                                  tiny_bert_bundle: Path) -> None:  # fmt: skip
    src = tmp_path / "in"
    _write(src / f"m.{fmt}", fmt, _rows("m", 50))  # parts 0-2 (20, 20, 10 rows)
    _write(src / f"t.{fmt}", fmt, _rows("t", 45))  # parts 3-5
    kw: dict[str, Any] = {"id_column": id_column, "rows_per_part": 20, "on_error": "null", "progress": False}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    _write(src / f"a.{fmt}", fmt, _rows("a", 30))  # sorts first: two parts before the others
    logged: list[str] = []
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, log=logged.append, **kw)
    assert s.parts_resumed == 6 and s.rows_embedded == 30 and s.rows == 125 and s.bad_rows == 3
    assert any("6 finished part(s) whose rows now lie elsewhere in the input (a file added or removed before theirs)"
               in m for m in logged), logged
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    _same(tmp_path / "out", tmp_path / "clean")
    if id_column is None:  # the row numbers moved with the rows: t's first row is row 80 now
        ids = pq.read_table(tmp_path / "out" / "part-000005.parquet").column("id").to_pylist()
        assert ids[0] == 80
    # the file before the others removed, and one of them: the last file's parts move back
    (src / f"a.{fmt}").unlink()
    (src / f"m.{fmt}").unlink()
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 3 and s.rows_embedded == 0 and s.rows == 45
    embed_dataset(src, tmp_path / "clean2", tiny_bert_bundle, **kw)
    _same(tmp_path / "out", tmp_path / "clean2")


def test_windows_move_with_their_document(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Several rows per input row (windows): every window's id is shifted."""
    src = tmp_path / "in"
    long = [{"doc": f"d{i}", "text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40 + 7 * i))} for i in range(12)]
    _write(src / "m.jsonl", "jsonl", long)
    kw: dict[str, Any] = {"rows_per_part": 5, "chunk_tokens": 24, "progress": False}
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    _write(src / "a.jsonl", "jsonl", long[:4])
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.parts_resumed == 3 and s.rows_embedded == 4
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert pq.read_table(tmp_path / "out").equals(pq.read_table(tmp_path / "clean"))


def _journal_is_true(out: Path, src: Path, plans: list[Any], id_column: str | None) -> None:
    """Every part the journal counts as finished holds the rows its entry says (``rows_key``), under
    its ids (row numbers from its ``first_row``): a kill never leaves an entry naming another part's file."""
    from embedrt.dataset._output import finished_parts

    docs = {}
    for plan in plans:
        for part in plan.parts:
            rows = [json.loads(line) for line in Path(plan.shards[part.shard].path).read_text().splitlines()]
            docs[plan.rows_key(part)] = [r["doc"] for r in rows[part.start:part.stop]]
    for entry in finished_parts(_storage.LocalFolder(str(out))).values():
        table = pq.read_table(out / entry["file"])
        assert table.column("id" if id_column else "doc").to_pylist() == docs[entry["rows_key"]]
        if id_column is None:
            assert table.column("id").to_pylist() == list(range(entry["first_row"], entry["first_row"] + entry["rows"]))


# (id_column, the step that fails, rows computed again by the next run): steps 1-3 put each of the
# three parts under a temporary name (a rewrite with shifted ids, or a rename); then each is moved
# into place (4, 6, 8) and journaled (5, 7, 9)
@pytest.mark.parametrize(("id_column", "fail_at", "again"), [
    (None, 2, 0), ("doc", 2, 20), (None, 4, 60), ("doc", 5, 60), (None, 7, 40), ("doc", 8, 20),
])  # fmt: skip
def test_a_run_killed_while_moving_parts_loses_at_most_them(id_column: str | None, fail_at: int, again: int,
                                                            tmp_path: Path, tiny_bert_bundle: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Whenever the moves stop, the next run finds a folder it reads right: the journal names no
    file holding other rows, the result equals a clean run, and the parts whose move did not finish
    are computed again."""
    from embedrt.dataset._sources import plan_input

    src = tmp_path / "in"
    rows = [{"doc": f"m{i:03d}", "text": f"{WORDS[i % 8]} {i}"} for i in range(40)]  # no bad rows, ids of one width
    _write(src / "m.jsonl", "jsonl", rows)  # parts 0-1
    _write(src / "t.jsonl", "jsonl", [{"doc": f"t{i:03d}", "text": f"{WORDS[i % 5]} t {i}"} for i in range(20)])  # part 2
    kw: dict[str, Any] = {"id_column": id_column, "keep_columns": () if id_column else ("doc",), "rows_per_part": 20,
                          "progress": False}  # fmt: skip
    embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    plans = [plan_input(str(src), 20, text="text", id_column=id_column, keep_columns=())]
    _write(src / "a.jsonl", "jsonl", [{"doc": f"a{i:03d}", "text": f"added {i}"} for i in range(20)])  # parts shift by one
    plans.append(plan_input(str(src), 20, text="text", id_column=id_column, keep_columns=()))
    steps = 0
    real_move, real_write, real_append = _storage.LocalFolder.move, _storage.LocalFolder.write, _storage.LocalFolder.append

    def step() -> None:
        nonlocal steps
        steps += 1
        if steps == fail_at:
            raise KeyboardInterrupt  # as a kill would stop it

    def move(self: Any, name: str, to: str) -> None:
        step()
        real_move(self, name, to)

    def write(self: Any, name: str, fill: Any) -> int:
        if name.endswith(".tmp-moved"):
            step()
        return real_write(self, name, fill)

    def append(self: Any, name: str, line: str, part: int) -> None:
        step()
        real_append(self, name, line, part)

    monkeypatch.setattr(_storage.LocalFolder, "move", move)
    monkeypatch.setattr(_storage.LocalFolder, "write", write)
    monkeypatch.setattr(_storage.LocalFolder, "append", append)
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    monkeypatch.undo()
    _journal_is_true(tmp_path / "out", src, plans, id_column)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, **kw)
    assert s.rows_embedded == 20 + again
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    assert pq.read_table(tmp_path / "out").equals(pq.read_table(tmp_path / "clean"))


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()[:64]) for p in sorted(folder.iterdir())}


def test_a_dry_run_says_what_a_run_would_do_and_changes_nothing(tmp_path: Path, tiny_bert_bundle: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from embedrt.cli import main
    from embedrt.dataset import OutputError, _job

    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "m.jsonl", "jsonl", _rows("m", 50))  # parts 0-2
    _write(src / "t.jsonl", "jsonl", _rows("t", 45))  # parts 3-5
    kw: dict[str, Any] = {"rows_per_part": 20, "on_error": "null", "progress": False}
    real = _job.Embedder

    class Unloadable(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            pytest.fail("a dry run loads no model")

    monkeypatch.setattr(_job, "Embedder", Unloadable)
    s = embed_dataset(src, out, tiny_bert_bundle, dry_run=True, **kw)
    assert (s.dry_run, s.rows, s.parts, s.parts_resumed, s.rows_to_embed, s.rows_embedded) == (True, 95, 6, 0, 95, 0)
    assert not out.exists()  # not even the folder
    monkeypatch.setattr(_job, "Embedder", real)
    embed_dataset(src, out, tiny_bert_bundle, **kw)
    _write(src / "a.jsonl", "jsonl", _rows("a", 30))  # two parts before the six finished ones
    lines = (src / "t.jsonl").read_text().splitlines()
    lines[30] = json.dumps({"doc": "t30", "text": "edited"})  # and the last file's second part edited
    (src / "t.jsonl").write_text("\n".join(lines) + "\n")
    before = _snapshot(out)
    monkeypatch.setattr(_job, "Embedder", Unloadable)
    s = embed_dataset(src, out, tiny_bert_bundle, dry_run=True, **kw)
    assert (s.parts, s.parts_resumed, s.parts_moved, s.parts_changed, s.rows_to_embed) == (8, 5, 5, 1, 30 + 20)
    assert s.written == 75 and s.bad_rows == 2 and "a run would embed 50 rows in 3 parts" in str(s)
    assert main(["embed-dataset", str(src), str(out), "-m", str(tiny_bert_bundle), "--rows-per-part", "20",
                 "--on-error", "null", "--dry-run", "--no-progress"]) == 0  # fmt: skip
    assert "dry run: 125 input rows in 8 parts; 5 parts finished by an earlier run kept" in capsys.readouterr().out
    assert main(["embed-dataset", str(src), str(out), "-m", str(tiny_bert_bundle), "--rows-per-part", "20",
                 "--on-error", "null", "--dry-run", "--json", "--no-progress"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert {k: printed[k] for k in ("dry_run", "parts_moved", "parts_changed", "rows_to_embed")} == {
        "dry_run": True, "parts_moved": 5, "parts_changed": 1, "rows_to_embed": 50}
    with pytest.raises(OutputError, match="option 'rows_per_part'"):  # refused as the run would be
        embed_dataset(src, out, tiny_bert_bundle, dry_run=True, **{**kw, "rows_per_part": 10})
    from embedrt.dataset._output import OutputFolder

    with OutputFolder(out).claimed(lambda _m: None):  # a run holds OUTPUT: a dry run reads it all the same
        assert embed_dataset(src, out, tiny_bert_bundle, dry_run=True, **kw).parts_resumed == 5
    assert _snapshot(out) == before
    monkeypatch.setattr(_job, "Embedder", real)
    done = embed_dataset(src, out, tiny_bert_bundle, **kw)
    assert (done.parts_resumed, done.parts_moved, done.parts_changed, done.rows_to_embed, done.rows_embedded) == (
        5, 5, 1, 50, 50)  # as the dry run said
