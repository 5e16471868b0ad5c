"""Two builds of ``embedrt serve`` side by side: the same bundle served from two Python
environments (e.g. the previous commit's checkout in its own venv, and this one), driven alternately
by closed-loop clients on real sentences; per cell the medians of ``--repeats`` runs of texts/s, p50
latency and the server's own CPU time per request (user + system, from /proc: less disturbed by a
busy machine than wall time). Responses as float JSON (OpenAI ``/v1/embeddings`` and TEI ``/embed``)
and as base64.

    git worktree add /tmp/base HEAD~1 && python -m venv /tmp/venv-base \\
        && /tmp/venv-base/bin/pip install -e "/tmp/base[server]" httpx
    python -m benchmarks.load.server_ab BUNDLE --python-a /tmp/venv-base/bin/python --label-a before \\
        --label-b after --out benchmarks/results/server-ab-X.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.corpus import load_sentences
from benchmarks.load.bench_load import _cpu_seconds, _free_port, drive, start_server, write_result

Payload = Callable[[list[str]], dict[str, Any]]
CELLS: dict[str, tuple[int, str, Payload]] = {  # name: (texts per request, path, body)
    "1 text, float": (1, "/v1/embeddings", lambda t: {"input": t, "encoding_format": "float"}),
    "32 texts, float": (32, "/v1/embeddings", lambda t: {"input": t, "encoding_format": "float"}),
    "32 texts, TEI /embed": (32, "/embed", lambda t: {"inputs": t}),
    "32 texts, base64": (32, "/v1/embeddings", lambda t: {"input": t, "encoding_format": "base64"}),
}


def ab_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options of a two-build benchmark: the bundle, each side's interpreter and label, the
    servers' arguments, ``--out``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--python-a", required=True, help="interpreter of the first environment")
    p.add_argument("--python-b", default=sys.executable, help="interpreter of the second (default: this one)")
    p.add_argument("--label-a", default="a")
    p.add_argument("--label-b", default="b")
    p.add_argument("--server-args", nargs="*", default=["--device", "cpu"], help="passed to both servers")
    p.add_argument("--out", type=Path, required=True)
    return p


@contextlib.contextmanager
def both_servers(args: argparse.Namespace, extra: list[str]) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """``embedrt serve`` from each side's environment: ``({label: process}, {label: url})``, stopped after."""
    procs: dict[str, Any] = {}
    urls: dict[str, str] = {}
    try:
        for label, python in ((args.label_a, args.python_a), (args.label_b, args.python_b)):
            port = _free_port()
            procs[label] = start_server(args.bundle, port, [*args.server_args, *extra], python)
            urls[label] = f"http://127.0.0.1:{port}"
        yield procs, urls
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    p = ab_parser(__doc__)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS), help="which cells to run")
    args = p.parse_args(argv)

    sentences = load_sentences(2000, seed=0)
    sides = {args.label_a: args.python_a, args.label_b: args.python_b}
    with both_servers(args, []) as (procs, urls):
        rows = []
        for name in args.cells:
            size, path, payload = CELLS[name]
            requests = [sentences[i : i + size] for i in range(0, len(sentences) - size + 1, size)]
            for c in args.concurrency:
                runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
                for rep in range(args.repeats):
                    order = list(sides) if rep % 2 == 0 else list(sides)[::-1]
                    for label in order:
                        cpu0 = _cpu_seconds(procs[label].pid)
                        run = asyncio.run(drive(urls[label], requests, c, args.duration, path, payload))
                        run["server_cpu_ms_per_request"] = round(
                            (_cpu_seconds(procs[label].pid) - cpu0) * 1000 / max(run["requests"], 1), 2
                        )
                        if run["errors"]:
                            raise RuntimeError(f"{label}: {run['errors']} failed requests in {name!r}: {run}")
                        runs[label].append(run)
                row = _row(name, c, runs, args.label_a, args.label_b)
                rows.append(row)
                print(json.dumps({k: ({m: v for m, v in x.items() if m != "runs"} if k in sides else x)
                                  for k, x in row.items()}), flush=True)  # fmt: skip
    write_result(args.out, "server_ab", argv, "server_ab", sides=sides, results=rows)
    return 0


STATS = ("texts_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request")


def _row(cell: str, concurrency: int, runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any]:
    """One cell: each side's medians over its runs (the runs kept), and b's over a's."""
    med = {label: {k: statistics.median(r[k] for r in rs) for k in STATS} for label, rs in runs.items()}
    return {
        "cell": cell,
        "concurrency": concurrency,
        **{label: {**med[label], "runs": rs} for label, rs in runs.items()},
        "texts_per_s_b_over_a": round(med[b]["texts_per_s"] / med[a]["texts_per_s"], 3),
        "server_cpu_b_over_a": round(med[b]["server_cpu_ms_per_request"] / med[a]["server_cpu_ms_per_request"], 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
