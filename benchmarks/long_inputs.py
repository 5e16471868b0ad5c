"""Peak RSS at a long-context model's full window: batches bounded by a token budget vs by count only.

A tiny ModernBERT (hidden 32, 2 layers, local attention 128, a 4096-token window) is built as in the
tests and exported; each setting then encodes the same texts (``--docs`` documents of the full
window and 200 short sentences) in its own process, which reports its peak RSS (``ru_maxrss``) and
time (peak RSS as the kernel's VmHWM of that process). The unfused attention holds a [rows, heads, seq, seq] score tensor per layer, so a count-only
batch of full-window documents grows with rows x seq^2.

    python -m benchmarks.long_inputs --out benchmarks/results/long-inputs.json [--window 4096 --docs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.results_file import write_json

CHILD = r"""
import json, sys, time
from embedrt import Embedder
bundle, budget, docs, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = Embedder(bundle, max_batch_tokens=None if budget == "none" else int(budget))
doc = " ".join(f"word{i % 97} token{i % 13}" for i in range(window))
texts = [doc] * docs + [f"a short sentence number {i}" for i in range(200)]
assert all(n == window for n in m.tokenize(texts[:docs]).lengths), "documents must fill the window"
t0 = time.perf_counter()
m.encode(texts, batch_size=32)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's peak
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(hwm / 1024)}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--window", type=int, default=4096)
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--budgets", nargs="*", default=["none", "16384", "4096"])
    p.add_argument("--bundle", help="reuse this exported bundle (else one is exported into a temporary folder)")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tiny_families import FAMILIES, make_family

    from embedrt.export import export_model

    family = FAMILIES["modernbert"]
    config = {**family.config_kw, "max_position_embeddings": args.window, "local_attention": 128,
              "global_attn_every_n_layers": 2}  # fmt: skip
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle and Path(args.bundle).is_dir():
            bundle = Path(args.bundle)
        else:
            source = make_family("modernbert", Path(tmp) / "src", config_kw=config, max_seq_length=args.window)
            bundle = export_model(source, Path(args.bundle) if args.bundle else Path(tmp) / "bundle")
        for budget in args.budgets:
            out = subprocess.run([sys.executable, "-c", CHILD, str(bundle), budget, str(args.docs), str(args.window)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            rows[budget] = json.loads(out.stdout.strip().splitlines()[-1])
            print(budget, rows[budget], flush=True)
    result = {
        "command": "python -m benchmarks.long_inputs " + " ".join(sys.argv[1:]),
        "model": f"tiny ModernBERT (hidden 32, 2 layers, 2 heads), window {args.window} tokens",
        "texts": f"{args.docs} documents of {args.window} tokens + 200 short sentences, batch_size 32",
        "cpu_flags": sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith("avx")}),
        "load_average": os.getloadavg(),
        "max_batch_tokens": rows,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
