"""The comparative suite: every system on the same inputs, in one run, alternating systems.

    python -m benchmarks.run                 # full run (~15 min on 2 cores)
    python -m benchmarks.run --quick         # smoke test at small sizes
    bash benchmarks/run.sh                   # the same from a fresh clone: installs into .venv, makes the peers' environments

Each system runs in a worker process in its own environment (``benchmarks/envs.py``), all loaded
at once; every scenario is measured system by system in an order rotated per scenario and round, so
that machine drift hits all alike. Outputs are checked against sentence-transformers/PyTorch fp32
before any timing. Writes ``benchmarks/results/<machine>-<date>.json``, ``.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import corpus, envs, flops, prepare
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REFERENCE = "st-torch-fp32"
LENGTHS = (16, 32, 64, 128, 256, 512)
BATCHES = (1, 8, 32, 128)


# -- inputs ----------------------------------------------------------------------------------------


def fixed_length_texts(tokenizer: Any, words: list[str], length: int, n: int) -> list[str]:
    """``n`` texts of real words that tokenize to exactly ``length`` tokens ([CLS] and [SEP] included)."""
    pieces = {w: len(tokenizer.encode(w, add_special_tokens=False).ids) for w in set(words)}
    out, pos = [], 0
    for i in range(n):
        pos = (i * 997) % len(words)
        chosen: list[str] = []
        total = 2
        while True:
            w = words[pos % len(words)]
            pos += 1
            if total + pieces[w] > length:
                break
            chosen.append(w)
            total += pieces[w]
        chosen += ["a"] * (length - total)  # "a" is one token: fill to the exact length
        text = " ".join(chosen)
        got = len(tokenizer.encode(text).ids)
        if got != length:
            raise RuntimeError(f"fixed-length text has {got} tokens, wanted {length}")
        out.append(text)
    return out


def build_inputs(
    args: argparse.Namespace, model_dir: Path
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=512)
    words = [w for p in corpus.load_corpus()["en_passages"] for w in p.split()]
    sets: dict[str, list[str]] = {}
    for n in args.lengths:
        sets[f"len{n}"] = fixed_length_texts(tok, words, n, 32)
        sets[f"len{n}-b1"] = sets[f"len{n}"][: args.b1_texts]
    sets["len128x128"] = fixed_length_texts(tok, words, 128, 128)
    sets.setdefault("len128", sets["len128x128"][:32])
    sets.setdefault("len128-b1", sets["len128x128"][: args.b1_texts])
    sets["sentences"] = corpus.load_sentences(args.sentences, seed=0)
    sets["passages"] = corpus.load_passages(args.passages, seed=0)
    sets["latency"] = corpus.load_sentences(args.latency, seed=1)
    sets["parity"] = corpus.load_sentences(args.parity, seed=2) + corpus.load_passages(
        max(2, args.parity // 12), seed=2
    )
    stats = {}
    for name, texts in sets.items():
        max_len = 512 if name.startswith("len512") else 256
        tok.enable_truncation(max_length=max_len)
        lengths = [len(e.ids) for e in tok.encode_batch(texts)]
        stats[name] = {
            "n_texts": len(texts),
            "tokens": int(sum(lengths)),
            "mean_tokens": float(np.mean(lengths)),
            "max_length": max_len,
            "flop": flops.flop_of_lengths(lengths),
        }
    return sets, stats


# -- workers ---------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """A worker must not outlive an interrupted run (it would steal CPU from the next one)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WorkerProc:
    def __init__(self, spec: dict[str, Any], inputs_path: Path, log_dir: Path) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.log = (log_dir / f"{self.name}.log").open("w")
        env = dict(
            os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(HERE.parent)
        )
        self.proc = subprocess.Popen(
            [spec["python"], "-m", "benchmarks.worker", json.dumps(spec), str(inputs_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=str(HERE.parent),
            env=env,
            preexec_fn=_die_with_parent,
        )

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "error": f"worker exited (rc={self.proc.wait()}); see {self.log.name}"}
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.call(op="quit")
            self.proc.wait(timeout=30)
        self.log.close()


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the run ---------------------------------------------------------------------------------------


def scenarios(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for n in args.lengths:
        long = n >= 256
        out.append(
            {
                "id": f"seq{n}-b32",
                "group": "length",
                "length": n,
                "batch": 32,
                "set": f"len{n}",
                "min_time": args.min_time,
                "min_reps": 1 if long else 2,
            }
        )
    for n in args.lengths:
        out.append(
            {
                "id": f"seq{n}-b1",
                "group": "length-b1",
                "length": n,
                "batch": 1,
                "set": f"len{n}-b1",
                "min_time": args.min_time,
                "min_reps": 1,
            }
        )
    for b in args.batches:
        out.append(
            {
                "id": f"batch{b}-len128",
                "group": "batch",
                "length": 128,
                "batch": b,
                "set": "len128x128" if b > 32 else ("len128-b1" if b == 1 else "len128"),
                "min_time": args.min_time,
                "min_reps": 1,
            }
        )
    out.append(
        {
            "id": "sentences-b32",
            "group": "real",
            "batch": 32,
            "set": "sentences",
            "min_time": 0.0,
            "min_reps": 1,
        }
    )
    out.append(
        {
            "id": "passages-b32",
            "group": "real",
            "batch": 32,
            "set": "passages",
            "min_time": 0.0,
            "min_reps": 1,
        }
    )
    for s in out:
        s["max_length"] = 512 if s.get("length") == 512 else 256
    return out


def check_parity(
    workers: dict[str, WorkerProc], run_dir: Path, notes: dict[str, str]
) -> dict[str, dict[str, float]]:
    embs = {}
    for name, w in workers.items():
        out = run_dir / f"parity-{name}.npy"
        r = w.call(op="embed", set="parity", batch=32, out=str(out))
        if r["ok"]:
            embs[name] = np.load(out)
        else:
            notes[name] = f"embed failed: {r['error']}"
    fidelity = {}
    ref = embs.get(REFERENCE)
    for name, e in embs.items():
        if ref is None:
            break
        cos = (e * ref).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1))
        fidelity[name] = {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "texts": len(cos)}
    return fidelity


def measure(args: argparse.Namespace) -> dict[str, Any]:
    src = prepare.model_dir()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = HERE / ".cache" / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    _say(f"inputs, peaks and artifacts (logs in {run_dir})")
    sets, set_stats = build_inputs(args, src)
    inputs_path = run_dir / "inputs.json"
    inputs_path.write_text(json.dumps(sets, ensure_ascii=False))
    peaks = flops.measure_peaks(args.threads)
    _say(
        f"matrix-product peaks at {args.threads} threads: "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items() if isinstance(v, float))
    )

    specs, notes = envs.system_specs(src, args.threads, args.only)
    workers: dict[str, WorkerProc] = {}
    loads: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec["name"] in notes:
            continue
        _say(f"load {spec['name']}")
        w = WorkerProc(spec, inputs_path, run_dir)
        r = w.call(op="load")
        if not r["ok"]:
            notes[spec["name"]] = f"load failed: {r['error']}"
            w.close()
            continue
        loads[spec["name"]] = r
        workers[spec["name"]] = w
    if REFERENCE not in workers:
        raise SystemExit(f"the reference {REFERENCE} did not load: {notes.get(REFERENCE)}")

    _say("checking outputs against the reference before timing")
    fidelity = check_parity(workers, run_dir, notes)
    for name, f in fidelity.items():
        if f["mean_cosine"] < args.min_mean_cosine or f["min_cosine"] < args.min_cosine:
            notes[name] = (
                f"outputs disagree with {REFERENCE} (mean cos {f['mean_cosine']:.5f}, min {f['min_cosine']:.5f}): not timed"
            )
            workers.pop(name).close()

    results: dict[str, dict[str, Any]] = {name: {} for name in workers}
    names = list(workers)
    scen = scenarios(args)
    for si, s in enumerate(scen):
        for rnd in range(args.rounds):
            k = (si + rnd) % len(names)
            order = names[k:] + names[:k]  # rotated: no system always first or last
            _say(f"{s['id']} round {rnd + 1}/{args.rounds}: " + " ".join(order))
            for name in order:
                cmd = {k2: s[k2] for k2 in ("set", "batch", "min_time", "min_reps", "max_length")}
                r = workers[name].call(op="throughput", **cmd)
                slot = results[name].setdefault(s["id"], {"times": []})
                if r["ok"]:
                    slot["times"] += r["times"]
                else:
                    slot["error"] = r["error"]
    _say("batch-1 latency on real sentences")
    latency = {}
    for rnd in range(args.rounds):
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
            r = workers[name].call(op="latency", set="latency", max_length=256)
            if r["ok"]:
                latency.setdefault(name, []).extend(r["ms"])
    rss = {name: w.call(op="rss") for name, w in workers.items()}
    # Peaks again at the end: the best of the two is the less disturbed by other load on the machine.
    again = flops.measure_peaks(args.threads)
    peaks["at_start"] = {k: v for k, v in peaks.items() if isinstance(v, float)}
    peaks["at_end"] = {k: v for k, v in again.items() if isinstance(v, float)}
    for k, v in peaks["at_end"].items():
        peaks[k] = max(v, peaks["at_start"].get(k, 0.0))
    for w in workers.values():
        w.close()

    profile: dict[str, Any] = {}
    if not args.no_profile:
        _say("onnxruntime profile of the embedrt bundles")
        from benchmarks import profile as prof

        profile = prof.profile_bundles(specs, sets, args.threads, notes)

    return {
        "meta": meta(args, src, stamp),
        "peaks_flop_s": peaks,
        "sets": set_stats,
        "scenarios": scen,
        "systems": [
            {
                "name": sp["name"],
                "label": sp.get("label", sp["name"]),
                "precision": sp["precision"],
                "env": sp["python"],
                "params": sp.get("params", {}),
                "note": notes.get(sp["name"], ""),
                "ran": sp["name"] in results,
                "load": loads.get(sp["name"]),
                "fidelity": fidelity.get(sp["name"]),
                "rss": rss.get(sp["name"]),
                "latency_ms": latency.get(sp["name"]),
                "raw": results.get(sp["name"], {}),
            }
            for sp in specs
        ],
        "parity_reports": envs.bundle_parity_reports(specs),
        "profile": profile,
    }


def meta(args: argparse.Namespace, src: Path, stamp: str) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE.parent
    ).stdout.strip()
    return {
        "machine": args.machine,
        "date": stamp,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_flags": _matrix_flags(),
        "threads": args.threads,
        "python": platform.python_version(),
        "git": git,
        "model": str(src),
        "corpus": corpus.fingerprint(),
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
        "load_average_start": os.getloadavg(),
        "no_gpu": "no GPU was lent to this task: GPU rows not run",
    }


def _matrix_flags() -> list[str]:
    """The CPU features that decide the matrix-product peaks (AMX or not makes bf16 7x apart)."""
    wanted = {
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="embedrt comparative benchmark suite")
    p.add_argument("--quick", action="store_true", help="smoke test: few texts, short lengths, one round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--passages", type=int, default=64)
    p.add_argument("--latency", type=int, default=200, help="real sentences timed one by one")
    p.add_argument("--parity", type=int, default=200, help="real sentences checked against the reference")
    p.add_argument("--b1-texts", type=int, default=8, help="texts per length at batch 1")
    p.add_argument("--rounds", type=int, default=1, help="passes over the systems per scenario")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per fixed-length measurement")
    p.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes at 128 tokens")
    p.add_argument("--only", nargs="+", help="system names to run (the reference always runs)")
    p.add_argument("--min-mean-cosine", type=float, default=0.99)
    p.add_argument("--min-cosine", type=float, default=0.95)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--machine", default=socket.gethostname().split(".")[0][:24] or "machine")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.sentences, args.passages, args.latency, args.b1_texts, args.min_time = 128, 8, 20, 2, 0.1
        args.parity = 48
        args.lengths, args.batches = [16, 128], [1, 8]
    data = measure(args)
    from benchmarks import report

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.machine}-{data['meta']['date'][:8]}" + ("-quick" if args.quick else "")
    report.derive(data)
    json_path = args.out / f"{stem}.json"
    write_json(json_path, data, default=float)
    md = report.markdown(data, stem)
    (args.out / f"{stem}.md").write_text(md)
    report.plots(data, args.out, stem)
    print(md)
    _say(f"wrote {json_path} and {stem}.md / PNGs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
