"""One run at a time per output folder: a second run is refused while the first holds the folder
(and touches nothing of it), and goes on once the first ended, however it ended."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import embedrt.dataset._claim as _claim  # noqa: E402
from embedrt.dataset import InputError, OutputInUseError, embed_dataset  # noqa: E402
from embedrt.dataset._claim import LOCK  # noqa: E402
from embedrt.dataset._output import OutputFolder  # noqa: E402

TEXTS = [f"text {i}: " + "word " * (i % 9) for i in range(120)]
_HOLD = ("import sys, time\nfrom embedrt.dataset._output import OutputFolder\n"
         "with OutputFolder(sys.argv[1]).claimed(print):\n    print('held', flush=True)\n    time.sleep(600)\n")  # fmt: skip


def _input(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return src


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding OUTPUT's claim, as a run in progress does."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_and_touches_nothing(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    src, out = _input(tmp_path), tmp_path / "out"
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    (out / "part-000002.parquet").unlink()  # a run in progress: one part being written, one not yet journaled
    (out / ".part-000002.parquet.tmp-1234abcd").write_bytes(b"PAR1 half")
    (out / "_parts.jsonl").write_text((out / "_parts.jsonl").read_text().splitlines()[0] + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        for overwrite in (False, True):
            with pytest.raises(OutputInUseError, match=rf"is being written by another embed-dataset run \(pid {proc.pid} on host "):
                embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False, overwrite=overwrite)
        r = subprocess.run([sys.executable, "-m", "embedrt.cli", "embed-dataset", str(src), str(out), "-m",
                            str(tiny_bert_bundle), "--rows-per-part", "40"], capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 2 and f"pid {proc.pid}" in r.stderr and "wait for it to finish" in r.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK} == before
    finally:
        proc.send_signal(signal.SIGKILL)  # a kill ends the claim: the next run goes on
        proc.wait()
    assert (out / LOCK).is_file()  # left by the killed holder, unlocked
    s = embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    assert s.parts_resumed == 1 and s.written == len(TEXTS)
    assert sorted(p.name for p in out.iterdir()) == ["_input_scan.arrow", "_manifest.json", "_parts.jsonl"] + [
        f"part-{i:06d}.parquet" for i in range(3)]  # fmt: skip


def test_the_claim_is_held_for_the_whole_run_and_then_let_go(tmp_path: Path, tiny_bert_bundle: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    src, out = _input(tmp_path), tmp_path / "out"
    refused: list[str] = []
    record = OutputFolder.record

    def second_run_meanwhile(self: OutputFolder, entry: dict[str, object]) -> dict[str, object]:
        try:  # from another thread: a claim of its own, as another process's
            with OutputFolder(out).claimed(print):
                pass
        except OutputInUseError as e:
            refused.append(str(e))
        return record(self, entry)

    monkeypatch.setattr(OutputFolder, "record", second_run_meanwhile)
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)
    assert len(refused) == 3 and all("another embed-dataset run" in m for m in refused)
    assert not (out / LOCK).exists()
    monkeypatch.undo()
    embed_dataset(src, out, tiny_bert_bundle, rows_per_part=40, progress=False)  # let go: a rerun goes on
    assert not (out / LOCK).exists()


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError):
        embed_dataset(tmp_path / "missing.jsonl", out, tiny_bert_bundle, progress=False)
    assert not out.exists()


def test_a_claim_on_a_folder_left_by_a_killed_run_is_taken(tmp_path: Path, tiny_bert_bundle: Path,
                                                           holder: subprocess.Popen[str]) -> None:  # fmt: skip
    out = tmp_path / "out"
    holder.kill()
    holder.wait()
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # no manifest: a folder of no other files is still new
    s = embed_dataset(_input(tmp_path), out, tiny_bert_bundle, rows_per_part=40, progress=False)
    assert s.written == len(TEXTS) and not (out / LOCK).exists()


class _Store:
    """An object store's folder in memory, with a clock to age its objects."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, float]] = {}

    def mtime(self, name: str) -> float | None:
        return self.objects[name][1] if name in self.objects else None

    def read(self, name: str) -> bytes | None:
        return self.objects[name][0] if name in self.objects else None

    def write(self, name: str, write: object) -> int:
        chunks: list[bytes] = []

        class _F:
            def write(self, b: bytes) -> None:
                chunks.append(b)

        write(_F())  # type: ignore[operator]
        self.objects[name] = (b"".join(chunks), time.time())
        return len(chunks)

    def delete(self, name: str) -> None:
        self.objects.pop(name, None)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_claim, "SETTLE_SECONDS", 0.05)
    monkeypatch.setattr(_claim, "REFRESH_SECONDS", 0.05)
    monkeypatch.setattr(_claim, "LEASE_SECONDS", 0.5)


def test_an_object_store_lease_refuses_while_renewed_and_is_taken_over_once_it_expires(quick: None) -> None:
    store, said = _Store(), []
    with _claim.claim_object(store, "s3://b/out", said.append):
        lease = store.read(LOCK)
        first = store.mtime(LOCK)
        time.sleep(0.3)
        assert lease is not None and store.mtime(LOCK) != first  # renewed meanwhile
        t = time.monotonic()
        with (pytest.raises(OutputInUseError, match=r"another embed-dataset run \(pid \d+ on host .*which renewed its lease"),
              _claim.claim_object(store, "s3://b/out", said.append)):
            pass
        assert time.monotonic() - t < 0.4  # refused at the first renewal, not at the lease's end
    assert store.read(LOCK) is None  # let go at the end
    assert len(said) == 1 and "waiting for it to be renewed" in said[0]
    store.write(LOCK, lambda f: f.write(lease))  # type: ignore[attr-defined]  # a killed run's lease: never renewed
    t = time.monotonic()
    with _claim.claim_object(store, "s3://b/out", said.append):
        assert store.read(LOCK) != lease and time.monotonic() - t >= 0.5
    assert "taking over the lease" in said[-1] and store.read(LOCK) is None
    store.write(LOCK, lambda f: f.write(lease))  # type: ignore[attr-defined]
    store.objects[LOCK] = (lease, time.time() - 3600)  # a clock an hour ahead of the store's: watched anyway
    t = time.monotonic()
    with _claim.claim_object(store, "s3://b/out", said.append):
        assert 1.5 * 0.05 <= time.monotonic() - t < 0.5
    assert "taking over the lease" in said[-1] and store.read(LOCK) is None


def test_a_lease_let_go_while_waiting_is_taken_at_once(quick: None) -> None:
    store = _Store()
    store.write(LOCK, lambda f: f.write(b"{}"))  # type: ignore[attr-defined]
    threading.Timer(0.1, store.delete, (LOCK,)).start()
    t = time.monotonic()
    with _claim.claim_object(store, "s3://b/out", print):
        assert time.monotonic() - t < 0.4


def test_a_run_whose_lease_was_taken_over_stops(quick: None) -> None:
    store = _Store()
    with _claim.claim_object(store, "s3://b/out", print) as held:
        held.check()
        store.write(LOCK, lambda f: f.write(b'{"pid": 7, "host": "other", "since": "now"}'))  # type: ignore[attr-defined]
        time.sleep(0.3)
        with pytest.raises(OutputInUseError, match="pid 7 on host other, since now, which took over this run's lease"):
            held.check()
    assert store.read(LOCK) is not None  # the other run's lease stays


def test_two_runs_claiming_at_once_one_is_refused(quick: None, monkeypatch: pytest.MonkeyPatch) -> None:
    store, results = _Store(), []
    monkeypatch.setattr(_claim, "SETTLE_SECONDS", 0.3)
    gate = threading.Barrier(2)

    def run() -> None:
        gate.wait()
        try:
            with _claim.claim_object(store, "s3://b/out", print) as held:
                time.sleep(0.5)
                held.check()  # one delayed past the other's read-back: overwritten, found by a renewal
            results.append("ran")
        except OutputInUseError:
            results.append("refused")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ran", "refused"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "embedrt.cli", "embed-dataset", *args]


def test_sigterm_stops_the_cli_as_ctrl_c_does(tmp_path: Path, tiny_bert_bundle: Path) -> None:
    """A batch system or Kubernetes stops a job with SIGTERM: the part in flight is dropped, the claim
    let go, and the same command goes on."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    src.write_text("".join(json.dumps({"text": f"{TEXTS[i % len(TEXTS)]} #{i}"}) + "\n" for i in range(12_000)))
    args = [str(src), str(out), "-m", str(tiny_bert_bundle), "--rows-per-part", "400", "--no-progress", "--threads", "1"]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    journal = out / "_parts.jsonl"
    while time.monotonic() < deadline and (not journal.is_file() or journal.read_text().count("\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated (SIGTERM): the parts finished so far are kept" in err
    files = sorted(p.name for p in out.iterdir())
    parts = [json.loads(line)["file"] for line in journal.read_text().splitlines()]
    assert 3 <= len(parts) < 30 and files == sorted(["_input_scan.arrow", "_manifest.json", "_parts.jsonl", *parts])  # no lock, no temporary
    r = subprocess.run(_cli(*args), capture_output=True, text=True, check=True)
    assert f"{len(parts)} finished by an earlier run" in r.stderr and "12000 rows written" in r.stdout


def test_the_cli_s_sigterm_handler_outlives_ray_s() -> None:
    """``ray.init`` installs a SIGTERM handler that ends the process with status 15: the Ray backend
    puts the caller's own back (the CLI's, which stops the job as Ctrl-C does), and keeps Ray's where
    the caller had none."""
    from embedrt.dataset._ray import _callers_sigterm

    def mine(signum: int, frame: object) -> None: ...

    def rays(signum: int, frame: object) -> None:
        sys.exit(signum)

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _callers_sigterm():
            signal.signal(signal.SIGTERM, rays)  # as ray.init does
        assert signal.getsignal(signal.SIGTERM) is mine
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with _callers_sigterm():
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is rays
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_file_system_without_locks_runs_unclaimed_and_says_so(tmp_path: Path, tiny_bert_bundle: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    said: list[str] = []
    s = embed_dataset(_input(tmp_path), tmp_path / "out", tiny_bert_bundle, rows_per_part=40, progress=False,
                      log=said.append)  # fmt: skip
    assert s.written == len(TEXTS) and not (tmp_path / "out" / LOCK).exists()
    assert any("takes no locks (No locks available)" in m for m in said)
