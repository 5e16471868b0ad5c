"""A corpus of shards that grows: a shard lands before the others in the input's sorted order (as
Spark's ``part-00000-<UUID>`` files or hash-named shards do), and the same job is run again.

    python -m benchmarks.dataset_moves BUNDLE [--shards 20] [--rows 1000] [--rows-per-part 1000]
        [--id-column id] [--before PYTHONPATH] [--machine NAME]

Writes ``--shards`` JSONL shards of ``--rows`` rows of the benchmark corpus (``benchmarks.dataset``),
named ``part-NNNNN-<hex>.jsonl``, embeds them into a folder (a fresh process), adds one shard of
``--rows`` other rows whose name sorts first, and runs the job again on that folder (a fresh
process): the seconds, rows embedded and parts kept of that second run. ``--before PYTHONPATH``
runs the second run a second time, on a copy of the first run's folder (without
``_input_scan.json``, which it does not know), with an older embedrt on the path (``PYTHONPATH=DIR`` holding an ``embedrt`` package); where that one refuses the folder (no
finished part matches), it is run with ``overwrite=True`` too, and both tables are compared. Ids are row numbers unless
``--id-column id`` (the corpus's ``doc-N``). Writes
``benchmarks/results/dataset-moves-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate, run_child, same_table
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, corpus: str, out: str, rows_per_part: int, id_column: str, overwrite: bool) -> dict[str, Any]:
    from embedrt.dataset import OutputError, embed_dataset

    t0 = time.perf_counter()
    kw: dict[str, Any] = {"rows_per_part": rows_per_part, "id_column": id_column or None, "progress": False}
    try:
        s = embed_dataset(corpus, out, bundle, overwrite=overwrite, **kw)
    except OutputError as e:  # an embedrt that finds no finished part of this input refuses the folder
        return {"refused": str(e), "seconds": time.perf_counter() - t0}
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "rows_embedded": s.rows_embedded,
            "parts": s.parts, "parts_resumed": s.parts_resumed, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _run(args: argparse.Namespace, corpus: Path, out: Path, pythonpath: str | None = None,
         overwrite: bool = False) -> dict[str, Any]:  # fmt: skip
    return run_child("benchmarks.dataset_moves", [args.bundle, str(corpus), str(out), str(args.rows_per_part),
                                                  args.id_column, str(int(overwrite))], pythonpath)  # fmt: skip


def _shard_name(i: int, batch: str) -> str:
    return f"part-{i:05d}-{hashlib.sha1(f'{batch}{i}'.encode()).hexdigest()[:12]}.jsonl"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], int(argv[4]), argv[5], argv[6] == "1")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--shards", type=int, default=20)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--rows-per-part", type=int, default=1000)
    p.add_argument("--id-column", default="")
    p.add_argument("--before", default=None, help="PYTHONPATH of an older embedrt, for the second run again")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    work = CACHE / f"moves-{os.getpid()}"
    shards, out = work / "shards", work / "out"
    shards.mkdir(parents=True)
    try:
        with generate((args.shards + 1) * args.rows).open(encoding="utf-8") as src:
            lines = src.readlines()
        for i in range(args.shards):
            (shards / _shard_name(i, "first")).write_text("".join(lines[i * args.rows:(i + 1) * args.rows]))
        first = _run(args, shards, out)
        print(f"  first run: {first}", flush=True)
        added = "part-00000-000000000000.jsonl"  # a later batch's first shard, sorting before every other
        assert added < min(os.listdir(shards))
        (shards / added).write_text("".join(lines[args.shards * args.rows:]))
        before = None
        if args.before:
            shutil.copytree(out, work / "out-before")
            (work / "out-before" / "_input_scan.json").unlink(missing_ok=True)  # an older embedrt refuses it
        again = _run(args, shards, out)
        print(f"  after a shard landed first: {again}", flush=True)
        if args.before:
            before = _run(args, shards, work / "out-before", args.before)
            print(f"  the same with {args.before}: {before}", flush=True)
            if "refused" in before:  # what that embedrt leaves to do: the whole corpus again
                before["overwrite"] = _run(args, shards, work / "out-before", args.before, overwrite=True)
                print(f"  and with overwrite=True: {before['overwrite']}", flush=True)
            same = same_table(out, work / "out-before")
            print(f"  both folders hold the same table: {same}")
            before["same_table"] = same
    finally:
        shutil.rmtree(work, ignore_errors=True)
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-moves-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_moves " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "shards": args.shards, "rows_per_shard": args.rows, "rows_per_part": args.rows_per_part,
        "id_column": args.id_column or None, "first_run": first, "second_run": again, "second_run_before": before,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
