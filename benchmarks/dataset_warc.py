"""A WARC file embedded by the corpus job, a row per page, against the same pages' texts and urls as
a JSONL file: what reading WARC records costs the job.

    python -m benchmarks.dataset_warc BUNDLE [--records 30000] [--first 1000] [--rounds 3] [--machine NAME]
    python -m benchmarks.dataset_warc BUNDLE --pages HTML-FOLDER [--records 1000] [--first 400] [--chunk-tokens max] ...
    python -m benchmarks.dataset_warc BUNDLE --warc CRAWL.warc.gz [--copies 40] --rounds 0 ...

Without ``--pages`` or ``--warc``: a Common Crawl WET file, written as Common Crawl writes them (a
``warcinfo`` record, then ``conversion`` records, a gzip member a record; in
``benchmarks/.cache/dataset``, made once per size), each page one to six of the README's
paragraphs. With ``--pages``: a crawl of a folder's first ``--records`` HTML pages (sorted by path),
written as a crawler writes it: a request and a response record a page, a third of the bodies
chunked, a third gzip-compressed and chunked, and between every fourth page a redirect, an image
and a revisit (no rows); the folder measured is the Rust book as rustup installs it
(``share/doc/rust/html/book``, 195 pages). With ``--warc``: a real crawl's WARC file,
``--copies`` times over (each copy's urls made its own with a ``#k`` fragment; its pages' texts
repeat, and the job embeds a text met again once, so no job is run with ``--rounds 0``). The crawl
measured: pywb 2.10.0's ``sample_archive/warcs/iana.warc.gz`` (a crawl of www.iana.org: 343
records, 16 HTML pages of status 200, chunked, among scripts, images, redirects and revisits), from
its source distribution on PyPI::

    pip download --no-deps --no-binary :all: pywb==2.10.0 && tar xzf pywb-2.10.0.tar.gz

In this process: the planning scan of the whole file and the reading of every record alone (best
of 3) and, where warcio is installed (``pip install warcio``, the Webrecorder project's WARC
library), whether each page's text equals what its reading of the payload gives, decoded and read
as HTML the same way. Then the job (``--chunk-tokens``) on the first ``--first`` pages and on the
same texts and urls as JSONL, each in a fresh process, the two alternating: seconds, rows, tokens, peak RSS. Writes
``benchmarks/results/dataset-{wet,warc}-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
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


def _record(fields: list[tuple[str, str]], content: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in fields)
    return f"WARC/1.0\r\n{head}Content-Length: {len(content)}\r\n\r\n".encode() + content + b"\r\n\r\n"


def make_wet(path: Path, n: int) -> None:
    """``n`` pages as described above, the same for the same ``n``."""
    paragraphs = [p for p in (HERE.parent / "README.md").read_text().split("\n\n") if len(p) > 200]
    rnd = random.Random(0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(gzip.compress(_record([("WARC-Type", "warcinfo")], b"Software-Info: benchmarks.dataset_wet\r\n")))
        for i in range(n):
            text = "\n".join(rnd.sample(paragraphs, rnd.randint(1, 6))).encode()
            f.write(gzip.compress(_record([
                ("WARC-Type", "conversion"), ("WARC-Target-URI", f"https://example.org/{i}"),
                ("WARC-Date", "2024-02-21T10:00:00Z"), ("WARC-Record-ID", f"<urn:uuid:{i:012d}>"),
                ("WARC-Identified-Content-Language", "eng"), ("Content-Type", "text/plain")], text), 6))  # fmt: skip
    os.replace(tmp, path)


def make_copies(path: Path, crawl: Path, copies: int) -> None:
    """``crawl``'s records ``copies`` times over, each copy's urls made its own (``#k``), a gzip member a record."""
    with gzip.open(crawl) as f:
        data = f.read()
    records = _split(data)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for k in range(copies):
            for r in records:
                f.write(gzip.compress(re.sub(rb"^(WARC-Target-URI:[ \t]*<?[^\r\n>]*)", rb"\1#%d" % k, r, count=1,
                                             flags=re.MULTILINE | re.IGNORECASE), 6))  # fmt: skip
    os.replace(tmp, path)


def make_crawl(path: Path, folder: Path, n: int) -> None:
    """A crawl of ``folder``'s first ``n`` HTML pages, as described above, a gzip member a record."""
    pages = sorted(folder.rglob("*.html"))[:n]
    rnd = random.Random(0)

    def chunked(body: bytes) -> bytes:
        return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 4096]), body[i : i + 4096])
                        for i in range(0, len(body), 4096)) + b"0\r\n\r\n"  # fmt: skip

    def record(kind: str, url: str, block: bytes, content_type: str) -> bytes:
        return _record([("WARC-Type", kind), ("WARC-Target-URI", url), ("WARC-Date", "2025-03-01T12:00:00Z"),
                        ("Content-Type", content_type)], block)  # fmt: skip

    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(gzip.compress(_record([("WARC-Type", "warcinfo")], b"software: benchmarks.dataset_warc\r\n")))
        for i, page in enumerate(pages):
            url = f"https://doc.rust-lang.org/book/{page.relative_to(folder).as_posix()}"
            body, head = page.read_bytes(), "Content-Type: text/html; charset=utf-8\r\n"
            if i % 3 == 1:
                body, head = chunked(body), head + "Transfer-Encoding: chunked\r\n"
            elif i % 3 == 2:
                body, head = chunked(gzip.compress(body, 6)), head + "Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"
            blocks = [record("request", url, f"GET {url} HTTP/1.1\r\n\r\n".encode(), "application/http; msgtype=request"),
                      record("response", url, f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body,
                             "application/http; msgtype=response")]  # fmt: skip
            if i % 4 == 3:
                blocks += [record("response", url + "x", b"HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n",
                                  "application/http; msgtype=response"),
                           record("response", url + ".png", b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n"
                                  + rnd.randbytes(20_000), "application/http; msgtype=response"),
                           record("revisit", url, b"HTTP/1.1 200 OK\r\n\r\n", "application/http; msgtype=response")]  # fmt: skip
            f.write(b"".join(gzip.compress(b, 6) for b in blocks))
    os.replace(tmp, path)


def _split(data: bytes) -> list[bytes]:
    from embedrt.dataset import _warc

    starts, end = [], 0  # a version line inside a record's content (its Content-Length) is its own
    for m in _warc.OPENING.finditer(data):
        if m.start() >= end:
            starts.append(m.start())
            end = m.start() + (_warc.extent(data[m.start() : m.start() + (64 << 10)]) or 0)
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


def _child(bundle: str, src: str, out: str, chunk: str) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    t0 = time.perf_counter()
    chunk_tokens = None if chunk == "none" else chunk if chunk == "max" else int(chunk)
    s = embed_dataset(src, out, bundle, id_column="url", chunk_tokens=chunk_tokens, progress=False)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "tokens": s.tokens, "peak_rss_mb": peak_rss_mb()}


def _reading(src: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[bytes]]:
    from embedrt.dataset import _warc
    from embedrt.dataset._sources import plan_input

    with gzip.open(src) as f:
        data = f.read()
    records = _split(data)
    scan, read = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        plan = plan_input(str(src), 10_000, text="text", id_column="url", keep_columns=())
        scan.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rows = [_warc.record_row(r)[0] for r in records if _warc.is_row(r)]
        read.append(time.perf_counter() - t0)
    mb = len(data) / 1e6
    return {"records": len(records), "rows": plan.rows, "megabytes": mb, "gzip_megabytes": src.stat().st_size / 1e6,
            "scan_seconds": min(scan), "scan_mb_per_s": mb / min(scan), "read_seconds": min(read),
            "rows_per_s": len(rows) / min(read), "mb_per_s": mb / min(read),
            "same_as_warcio": _against_warcio(src, rows)}, rows, records  # fmt: skip


def _against_warcio(src: Path, rows: list[dict[str, Any]]) -> dict[str, int] | None:
    """How many rows' texts equal what warcio's reading of the same records' payloads gives (de-chunked,
    decompressed), decoded and read as HTML as the job does; None without warcio."""
    try:
        from warcio.archiveiterator import ArchiveIterator
    except ImportError:
        return None
    from embedrt.dataset import _html, _warc

    texts = []
    with open(src, "rb") as f:
        for r in ArchiveIterator(f):
            if r.rec_type == "conversion":
                texts.append(r.content_stream().read().decode("utf-8", "replace"))
            elif r.rec_type == "response" and r.http_headers and r.http_headers.get_statuscode() == "200":
                media, charset = _warc._media((r.http_headers.get_header("Content-Type") or "").encode("latin-1"))
                if media in _warc.TEXT_TYPES:
                    text = _html.decoded(r.content_stream().read(), charset, _warc.TEXT_TYPES[media])
                    texts.append(_html.html_text(text) if _warc.TEXT_TYPES[media] else text)
    same = sum(a == b["text"] for a, b in zip(texts, rows, strict=False))
    return {"rows": len(rows), "warcio_pages": len(texts), "same_text": same}


def _first(records: list[bytes], n: int) -> bytes:
    """The records up to the ``n``-th row's end (the next record's start)."""
    from embedrt.dataset import _warc

    rows = [k for k, r in enumerate(records) if _warc.is_row(r)]
    return b"".join(records[: rows[n] if n < len(rows) else len(records)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], argv[4])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--records", type=int, default=30_000, help="the WET file's pages; --pages: the pages crawled")
    p.add_argument("--pages", type=Path, help="a folder of HTML pages, crawled into a WARC file")
    p.add_argument("--warc", type=Path, help="a crawl's WARC file (.warc.gz) instead of the WET file")
    p.add_argument("--copies", type=int, default=40, help="the crawl this many times over")
    p.add_argument("--first", type=int, default=1000)
    p.add_argument("--chunk-tokens", default="none", help="the jobs' chunk_tokens: none (each text cut to the "
                   "model's length), max or a number (each text whole, in windows)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)

    CACHE.mkdir(parents=True, exist_ok=True)
    if args.pages is not None:
        kind, src = "warc", CACHE / f"pages-{args.pages.name}-{args.records}.warc.gz"
        if not src.exists():
            make_crawl(src, args.pages, args.records)
    elif args.warc is None:
        kind, src = "wet", CACHE / f"crawl-{args.records}.warc.wet.gz"
        if not src.exists():
            make_wet(src, args.records)
    else:
        kind, src = "warc", CACHE / f"{args.warc.name.split('.')[0]}-x{args.copies}.warc.gz"
        if not src.exists():
            make_copies(src, args.warc, args.copies)
    reading, rows, records = _reading(src)
    print(f"  reading alone: {reading}", flush=True)
    first = CACHE / f"{src.name.split('.')[0]}-first-{args.first}.{kind}.warc.gz"
    first.write_bytes(b"".join(gzip.compress(r, 6) for r in _split(_first(records, args.first))))
    jsonl = CACHE / f"{src.name.split('.')[0]}-first-{args.first}.jsonl"
    jsonl.write_text("".join(json.dumps({"url": r["url"], "text": r["text"]}) + "\n" for r in rows[: args.first]))
    work = CACHE / f"{kind}-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {kind: [], "jsonl": []}
    try:
        for r in range(args.rounds):
            for name in (runs if r % 2 == 0 else list(runs)[::-1]):
                run = run_child("benchmarks.dataset_warc", [args.bundle, str(first if name == kind else jsonl),
                                                            str(work / f"{name}-{r}"), args.chunk_tokens])  # fmt: skip
                runs[name].append(run)
                print(f"  round {r}, {name}: {run}", flush=True)
        same = same_table(work / f"{kind}-0", work / "jsonl-0") if args.rounds else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items() if rs}
    date = datetime.date.today().strftime("%Y%m%d")
    name = kind if args.warc is None else f"{kind}-{args.warc.name.split('.')[0]}"
    name += "" if args.chunk_tokens == "none" else f"-chunks-{args.chunk_tokens}"
    write_json(HERE / "results" / f"dataset-{name}-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_warc " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "input": src.name, "first": args.first, "chunk_tokens": args.chunk_tokens, "reading_alone": reading, "runs": runs, "best_seconds": best,
        f"{kind}_over_jsonl": best[kind] / best["jsonl"] if best else None, "same_table": same,
    })  # fmt: skip
    print(f"  best seconds {best}; same table: {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
