"""Progress with an estimate, for the slow steps of export and validation (loading, the PyTorch
reference, the gate's texts): a line every few seconds through the caller's ``log``."""

from __future__ import annotations

import time
from collections.abc import Callable

Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    return None


class Progress:
    """Logs ``what: total unit`` at the start; ``update(n)`` after each piece of work logs ``what:
    done/total unit, elapsed, ~left`` at most every ``every`` seconds, and ``close()`` a last line when
    the work took longer than that. With ``work`` (e.g. padded tokens, where inputs run longest first
    and the first ones cost the most), the time left is estimated from ``update``'s ``work`` instead
    of the count."""

    def __init__(self, log: Log, what: str, total: int, unit: str = "texts", every: float = 5.0,
                 work: float | None = None) -> None:  # fmt: skip
        self.log, self.what, self.total, self.unit, self.every = log, what, total, unit, every
        self.done, self.work, self.work_done = 0, work, 0.0
        self.start = self.last = time.perf_counter()
        log(f"{what}: {total} {unit}")  # what runs now, before the first estimate

    def update(self, n: int, work: float = 0.0) -> None:
        self.done += n
        self.work_done += work
        now = time.perf_counter()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            elapsed = now - self.start
            if self.work and self.work_done > 0:
                left = elapsed / self.work_done * max(self.work - self.work_done, 0.0)
            else:
                left = elapsed / self.done * (self.total - self.done)
            self.log(f"{self.what}: {self.done}/{self.total} {self.unit}, {elapsed:.0f} s, ~{left:.0f} s left")

    def close(self) -> float:
        elapsed = time.perf_counter() - self.start
        if elapsed >= self.every:
            self.log(f"{self.what}: {self.total} {self.unit} in {elapsed:.0f} s")
        return elapsed
