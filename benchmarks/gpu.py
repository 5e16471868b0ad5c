"""The CUDA provider on a GPU: bundles exported there, parity and the quality gate on CUDA, and
throughput and latency against PyTorch fp32, fp16 and bf16 on the same GPU, in one run.

    python -m benchmarks.gpu --source MODEL_DIR --work /tmp/gpu --out gpu.json
    python -m benchmarks.gpu --source MODEL_DIR --work /tmp/gpu --out gpu.json --device cpu --quick  # dry run

Stages, each recording its result or its error (the JSON is rewritten after every stage, so a run cut
short still reports what it measured):

- ``env``: the GPU, its driver, the onnxruntime build and providers, torch.
- ``export``: ``embedrt export`` of the source as fp32 (default fusion) and fp16 (default and
  ``--optimize``), in parallel processes; each validated on the CPU as every export is.
- ``torch_free``: a fresh interpreter that never imports torch loads the fp16 bundle on CUDA
  (the CUDA libraries found as an installed ``onnxruntime-gpu`` finds them) and embeds two texts.
- ``gate``: ``validate_bundle(..., device="cuda")`` per bundle: the export grid and the 1000-text
  quality gate against PyTorch fp32.
- ``sweep``: texts of exactly 16-512 tokens, batch 32 and 128, end to end (tokenization included,
  numpy out): ``Embedder.encode`` per bundle against ``SentenceTransformer.encode`` in fp32, fp16 and
  bf16; systems alternate, ``--rounds`` rounds, the median kept.
- ``model_only``: the same batches already tokenized: ``session.run`` from numpy against IO binding
  (inputs bound from host memory, outputs kept on the GPU and copied once) and the PyTorch forward.
- ``batch1``: p50 / p90 of one real sentence per call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LENGTHS = (16, 32, 64, 128, 256, 512)
BATCHES = (32, 128)
BUNDLES = {  # name -> embedrt export arguments
    "fp32": ["--precision", "fp32"],  # the default: attention rewritten for the CPU's flash kernel
    "fp32-plain": ["--precision", "fp32", "--no-optimize"],
    "fp16": ["--precision", "fp16"],
    "fp16-fused": ["--precision", "fp16", "--optimize"],
}


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    """The results document, rewritten whole after each stage."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.doc: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "stages": {}}

    def stage(self, name: str, fn: Callable[[], Any], record: Callable[[Any], Any] = lambda r: r) -> Any:
        """``fn()``, kept in the document as ``record(fn())``; None if it raised."""
        _say(f"stage {name}")
        t0 = time.perf_counter()
        try:
            result = fn()
            self.doc["stages"][name] = {
                "ok": True,
                "seconds": round(time.perf_counter() - t0, 1),
                "result": record(result),
            }
        except Exception as e:  # one stage's failure must not cost the others
            traceback.print_exc()
            result = None
            self.doc["stages"][name] = {"ok": False, "seconds": round(time.perf_counter() - t0, 1),
                                        "error": f"{type(e).__name__}: {e}"[:2000]}  # fmt: skip
        self.save()
        return result

    def save(self) -> None:
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str))
        tmp.replace(self.out)


# -- stages ----------------------------------------------------------------------------------------


def env() -> dict[str, Any]:
    import onnxruntime as ort

    from embedrt import onnxruntime_build

    out: dict[str, Any] = {"python": sys.version.split()[0], "onnxruntime": onnxruntime_build()}
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        out["nvidia_smi"] = f"unavailable: {e}"
    import torch

    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
    out["ort_device"] = ort.get_device()
    return out


def export_all(source: Path, work: Path) -> dict[str, Any]:
    """The bundles, exported in parallel processes (a few threads each)."""
    procs = {}
    threads = max(1, (os.cpu_count() or 4) // len(BUNDLES))
    for name, extra in BUNDLES.items():
        out = work / name
        if (out / "manifest.json").is_file():
            continue
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        cmd = [
            sys.executable,
            "-m",
            "embedrt.cli",
            "export",
            str(source),
            "-o",
            str(out),
            "--overwrite",
            *extra,
        ]
        with (work / f"export-{name}.log").open("w") as log:  # the child keeps its own copy of the handle
            procs[name] = (
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                time.perf_counter(),
            )
    result: dict[str, Any] = {}
    for name, (p, t0) in procs.items():
        rc = p.wait()
        text = (work / f"export-{name}.log").read_text(errors="replace")
        result[name] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "log_tail": text[-1500:]}
    for name in BUNDLES:
        m = work / name / "manifest.json"
        if m.is_file():
            man = json.loads(m.read_text())
            result.setdefault(name, {})["manifest"] = {
                k: man.get(k) for k in ("precision", "optimizations", "parity") if k in man
            }
    return result


TORCH_FREE = r"""
import json, sys
import embedrt
bundle, device = sys.argv[1], sys.argv[2]
m = embedrt.Embedder(bundle, device=device)
v = m.encode(["a GPU run without PyTorch", "ein Satz"])
print(json.dumps({"providers": m.providers, "shape": list(v.shape), "torch_imported": "torch" in sys.modules}))
"""


def torch_free(work: Path, device: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-c", TORCH_FREE, str(work / "fp16"), device],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    if p.returncode:
        raise RuntimeError(f"rc {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def gates(source: Path, work: Path, device: str, quick: bool) -> dict[str, Any]:
    from embedrt.export import validate_bundle

    out = {}
    for name in BUNDLES:
        if not (work / name / "manifest.json").is_file():
            continue
        t0 = time.perf_counter()
        rep = validate_bundle(work / name, source, device=device, raise_on_failure=False, gate=not quick)
        out[name] = {"seconds": round(time.perf_counter() - t0, 1), "report": rep}
        _say(f"  gate {name}: passed={rep.get('passed')}")
    return out


# -- timing ----------------------------------------------------------------------------------------


class Systems:
    """Every system loaded once: embedrt bundles on the device, sentence-transformers in three dtypes."""

    def __init__(self, source: Path, work: Path, device: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from embedrt import Embedder

        self.torch = torch
        self.device = device
        self.encoders: dict[str, Callable[[list[str], int], np.ndarray]] = {}
        self.embedders: dict[str, Any] = {}
        self.errors: dict[str, str] = {}  # a bundle that fails to load is left out, with its error
        for name in BUNDLES:
            if (work / name / "manifest.json").is_file():
                try:
                    e = Embedder(work / name, device=device)
                except Exception as err:
                    self.errors[f"embedrt-{name}"] = f"{type(err).__name__}: {err}"[:1000]
                    continue
                self.embedders[name] = e
                self.encoders[f"embedrt-{name}"] = lambda t, b, e=e: e.encode(t, batch_size=b)
        self.st = {}
        for dtype in ("fp32", "fp16", "bf16"):
            if device == "cpu" and dtype == "fp16":
                continue
            m = SentenceTransformer(str(source), device=device)
            if dtype != "fp32":
                m = m.to({"fp16": torch.float16, "bf16": torch.bfloat16}[dtype])
            m.eval()
            self.st[dtype] = m
            self.encoders[f"torch-{dtype}"] = lambda t, b, m=m: self._st_encode(m, t, b)

    def summary(self) -> dict[str, Any]:
        return {"systems": list(self.encoders), "load_errors": self.errors}

    def _st_encode(self, m: Any, texts: list[str], batch_size: int) -> np.ndarray:
        with self.torch.inference_mode():
            out = m.encode(texts, batch_size=batch_size, convert_to_tensor=True)
        return out.float().cpu().numpy()  # type: ignore[no-any-return]

    def set_max_length(self, n: int) -> None:
        """Truncation for every system (512 is past the model's own 256 but within its positions)."""
        for m in self.st.values():
            m.max_seq_length = n
        for e in self.embedders.values():
            e.tokenizer.enable_truncation(max_length=n)


def _time(fn: Callable[[], Any], min_seconds: float, min_calls: int = 3) -> float:
    """Seconds per call: two warm-up calls, then calls until ``min_seconds`` have passed."""
    fn()
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_calls or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def sweep(
    systems: Systems,
    texts_by_len: dict[int, list[str]],
    batches: tuple[int, ...],
    rounds: int,
    seconds: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = list(systems.encoders)
    for length, texts in texts_by_len.items():
        systems.set_max_length(256 if length <= 256 else 512)
        for batch in batches:
            batch_texts = (texts * (batch // len(texts) + 1))[:batch]
            times: dict[str, list[float]] = {n: [] for n in names}
            failed: dict[str, str] = {}
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    if name in failed:
                        continue
                    enc = systems.encoders[name]
                    try:
                        times[name].append(_time(lambda enc=enc, t=batch_texts, b=batch: enc(t, b), seconds))
                    except Exception as err:  # one system failing at one size must not cost the others
                        failed[name] = f"{type(err).__name__}: {err}"[:500]
            key = f"len{length}-b{batch}"
            row: dict[str, Any] = {n: {"error": e} for n, e in failed.items()}
            for n, t in times.items():
                if n not in failed:
                    row[n] = {"texts_per_s": round(batch / statistics.median(t), 1),
                              "ms_per_batch": round(1000 * statistics.median(t), 3)}  # fmt: skip
            rates = {n: v["texts_per_s"] for n, v in row.items() if "texts_per_s" in v}
            best_torch = max((v for n, v in rates.items() if n.startswith("torch-")), default=0)
            torch16 = rates.get("torch-fp16")
            for n, v in rates.items():
                if n.startswith("embedrt-"):
                    row[n]["x_torch_fp16"] = round(v / torch16, 2) if torch16 else None
                    row[n]["x_best_torch"] = round(v / best_torch, 2) if best_torch else None
            out[key] = row
            _say(f"  {key}: " + ", ".join(f"{n} {rates.get(n, 'failed')}" for n in row))
    return out


def _session_times(sess: Any, feed: dict[str, np.ndarray], device: str, seconds: float) -> dict[str, float]:
    """ms per run of one batch: ``session.run`` from numpy; on CUDA also IO binding (inputs bound from
    host memory, outputs left on the GPU and copied once) and inputs already on the GPU."""
    import onnxruntime as ort

    outs = [o.name for o in sess.get_outputs()]
    times = {"run": _time(lambda: sess.run(outs, feed), seconds)}
    if device == "cuda":
        binding = sess.io_binding()

        def bound() -> Any:
            for k, v in feed.items():
                binding.bind_cpu_input(k, v)
            for o in outs:
                binding.bind_output(o, "cuda")
            sess.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()

        times["iobinding"] = _time(bound, seconds)
        resident = sess.io_binding()
        on_gpu = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in feed.items()}
        for k, v in on_gpu.items():
            resident.bind_ortvalue_input(k, v)
        for o in outs:
            resident.bind_output(o, "cuda")

        def gpu_only() -> None:
            sess.run_with_iobinding(resident)
            resident.synchronize_outputs()

        times["inputs on GPU"] = _time(gpu_only, seconds)
    return {k: 1000 * v for k, v in times.items()}


def model_only(systems: Systems, texts_by_len: dict[int, list[str]], seconds: float) -> dict[str, Any]:
    """Pre-tokenized batches of 128: the onnxruntime session three ways, and the PyTorch forward."""
    torch = systems.torch
    out: dict[str, Any] = {}
    batch = 128
    for length in (16, 128, 512):
        if length not in texts_by_len:
            continue
        systems.set_max_length(256 if length <= 256 else 512)
        texts = (texts_by_len[length] * 8)[:batch]
        row: dict[str, Any] = {}
        for name, e in systems.embedders.items():
            tok = e.tokenize(texts, prompt="")
            limit, e.max_batch_tokens = e.max_batch_tokens, None  # the whole batch in one run
            feed = next(iter(e._batches(tok, batch)))[1]
            e.max_batch_tokens = limit
            try:
                for how, ms in _session_times(e.session, feed, systems.device, seconds).items():
                    row[f"embedrt-{name} {how}"] = ms
            except Exception as err:
                row[f"embedrt-{name} error"] = f"{type(err).__name__}: {err}"[:500]
        for dtype, m in systems.st.items():
            feats = {k: v.to(systems.device) for k, v in m.tokenize(texts).items() if hasattr(v, "to")}

            def fwd(m: Any = m, feats: Any = feats) -> Any:
                with torch.inference_mode():
                    return m(dict(feats))["sentence_embedding"].float().cpu().numpy()

            row[f"torch-{dtype} forward"] = 1000 * _time(fwd, seconds)
        out[f"len{length}-b{batch}"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        _say(f"  model-only len{length}: {out[f'len{length}-b{batch}']}")
    return out


def batch1(systems: Systems, sentences: list[str], calls: int) -> dict[str, Any]:
    systems.set_max_length(256)
    out: dict[str, Any] = {}
    for name, enc in systems.encoders.items():
        lat = []
        try:
            for t in sentences[:5]:
                enc([t], 1)
            for t in sentences[:calls]:
                t0 = time.perf_counter()
                enc([t], 1)
                lat.append(1000 * (time.perf_counter() - t0))
        except Exception as err:
            out[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            continue
        out[name] = {
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
        }
    _say(f"  batch-1: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, type=Path, help="sentence-transformers model folder")
    p.add_argument("--work", required=True, type=Path, help="where the bundles are written")
    p.add_argument("--out", required=True, type=Path, help="results JSON")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.4, help="least time per measurement")
    p.add_argument("--quick", action="store_true", help="short lengths, one round, no gate")
    p.add_argument(
        "--stages",
        nargs="+",
        default=["env", "export", "torch_free", "gate", "sweep", "model_only", "batch1"],
    )
    args = p.parse_args(argv)
    lengths, batches = (LENGTHS, BATCHES) if not args.quick else ((16, 128), (32,))
    if args.quick:
        args.rounds, args.seconds = 1, 0.05
    args.work.mkdir(parents=True, exist_ok=True)
    run = Run(args.out)
    run.doc["args"] = {k: str(v) for k, v in vars(args).items()}
    st = args.stages
    if "env" in st:
        run.stage("env", env)
    if "export" in st:
        run.stage("export", lambda: export_all(args.source, args.work))
    if "torch_free" in st:
        run.stage("torch_free", lambda: torch_free(args.work, args.device))
    if "gate" in st:
        run.stage("gate", lambda: gates(args.source, args.work, args.device, args.quick))
    timed = [s for s in ("sweep", "model_only", "batch1") if s in st]
    if timed:
        from tokenizers import Tokenizer

        from benchmarks import corpus
        from benchmarks.run import fixed_length_texts

        tok = Tokenizer.from_file(str(args.source / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        words = [w for p_ in corpus.load_corpus()["en_passages"] for w in p_.split()]
        texts_by_len = {n: fixed_length_texts(tok, words, n, 32) for n in lengths}
        systems = run.stage(
            "load", lambda: Systems(args.source, args.work, args.device), record=Systems.summary
        )
        if systems is not None:
            if "sweep" in st:
                run.stage("sweep", lambda: sweep(systems, texts_by_len, batches, args.rounds, args.seconds))
            if "model_only" in st:
                run.stage("model_only", lambda: model_only(systems, texts_by_len, args.seconds))
            if "batch1" in st:
                sentences = corpus.load_sentences(200, seed=1)
                run.stage("batch1", lambda: batch1(systems, sentences, 20 if args.quick else 200))
    run.doc["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    run.save()
    failed = [k for k, v in run.doc["stages"].items() if not v["ok"]]
    _say(f"done; failed stages: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
