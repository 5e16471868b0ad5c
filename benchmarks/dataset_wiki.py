"""A Wikipedia dump embedded by the corpus job (``--wiki-text``), a row per article, against the same
articles' texts and ids as a JSONL file, and against every page's markup (``--xml-record page``):
what reading wikitext costs the job, and what it saves.

    python -m benchmarks.dataset_wiki BUNDLE --dump DUMP.xml.bz2 [--rounds 3] [--machine NAME]

DUMP: a MediaWiki export. The README's figures are of the shortened English Wikipedia dump in
gensim 4.4.0's wheel (``pip download gensim==4.4.0 --no-deps``, then ``unzip`` its
``gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``: 206
real pages, 106 of them articles; name it ``*.xml.bz2``). Every job embeds windows of the model's
length (``--chunk-tokens max``), in a fresh process, the three alternating: seconds, rows, tokens,
peak RSS. Then, in this process: each article's markup and text counted in the bundle's tokens, and
every article read alone (``_wiki.page_row``, best of 3). Writes
``benchmarks/results/dataset-wiki-<machine>-<date>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
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
_PAGE = re.compile(rb"(?m)^(?=[ \t]*<page>)")


def _child(bundle: str, src: str, out: str, how: str) -> dict[str, Any]:
    from embedrt.dataset import embed_dataset

    options: dict[str, Any] = {"wiki": {"wiki_text": True}, "markup": {"xml_record": "page"}, "jsonl": {}}[how]
    t0 = time.perf_counter()
    s = embed_dataset(src, out, bundle, id_column="id", chunk_tokens="max", progress=False, **options)
    return {"seconds": time.perf_counter() - t0, "rows": s.rows, "tokens": s.tokens, "peak_rss_mb": peak_rss_mb()}


def articles(dump: Path) -> tuple[list[bytes], Any]:
    """The dump's article records (as the job picks them) and its site."""
    import bz2
    import gzip

    from embedrt.dataset import _wiki

    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(dump.suffix, open)
    data = opener(dump, "rb").read()
    return [r for r in _PAGE.split(data)[1:] if _wiki.is_article(r)], _wiki.Site.of_site(data[: _wiki.SITE_HEAD])


def _markup(record: bytes) -> str:
    """A page record's last revision's wikitext, as the job's reader finds it."""
    from xml.parsers import expat

    from embedrt.dataset import _wiki

    page = _wiki._Page(frozenset())
    parser = expat.ParserCreate("utf-8")
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = page.start, page.end, page.chars
    with contextlib.suppress(expat.ExpatError):  # the dump's closing tag after its last page
        parser.Parse(record, True)
    return page.text or ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(*argv[1:5])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--dump", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--machine", default="this-machine")
    args = p.parse_args(argv)
    from embedrt._tokenize import load_tokenizer
    from embedrt.dataset import _wiki

    records, site = articles(args.dump)
    reads = []
    for _ in range(3):
        t0 = time.perf_counter()
        rows = [_wiki.page_row(r, frozenset({"id"}), site) for r in records]
        reads.append(time.perf_counter() - t0)
    assert all(bad is None for _, bad in rows)
    size = sum(map(len, records))
    markup = [_markup(r) for r in records]
    tok = load_tokenizer(Path(args.bundle) / "tokenizer.json", 1 << 20)
    counted = {name: sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
               for name, texts in (("markup", markup), ("text", [v["text"] for v, _ in rows]))}  # fmt: skip
    CACHE.mkdir(parents=True, exist_ok=True)
    jsonl = CACHE / f"wiki-{os.getpid()}.jsonl"
    jsonl.write_text("".join(json.dumps({"id": v["id"], "text": v["text"]}) + "\n" for v, _ in rows))
    work = CACHE / f"wiki-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {"wiki": [], "jsonl": [], "markup": []}
    try:
        for r in range(args.rounds):
            for name in (runs if r % 2 == 0 else list(runs)[::-1]):
                src = jsonl if name == "jsonl" else args.dump
                run = run_child("benchmarks.dataset_wiki", [args.bundle, str(src), str(work / f"{name}-{r}"), name])
                runs[name].append(run)
                print(f"  round {r}, {name}: {run}", flush=True)
        same = same_table(work / "wiki-0", work / "jsonl-0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        jsonl.unlink(missing_ok=True)
    best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
    reading = {"articles": len(records), "megabytes": size / 1e6, "seconds": min(reads),
               "articles_per_s": len(records) / min(reads), "mb_per_s": size / 1e6 / min(reads)}  # fmt: skip
    date = datetime.date.today().strftime("%Y%m%d")
    write_json(HERE / "results" / f"dataset-wiki-{args.machine}-{date}.json", {
        "command": "python -m benchmarks.dataset_wiki " + " ".join(argv), "cpu": cpu_model(), "flags": cpu_flags(),
        "dump": args.dump.name, "tokens": counted, "markup_over_text_tokens": counted["markup"] / counted["text"],
        "reading_alone": reading, "runs": runs, "best_seconds": best, "wiki_over_jsonl": best["wiki"] / best["jsonl"],
        "markup_over_wiki": best["markup"] / best["wiki"], "same_table": same,
    })  # fmt: skip
    print(f"  tokens {counted}; reading {reading}; best seconds {best}; same table: {same}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
