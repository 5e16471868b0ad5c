"""The command line the single-purpose bundle benchmarks share: ``--bundle NAME=PATH`` (repeatable),
``--out``, ``--rounds``, ``--threads``, and the header every result of theirs starts with."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from benchmarks.int8_cpu import cpu_info


def parse(
    doc: str | None, module: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """``(args, header)``: ``args.bundles`` maps each name to its path; ``header`` holds the command
    that reproduces the run, the CPU and the thread count. ``extra`` adds a benchmark's own options
    (written into the command when given)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", required=True, help="NAME=PATH, repeatable")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    shared = len(p._actions)
    if extra is not None:
        extra(p)
    args = p.parse_args()
    args.bundles = dict(b.split("=", 1) for b in args.bundle)
    own = ""
    for action in p._actions[shared:]:
        value = getattr(args, action.dest)
        if value != action.default:
            own += f" {action.option_strings[0]} " + " ".join(map(str, value if isinstance(value, list) else [value]))
    command = (
        f"python -m benchmarks.{module} " + " ".join(f"--bundle {b}" for b in args.bundle)
        + f" --rounds {args.rounds} --threads {args.threads}{own} --out {args.out}"
    )  # fmt: skip
    return args, {"command": command, "cpu": cpu_info(), "threads": args.threads}


def feeds(model: Any, texts: list[str], batch_size: int) -> list[dict[str, Any]]:
    """The graph inputs ``model`` (an ``Embedder``) runs for ``texts``: length-sorted batches."""
    return [feed for _, feed in model._batches(model.tokenize(texts), batch_size)]


def alternating_rates(
    sessions: dict[str, Any], feeds: list[dict[str, Any]], n_texts: int, rounds: int
) -> dict[str, list[float]]:
    """texts/s per round of each session over the same ``feeds`` (``n_texts`` texts), the sessions
    taking turns within each round, after a warm-up of four batches each."""
    for session in sessions.values():
        for feed in feeds[:4]:
            session.run(["sentence_embedding"], feed)
    rates: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for label, session in sessions.items():
            t = time.perf_counter()
            for feed in feeds:
                session.run(["sentence_embedding"], feed)
            rates[label].append(round(n_texts / (time.perf_counter() - t), 1))
    return rates
