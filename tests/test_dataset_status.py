"""How far an OUTPUT is (``output_status``, ``embedrt info OUTPUT``), read while a run writes it,
after it stopped and once it is complete, without disturbing the run."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

import embedrt.dataset._claim as _claim
from embedrt.cli import main
from embedrt.dataset import BadRowError, OutputError, OutputStatus, embed_dataset, output_status
from embedrt.dataset._claim import LOCK
from embedrt.dataset._output import OutputFolder

TEXTS = [f"text {i}: " + "word " * (i % 9) for i in range(120)]
_HOLD = ("import sys, time\nfrom embedrt.dataset._output import OutputFolder\n"
         "with OutputFolder(sys.argv[1]).claimed(print):\n    print('held', flush=True)\n    time.sleep(600)\n")  # fmt: skip


def _input(tmp_path: Path, rows: list[object] | None = None) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in (TEXTS if rows is None else rows)))
    return src


def test_status_while_a_run_writes_then_complete(tmp_path: Path, tiny_bert_bundle: Path,
                                                 monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    src, out = _input(tmp_path), tmp_path / "out"
    seen: list[OutputStatus] = []
    record = OutputFolder.record

    def look_after(self: OutputFolder, entry: dict[str, object]) -> dict[str, object]:
        done = record(self, entry)
        time.sleep(0.05)  # a measurable time into the run
        seen.append(output_status(out))  # the probe's shared lock on another descriptor: refused by this run's
        return done

    monkeypatch.setattr(OutputFolder, "record", look_after)
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    monkeypatch.undo()
    assert [s.state for s in seen] == ["running"] * 3
    assert [s.parts_done for s in seen] == [1, 2, 3] and [s.rows_done for s in seen] == [40, 80, 120]
    first = seen[0]
    assert first.holder is not None and first.holder["pid"] == os.getpid()
    assert (first.parts, first.rows, first.model) == (3, 120, str(tiny_bert_bundle))
    assert first.rows_per_second is not None and first.rows_per_second > 0
    assert first.seconds_left is not None and first.seconds_left > 0
    assert seen[-1].seconds_left == 0
    assert "running: pid" in dict(first.lines())["state"]
    assert dict(first.lines())["progress"] == "1 of 3 parts, 40 of 120 input rows (33.3%)"

    s = output_status(out)  # after the run
    assert (s.state, s.holder, s.parts_done, s.parts, s.rows_written, s.bad_rows) == ("complete", None, 3, 3, 120, 0)
    assert s.rows_per_second is None and s.seconds_left is None
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "state     complete" in printed and "3 of 3 parts, 120 of 120 input rows (100.0%)" in printed
    assert "last run" in printed and str(tiny_bert_bundle) in printed
    assert main(["info", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "complete" and data["rows_written"] == 120 and data["manifest"]["complete"] is True


def test_status_of_a_stopped_run_and_of_a_killed_one(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    rows: list[object] = list(TEXTS)
    rows[100] = None  # a bad row in the last part: the run stops there
    src, out = _input(tmp_path, rows), tmp_path / "out"
    with pytest.raises(BadRowError):
        embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    s = output_status(out)
    assert (s.state, s.holder, s.parts_done, s.parts, s.rows_done, s.rows) == ("stopped", None, 2, 3, 80, 120)
    assert dict(s.lines())["state"] == "stopped before the end: run the same command to continue"

    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        s = output_status(out)
        assert s.state == "running" and s.holder is not None and s.holder["pid"] == proc.pid
        assert s.rows_per_second == 0 and s.seconds_left is None  # nothing finished by this run yet
        r = subprocess.run([sys.executable, "-m", "embedrt.cli", "info", str(out)], capture_output=True, text=True)
        assert r.returncode == 0 and f"running: pid {proc.pid} on host" in r.stdout, r.stderr
    finally:
        proc.kill()
        proc.wait()
    s = output_status(out)  # its lock file stays, unlocked
    assert s.state == "stopped" and s.holder is not None and s.holder["pid"] == proc.pid
    assert f"its last run (pid {proc.pid} on host" in dict(s.lines())["state"]

    rows[100] = "fixed"
    src = _input(tmp_path, rows)
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    s = output_status(out)
    assert (s.state, s.holder, s.parts_done, s.rows_done) == ("complete", None, 3, 120)


def test_a_status_probe_never_refuses_a_run_starting_at_that_instant(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text("{}")
    fd = os.open(out / LOCK, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a probe's shared lock, let go a moment later
    timer = threading.Timer(0.3, lambda: os.close(fd))
    timer.start()
    try:
        with OutputFolder(out).claimed(print):
            held, holder = OutputFolder(out).store.holder()
            assert held is True and holder is not None and holder["pid"] == os.getpid()
    finally:
        timer.join()
    assert _claim.PROBE_GRACE_SECONDS >= 0.3


def test_status_of_what_is_no_output(tmp_path: Path, tiny_bert_bundle: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OutputError, match="holds no _manifest.json: not an output folder of embedrt embed-dataset"):
        output_status(tmp_path)
    assert main(["info", str(tmp_path)]) == 2
    assert "is neither a bundle (no manifest.json" in capsys.readouterr().err
    assert main(["info", str(tiny_bert_bundle)]) == 0  # a bundle is still described as one
    assert "dimension" in capsys.readouterr().out
