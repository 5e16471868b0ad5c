"""Progress of an encode run, counted in padded tokens.

Batches run longest first, so a bar counting texts starts slow and promises an ETA many times too
long (224 of 300,000 texts after 29 s said 10 hours, for a run of minutes). A batch costs about
its rows times its longest input: that is what the bar counts, with the texts done beside it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


def batch_tokens(sorted_lengths: np.ndarray, pieces: list[slice]) -> list[int]:
    """Padded tokens (rows x longest, at least one) of each batch ``pieces`` cuts from ``sorted_lengths``,
    which run longest first."""
    return [max(int(sorted_lengths[p.start]), 1) * (p.stop - p.start) for p in pieces]


class EncodeProgress:
    """A tqdm bar in padded tokens with ``texts done / total`` beside it; ``enabled=False`` draws nothing
    but still counts (``texts_done``), so an interrupted run can say how far it got; ``lines``: plain
    lines every minute instead (``LineProgress``, for a log)."""

    def __init__(self, total_tokens: int, total_texts: int, enabled: bool, desc: str = "encode",
                 lines: bool = False) -> None:  # fmt: skip
        self.total_texts = total_texts
        self.texts_done = 0
        self._bar: Any = None
        if enabled and lines:
            self._bar = LineProgress(desc, "token", int(total_tokens))
            self._bar.set_postfix_str(f"0/{total_texts} texts")
        elif enabled:
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


def interactive() -> bool:
    """Whether a bar can be drawn: stderr is a terminal, or a notebook shows tqdm's widget."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def progress_bar(desc: str, unit: str, total: int | None = None, initial: int = 0, *, every: float = 60.0,
                 closing_line: bool = True, **tqdm_options: Any) -> Any:
    """A tqdm bar where one can be drawn (``interactive``), else a ``LineProgress`` (a line every
    ``every`` seconds and, with ``closing_line``, one at the end); both are closed when done."""
    if not interactive():
        return LineProgress(desc, unit, total, initial, every, closing_line=closing_line)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, **tqdm_options)


class LineProgress:
    """Progress as a plain line every ``every`` seconds and one at the end, for a log file or a
    batch system, where a bar's carriage returns make one ever-growing line. Takes the calls made
    to a tqdm bar here (``update``, ``set_postfix``, ``set_postfix_str``, ``close``)."""

    def __init__(self, desc: str, unit: str, total: int | None = None, initial: int = 0, every: float = 60.0,
                 write: Any = None, closing_line: bool = True) -> None:  # fmt: skip
        self.desc, self.unit, self.total, self.every = desc, unit, total, every
        self.n = self.initial = initial
        self.postfix = ""
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self._t0 = self._last = time.monotonic()
        self._closed = not closing_line

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._write(self.line(now))

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = ", ".join(f"{v} {k[:-6]}/s" if k.endswith("_per_s") else f"{k.replace('_', ' ')} {v}"
                                 for k, v in values.items())  # fmt: skip

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write(self.line(time.monotonic()))

    def line(self, now: float) -> str:
        took = now - self._t0
        done = self.n - self.initial
        rate = done / took if took > 0 else 0.0
        head = f"{self.n:,}"
        if self.total:
            head += f"/{self.total:,} {self.unit}s ({100 * self.n / self.total:.1f}%)"
        else:
            head += f" {self.unit}s"
        parts = [head, f"{rate:,.0f} {self.unit}s/s", f"elapsed {_clock(took)}"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_clock((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"[embedrt] {self.desc}: " + ", ".join(parts)


def _clock(seconds: float) -> str:
    s = round(seconds)
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
