"""RSS of a long run with varying batch shapes: onnxruntime's CPU arena on vs off.

    python benchmarks/memory.py BUNDLE [--rounds 400]

Each setting runs in its own process (RSS never shrinks inside one). Writes
benchmarks/results/memory-<date>.json. The result decides ``enable_cpu_mem_arena`` in runtime/_session.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, random, sys, time
import onnxruntime as ort
import embedrt._session as s
arena = sys.argv[2] == "on"
orig = ort.SessionOptions
def options():
    so = orig()
    return so
from embedrt import Embedder
m = Embedder(sys.argv[1])
m.session = None
so = ort.SessionOptions(); so.intra_op_num_threads = m.threads; so.inter_op_num_threads = 1
so.enable_cpu_mem_arena = arena
m.session = ort.InferenceSession(str(m.path / "model.onnx"), so, providers=["CPUExecutionProvider"])
rng = random.Random(0)
words = "the quick brown fox jumps over the lazy dog while embeddings map text to vectors".split()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6
def hwm():  # this process's peak RSS (VmHWM; ru_maxrss may carry the parent's across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024 / 1e6
samples = []
t0 = time.perf_counter(); n = 0
for r in range(int(sys.argv[3])):
    bs = rng.choice([1, 2, 8, 32, 64]); ln = rng.choice([4, 16, 60, 120, 250])
    texts = [" ".join(rng.choices(words, k=rng.randint(1, ln))) for _ in range(bs)]
    m.encode(texts, batch_size=64); n += bs
    if r % 20 == 0: samples.append(round(rss(), 1))
el = time.perf_counter() - t0
print(json.dumps({"arena": arena, "rss_mb_samples": samples, "final_rss_mb": round(rss(), 1),
                  "peak_rss_mb": round(hwm(), 1),
                  "texts_per_s": round(n / el, 1)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--order", default="on,off,on,off", help="arena settings, one process each")
    args = ap.parse_args()
    results = []
    for setting in args.order.split(","):  # alternate on,off,... so drift hits both
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.bundle, setting, str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(
            results[-1]["arena"],
            results[-1]["final_rss_mb"],
            results[-1]["peak_rss_mb"],
            results[-1]["texts_per_s"],
        )
    day = datetime.date.today().isoformat()
    path = Path(__file__).parent / "results" / f"memory-{day}.json"
    path.write_text(
        json.dumps({"machine": platform.node(), "command": " ".join(sys.argv), "runs": results}, indent=2)
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
