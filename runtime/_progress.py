"""Progress of an encode run, counted in padded tokens.

Batches run longest first, so a bar counting texts starts slow and promises an ETA many times too
long (224 of 300,000 texts after 29 s said 10 hours, for a run of minutes). A batch costs about
its rows times its longest input: that is what the bar counts, with the texts done beside it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def batch_tokens(sorted_lengths: np.ndarray, pieces: list[slice]) -> list[int]:
    """Padded tokens (rows x longest, at least one) of each batch ``pieces`` cuts from ``sorted_lengths``,
    which run longest first."""
    return [max(int(sorted_lengths[p.start]), 1) * (p.stop - p.start) for p in pieces]


class EncodeProgress:
    """A tqdm bar in padded tokens with ``texts done / total`` beside it; ``enabled=False`` draws nothing
    but still counts (``texts_done``), so an interrupted run can say how far it got."""

    def __init__(self, total_tokens: int, total_texts: int, enabled: bool, desc: str = "encode") -> None:
        self.total_texts = total_texts
        self.texts_done = 0
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=int(total_tokens), desc=desc, unit="tok", unit_scale=True, file=sys.stderr,
                dynamic_ncols=True,
            )  # fmt: skip
            self._bar.set_postfix_str(f"0/{total_texts} texts", refresh=False)

    def update(self, rows: int, tokens: int) -> None:
        self.texts_done += rows
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.texts_done}/{self.total_texts} texts", refresh=False)
            self._bar.update(int(tokens))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
