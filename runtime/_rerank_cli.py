"""``embedrt rerank BUNDLE QUERY [FILE|-]``: rank documents (one per line) for a query with a
reranker bundle; one JSON object per document, best first, on stdout or in ``-o OUT.jsonl``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._files import write_text_whole


def add_rerank_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "rerank",
        help="rank documents for a query with a reranker bundle",
        description="Score each document (one per line of FILE, or stdin) against QUERY with a reranker bundle "
        "(an exported CrossEncoder) and print them best first as JSON lines: "
        '{"corpus_id": line index, "score": ..., "text": ...}.',
    )
    p.add_argument("bundle", help="reranker bundle folder written by `embedrt export`")
    p.add_argument("query")
    p.add_argument("input", nargs="?", default="-", help="documents, one per line; - reads stdin (default)")
    p.add_argument("-o", "--output", help="write OUT.jsonl instead of printing")
    p.add_argument("--top-k", type=int, default=None, help="keep the best K documents")
    p.add_argument("--raw-scores", action="store_true", help="logits instead of the model's activation (e.g. sigmoid)")
    p.add_argument("--no-text", action="store_true", help="leave the document text out of the output")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: available CPUs)")
    p.set_defaults(run=run_rerank)
    return p


def run_rerank(args: argparse.Namespace) -> int:
    from ._reranker import Reranker

    raw = sys.stdin.read() if args.input == "-" else Path(args.input).read_text(encoding="utf-8")
    documents = [line.rstrip("\r") for line in raw.split("\n")]
    if documents and documents[-1] == "":
        documents.pop()
    if not documents:
        raise ValueError(f"no documents in {args.input!r}: give one document per line")
    if args.output and Path(args.output).suffix.lower() != ".jsonl":
        raise ValueError(f"output {args.output!r} must be a .jsonl file")
    model = Reranker(args.bundle, device=args.device, threads=args.threads)
    ranked = model.rank(
        args.query, documents, top_k=args.top_k, return_documents=not args.no_text, batch_size=args.batch_size,
        activation_fn="identity" if args.raw_scores else None,
    )
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ranked)
    if args.output:
        write_text_whole(Path(args.output), lines)
    else:
        sys.stdout.write(lines)
    return 0

