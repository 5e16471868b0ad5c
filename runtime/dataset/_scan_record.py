"""What the planning scan found in each input file, kept in OUTPUT (``_input_scan.json``) so that the
next run over the same folder reads only the files that changed since.

Planning reads every byte of a text input (to count rows, find where each part starts and hash each
part) and of a local Parquet or Arrow file (to hash it): for a corpus of many GB, minutes before
any row is embedded, and on object storage a download of the whole corpus, on every resume and on
every run over a grown corpus. A file's findings are taken again when it is unchanged, as git
trusts its index: locally its size, modification time, inode change time, inode and device are as
they were (an edit in place that restores the size and the modification time still changes the
change time, which no user call sets), on object storage its size and time stamp (an object is
never changed in place: a new upload under the name has a new time stamp). A file changed within
``SETTLED_S`` of its scan is not kept (a second write within the file system's time stamp
resolution would look unchanged). ``rescan`` (``--rescan``) reads every file again regardless.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from typing import IO, Any

from . import _storage as storage

NAME = "_input_scan.json"
FORMAT = "embedrt-input-scan"
VERSION = 1
_WRITTEN_AT_ONCE = 4096  # entries encoded into one string (``ScanRecord.write``)
SETTLED_S = 3.0  # time stamps coarser than this (FAT's 2 s) could hide a second write


class ScanRecord:
    """The findings of an earlier scan (``old``: the record's bytes, or None), and this scan's.

    ``start`` with the scan's settings (what the findings depend on beside a file's bytes), then
    per file ``lookup`` and ``keep`` (an unchanged file's findings) or ``add`` (what the scan found);
    ``data`` is the record to write where ``changed``."""

    def __init__(self, old: bytes | None = None) -> None:
        self.unreadable = False
        self._settings: Any = None
        self._old: dict[str, dict[str, Any]] = {}
        if old is not None:
            try:
                data = json.loads(old.decode("utf-8"))
                if data["format"] != FORMAT or data["version"] != VERSION:
                    raise ValueError(f"format {data['format']!r} version {data['version']!r}")
                self._settings, self._old = data["settings"], dict(data["files"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
                self.unreadable, self._settings, self._old = True, None, {}
        self.settings: dict[str, Any] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self._key = storage.Resolved()  # a file's name in the record

    def start(self, settings: dict[str, Any]) -> None:
        """Begin a scan with ``settings`` (JSON values); findings made under others are not used."""
        self.settings = json.loads(json.dumps(settings))  # as read back: tuples as lists
        if self._settings != self.settings:
            self._old = {}
        self.files = {}

    def lookup(self, path: str, stamp: tuple[int, ...]) -> dict[str, Any] | None:
        """The recorded findings of the file ``path`` if its ``stamp`` (``storage.scan_stamp``) is
        unchanged, else None."""
        entry = self._old.get(self._key(path))
        return entry if isinstance(entry, dict) and entry.get("stamp") == list(stamp) else None

    def keep(self, path: str, entry: dict[str, Any]) -> None:
        """Take the findings ``lookup`` gave into this scan's."""
        self.files[self._key(path)] = entry

    def add(self, path: str, stamp: tuple[int, ...], scanned_at: float, findings: dict[str, Any]) -> None:
        """Keep what a scan (begun at ``scanned_at``, wall-clock seconds) found in ``path``, unless the
        file changed too shortly before."""
        newest = max(stamp[1:3]) if len(stamp) > 2 else stamp[1]  # local: modification or inode change
        if newest <= (scanned_at - SETTLED_S) * 1e9:
            self.files[self._key(path)] = {"stamp": stamp, **findings}  # a tuple, written as a list

    @property
    def changed(self) -> bool:
        return self.files != self._old or self._settings != self.settings

    def write(self, f: IO[bytes]) -> None:
        """The record as JSON into ``f``, its files a few thousand at a time (a million documents'
        findings are hundreds of MB as one string)."""
        head = {"format": FORMAT, "version": VERSION, "written": round(time.time(), 3), "settings": self.settings}
        f.write(_json(head)[:-1].encode() + b',"files":{')
        items, sep = iter(self.files.items()), b""
        while chunk := dict(itertools.islice(items, _WRITTEN_AT_ONCE)):
            f.write(sep + _json(chunk)[1:-1].encode())
            sep = b","
        f.write(b"}}")

    def data(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
