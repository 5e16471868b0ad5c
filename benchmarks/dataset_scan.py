"""The planning scan of an input of several large files: by the job's own process, by worker
processes of this machine (the local backend) and by Ray tasks on the cluster (the Ray backend);
the scan of one large compressed file, decompressed by the job's process or ahead of it by worker
processes; and what a ``where`` condition costs the reading of the parts.

    python -m benchmarks.dataset_scan [--wet WET.warc.wet.gz] [--copies 8] [--dump DUMP.xml.bz2]
        [--dump-copies 80] [--wet-copies 8] [--rounds 2] [--machine NAME]

- Scan: a folder of ``--copies`` links to a Common Crawl WET file (the default is the one
  ``benchmarks.dataset_warc`` writes, 30,000 pages, into ``benchmarks/.cache/dataset``), planned by
  a dry run of the job in a fresh process: the local backend with its files scanned in the job's
  process (``one process``: the thresholds of ``_sources.SCAN_ELSEWHERE_BYTES`` and of
  ``_unpack.SMALLEST`` raised past them, so that no worker decompresses them either) and
  in worker processes (``workers``), and the Ray backend (``ray``: a local Ray of this machine's
  CPUs started by the run, its start counted, as a user's first run pays it), alternating. The
  same rows each way.
- One large file: a dry run of the job (local backend, a fresh process) on a Wikipedia dump
  written as a multistream dump (``benchmarks.dataset_seek``'s ``make_multistream``: ``DUMP``'s
  pages ``--dump-copies`` times over, a bz2 stream every 100 pages; ``--wiki-text``) and on one WET
  file of the WET file's records ``--wet-copies`` times over (its copies one after another: a gzip
  member a record), decompressed by the job's process alone (``one process``: the
  threshold of ``_unpack.SMALLEST`` raised past them) and ahead of its scan by worker processes
  (``ahead``), alternating. ``DUMP``: the shortened English Wikipedia dump in gensim 4.4.0's wheel
  (``benchmarks.dataset_wiki`` says how to get it); without it, a multistream dump made by an
  earlier run (in ``benchmarks/.cache/dataset``), else the dump is left out.
- Reading with a condition: the WET file's parts read as the job reads them (``JobSettings.slices``:
  the rows' texts and columns, no model), with no condition, with one that keeps every row and with
  one that keeps some (``language LIKE 'eng%' AND length(text) > 1500``), alternating.

Best and worst of ``--rounds``, in seconds. Writes ``benchmarks/results/dataset-scan-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model
from benchmarks.dataset_seek import make_multistream
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent
CONDITIONS = {"none": None, "every row": "length(text) >= 0", "some rows": "language LIKE 'eng%' AND length(text) > 1500"}


HOW = {"one process": ("local", True), "workers": ("local", False), "ray": ("ray", False)}
ONE_FILE = {"one process": "_unpack.SMALLEST = {'.bz2': 1 << 60, '.gz': 1 << 60}\n", "ahead": ""}


def _dry_run(folder: str, how: str, bundle: str) -> tuple[float, int]:
    """A dry run's seconds and rows, in a fresh process (Ray started and stopped by it)."""
    backend, alone = HOW[how]
    return _timed_dry_run(folder, bundle, "_sources.SCAN_ELSEWHERE_BYTES = 1 << 60\n" + ONE_FILE["one process"] if alone
                          else "", f"id_column='url', backend={backend!r}")  # fmt: skip


def _timed_dry_run(src: str, bundle: str, setup: str, options: str) -> tuple[float, int]:
    code = ("import sys, time, tempfile; from embedrt.dataset import embed_dataset, _sources, _unpack\n" + setup
            + "t = time.perf_counter()\nwith tempfile.TemporaryDirectory() as out:\n"
            f"    s = embed_dataset(sys.argv[1], out + '/o', sys.argv[2], {options}, dry_run=True, progress=False)\n"
            "print(time.perf_counter() - t, s.rows)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, src, bundle], check=True, capture_output=True,
                         text=True).stdout.split()  # fmt: skip
    return float(out[-2]), int(out[-1])


def _one_file(files: dict[str, tuple[Path, str]], bundle: str, rounds: int) -> dict[str, Any]:
    """Each file's dry run, decompressed by the job's process alone and ahead by worker processes, alternating."""
    found: dict[str, Any] = {}
    for name, (src, options) in files.items():
        times: dict[str, list[float]] = {how: [] for how in ONE_FILE}
        rows: dict[str, int] = {}
        for r in range(rounds):
            for how, setup in ONE_FILE.items():
                seconds, rows[how] = _timed_dry_run(str(src), bundle, setup, options)
                times[how].append(seconds)
                print(f"  round {r}: {name} {how} {seconds:.1f} s, {rows[how]} rows", flush=True)
        assert len(set(rows.values())) == 1
        found[name] = {"file": src.name, "mb": src.stat().st_size / 1e6, "rows": rows["ahead"],
                       "seconds": {how: [min(t), max(t)] for how, t in times.items()},
                       "ratio_best": min(times["one process"]) / min(times["ahead"])}  # fmt: skip
    return found


def _reading(wet: Path, rounds: int) -> dict[str, Any]:
    from embedrt.dataset._job import JobSettings
    from embedrt.dataset._sources import plan_input

    plan = plan_input(str(wet), 10_000, text="text", id_column="url", keep_columns=("language",))
    times: dict[str, list[float]] = {name: [] for name in CONDITIONS}
    rows: dict[str, int] = {}
    for _ in range(rounds):
        for name, where in CONDITIONS.items():
            job = JobSettings.checked("text", "url", "", "fail", 32, 10_000, False, None, None, where=where)
            t0 = time.perf_counter()
            rows[name] = sum(t.num_rows for p in plan.parts for t in job.slices(plan, p))
            times[name].append(time.perf_counter() - t0)
    return {name: {"where": CONDITIONS[name], "rows": rows[name], "seconds": [min(t), max(t)]} for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wet", type=Path, default=CACHE / "crawl-30000.warc.wet.gz")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--dump", type=Path, help="a MediaWiki export (.xml.bz2) made into one large multistream dump")
    p.add_argument("--dump-copies", type=int, default=80)
    p.add_argument("--wet-copies", type=int, default=8)
    p.add_argument("--bundle", default=str(HERE / ".cache" / "artifacts" / "bundle-int8"),
                   help="any bundle (a dry run loads no model; the job checks it)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    if not args.wet.exists():
        raise SystemExit(f"{args.wet} is missing: python -m benchmarks.dataset_warc BUNDLE writes it")
    scans: dict[str, list[float]] = {how: [] for how in HOW}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.copies):
            (Path(folder) / f"c{k}.warc.wet.gz").symlink_to(args.wet.resolve())
        for r in range(args.rounds):
            for how in scans:
                seconds, rows[how] = _dry_run(folder, how, args.bundle)
                scans[how].append(seconds)
                print(f"  round {r}: {how} {seconds:.1f} s, {rows[how]} rows", flush=True)
    assert len(set(rows.values())) == 1
    one: dict[str, tuple[Path, str]] = {}
    wiki = CACHE / f"{(args.dump.name if args.dump else 'enwiki-shortened').split('.')[0]}-x{args.dump_copies}-multistream.xml.bz2"
    if args.dump is not None and not wiki.exists():
        make_multistream(wiki, args.dump, args.dump_copies)
    if wiki.exists():
        one["wikipedia_multistream"] = (wiki, "wiki_text=True")
    wet = CACHE / f"{args.wet.name.split('.')[0]}-x{args.wet_copies}.warc.wet.gz"
    if not wet.exists():
        with open(wet.with_suffix(".tmp"), "wb") as f:
            for _ in range(args.wet_copies):
                f.write(args.wet.read_bytes())
        wet.with_suffix(".tmp").replace(wet)
    one["wet"] = (wet, "id_column='url'")
    one_file = _one_file(one, args.bundle, args.rounds)
    reading = _reading(args.wet, args.rounds + 1)
    print(f"  reading: {reading}", flush=True)
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-scan-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_scan " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "files": args.copies, "file_mb": args.wet.stat().st_size / 1e6, "rows": rows["ray"],
        "scan_seconds": {b: [min(t), max(t)] for b, t in scans.items()},
        "scan_ratio_best": {b: min(scans["one process"]) / min(t) for b, t in scans.items()},
        "one_file": one_file, "reading": reading,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
