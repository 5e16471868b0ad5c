"""Archives of documents through the corpus job (``archives``), a zip and a ``.tar.gz``, beside the
same documents as a folder of files: what reading them from an archive costs, locally and on object
storage.

    python -m benchmarks.dataset_zip BUNDLE [--docs 2000] [--rounds 2] [--s3-latency-ms MS]
        [--machine NAME]

The documents are ``--docs`` Markdown files of two benchmark sentences each (``benchmarks.dataset``),
a hundred a folder, made once in the benchmarks' cache with their archives (a deflated zip, a
gzipped tar) beside. Each round runs, alternating, the job on the folder (``documents``) and on
each archive (``documents``, ``archives``), each in a fresh process with the job's defaults into a new output,
then again with nothing to do: seconds, peak RSS, rows and parts; each archive's output is compared
with the folder's (rows and vectors). With ``--s3-latency-ms`` both are objects on S3 instead (moto's server in
this process, each request held ``MS`` milliseconds, a region's round trip, and counted by its
method: what each run asked the store for, the output's own requests included; the outputs are
objects too). Writes ``benchmarks/results/dataset-zip-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import sys
import tarfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate, run_child
from benchmarks.dataset_small_files import s3_server, upload
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, src: str, out: str, archives: str) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, documents=True, archives=archives == "1", progress=False)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "rows_embedded": s.rows_embedded, "parts": s.parts,
            "bad_rows": s.bad_rows, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _inputs(docs: int) -> tuple[Path, Path]:
    """The folder of documents and the folder holding their archives, written once (each a temporary
    folder, then renamed: a folder that is there is whole)."""
    folder, zipped = CACHE / f"zip-docs-{docs}", CACHE / f"zip-docs-{docs}-zip"
    if folder.is_dir() and zipped.is_dir():
        return folder, zipped
    rows = [json.loads(line)["text"] for line in generate(2 * docs).read_text(encoding="utf-8").splitlines()]
    texts = {f"{i // 100:03d}/{i:06d}.md": f"# Note {i}\n\n{rows[2 * i]}\n{rows[2 * i + 1]}\n" for i in range(docs)}
    for target in (folder, zipped):
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if target is zipped:
            with zipfile.ZipFile(tmp / "docs.zip", "w", zipfile.ZIP_DEFLATED) as z:
                for name, text in texts.items():
                    z.writestr(name, text)
            with tarfile.open(tmp / "docs.tar.gz", "w:gz") as t:
                for name, text in texts.items():
                    data = text.encode()
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        else:
            for name, text in texts.items():
                (tmp / name).parent.mkdir(exist_ok=True)
                (tmp / name).write_text(text, encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return folder, zipped


def _same(a: str, b: str, archive: str) -> bool:
    """Whether two outputs hold the same vectors for the same documents (``archive``'s paths without
    its name)."""
    import numpy as np
    import pyarrow.parquet as pq

    x, y = (pq.read_table(o).sort_by("id") for o in (a, b))
    ids = [i.removeprefix(f"{archive}/") for i in y.column("id").to_pylist()]
    vx, vy = (np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in (x, y))
    return ids == x.column("id").to_pylist() and bool(np.allclose(vx, vy, atol=1e-5))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(*argv[1:5])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--s3-latency-ms", type=float, default=None, help="read and write on S3 (moto) this late a request")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    counts: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        if args.s3_latency_ms is not None:
            stack.enter_context(s3_server(args.s3_latency_ms, counts))
        return _run(args, argv, counts)


def _run(args: argparse.Namespace, argv: list[str], counts: Counter[str]) -> int:
    folder, zipped = _inputs(args.docs)
    for f in [*folder.rglob("*.md"), *zipped.iterdir()]:  # in the page cache before the first step
        f.read_bytes()
    remote = args.s3_latency_ms is not None
    sources = {"files": str(folder), "zip": str(zipped / "docs.zip"), "tgz": str(zipped / "docs.tar.gz")}
    work = CACHE / f"zip-out-{os.getpid()}"
    if remote:
        import pyarrow.fs

        fs = pyarrow.fs.FileSystem.from_uri("s3://corpus?allow_bucket_creation=true")[0]
        fs.create_dir("corpus")
        fs.create_dir("vectors")
        upload(folder, "s3://corpus/files", "*.md")
        upload(zipped, "s3://corpus/archives", "docs.*")
        sources = {"files": "s3://corpus/files/", "zip": "s3://corpus/archives/docs.zip",
                   "tgz": "s3://corpus/archives/docs.tar.gz"}
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in sources}
    same = []
    try:
        for r in range(args.rounds):
            outs = {}
            for v, src in sources.items():
                out = outs[v] = f"s3://vectors/{v}-{r}" if remote else str(work / f"{v}-{r}")
                child = [args.bundle, src, out, "0" if v == "files" else "1"]
                counts.clear()
                run = run_child("benchmarks.dataset_zip", child)
                run["requests"] = dict(counts)
                counts.clear()
                run["again"] = run_child("benchmarks.dataset_zip", child)
                run["again"]["requests"] = dict(counts)
                results[v].append(run)
                print(f"  round {r} {v}: {run}", flush=True)
            same.append({v: _same(outs["files"], outs[v], Path(sources[v]).name) for v in ("zip", "tgz")})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {v: {"seconds": min(run["seconds"] for run in runs), "again_seconds": min(run["again"]["seconds"] for run in runs),
                "requests": runs[0]["requests"], "again_requests": runs[0]["again"]["requests"]}
            for v, runs in results.items()}  # fmt: skip
    date = datetime.date.today().strftime("%Y%m%d")
    where = "-s3" if remote else ""
    write_json(HERE / "results" / f"dataset-zip-{args.machine}{where}-{date}.json", {
        "command": "python -m benchmarks.dataset_zip " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "docs": args.docs, "s3_latency_ms": args.s3_latency_ms, "rounds": results, "same_output": same, "best": best,
    })  # fmt: skip
    print(json.dumps({"best": best, "same_output": same}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
