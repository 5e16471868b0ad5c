"""Where an embedrt bundle spends its time: onnxruntime's profiler, summed per operator type.

    python -m benchmarks.profile BUNDLE [BUNDLE ...] --lengths 32 128 --out benchmarks/results/profile-X.json
    python -m benchmarks.profile BUNDLE --threads 1 2 --rounds 3 --out ...   # how each operator type scales

With several ``--threads``, each operator type's time per run at each thread count, and its speedup
from the first count to the others: the operators that do not scale are where streams (a batch per
thread) gain.

Each bundle runs in a session made as ``Embedder`` makes it (its int8 plan for this CPU: session
config and onnxruntime's ``SkipLayerNormFusion`` left off; no memory arena), on 32 texts of real words at each fixed length.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.results_file import write_json
from embedrt import Embedder
from embedrt._base import INT8_UNFUSED


def op_shares(
    bundle: str, texts: list[str], threads: int, max_length: int, reps: int = 3
) -> list[tuple[str, float]]:
    """(operator type, share of node time) for ``texts`` as one batch, largest first."""
    times = op_times(bundle, texts, threads, max_length, reps)
    total = sum(ms for _, ms in times) or 1.0
    return [(op, ms / total) for op, ms in times]


def op_times(bundle: str, texts: list[str], threads: int, max_length: int, reps: int = 3) -> list[tuple[str, float]]:
    """(operator type, node time in ms per run) for ``texts`` as one batch, largest first."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    enc = tok.encode_batch(texts)
    import numpy as np

    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
    feed = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "p")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.enable_cpu_mem_arena = False  # as Embedder's sessions
        plan = Embedder(bundle, threads=threads).int8_plan  # how Embedder runs this bundle on this CPU
        for key, value in (plan.session_config() if plan else {}).items():
            so.add_session_config_entry(key, value)
        sess = ort.InferenceSession(
            str(Path(bundle) / "model.onnx"), so, providers=["CPUExecutionProvider"],
            disabled_optimizers=INT8_UNFUSED if plan else [],
        )  # fmt: skip
        names = {i.name for i in sess.get_inputs()}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        for _ in range(reps):
            sess.run(["sentence_embedding"], feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per_op[ev["args"].get("op_name", "?")] += ev["dur"]
    return sorted(((op, d / 1000 / reps) for op, d in per_op.items()), key=lambda x: -x[1])


def profile_bundles(
    specs: list[dict[str, Any]], sets: dict[str, list[str]], threads: int, notes: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in specs:
        if (
            s["runner"] != "embedrt"
            or s["name"] in notes
            or s.get("params", {}).get("device", "cpu") != "cpu"
        ):
            continue
        try:
            out[s["name"]] = {
                str(n): op_shares(s["params"]["bundle"], sets[f"len{n}"], threads, 512)
                for n in (16, 128, 512)
                if f"len{n}" in sets
            }
        except Exception as e:  # the profile is a diagnosis: a failure is recorded, not fatal
            out[s["name"]] = f"profile failed: {type(e).__name__}: {e}"[:300]
    return out


def main() -> None:
    import argparse
    import time

    from tokenizers import Tokenizer

    from benchmarks import corpus
    from benchmarks.int8_cpu import cpu_info
    from benchmarks.run import fixed_length_texts

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--rounds", type=int, default=1, help="rounds over the thread counts, alternating (best kept)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    tok = Tokenizer.from_file(str(Path(args.bundles[0]) / "tokenizer.json"))
    tok.no_padding()
    words = [w for p in corpus.load_corpus()["en_passages"] for w in p.split()]
    several = len(args.threads) > 1
    result: dict[str, Any] = {
        "command": "python -m benchmarks.profile " + " ".join(args.bundles) + " --lengths "
        + " ".join(map(str, args.lengths)) + " --threads " + " ".join(map(str, args.threads)) + f" --rounds {args.rounds} --out {args.out}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_info(), "texts": 32,
        "unit": "share of onnxruntime node time per operator type"
        + ("; ms: node time per run per thread count; speedup: ms at the first count / ms at each" if several else ""),
        "bundles": {},
    }  # fmt: skip
    for bundle in args.bundles:
        shares: dict[str, Any] = {}
        for n in args.lengths:
            texts = fixed_length_texts(tok, words, n, 32)
            times: dict[int, dict[str, float]] = {t: {} for t in args.threads}
            for r in range(args.rounds):  # thread counts alternating; each operator's best round
                for t in args.threads if r % 2 == 0 else args.threads[::-1]:
                    for op, ms in op_times(bundle, texts, t, 512, reps=10):
                        times[t][op] = min(ms, times[t].get(op, ms))
            times = {t: dict(sorted(d.items(), key=lambda x: -x[1])) for t, d in times.items()}
            last = times[args.threads[-1]]
            total = sum(last.values()) or 1.0
            share = {op: round(ms / total, 4) for op, ms in last.items()}
            print(Path(bundle).name, n, list(share.items())[:8], flush=True)
            if not several:
                shares[str(n)] = share
                continue
            first = times[args.threads[0]]
            shares[str(n)] = {
                "share": share,
                "ms": {str(t): {op: round(ms, 3) for op, ms in times[t].items()} for t in args.threads},
                "ms_total": {str(t): round(sum(times[t].values()), 2) for t in args.threads},
                "speedup": {str(t): {op: round(first[op] / ms, 2) for op, ms in times[t].items() if op in first and ms > 0}
                            for t in args.threads[1:]},
            }  # fmt: skip
            for t in args.threads[1:]:
                print(f"  {args.threads[0]} -> {t} threads: all ops {shares[str(n)]['ms_total'][str(args.threads[0])]} -> "
                      f"{shares[str(n)]['ms_total'][str(t)]} ms; "
                      + ", ".join(f"{op} {x}" for op, x in list(shares[str(n)]["speedup"][str(t)].items())[:10]), flush=True)
        result["bundles"][bundle] = shares
    write_json(args.out, result)


if __name__ == "__main__":
    main()
