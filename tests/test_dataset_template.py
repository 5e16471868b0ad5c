"""A row's text made from several columns (``--text-template '{title} {text}'``): composed the same
way in every input format and in ``EmbedBatch``, null values taking their defaults or making bad
rows that name the column, and the template part of what a resumed job must match."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt import Embedder  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import EmbedBatch, OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._readers import read_slices  # noqa: E402
from embedrt.dataset._sources import plan_input  # noqa: E402
from embedrt.dataset._template import TextSource  # noqa: E402

GEMMA = "title: {title|none} | text: {text}"  # EmbeddingGemma's document format

ROWS = [
    {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."},
    {"_id": "d2", "title": None, "text": "A document without a title."},
    {"_id": "d3", "title": "", "text": "An empty title takes the default too."},
    {"_id": "d4", "title": "Seoul", "text": "서울은 한국의 수도이다."},
    {"_id": "d5", "title": "Empty text", "text": ""},
]
COMPOSED = [
    "title: Paris | text: Paris is the capital of France.",
    "title: none | text: A document without a title.",
    "title: none | text: An empty title takes the default too.",
    "title: Seoul | text: 서울은 한국의 수도이다.",
    "title: Empty text | text: ",
]


def _write(folder: Path, fmt: str, rows: list[dict[str, object]]) -> Path:
    path = folder / f"corpus.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["_id", "title", "text"])
            w.writerows([[r["_id"], r["title"] or "", r["text"]] for r in rows])  # CSV has no nulls: empty
    elif fmt == "arrow":
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, pa.Table.from_pylist(rows).schema) as w:
            w.write_table(pa.Table.from_pylist(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_template_names_columns_with_defaults_and_keeps_literal_braces() -> None:
    source = TextSource.of(text_template="{{x}} {title|none}: {text}/{text}")
    assert source.columns == ("title", "text")
    assert source.from_mapping({"title": None, "text": "a"}) == ("{x} none: a/a", None)
    assert source.from_mapping({"title": "T", "text": ""}) == ("{x} T: /", None)
    assert source.from_mapping({"text": "a"}) == ("{x} none: a/a", None)  # a missing key takes the default
    assert source.from_mapping({"title": "T"})[1] == "missing column 'text' (keys: ['title'])"
    assert source.from_mapping({"title": "T", "text": None})[1] == "column 'text' is null"
    assert source.from_mapping({"title": 5, "text": "a"})[1] == "column 'title' is int (5), expected a string"
    assert TextSource.of(text_template="{t|}").from_mapping({"t": None}) == ("", None)  # an empty default
    plain = TextSource.of("body")
    assert plain.columns == ("body",) and plain.template is None
    assert plain.from_mapping({"body": None})[1] == "text is null"  # one column: its reasons as ever


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{title", r"lone '\{' at character 0; write '\{\{'"),
        ("text}", r"lone '\}' at character 4"),
        ("a {} b", r"empty field '\{\}' at character 2; expected a column name"),
        ("{|none}", r"empty field"),
        ("no fields {{here}}", r"names no column"),
        (5, r"text_template must be a string"),
    ],
)
def test_a_bad_template_is_named(template: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TextSource.of(text_template=template)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow"])
def test_every_format_embeds_the_composed_text(tmp_path: Path, tiny_bert_bundle: Path, fmt: str) -> None:
    path = _write(tmp_path, fmt, ROWS)
    summary = embed_dataset(path, tmp_path / "out", tiny_bert_bundle, text_template=GEMMA, id_column="_id",
                            chunk_tokens="max", chunk_text=True, progress=False)  # fmt: skip
    assert summary.bad_rows == 0
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == [r["_id"] for r in ROWS]
    got = table.column("chunk_text").to_pylist()
    assert got == [t.rstrip() for t in COMPOSED]  # a window ends where its text does
    ends = table.column("chunk_end").to_pylist()
    assert [t[:e] for t, e in zip(COMPOSED, ends, strict=True)] == got  # offsets count in the composed text
    want = Embedder(tiny_bert_bundle).encode(COMPOSED)
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), want, atol=1e-5)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_null_without_a_default_is_a_bad_row_naming_its_column(
    tmp_path: Path, tiny_bert_bundle: Path, fmt: str
) -> None:
    rows = [*ROWS, {"_id": "bad", "title": "No text", "text": None}]
    path = _write(tmp_path, fmt, rows)
    summary = embed_dataset(path, tmp_path / "out", tiny_bert_bundle, text_template=GEMMA, id_column="_id",
                            on_error="skip", progress=False)  # fmt: skip
    assert summary.bad_rows == 1
    bad = [json.loads(line) for line in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    assert [(b["id"], b["reason"]) for b in bad] == [("bad", "column 'text' is null")]
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == [r["_id"] for r in ROWS]


def test_jsonl_rows_missing_a_key_or_holding_no_string(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows = [{"_id": "a", "text": "no title key"}, {"_id": "b", "title": "no text key"},
            {"_id": "c", "title": ["a", "list"], "text": "x"}]  # fmt: skip
    path = _write(tmp_path, "jsonl", rows)
    summary = embed_dataset(path, tmp_path / "out", tiny_bert_bundle, text_template=GEMMA, id_column="_id",
                            on_error="null", progress=False)  # fmt: skip
    assert summary.bad_rows == 2
    bad = [json.loads(line) for line in (tmp_path / "out" / "_bad_rows.jsonl").read_text().splitlines()]
    assert [b["reason"] for b in bad] == [
        "missing column 'text' (keys: ['_id', 'title'])",
        "column 'title' is list (['a', 'list']), expected a string",
    ]
    vectors = pq.read_table(tmp_path / "out").column("embedding").to_pylist()
    assert vectors[1] is None and vectors[2] is None
    np.testing.assert_allclose(vectors[0], Embedder(tiny_bert_bundle).encode(["title: none | text: no title key"])[0],
                               atol=1e-5)  # fmt: skip


def test_the_template_decides_whether_a_run_continues_an_output(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    path = _write(tmp_path, "jsonl", ROWS)
    out = tmp_path / "out"
    common = {"id_column": "_id", "progress": False}
    embed_dataset(path, out, tiny_bert_bundle, text_template=GEMMA, **common)  # type: ignore[arg-type]
    identity = json.loads((out / "_manifest.json").read_text())["identity"]
    assert identity["text_template"] == GEMMA and identity["text_column"] is None
    again = embed_dataset(path, out, tiny_bert_bundle, text_template=GEMMA, **common)  # type: ignore[arg-type]
    assert again.rows_embedded == 0  # the same job: nothing left to do
    with pytest.raises(OutputError, match="text_template"):
        embed_dataset(path, out, tiny_bert_bundle, text_template="{title|} {text}", **common)  # type: ignore[arg-type]
    plain = embed_dataset(path, tmp_path / "plain", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    assert plain.rows_embedded == len(ROWS)
    assert "text_template" not in json.loads((tmp_path / "plain" / "_manifest.json").read_text())["identity"]


def test_parquet_slices_count_every_column_of_the_text(tmp_path: Path) -> None:
    rows = [{"_id": str(i), "title": "t" * 30, "text": "x" * 30} for i in range(6)]
    path = _write(tmp_path, "parquet", rows)
    source = TextSource.of(text_template="{title} {text}")
    plan = plan_input(str(path), 100, text=source, id_column=None, keep_columns=())
    sizes = [t.num_rows for t in read_slices(plan, plan.parts[0], source, None, (), 200)]
    assert sizes == [3, 3]  # 60 characters a row (the text column alone: one slice of 6)
    texts = [t for s in read_slices(plan, plan.parts[0], source, None, (), 100) for t in s.column("__text").to_pylist()]
    assert texts == ["t" * 30 + " " + "x" * 30] * 6


def test_embed_batch_composes_the_text_of_a_table(tiny_bert_bundle: Path) -> None:
    model = Embedder(tiny_bert_bundle)
    batch = EmbedBatch(model, text_template=GEMMA, id_column="_id", on_error="null")
    table = pa.Table.from_pylist([*ROWS, {"_id": "bad", "title": "T", "text": None}])
    out = batch(table)
    assert out.column_names == ["_id", "title", "text", "embedding"]
    vectors = out.column("embedding").to_pylist()
    assert vectors[-1] is None
    np.testing.assert_allclose(np.array(vectors[:-1]), model.encode(COMPOSED), atol=1e-5)
    with pytest.raises(ValueError, match=r"the batch has no column 'title'; its columns are \['_id', 'text'\]"):
        batch(table.select(["_id", "text"]))
    with pytest.raises(ValueError, match="give text_column .'body'. or text_template"):
        EmbedBatch(model, text_column="body", text_template=GEMMA)


def test_the_command_line_names_a_template_it_cannot_use(
    tmp_path: Path, tiny_bert_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = _write(tmp_path, "parquet", ROWS)
    txt = tmp_path / "lines.txt"
    txt.write_text("one\ntwo\n")
    base = ["embed-dataset", "-m", str(tiny_bert_bundle), "--no-progress"]
    assert main([*base, str(parquet), str(tmp_path / "o1"), "--text-column", "text", "--text-template", GEMMA]) == 2
    assert "give --text-column ('text') or --text-template" in capsys.readouterr().err
    assert main([*base, str(txt), str(tmp_path / "o2"), "--text-template", "{title} {text}"]) == 2
    assert "--text-template ('{title} {text}') needs .jsonl, .csv or .parquet" in capsys.readouterr().err
    assert main([*base, str(parquet), str(tmp_path / "o3"), "--text-template", "{titel} {text}"]) == 2
    err = capsys.readouterr().err
    assert "has no column 'titel'; its columns are ['_id', 'title', 'text'] (set --text-template" in err
    assert main([*base, str(parquet), str(tmp_path / "o4"), "--text-template", "{title"]) == 2
    assert "lone '{' at character 0" in capsys.readouterr().err
    assert main([*base, str(parquet), str(tmp_path / "o5"), "--id-column", "_id", "--text-template", GEMMA]) == 0
    assert pq.read_table(tmp_path / "o5").num_rows == len(ROWS)


def test_encode_takes_a_template_for_files_with_columns(
    tmp_path: Path, tiny_bert_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _write(tmp_path, "jsonl", [*ROWS, {"_id": "bad", "title": "T", "text": None}])
    base = ["encode", str(tiny_bert_bundle)]
    opts = ["--no-progress", "-o", str(tmp_path / "v.npy"), "--text-template", GEMMA]
    assert main([*base, str(src), *opts]) == 2  # the bad row, named with the template
    assert "column 'text' is null (text template 'title: {title|none} | text: {text}')" in capsys.readouterr().err
    _write(tmp_path, "jsonl", ROWS)
    assert main([*base, str(src), *opts]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), Embedder(tiny_bert_bundle).encode(COMPOSED), atol=1e-5)
    txt = tmp_path / "lines.txt"
    txt.write_text("one\n")
    assert main([*base, str(txt), *opts]) == 2
    assert "needs a .jsonl, .csv, .tsv, .parquet or .arrow input, whose rows have columns" in capsys.readouterr().err
    assert main([*base, str(src), *opts, "--text-column", "text"]) == 2
    assert "give --text-column ('text') or --text-template" in capsys.readouterr().err
