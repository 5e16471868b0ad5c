"""Files written whole: a temporary name in the same folder, renamed once complete.

A reader (or a resumed job) never sees a half-written file under the real name, and a failed write
leaves the previous file in place. The temporary name, ``.NAME.tmp-XXXXXXXX``, starts with a dot,
which Parquet readers and ``ls`` skip. The file gets the modes of a plain ``open(path, "w")``
(0666 less the umask), so a bundle or output made by one user can be read by a service running as
another, as with any file they would have copied.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TMP_GLOB = ".*.tmp-*"  # what a writer killed mid-write may leave behind


@contextlib.contextmanager
def written_whole(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """A new empty file next to ``path`` for the block to write; renamed to ``path`` when the block
    ends, deleted if it raises. ``durable``: the file, then its folder, are fsynced, so that the
    rename survives a power cut too (a corpus job's journal trusts it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file(path)
    try:
        yield tmp
        if durable:
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync_folder(path.parent)


def write_text_whole(path: Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), written whole."""
    with written_whole(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def move_durably(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (replacing it), the folder fsynced so the rename survives a power cut."""
    os.replace(source, target)
    _fsync_folder(target.parent)


def _new_file(path: Path) -> Path:
    while True:
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
        try:  # O_EXCL: ours alone; mode 0o666 less the umask, as open() gives
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
