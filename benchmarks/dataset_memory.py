"""The corpus job's peak memory on long documents, at the default part size.

    python -m benchmarks.dataset_memory --tiny-from MODEL_DIR --docs 2000 --words 4000 --rounds 2

- Corpus: ``--docs`` documents of ``--words`` words each, drawn at random (seed 0) from the
  standard library's ``typing.py``, JSONL, written once into ``benchmarks/.cache``. With ``--cjk``
  each "word" is one of 15 Chinese and Japanese sentences (with their marks, digits, quotes and
  brackets), joined without spaces, as such text is written. With
  ``--parquet`` the same documents as one Parquet file of one row group (pyarrow's writer puts up
  to a million rows in a row group by default), no dictionary encoding, snappy pages.
- Model: a bundle (``--bundle``), or with ``--tiny-from MODEL_DIR`` a one-layer, 32-wide BERT with
  random weights and MODEL_DIR's tokenizer, window and pooling, exported once into
  ``benchmarks/.cache``. Its vectors mean nothing; it makes the model's time small beside the job's
  own work (reading, tokenizing, windows, writing), whose memory this measures. The tokenizer is the
  real one, so the tokens and windows are those of the real model.
- Each run is ``embed_dataset`` with its defaults (``rows_per_part`` 10,000: one part here) in a
  fresh process, its peak RSS from ``VmHWM`` (``ru_maxrss`` would count this process's, which a
  child keeps across exec), alternating: texts cut to the window (the
  default) and windows of the model's length, 32 tokens shared (``chunk_tokens="max"``). A fresh
  process that loads the model and embeds one text gives the model's own share.

Writes ``benchmarks/results/dataset-memory-<machine>-<date>.json`` with the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from benchmarks.dataset import CACHE, cpu_flags, cpu_model
from benchmarks.results_file import write_json

HERE = Path(__file__).resolve().parent

_PEAK_MB = 'int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024'  # this process's
_RUN = """
import json, sys
from embedrt.dataset import embed_dataset
s = embed_dataset(sys.argv[1], sys.argv[2], sys.argv[3], id_column="id", progress=False, **json.loads(sys.argv[4]))
print(json.dumps({"seconds": s.seconds, "rows": s.rows, "written": s.written, "tokens": s.tokens,
                  "truncated": s.truncated, "peak_rss_mb": PEAK}))
""".replace("PEAK", _PEAK_MB)

_MODEL_ONLY = """
import json, sys
from embedrt import Embedder
Embedder(sys.argv[1]).encode(["one text"])
print(json.dumps({"peak_rss_mb": PEAK}))
""".replace("PEAK", _PEAK_MB)


# sentences of Chinese and Japanese, as they are written: no spaces between words or sentences
CJK_SENTENCES = [
    "东京是日本的首都，也是最大的城市。", "我们今天去北京，明天回上海！", "价格是100元？太贵了。", "他说：「这是真的吗？」",
    "東京は日本の首都です。", "大阪は大きい町です！", "明日は雨が降るでしょう？", "彼は「本当ですか」と聞いた。",
    "第3章数据处理；包括清洗、转换和加载。", "Python是一种编程语言，广泛用于数据科学。", "（注：本文仅供参考）。",
    "人工智能的发展速度非常快…", "这个问题很难回答。", "二〇二六年十二月四日，天气晴。", "服务器返回了错误代码500！",
]  # fmt: skip


def documents(docs: int, words: int, cjk: bool = False) -> Path:
    out = CACHE / f"long-docs-{'cjk-' if cjk else ''}{docs}x{words}.jsonl"
    if out.is_file():
        return out
    vocab = CJK_SENTENCES if cjk else " ".join((Path(sysconfig.get_paths()["stdlib"]) / "typing.py").read_text().split()).split()
    rng = random.Random(0)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i in range(docs):
            text = ("" if cjk else " ").join(rng.choice(vocab) for _ in range(words))
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return out


def as_parquet(src: Path) -> Path:
    """``src`` (JSONL) as one Parquet file of one row group, written once."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    out = src.with_suffix(".parquet")
    if not out.is_file():
        table = pj.read_json(src)
        tmp = out.with_name(out.name + ".tmp")
        pq.write_table(table, tmp, row_group_size=table.num_rows, use_dictionary=False)
        os.replace(tmp, out)
    return out


def tiny_bundle(model_dir: str) -> Path:
    """MODEL_DIR's sentence-transformers folder with a one-layer, 32-wide random BERT, exported (fp32)."""
    bundle = CACHE / "tiny-window-bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    import torch
    from transformers import AutoConfig, AutoModel

    from embedrt.export import export_model

    src = CACHE / "tiny-window-model"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(model_dir, src, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", "onnx", "openvino"))
    config = AutoConfig.from_pretrained(model_dir)
    config.update({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64})
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(src)
    export_model(src, bundle)
    return bundle


def run(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--bundle")
    which.add_argument("--tiny-from", metavar="MODEL_DIR")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--words", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--parquet", action="store_true", help="read the documents from one Parquet row group")
    p.add_argument("--cjk", action="store_true", help="documents of Chinese and Japanese sentences, without spaces")
    p.add_argument("--machine", default=platform.node())
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    bundle = str(args.bundle or tiny_bundle(args.tiny_from))
    src = documents(args.docs, args.words, args.cjk)
    src = as_parquet(src) if args.parquet else src
    settings: dict[str, dict[str, Any]] = {"truncated": {}, "chunked": {"chunk_tokens": "max", "chunk_overlap": 32}}
    work = CACHE / "dataset-memory"
    work.mkdir(parents=True, exist_ok=True)
    model_only = run(_MODEL_ONLY, bundle)
    print(f"  model alone: peak RSS {model_only['peak_rss_mb']:.0f} MB", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in settings}
    for r in range(args.rounds):
        for name in list(settings) if r % 2 == 0 else list(settings)[::-1]:
            out = work / f"out-{time.monotonic_ns()}"
            m = run(_RUN, str(src), str(out), bundle, json.dumps(settings[name]))
            shutil.rmtree(out, ignore_errors=True)
            runs[name].append(m)
            print(f"  {name:>9}: {m['rows']} docs -> {m['written']} rows, {m['tokens']} tokens in {m['seconds']:.1f} s, "
                  f"peak RSS {m['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    report = {
        "machine": args.machine, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
        "command": "python -m benchmarks.dataset_memory " + " ".join(argv), "documents": str(src),
        "input_mb": src.stat().st_size / 1e6, "bundle": bundle, "model_only": model_only, "runs": runs,
        "peak_rss_mb": {k: max(m["peak_rss_mb"] for m in ms) for k, ms in runs.items()},
    }  # fmt: skip
    out = HERE / "results" / f"dataset-memory-{args.machine}-{time.strftime('%Y%m%d')}.json"
    write_json(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
