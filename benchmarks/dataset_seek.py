"""Reading the parts of a file compressed a member at a time from the member before each part (the
seek points the planning scan keeps), against decompressing from the file's start: what a Ray
actor's parts, far apart in the file, and a resumed job's first part cost.

    python -m benchmarks.dataset_seek --dump DUMP.xml.bz2 [--copies 20] [--wet WET.warc.gz] [--workers 4]
        [--rounds 3] [--machine NAME]

Inputs, each planned once (``--wiki-text`` for the dump, a row per article; parts of 1,000 rows for
the WET file, 100 articles for the dump), then read part by part by ``--workers`` readers in turn,
each taking every ``workers``-th part in rising order with a reader of its own, as Ray's actors
take them (only the bytes of the part: no parsing, no model), with the plan's seek points and
without; and the last part alone, as a resumed job whose other parts are done. Best of
``--rounds``, in seconds.

- ``DUMP``: a MediaWiki export (``.xml.bz2``), rewritten as Wikipedia writes its multistream dumps
  (``pages-articles-multistream.xml.bz2``: the header a bz2 stream, then a stream every 100
  pages, then the footer), its pages ``--copies`` times over. The README's figures: the shortened
  English Wikipedia dump in gensim 4.4.0's wheel (``benchmarks.dataset_wiki`` says how to get it).
- ``WET``: a Common Crawl WET file (a gzip member a record); the default is the one
  ``benchmarks.dataset_warc`` writes (30,000 pages) into ``benchmarks/.cache/dataset``.

Writes ``benchmarks/results/dataset-seek-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import bz2
import datetime
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent
_PAGE = re.compile(rb"(?m)^(?=[ \t]*<page>)")


def make_multistream(path: Path, dump: Path, copies: int) -> None:
    """``dump``'s pages ``copies`` times over, a bz2 stream for its header, every 100 pages, its footer."""
    data = bz2.decompress(dump.read_bytes())
    starts = [m.start() for m in _PAGE.finditer(data)]
    end = data.rindex(b"</mediawiki>")
    pages = [data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)] * copies
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(bz2.compress(data[: starts[0]]))
        for k in range(0, len(pages), 100):
            f.write(bz2.compress(b"".join(pages[k : k + 100])))
        f.write(bz2.compress(data[end:]))
    os.replace(tmp, path)


def _read_parts(plan: Any, parts: list[Any], seeks: bool) -> int:
    """Read each part's bytes (to the next part's start) with one reader, in order; bytes read."""
    from embedrt.dataset import _storage as storage

    shard, n = plan.shards[0], 0
    try:
        for part in parts:
            nxt = plan.parts[part.index + 1].byte_offset if part.index + 1 < len(plan.parts) else shard.size
            with storage.reading(shard.path, shard.seeks if seeks else ()) as f:
                f.seek(part.byte_offset)
                n += len(f.read(nxt - part.byte_offset))
    finally:
        storage.release()
    return n


def _measure(plan: Any, workers: int, rounds: int) -> dict[str, Any]:
    parts = plan.parts
    out: dict[str, Any] = {"parts": len(parts), "members_kept": len(plan.shards[0].seeks)}
    for how, seeks in (("seek_points", True), ("from_start", False)):
        actors, last = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for w in range(workers):
                _read_parts(plan, parts[w::workers], seeks)
            actors.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _read_parts(plan, parts[-1:], seeks)
            last.append(time.perf_counter() - t0)
        out[how] = {"actors_seconds": min(actors), "last_part_seconds": min(last)}
    out["actors_ratio"] = out["from_start"]["actors_seconds"] / out["seek_points"]["actors_seconds"]
    out["last_part_ratio"] = out["from_start"]["last_part_seconds"] / out["seek_points"]["last_part_seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", type=Path, required=True)
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--wet", type=Path, default=CACHE / "crawl-30000.warc.wet.gz")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    from embedrt.dataset._sources import plan_input

    CACHE.mkdir(parents=True, exist_ok=True)
    wiki = CACHE / f"{args.dump.name.split('.')[0]}-x{args.copies}-multistream.xml.bz2"
    if not wiki.exists():
        make_multistream(wiki, args.dump, args.copies)
    results: dict[str, Any] = {}
    for name, src, per, kw in (("wikipedia_multistream", wiki, 100, {"as_text": ("wiki",), "xml_records": ("page",)}),
                               ("wet", args.wet, 1000, {})):  # fmt: skip
        t0 = time.perf_counter()
        plan = plan_input(str(src), per, text="text", id_column=None, keep_columns=(), **kw)
        scan = time.perf_counter() - t0
        results[name] = {"file": src.name, "compressed_mb": src.stat().st_size / 1e6, "mb": plan.shards[0].size / 1e6,
                         "rows": plan.rows, "scan_seconds": scan, **_measure(plan, args.workers, args.rounds)}  # fmt: skip
        print(f"  {name}: {results[name]}", flush=True)
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-seek-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_seek " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "workers": args.workers, "results": results,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
