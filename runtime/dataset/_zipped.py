"""Documents that are zips of XML (Word, PowerPoint, Excel, EPUB, OpenDocument), read with the standard library: their
parts' XML within a budget of uncompressed bytes, so that a zip bomb is a bad row, not the job's
memory."""

from __future__ import annotations

import io
import lzma
import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from xml.etree import ElementTree

MOST_XML = 1 << 29  # a document's parts read at most, uncompressed, all together
_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"


class Unreadable(Exception):
    """A document has no text: the message says why (a bad row's reason)."""


class Parts:
    """The parts of the zip ``data``, within ``MOST_XML`` bytes in all (each parsed once). ``not_zip``:
    the reason a file that is not a zip has no text."""

    def __init__(self, data: bytes, not_zip: str) -> None:
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise Unreadable(not_zip) from None
        self.left = MOST_XML
        self.parsed: dict[str, ElementTree.Element] = {}

    def has(self, name: str) -> bool:
        try:
            self.zip.getinfo(name)
        except KeyError:
            return False
        return True

    def read(self, name: str) -> bytes:
        """The part ``name``'s bytes (``Unreadable`` if missing, over the budget or damaged)."""
        try:
            size = self.zip.getinfo(name).file_size
        except KeyError:
            raise Unreadable(f"no part {name} in the zip") from None
        if size > self.left:
            raise Unreadable(f"{name} is {size:,} bytes uncompressed, over the {MOST_XML:,} read of a document")
        self.left -= size
        try:
            return self.zip.read(name)
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:  # a bad CRC, a cut stream
            raise Unreadable(f"{name} does not unzip ({e}): a damaged file?") from None
        except (NotImplementedError, RuntimeError) as e:  # a compression method zipfile lacks; encrypted
            raise Unreadable(f"{name} cannot be unzipped ({e})") from None

    def xml(self, name: str) -> ElementTree.Element:
        """The part ``name`` parsed, once (``Unreadable`` if it is not XML)."""
        if name not in self.parsed:
            try:
                self.parsed[name] = ElementTree.fromstring(self.read(name))
            except ElementTree.ParseError as e:
                raise Unreadable(f"{name} is not XML ({e}): a damaged document?") from None
        return self.parsed[name]

    def events(self, name: str) -> Iterator[tuple[str, ElementTree.Element]]:
        """The part ``name`` as a stream of ("start"/"end", element) (``Unreadable`` if it is not XML):
        a worksheet of a million rows need never be a tree in memory (the reader clears what it read)."""
        try:
            yield from ElementTree.iterparse(io.BytesIO(self.read(name)), events=("start", "end"))
        except ElementTree.ParseError as e:
            raise Unreadable(f"{name} is not XML ({e}): a damaged document?") from None

    def rels(self, name: str) -> dict[str, tuple[str, str]]:
        """An Office (OOXML) part's relationships: id -> (type, the target's part name); external
        targets (links, files elsewhere) left out."""
        folder, base = posixpath.split(name)
        rels = posixpath.join(folder, "_rels", base + ".rels")
        if not self.has(rels):
            return {}
        out = {}
        for rel in self.xml(rels).iter(_REL):
            if rel.get("TargetMode") == "External":
                continue
            target = rel.get("Target", "")
            target = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            out[rel.get("Id", "")] = (rel.get("Type", ""), target)
        return out
