"""The planning scan's files read by worker processes of this machine, several at once (the local
backend's ``Scanners``; the Ray backend's are its cluster's tasks, ``_ray.ClusterScans``).

A file's scan is Python holding the GIL for most of its time (its lines and records found, its
parts cut), so threads do not run two at once; processes do. Workers are started as
``python -c`` of this module's ``serve`` (not through ``multiprocessing``, whose workers run the
caller's ``__main__`` script again: a script calling ``embed_dataset`` without the
``if __name__ == "__main__"`` guard would start a job in each), in sessions of their own (a
terminal's Ctrl-C stops the job, which ends them). The protocol, on a worker's standard input and
output: a request is ``(kind, arguments)`` pickled (``scan``: ``scan_content``'s; ``unpack``:
``_unpack.unpack_range``'s), the reply ``(answer, error)`` pickled,
each after its length (``_pdf_worker.HEADER``); a worker ends at the end of its input.
"""

from __future__ import annotations

import pickle
import queue
import subprocess
import sys
import threading
from typing import IO, Any

from .._session import available_cpus
from ._pdf_worker import HEADER, end_workers, read_exact

MOST = 16  # workers at most (each holds the package's imports: about 100 MB)
_START = "from embedrt.dataset._scan_workers import serve; serve()"


class ProcessScans:
    """Up to ``MOST`` worker processes (no more than this process's CPUs), started as needed;
    ``scan`` runs ``_sources.scan_content`` in an idle one, ``unpack`` ``_unpack.unpack_range`` (a
    range of a large compressed file decompressed for the scan of this process). ``close`` ends them."""

    place, objects = "in worker processes", False  # objects: by threads (round trips, not CPU)

    def __init__(self) -> None:
        self.size = min(MOST, available_cpus())
        self._idle: queue.SimpleQueue[subprocess.Popen[bytes] | None] = queue.SimpleQueue()
        self._all: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> int:
        return self.size

    def _take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker processes were ended")
            if len(self._all) < self.size and self._idle.empty():
                proc = subprocess.Popen([sys.executable, "-c", _START], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        bufsize=0, start_new_session=True)  # fmt: skip
                self._all.append(proc)
                _widen(proc.stdout)
                return proc
        idle = self._idle.get()
        if idle is None:  # ended: the next one waiting is told too
            self._idle.put(None)
            raise RuntimeError("the worker processes were ended")
        return idle

    def _ask(self, kind: str, args: tuple[Any, ...], what: str) -> Any:
        proc = self._take()
        assert proc.stdin is not None and proc.stdout is not None
        request = pickle.dumps((kind, args))
        try:
            proc.stdin.write(HEADER.pack(len(request)) + request)
            header = read_exact(proc.stdout, HEADER.size)
            body = None if header is None else read_exact(proc.stdout, HEADER.unpack(header)[0])
        except (OSError, ValueError):  # its pipes closed: it ended
            body = None
        if body is None:
            raise RuntimeError(f"a planning scan's worker process ended (code {proc.poll()}) while it {what}: "
                               "out of memory?")  # fmt: skip
        self._idle.put(proc)
        answer, error = pickle.loads(body)
        if error is not None:
            raise error  # the worker's own error (a file that is not of its kind), as a scan here raises it
        return answer

    def scan(self, *args: Any) -> Any:
        return self._ask("scan", args, f"read {args[0]}")

    def unpack(self, path: str, suffix: str, begin: int, stop: int, most: int) -> Any:
        return self._ask("unpack", (path, suffix, begin, stop, most), f"decompressed {path} from byte {begin:,}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._idle.put(None)  # a thread waiting for an idle worker is told
        end_workers(self._all)  # one still reading a large file is killed: its findings are not wanted
        self._all.clear()


def _widen(pipe: Any) -> None:
    """A pipe of 1 MB where Linux allows it (its 64 KB make a reply of tens of MB hundreds of turns)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


def scan_answer(args: tuple[Any, ...]) -> tuple[Any, BaseException | None]:
    """``scan_content`` of ``args``: its findings, or the error it met (a worker's, a Ray task's)."""
    from ._sources import scan_content

    try:
        return scan_content(*args), None
    except (OSError, ValueError, UnicodeError) as e:  # InputError and StorageError among them: raised again
        return None, e


def _answer(kind: str, args: tuple[Any, ...]) -> tuple[Any, BaseException | None]:
    if kind == "scan":
        return scan_answer(args)
    from ._unpack import unpack_range

    try:
        return unpack_range(*args), None
    except OSError as e:  # the file unreadable: the reader finds it so itself
        return None, e


def serve(requests: IO[bytes] | None = None, replies: IO[bytes] | None = None) -> None:
    """A worker's loop: each request's answer (``scan_answer``, ``unpack_range``), until the end of its input."""
    requests = requests or sys.stdin.buffer
    replies = replies or sys.stdout.buffer
    sys.stdout = sys.stderr  # a print would corrupt the replies
    while (header := read_exact(requests, HEADER.size)) is not None:
        body = read_exact(requests, HEADER.unpack(header)[0])
        if body is None:
            return
        reply = pickle.dumps(_answer(*pickle.loads(body)))
        replies.write(HEADER.pack(len(reply)) + reply)
        replies.flush()
