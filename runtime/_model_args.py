"""The model options of every command that loads a bundle: ``--device``, ``--threads``,
``--precision-hint`` and ``--streams``, passed to the model class as its keyword arguments."""

from __future__ import annotations

import argparse
from typing import Any

from ._types import AUTO, Device, InferencePrecision


def positive_or_auto(text: str) -> int | str:
    """An option's value: a positive integer, or ``auto`` (the model resolves it for its device)."""
    if text == AUTO:
        return AUTO
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return n


def add_model_arguments(
    p: argparse.ArgumentParser | Any,
    threads_help: str = "intra-op threads (default: available CPUs)",
    streams_default: int | str = 1,
) -> None:
    p.add_argument("--device", default=AUTO, choices=[AUTO, *(d.value for d in Device)],
                   help="where the graph runs; 'auto' (default): the bundle's preferred setting where this "
                        "machine can run it (a bundle of export --precision auto may hold one), else cpu")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help=threads_help)
    p.add_argument("--precision-hint", choices=[h.value for h in InferencePrecision],
                   help="OpenVINO's compute precision (--device openvino; bf16 needs AVX512_BF16 or AMX)")  # fmt: skip
    p.add_argument("--streams", type=positive_or_auto, default=streams_default,
                   help="batches run at once, each on its share of --threads (cpu or openvino; OpenVINO's "
                        "throughput mode); for busy servers and large jobs; 'auto': one per thread on cpu "
                        f"and on openvino in bf16, one elsewhere; default {streams_default}")  # fmt: skip


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model class's keyword arguments for the options ``add_model_arguments`` added."""
    return {"device": args.device, "threads": args.threads, "precision_hint": args.precision_hint,
            "streams": args.streams}  # fmt: skip
