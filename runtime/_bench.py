"""``embedrt bench BUNDLE``: a quick benchmark of one bundle on this machine (torch-free).

Batch-1 latency (p50/p95/p99) and throughput at one batch size, over fixed token lengths and over
real text, with a progress bar; prints a table and writes JSON. Real text is, unless ``--texts``
gives a file, sentences from the docstrings of this Python's standard library (read with ``ast``,
nothing imported). The comparative suite against other runtimes is ``benchmarks/`` in the repository.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._files import write_text_whole
from ._model_args import add_model_arguments, model_options
from ._tokenize import Tokenized

DEFAULT_LENGTHS = (16, 32, 64, 128, 256, 512)


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="benchmark a bundle on this machine",
        description="Latency at batch 1 (p50/p95/p99) and throughput at --batch-size, over fixed token "
        "lengths and real text. Prints a table; --json writes the numbers.",
    )
    p.add_argument("bundle", help="bundle folder written by `embedrt export`")
    add_model_arguments(p)  # --device, --threads, --precision-hint, --streams: as the bundle will be served
    p.add_argument(
        "--batch-size", type=int, default=32, help="batch size of the throughput runs (default: 32)"
    )
    p.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=None,
        help="fixed token lengths (default: 16 32 64 128 256 512, capped at the bundle's max_seq_length)",
    )
    p.add_argument(
        "--texts", type=Path, default=None, help="real text, one per line (default: stdlib docstrings)"
    )
    p.add_argument("--n-texts", type=int, default=1000, help="real texts to use (default: 1000)")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per measurement (default: 1)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the bundle's files")
    p.set_defaults(run=run_bench)
    return p  # type: ignore[no-any-return]


def run_bench(args: argparse.Namespace) -> int:
    from . import Embedder, onnxruntime_build

    if args.batch_size < 1 or args.seconds < 0 or args.n_texts < 1:
        print(
            "embedrt bench: --batch-size and --n-texts must be positive, --seconds not negative",
            file=sys.stderr,
        )
        return 2
    load_before = _load_average()
    t0 = time.perf_counter()
    model = Embedder(args.bundle, verify=not args.no_verify, **model_options(args))
    load_s = time.perf_counter() - t0
    max_len = model.max_seq_length
    lengths = sorted({min(n, max_len) for n in (args.lengths or DEFAULT_LENGTHS) if n >= 3})
    texts = _read_texts(args.texts) if args.texts else stdlib_sentences(args.n_texts)
    texts = texts[: args.n_texts]
    if not texts:
        print("embedrt bench: no real texts to run", file=sys.stderr)
        return 2
    real = model.tokenize(texts)
    steps = 2 * len(lengths) + 3
    bar = _bar(steps, not args.no_progress)
    rows: list[dict[str, Any]] = []
    b = args.batch_size
    for n in lengths:
        tok = fixed_length(real, n, b)
        rows.append(_row(f"{n} tokens", "latency", tok, n, _latency(model, tok, args.seconds, bar)))
        rows.append(_row(f"{n} tokens", f"batch {b}", tok, n, _throughput(model, tok, b, args.seconds, bar)))
    lat_tok = real.select(range(min(len(real), 300)))
    rows.append(_row("real text", "latency", lat_tok, None, _latency(model, lat_tok, args.seconds, bar)))
    rows.append(
        _row("real text", f"batch {b}", real, None, _throughput(model, real, b, 0.0, bar, min_reps=1))
    )
    t = time.perf_counter()
    model.encode(texts, batch_size=b)  # tokenization included, as users call it
    rows.append(_row("real text + tokenize", f"batch {b}", real, None, {"times": [time.perf_counter() - t]}))
    if bar is not None:
        bar.update(1)
        bar.close()
    result = {
        "bundle": str(args.bundle),
        "manifest": {k: getattr(model.manifest, k) for k in ("source", "dimension", "max_seq_length")}
        | {"precision": model.manifest.precision.value, "optimizations": model.manifest.optimizations},
        "providers": model.providers,
        "device_choice": model.device_choice,
        "precision_hint": model.precision_hint.value if model.precision_hint else None,
        "threads": model.threads,
        "streams": model.streams,
        "onnxruntime": onnxruntime_build(),
        "machine": _machine(load_before),
        "load_s": load_s,
        "peak_rss_mb": _peak_rss_mb(),
        "real_texts": {
            "n": len(real),
            "mean_tokens": float(real.lengths.mean()),
            "source": str(args.texts or "stdlib docstrings"),
        },
        "rows": rows,
    }
    print(format_table(result))
    if args.json:
        write_text_whole(args.json, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


# -- inputs ----------------------------------------------------------------------------------------


def stdlib_sentences(n: int) -> list[str]:
    """Up to ``n`` English sentences from the standard library's docstrings, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    split = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
    out: list[str] = []
    seen: set[str] = set()
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                continue
            doc = ast.get_docstring(node) or ""
            for para in re.split(r"\n\s*\n", doc):
                for s in split.split(" ".join(para.split())):
                    if 20 <= len(s) <= 400 and s[-1] in ".!?" and ">>>" not in s and s not in seen:
                        seen.add(s)
                        out.append(s)
                        if len(out) >= n:
                            return out
    return out


def _read_texts(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fixed_length(real: Tokenized, length: int, n: int) -> Tokenized:
    """``n`` inputs of exactly ``length`` tokens: real token ids run together, between [CLS] and [SEP]."""
    body = [t for ids in real.ids for t in ids[1:-1]] or [1000]
    cls_, sep = real.ids[0][0], real.ids[0][-1]
    ids, step = [], max(1, len(body) // max(n, 1))
    for i in range(n):
        start = (i * step) % len(body)
        piece = [body[(start + j) % len(body)] for j in range(length - 2)]
        ids.append([cls_, *piece, sep])
    return Tokenized(
        ids=ids,
        type_ids=[[0] * length for _ in ids],
        lengths=np.full(n, length, dtype=np.int64),
        truncated=np.zeros(n, dtype=bool),
    )


# -- measuring -------------------------------------------------------------------------------------


def _throughput(
    model: Any, tok: Tokenized, batch: int, seconds: float, bar: Any, min_reps: int = 2
) -> dict[str, Any]:
    model.encode_tokenized(tok.select(range(min(len(tok), batch))), batch)  # warm-up
    times = _repeat(lambda: model.encode_tokenized(tok, batch), seconds, min_reps)
    if bar is not None:
        bar.update(1)
    return {"times": times}


def _latency(model: Any, tok: Tokenized, seconds: float, bar: Any) -> dict[str, Any]:
    singles = [tok.select([i]) for i in range(len(tok))]
    model.encode_tokenized(singles[0], 1)
    ms: list[float] = []
    t_end = time.perf_counter() + seconds
    i = 0
    while i < len(singles) or (time.perf_counter() < t_end and i < 20 * len(singles)):
        t = time.perf_counter()
        model.encode_tokenized(singles[i % len(singles)], 1)
        ms.append((time.perf_counter() - t) * 1e3)
        i += 1
    if bar is not None:
        bar.update(1)
    return {"ms": ms}


def _repeat(fn: Callable[[], Any], seconds: float, min_reps: int) -> list[float]:
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(times) < min_reps or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _row(inputs: str, mode: str, tok: Tokenized, length: int | None, m: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"inputs": inputs, "mode": mode, "length": length}
    if "ms" in m:
        a = np.asarray(m["ms"])
        row |= {
            "calls": len(a),
            "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)),
            "texts_s": 1e3 / float(np.mean(a)),
        }
        row["tokens_s"] = row["texts_s"] * float(np.mean(tok.lengths))
    else:
        t = float(np.median(m["times"]))
        row |= {
            "reps": len(m["times"]),
            "seconds": t,
            "texts_s": len(tok) / t,
            "tokens_s": float(tok.lengths.sum()) / t,
        }
    return row


# -- output ----------------------------------------------------------------------------------------


def format_table(result: dict[str, Any]) -> str:
    head = (
        f"{result['bundle']}  device={result.get('device_choice', '')}  precision={result['manifest']['precision']}  "
        f"providers={result['providers']}  "
        + (f"precision hint={result['precision_hint']}  " if result.get("precision_hint") else "")
        + f"threads={result['threads']}  streams={result.get('streams', 1)}  load={result['load_s']:.2f}s  "
        f"peak RSS={result['peak_rss_mb']:.0f} MB"
    )
    lines = [
        head,
        f"{'inputs':22s} {'mode':10s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'texts/s':>10s} {'tokens/s':>10s}",
    ]
    for r in result["rows"]:
        lat = [f"{r[k]:8.2f}" if k in r else f"{'':8s}" for k in ("p50_ms", "p95_ms", "p99_ms")]
        lines.append(
            f"{r['inputs']:22s} {r['mode']:10s} {' '.join(lat)} {r['texts_s']:10.1f} {r['tokens_s']:10.0f}"
        )
    rt = result["real_texts"]
    lines.append(f"real text: {rt['n']} texts from {rt['source']}, mean {rt['mean_tokens']:.1f} tokens")
    m = result["machine"]
    load = m["load_average"]
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['cpu_flags']) or 'none of avx2/avx512/vnni/amx'}; "
        f"load average (1/5/15 min) before {_fmt_load(load['before'])}, after {_fmt_load(load['after'])}"
    )
    return "\n".join(lines)


def _machine(load_before: list[float] | None) -> dict[str, Any]:
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        # 1/5/15-minute load averages: a figure taken on a loaded machine is not a regression
        "load_average": {"before": load_before, "after": _load_average()},
        "python": platform.python_version(),
    }


def _fmt_load(load: list[float] | None) -> str:
    return "/".join(f"{x:.2f}" for x in load) if load else "unknown"


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


_FLAG = re.compile(r"^(avx2|avx512\w*|avx_vnni\w*|\w*vnni\w*|amx\w*)$")


def cpu_flags() -> list[str]:
    """The CPU's flags that decide kernel speed: avx2, avx512*, *vnni*, amx* (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            return sorted({f for f in line.split(":", 1)[1].split() if _FLAG.match(f)})
    return []


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench", unit="step", file=sys.stderr)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


__all__: Sequence[str] = ["add_bench_parser", "run_bench"]
