"""The planning scan of several large files in worker processes (the local backend): the same plan
as this process's own scan, file for file, and a file's error raised as that scan raises it."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from embedrt._session import available_cpus  # noqa: E402
from embedrt.dataset import InputError, _sources, embed_dataset  # noqa: E402
from embedrt.dataset._scan_workers import ProcessScans  # noqa: E402

TEXTS = [f"text {i} " + "word " * (i % 13) for i in range(130)]


def _folder(path: Path) -> Path:
    path.mkdir()
    for k in range(3):  # compressed a member each 40 rows: the seek points come from the workers too
        with open(path / f"f{k}.jsonl.gz", "wb") as f:
            for a in range(0, len(TEXTS), 40):
                f.write(gzip.compress("".join(json.dumps({"key": f"{k}-{i}", "text": TEXTS[i]}) + "\n"
                                              for i in range(a, min(a + 40, len(TEXTS)))).encode()))  # fmt: skip
    return path


def test_files_scanned_in_workers_plan_as_this_process(tmp_path: Path, tiny_bert_bundle: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    folder = _folder(tmp_path / "in")
    common: dict[str, Any] = {"id_column": "key", "rows_per_part": 50, "progress": False}
    here = embed_dataset(folder, tmp_path / "here", tiny_bert_bundle, **common)  # small files: scanned here
    monkeypatch.setattr(_sources, "SCAN_ELSEWHERE_BYTES", 0)  # these too
    said: list[str] = []
    workers = embed_dataset(folder, tmp_path / "workers", tiny_bert_bundle, log=said.append, **common)
    if available_cpus() > 1:
        assert any(re.fullmatch(r"scanning 3 file\(s\) in worker processes, \d+ at once", m) for m in said), said
    assert (workers.written, workers.parts) == (here.written, here.parts) == (390, 9)
    record = json.loads((tmp_path / "workers" / "_manifest.json").read_text())["input"]
    assert record == json.loads((tmp_path / "here" / "_manifest.json").read_text())["input"]
    assert pq.read_table(tmp_path / "workers").equals(pq.read_table(tmp_path / "here"))
    (folder / "f1.jsonl.gz").write_bytes(b"not gzip at all")
    for damaged in (b"not gzip at all", gzip.compress('{"key": "k", "text": "UTF-16"}\n'.encode("utf-16"))):
        (folder / "f1.jsonl.gz").write_bytes(damaged)
        monkeypatch.setattr(_sources, "SCAN_ELSEWHERE_BYTES", 1 << 40)
        with pytest.raises(Exception) as own:
            embed_dataset(folder, tmp_path / "bad-here", tiny_bert_bundle, **common)
        monkeypatch.setattr(_sources, "SCAN_ELSEWHERE_BYTES", 0)
        with pytest.raises(type(own.value), match=re.escape(str(own.value))):
            embed_dataset(folder, tmp_path / "bad-workers", tiny_bert_bundle, **common)
    assert isinstance(own.value, InputError)


def test_process_scans_end_their_workers(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "in")
    scans = ProcessScans()
    found = scans.scan(str(folder / "f0.jsonl.gz"), _sources.InputFormat.JSONL, _sources._Cuts(50, False), None,
                       ("key",), False)  # fmt: skip
    assert found[0].rows == 130 and len(found[1]) == 3 and found[3] == {"key": {"str"}}
    procs = list(scans._all)
    scans.close()
    assert procs and all(p.poll() is not None for p in procs)
