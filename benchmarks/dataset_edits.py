"""A corpus exported again in place with rows deleted and inserted anywhere (a nightly export of a
table whose rows come and go), and the same job run again: parts cut every ``--rows-per-part`` rows
against content-defined parts.

    python -m benchmarks.dataset_edits BUNDLE [--rows 100000] [--rows-per-part 10000]
        [--deleted 20] [--inserted 20] [--id-column id] [--check] [--machine NAME]

Writes one JSONL file of ``--rows`` rows of the benchmark corpus (``benchmarks.dataset``), embeds it
(a fresh process) with fixed parts and with content-defined ones, then deletes ``--deleted`` rows
and inserts ``--inserted`` others at places drawn with a fixed seed, and runs each job again on
its folder (a fresh process): the seconds, rows embedded, parts kept and moved. Where the fixed
job refuses the folder (no finished part matches: a row deleted in the first part shifts every
later one), it is run again with ``overwrite=True``. ``--check``: both folders are then compared
with a clean run of the edited file (the same table). Writes ``benchmarks/results/dataset-edits-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate, run_child, same_table
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, corpus: str, out: str, rows_per_part: int, id_column: str, content: bool,
           overwrite: bool) -> dict[str, Any]:  # fmt: skip
    from embedrt.dataset import OutputError, embed_dataset

    t0 = time.perf_counter()
    kw: dict[str, Any] = {"rows_per_part": rows_per_part, "id_column": id_column or None, "progress": False,
                          "content_defined_parts": content, "overwrite": overwrite}  # fmt: skip
    try:
        s = embed_dataset(corpus, out, bundle, **kw)
    except OutputError as e:
        return {"refused": str(e), "seconds": time.perf_counter() - t0}
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "rows_embedded": s.rows_embedded, "parts": s.parts,
            "parts_resumed": s.parts_resumed, "parts_moved": s.parts_moved, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _run(args: argparse.Namespace, corpus: Path, out: Path, content: bool, overwrite: bool = False) -> dict[str, Any]:
    return run_child("benchmarks.dataset_edits", [args.bundle, str(corpus), str(out), str(args.rows_per_part),
                                                  args.id_column, str(int(content)), str(int(overwrite))])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], int(argv[4]), argv[5], argv[6] == "1", argv[7] == "1")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--rows-per-part", type=int, default=10_000)
    p.add_argument("--deleted", type=int, default=20)
    p.add_argument("--inserted", type=int, default=20)
    p.add_argument("--id-column", default="")
    p.add_argument("--check", action="store_true", help="compare each folder with a clean run of the edited file")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    work = CACHE / f"edits-{os.getpid()}"
    work.mkdir(parents=True)
    corpus = work / "in" / "export.jsonl"
    corpus.parent.mkdir()
    results: dict[str, Any] = {}
    try:
        with generate(args.rows + args.inserted).open(encoding="utf-8") as src:
            lines = src.readlines()
        rows, extra = lines[:args.rows], lines[args.rows:]
        corpus.write_text("".join(rows))
        for name, content in (("fixed", False), ("content", True)):
            results[name] = {"first_run": _run(args, corpus, work / name, content)}
            print(f"  {name}, first run: {results[name]['first_run']}", flush=True)
        rng = random.Random(0)
        for i in sorted(rng.sample(range(len(rows)), args.deleted), reverse=True):
            del rows[i]
        for line in extra:
            rows.insert(rng.randrange(len(rows) + 1), line)
        corpus.write_text("".join(rows))
        for name, content in (("fixed", False), ("content", True)):
            again = _run(args, corpus, work / name, content)
            if "refused" in again:  # what that job leaves to do: the whole file again
                again["overwrite"] = _run(args, corpus, work / name, content, overwrite=True)
            results[name]["after_edits"] = again
            print(f"  {name}, after the edits: {again}", flush=True)
            if not args.check:
                continue
            results[name]["clean_run"] = _run(args, corpus, work / f"{name}-clean", content)
            results[name]["same_table_as_clean_run"] = same_table(work / name, work / f"{name}-clean")
            print(f"  {name}: the same table as a clean run: {results[name]['same_table_as_clean_run']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-edits-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_edits " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "rows": args.rows, "rows_per_part": args.rows_per_part, "deleted": args.deleted, "inserted": args.inserted,
        "id_column": args.id_column or None, **results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
