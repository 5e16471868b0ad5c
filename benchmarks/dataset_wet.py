"""A Common Crawl WET file embedded by the corpus job, a row per page, against the same pages' texts
and urls as a JSONL file: what reading WARC records costs the job.

    python -m benchmarks.dataset_wet BUNDLE [--records 30000] [--first 1000] [--rounds 3] [--machine NAME]

The WET file is written as Common Crawl writes them (a ``warcinfo`` record, then ``conversion``
records, a gzip member a record; in ``benchmarks/.cache/dataset``, made once per size): each page
one to six of the README's paragraphs. In this process: the planning scan of the whole file and the
reading of every record alone (best of 3). Then the job on its first ``--first`` pages and on the
same texts and urls as JSONL, each in a fresh process, the two alternating: seconds, rows, tokens,
peak RSS. Writes ``benchmarks/results/dataset-wet-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, run_child, same_table
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _record(fields: list[tuple[str, str]], content: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in fields)
    return f"WARC/1.0\r\n{head}Content-Length: {len(content)}\r\n\r\n".encode() + content + b"\r\n\r\n"


def make_wet(path: Path, n: int) -> None:
    """``n`` pages as described above, the same for the same ``n``."""
    paragraphs = [p for p in (HERE.parent / "README.md").read_text().split("\n\n") if len(p) > 200]
    rnd = random.Random(0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(gzip.compress(_record([("WARC-Type", "warcinfo")], b"Software-Info: benchmarks.dataset_wet\r\n")))
        for i in range(n):
            text = "\n".join(rnd.sample(paragraphs, rnd.randint(1, 6))).encode()
            f.write(gzip.compress(_record([
                ("WARC-Type", "conversion"), ("WARC-Target-URI", f"https://example.org/{i}"),
                ("WARC-Date", "2024-02-21T10:00:00Z"), ("WARC-Record-ID", f"<urn:uuid:{i:012d}>"),
                ("WARC-Identified-Content-Language", "eng"), ("Content-Type", "text/plain")], text), 6))  # fmt: skip
    os.replace(tmp, path)


def _child(bundle: str, src: str, out: str) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, id_column="url", progress=False)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "tokens": s.tokens, "peak_rss_mb": peak_rss_mb()}


def _reading(src: Path) -> tuple[dict[str, float], list[dict[str, Any]]]:
    from embedrt.dataset import _warc
    from embedrt.dataset._sources import plan_input

    with gzip.open(src) as f:
        data = f.read()
    starts = [m.start() for m in _warc.OPENING.finditer(data)]
    records = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]
    scan, read = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        plan = plan_input(str(src), 10_000, text="text", id_column="url", keep_columns=())
        scan.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rows = [_warc.record_row(r)[0] for r in records if _warc.is_text_record(r)]
        read.append(time.perf_counter() - t0)
    mb = len(data) / 1e6
    return {"records": plan.rows, "megabytes": mb, "gzip_megabytes": src.stat().st_size / 1e6, "scan_seconds": min(scan),
            "read_seconds": min(read), "records_per_s": len(rows) / min(read), "mb_per_s": mb / min(read)}, rows  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--records", type=int, default=30_000)
    p.add_argument("--first", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    from embedrt.dataset import _warc

    CACHE.mkdir(parents=True, exist_ok=True)
    wet = CACHE / f"crawl-{args.records}.warc.wet.gz"
    if not wet.exists():
        make_wet(wet, args.records)
    reading, rows = _reading(wet)
    print(f"  reading alone: {reading}", flush=True)
    first = CACHE / f"crawl-{args.records}-first-{args.first}.warc.wet.gz"
    with gzip.open(wet) as f:  # the warcinfo record and the first pages, a gzip member each
        data = f.read()
    cut = [m.start() for m in _warc.OPENING.finditer(data)]
    first.write_bytes(gzip.compress(data[: cut[args.first + 1]]))
    jsonl = CACHE / f"crawl-{args.records}-first-{args.first}.jsonl"
    jsonl.write_text("".join(json.dumps({"url": r["url"], "text": r["text"]}) + "\n" for r in rows[: args.first]))
    work = CACHE / f"wet-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {"wet": [], "jsonl": []}
    try:
        for r in range(args.rounds):
            for name in (runs if r % 2 == 0 else list(runs)[::-1]):
                src = first if name == "wet" else jsonl
                run = run_child("benchmarks.dataset_wet", [args.bundle, str(src), str(work / f"{name}-{r}")])
                runs[name].append(run)
                print(f"  round {r}, {name}: {run}", flush=True)
        same = same_table(work / "wet-0", work / "jsonl-0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-wet-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_wet " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "records": args.records, "first": args.first, "reading_alone": reading, "runs": runs, "best_seconds": best,
        "wet_over_jsonl": best["wet"] / best["jsonl"], "same_table": same,
    })  # fmt: skip
    print(f"  best seconds {best}; same table: {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
