"""A large compressed file decompressed ahead of the planning scan by worker processes, a range each
(``_unpack``): the same bytes, member starts and errors as the reader without workers, whatever the
file holds (byte patterns that look like a member's header, padding, members longer than a range,
one member only, a corrupt or truncated member, a worker that fails)."""

from __future__ import annotations

import bz2
import gzip
import json
import random
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pq = pytest.importorskip("pyarrow.parquet")

from embedrt._objects import StorageError  # noqa: E402
from embedrt.dataset import _scan_workers, _unpack, embed_dataset  # noqa: E402
from embedrt.dataset import _storage as storage  # noqa: E402
from embedrt.dataset._scan_workers import ProcessScans  # noqa: E402
from embedrt.dataset._sources import plan_input  # noqa: E402

HEAD_GZ = b"\x1f\x8b\x08\x00"


class InThreads:
    """``unpack_range`` in this process (``ProcessScans``' protocol without processes); ``fails``:
    the ranges (by their first byte) whose worker fails."""

    def __init__(self, fails: tuple[int, ...] = ()) -> None:
        self.fails = fails
        self.asked: list[int] = []
        self._lock = threading.Lock()

    def start(self) -> int:
        return 4

    def unpack(self, path: str, suffix: str, begin: int, stop: int, most: int) -> _unpack.Unpacked:
        with self._lock:
            self.asked.append(begin)
        if begin in self.fails:
            raise RuntimeError("a planning scan's worker process ended")
        return _unpack.unpack_range(path, suffix, begin, stop, most)


def _lines(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "Rhein", "Köln", "BZh91AY&SY", "\x1f\x8b\x08"]
    return [json.dumps({"id": f"r{i}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))}
                       ).encode() + b"\n" for i in range(n)]  # fmt: skip


def _read(path: Path, unpack: Any) -> tuple[bytes, list[tuple[int, int]], str]:
    """The decompressed bytes, the member starts kept, and the error met ('' for none)."""
    out = bytearray()
    error = ""
    ahead = _unpack.reader(str(path), path.stat().st_size, unpack) if unpack is not None else None
    assert (ahead is None) == (unpack is None)
    with storage.open_input(str(path), ahead=ahead) as f:
        try:
            while piece := f.read(5000):
                out += piece
        except StorageError as e:
            error = str(e)
        starts = storage.member_starts(f)
    return bytes(out), starts, error


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges of 4 KB, files of any size decompressed ahead, every member's start kept."""
    monkeypatch.setattr(_unpack, "RANGE", 4096)
    monkeypatch.setattr(_unpack, "SMALLEST", {".bz2": 1, ".gz": 1})
    monkeypatch.setattr(storage, "SEEK_EVERY", 1)


def _same(path: Path, unpack: Any = None) -> tuple[bytes, list[tuple[int, int]], str]:
    plain = _read(path, None)
    ahead = _read(path, unpack or InThreads())
    assert ahead[0] == plain[0]
    assert ahead[1] == plain[1]
    assert ahead[2] == plain[2]
    return plain


def _members(path: Path, pieces: list[bytes], pack: Callable[[bytes], bytes], between: Callable[[int], bytes] = lambda k: b"",
             after: bytes = b"") -> list[int]:  # fmt: skip
    """``pieces`` compressed a member each into ``path``; where each begins."""
    at, data = [], bytearray()
    for k, piece in enumerate(pieces):
        data += between(k)
        at.append(len(data))
        data += pack(piece)
    path.write_bytes(bytes(data) + after)
    return at


def test_bz2_streams_and_trailing_bytes(tmp_path: Path, small_ranges: None, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _lines(3000)
    path = tmp_path / "rows.jsonl.bz2"
    at = _members(path, [b"".join(lines[i:i + 23]) for i in range(0, len(lines), 23)], bz2.compress,
                  after=b"\0\0 trailing garbage")  # fmt: skip
    data, starts, error = _same(path)
    assert data == b"".join(lines) and not error
    trailing = path.stat().st_size - len(b"\0\0 trailing garbage")  # where a member would begin after the last
    assert [c for _, c in starts] == [*at[1:], trailing]  # every member's start (SEEK_EVERY 1), each range's first too
    monkeypatch.setattr(storage, "SEEK_EVERY", 20_000)  # a member's start kept 20,000 bytes after the last kept
    kept: list[tuple[int, int]] = []
    for start in starts:
        if not kept or start[0] - kept[-1][0] >= 20_000:
            kept.append(start)
    assert _same(path)[1] == kept and 10 < len(kept) < len(starts) / 3
    assert path.stat().st_size > 10 * _unpack.RANGE


def test_gzip_members_padding_and_false_headers(tmp_path: Path, small_ranges: None) -> None:
    """Members stored (level 0) hold gzip headers in their bytes as they are: a worker tries them,
    passes over them, and the reader takes no range that begins there; zero padding between members."""
    lines = _lines(2500, seed=1)
    pieces = [b"".join(lines[i:i + 31]) for i in range(0, len(lines), 31)]
    path = tmp_path / "rows.jsonl.gz"
    _members(path, pieces, lambda b: gzip.compress(HEAD_GZ + b"\0" * 6 + b, compresslevel=0 if len(b) % 2 else 6),
             between=lambda k: b"\0" * (k % 3))  # fmt: skip
    assert path.read_bytes().count(HEAD_GZ) > len(pieces) + 20  # true heads and false ones
    data, _starts, error = _same(path)
    assert data.count(HEAD_GZ) == len(pieces) and not error


def test_a_gzip_file_inside_a_member_is_not_taken_for_members(tmp_path: Path, small_ranges: None) -> None:
    """A WARC file that archives a .gz download: deflate stores the incompressible inner file's bytes
    as they are, so its members decompress without an error from inside the outer member. A worker
    may take them for the file's own; the reader does not, since its range does not begin where the
    range before ended."""
    inner = b"".join(gzip.compress(b"".join(_lines(40, seed=k))) for k in range(30))
    pieces = [b"record %d\n" % k + (inner if k in (2, 5) else b"".join(_lines(30, seed=100 + k))) for k in range(9)]
    path = tmp_path / "archive.warc.gz"
    _members(path, pieces, lambda b: gzip.compress(b, compresslevel=0 if inner in b else 6))  # stored, as deflate stores them
    workers = InThreads()
    data, _starts, error = _same(path, workers)
    assert data == b"".join(pieces) and not error
    inner_at = path.read_bytes().index(inner[:64])
    taken = [_unpack.unpack_range(str(path), ".gz", k * _unpack.RANGE, (k + 1) * _unpack.RANGE, _unpack.MOST)
             for k in range(path.stat().st_size // _unpack.RANGE + 1)]  # fmt: skip
    assert any(t.whole and t.start is not None and t.start > inner_at and t.start < inner_at + len(inner) for t in taken)


def test_long_members_one_member_and_too_many_bytes(tmp_path: Path, small_ranges: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    lines = _lines(6000, seed=2)
    long = [b"".join(lines[:50]), b"".join(lines[50:3000]), *(b"".join(lines[i:i + 40]) for i in range(3000, 6000, 40))]
    path = tmp_path / "long.jsonl.gz"
    _members(path, long, gzip.compress)  # the second member spans many ranges: they are passed over
    assert _same(path)[0] == b"".join(lines)
    one = tmp_path / "one.jsonl.gz"
    one.write_bytes(gzip.compress(b"".join(lines)))
    workers = InThreads()
    assert _same(one, workers)[0] == b"".join(lines)
    assert len(workers.asked) <= workers.start() + _unpack.AHEAD  # the first range is the whole file: no more asked
    monkeypatch.setattr(_unpack, "MOST", 3000)  # every range's bytes too many: each decompressed by the reader
    assert _same(path)[0] == b"".join(lines)
    assert _same(one)[0] == b"".join(lines)


def test_corrupt_and_truncated_files_fail_as_without_workers(tmp_path: Path, small_ranges: None) -> None:
    lines = _lines(3000, seed=3)
    pieces = [bz2.compress(b"".join(lines[i:i + 20])) for i in range(0, len(lines), 20)]
    whole = b"".join(pieces)
    head = sum(len(p) for p in pieces[:len(pieces) // 2])
    inside = head + 100  # in a stream's blocks, past its header
    cases = {
        "corrupt": whole[:inside] + bytes(b ^ 0x55 for b in whole[inside:inside + 200]) + whole[inside + 200:],
        # a stream whose header is corrupt: not bytes after the last stream (Python's bz2 would end there)
        "header": whole[:head] + b"XZh" + whole[head + 3:],
        "truncated": whole[:-100],
    }
    # stored gzip members of 150 KB (their bytes handed out as they come), the third's checksum wrong:
    # the bytes before the error depend on where the reads of the member ended
    stored = [gzip.compress(b"".join(lines[i:i + 500]), compresslevel=0) for i in range(0, len(lines), 500)]
    cases["checksum"] = b"".join(stored[:2]) + stored[2][:-8] + bytes(4) + stored[2][-4:] + b"".join(stored[3:])
    for name, damaged in cases.items():
        path = tmp_path / f"{name}.jsonl.{'gz' if name == 'checksum' else 'bz2'}"
        path.write_bytes(damaged)
        data, _starts, error = _same(path)
        assert re.search(r"its compressed data is truncated or corrupt after [\d,]+ decompressed bytes", error), name
        assert 0 < len(data) < len(b"".join(lines))


def test_a_failing_worker_leaves_its_range_to_the_reader(tmp_path: Path, small_ranges: None) -> None:
    lines = _lines(3000, seed=4)
    path = tmp_path / "rows.jsonl.gz"
    _members(path, [b"".join(lines[i:i + 25]) for i in range(0, len(lines), 25)], gzip.compress)
    workers = InThreads(fails=(3 * 4096, 4 * 4096, 9 * 4096))
    assert _same(path, workers)[0] == b"".join(lines)
    first = InThreads(fails=(0,))
    assert _same(path, first)[0] == b"".join(lines)


def test_the_scan_in_worker_processes_plans_as_without(tmp_path: Path, small_ranges: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Real worker processes: the same plan (parts, their hashes, seek points) and the same job."""
    lines = _lines(4000, seed=5)
    path = tmp_path / "rows.jsonl.bz2"
    _members(path, [b"".join(lines[i:i + 30]) for i in range(0, len(lines), 30)], bz2.compress)
    workers = ProcessScans()
    monkeypatch.setattr(workers, "size", 2)
    try:
        kw: dict[str, Any] = {"text": "text", "id_column": "id", "keep_columns": ()}
        plain, ahead = plan_input(str(path), 500, **kw), plan_input(str(path), 500, unpack=workers, **kw)
        assert ahead.parts == plain.parts and ahead.shards == plain.shards and len(ahead.parts) == 8
        assert len(ahead.shards[0].seeks) == 7
        assert workers._all  # they did decompress it
    finally:
        workers.close()
    with pytest.raises(RuntimeError, match="worker processes were ended"):
        workers.unpack(str(path), ".bz2", 0, 4096, 1 << 20)


def test_the_job_says_its_file_is_decompressed_ahead(tmp_path: Path, tiny_bert_bundle: Path, small_ranges: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    lines = _lines(600, seed=6)
    path = tmp_path / "rows.jsonl.gz"
    _members(path, [b"".join(lines[i:i + 30]) for i in range(0, len(lines), 30)], gzip.compress)
    monkeypatch.setattr(_scan_workers, "available_cpus", lambda: 2)
    said: list[str] = []
    common: dict[str, Any] = {"id_column": "id", "rows_per_part": 200, "progress": False}
    ahead = embed_dataset(path, tmp_path / "ahead", tiny_bert_bundle, log=said.append, **common)
    assert any(re.fullmatch(r"scanning .*rows\.jsonl\.gz \(0\.\d MB; decompressed by 2 worker processes\)", m)
               for m in said), said  # fmt: skip
    monkeypatch.setattr(_unpack, "SMALLEST", {".bz2": 1 << 60, ".gz": 1 << 60})
    plain = embed_dataset(path, tmp_path / "plain", tiny_bert_bundle, **common)
    assert (ahead.written, ahead.parts) == (plain.written, plain.parts) == (600, 3)
    assert pq.read_table(tmp_path / "ahead").equals(pq.read_table(tmp_path / "plain"))
    manifest = [json.loads((tmp_path / d / "_manifest.json").read_text())["input"] for d in ("ahead", "plain")]
    assert manifest[0] == manifest[1]


def test_process_scans_closed_tell_a_waiting_thread(tmp_path: Path) -> None:
    """A thread waiting for an idle worker when the workers are ended is told, and does not wait forever."""
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"x\n" * 10))
    workers = ProcessScans()
    workers.size = 1
    errors: list[BaseException] = []
    busy = workers._take()  # the one worker taken: the next asks wait

    def ask() -> None:
        try:
            workers.unpack(str(path), ".gz", 0, 4096, 1 << 20)
        except RuntimeError as e:
            errors.append(e)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    assert busy in workers._all
    workers.close()
    thread.join(10)
    assert not thread.is_alive() and errors and "ended" in str(errors[0])
