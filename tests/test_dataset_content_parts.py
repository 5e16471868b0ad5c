"""Content-defined parts: a text file's parts end after rows chosen by their content, so that rows
deleted or inserted in a file change only the parts around them, and a resume keeps (moves) the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt.dataset import OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._sources import InputError, plan_input  # noqa: E402

WORDS = ["river", "stone", "quiet", "engine", "paper", "한국어", "light", "music", "north", "glass"]


def _row(i: int, tag: str = "") -> dict[str, Any]:
    return {"doc": f"d{tag}{i}", "text": " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(i % 4 + 1)) + f" {tag}{i}"}


def _write(path: Path, fmt: str, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        cell = lambda v: '""' if v is None else '"' + str(v).replace('"', '""') + '"'  # noqa: E731
        path.write_text("doc,text\n" + "".join(f"{cell(r['doc'])},{cell(r['text'])}\n" for r in rows), encoding="utf-8")
    else:
        path.write_text("".join(f"{r['text']}\n" for r in rows), encoding="utf-8")


def _same(out: Path, clean: Path) -> None:
    assert pq.read_table(out).equals(pq.read_table(clean))
    bad = [(d / "_bad_rows.jsonl").read_text() if (d / "_bad_rows.jsonl").exists() else "" for d in (out, clean)]
    assert bad[0] == bad[1]
    parts = [json.loads((d / "_manifest.json").read_text())["parts"] for d in (out, clean)]
    assert parts[0] == parts[1]


def test_part_sizes_follow_the_content_within_bounds(tmp_path: Path) -> None:
    rows = [_row(i) for i in range(20_000)]
    _write(tmp_path / "a.jsonl", "jsonl", rows)
    plan = plan_input(tmp_path / "a.jsonl", 100, text="text", id_column=None, keep_columns=(), content_cuts=True)
    sizes = [p.rows for p in plan.parts]
    assert sum(sizes) == 20_000 and [p.start for p in plan.parts] == [0, *list(_cumsum(sizes))[:-1]]
    assert 0.75 * 100 < 20_000 / len(sizes) < 1.3 * 100, len(sizes)
    assert min(sizes[:-1]) >= 25 and max(sizes) <= 400
    fixed = plan_input(tmp_path / "a.jsonl", 100, text="text", id_column=None, keep_columns=())
    assert {p.rows for p in fixed.parts} == {100}
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(InputError, match="content-defined parts .* text input"):
        plan_input(tmp_path / "b.parquet", 100, text="text", id_column=None, keep_columns=(), content_cuts=True)


def _cumsum(sizes: list[int]) -> list[int]:
    out, total = [], 0
    for s in sizes:
        total += s
        out.append(total)
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
@pytest.mark.parametrize("id_column", [None, "doc"])
def test_rows_deleted_and_inserted_recompute_only_the_parts_around_them(fmt: str, id_column: str | None,
                                                                        tmp_path: Path, tiny_bert_bundle: Path) -> None:  # fmt: skip
    if fmt == "txt" and id_column:
        pytest.skip(".txt has no columns")
    src, out = tmp_path / "in" / f"big.{fmt}", tmp_path / "out"
    rows = [_row(i) for i in range(900)]
    for i in (7, 450, 800):
        rows[i] = {**rows[i], "text": None if fmt == "jsonl" else ""}  # bad rows (jsonl), empty texts elsewhere
    _write(src, fmt, rows)
    kw: dict[str, Any] = {"id_column": id_column, "rows_per_part": 40, "on_error": "null", "progress": False,
                          "content_defined_parts": True}  # fmt: skip
    first = embed_dataset(src.parent, out, tiny_bert_bundle, **kw)
    del rows[20]  # a row deleted near the start: every later row moves up
    rows[500:500] = [_row(i, "new") for i in range(3)]  # rows inserted in the middle
    _write(src, fmt, rows)
    s = embed_dataset(src.parent, out, tiny_bert_bundle, **kw)
    assert s.rows == 902 and s.parts_moved > 0.6 * first.parts
    assert s.rows_embedded < 0.3 * 902, (s.rows_embedded, s.parts_resumed, s.parts)
    embed_dataset(src.parent, tmp_path / "clean", tiny_bert_bundle, **kw)
    _same(out, tmp_path / "clean")


def test_content_defined_parts_are_part_of_the_job(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    _write(src, "jsonl", [_row(i) for i in range(50)])
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=10, progress=False)
    with pytest.raises(OutputError, match="option 'part_cuts' \\(None there, 'content' now\\)"):
        embed_dataset(src, out, tiny_bert_bundle, rows_per_part=10, progress=False, content_defined_parts=True)
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=10, progress=False, content_defined_parts=True,
                      overwrite=True)  # fmt: skip
    assert s.rows_embedded == 50
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=10, progress=False, content_defined_parts=True)
    assert s.rows_embedded == 0


@pytest.mark.parametrize("content", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "txt"])
def test_the_cuts_do_not_depend_on_how_the_file_is_read(fmt: str, content: bool, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The scan reads a file in blocks; a part opened by the row after a block's last one, or forced
    at the most rows, is the same whichever block holds it."""
    from embedrt.dataset import _sources

    rows = [_row(i) for i in range(3000)]
    _write(tmp_path / f"a.{fmt}", fmt, rows)
    with (tmp_path / f"a.{fmt}").open("a") as f:
        f.write(_row(3000)["text"])  # a last line without a newline
    kw: dict[str, Any] = {"text": "text", "id_column": None, "keep_columns": (), "content_cuts": content}
    whole = plan_input(tmp_path / f"a.{fmt}", 12, **kw)
    for block in (97, 1000, 4096):
        monkeypatch.setattr(_sources, "_BLOCK", block)
        assert plan_input(tmp_path / f"a.{fmt}", 12, **kw) == whole
    assert whole.rows == 3001 and len(whole.parts) > 150


def test_cuts_asked_row_by_row_are_the_cuts_asked_by_blocks() -> None:
    """A CSV scan asks record by record (``opens``), a line scan block by block (``opening``)."""
    import numpy as np

    from embedrt.dataset._sources import _Cuts

    rng = np.random.default_rng(0)
    for per in (1, 2, 12, 50):
        hashes = rng.integers(0, 2**32, 5000, dtype=np.uint64)
        hashes[1000:1400] = per  # a run without hits: cuts forced at the most rows
        one, blocks = _Cuts(per, True), _Cuts(per, True)
        by_row = [r for r in range(len(hashes)) if one.opens(r, int(hashes[r]))]
        by_block: list[int] = []
        first = 0
        while first < len(hashes):
            count = int(rng.integers(1, 300))
            by_block += blocks.opening(first, min(count, len(hashes) - first), hashes[first:first + count])
            first += count
        assert by_row == by_block and by_row[0] == 0 and len(by_row) > len(hashes) / (4 * per)


def test_a_renamed_file_keeps_its_parts(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src / "2026-12-04.jsonl", "jsonl", [_row(i) for i in range(120)])
    _write(src / "b.jsonl", "jsonl", [_row(i, "b") for i in range(60)])
    kw: dict[str, Any] = {"rows_per_part": 20, "on_error": "null", "progress": False, "content_defined_parts": True}
    first = embed_dataset(src, out, tiny_bert_bundle, **kw)
    (src / "zarchive").mkdir()
    (src / "2026-12-04.jsonl").rename(src / "zarchive" / "day-2026-12-04.jsonl")  # renamed, and now sorts last
    logged: list[str] = []
    s = embed_dataset(src, out, tiny_bert_bundle, log=logged.append, **kw)
    assert s.rows_embedded == 0 and s.parts_resumed == first.parts and s.parts_moved == first.parts
    assert any(f"{first.parts} finished part(s) whose rows now lie elsewhere in the input (a file added, removed or "
               "renamed before them" in m for m in logged), logged
    embed_dataset(src, tmp_path / "clean", tiny_bert_bundle, **kw)
    _same(out, tmp_path / "clean")
