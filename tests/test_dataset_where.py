"""The corpus job's ``where``: only the rows where a SQL condition on their columns holds are
embedded; the others are left out of the output, counted, and the condition is part of the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb")

from embedrt import Embedder  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import InputError, OutputError, embed_dataset, output_status  # noqa: E402

ROWS = [{"text": f"river {i} " + "flows " * (i % 5), "lang": "en" if i % 3 else "de", "n": i} for i in range(40)]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_where_a_condition_holds(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    kw: dict[str, Any] = {"rows_per_part": 10, "progress": False}
    where = "lang = 'en' AND n % 4 <> 0 AND length(text) > 12"
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, where=where, **kw)
    want = [i for i, r in enumerate(ROWS) if r["lang"] == "en" and r["n"] % 4 and len(r["text"]) > 12]
    assert (s.rows, s.written, s.left_out, s.rows_embedded, s.parts) == (40, len(want), 40 - len(want), len(want), 4)
    assert f"{40 - len(want)} rows left out by the where condition" in str(s)
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "embedding"]  # the columns read for the condition alone are not written
    assert table.column("id").to_pylist() == want  # rows keep their numbers in the input
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)),
                               Embedder(tiny_bert_bundle).encode([ROWS[i]["text"] for i in want]), atol=2e-6)  # fmt: skip
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["left_out_rows"] == 40 - len(want) and manifest["identity"]["where"] == where
    status = output_status(tmp_path / "out")
    assert status.left_out == 40 - len(want)
    assert f"; {40 - len(want)} rows left out by the where condition" in dict(status.lines())["written"]
    again = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, where=where, **kw)
    assert (again.parts_resumed, again.rows_embedded, again.left_out) == (4, 0, 40 - len(want))
    with pytest.raises(OutputError, match="made from another option .where."):  # another condition is another job
        embed_dataset(src, tmp_path / "out", tiny_bert_bundle, where="lang = 'de'", **kw)
    kept = embed_dataset(src, tmp_path / "kept", tiny_bert_bundle, where="lang = 'de'", keep_columns="lang,n", **kw)
    table = pq.read_table(tmp_path / "kept")
    assert kept.written == 14 and set(table.column("lang").to_pylist()) == {"de"}
    assert table.column("n").to_pylist() == table.column("id").to_pylist() == list(range(0, 40, 3))
    listed = tmp_path / "keep.parquet"  # the rows of a list: a subquery reads it
    pq.write_table(pa.table({"n": [3, 5, 8]}), listed)
    of_list = embed_dataset(src, tmp_path / "listed", tiny_bert_bundle, where=f"n IN (SELECT n FROM '{listed}')", **kw)
    assert of_list.written == 3 and pq.read_table(tmp_path / "listed").column("id").to_pylist() == [3, 5, 8]
    none = embed_dataset(src, tmp_path / "none", tiny_bert_bundle, where="n > 1000", **kw)
    assert (none.written, none.left_out, pq.read_table(tmp_path / "none").num_rows) == (0, 40, 0)


def test_the_text_column_names_the_text_embedded(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """Rows of HTML: the condition sees each page's text, not its markup; the id column by its name."""
    pages = [{"url": f"u{i}", "text": f"<p>The Rh<b>ine</b> {i}</p>" if i % 2 else f"<p>The Elbe {i}</p>"} for i in range(6)]
    src = _jsonl(tmp_path / "pages.jsonl", pages)
    s = embed_dataset(src, tmp_path / "out", tiny_bert_bundle, id_column="url", html_text=True, keep_columns="text",
                      where="text LIKE '%Rhine%' AND url <> 'u5'", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    assert (s.written, s.left_out) == (2, 4) and table.column("id").to_pylist() == ["u1", "u3"]
    assert table.column("text").to_pylist() == [pages[1]["text"], pages[3]["text"]]  # a kept column as it is


def test_a_bad_row_stays_one_where_its_condition_wants_its_text(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows = [{"text": "a river", "lang": "en"}, {"text": None, "lang": "en"}, {"text": None, "lang": "de"},
            {"text": "ein Fluss", "lang": "de"}]  # fmt: skip
    src = _jsonl(tmp_path / "in.jsonl", rows)
    by_text = embed_dataset(src, tmp_path / "a", tiny_bert_bundle, where="text LIKE '%river%'", on_error="null",
                            progress=False)  # fmt: skip
    assert (by_text.written, by_text.bad_rows, by_text.left_out) == (3, 2, 1)
    assert pq.read_table(tmp_path / "a").column("id").to_pylist() == [0, 1, 2]
    by_lang = embed_dataset(src, tmp_path / "b", tiny_bert_bundle, where="lang = 'en'", on_error="null", progress=False)
    assert (by_lang.written, by_lang.bad_rows, by_lang.left_out) == (2, 1, 2)


def test_where_refusals(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src = _jsonl(tmp_path / "in.jsonl", ROWS[:5])
    kw: dict[str, Any] = {"progress": False}
    with pytest.raises(ValueError, match=r"where 'lang = ' is not a SQL condition: syntax error"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, where="lang = ", **kw)
    with pytest.raises(ValueError, match=r"where 'n > 1 ORDER BY n' is not one SQL condition: .* nothing after it"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, where="n > 1 ORDER BY n", **kw)
    with pytest.raises(ValueError, match=r"where takes a SQL condition"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, where=" ", **kw)
    with pytest.raises(ValueError, match=r"where 'upper\(lang\)' gives values of type string, not true or false"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, where="upper(lang)", **kw)
    with pytest.raises(ValueError, match=r"where 'no_such_function\(n\)': CatalogException: .*no_such_function"):
        embed_dataset(src, tmp_path / "x", tiny_bert_bundle, where="no_such_function(n)", **kw)
    with pytest.raises(InputError, match=r"where .lower\(n\) = 'a'.: BinderException: .*lower\(BIGINT\)"):  # types met when read
        embed_dataset(src, tmp_path / "z", tiny_bert_bundle, where="lower(n) = 'a'", **kw)
    assert not (tmp_path / "x").exists()  # refused before the output folder is made
    csv = tmp_path / "in.csv"
    csv.write_text("text,lang\na river,en\n")
    with pytest.raises(InputError, match=r"VARCHAR .* \(a CSV file's columns, .* are text: cast them"):
        embed_dataset(csv, tmp_path / "w", tiny_bert_bundle, where="lang > 3", **kw)
    assert embed_dataset(csv, tmp_path / "v", tiny_bert_bundle, where="TRY_CAST(lang AS INTEGER) IS NULL", **kw).written == 1
    with pytest.raises(InputError, match=r"language"):  # a column the input lacks, named before any work
        embed_dataset(csv, tmp_path / "y", tiny_bert_bundle, where="language = 'en'", **kw)


def test_where_on_the_command_line(tmp_path: Path, tiny_bert_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _jsonl(tmp_path / "in.jsonl", ROWS)
    assert main(["embed-dataset", str(src), str(tmp_path / "out"), "-m", str(tiny_bert_bundle), "--no-progress",
                 "--where", "lang = 'de' AND n < 10", "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert (summary["written"], summary["left_out"]) == (4, 36)
    assert pq.read_table(tmp_path / "out").column("id").to_pylist() == [0, 3, 6, 9]


def test_a_condition_on_nested_columns(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A struct's field (``meta.k``: the column ``meta``), a list's items, a name qualified by the rows'."""
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", "bb", "ccc"], "tags": [["x"], ["y", "x"], []],
                             "meta": [{"k": 1}, {"k": 2}, {"k": 3}]}), src)  # fmt: skip
    kw: dict[str, Any] = {"progress": False}
    s = embed_dataset(src, tmp_path / "a", tiny_bert_bundle, where="list_contains(tags, 'x') AND meta.k > 1", **kw)
    assert (s.written, pq.read_table(tmp_path / "a").column("id").to_pylist()) == (1, [1])
    s = embed_dataset(src, tmp_path / "b", tiny_bert_bundle, where="rows.text = 'a' OR meta['k'] = 3", **kw)
    assert (s.written, pq.read_table(tmp_path / "b").column("id").to_pylist()) == (2, [0, 2])


def test_pairs_of_a_reranker_where_a_condition_holds(tmp_path: Path, tiny_reranker: tuple[Path, Path]) -> None:
    """The query column may be named by the condition; it is read for the pairs and dropped unless kept."""
    from embedrt import Reranker

    rows = [{"query": f"q{i % 3}", "text": f"passage {i} " + "word " * i, "n": i} for i in range(12)]
    src = _jsonl(tmp_path / "pairs.jsonl", rows)
    s = embed_dataset(src, tmp_path / "out", tiny_reranker[1], query_column="query", where="query <> 'q0' AND n < 10",
                      progress=False)  # fmt: skip
    kept = [r for r in rows if r["query"] != "q0" and r["n"] < 10]
    table = pq.read_table(tmp_path / "out")
    assert (s.written, s.left_out, table.column_names) == (len(kept), 12 - len(kept), ["id", "score"])
    want = Reranker(tiny_reranker[1]).predict([(r["query"], r["text"]) for r in kept])
    np.testing.assert_allclose(table.column("score").to_numpy(), want, atol=1e-6)
