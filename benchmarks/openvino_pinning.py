"""OpenVINO's CPU pinning, on and off, for the process layouts embedrt runs in.

OpenVINO pins its inference threads (and the thread that calls it) to cores unless told not to,
and each process picks its cores alone. This runs a plain bundle on ``device="openvino"`` (fp32)
in three layouts, each with ``ENABLE_CPU_PINNING`` true and false, alternating, ``--rounds``
times: one process with every CPU (one stream, then two), and one process per CPU with one
thread each (what Ray actors and multi-worker servers are). Each process embeds the same
``--sentences`` real sentences at batch 32 after a warm-up; the figure is the processes' texts/s
summed. Also recorded: which threads each layout left pinned to a narrower CPU set than the
process's.

    python -m benchmarks.openvino_pinning --bundle benchmarks/.cache/artifacts/bundle-fp32-unfused \\
        --out benchmarks/results/openvino-pinning-X.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.int8_cpu import cpu_info
from benchmarks.results_file import write_json


def pinned_threads() -> list[str]:
    """``name:cpus`` for each thread of this process allowed fewer CPUs than the process."""
    whole = os.sched_getaffinity(0)
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            cpus = os.sched_getaffinity(int(tid))
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:  # the thread ended
            continue
        if cpus != whole:
            out.append(f"{name}:{','.join(map(str, sorted(cpus)))}")
    return sorted(out)


def child(bundle: str, pin: bool, threads: int, streams: int, sentences: int) -> dict[str, Any]:
    from benchmarks.corpus import load_sentences
    from embedrt import Embedder

    model = Embedder(bundle, device="openvino", precision_hint="fp32", threads=threads, streams=streams,
                     provider_options={"ENABLE_CPU_PINNING": pin})  # fmt: skip
    texts = load_sentences(sentences, seed=0)
    model.encode(texts[:64], batch_size=32)
    t = time.perf_counter()
    model.encode(texts, batch_size=32)
    return {"texts_s": sentences / (time.perf_counter() - t), "pinned": pinned_threads()}


def layout(bundle: str, pin: bool, threads: int, streams: int, procs: int, sentences: int) -> dict[str, Any]:
    spec = json.dumps([bundle, pin, threads, streams, sentences])
    ps = [subprocess.Popen([sys.executable, "-m", "benchmarks.openvino_pinning", "--child", spec],
                           stdout=subprocess.PIPE, text=True) for _ in range(procs)]  # fmt: skip
    results = [json.loads(p.communicate()[0]) for p in ps]
    if any(p.returncode for p in ps):
        raise SystemExit(f"a child process failed: {[p.returncode for p in ps]}")
    return {"texts_s": round(sum(r["texts_s"] for r in results), 1), "pinned": [r["pinned"] for r in results]}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(*json.loads(sys.argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="a plain (--no-optimize) fp32 bundle")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sentences", type=int, default=1000)
    args = p.parse_args()
    import openvino

    cpus = len(os.sched_getaffinity(0))
    layouts = {
        f"1 process x {cpus} threads, 1 stream": (cpus, 1, 1),
        f"1 process x {cpus} threads, 2 streams": (cpus, 2, 1),
        f"{cpus} processes x 1 thread": (1, 1, cpus),
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {"pinned": [], "unpinned": []} for k in layouts}
    for r in range(args.rounds):
        for name, (threads, streams, procs) in layouts.items():
            for pin in (True, False) if r % 2 == 0 else (False, True):
                got = layout(str(args.bundle), pin, threads, streams, procs, args.sentences)
                runs[name]["pinned" if pin else "unpinned"].append(got)
                print(f"round {r}: {name}, {'pinned' if pin else 'unpinned'}: {got['texts_s']} texts/s", flush=True)
    results = {}
    for name, by in runs.items():
        best = {k: max(x["texts_s"] for x in v) for k, v in by.items()}
        results[name] = {
            "texts_s": {k: [x["texts_s"] for x in v] for k, v in by.items()},
            "best_texts_s": best,
            "unpinned_over_pinned": round(best["unpinned"] / best["pinned"], 3),
            "threads_pinned": {k: v[0]["pinned"] for k, v in by.items()},
        }
        print(f"{name}: pinned {best['pinned']}, unpinned {best['unpinned']} texts/s, "
              f"unpinned/pinned {results[name]['unpinned_over_pinned']}")  # fmt: skip
    out = {
        "command": f"python -m benchmarks.openvino_pinning --bundle {args.bundle} --rounds {args.rounds} "
                   f"--sentences {args.sentences} --out {args.out}",
        "cpu": cpu_info(),
        "openvino": openvino.__version__,
        "unit": "texts/s summed over the layout's processes, real sentences at batch 32, fp32",
        "results": results,
    }  # fmt: skip
    write_json(args.out, out)


if __name__ == "__main__":
    main()
