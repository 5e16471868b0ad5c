"""A folder of HTML pages (a documentation site) embedded whole in windows by the corpus job, as
their markup (``documents=True``) against as their visible text (``html_text=True``).

    python -m benchmarks.dataset_html BUNDLE PAGES-FOLDER [--rounds 2] [--machine NAME]

Each job runs in a fresh process with ``chunk_tokens="max"`` on the folder's ``**/*.html``, the two
alternating: seconds, windows, tokens embedded (windows met again, a site's menus, are embedded
once), peak RSS. Then a self-retrieval check of what the windows hold: each page's first ``<h1>``
inside its ``<main>`` (else its first; tags stripped; a heading shared by pages, a site's name,
left out) is a query, embedded by the same bundle; a page's score is its best
window's cosine; how often the page itself ranks first (top-1) and its mean reciprocal rank within
the first 10. The heading is in the page either way: this says whether the page's windows still
look like it under its markup, not how well a real query would be answered. Writes
``benchmarks/results/dataset-html-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.dataset import CACHE, cpu_flags, cpu_model, run_child
from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def _child(bundle: str, src: str, out: str, text: bool) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    s = embed_dataset(f"{src}/**/*.html", out, bundle, documents=True, html_text=text, chunk_tokens="max",
                      progress=False)  # the pages (a built site also holds its styles, scripts and images)
    return {"seconds": time.perf_counter() - t0, "pages": s.rows, "windows": s.written, "tokens": s.tokens,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _headings(folder: Path) -> dict[str, str]:
    """Each page's first <h1> text inside its <main> (else its first), by its path under ``folder``;
    none shared by two pages."""
    out = {}
    for page in sorted(folder.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        main = text.find("<main")
        found = _H1.search(text, main if main >= 0 else 0) or _H1.search(text)
        heading = " ".join(html.unescape(_TAG.sub(" ", found.group(1))).split()) if found else ""
        if heading:
            out[page.relative_to(folder).as_posix()] = heading
    shared = {h for h in out.values() if list(out.values()).count(h) > 1}
    return {n: h for n, h in out.items() if h not in shared}


def _retrieval(bundle: str, out: Path, headings: dict[str, str]) -> dict[str, float]:
    import pyarrow.parquet as pq

    from embedrt import Embedder

    table = pq.read_table(out, columns=["id", "embedding"])
    ids = np.array(table.column("id").to_pylist())
    windows = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    windows /= np.linalg.norm(windows, axis=1, keepdims=True)
    pages = sorted(set(ids.tolist()))
    of = np.array([pages.index(i) for i in ids.tolist()])
    names = [n for n in headings if n in pages]
    queries = Embedder(bundle).encode([headings[n] for n in names], normalize=True)
    scores = queries @ windows.T
    best = np.full((len(names), len(pages)), -np.inf, np.float32)
    for k in range(len(pages)):
        best[:, k] = scores[:, of == k].max(axis=1)
    ranks = np.array([int((best[q] > best[q, pages.index(n)]).sum()) for q, n in enumerate(names)])
    return {"queries": len(names), "top1": float((ranks == 0).mean()),
            "mrr_at_10": float(np.where(ranks < 10, 1.0 / (ranks + 1), 0.0).mean())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], argv[4] == "1")))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("pages")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    pages = Path(args.pages)
    work = CACHE / f"html-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {"markup": [], "text": []}
    retrieval: dict[str, Any] = {}
    try:
        for r in range(args.rounds):
            for name in runs:
                out = work / f"{name}-{r}"
                run = run_child("benchmarks.dataset_html", [args.bundle, str(pages), str(out), str(int(name == "text"))])
                runs[name].append(run)
                print(f"  round {r}, {name}: {run}", flush=True)
                if r == 0:
                    retrieval[name] = _retrieval(args.bundle, out, _headings(pages))
                    print(f"  {name}: {retrieval[name]}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-html-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_html " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "pages": str(pages), "runs": runs, "best_seconds": best, "speedup": best["markup"] / best["text"],
        "retrieval": retrieval,
    })  # fmt: skip
    print(f"  best seconds {best}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
