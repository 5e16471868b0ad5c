"""Chinese and Japanese documents (no spaces) cut to the window by an XLM-R-style tokenizer: what
tokenizing one slice of the corpus job costs, in time and memory.

    python -m benchmarks.cjk_prefix --docs 300 --window 512 --rounds 3 --machine epyc-zen4-vnni
    PYTHONPATH=/tmp/oldpkg python -m benchmarks.cjk_prefix ... --label before     # another version

- Tokenizer: SentencePiece's layout as multilingual-e5, bge-m3 and paraphrase-multilingual use it
  (a Unigram model, NFKC, Metaspace), trained here (3,000 pieces) on the benchmark's CJK sentences
  and the standard library's ``typing.py``: no hub download. Its vocabulary decides where a prefix
  may be cut (``prefix_mark_cuts``, written into the result).
- Documents: the first ``--docs`` of ``benchmarks.dataset_memory``'s CJK corpus (1,000 sentences
  each, ~13,700 characters): 300 of them are about one slice of the job (4 million characters).
- Each round, in a fresh process: ``embedrt._tokenize.tokenize`` of the documents under truncation
  to ``--window`` tokens, as the job's reader thread does; seconds and the process's peak RSS
  (``VmHWM``) before and after. ``--check`` also compares every window with the whole text's.

Writes ``benchmarks/results/cjk-prefix-<machine>[-<label>]-<date>.json`` with the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _tokenizer(window: int) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from benchmarks.dataset_memory import CJK_SENTENCES

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    english = (Path(sysconfig.get_paths()["stdlib"]) / "typing.py").read_text().split("\n")
    trainer = trainers.UnigramTrainer(vocab_size=3000, special_tokens=["<unk>"], unk_token="<unk>")
    tok.train_from_iterator(list(CJK_SENTENCES) * 20 + english, trainer)
    tok.enable_truncation(max_length=window)
    return tok


def _peak_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM"))


def _one(docs: int, window: int, check: bool) -> dict[str, Any]:
    """One round, in this process."""
    from benchmarks.dataset_memory import documents
    from embedrt import _tokenize

    with documents(500, 1000, cjk=True).open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(docs), f, strict=False)]
    tok = _tokenizer(window)
    before = _peak_mb()
    t = time.perf_counter()
    out = _tokenize.tokenize(tok, texts)
    seconds = time.perf_counter() - t
    peak = _peak_mb()
    cuts = getattr(_tokenize, "prefix_mark_cuts", lambda _t: None)(tok)
    result = {"seconds": round(seconds, 3), "peak_rss_mb": peak, "rss_before_mb": before,
              "tokens": int(out.lengths.sum()), "cut_to_window": int(out.truncated.sum()),
              "chars": sum(map(len, texts)),
              "mark_cuts": None if cuts is None else {"marks": sorted(cuts.marks), "refused": sorted(cuts.refused)}}  # fmt: skip
    if check:
        result["equal_to_whole"] = out.ids == [e.ids for e in tok.encode_batch(texts)]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--check", action="store_true", help="also compare every window with the whole text's")
    p.add_argument("--machine", default="local")
    p.add_argument("--label", default="")
    p.add_argument("--out")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(_one(args.docs, args.window, args.check)))
        return
    from benchmarks.dataset import cpu_flags, cpu_model
    from benchmarks.results_file import write_json

    rounds = []
    for r in range(args.rounds):
        cmd = [sys.executable, "-m", "benchmarks.cjk_prefix", "--one", "--docs", str(args.docs), "--window",
               str(args.window), *(["--check"] if args.check and r == 0 else [])]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=HERE.parent)
        rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"round {r}: {rounds[-1]}", flush=True)
    name = f"cjk-prefix-{args.machine}{'-' + args.label if args.label else ''}-{time.strftime('%Y%m%d')}.json"
    out = args.out or HERE / "results" / name
    write_json(out, {"command": " ".join(sys.argv), "machine": args.machine, "date": time.strftime("%Y-%m-%d %H:%M"),
                     "cpu": cpu_model(), "cpu_flags": cpu_flags(), "docs": args.docs, "window": args.window,
                     "rounds": rounds})  # fmt: skip
    print(f"-> {out}")


if __name__ == "__main__":
    main()
