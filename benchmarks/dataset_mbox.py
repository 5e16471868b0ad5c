"""A mailbox (``.mbox``) embedded by the corpus job, a row per message, against the same messages'
texts as a JSONL file: what reading the messages costs the job.

    python -m benchmarks.dataset_mbox BUNDLE [--messages 5000] [--rounds 2] [--machine NAME]

The mailbox is written by Python's ``mailbox`` (in ``benchmarks/.cache/dataset``, made once per
size): messages of README words, a third plain text, a third plain text with an HTML alternative,
a third HTML only, every tenth with a 3 KB attachment. The JSONL holds each message's ``text`` as
the job reads it (``read_texts``), so both jobs embed the same texts. Each job runs in a fresh
process, the two alternating: seconds, rows, tokens, peak RSS; then, in this process, the planning
scan and the reading of every message alone (best of 3). Writes
``benchmarks/results/dataset-mbox-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import email.message
import json
import mailbox
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, run_child, same_table
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent


def make_mailbox(path: Path, n: int) -> None:
    """``n`` messages as described above, the same for the same ``n``."""
    words = re.findall(r"[A-Za-z]+", (HERE.parent / "README.md").read_text())
    rnd = random.Random(0)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    box = mailbox.mbox(str(tmp), create=True)
    for i in range(n):
        m = email.message.EmailMessage()
        m["Subject"] = " ".join(rnd.choices(words, k=6))
        m["From"] = f"Sender {i % 97} <s{i % 97}@example.org>"
        m["To"] = "list@example.org"
        m["Date"] = f"Tue, 1 Dec 2026 10:{i % 60:02d}:00 +0000"
        m["Message-ID"] = f"<m{i}@example.org>"
        paras = ["\n".join(" ".join(rnd.choices(words, k=12)) for _ in range(rnd.randint(2, 6)))
                 for _ in range(rnd.randint(1, 5))]  # fmt: skip
        page = "<html><body>" + "".join(f"<p>{p}</p>" for p in paras) + "</body></html>"
        if i % 3 == 2:
            m.set_content(page, subtype="html")
        else:
            m.set_content("\n\n".join(paras))
            if i % 3 == 1:
                m.add_alternative(page, subtype="html")
        if i % 10 == 0:
            m.add_attachment(rnd.randbytes(3000), maintype="application", subtype="pdf", filename=f"doc{i}.pdf")
        box.add(m)
    box.flush()
    box.close()
    os.replace(tmp, path)


def _child(bundle: str, src: str, out: str) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, progress=False)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "tokens": s.tokens, "peak_rss_mb": peak_rss_mb()}


def _reading(src: Path) -> dict[str, float]:
    from embedrt.dataset._sources import plan_input
    from embedrt.dataset._texts import read_texts

    scan, read = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        plan_input(str(src), 1000, text="text", id_column=None, keep_columns=())
        scan.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        texts = read_texts(src)
        read.append(time.perf_counter() - t0)
    mb = src.stat().st_size / 1e6
    return {"megabytes": mb, "scan_seconds": min(scan), "scan_mb_per_s": mb / min(scan), "read_seconds": min(read),
            "messages_per_s": len(texts) / min(read)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    from embedrt.dataset._texts import read_texts

    CACHE.mkdir(parents=True, exist_ok=True)
    box = CACHE / f"mail-{args.messages}.mbox"
    if not box.exists():
        make_mailbox(box, args.messages)
    jsonl = CACHE / f"mail-{args.messages}.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in read_texts(box)))
    work = CACHE / f"mbox-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {"mbox": [], "jsonl": []}
    try:
        for r in range(args.rounds):
            for name in (runs if r % 2 == 0 else list(runs)[::-1]):
                run = run_child("benchmarks.dataset_mbox", [args.bundle, str(box if name == "mbox" else jsonl),
                                                            str(work / f"{name}-{r}")])  # fmt: skip
                runs[name].append(run)
                print(f"  round {r}, {name}: {run}", flush=True)
        same = same_table(work / "mbox-0", work / "jsonl-0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reading = _reading(box)
    print(f"  reading alone: {reading}", flush=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-mbox-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_mbox " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "messages": args.messages, "runs": runs, "best_seconds": best, "mbox_over_jsonl": best["mbox"] / best["jsonl"],
        "same_table": same, "reading_alone": reading,
    })  # fmt: skip
    print(f"  best seconds {best}; same table: {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
