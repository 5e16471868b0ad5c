"""The model options of every command that loads a bundle: ``--device``, ``--threads``,
``--precision-hint`` and ``--streams``, passed to the model class as its keyword arguments."""

from __future__ import annotations

import argparse
from typing import Any

from ._types import Device, InferencePrecision


def streams_value(text: str) -> int | str:
    """``--streams``: a number, or ``auto`` (one stream per thread on the CPU provider, one elsewhere)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def add_model_arguments(
    p: argparse.ArgumentParser | Any,
    threads_help: str = "intra-op threads (default: available CPUs)",
    streams_default: int | str = 1,
) -> None:
    p.add_argument("--device", default="cpu", choices=[d.value for d in Device])
    p.add_argument("--threads", type=int, default=None, help=threads_help)
    p.add_argument("--precision-hint", choices=[h.value for h in InferencePrecision],
                   help="OpenVINO's compute precision (--device openvino; bf16 needs AVX512_BF16 or AMX)")  # fmt: skip
    p.add_argument("--streams", type=streams_value, default=streams_default,
                   help="batches run at once, each on its share of --threads (cpu or openvino; OpenVINO's "
                        "throughput mode); for busy servers and large jobs; 'auto': one per thread on cpu, "
                        f"one elsewhere; default {streams_default}")  # fmt: skip


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model class's keyword arguments for the options ``add_model_arguments`` added."""
    return {"device": args.device, "threads": args.threads, "precision_hint": args.precision_hint,
            "streams": args.streams}  # fmt: skip
