"""Texts met again in a later part (or slice, or Ray batch) come from the job's cache of the rows it
embedded last, not from the model: the same output, less model work, within a memory budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt import Embedder, SparseEncoder  # noqa: E402
from embedrt._cache import ENTRY_OVERHEAD, VectorCache, text_keys, token_keys  # noqa: E402
from embedrt._sparse import SparseEmbeddings, SparseVector  # noqa: E402
from embedrt.dataset import BadRowError, EmbedBatch, embed_dataset  # noqa: E402

DISTINCT = [f"query {i}: " + "how to embed a corpus " * (i % 5) + ("한국어" if i % 3 == 0 else "") for i in range(40)]


def _queries(n: int = 400, seed: int = 0) -> list[str]:
    """A query log: a few texts very often, most now and then (Zipf-like), through every part."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, len(DISTINCT) + 1)
    return [DISTINCT[i] for i in rng.choice(len(DISTINCT), size=n, p=p / p.sum())]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    texts = _queries()
    path = tmp_path_factory.mktemp("repeats") / "in.jsonl"
    rows = [{"q": f"q{i}", "text": t} for i, t in enumerate(texts)]
    rows.insert(77, {"q": "bad", "text": None})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, texts


class _Counting:
    """Counts the texts a model embeds (its ``encode_tokenized`` calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
        self.texts = 0
        inner = cls.encode_tokenized

        def spy(model, tok, *a, **k):  # type: ignore[no-untyped-def]
            self.texts += len(tok)
            return inner(model, tok, *a, **k)

        monkeypatch.setattr(cls, "encode_tokenized", spy)


def _vectors(out: Path) -> tuple[list[object], np.ndarray]:
    table = pq.read_table(out)
    values = table.column("embedding").to_pylist()
    dim = len(next(v for v in values if v is not None))
    return table.column("id").to_pylist(), np.array([v if v is not None else [0] * dim for v in values])


def test_a_text_repeated_across_parts_is_embedded_once_per_job(
    tmp_path: Path, log: tuple[Path, list[str]], tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, texts = log
    common = {"id_column": "q", "on_error": "null", "rows_per_part": 50, "progress": False}
    counted = _Counting(monkeypatch, Embedder)
    off = embed_dataset(path, tmp_path / "off", tiny_bert_bundle, repeat_cache_mb=0, **common)  # type: ignore[arg-type]
    per_part = counted.texts
    counted.texts = 0
    on = embed_dataset(path, tmp_path / "on", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    distinct = len(set(texts))
    assert counted.texts == distinct < per_part  # each text once in the whole job
    assert on.repeats == len(texts) - distinct > off.repeats == len(texts) - per_part
    assert f"; {on.repeats} repeated texts embedded once" in str(on)
    assert json.loads((tmp_path / "on" / "_manifest.json").read_text())["repeated_rows"] == on.repeats
    assert on.rows_embedded == off.rows_embedded == len(texts) + 1 and on.tokens < off.tokens
    ids, got = _vectors(tmp_path / "on")
    ids_off, want = _vectors(tmp_path / "off")
    assert ids == ids_off and ids[77] == "bad"
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.delete(got, 77, axis=0), Embedder(tiny_bert_bundle).encode(texts), atol=2e-6)
    # a budget of a few rows: the least recently used go, and come back from the model when met again
    counted.texts = 0
    small = embed_dataset(path, tmp_path / "small", tiny_bert_bundle, repeat_cache_mb=4 * (128 + ENTRY_OVERHEAD) / 2**20,
                          **common)  # type: ignore[arg-type]  # fmt: skip
    assert distinct < counted.texts < per_part and off.repeats < small.repeats < on.repeats
    np.testing.assert_allclose(_vectors(tmp_path / "small")[1], want, atol=1e-6)


def test_a_resumed_job_starts_with_an_empty_cache_and_writes_the_same_vectors(
    tmp_path: Path, log: tuple[Path, list[str]], tiny_bert_bundle: Path
) -> None:
    """The run stops at the bad row (part 2) and the next goes on from there, its cache empty: the
    texts it held are embedded again, in other batches, so the vectors agree to float rounding."""
    path, texts = log
    common = {"id_column": "q", "rows_per_part": 50, "progress": False}
    with pytest.raises(BadRowError, match=r"line 78 \(id 'bad'\)"):
        embed_dataset(path, tmp_path / "out", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    resumed = embed_dataset(path, tmp_path / "out", tiny_bert_bundle, on_error="null", **common)  # type: ignore[arg-type]
    whole = embed_dataset(path, tmp_path / "whole", tiny_bert_bundle, on_error="null", **common)  # type: ignore[arg-type]
    assert resumed.parts_resumed == 1 and resumed.rows_embedded == len(texts) + 1 - 50
    ids, got = _vectors(tmp_path / "out")
    assert ids == _vectors(tmp_path / "whole")[0]
    np.testing.assert_allclose(got, _vectors(tmp_path / "whole")[1], rtol=0, atol=1e-6)
    assert resumed.repeats < whole.repeats  # the kept part's texts were embedded again where later parts met them


def test_the_cache_holds_output_rows_in_the_output_precision(
    tmp_path: Path, log: tuple[Path, list[str]], tiny_bert_bundle: Path
) -> None:
    path, _texts = log
    common = {"id_column": "q", "on_error": "skip", "rows_per_part": 50, "progress": False, "precision": "ubinary",
              "truncate_dim": 16}  # fmt: skip
    on = embed_dataset(path, tmp_path / "on", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    off = embed_dataset(path, tmp_path / "off", tiny_bert_bundle, repeat_cache_mb=0, **common)  # type: ignore[arg-type]
    assert on.repeats > off.repeats
    a, b = pq.read_table(tmp_path / "on"), pq.read_table(tmp_path / "off")
    assert a.schema.field("embedding").type == pa.list_(pa.uint8(), 2) and a.equals(b)


def test_sparse_rows_come_from_the_cache_too(
    tmp_path: Path, log: tuple[Path, list[str]], tiny_sparse: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, texts = log
    _source, bundle = tiny_sparse
    common = {"id_column": "q", "on_error": "null", "rows_per_part": 50, "progress": False, "max_active_dims": 7}
    counted = _Counting(monkeypatch, SparseEncoder)
    on = embed_dataset(path, tmp_path / "on", bundle, **common)  # type: ignore[arg-type]
    assert counted.texts == len(set(texts)) and on.repeats == len(texts) - len(set(texts))
    embed_dataset(path, tmp_path / "off", bundle, repeat_cache_mb=0, **common)  # type: ignore[arg-type]
    a, b = pq.read_table(tmp_path / "on").to_pylist(), pq.read_table(tmp_path / "off").to_pylist()
    assert [r["embedding"] is None for r in a] == [r["embedding"] is None for r in b] and a[77]["embedding"] is None
    for x, y in zip(a, b, strict=True):
        if x["embedding"] is not None:
            assert x["id"] == y["id"] and x["embedding"]["indices"] == y["embedding"]["indices"]
            np.testing.assert_allclose(x["embedding"]["values"], y["embedding"]["values"], rtol=1e-6, atol=1e-7)


def test_the_batch_function_keeps_its_cache_between_calls(tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Data calls one ``EmbedBatch`` per actor with batch after batch; the progress still counts
    every row, those that needed no model run too."""
    batch = EmbedBatch(tiny_bert_bundle)
    counted = _Counting(monkeypatch, Embedder)
    first = batch(pa.table({"text": DISTINCT[:10]}))
    assert counted.texts == 10
    told: list[int] = []
    again = batch.run(batch.prepare(pa.table({"text": DISTINCT[:10] + DISTINCT[:3]})), told.append)
    assert counted.texts == 10 and sum(told) == 13 and again.repeats == 13 and again.tokens == 0
    np.testing.assert_array_equal(again.table.column("embedding").to_pylist()[:10], first.column("embedding").to_pylist())
    told.clear()
    mixed = batch.run(batch.prepare(pa.table({"text": DISTINCT[5:15]})), told.append)
    assert counted.texts == 15 and sum(told) == 10 and mixed.repeats == 5
    want = Embedder(tiny_bert_bundle).encode(DISTINCT[5:15])
    np.testing.assert_allclose(np.array(mixed.table.column("embedding").to_pylist()), want, atol=2e-6)
    assert EmbedBatch(tiny_bert_bundle, repeat_cache_mb=0).cache is None
    assert EmbedBatch(tiny_bert_bundle, chunk_tokens=16, repeat_cache_mb=0).cache is None


def test_texts_the_cache_holds_are_not_tokenized_again_and_their_cut_still_counts(
    tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, counted, tokenized = EmbedBatch(tiny_bert_bundle), _Counting(monkeypatch, Embedder), []
    inner = Embedder.tokenize

    def spy(model, texts, *a, **k):  # type: ignore[no-untyped-def]
        tokenized.extend(texts)
        return inner(model, texts, *a, **k)

    monkeypatch.setattr(Embedder, "tokenize", spy)
    long = "word " * 2000  # cut to the window
    first = batch.run(batch.prepare(pa.table({"text": [long, "a", "b"]})))
    assert first.truncated == 1 and tokenized == [long, "a", "b"]
    tokenized.clear()
    second = batch.run(batch.prepare(pa.table({"text": ["c", long, "a", long]})))
    assert tokenized == ["c"] and counted.texts == 4  # the cache's texts: neither tokenized nor embedded
    assert second.truncated == 2 and second.repeats == 3  # the long text's cut, kept with its row, counts
    model = Embedder(tiny_bert_bundle)
    np.testing.assert_allclose(np.array(second.table.column("embedding").to_pylist()),
                               model.encode(["c", long, "a", long]), atol=2e-6)  # fmt: skip
    # a slice prepared before the cache held its text (the job prepares a slice ahead): tokenized,
    # then found by the model's thread, not embedded again
    tokenized.clear()
    counted.texts = 0
    ahead, behind = batch.prepare(pa.table({"text": ["d", long]})), batch.prepare(pa.table({"text": ["d", "e"]}))
    assert tokenized == ["d", "d", "e"]
    batch.run(ahead)
    last = batch.run(behind)
    assert counted.texts == 2 and last.repeats == 1 and last.truncated == 0  # "d" embedded once, and "e"
    np.testing.assert_allclose(np.array(last.table.column("embedding").to_pylist()), model.encode(["d", "e"]), atol=2e-6)


def test_the_cache_drops_the_least_recently_used_within_its_bytes() -> None:
    row = np.arange(8, dtype=np.float32)
    size = row.nbytes + ENTRY_OVERHEAD
    cache = VectorCache(3 * size)
    keys = text_keys(["a", "b", "c", "d"])
    assert len(set(keys)) == 4 and all(len(k) == 16 for k in keys)
    look = cache.lookup(keys[:3])
    assert look.missing.tolist() == [0, 1, 2]
    cache.complete(look, np.stack([row, row + 1, row + 2]), np.array([False, True, False]))
    assert len(cache) == 3 and cache.bytes == 3 * size
    assert cache.lookup(keys[:3]).flags.tolist() == [False, True, False]  # each row's flag kept with it
    cache.lookup(keys[:1])  # "a" now the most recently used
    cache.complete(cache.lookup(keys[3:]), (row + 3)[None])
    look = cache.lookup(keys)
    assert look.missing.tolist() == [1] and look.held.tolist() == [0, 2, 3] and cache.bytes <= 3 * size
    merged = cache.complete(look, (row + 9)[None])
    np.testing.assert_array_equal(merged, np.stack([row, row + 9, row + 2, row + 3]))
    assert isinstance(merged, np.ndarray)
    assert all(held.base is None for held, *_ in cache._rows.values())  # copies: no batch kept alive by a row
    empty = cache.complete(cache.lookup([]), np.zeros((0, 8), np.float32))  # a slice of bad rows only
    assert empty.shape == (0, 8)
    tiny = VectorCache(size - 1)  # a row over the budget is not held
    tiny.complete(tiny.lookup(keys[:1]), row[None])
    assert len(tiny) == 0 and tiny.bytes == 0


def test_sparse_rows_are_copied_and_merged_in_order() -> None:
    cache = VectorCache(2**20)
    keys = text_keys(["x", "y", "z"])
    first = SparseEmbeddings(np.array([0, 2, 3]), np.array([1, 5, 4]), np.array([0.5, 0.25, 1.0], np.float32), 9)
    cache.complete(cache.lookup(keys[:2]), first)
    first.values[:] = -1  # the cache holds copies, not views of the batch's arrays
    look = cache.lookup([keys[1], keys[2], keys[0]])
    merged = cache.complete(look, SparseEmbeddings(np.array([0, 1]), np.array([7]), np.array([2.0], np.float32), 9))
    assert isinstance(merged, SparseEmbeddings)
    rows = [merged[i] for i in range(3)]
    assert all(isinstance(r, SparseVector) for r in rows)
    assert [r.indices.tolist() for r in rows] == [[4], [7], [1, 5]]
    assert [r.values.tolist() for r in rows] == [[1.0], [2.0], [0.5, 0.25]]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "64", True, None])
def test_a_bad_cache_size_is_named(bad: object, tmp_path: Path, log: tuple[Path, list[str]], tiny_bert_bundle: Path) -> None:
    with pytest.raises(ValueError, match=r"repeat_cache_mb must be a number of megabytes >= 0 \(0: no cache\), got "):
        embed_dataset(log[0], tmp_path / "out", tiny_bert_bundle, repeat_cache_mb=bad, progress=False)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()  # refused before any work
    with pytest.raises(ValueError, match="repeat_cache_mb"):
        EmbedBatch(tiny_bert_bundle, repeat_cache_mb=bad)  # type: ignore[arg-type]


def test_the_cli_takes_the_cache_size(tmp_path: Path, log: tuple[Path, list[str]], tiny_bert_bundle: Path) -> None:
    base = [sys.executable, "-m", "embedrt.cli", "embed-dataset", str(log[0])]
    opts = ["-m", str(tiny_bert_bundle), "--id-column", "q", "--on-error", "skip", "--rows-per-part", "50",
            "--no-progress"]  # fmt: skip
    off = subprocess.run([*base, str(tmp_path / "off"), *opts, "--repeat-cache-mb", "0"], capture_output=True,
                         text=True, timeout=300, check=True)  # fmt: skip
    on = subprocess.run([*base, str(tmp_path / "on"), *opts], capture_output=True, text=True, timeout=300, check=True)
    repeats = [int(r.stdout.split(" repeated texts")[0].rsplit("; ", 1)[1]) for r in (off, on)]
    assert repeats[0] < repeats[1] == len(log[1]) - len(set(log[1]))
    bad = subprocess.run([*base, str(tmp_path / "bad"), *opts, "--repeat-cache-mb", "-5"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "repeat_cache_mb must be a number of megabytes >= 0 (0: no cache), got -5.0" in bad.stderr


def test_windows_of_a_document_met_again_come_from_the_cache(
    tmp_path: Path, tiny_bert_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With chunking the cache holds windows by their tokens: a document met again in a later part
    takes its windows' vectors, and one that begins as an earlier one, those of that beginning."""
    rng = np.random.default_rng(1)
    words = " ".join(DISTINCT).split()
    docs = [" ".join(rng.choice(words, 60)) + "." for _ in range(12)]
    order = [i % 12 for i in range(40)]  # each document over and over, in parts of 10 rows
    texts = [docs[i] for i in order]
    texts[25] = docs[0] + " " + " ".join(rng.choice(words, 30))  # begins as the first document
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"d": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    common = {"id_column": "d", "rows_per_part": 10, "chunk_tokens": 16, "progress": False}
    counted = _Counting(monkeypatch, Embedder)
    off = embed_dataset(path, tmp_path / "off", tiny_bert_bundle, repeat_cache_mb=0, **common)  # type: ignore[arg-type]
    per_part = counted.texts
    counted.texts = 0
    on = embed_dataset(path, tmp_path / "on", tiny_bert_bundle, **common)  # type: ignore[arg-type]
    windows = EmbedBatch(tiny_bert_bundle, chunk_tokens=16).chunker.split(list(dict.fromkeys(texts)))
    assert counted.texts == len(set(token_keys(windows.tokens))) < per_part  # each distinct window once in the job
    assert on.repeats == on.written - counted.texts and off.repeats == off.written - per_part
    assert f"; {on.repeats} repeated windows embedded once" in str(on)
    a, b = pq.read_table(tmp_path / "on"), pq.read_table(tmp_path / "off")
    assert a.drop_columns(["embedding"]).equals(b.drop_columns(["embedding"]))
    np.testing.assert_allclose(_vectors(tmp_path / "on")[1], _vectors(tmp_path / "off")[1], atol=1e-6)
    rows = a.to_pylist()
    first = [r for r in rows if r["id"] == "r0"]
    shared = [r for r in rows if r["id"] == "r25"][: len(first) - 1]  # its windows before the first one's end
    assert shared and all(x["chunk_end"] == y["chunk_end"] for x, y in zip(shared, first, strict=False))
    np.testing.assert_array_equal([r["embedding"] for r in shared], [r["embedding"] for r in first[: len(shared)]])
