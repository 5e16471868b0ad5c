"""The corpus job measured: throughput against in-memory ``Embedder.encode``, peak RSS as the corpus
grows, and the Ray backend with 1 and 2 actors.

    python -m benchmarks.dataset BUNDLE --machine NAME                     # everything below
    python -m benchmarks.dataset BUNDLE --only throughput --compare-rows 20000 --rounds 2
    python -m benchmarks.dataset BUNDLE --only rss --rss-rows 100000,1000000
    python -m benchmarks.dataset BUNDLE --only throughput rss --streams 1 2 --rss-rows 20000,100000

- Corpus: ``--rows`` texts generated deterministically from the frozen benchmark sentences
  (``benchmarks/corpus.py``: English docstrings and Korean statutes, mean ~38 tokens), each made
  unique by a numbered suffix, written as JSONL with a string id, once per size (cached under
  ``benchmarks/.cache``).
- Every measurement runs in its own process (a fresh interpreter: peak RSS is that process's
  ``VmHWM``), with the same bundle, threads and batch size.
- throughput: the job (``embed_dataset``, reading the JSONL, writing Parquet, end to end) with each
  of ``--streams`` (default 1) and ``Embedder.encode`` (a sparse bundle: ``SparseEncoder.encode``;
  sentence-transformers' too) on the same texts already in memory (only the
  encode call is timed), alternating, ``--rounds`` times each; the ratio is the job with the first
  of ``--streams`` against encode on one stream, and with several ``--streams`` each count's best
  against the first's. With ``--sentence-transformers MODEL_DIR`` also sentence-transformers'
  ``encode`` (PyTorch, ``--threads`` threads) of the same texts in memory, in the same alternation:
  the job end to end against the PyTorch call alone. With ``--model2vec MODEL_DIR`` (a static bundle's
  source folder) model2vec's ``StaticModel.encode`` (its own batches) likewise.
- rss: the job at each size of ``--rss-rows`` and each of ``--streams``, and in-memory encode at the
  smallest (reading every text, tokenizing, holding every vector, as ``embedrt encode`` does).
- s3: the job reading its JSONL from and writing its parts to S3 (moto's server, started here as a
  process of its own on localhost, sharing the CPUs) against the same job on the local disk,
  alternating; the upload of the corpus is not timed. What it shows is the cost of the object-store
  code paths (ranged reads, uploads moved into place, journal objects), not a real bucket's speed.
- ray: the job with ``--backend ray`` and 1 and 2 actors of 1 CPU (a local Ray), on the throughput
  corpus cut into parts of a tenth of it (so that there is a part for every actor). Ray's actors are other processes: their RSS is not in these numbers.

Writes ``benchmarks/results/dataset-<machine>-<date>.json`` with the CPU flags and load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.results_file import write_json
from benchmarks.worker import peak_rss_mb

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "dataset"


def generate(rows: int) -> Path:
    """``rows`` unique texts as JSONL (``{"id": "doc-N", "text": ...}``), made once and cached."""

    def corpus() -> Iterator[dict[str, Any]]:
        from benchmarks.corpus import load_sentences

        sentences = load_sentences(2000, seed=0)
        for i in range(rows):
            yield {"id": f"doc-{i}", "text": f"{sentences[(i * 7919) % len(sentences)]} (#{i})"}

    return cached_jsonl(CACHE / f"corpus-{rows}.jsonl", corpus)


def cached_jsonl(path: Path, rows: Callable[[], Iterable[dict[str, Any]]]) -> Path:
    """``path``, written once from ``rows()`` as JSONL (whole: a temporary name, then renamed)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _child(kind: str, bundle: str, corpus: str, threads: int, batch_size: int, actors: int, streams: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    out = CACHE / f"out-{kind}-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    result: dict[str, Any] = {"kind": kind, "streams": streams}
    if kind in ("st", "m2v", "encode"):  # in memory: only the encode call is timed
        with open(corpus, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        encode, result["tokens"] = _in_memory(kind, bundle, threads, streams, texts)
        t0 = time.perf_counter()
        vectors = encode(texts) if kind == "m2v" else encode(texts, batch_size=batch_size)  # model2vec: its own batches
        result["seconds"] = time.perf_counter() - t0
        result["rows"] = len(vectors)
    else:
        from embedrt.dataset import RayOptions, embed_dataset

        backend = "ray" if kind == "ray" else "local"
        more: dict[str, Any] = {}
        if kind == "s3":  # the corpus uploaded (not timed); input and output are URIs
            corpus, out = _upload(corpus), f"s3://{_BUCKET}/out-{os.getpid()}"  # type: ignore[assignment]
        if backend == "ray":  # parts for every actor (by default a part holds 10,000 rows)
            with open(corpus, "rb") as f:
                more["rows_per_part"] = max(1, sum(1 for _ in f) // 10)
            more["ray"] = RayOptions(num_actors=actors, cpus_per_actor=1)
        t0 = time.perf_counter()
        s = embed_dataset(corpus, out, bundle, id_column="id", batch_size=batch_size, threads=threads,
                          streams=streams, backend=backend, progress=False, **more)  # fmt: skip
        result["seconds"] = time.perf_counter() - t0
        result["rows"], result["tokens"] = s.written, s.tokens
        if kind == "s3":
            import pyarrow.fs

            fs = pyarrow.fs.FileSystem.from_uri(f"s3://{_BUCKET}")[0]
            fs.delete_dir(f"{_BUCKET}/out-{os.getpid()}")
            fs.delete_file(corpus[len("s3://"):])
        else:
            shutil.rmtree(out, ignore_errors=True)
    result["texts_per_s"] = result["rows"] / result["seconds"]
    result["peak_rss_mb"] = peak_rss_mb()
    return result


_BUCKET = "embedrt-bench"


def _upload(corpus: str) -> str:
    import pyarrow.fs

    fs = pyarrow.fs.FileSystem.from_uri(f"s3://{_BUCKET}")[0]
    key = f"{_BUCKET}/corpus-{os.getpid()}.jsonl"
    with open(corpus, "rb") as src, fs.open_output_stream(key, compression=None) as dst:
        shutil.copyfileobj(src, dst, 8 << 20)
    return f"s3://{key}"


def s3_endpoint() -> subprocess.Popen[bytes]:
    """moto's S3 server on a free localhost port, in its own process; this process's environment (and
    so every measurement's) points the AWS SDK at it, and the benchmark's bucket is made."""
    import socket

    import pyarrow.fs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.2)
    pyarrow.fs.FileSystem.from_uri(f"s3://{_BUCKET}?allow_bucket_creation=true")[0].create_dir(_BUCKET)
    return server


def _in_memory(kind: str, model_dir: str, threads: int, streams: int, texts: list[str]) -> tuple[Any, int]:
    """``(encode, tokens of texts)``: sentence-transformers' (``st``, PyTorch), model2vec's (``m2v``) or
    ``Embedder``'s."""
    if kind == "m2v":
        from model2vec import StaticModel

        m2v = StaticModel.from_pretrained(model_dir)
        return m2v.encode, int(sum(len(e.ids) for e in m2v.tokenizer.encode_batch(texts, add_special_tokens=False)))
    if kind == "st":
        import torch
        from sentence_transformers import SentenceTransformer, SparseEncoder

        torch.set_num_threads(threads)
        config = Path(model_dir) / "config_sentence_transformers.json"
        sparse = config.is_file() and json.loads(config.read_text()).get("model_type") == "SparseEncoder"
        st = (SparseEncoder if sparse else SentenceTransformer)(model_dir, device="cpu")
        ids = st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]
        return st.encode, int(sum(map(len, ids)))
    from embedrt import load_model

    model = load_model(model_dir, threads=threads, streams=streams)  # an embedding or a sparse bundle
    return model.encode, int(model.tokenize(texts).lengths.sum())  # type: ignore[union-attr]


def measure(
    kind: str, bundle: str, corpus: Path, threads: int, batch_size: int, actors: int = 0, streams: int = 1
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.dataset", "_child", kind, bundle, str(corpus), str(threads),
           str(batch_size), str(actors), str(streams)]  # fmt: skip
    load = os.getloadavg()[0]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{r.stderr[-3000:]}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    result["load_before"] = round(load, 2)
    result["corpus_rows"] = sum(1 for _ in corpus.open("rb"))
    print(f"  {kind:>7} x{streams} {result['corpus_rows']:>8} rows: {result['texts_per_s']:8.1f} texts/s, "
          f"peak RSS {result['peak_rss_mb']:7.0f} MB (load {load:.1f})", flush=True)
    return result


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_child(module: str, args: list[str], pythonpath: str | None = None) -> dict[str, Any]:
    """``python -m MODULE _child ARGS`` in a fresh process (``pythonpath`` first on its path: an older
    embedrt), from the repository root; the JSON object its last line prints."""
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    cmd = [sys.executable, "-m", module, "_child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, env=env,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the job failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def same_table(a: Path, b: Path) -> bool:
    """Whether two output folders hold the same table (read in a child process: the caller's own
    memory stays what it measures)."""
    check = ("import sys, pyarrow.parquet as pq; "
             "sys.exit(0 if pq.read_table(sys.argv[1]).equals(pq.read_table(sys.argv[2])) else 1)")  # fmt: skip
    return subprocess.run([sys.executable, "-c", check, str(a), str(b)], check=False).returncode == 0


def cpu_flags() -> list[str]:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    return sorted(f for f in flags if f.startswith(("avx", "amx")) or "vnni" in f)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        print(json.dumps(_child(argv[1], argv[2], argv[3], *(int(a) for a in argv[4:8]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--machine", default=platform.node())
    p.add_argument("--only", nargs="*", default=["throughput", "rss", "ray"],
                   choices=["throughput", "rss", "ray", "s3"])  # fmt: skip
    p.add_argument("--compare-rows", type=int, default=20_000)
    p.add_argument("--rss-rows", default="100000,1000000")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sentence-transformers", type=Path, metavar="MODEL_DIR",
                   help="also time sentence-transformers' encode of this model in the throughput runs")  # fmt: skip
    p.add_argument("--model2vec", type=Path, metavar="MODEL_DIR",
                   help="also time model2vec's StaticModel.encode of this folder in the throughput runs")  # fmt: skip
    p.add_argument("--streams", type=int, nargs="+", default=[1],
                   help="the job with each of these stream counts (throughput, rss; encode keeps 1)")  # fmt: skip
    args = p.parse_args(argv)
    report: dict[str, Any] = {
        "machine": args.machine, "date": time.strftime("%Y-%m-%d %H:%M"), "bundle": args.bundle,
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
        "threads": args.threads, "batch_size": args.batch_size, "command": "python -m benchmarks.dataset " + " ".join(argv),
    }  # fmt: skip
    bundle = str(Path(args.bundle).resolve())
    if "throughput" in args.only:
        corpus = generate(args.compare_rows)
        print(f"throughput, {args.compare_rows} texts, alternating:", flush=True)
        kinds = [("job", s) for s in args.streams] + [("encode", 1)]
        if args.sentence_transformers:
            kinds.append(("st", 1))
        if args.model2vec:
            kinds.append(("m2v", 1))
        model_of = {"st": str(args.sentence_transformers), "m2v": str(args.model2vec)}
        runs = [measure(k, model_of.get(k, bundle), corpus, args.threads, args.batch_size, streams=s)
                for r in range(args.rounds) for k, s in (kinds if r % 2 == 0 else kinds[::-1])]  # fmt: skip
        report["throughput"] = {"runs": runs, **_ratio(runs, args.streams[0])}
        print(f"  job / encode: {report['throughput']['ratio']:.3f}", flush=True)
        peers = (("st", "sentence-transformers", "sentence_transformers", "job_over_st", args.sentence_transformers),
                 ("m2v", "model2vec", "model2vec", "job_over_model2vec", args.model2vec))  # fmt: skip
        for kind, name, key, ratio, model in peers:
            if model:
                job_best = max(v["texts_per_s"] for v in _streams(runs, args.streams).values())
                peer = max(r["texts_per_s"] for r in runs if r["kind"] == kind)
                report["throughput"][key] = {"model": str(model), "texts_per_s": peer, ratio: job_best / peer}
                print(f"  job (best stream count) / {name} encode: {job_best / peer:.3f}", flush=True)
        if len(args.streams) > 1:
            report["throughput"]["streams"] = _streams(runs, args.streams)
            for s, v in report["throughput"]["streams"].items():
                print(f"  job with {s} streams / {args.streams[0]}: {v['ratio_to_1']:.3f} (best {v['texts_per_s']:.1f} texts/s, "
                      f"peak RSS {v['peak_rss_mb']:.0f} MB)", flush=True)
    if "rss" in args.only:
        sizes = sorted(int(x) for x in args.rss_rows.split(","))
        print("peak RSS:", flush=True)
        report["rss"] = {"encode": measure("encode", bundle, generate(sizes[0]), args.threads, args.batch_size),
                         "job": [measure("job", bundle, generate(n), args.threads, args.batch_size, streams=s)
                                 for n in sizes for s in args.streams]}  # fmt: skip
    if "s3" in args.only:
        corpus = generate(args.compare_rows)
        print(f"S3 (moto on localhost) against the local disk, {args.compare_rows} texts, alternating:", flush=True)
        server = s3_endpoint()
        try:
            kinds = [("job", args.streams[0]), ("s3", args.streams[0])]
            runs = [measure(k, bundle, corpus, args.threads, args.batch_size, streams=s)
                    for r in range(args.rounds) for k, s in (kinds if r % 2 == 0 else kinds[::-1])]  # fmt: skip
        finally:
            server.kill()
        best = {k: max(r["texts_per_s"] for r in runs if r["kind"] == k) for k in ("job", "s3")}
        report["s3"] = {"runs": runs, "best": best, "s3_over_local": best["s3"] / best["job"]}
        print(f"  S3 / local disk: {best['s3'] / best['job']:.3f}", flush=True)
    if "ray" in args.only:
        corpus = generate(args.compare_rows)
        print(f"Ray backend, {args.compare_rows} texts:", flush=True)
        report["ray"] = [measure("ray", bundle, corpus, args.threads, args.batch_size, actors=a) for a in (1, 2)]
    out = HERE / "results" / f"dataset-{args.machine}-{time.strftime('%Y%m%d')}.json"
    write_json(out, report, indent=2)
    print(f"wrote {out}")
    return 0


def _streams(runs: list[dict[str, Any]], streams: list[int]) -> dict[str, dict[str, float]]:
    """Per stream count: the job's best rate, its ratio to the first count's best (``ratio_to_1``: the
    first count is 1 unless ``--streams`` starts elsewhere), the largest peak RSS."""
    jobs = {s: [r for r in runs if r["kind"] == "job" and r["streams"] == s] for s in streams}
    base = max(r["texts_per_s"] for r in jobs[streams[0]])
    return {str(s): {"texts_per_s": max(r["texts_per_s"] for r in rs), "ratio_to_1": max(r["texts_per_s"] for r in rs) / base,
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)} for s, rs in jobs.items()}  # fmt: skip


def _ratio(runs: list[dict[str, Any]], streams: int) -> dict[str, float]:
    """The job's best rate with ``streams`` against in-memory encode's best (one stream)."""
    job = [r["texts_per_s"] for r in runs if r["kind"] == "job" and r["streams"] == streams]
    enc = [r["texts_per_s"] for r in runs if r["kind"] == "encode"]
    return {"job_texts_per_s": max(job), "encode_texts_per_s": max(enc), "ratio": max(job) / max(enc)}


if __name__ == "__main__":
    sys.exit(main())
