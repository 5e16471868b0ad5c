"""Load benchmark of ``embedrt serve``: requests/s and p50/p99 latency, batching on and off.

Starts two servers as their own processes (``python -m embedrt.server BUNDLE``, one with
``--no-batching``) on 127.0.0.1, then drives them, alternately, from this process with C closed-loop
clients (each sends its next request when the last one is answered) for a fixed time. Two workloads of real sentences from ``benchmarks.corpus``: ``single``
(one sentence per request, the usual online case) and ``mixed`` (1 to 4 sentences per request).

    python -m benchmarks.load.bench_load BUNDLE --duration 5 --repeats 3 --concurrency 1 8 32 \\
        --out benchmarks/results/server_load.json

The server and this load generator share the machine: numbers are end-to-end through HTTP and JSON,
on whatever CPUs the machine has (recorded with the results, with its load average).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.corpus import load_sentences
from benchmarks.results_file import write_json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bundle: Path, port: int, extra: list[str], python: str | None = None) -> subprocess.Popen[bytes]:
    """``embedrt serve`` as its own process (``python``: another environment's interpreter), once healthy."""
    cmd = [python or sys.executable, "-m", "embedrt.server", str(bundle), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen([*cmd, *extra])
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):  # bounded: 120 s
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("server did not become healthy in 120 s")


def write_result(out: Path, module: str, argv: list[str] | None, benchmark: str, **fields: Any) -> None:
    """``out`` written whole (temporary name, then rename): ``benchmark``, the command that reproduces
    the run (``python -m benchmarks.load.MODULE`` and its arguments), when, the CPU, then ``fields``."""
    from benchmarks.int8_cpu import cpu_info

    result = {
        "benchmark": benchmark,
        "command": f"python -m benchmarks.load.{module} " + " ".join(sys.argv[1:] if argv is None else argv),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu_info(),
        **fields,
    }
    write_json(out, result)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): less disturbed by a busy machine than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batch_stats(url: str) -> tuple[float, float]:
    """(requests merged into batches, batches) so far, from /metrics."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("embedrt_batch_requests_sum ", "embedrt_batch_requests_count ")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("embedrt_batch_requests_sum", 0.0), values.get("embedrt_batch_requests_count", 0.0)


async def drive(
    url: str,
    requests: list[list[str]],
    concurrency: int,
    duration: float,
    path: str = "/v1/embeddings",
    payload: Callable[[list[str]], dict[str, Any]] = lambda texts: {"input": texts, "encoding_format": "base64"},
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients posting ``payload(texts)`` to ``path`` for ``duration`` seconds."""
    latencies: list[float] = []
    errors = 0
    texts = 0
    stop_at = time.perf_counter() + duration

    async def client(k: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, texts
        i = k
        while time.perf_counter() < stop_at:
            body = requests[i % len(requests)]
            i += concurrency
            start = time.perf_counter()
            r = await http.post(path, json=payload(body))
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                errors += 1
            else:
                texts += len(body)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        begin = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(concurrency)))
        elapsed = time.perf_counter() - begin
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "texts_per_s": round(texts / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
    }


def summary_row(head: dict[str, Any], runs: list[dict[str, Any]], keys: tuple[str, ...], digits: int = 1) -> dict[str, Any]:
    """``head`` with the median of each of ``keys`` over ``runs``, their errors and the runs, printed."""
    row = dict(head)
    for key in keys:
        row[key] = round(float(np.median([r[key] for r in runs])), digits)
    row["errors"] = sum(r["errors"] for r in runs)
    row["runs"] = runs
    print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    return row


def measure(
    urls: dict[bool, str],
    pids: dict[bool, int],
    args: argparse.Namespace,
    workloads: dict[str, list[list[str]]],
) -> list[dict[str, Any]]:
    """Every cell, batching on and off alternately (A/B/B/A...), ``--repeats`` times; medians kept.

    The machine is shared: alternating short runs spreads other processes' load over both modes
    instead of handing it to whichever mode happened to run while it peaked.
    """
    rows = []
    for (name, requests), c in itertools.product(workloads.items(), args.concurrency):
        reps: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        for rep in range(args.repeats):
            for batching in (True, False) if rep % 2 == 0 else (False, True):
                merged0, batches0 = _batch_stats(urls[batching])
                cpu0 = _cpu_seconds(pids[batching])
                run = asyncio.run(drive(urls[batching], requests, c, args.duration))
                cpu1 = _cpu_seconds(pids[batching])
                merged1, batches1 = _batch_stats(urls[batching])
                run["server_cpu_ms_per_request"] = round((cpu1 - cpu0) * 1000 / max(run["requests"], 1), 1)
                run["requests_per_model_batch"] = round((merged1 - merged0) / max(batches1 - batches0, 1), 2)
                run["load_avg_1m"] = round(os.getloadavg()[0], 2)
                reps[batching].append(run)
        for batching in (True, False):
            runs = reps[batching]
            row: dict[str, Any] = {"workload": name, "concurrency": c, "batching": batching}
            keys = ("requests_per_s", "texts_per_s", "p50_ms", "p99_ms", "requests_per_model_batch")
            for key in (*keys, "server_cpu_ms_per_request"):
                row[key] = round(float(np.median([r[key] for r in runs])), 2)
            row["errors"] = sum(r["errors"] for r in runs)
            row["requests"] = sum(r["requests"] for r in runs)
            row["runs"] = runs
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell and mode, alternating (median kept)")
    p.add_argument("--threads", type=int, default=None, help="server's ONNX Runtime threads")
    p.add_argument("--max-texts", type=int, default=4, help="texts per request: 1..N")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    rng = random.Random(0)
    sentences = load_sentences(2000, seed=0)
    workloads = {
        "single": [[s] for s in sentences],
        "mixed": [rng.sample(sentences, rng.randint(1, args.max_texts)) for _ in range(2000)],
    }
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()[0]
    extra = ["--threads", str(args.threads)] if args.threads else []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls, pids = {}, {}
        for batching in (True, False):
            port = _free_port()
            procs.append(start_server(args.bundle, port, extra + ([] if batching else ["--no-batching"])))
            urls[batching] = f"http://127.0.0.1:{port}"
            pids[batching] = procs[-1].pid
            asyncio.run(drive(urls[batching], workloads["mixed"], 4, 2.0))  # warm-up, not recorded
        rows = measure(urls, pids, args, workloads)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)
    print_table(rows)
    if args.out:
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        result = {
            "benchmark": "embedrt serve load (closed-loop clients, POST /v1/embeddings, base64)",
            "command": "python -m benchmarks.load.bench_load "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "started_utc": started,
            "model": manifest["source"].get("path"),
            "precision": manifest["precision"],
            "workloads": {
                "single": "1 sentence per request, benchmarks.corpus.load_sentences(2000, seed=0)",
                "mixed": f"1..{args.max_texts} sentences per request, same sentences",
            },
            "machine": {
                "cpus": os.cpu_count(),
                "affinity": len(os.sched_getaffinity(0)),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_avg_1m_before": round(load_before, 2),
            },
            "results": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, result, indent=2)
        args.out.with_suffix(".md").write_text(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The results as a page: setup, the table, and the on/off ratios."""
    rows = sorted(
        result["results"], key=lambda x: (x["workload"] != "single", x["concurrency"], not x["batching"])
    )
    by = {(x["workload"], x["concurrency"], x["batching"]): x for x in rows}
    loads = [run["load_avg_1m"] for x in rows for run in x["runs"]]
    m = result["machine"]
    out = [
        "# `embedrt serve` under load: cross-request batching on and off",
        "",
        f"Command: `{result['command']}` (started {result['started_utc']}; model {result['model']}, "
        f"{result['precision']}).",
        "",
        "Two servers (`python -m embedrt.server BUNDLE`, one with `--no-batching`, defaults otherwise) on 127.0.0.1,",
        "driven from one process by closed-loop clients posting to `/v1/embeddings` (base64). Each cell: runs of",
        "the two modes alternating, median shown. Workloads: "
        + "; ".join(f"`{k}`: {v}" for k, v in result["workloads"].items())
        + ".",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; 1-minute load average during the runs "
        f"{min(loads):.1f} to {max(loads):.1f}.",
        "",
        "| workload | clients | batching | req/s | texts/s | p50 ms | p99 ms | requests per model batch "
        "| server CPU ms per request | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        out.append(
            f"| {x['workload']} | {x['concurrency']} | {'on' if x['batching'] else 'off'} | {x['requests_per_s']} "
            f"| {x['texts_per_s']} | {x['p50_ms']} | {x['p99_ms']} | {x['requests_per_model_batch']} "
            f"| {x['server_cpu_ms_per_request']} | {x['errors']} |"
        )
    out += [
        "",
        "Batching on / off (server CPU per request: lower is better, and the least disturbed by other load):",
        "",
        "| workload | clients | req/s | p50 | p99 | server CPU per request |",
        "|---|---|---|---|---|---|",
    ]
    for (w, c, batching), on in by.items():
        if batching:
            off = by[(w, c, False)]
            out.append(
                f"| {w} | {c} | {on['requests_per_s'] / off['requests_per_s']:.2f}x "
                f"| {on['p50_ms'] / off['p50_ms']:.2f}x | {on['p99_ms'] / off['p99_ms']:.2f}x "
                f"| {on['server_cpu_ms_per_request'] / max(off['server_cpu_ms_per_request'], 1e-9):.2f}x |"
            )
    return "\n".join(out) + "\n"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| workload | batching | clients | req/s | texts/s | p50 ms | p99 ms | req/batch | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["workload"], r["concurrency"], not r["batching"])):
        print(
            f"| {r['workload']} | {'on' if r['batching'] else 'off'} | {r['concurrency']} | {r['requests_per_s']} "
            f"| {r['texts_per_s']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['requests_per_model_batch']} | {r['errors']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
