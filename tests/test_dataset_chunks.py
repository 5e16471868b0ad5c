"""The corpus job with long texts (truncation counted, or each text cut into windows, a row each)
and with texts repeated within a part (embedded once)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from tiny_models import CORPUS  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from embedrt import Embedder  # noqa: E402
from embedrt.dataset import EmbedBatch, OutputError, embed_dataset  # noqa: E402


def _corpus(n: int = 120, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [w.strip(".,;:!?()'\"") for w in " ".join(CORPUS).split()]
    words = [w for w in words if w.isascii() and w.isalpha() and len(w) < 8]  # short words: no cut inside one
    return [" ".join(rng.choice(words) for _ in range(rng.choice([0, 2, 10, 30, 90]))) for _ in range(n)]


@pytest.fixture(scope="module")
def model(tiny_bert_bundle: Path) -> Embedder:
    return Embedder(tiny_bert_bundle)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    texts = _corpus()
    path = tmp_path_factory.mktemp("chunks") / "in.jsonl"
    rows = [{"doc": f"d{i}", "text": t, "n": i} for i, t in enumerate(texts)]
    rows.insert(7, {"doc": "bad", "text": None, "n": -1})  # a bad row in the middle
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, texts


def _lengths(bundle: Path, texts: list[str]) -> list[int]:
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(texts)]


def test_truncated_texts_are_counted(tmp_path: Path, corpus: tuple[Path, list[str]], tiny_bert_bundle: Path,
                                     model: Embedder) -> None:  # fmt: skip
    path, texts = corpus
    summary = embed_dataset(path, tmp_path / "out", tiny_bert_bundle, id_column="doc", on_error="skip",
                            rows_per_part=40, progress=False)  # fmt: skip
    longer = sum(n > model.max_seq_length for n in _lengths(tiny_bert_bundle, texts))
    assert 10 < longer < len(texts) and summary.truncated == longer and not summary.chunked
    assert f"; {longer} texts longer than the model's window cut to it" in str(summary)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["truncated_rows"] == longer and "chunks" not in manifest["identity"]


def test_windows_are_embedded_whole_a_row_each(tmp_path: Path, corpus: tuple[Path, list[str]], tiny_bert_bundle: Path,
                                               model: Embedder) -> None:  # fmt: skip
    path, texts = corpus
    out = tmp_path / "out"
    summary = embed_dataset(path, out, tiny_bert_bundle, id_column="doc", keep_columns=["n"], on_error="null",
                            rows_per_part=40, progress=False, chunk_tokens=24, chunk_overlap=4, chunk_text=True)  # fmt: skip
    table = pq.read_table(out)
    assert table.column_names == ["id", "n", "chunk", "chunk_start", "chunk_end", "chunk_text", "embedding"]
    assert summary.chunked and summary.truncated == 0 and summary.written == table.num_rows > len(texts) + 20
    assert f"{table.num_rows} chunks of {len(texts) + 1} rows written" in str(summary)
    rows = table.to_pylist()
    bad = [r for r in rows if r["id"] == "bad"]
    assert bad == [{"id": "bad", "n": -1, "chunk": 0, "chunk_start": None, "chunk_end": None, "chunk_text": None,
                    "embedding": None}]  # fmt: skip
    good = [r for r in rows if r["id"] != "bad"]
    # rows keep the input's order, windows theirs
    assert [(r["n"], r["chunk"]) for r in good] == sorted((r["n"], r["chunk"]) for r in good)
    by_row: dict[int, list[dict[str, object]]] = {}
    for r in good:
        by_row.setdefault(int(r["n"]), []).append(r)  # type: ignore[call-overload]
    assert sorted(by_row) == list(range(len(texts)))
    lengths = _lengths(tiny_bert_bundle, texts)
    for i, windows in by_row.items():
        assert [w["chunk"] for w in windows] == list(range(len(windows)))
        assert (len(windows) > 1) == (lengths[i] > 24)
        for w in windows:
            assert texts[i][w["chunk_start"] : w["chunk_end"]] == w["chunk_text"]  # type: ignore[misc]
        assert windows[0]["chunk_start"] == 0 and windows[-1]["chunk_end"] == len(texts[i])
    # windows begin and end at words here (short words): each one's text tokenizes to the window's own
    # tokens, so its vector is the one Embedder.encode gives that text
    pieces = [str(r["chunk_text"]) for r in good]
    expected = model.encode(pieces)
    got = np.stack([np.asarray(r["embedding"], np.float32) for r in good])
    assert np.abs(got - expected).max() < 1e-5
    assert max(_lengths(tiny_bert_bundle, pieces)) <= 24


def test_a_resume_keeps_the_windows_and_other_chunking_is_refused(tmp_path: Path, corpus: tuple[Path, list[str]],
                                                                  tiny_bert_bundle: Path) -> None:  # fmt: skip
    path, _texts = corpus
    out = tmp_path / "out"
    kw = {"id_column": "doc", "on_error": "skip", "rows_per_part": 40, "progress": False, "chunk_tokens": "max"}
    first = embed_dataset(path, out, tiny_bert_bundle, **kw)  # type: ignore[arg-type]
    before = pq.read_table(out)
    manifest = json.loads((out / "_manifest.json").read_text())
    cuts = "paragraph, sentence, line, word"
    assert manifest["identity"]["chunks"] == {"tokens": 48, "overlap": 0, "text": False, "cuts": cuts}  # "max": the window
    (out / "part-000001.parquet").unlink()
    again = embed_dataset(path, out, tiny_bert_bundle, **kw)  # type: ignore[arg-type]
    assert again.parts_resumed == first.parts - 1 and again.written == first.written
    assert pq.read_table(out).equals(before)
    with pytest.raises(OutputError, match=rf"option 'chunks' \(\{{'tokens': 48, 'overlap': 0, 'text': False, 'cuts': '{cuts}'\}} "
                       rf"there, \{{'tokens': 48, 'overlap': 8, 'text': False, 'cuts': '{cuts}'\}} now\)"):  # fmt: skip
        embed_dataset(path, out, tiny_bert_bundle, **{**kw, "chunk_overlap": 8})  # type: ignore[arg-type]
    with pytest.raises(OutputError, match="option 'chunks'"):
        embed_dataset(path, out, tiny_bert_bundle, **{**kw, "chunk_tokens": None})  # type: ignore[arg-type]
    # a job whose windows were cut by another rule (its identity names none) is not mixed with these
    manifest["identity"]["chunks"].pop("cuts")
    (out / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match=rf"option 'chunks' .*'text': False\}} there, .*'cuts': '{cuts}'\}} now"):
        embed_dataset(path, out, tiny_bert_bundle, **kw)  # type: ignore[arg-type]


def test_bad_chunking_settings_fail_before_any_work(tmp_path: Path, corpus: tuple[Path, list[str]],
                                                    tiny_bert_bundle: Path) -> None:  # fmt: skip
    path, _texts = corpus
    cases = [
        ({"chunk_overlap": 4}, "chunk_overlap applies to chunking: give chunk_tokens too"),
        ({"chunk_text": True, "chunk_overlap": 4}, "chunk_overlap and chunk_text apply to chunking"),
        ({"chunk_tokens": 49}, r"chunk_tokens must be an integer from 1 to 48 \(the model's max_seq_length\) or .max., got 49"),
        ({"chunk_tokens": "all"}, "chunk_tokens must be a positive integer or 'max', got 'all'"),
        ({"chunk_tokens": 10, "chunk_overlap": 8}, "chunk_tokens=10 leaves 8 tokens of text per chunk"),
        ({"chunk_tokens": 10, "keep_columns": ["chunk"]}, "keep_columns may not hold 'chunk'"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            embed_dataset(path, tmp_path / "out", tiny_bert_bundle, progress=False, **kw)  # type: ignore[arg-type]
        assert not (tmp_path / "out").exists()
    batch = EmbedBatch(tiny_bert_bundle, chunk_tokens=16, threads=1)
    with pytest.raises(ValueError, match=r"the batch already has the column\(s\) \['chunk_end'\] that chunking adds"):
        batch(pa.table({"text": ["a b"], "chunk_end": [1]}))
    assert batch(pa.table({"text": ["a b " * 30, "c"]})).column_names == ["text", "chunk", "chunk_start", "chunk_end",
                                                                        "embedding"]  # fmt: skip


def test_cli_chunks_and_says_what_was_cut(tmp_path: Path, corpus: tuple[Path, list[str]], tiny_bert_bundle: Path) -> None:
    path, texts = corpus
    base = [sys.executable, "-m", "embedrt.cli", "embed-dataset", str(path)]
    opts = ["-m", str(tiny_bert_bundle), "--id-column", "doc", "--on-error", "skip", "--no-progress", "--threads", "1"]
    plain = subprocess.run([*base, str(tmp_path / "plain"), *opts], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert "text(s) had more tokens than the model's window and were cut to it" in plain.stderr
    assert "--chunk-tokens max embeds them whole" in plain.stderr
    chunked = subprocess.run([*base, str(tmp_path / "chunked"), *opts, "--chunk-tokens", "max", "--chunk-overlap", "6",
                              "--chunk-text"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert chunked.returncode == 0, chunked.stderr
    assert "cut to it" not in chunked.stderr and f"chunks of {len(texts) + 1} rows written" in chunked.stdout
    table = pq.read_table(tmp_path / "chunked")
    assert table.num_rows > len(texts) and "chunk_text" in table.column_names
    bad = subprocess.run([*base, str(tmp_path / "other"), *opts, "--chunk-tokens", "all"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "--chunk-tokens: expected a number of tokens or 'max', got 'all'" in bad.stderr


def test_repeated_texts_are_embedded_once(tmp_path: Path, tiny_bert_bundle: Path, model: Embedder) -> None:
    texts = _corpus(60, seed=3)
    rows = [{"doc": f"d{i}", "text": texts[i % 20]} for i in range(60)]  # every text three times
    rows.append({"doc": "bad", "text": None})
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    distinct = list(dict.fromkeys(texts[:20]))
    summary = embed_dataset(path, tmp_path / "out", tiny_bert_bundle, id_column="doc", on_error="null",
                            rows_per_part=30, progress=False, repeat_cache_mb=0)  # fmt: skip
    # parts of 30 rows: each holds the 20 texts once and 10 of them again (no cache: each part embeds its own)
    assert summary.repeats == 60 - 2 * len(distinct) and summary.written == 61
    assert f"; {summary.repeats} repeated texts embedded once" in str(summary)
    assert summary.tokens == 2 * sum(min(n, model.max_seq_length) for n in _lengths(tiny_bert_bundle, distinct))
    table = pq.read_table(tmp_path / "out")
    got = {r["id"]: r["embedding"] for r in table.to_pylist()}
    want = model.encode([r["text"] for r in rows[:60]])
    np.testing.assert_allclose(np.array([got[f"d{i}"] for i in range(60)], np.float32), want, atol=1e-5)
    assert got["bad"] is None
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["repeated_rows"] == summary.repeats
    # windows too: a repeated text gets the same windows, cut once (counted in windows)
    chunked = embed_dataset(path, tmp_path / "chunked", tiny_bert_bundle, id_column="doc", on_error="skip",
                            rows_per_part=30, progress=False, chunk_tokens=16, chunk_text=True,
                            repeat_cache_mb=0)  # fmt: skip
    windows = pq.read_table(tmp_path / "chunked").to_pylist()
    count = {i: sum(1 for w in windows if w["id"] == f"d{i}") for i in range(60)}
    again = [i for lo in (0, 30) for i in range(lo, lo + 30) if rows[i]["text"] in [r["text"] for r in rows[lo:i]]]
    assert chunked.repeats == sum(count[i] for i in again) > summary.repeats == len(again)
    assert f"; {chunked.repeats} repeated windows embedded once" in str(chunked)
    of: dict[str, list[tuple[object, ...]]] = {}
    for r in windows:
        of.setdefault(str(r["id"]), []).append((r["chunk"], r["chunk_start"], r["chunk_end"], r["chunk_text"],
                                                 tuple(r["embedding"])))  # fmt: skip
    for i in range(20, 60):
        a, b = of[f"d{i}"], of[f"d{i % 20}"]
        assert [w[:4] for w in a] == [w[:4] for w in b]
        np.testing.assert_allclose(np.array([w[4] for w in a]), np.array([w[4] for w in b]), atol=1e-5)
    for w in windows:  # each row's windows are of its own text
        assert texts[int(str(w["id"])[1:]) % 20][w["chunk_start"] : w["chunk_end"]] == w["chunk_text"]


def test_windows_name_the_page_they_begin_on(model: Embedder) -> None:
    pa = pytest.importorskip("pyarrow")
    from embedrt.dataset import EmbedBatch

    paged = "\n\f\n".join(" ".join(f"page{p} word{w}." for w in range(30)) for p in range(1, 5))
    table = pa.table({"text": [paged, "no form feed at all " * 20, paged]})
    out = EmbedBatch(model, chunk_tokens=16, chunk_pages=True, chunk_text=True)(table)
    assert out.column_names == ["text", "chunk", "chunk_start", "chunk_end", "chunk_page", "chunk_text", "embedding"]
    for row in out.to_pylist():
        assert row["chunk_page"] == row["text"].count("\f", 0, row["chunk_start"]) + 1
        assert row["chunk_text"].split()[0].startswith(f"page{row['chunk_page']}") or "\f" not in row["text"]
    assert {r["chunk_page"] for r in out.to_pylist() if r["text"] == paged} == {1, 2, 3, 4}
    assert "chunk_page" not in EmbedBatch(model, chunk_tokens=16)(table).column_names
    with_bad = EmbedBatch(model, chunk_tokens=16, chunk_pages=True, on_error="null")(pa.table({"text": [None, paged]}))
    assert with_bad.column("chunk_page").to_pylist()[:2] == [None, 1]  # a bad row's page is null, as its vector
