"""The corpus job on long documents: every text cut to the model's window (the default) against
every text embedded whole in windows (``--chunk-tokens max --chunk-overlap N``).

    python -m benchmarks.dataset_chunks BUNDLE --docs 300 --rounds 2

- Corpus: one document per module of Python's standard library (its docstrings joined), JSONL,
  written once into ``benchmarks/.cache``. Real English prose and code names, 50 to 20,000 tokens.
- Each run is ``embed_dataset`` in a fresh process (its peak RSS from ``ru_maxrss``), alternating
  the two settings per round; the job's own numbers (seconds, tokens embedded) come from its summary.
- With ``--sentence-transformers MODEL_DIR``, a third setting in the same alternation:
  sentence-transformers' ``encode`` (PyTorch, fp32, 2 threads, batch 32) of the windows' texts
  (``text[chunk_start:chunk_end]`` of the same windows) already in memory, in a fresh process: what
  embedding the same windows costs without embedrt (its tokens/s counts the windows' tokens).
- Also timed, in this process on one thread: ``Chunker.split`` of every document (the windows'
  cost on the reader thread, which runs beside the model).
- With ``--prepare-docs N``: the memory of preparing one part of N long documents (4,000 words
  each, drawn from the standard library's ``typing.py``) for windows of the model's length, 32
  shared: ``EmbedBatch.prepare`` in a fresh process, its peak RSS and time (the part's texts,
  their windows' ids, the tokenizer's work).

Writes ``benchmarks/results/dataset-chunks-<machine>-<date>.json`` with the CPU flags.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent

_RUN = """
import json, resource, sys
from embedrt.dataset import embed_dataset
s = embed_dataset(sys.argv[1], sys.argv[2], sys.argv[3], id_column="id", progress=False, **json.loads(sys.argv[4]))
print(json.dumps({"seconds": s.seconds, "rows": s.rows, "written": s.written, "tokens": s.tokens,
                  "truncated": s.truncated, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def documents(n: int) -> Path:
    """``n`` documents, one per standard-library module (its docstrings), longest modules first."""
    out = CACHE / f"stdlib-docs-{n}.jsonl"
    if out.is_file():
        return out
    docs = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree, *(x for x in ast.walk(tree) if isinstance(x, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef))]
        text = "\n\n".join(d for x in nodes if (d := ast.get_docstring(x)))
        if text:
            docs.append({"id": path.stem, "text": text})
    docs = docs[:n]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    os.replace(tmp, out)
    return out


_ST = """
import json, resource, sys, time
import torch
torch.set_num_threads(2)
from sentence_transformers import SentenceTransformer
from embedrt import Embedder
from embedrt._chunking import Chunker
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
model = Embedder(sys.argv[2], threads=1)
chunks = Chunker(model.tokenizer, model.max_seq_length, model.max_seq_length, int(sys.argv[4])).split(texts)
pieces = [texts[t][a:b] for t, a, b in zip(chunks.text.tolist(), chunks.start.tolist(), chunks.end.tolist())]
st = SentenceTransformer(sys.argv[3], device="cpu")
t0 = time.perf_counter()
st.encode(pieces, batch_size=32)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "rows": len(texts), "written": len(pieces),
                  "tokens": int(chunks.tokens.lengths.sum()), "truncated": 0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_st(bundle: str, src: Path, model_dir: str, overlap: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _ST, str(src), bundle, model_dir, str(overlap)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(bundle: str, src: Path, options: dict[str, Any], work: Path) -> dict[str, Any]:
    out = work / f"out-{time.monotonic_ns()}"
    done = subprocess.run([sys.executable, "-c", _RUN, str(src), str(out), bundle, json.dumps(options)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return result


_PREPARE = """
import json, random, resource, sys, sysconfig, time
from pathlib import Path
import pyarrow as pa
from embedrt.dataset import EmbedBatch
words = " ".join((Path(sysconfig.get_paths()["stdlib"]) / "typing.py").read_text().split()).split()
rng = random.Random(0)
docs = [" ".join(rng.choice(words) for _ in range(4000)) for _ in range(int(sys.argv[2]))]
batch = EmbedBatch(sys.argv[1], threads=1, chunk_tokens="max", chunk_overlap=32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
prep = batch.prepare(pa.table({"text": docs}))
print(json.dumps({"docs": len(docs), "chars": sum(map(len, docs)), "windows": len(prep.tokens),
                  "tokens": int(prep.tokens.lengths.sum()), "seconds": time.perf_counter() - t0,
                  "peak_rss_mb_before": before,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def prepare_memory(bundle: str, docs: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _PREPARE, bundle, str(docs)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def split_time(bundle: str, src: Path, overlap: int) -> dict[str, Any]:
    from embedrt import Embedder
    from embedrt._chunking import Chunker

    model = Embedder(bundle, threads=1)
    texts = [json.loads(line)["text"] for line in src.read_text(encoding="utf-8").splitlines()]
    chunker = Chunker(model.tokenizer, model.max_seq_length, model.max_seq_length, overlap)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        chunks = chunker.split(texts)
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "windows": len(chunks), "tokens": int(chunks.tokens.lengths.sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--rows-per-part", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--machine", default=platform.node())
    p.add_argument("--prepare-docs", type=int, metavar="N", help="also measure preparing one part of N long documents")
    p.add_argument("--sentence-transformers", metavar="MODEL_DIR",
                   help="also time sentence-transformers' encode of the same windows' texts")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    src = documents(args.docs)
    settings: dict[str, dict[str, Any]] = {
        "truncated": {"rows_per_part": args.rows_per_part},
        "chunked": {"rows_per_part": args.rows_per_part, "chunk_tokens": "max", "chunk_overlap": args.overlap},
    }
    if args.sentence_transformers:
        settings["sentence-transformers"] = {}
    work = CACHE / "dataset-chunks"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in settings}
    for r in range(args.rounds):
        for name in list(settings) if r % 2 == 0 else list(settings)[::-1]:
            if name == "sentence-transformers":
                m = run_st(args.bundle, src, args.sentence_transformers, args.overlap)
            else:
                m = run(args.bundle, src, settings[name], work)
            m["tokens_per_s"] = m["tokens"] / m["seconds"]
            runs[name].append(m)
            print(f"  {name:>9}: {m['rows']} docs -> {m['written']} rows, {m['tokens']} tokens in {m['seconds']:.1f} s "
                  f"({m['tokens_per_s']:.0f} tokens/s), cut {m['truncated']}, peak RSS {m['peak_rss_mb']:.0f} MB",
                  flush=True)  # fmt: skip
    best = {k: max(ms, key=lambda m: m["tokens_per_s"]) for k, ms in runs.items()}
    split = split_time(args.bundle, src, args.overlap)
    prepare = prepare_memory(args.bundle, args.prepare_docs) if args.prepare_docs else None
    report = {
        "machine": args.machine, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
        "command": "python -m benchmarks.dataset_chunks " + " ".join(argv), "documents": str(src),
        "best": best, "runs": runs, "split_one_thread": split, "prepare_one_part": prepare,
        "chunked_over_truncated_tokens_per_s": best["chunked"]["tokens_per_s"] / best["truncated"]["tokens_per_s"],
    }  # fmt: skip
    if "sentence-transformers" in best:
        report["chunked_over_sentence_transformers"] = (
            best["chunked"]["tokens_per_s"] / best["sentence-transformers"]["tokens_per_s"]
        )
    out = HERE / "results" / f"dataset-chunks-{args.machine}-{time.strftime('%Y%m%d')}.json"
    write_json(out, report, indent=2)
    print(f"split: {split['windows']} windows, {split['tokens']} tokens in {split['seconds']:.2f} s on one thread")
    if prepare:
        print(f"prepare one part: {prepare['docs']} documents, {prepare['windows']} windows, {prepare['tokens']} tokens "
              f"in {prepare['seconds']:.1f} s, peak RSS {prepare['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"tokens/s chunked / truncated: {report['chunked_over_truncated_tokens_per_s']:.2f}")
    if "chunked_over_sentence_transformers" in report:
        print(f"tokens/s the chunked job / sentence-transformers on its windows: "
              f"{report['chunked_over_sentence_transformers']:.2f}")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
