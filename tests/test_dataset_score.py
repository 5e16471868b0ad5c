"""A reranker over a corpus: each row's (query, text) pair scored as ``Reranker.predict`` scores it
(itself tested against sentence-transformers' ``CrossEncoder``), with the corpus job's parts, resume,
bad rows and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt import BundleError, Reranker  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import BadRowError, InputError, OutputError, embed_dataset  # noqa: E402
from embedrt.dataset._score import ScoreBatch  # noqa: E402

QUERIES = ["what is a lock", "how do parts resume", "한국어 질문"]
DOCS = [f"document {i}: " + "the lock is held by a run " * (i % 6) + ("한국어 문서" if i % 4 == 0 else "") for i in range(50)]
ROWS = [{"qid": f"q{i % 3}", "query": QUERIES[i % 3], "text": DOCS[i], "n": i} for i in range(50)]


def _pairs(rows: list[dict[str, object]]) -> list[tuple[str, str]]:
    return [(str(r["query"]), str(r["text"])) for r in rows]


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_scores_equal_predict_in_every_part_and_resume(tiny_reranker: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = tiny_reranker[1]
    src = _write_jsonl(tmp_path / "pairs.jsonl", [*ROWS, ROWS[45]])  # a pair met again: scored once
    s = embed_dataset(src, tmp_path / "out", bundle, query_column="query", keep_columns=["qid", "n"], rows_per_part=20,
                      progress=False)  # fmt: skip
    assert s.written == 51 and s.parts == 3 and s.repeats == 1
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "qid", "n", "score"]  # the query was read for the pairs, not kept
    assert table.schema.field("score").type == pa.float32()
    want = Reranker(bundle).predict(_pairs([*ROWS, ROWS[45]]))
    np.testing.assert_allclose(table.column("score").to_numpy(), want, atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["identity"]["query_column"] == "query" and manifest["schema"]["score"] == "float"
    again = embed_dataset(src, tmp_path / "out", bundle, query_column="query", keep_columns=["qid", "n"],
                          rows_per_part=20, progress=False)  # fmt: skip
    assert again.parts_resumed == 3 and again.rows_embedded == 0
    with pytest.raises(OutputError, match=r"option 'query_column' \('query' there, 'qid' now\)"):
        embed_dataset(src, tmp_path / "out", bundle, query_column="qid", keep_columns=["qid", "n"], rows_per_part=20,
                      progress=False)  # fmt: skip


def test_parquet_pairs_kept_query_template_and_cli(tiny_reranker: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = tiny_reranker[1]
    rows = [{**r, "title": f"T{r['n']}"} for r in ROWS]
    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    embed_dataset(src, tmp_path / "out", bundle, query_column="query", keep_columns=["query"],
                  text_template="{title}: {text}", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "query", "score"] and table.column("query").to_pylist() == [r["query"] for r in rows]
    want = Reranker(bundle).predict([(str(r["query"]), f"{r['title']}: {r['text']}") for r in rows])
    np.testing.assert_allclose(table.column("score").to_numpy(), want, atol=1e-6)
    assert main(["embed-dataset", str(src), str(tmp_path / "cli"), "-m", str(bundle), "--query-column", "query",
                 "--keep-columns", "*", "--id-column", "n", "--no-progress"]) == 0  # fmt: skip
    cli = pq.read_table(tmp_path / "cli")
    assert cli.column_names == ["id", "qid", "query", "text", "title", "score"]
    np.testing.assert_allclose(cli.column("score").to_numpy(), Reranker(bundle).predict(_pairs(rows)), atol=1e-6)


def test_bad_pairs_and_refusals(tiny_reranker: tuple[Path, Path], tiny_bert_bundle: Path, tmp_path: Path) -> None:
    bundle = tiny_reranker[1]
    rows: list[dict[str, object]] = [dict(r) for r in ROWS[:10]]
    rows[3]["query"] = None
    rows[6]["query"] = 7
    rows[8]["text"] = None
    src = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(BadRowError, match=r"pairs.jsonl line 4 \(id 3\): query column 'query' is null"):
        embed_dataset(src, tmp_path / "fail", bundle, query_column="query", progress=False)
    s = embed_dataset(src, tmp_path / "null", bundle, query_column="query", on_error="null", progress=False)
    scores = pq.read_table(tmp_path / "null").column("score").to_pylist()
    # 7 is a JSON value of the query column, which holds its JSON text ("7"): a string, so a query
    assert s.bad_rows == 2 and [i for i, v in enumerate(scores) if v is None] == [3, 8]
    good = [i for i in range(10) if i not in (3, 8)]
    want = Reranker(bundle).predict([(str(rows[i]["query"]), str(rows[i]["text"])) for i in good])
    np.testing.assert_allclose(np.array([scores[i] for i in good], np.float32), want, atol=1e-6)
    with pytest.raises(BundleError, match=r"bundle '.*' is a reranker \(it scores text pairs\): give the column of each "
                                         r"pair's query, query_column= \(--query-column\)"):  # fmt: skip
        embed_dataset(src, tmp_path / "o", bundle, progress=False)
    with pytest.raises(ValueError, match=r"query_column 'query' is for a reranker bundle, which scores pairs; bundle "
                                         r"'.*' \(embedding\) embeds single texts"):  # fmt: skip
        embed_dataset(src, tmp_path / "o", tiny_bert_bundle, query_column="query", progress=False)
    for option in ({"normalize": True}, {"precision": "float16"}, {"truncate_dim": 4}, {"chunk_tokens": 16}):
        with pytest.raises(ValueError, match=r"applies to embeddings; a reranker's output is a score per pair"):
            embed_dataset(src, tmp_path / "o", bundle, query_column="query", progress=False, **option)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"query_column 'id' names a column the output has"):
        embed_dataset(src, tmp_path / "o", bundle, query_column="id", progress=False)
    with pytest.raises(ValueError, match="no row of the input has the key 'question'"):
        embed_dataset(src, tmp_path / "o", bundle, query_column="question", progress=False)
    with pytest.raises(ValueError, match="keep_columns may not hold 'score': the output has its own 'score' column"):
        embed_dataset(src, tmp_path / "o", bundle, query_column="query", keep_columns=["score"], progress=False)
    scored = _write_jsonl(tmp_path / "scored.jsonl", [{**r, "score": 0.5} for r in ROWS[:4]])  # e.g. a first-stage score
    with pytest.raises(InputError, match=r"keep_columns '\*' \(every column\): the input has a column the output names "
                                         r"too: keep_columns may not hold 'score'"):  # fmt: skip
        embed_dataset(scored, tmp_path / "o", bundle, query_column="query", keep_columns=["*"], progress=False)
    s = embed_dataset(scored, tmp_path / "emb", tiny_bert_bundle, keep_columns=["score"], progress=False)
    assert s.written == 4  # an embedding job keeps a column named score
    assert not (tmp_path / "o").exists()


def test_score_batch_on_a_table(tiny_reranker: tuple[Path, Path]) -> None:
    model = Reranker(tiny_reranker[1])
    table = pa.Table.from_pylist(ROWS[:12])
    out = ScoreBatch(model, query_column="query", keep_query=False)(table)
    assert out.column_names == ["qid", "text", "n", "score"]
    np.testing.assert_allclose(out.column("score").to_numpy(), model.predict(_pairs(ROWS[:12])), atol=1e-6)


def test_score_batch_from_a_bundle_folder(tiny_reranker: tuple[Path, Path]) -> None:
    batch = ScoreBatch(tiny_reranker[1], query_column="query", threads=1)
    out = batch(pa.Table.from_pylist(ROWS[:5]))
    assert out.column_names == ["qid", "query", "text", "n", "score"]  # the query kept by default
    np.testing.assert_allclose(out.column("score").to_numpy(), Reranker(tiny_reranker[1]).predict(_pairs(ROWS[:5])),
                               atol=1e-6)  # fmt: skip


def test_several_labels_give_a_list_per_row(tmp_path: Path) -> None:
    from tiny_models import make_cross_encoder

    from embedrt.export import export_model

    bundle = export_model(make_cross_encoder("bert", tmp_path / "src", num_labels=3), tmp_path / "bundle")
    model = Reranker(bundle)
    rows: list[dict[str, object]] = [dict(r) for r in ROWS[:9]]
    rows[4]["query"] = None  # kept with a null score
    out = ScoreBatch(model, query_column="query", on_error="null")(pa.Table.from_pylist(rows))
    assert out.schema.field("score").type == pa.list_(pa.float32(), 3)
    scores = out.column("score").to_pylist()
    assert scores[4] is None
    good = [i for i in range(9) if i != 4]
    np.testing.assert_allclose(np.array([scores[i] for i in good]), model.predict([(str(rows[i]["query"]), str(rows[i]["text"])) for i in good]),
                               atol=1e-6)  # fmt: skip
    batch = ScoreBatch(model, query_column="query", on_error="null")  # several labels through the repeat cache
    batch(pa.Table.from_pylist(rows))
    again = batch.run(batch.prepare(pa.Table.from_pylist(rows)))
    assert again.repeats == 8 and again.tokens == 0 and again.table.column("score").to_pylist() == scores


def test_pairs_met_again_in_later_batches_are_not_scored_again(tiny_reranker: tuple[Path, Path], tmp_path: Path) -> None:
    model = Reranker(tiny_reranker[1])
    batch = ScoreBatch(model, query_column="query")
    first = batch.run(batch.prepare(pa.Table.from_pylist(ROWS[:20])))
    later = batch.run(batch.prepare(pa.Table.from_pylist(ROWS[10:30])))  # ten pairs held, ten new
    assert (first.repeats, later.repeats) == (0, 10) and 0 < later.tokens < first.tokens
    np.testing.assert_allclose(later.table.column("score").to_numpy(), model.predict(_pairs(ROWS[10:30])), atol=1e-6)
    # a slice prepared while the one before was being scored (as the job reads ahead): looked up again
    fresh = ScoreBatch(model, query_column="query")
    ahead, behind = fresh.prepare(pa.Table.from_pylist(ROWS[:20])), fresh.prepare(pa.Table.from_pylist(ROWS[10:30]))
    fresh.run(ahead)
    late = fresh.run(behind)
    assert late.repeats == 10 and late.tokens == later.tokens
    np.testing.assert_allclose(late.table.column("score").to_numpy(), later.table.column("score").to_numpy(), atol=1e-6)
    plain = ScoreBatch(model, query_column="query", repeat_cache_mb=0)
    plain(pa.Table.from_pylist(ROWS[:20]))
    assert plain.run(plain.prepare(pa.Table.from_pylist(ROWS[10:30]))).repeats == 0
    # the job: a corpus whose pairs come back in later parts, one stream so that parts run in order
    src = _write_jsonl(tmp_path / "pairs.jsonl", [*ROWS, *ROWS[:20]])
    kw: dict[str, object] = {"query_column": "query", "rows_per_part": 10, "streams": 1, "progress": False}
    cached = embed_dataset(src, tmp_path / "cached", tiny_reranker[1], **kw)  # type: ignore[arg-type]
    none = embed_dataset(src, tmp_path / "none", tiny_reranker[1], repeat_cache_mb=0, **kw)  # type: ignore[arg-type]
    assert (cached.repeats, none.repeats) == (20, 0) and cached.tokens < none.tokens
    np.testing.assert_allclose(pq.read_table(tmp_path / "cached").column("score").to_numpy(),
                               pq.read_table(tmp_path / "none").column("score").to_numpy(), atol=1e-6)  # fmt: skip
    assert json.loads((tmp_path / "cached" / "_manifest.json").read_text())["repeated_rows"] == 20
