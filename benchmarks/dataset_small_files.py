"""A folder of many small JSONL files (a day's logs by the minute, an export of a file per user)
through the corpus job: what the files cost beside the same rows in one file.

    python -m benchmarks.dataset_small_files BUNDLE [--files 10000] [--rows 10] [--rounds 2]
        [--before PYTHONPATH] [--s3-latency-ms MS] [--ray-actors N] [--machine NAME]

The folder holds ``--files`` JSONL files of ``--rows`` consecutive rows of the benchmark corpus
(``benchmarks.dataset``), a thousand a folder, made once in the benchmarks' cache with the same
rows as one file beside it, and both read once before the first step. Each round runs, alternating,
this embedrt on the folder, on the one file, and with ``--before PYTHONPATH`` (a folder holding an
older ``embedrt`` package) that version on the folder, each in a fresh process with the job's
defaults into a new output: the job (seconds, peak RSS, parts), the output's files and bytes,
the seconds pyarrow takes to read the output back (``pyarrow.dataset``, every column), and the job
again with nothing to do. With ``--s3-latency-ms`` the inputs are objects on S3 instead: moto's
server in this process, each request held ``MS`` milliseconds before it is answered (a region's
round trip), the outputs local folders. With ``--ray-actors N`` each job runs on a local Ray
(``backend="ray"``, N actors of one CPU; its start counted in the job's seconds, the peak RSS the
driver's). Writes
``benchmarks/results/dataset-small-files-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, generate, run_child
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def _child(bundle: str, src: str, out: str, actors: int = 0) -> dict[str, Any]:
    from embedrt.dataset import RayOptions, embed_dataset

    more: dict[str, Any] = {"backend": "ray", "ray": RayOptions(num_actors=actors, cpus_per_actor=1)} if actors else {}
    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, progress=False, **more)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "rows_embedded": s.rows_embedded, "parts": s.parts,
            "parts_resumed": s.parts_resumed, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _inputs(files: int, rows: int) -> tuple[Path, Path]:
    """The folder of small files and the folder of one file of the same rows, written once (each a
    temporary folder, then renamed: a folder that is there is whole)."""
    folder, one = CACHE / f"small-files-{files}-{rows}", CACHE / f"small-files-{files}-{rows}-one"
    if folder.is_dir() and one.is_dir():
        return folder, one
    lines = generate(files * rows).read_text(encoding="utf-8").splitlines(keepends=True)
    for target in (folder, one):
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if target is one:
            (tmp / "all.jsonl").write_text("".join(lines[:files * rows]), encoding="utf-8")
        else:
            for i in range(files):
                sub = tmp / f"{i // 1000:04d}"
                sub.mkdir(exist_ok=True)
                (sub / f"{i:06d}.jsonl").write_text("".join(lines[i * rows:(i + 1) * rows]), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return folder, one


@contextlib.contextmanager
def s3_server(latency_ms: float, counts: Counter[str] | None = None) -> Any:
    """moto's S3 server on localhost, each request answered ``latency_ms`` late (and counted by its
    method into ``counts``); the env pointing at it."""
    from moto.server import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        ThreadedMotoServer,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Slow(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)

            def late(environ: Any, start_response: Any) -> Any:
                if counts is not None:
                    counts[environ["REQUEST_METHOD"]] += 1
                time.sleep(latency_ms / 1000)
                return app(environ, start_response)

            self._server = make_server(self._ip_address, self._port, late, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Slow(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": f"http://{host}:{port}"})  # fmt: skip
    try:
        yield
    finally:
        server.stop()


def upload(folder: Path, uri: str, pattern: str = "*.jsonl") -> None:
    """The files of ``folder`` matching ``pattern`` (at any depth) as objects under ``uri``."""
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    for f in sorted(folder.rglob(pattern)):
        with fs.open_output_stream(f"{root}/{f.relative_to(folder).as_posix()}", compression=None) as out:
            out.write(f.read_bytes())


def _read_back(out: Path) -> float:
    import pyarrow.dataset as ds

    t0 = time.perf_counter()
    ds.dataset(out, format="parquet").to_table()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], *map(int, argv[4:]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=10, help="rows per file")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--before", default=None, help="PYTHONPATH of an older embedrt, run alternating with this one")
    p.add_argument("--s3-latency-ms", type=float, default=None, help="read the inputs from S3 (moto) this late a request")
    p.add_argument("--ray-actors", type=int, default=0, help="run each job on a local Ray with this many actors")
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.s3_latency_ms is not None:
            stack.enter_context(s3_server(args.s3_latency_ms))
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    folder, one = _inputs(args.files, args.rows)
    for f in [*folder.rglob("*.jsonl"), *one.rglob("*.jsonl")]:  # in the page cache before the first step
        f.read_bytes()
    sources: tuple[str | Path, str | Path] = (folder, one)
    if args.s3_latency_ms is not None:
        import pyarrow.fs

        pyarrow.fs.FileSystem.from_uri("s3://corpus?allow_bucket_creation=true")[0].create_dir("corpus")
        upload(folder, "s3://corpus/small")
        upload(one, "s3://corpus/one")
        sources = ("s3://corpus/small/", "s3://corpus/one/")
    variants = {"now": (sources[0], None), "one_file": (sources[1], None)}
    if args.before:
        variants["before"] = (sources[0], args.before)
    work = CACHE / f"small-files-out-{os.getpid()}"
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        for r in range(args.rounds):
            for v, (src, pythonpath) in variants.items():
                out = work / f"{v}-{r}"
                child = [args.bundle, str(src), str(out), *([str(args.ray_actors)] if args.ray_actors else [])]
                run = run_child("benchmarks.dataset_small_files", child, pythonpath)
                parts = sorted(out.glob("part-*.parquet"))
                run["output_files"], run["output_bytes"] = len(parts), sum(f.stat().st_size for f in parts)
                run["read_back_seconds"] = _read_back(out)
                run["again"] = run_child("benchmarks.dataset_small_files", child, pythonpath)
                results[v].append(run)
                print(f"  round {r} {v}: {run}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {v: {"seconds": min(run["seconds"] for run in runs), "again_seconds": min(run["again"]["seconds"] for run in runs),
                "read_back_seconds": min(run["read_back_seconds"] for run in runs)} for v, runs in results.items()}  # fmt: skip
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-small-files-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_small_files " + " ".join(argv), "cpu": cpu_model(),
        "flags": cpu_flags(), "files": args.files, "rows_per_file": args.rows, "s3_latency_ms": args.s3_latency_ms,
        "ray_actors": args.ray_actors, "rounds": results, "best": best,
    })  # fmt: skip
    print(json.dumps(best, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
