"""Archives read as folders of documents: each file in a zip or tar archive is a document of its own.

A member is named by a locator, ``ARCHIVE!/MEMBER`` (``/data/export.zip!/docs/a.pdf``,
``s3://bucket/mail.tar.gz!/maildir/a/1.``), which the storage functions open, stamp and read as
they do a file: its stamp is its archive's (an archive rewritten is every member changed), its
bytes are the member's, decompressed. An archive's index (a zip's central directory; a tar's
headers, read through the whole archive) is read once per process and kept (``_open``) while the
archive is unchanged: a part of a hundred members does not read it a hundred times, and on object
storage a zip member is then one or two ranged reads.

A tar archive has no index of its own and a compressed one (``.tar.gz``, ``.tgz`` ...) no random
access: its members are read in order (``sequential``), each through one of a few decompressing
readers kept at the archive's last places (``_Tar``), so that reading a part's members in order
decompresses the archive once, not once a member.
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import IO, Any

from .._objects import StorageError, is_uri, split_uri

SEP = "!/"  # between an archive and a member in a locator
_TAR_CODECS = {".tar": None, ".tar.gz": ".gz", ".tgz": ".gz", ".tar.bz2": ".bz2", ".tbz2": ".bz2", ".tbz": ".bz2",
               ".tar.xz": ".xz", ".txz": ".xz", ".tar.zst": ".zst"}  # fmt: skip
_SUFFIXES = (".zip", *_TAR_CODECS)
_LOCATOR = re.compile("(?:" + "|".join(re.escape(s) for s in _SUFFIXES) + ")" + re.escape(SEP), re.IGNORECASE)
MOST_BYTES = 1 << 30  # a member is read whole: one declared larger is a bad row, not the job's memory
_KEPT = 4  # archives kept open at once (their indexes read)
_CURSORS = 4  # a compressed tar's readers kept at once (parts read at the same time)


class ArchiveError(ValueError):
    """An archive whose files cannot be listed (not a zip or tar, cut short): the message says so."""


class UnreadableMember(OSError):
    """A member that cannot be read (encrypted, compressed by a method Python lacks, too large, cut
    short): the message says why, as a bad row's reason."""


def is_archive(name: str) -> bool:
    """Whether a file is read as an archive of documents: its name ends in ``.zip``, ``.tar`` or a
    compressed tar's suffix (``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.tar.zst`` ...)."""
    return name.lower().endswith(_SUFFIXES)


def split(where: str) -> tuple[str, str] | None:
    """(archive, member) of a member's locator, else None."""
    if SEP not in where:  # most paths: no pattern search (a million documents' stamps)
        return None
    m = _LOCATOR.search(where)
    if m is None:
        return None
    return where[:m.end() - len(SEP)], where[m.end():]


def locator(archive: str, member: str) -> str:
    return f"{archive}{SEP}{member}"


def sequential(where: str) -> bool:
    """Whether ``where`` is a member of a compressed tar archive: read in order, by one thread."""
    member = split(where)
    return member is not None and _tar_codec(member[0]) is not None


def in_order(archive: str) -> bool:
    """Whether an archive's files are read in its own order (a tar's), not sorted by path (a zip's)."""
    return not archive.lower().endswith(".zip")


def members(archive: str) -> list[str]:
    """The documents of an archive: its files, not its folders or links, nor hidden files (a name in
    their path that starts with ``.``, as the ``._`` resource forks macOS adds under ``__MACOSX/``);
    a name stored twice once (its last copy read)."""
    return list(dict.fromkeys(n for n in _open(archive).names() if not _hidden(n)))


def open_member(where: str) -> IO[bytes]:
    """A member's bytes, decompressed: a buffered reader (``peek``, ``seek``)."""
    archive, name = split(where)  # type: ignore[misc]
    return _open(archive).open(name, where)


ATTACHED_BYTES = 256 << 20  # the files of an archive held in memory (an attachment) read at most, all together


def files_in(name: str, data: bytes, most: int = ATTACHED_BYTES) -> Iterator[tuple[str, bytes]]:
    """The files of an archive held in memory (named ``name``: an e-mail attachment), as ``members``
    gives an archive's, with their bytes, up to ``most`` bytes in all; an encrypted file, one past
    the budget or a zip's file that cannot be read is left out, and what a damaged archive (a tar
    cut short) holds before the damage is given."""
    left = most
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for i in z.infolist():
                    if i.is_dir() or _hidden(i.filename) or i.flag_bits & 0x1 or i.file_size > left:
                        continue
                    try:
                        content = z.read(i)
                    except (NotImplementedError, *DAMAGED):  # this file's method or bytes: the next one
                        continue
                    left -= i.file_size
                    yield i.filename, content
            return
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:  # gzip, bzip2 and xz; not zstd
            for m in t:
                member = _tar_name(m.name)
                if not m.isfile() or _hidden(member) or m.size > left:
                    continue
                left -= m.size
                f = t.extractfile(m)
                if f is not None:
                    yield member, f.read()
    except (zipfile.BadZipFile, tarfile.TarError, NotImplementedError, *DAMAGED, OSError, ValueError):
        return


def _hidden(member: str) -> bool:
    return any(p.startswith(".") for p in member.split("/"))


def _tar_name(name: str) -> str:
    """A tar member's name without a leading ``/`` or ``./`` (an archive of ``.``: ``tar -czf x.tgz .``)."""
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name


DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error)  # a member's bytes not what its archive says (CRC, length)


def damaged(e: BaseException) -> str:
    return f"a file in its archive that is damaged or cut short ({type(e).__name__}: {e})"


def digest_input(where: str) -> str:
    """What a member that cannot be read is known by instead of its bytes: what its archive records
    of it (they change when it does)."""
    archive, name = split(where)  # type: ignore[misc]
    return _open(archive).recorded(name)


class _Zip:
    """A zip archive: its central directory, members read from several threads at once through one
    ``ZipFile`` (it seeks and reads under a lock of its own)."""

    def __init__(self, archive: str) -> None:
        f: Any
        if is_uri(archive):
            fs, path = split_uri(archive)
            f = io.BufferedReader(fs.open_input_file(path), 1 << 16)  # ranged reads: the directory, each member
        else:
            f = open(archive, "rb")  # noqa: SIM115 (kept open with its ZipFile)
        try:
            self.zip = zipfile.ZipFile(f)
        except zipfile.BadZipFile as e:
            f.close()
            raise ArchiveError(f"a zip archive that cannot be read ({e})") from None

    def names(self) -> list[str]:
        return [i.filename for i in self.zip.infolist() if not i.is_dir()]

    def open(self, name: str, where: str) -> IO[bytes]:
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise FileNotFoundError(f"{where}: no file {name!r} in the archive") from None
        if info.flag_bits & 0x1:
            raise UnreadableMember("a file encrypted in its zip archive (a password is needed)")
        _check_size(info.file_size)
        try:
            return self.zip.open(info)
        except NotImplementedError as e:  # a compression method this Python lacks (Deflate64, PPMd, ...)
            raise UnreadableMember(f"a file in its zip archive that cannot be decompressed ({e})") from None

    def recorded(self, name: str) -> str:
        i = self.zip.getinfo(name)
        return f"{i.CRC:08x}:{i.compress_size}:{i.file_size}:{i.compress_type}:{i.flag_bits}"


class _Tar:
    """A tar archive: its regular files' places ({name: (offset, size)}), read by going through its
    headers once; a member's bytes read at its place, through one of ``_CURSORS`` readers of the
    (decompressed) archive, the one furthest behind it, so that members read in order move each
    reader forward only."""

    def __init__(self, archive: str) -> None:
        self.archive, self.lock, self.codec = archive, threading.Lock(), _tar_codec(archive)
        self.cursors: list[Any] = []  # readers of the archive, each at the end of the member it read last
        f = self._reader()
        places: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(fileobj=f, mode="r:") as t:
                for m in t:
                    name = _tar_name(m.name)
                    if m.isfile():
                        places[name] = (m.offset_data, m.size)
                    elif m.islnk() and (target := _tar_name(m.linkname)) in places:  # a hard link: its file's bytes
                        places[name] = places[target]
        except (tarfile.TarError, EOFError, StorageError) as e:
            f.close()
            raise ArchiveError(f"a tar archive that cannot be read ({type(e).__name__}: {e})") from None
        self.places = places
        if self.codec is None:
            self.cursors.append(f)  # uncompressed: one reader seeks anywhere
        else:
            f.close()

    def _reader(self) -> Any:
        from ._storage import open_input

        return open_input(self.archive, codec=self.codec)

    def names(self) -> list[str]:
        """In the order of their bytes in the archive (a name stored twice: its last copy's place)."""
        return sorted(self.places, key=lambda n: self.places[n][0])

    def open(self, name: str, where: str) -> IO[bytes]:
        place = self.places.get(name)
        if place is None:
            raise FileNotFoundError(f"{where}: no file {name!r} in the archive")
        offset, size = place
        _check_size(size)
        with self.lock:
            # uncompressed: its reader seeks anywhere; else the reader furthest on that is not past the
            # member yet, else one from the start
            usable = self.cursors if self.codec is None else [c for c in self.cursors if c.tell() <= offset]
            f = max(usable, key=lambda c: c.tell()) if usable else self._reader()
            if usable:
                self.cursors.remove(f)
            try:
                f.seek(offset)
                data = f.read(size)
            except StorageError as e:  # the archive's compressed data is damaged there
                f.close()
                raise UnreadableMember(damaged(e)) from None
            except BaseException:
                f.close()
                raise
            self.cursors.append(f)
            while len(self.cursors) > _CURSORS:
                self.cursors.pop(0).close()
        if len(data) != size:
            raise EOFError(f"{len(data):,} of its {size:,} bytes")
        return io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]

    def recorded(self, name: str) -> str:
        offset, size = self.places[name]
        return f"{offset}:{size}"


def _check_size(size: int) -> None:
    if size > MOST_BYTES:
        raise UnreadableMember(f"a file of {size:,} bytes in its archive (at most {MOST_BYTES:,} are read)")


def _tar_codec(archive: str) -> str | None:
    """The compression of a tar archive (``.gz`` ...; None: not compressed, or not a tar)."""
    name = archive.lower()
    return next((codec for suffix, codec in _TAR_CODECS.items() if name.endswith(suffix)), None)


_kept: OrderedDict[str, tuple[tuple[int, ...], _Zip | _Tar]] = OrderedDict()
_seen: dict[str, tuple[int, ...]] = {}  # an object archive's stamp as last taken (``seen``)
_lock = threading.Lock()
_opening: dict[str, threading.Lock] = {}  # an archive's, held while its index is read


def seen(archive: str, stamp: tuple[int, ...]) -> tuple[int, ...]:
    """Note an archive's stamp just taken (a plan's, a part's check): an archive kept open under
    another stamp is read again before its next member. Only objects' are kept (a local archive is
    stamped at each open), and only archives'."""
    if is_uri(archive) and is_archive(archive):
        with _lock:
            _seen[archive] = stamp
    return stamp


def _open(archive: str) -> _Zip | _Tar:
    """The archive opened (its index read), kept for the next member while its stamp is the same: a
    local file's taken each time, an object's as last ``seen`` (every part's check takes it), else
    asked."""
    if split(archive) is not None:
        raise ArchiveError("an archive in an archive: its files are not read (unpack the outer one first)")
    stamp = _stamp(archive)
    kept = _kept_open(archive, stamp)
    if kept is not None:
        return kept
    with _lock:
        opening = _opening.setdefault(archive, threading.Lock())
    with opening:  # threads that all want it read it once; other archives' members are read meanwhile
        kept = _kept_open(archive, stamp)
        if kept is not None:
            return kept
        opened = _Tar(archive) if in_order(archive) else _Zip(archive)
        with _lock:
            _kept[archive] = (stamp, opened)
            _kept.move_to_end(archive)
            while len(_kept) > _KEPT:
                _opening.pop(_kept.popitem(last=False)[0], None)  # closed when its last reader is done with it
    return opened


def _kept_open(archive: str, stamp: tuple[int, ...]) -> _Zip | _Tar | None:
    """The archive as kept open under ``stamp``, else None."""
    with _lock:
        kept = _kept.get(archive)
        if kept is None or kept[0] != stamp:
            return None
        _kept.move_to_end(archive)
        return kept[1]


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
