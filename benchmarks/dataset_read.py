"""The corpus job's input side alone: planning (count rows, cut parts, hash them) and reading every
part, for the plain JSONL benchmark corpus and the same file compressed.

    python -m benchmarks.dataset_read --rows 1000000 --codecs none .gz .zst --rounds 3
    python -m benchmarks.dataset_read --rows 500000 --codecs none .parquet .arrow --rounds 3

- Corpus: ``benchmarks.dataset.generate(rows)`` (unique texts from the frozen benchmark sentences,
  JSONL with a string id), compressed once per codec next to it (gzip level 9, zstd level 3), or
  converted: ``.parquet`` as pyarrow writes it by default (row groups of up to 1,048,576 rows, as
  pandas' ``to_parquet`` does), ``.arrow`` an Arrow stream of batches of 1,000 rows (as Hugging Face
  ``datasets`` writes its shards).
- Each round times, per codec in turn, ``plan_input`` (the scan that counts the rows and hashes every
  part) and then ``read_part`` of every part in order, as the local backend's reader thread does;
  the best round is kept. One process, one thread: no model runs, so this is what reading costs the
  job on top of embedding.

Writes ``benchmarks/results/dataset-read-<machine>-<date>.json`` with the CPU flags.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent


def compressed(plain: Path, codec: str) -> Path:
    if codec == "none":
        return plain
    out = CACHE / f"{plain.name}{codec}"
    if out.is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    if codec in (".parquet", ".arrow"):
        import pyarrow as pa
        import pyarrow.json
        import pyarrow.parquet as pq

        table = pyarrow.json.read_json(plain)
        if codec == ".parquet":
            pq.write_table(table, tmp)
        else:
            with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
                for b in table.to_batches(max_chunksize=1000):
                    w.write_batch(b)
        os.replace(tmp, out)
        return out
    with plain.open("rb") as src:
        if codec == ".zst":
            import zstandard

            with tmp.open("wb") as dst:
                zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
        else:
            opener: Any = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[codec]
            with opener(tmp, "wb") as dst:  # gzip at its default level 9 would take longer; fine for a cache
                shutil.copyfileobj(src, dst, 8 << 20)
    os.replace(tmp, out)
    return out


def measure(path: Path, rows_per_part: int) -> dict[str, Any]:
    from embedrt.dataset._readers import read_part
    from embedrt.dataset._sources import plan_input
    from embedrt.dataset._storage import release

    t0 = time.perf_counter()
    plan = plan_input(str(path), rows_per_part, text="text", id_column="id", keep_columns=())
    t1 = time.perf_counter()
    rows = sum(read_part(plan, p, "text", "id", ()).num_rows for p in plan.parts)
    t2 = time.perf_counter()
    release()
    return {"plan_s": t1 - t0, "read_s": t2 - t1, "rows": rows, "parts": len(plan.parts), "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rows-per-part", type=int, default=10_000)
    p.add_argument("--codecs", nargs="+", default=["none", ".gz", ".zst"], choices=["none", ".gz", ".bz2", ".xz", ".zst", ".parquet", ".arrow"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--machine", default=platform.node())
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    plain = generate(args.rows)
    files = {c: compressed(plain, c) for c in args.codecs}
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in args.codecs}
    for r in range(args.rounds):
        for c in args.codecs if r % 2 == 0 else args.codecs[::-1]:
            m = measure(files[c], args.rows_per_part)
            runs[c].append(m)
            print(f"  {c:>5}: plan {m['plan_s']:6.2f} s, read {m['parts']} parts {m['read_s']:6.2f} s "
                  f"({m['bytes'] / 1e6:.0f} MB)", flush=True)  # fmt: skip
    best = {c: {"plan_s": min(m["plan_s"] for m in ms), "read_s": min(m["read_s"] for m in ms),
                "bytes": ms[0]["bytes"]} for c, ms in runs.items()}  # fmt: skip
    report = {
        "machine": args.machine, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
        "command": "python -m benchmarks.dataset_read " + " ".join(argv),
        "rows": args.rows, "rows_per_part": args.rows_per_part, "best": best, "runs": runs,
    }  # fmt: skip
    out = HERE / "results" / f"dataset-read-{args.machine}-{time.strftime('%Y%m%d')}.json"
    write_json(out, report, indent=2)
    for c, b in best.items():
        print(f"best {c:>5}: plan {b['plan_s']:.2f} s, read {b['read_s']:.2f} s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
