"""One run at a time per output folder.

A second run on an OUTPUT that a first one is still writing (a job started twice, a batch system's
requeue while the first still runs, a resume typed in another terminal) would delete the first's
files in flight: a resume cleans up temporary files and parts without a journal entry, which are
exactly what a live run has open. So a run claims OUTPUT before it plans, and another run is
refused, naming the holder, until the claim ends.

On a local or mounted file system the claim is an exclusive ``flock`` on ``OUTPUT/_lock.json``
(which names the holder): the kernel (or the NFS lock manager) ends it when the process exits in any
way, ``kill -9`` included, so a crashed run never leaves a stale claim. A file system that takes no
locks (some FUSE mounts) runs without one, and says so.

An object store has no locks: there the claim is a lease, the object ``_lock.json`` rewritten every
``REFRESH_SECONDS`` by the run that holds it. A run that finds a lease waits: if it is renewed, its
run is alive and this one is refused; if it is not renewed for ``LEASE_SECONDS`` (its run was
killed), this one takes it over, so a run resumed after a kill waits about that long. Two runs
starting at the same moment both write the object, then both read it back after ``SETTLE_SECONDS``:
the one whose token is not there is refused. A run whose lease was taken over (its renewals failed
for longer than a lease) stops before its next part instead of writing on.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._errors import EmbedrtError

LOCK = "_lock.json"
LEASE_SECONDS = 60.0  # an object-store lease not renewed for this long is a killed run's
REFRESH_SECONDS = 10.0
SETTLE_SECONDS = 2.0  # between writing a lease and reading it back
PROBE_GRACE_SECONDS = 1.0  # a lock found held is tried again this long: ``holder_local`` holds it for an instant
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)  # flock's "another holds it"


class OutputInUseError(EmbedrtError, RuntimeError):
    """OUTPUT is being written by another run."""


class Claim:
    """A held claim; ``check()`` raises once it was lost (an object-store lease taken over)."""

    def __init__(self) -> None:
        self.lost: str | None = None

    def check(self) -> None:
        if self.lost is not None:
            raise OutputInUseError(self.lost)


def _holder() -> dict[str, Any]:
    """What a claim says of its run: where, since when (for people; ``began``: seconds since the
    epoch, as the journal's ``finished``), and a token of its own."""
    now = time.time()
    since = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds")
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": since, "began": round(now, 3),
            "token": secrets.token_hex(8)}


def holder_of(raw: bytes | None) -> dict[str, Any] | None:
    """The holder a lock's content names (host, pid, since), if it names one."""
    try:
        h = json.loads(raw or b"")
        return h if isinstance(h, dict) and {"host", "pid", "since"} <= h.keys() else None
    except ValueError:
        return None


def named(holder: dict[str, Any] | None) -> str:
    """A holder, for a message."""
    if holder is None:
        return "a run that has not yet named itself"
    return f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}"


def _named(raw: bytes | None) -> str:
    return named(holder_of(raw))


def _in_use(where: str, who: str) -> str:
    return (f"output folder {where!r} is being written by another embed-dataset run ({who}); wait for it to "
            "finish or stop it, then run again (it continues where the runs stopped), or choose another folder")


@contextlib.contextmanager
def claim_local(folder: Path, where: str, say: Callable[[str], None]) -> Iterator[Claim]:
    """Hold ``folder/LOCK`` locked for the block (see the module's docstring)."""
    fd = _locked(folder / LOCK, where, say)
    if fd is None:
        yield Claim()
        return
    try:
        data = json.dumps(_holder()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        yield Claim()
    finally:
        with contextlib.suppress(OSError):  # removed while locked: a run that opened it meanwhile sees the change
            (folder / LOCK).unlink()
        os.close(fd)


def _locked(path: Path, where: str, say: Callable[[str], None]) -> int | None:
    """A descriptor of ``path`` holding an exclusive ``flock``; None where the platform or the file
    system takes no locks (said); refused where another process holds one."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        say(f"no lock on {where!r} on this platform: do not start a second run on it while this one runs")
        return None
    patience = time.monotonic() + PROBE_GRACE_SECONDS
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raw = os.pread(fd, 4096, 0)
            os.close(fd)
            if e.errno in _BUSY:
                if time.monotonic() < patience:  # perhaps a status probe's instant
                    time.sleep(0.05)
                    continue
                raise OutputInUseError(_in_use(where, _named(raw))) from None
            say(f"the file system of {where!r} takes no locks ({e.strerror}): do not start a second run on it "
                "while this one runs")
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        try:  # the path may have been a holder's that removed it as we opened it: lock the file there now
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def holder_local(folder: Path) -> tuple[bool | None, dict[str, Any] | None]:
    """Whether a run holds the claim on ``folder`` now (None: the file system takes no locks), and
    the holder its lock file names (``holder_of``; also a killed run's, whose file stays). Probed
    with a shared lock held for an instant, which a run starting at that instant waits out."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return None, None
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False, None
    try:
        raw = os.pread(fd, 4096, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return (True if e.errno in _BUSY else None), holder_of(raw)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, holder_of(raw)
    finally:
        os.close(fd)


def holder_object(store: Any) -> tuple[bool, dict[str, Any] | None]:
    """Whether a run holds the lease on ``store`` (an ``ObjectFolder``) now, that is renewed within
    ``LEASE_SECONDS``, and its holder (``holder_of``, with ``renewed``: seconds since the renewal)."""
    seen = store.mtime(LOCK)
    if seen is None:
        return False, None
    age, holder = time.time() - seen, holder_of(store.read(LOCK))
    return age < LEASE_SECONDS, None if holder is None else {**holder, "renewed": age}


@contextlib.contextmanager
def claim_object(store: Any, where: str, say: Callable[[str], None]) -> Iterator[Claim]:
    """Hold a lease on ``store`` (an ``ObjectFolder``) for the block (see the module's docstring)."""
    _wait_for_lease(store, where, say)
    data = json.dumps(_holder()).encode()
    store.write(LOCK, lambda f: f.write(data))
    time.sleep(SETTLE_SECONDS)
    if store.read(LOCK) != data:  # another run wrote its lease at the same moment, after ours
        raise OutputInUseError(_in_use(where, _named(store.read(LOCK))))
    held = Claim()
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(REFRESH_SECONDS):
            try:
                if store.read(LOCK) != data:
                    held.lost = _in_use(where, f"{_named(store.read(LOCK))}, which took over this run's lease")
                    return
                store.write(LOCK, lambda f: f.write(data))
            except Exception as e:  # a store that fails now and then: try again at the next renewal
                say(f"could not renew the lease on {where!r}: {e}")

    thread = threading.Thread(target=renew, name="embedrt-lease", daemon=True)
    thread.start()
    try:
        yield held
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            if held.lost is None and store.read(LOCK) == data:
                store.delete(LOCK)


def _wait_for_lease(store: Any, where: str, say: Callable[[str], None]) -> None:
    """Return once no other run holds a lease on ``store``: there is none, its run let it go, or it
    was not renewed for ``LEASE_SECONDS`` (a killed run: taken over); refused as soon as it is renewed."""
    seen = store.mtime(LOCK)
    if seen is None:
        return
    who = _named(store.read(LOCK))
    age = time.time() - seen
    say(f"{where!r} is leased to another run ({who}, renewed {age:.0f} s ago): waiting for it to be renewed "
        "(that run is alive: this one stops) or to expire (that run was killed: this one takes over)")
    # expired by the clocks, and not renewed while watched for longer than a renewal takes: a clock
    # ahead of the store's cannot take a live run's lease
    watched = time.monotonic()
    while age < LEASE_SECONDS or time.monotonic() - watched < 1.5 * REFRESH_SECONDS:
        left = LEASE_SECONDS - age
        time.sleep(min(REFRESH_SECONDS / 2, left) if left > 0 else REFRESH_SECONDS / 2)
        now = store.mtime(LOCK)
        if now is None:  # let go: its run ended
            return
        if now != seen:
            raise OutputInUseError(_in_use(where, f"{_named(store.read(LOCK))}, which renewed its lease"))
        age = time.time() - seen
    say(f"taking over the lease of a run on {where!r} not renewed for {age:.0f} s ({who})")
