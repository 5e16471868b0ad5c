"""How far a corpus job's OUTPUT is, read without disturbing a run that writes it (``embedrt info OUTPUT``).

A job of millions of rows runs for hours, often where no one watches its terminal (a batch system, a
Ray cluster): this tells from anywhere that can read OUTPUT whether it is complete, being written (by
which run, how fast, about how long still) or stopped before its end, and what made it. It reads the
manifest, the journal and the claim (``_claim``: the lock probed for an instant, or the lease's age);
a pipeline step that consumes OUTPUT can wait for ``state == "complete"``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._claim import named
from ._output import BAD_ROWS, MANIFEST, OutputError, OutputFolder, finished_parts

COMPLETE, RUNNING, STOPPED, UNKNOWN = "complete", "running", "stopped", "unknown"


@dataclass(frozen=True)
class OutputStatus:
    """What ``output_status`` found. ``state``: ``complete`` (every part written, the manifest's
    totals final), ``running`` (a run holds the claim now), ``stopped`` (not complete and no run holds
    it: run the same command to continue) or ``unknown`` (not complete, on a file system without
    locks, so whether a run writes it cannot be told)."""

    output: str
    state: str
    holder: dict[str, Any] | None  # the run holding the claim; when stopped, a killed run that left its lock
    model: str | None  # the bundle as the last run was given it
    rows: int | None  # the input's rows, as the last run planned them (None: written by an older embedrt)
    parts: int | None  # the parts that run planned
    parts_done: int  # finished parts (journaled, their files present)
    rows_done: int  # the input rows those parts hold
    rows_written: int  # their output rows (windows with --chunk-tokens; bad rows skipped)
    bad_rows: int
    truncated_rows: int
    rows_per_second: float | None  # running: input rows per second of the run holding the claim, since it began
    seconds_left: float | None  # running: the rows left at that rate
    manifest: dict[str, Any]
    left_out: int = 0  # input rows the job's ``where`` condition left out of those parts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows, as ``embedrt info`` prints them."""
        rows = [("output", self.output), ("state", self._state())]
        if self.parts is not None and self.rows is not None:
            share = f" ({100 * self.rows_done / self.rows:.1f}%)" if self.rows else ""
            rows.append(("progress", f"{self.parts_done:,} of {self.parts:,} parts, {self.rows_done:,} of "
                                     f"{self.rows:,} input rows{share}"))  # fmt: skip
        else:
            rows.append(("progress", f"{self.parts_done:,} parts, {self.rows_done:,} input rows finished"))
        if self.rows_per_second is not None:
            left = f"; about {_duration(self.seconds_left)} left" if self.seconds_left is not None else ""
            rows.append(("rate", f"{self.rows_per_second:,.1f} input rows/s since this run began{left}"))
        bad = f" ({self.bad_rows:,} bad rows listed in {BAD_ROWS})" if self.bad_rows else ""
        rows.append(("written", f"{self.rows_written:,} rows{bad}"
                                + (f"; {self.truncated_rows:,} texts cut to the model's window" if self.truncated_rows else "")
                                + (f"; {self.left_out:,} rows left out by the where condition" if self.left_out else "")))  # fmt: skip
        identity = self.manifest.get("identity", {})
        model = f"{self.model} " if self.model else ""
        rows.append(("model", f"{model}(bundle sha256 {str(identity.get('bundle', '?'))[:16]})"))
        put = self.manifest.get("input") or {}
        if put:
            files = put.get("files") or []
            rows.append(("input", f"{put.get('format')}, {put.get('file_count', len(files))} file(s)"
                                  + (f", first {files[0].get('path')}" if files else "")))  # fmt: skip
        options = {k: v for k, v in identity.items() if k not in ("bundle", "input", "format") and v not in (None, [], False)}
        rows.append(("options", ", ".join(f"{k}={v}" for k, v in options.items())))
        last = self.manifest.get("last_run")
        if self.state == COMPLETE and isinstance(last, dict):
            rows.append(("last run", f"{last.get('rows_embedded', 0):,} texts in {last.get('seconds', 0):.1f} s "
                                     f"({self.manifest.get('created_by', 'embedrt')})"))  # fmt: skip
        return rows

    def _state(self) -> str:
        if self.state == RUNNING:
            return f"running: {named(self.holder)}" + (
                f" (lease renewed {self.holder['renewed']:.0f} s ago)" if self.holder and "renewed" in self.holder else "")
        if self.state == STOPPED:
            killed = f"; its last run ({named(self.holder)}) was killed" if self.holder else ""
            return f"stopped before the end{killed}: run the same command to continue"
        if self.state == UNKNOWN:
            return "not complete; whether a run writes it now cannot be told (its file system takes no locks)"
        return COMPLETE


def output_status(output: str | Path) -> OutputStatus:
    """The state of ``output``, a folder (or object-store URI) that ``embed_dataset`` writes or wrote;
    read only, never waiting for or stopping a run that writes it."""
    folder = OutputFolder(output)
    manifest = folder.read_manifest()
    if manifest is None:
        raise OutputError(f"{str(output)!r} holds no {MANIFEST}: not an output folder of embedrt embed-dataset")
    held, holder = folder.store.holder()
    done = finished_parts(folder.store)
    if held:
        state = RUNNING
    elif manifest.get("complete"):
        state, holder = COMPLETE, None
    else:
        state = STOPPED if held is False else UNKNOWN
    rows = manifest.get("input", {}).get("rows") if "parts_planned" in manifest or manifest.get("complete") else None
    parts = manifest.get("parts_planned", len(manifest.get("parts", [])) if manifest.get("complete") else None)
    rows_done = sum(int(e.get("input_rows", 0)) for e in done.values())
    rate = left = None
    began = holder.get("began") if state == RUNNING and holder else None
    if isinstance(began, int | float):  # the journal's times are the clock's of the run that holds the claim
        this_run = sum(int(e.get("input_rows", 0)) for e in done.values() if float(e.get("finished", 0)) >= began)
        elapsed = time.time() - began
        if elapsed > 0:
            rate = this_run / elapsed
            if rate > 0 and rows is not None:
                left = max(rows - rows_done, 0) / rate
    return OutputStatus(
        output=str(output), state=state, holder=holder, model=manifest.get("model"), rows=rows, parts=parts,
        parts_done=len(done), rows_done=rows_done, rows_written=sum(int(e.get("rows", 0)) for e in done.values()),
        bad_rows=sum(len(e.get("bad", [])) for e in done.values()),
        truncated_rows=sum(int(e.get("truncated", 0)) for e in done.values()),
        rows_per_second=rate, seconds_left=left, manifest=manifest,
        left_out=sum(int(e.get("left_out", 0)) for e in done.values()),
    )  # fmt: skip


def _duration(seconds: float | None) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
