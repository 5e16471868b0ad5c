"""The corpus job's output precisions: the embedding column in int8 / uint8 (one scale for the whole
corpus, from ranges) or packed bits, truncated dimensions, refusals and resume identity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from embedrt import Embedder, quantization_ranges, quantize_embeddings  # noqa: E402
from embedrt.cli import main  # noqa: E402
from embedrt.dataset import OutputError, embed_dataset  # noqa: E402

TEXTS = [f"row {i}: " + "word 한국어 🙂 " * (i % 7 + 1) for i in range(60)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "in.jsonl"
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)] + [{"id": "bad", "text": None}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _column(out: Path) -> tuple[pa.DataType, list[object]]:
    table = pq.read_table(out).sort_by("id")
    return table.schema.field("embedding").type, table.column("embedding").to_pylist()


def test_packed_bits_and_truncation(corpus: Path, tiny_bert_bundle: Path, tmp_path: Path) -> None:
    floats = Embedder(tiny_bert_bundle, streams="auto").encode(TEXTS)  # the job's runs (its default streams)
    embed_dataset(corpus, tmp_path / "bits", tiny_bert_bundle, id_column="id", on_error="null", rows_per_part=25,
                  precision="ubinary", truncate_dim=16, progress=False)  # fmt: skip
    kind, values = _column(tmp_path / "bits")
    assert (kind.value_type, kind.list_size) == (pa.uint8(), 2) and values[0] is None  # "bad": a null vector
    by_id = dict(zip(sorted(f"d{i}" for i in range(60)), values[1:], strict=True))
    got = np.array([by_id[f"d{i}"] for i in range(60)])
    np.testing.assert_array_equal(got, quantize_embeddings(floats[:, :16], "ubinary"))
    manifest = json.loads((tmp_path / "bits" / "_manifest.json").read_text())
    assert manifest["dimension"] == 16 and manifest["schema"]["embedding"] == "fixed_size_list<item: uint8>[2]"


def test_int8_with_ranges_and_refusals(corpus: Path, tiny_bert_bundle: Path, tmp_path: Path) -> None:
    # the job's runs (its default streams): other run sizes move a float by ~1e-8, which can move a level
    floats = Embedder(tiny_bert_bundle, streams="auto").encode(TEXTS)
    ranges = quantization_ranges(floats[:30])  # a sample's ranges, then the whole corpus on that scale
    np.save(tmp_path / "ranges.npy", ranges)
    assert main(["embed-dataset", str(corpus), str(tmp_path / "q"), "--model", str(tiny_bert_bundle), "--id-column",
                 "id", "--on-error", "skip", "--precision", "int8", "--ranges", str(tmp_path / "ranges.npy"),
                 "--no-progress"]) == 0  # fmt: skip
    kind, values = _column(tmp_path / "q")
    assert (kind.value_type, kind.list_size) == (pa.int8(), 32)
    order = sorted(range(60), key=lambda i: f"d{i}")
    np.testing.assert_array_equal(np.array(values), quantize_embeddings(floats, "int8", ranges=ranges)[order])
    with pytest.raises(ValueError, match="'int8' over a corpus needs fixed calibration ranges"):
        embed_dataset(corpus, tmp_path / "x", tiny_bert_bundle, precision="int8", progress=False)
    with pytest.raises(ValueError, match="ranges apply to int8/uint8 output, not to precision 'binary'"):
        embed_dataset(corpus, tmp_path / "x", tiny_bert_bundle, precision="binary", ranges=ranges, progress=False)
    with pytest.raises(ValueError, match="truncate_dim must be an integer from 1 to 32"):
        embed_dataset(corpus, tmp_path / "x", tiny_bert_bundle, truncate_dim=33, progress=False)
    with pytest.raises(ValueError, match="invalid precision 'int4'"):
        embed_dataset(corpus, tmp_path / "x", tiny_bert_bundle, precision="int4", progress=False)
    with pytest.raises(OutputError, match="precision"):
        embed_dataset(corpus, tmp_path / "q", tiny_bert_bundle, id_column="id", on_error="skip", progress=False)


def test_float16_column(corpus: Path, tiny_bert_bundle: Path, tmp_path: Path) -> None:
    floats = Embedder(tiny_bert_bundle, streams="auto").encode(TEXTS)
    embed_dataset(corpus, tmp_path / "half", tiny_bert_bundle, id_column="id", on_error="skip", rows_per_part=25,
                  precision="float16", progress=False)  # fmt: skip
    table = pq.read_table(tmp_path / "half")
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), floats.shape[1])
    got = table["embedding"].combine_chunks().flatten().to_numpy().reshape(len(table), -1)
    np.testing.assert_array_equal(got, floats.astype(np.float16))  # rows in the input's order
    with pytest.raises(OutputError, match=r"option 'precision' \('float16' there, None now\)"):
        embed_dataset(corpus, tmp_path / "half", tiny_bert_bundle, id_column="id", on_error="skip", rows_per_part=25,
                      progress=False)  # fmt: skip
    assert main(["embed-dataset", str(corpus), str(tmp_path / "cli"), "-m", str(tiny_bert_bundle), "--id-column", "id",
                 "--on-error", "skip", "--precision", "float16", "--no-progress"]) == 0  # fmt: skip
    assert pq.read_table(tmp_path / "cli").equals(table)
