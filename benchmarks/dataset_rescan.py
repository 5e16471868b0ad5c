"""What a run over a corpus it has mostly embedded costs: planning reads only the files that changed
since the scan recorded in OUTPUT, against reading and hashing every file (``rescan=True``, and an
older embedrt with ``--before``).

    python -m benchmarks.dataset_rescan (BUNDLE | --tiny-from MODEL_DIR) [--shards 20] [--rows 50000]
        [--added 1000] [--rounds 2] [--id-column id] [--s3] [--before PYTHONPATH] [--machine NAME]

Writes ``--shards`` JSONL shards of ``--rows`` rows of the benchmark corpus (``benchmarks.dataset``),
waits until they count as settled (``_scan_record.SETTLED_S``) and embeds them into a folder (a fresh
process; ``--tiny-from``: a one-layer, 32-wide random BERT with MODEL_DIR's tokenizer, so that the
model costs next to nothing and the job's own work shows). Then, per round and variant in turn, on a
fresh copy of that folder, in a fresh process, times ``embed_dataset`` (ids: row numbers, or with
``--id-column id`` the corpus's own, whose JSON types planning finds by reading every row) for two
cases:

- ``unchanged``: the same corpus again (a scheduled run with nothing new, or a resume of a run
  killed while writing its last part);
- ``grown``: after a shard of ``--added`` other rows landed, sorting after the others (a daily batch).

``--s3``: the shards are objects on moto's S3 server on localhost (a process of its own, sharing the
cores; no network latency, so what a download costs here is a floor), the output a local folder.

Variants: ``record`` (the default), ``rescan`` (``rescan=True``: every file read and hashed) and,
with ``--before PYTHONPATH`` (a folder holding an older ``embedrt`` package), that version (the copy
without ``_input_scan.json``, which it does not know). Writes
``benchmarks/results/dataset-rescan-<machine>-<date>.json`` with every run and the CPU flags.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import _BUCKET, CACHE, cpu_flags, cpu_model, generate, run_child, s3_endpoint
from benchmarks.dataset_memory import tiny_bundle
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, corpus: str, out: str, rows_per_part: int, rescan: bool, id_column: str) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    kw: dict[str, Any] = {"rows_per_part": rows_per_part, "id_column": id_column or None, "progress": False}
    if rescan:
        kw["rescan"] = True
    t0 = time.perf_counter()
    s = embed_dataset(corpus, out, bundle, **kw)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "rows_embedded": s.rows_embedded,
            "parts": s.parts, "parts_resumed": s.parts_resumed, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _run(bundle: str, corpus: str, out: Path, rows_per_part: int, id_column: str, rescan: bool = False,
         pythonpath: str | None = None) -> dict[str, Any]:  # fmt: skip
    return run_child("benchmarks.dataset_rescan", [bundle, str(corpus), str(out), str(rows_per_part),
                                                   str(int(rescan)), id_column], pythonpath)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], int(argv[4]), argv[5] == "1", argv[6])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("bundle", nargs="?")
    which.add_argument("--tiny-from", metavar="MODEL_DIR")
    p.add_argument("--shards", type=int, default=20)
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--added", type=int, default=1000)
    p.add_argument("--rows-per-part", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--id-column", default="", help="'id': the corpus's own ids (JSONL: planning reads every row's)")
    p.add_argument("--s3", action="store_true", help="the shards on moto's S3 server on localhost")
    p.add_argument("--before", default=None, help="PYTHONPATH of an older embedrt, as a third variant")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    from embedrt.dataset._scan_record import NAME, SETTLED_S

    bundle = str(args.bundle or tiny_bundle(args.tiny_from))
    work = CACHE / f"rescan-{os.getpid()}"
    shards, base = work / "shards", work / "base"
    shards.mkdir(parents=True)
    variants = ["record", "rescan"] + (["before"] if args.before else [])
    server = s3_endpoint() if args.s3 else None
    corpus = f"s3://{_BUCKET}/rescan-{os.getpid()}/" if args.s3 else str(shards)

    def put(name: str, text: str) -> None:
        if not args.s3:
            (shards / name).write_text(text)
            return
        import pyarrow.fs

        fs = pyarrow.fs.FileSystem.from_uri(corpus)[0]
        with fs.open_output_stream(f"{corpus[5:]}{name}", compression=None) as f:
            f.write(text.encode())

    def remove(name: str) -> None:
        if not args.s3:
            (shards / name).unlink(missing_ok=True)
            return
        import pyarrow.fs

        pyarrow.fs.FileSystem.from_uri(corpus)[0].delete_file(f"{corpus[5:]}{name}")

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {case: {v: [] for v in variants} for case in ("unchanged", "grown")}
    try:
        with generate(args.shards * args.rows + args.added).open(encoding="utf-8") as src:
            lines = src.readlines()
        size = 0
        for i in range(args.shards):
            text = "".join(lines[i * args.rows:(i + 1) * args.rows])
            put(f"part-{i:05d}.jsonl", text)
            size += len(text.encode())
        time.sleep(SETTLED_S + 1)  # written long enough before the scan to be recorded
        first = _run(bundle, corpus, base, args.rows_per_part, args.id_column)
        print(f"  first run ({size / 1e6:.0f} MB of JSONL): {first}", flush=True)
        for r in range(args.rounds):
            for case in ("unchanged", "grown"):
                if case == "grown":
                    put("part-99999.jsonl", "".join(lines[args.shards * args.rows:]))
                for v in variants:
                    out = work / f"out-{v}"
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.copytree(base, out)
                    if v == "before":
                        (out / NAME).unlink(missing_ok=True)
                    got = _run(bundle, corpus, out, args.rows_per_part, args.id_column, rescan=v == "rescan",
                               pythonpath=args.before if v == "before" else None)  # fmt: skip
                    runs[case][v].append(got)
                    print(f"  round {r + 1}, {case}, {v}: {got['seconds']:.2f} s ({got['rows_embedded']} rows "
                          f"embedded, {got['parts_resumed']} parts kept)", flush=True)  # fmt: skip
                if case == "grown":
                    remove("part-99999.jsonl")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.kill()
    best = {case: {v: min(x["seconds"] for x in r) for v, r in by.items()} for case, by in runs.items()}
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-rescan-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_rescan " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "bundle": bundle, "shards": args.shards, "rows_per_shard": args.rows, "added_rows": args.added,
        "input_bytes": size, "s3": args.s3, "rows_per_part": args.rows_per_part, "id_column": args.id_column or None, "first_run": first, "best_seconds": best,
        "runs": runs,
    })  # fmt: skip
    for case, by in best.items():
        print(f"{case}: " + ", ".join(f"{v} {s:.2f} s" for v, s in by.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
