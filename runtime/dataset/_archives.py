"""Zip archives read as folders of documents: each file in an archive is a document of its own.

A member is named by a locator, ``ARCHIVE!/MEMBER`` (``/data/export.zip!/docs/a.pdf``,
``s3://bucket/export.zip!/docs/a.pdf``), which the storage functions open, stamp and read as they
do a file: its stamp is its archive's (an archive rewritten is every member changed), its bytes are
the member's, decompressed. An archive's central directory is read once per process and kept
(``_open``) while the archive is unchanged: a part of a hundred members does not read it a hundred
times, and on object storage a member is then one or two ranged reads.
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
import zlib
from collections import OrderedDict
from typing import IO, Any

from .._objects import is_uri, split_uri

SEP = "!/"  # between an archive and a member in a locator
_LOCATOR = re.compile(r"\.zip!/", re.IGNORECASE)  # where a locator's archive ends
MOST_BYTES = 1 << 30  # a member is read whole: one declared larger is a bad row, not the job's memory
_KEPT = 4  # archives kept open at once (their central directories parsed)


class ArchiveError(ValueError):
    """An archive whose files cannot be listed (not a zip, cut short): the message says so."""


class UnreadableMember(OSError):
    """A member that cannot be read (encrypted, compressed by a method Python lacks, too large, cut
    short): the message says why, as a bad row's reason."""


def is_archive(name: str) -> bool:
    """Whether a file is read as an archive of documents (its name ends in ``.zip``)."""
    return name.lower().endswith(".zip")


def split(where: str) -> tuple[str, str] | None:
    """(archive, member) of a member's locator, else None."""
    m = _LOCATOR.search(where)
    if m is None:
        return None
    return where[:m.end() - len(SEP)], where[m.end():]


def locator(archive: str, member: str) -> str:
    return f"{archive}{SEP}{member}"


def members(archive: str) -> list[str]:
    """The documents of an archive: its files, not its folders, nor hidden files (a name in their
    path that starts with ``.``, as the ``._`` resource forks macOS adds under ``__MACOSX/``); a
    name stored twice once."""
    names = (i.filename for i in _open(archive).infolist() if not i.is_dir())
    return list(dict.fromkeys(n for n in names if not any(p.startswith(".") for p in n.split("/"))))


def open_member(where: str) -> IO[bytes]:
    """A member's bytes, decompressed: a buffered reader (``peek``, ``seek``)."""
    archive, name = split(where)  # type: ignore[misc]
    z = _open(archive)
    try:
        info = z.getinfo(name)
    except KeyError:
        raise FileNotFoundError(f"{where}: no file {name!r} in the archive") from None
    if info.flag_bits & 0x1:
        raise UnreadableMember("a file encrypted in its zip archive (a password is needed)")
    if info.file_size > MOST_BYTES:
        raise UnreadableMember(f"a file of {info.file_size:,} bytes in its zip archive (at most {MOST_BYTES:,} are read)")
    try:
        return z.open(info)
    except NotImplementedError as e:  # a compression method this Python lacks (Deflate64, PPMd, ...)
        raise UnreadableMember(f"a file in its zip archive that cannot be decompressed ({e})") from None


DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error)  # a member's bytes not what its archive says (CRC, length)


def damaged(e: BaseException) -> str:
    return f"a file in its zip archive that is damaged or cut short ({type(e).__name__}: {e})"


def digest_input(where: str) -> str:
    """What a member that cannot be read is known by instead of its bytes: its CRC and sizes as the
    archive records them (they change when it does)."""
    archive, name = split(where)  # type: ignore[misc]
    i = _open(archive).getinfo(name)
    return f"{i.CRC:08x}:{i.compress_size}:{i.file_size}:{i.compress_type}:{i.flag_bits}"


_kept: OrderedDict[str, tuple[tuple[int, ...], zipfile.ZipFile]] = OrderedDict()
_seen: dict[str, tuple[int, ...]] = {}  # an object archive's stamp as last taken (``seen``)
_lock = threading.Lock()


def seen(archive: str, stamp: tuple[int, ...]) -> tuple[int, ...]:
    """Note an archive's stamp just taken (a plan's, a part's check): an archive kept open under
    another stamp is read again before its next member."""
    if is_uri(archive):
        with _lock:
            _seen[archive] = stamp
    return stamp


def _open(archive: str) -> zipfile.ZipFile:
    """The archive opened (its central directory read), kept for the next member while its stamp is
    the same: a local file's taken each time, an object's as last ``seen`` (every part's check takes
    it), else asked. Members are read from several threads at once through one ``ZipFile`` (it
    seeks and reads under a lock of its own)."""
    stamp = _stamp(archive)
    with _lock:
        kept = _kept.get(archive)
        if kept is not None and kept[0] == stamp:
            _kept.move_to_end(archive)
            return kept[1]
    z = _read_directory(archive)
    with _lock:
        _kept[archive] = (stamp, z)
        _kept.move_to_end(archive)
        while len(_kept) > _KEPT:
            _kept.popitem(last=False)  # closed when its last reader is done with it
    return z


def forget() -> None:
    """Drop the archives kept and their stamps (a plan starts from what the archives hold now)."""
    with _lock:
        _kept.clear()
        _seen.clear()


def _stamp(archive: str) -> tuple[int, ...]:
    with _lock:
        known = _seen.get(archive)  # objects' only
    if known is not None:
        return known
    from ._storage import scan_stamp_rows, unpadded

    return seen(archive, unpadded(tuple(scan_stamp_rows([archive])[0].tolist())))  # a listing's where it has it


def _read_directory(archive: str) -> zipfile.ZipFile:
    f: Any
    if is_uri(archive):
        fs, path = split_uri(archive)
        f = fs.open_input_file(path)  # seekable: ranged reads of the directory, then of each member
    else:
        f = open(archive, "rb")  # noqa: SIM115 (kept open with its ZipFile)
    try:
        return zipfile.ZipFile(io.BufferedReader(f, 1 << 16) if is_uri(archive) else f)
    except zipfile.BadZipFile as e:
        f.close()
        raise ArchiveError(f"a zip archive that cannot be read ({e})") from None
