"""The files in Outlook's TNEF attachment (``winmail.dat``, ``application/ms-tnef``), which Outlook
sends in place of a message's attachments when it writes the message in its own rich format, as
[MS-OXTNEF] lays it out: a signature, then attributes, each a level (the message's or an
attachment's), an id, a length, its bytes and a checksum. An attachment begins at its rendering
attribute; its name is its title, or its long file name among its MAPI properties; its bytes its
data attribute, or the data object among those properties.
"""

from __future__ import annotations

import struct

SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian
_RENDDATA, _TITLE, _DATA, _PROPS = 0x9002, 0x8010, 0x800F, 0x9005  # attributes' ids (their low 16 bits)
_LONG_NAME, _DATA_OBJECT = 0x3707, 0x3701  # MAPI properties of an attachment
# MAPI property types of a fixed size (bytes, padded to 4), by type
_FIXED = {0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000A: 4, 0x000B: 4, 0x0014: 8,
          0x0040: 8, 0x0048: 16}  # fmt: skip
_OBJECT = 0x000D
_VARIABLE = (0x001E, 0x001F, 0x0102, _OBJECT)  # string, Unicode string, binary, object


def is_tnef(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def tnef_files(data: bytes) -> list[tuple[str, bytes]]:
    """The files (name, bytes) in the TNEF stream ``data``, in order; as many as it holds whole."""
    files: list[list[object]] = []
    at = 6  # after the signature and the legacy key
    while at + 9 <= len(data):
        level, attribute, length = struct.unpack_from("<BII", data, at)
        body = data[at + 9:at + 9 + length]
        at += 9 + length + 2  # and the checksum
        if len(body) < length or level != 2:
            continue
        kind = attribute & 0xFFFF
        if kind == _RENDDATA:
            files.append(["", b""])
        elif files and kind == _TITLE:
            files[-1][0] = body.split(b"\0", 1)[0].decode("cp1252", "replace")
        elif files and kind == _DATA:
            files[-1][1] = body
        elif files and kind == _PROPS:
            props = _properties(body)
            if _LONG_NAME in props:
                files[-1][0] = _string(props[_LONG_NAME][1])
            if not files[-1][1] and _DATA_OBJECT in props:
                kind, value = props[_DATA_OBJECT]
                files[-1][1] = value[16:] if kind == _OBJECT else value  # an object's after its interface's id
    return [(str(name), bytes(content)) for name, content in files if name]  # type: ignore[call-overload]


def _string(value: bytes) -> str:
    """A MAPI string property's value: UTF-16 where it looks so, else 8-bit; to its first NUL."""
    if len(value) > 1 and value[1:2] == b"\0":
        return value.decode("utf-16-le", "replace").split("\0", 1)[0]
    return value.split(b"\0", 1)[0].decode("cp1252", "replace")


def _properties(data: bytes) -> dict[int, tuple[int, bytes]]:
    """The MAPI properties of a TNEF property list (single-valued strings, binaries and objects
    only), by property id: (type, value); as many as it holds whole."""
    out: dict[int, tuple[int, bytes]] = {}
    try:
        (count,), at = struct.unpack_from("<I", data, 0), 4
        for _ in range(count):
            kind, pid = struct.unpack_from("<HH", data, at)
            at += 4
            if pid >= 0x8000:  # a named property: its set's GUID, then its name or number
                (named,) = struct.unpack_from("<I", data, at + 16)
                at += 20
                if named == 1:
                    (size,) = struct.unpack_from("<I", data, at)
                    at += 4 + size + (-size % 4)
                else:
                    at += 4
            multi, base = bool(kind & 0x1000), kind & ~0x1000
            values = 1
            if multi or base in _VARIABLE:
                (values,) = struct.unpack_from("<I", data, at)
                at += 4
            for _ in range(values):
                if base in _VARIABLE:
                    (size,) = struct.unpack_from("<I", data, at)
                    value = data[at + 4:at + 4 + size]
                    at += 4 + size + (-size % 4)
                    if not multi:
                        out[pid] = (base, value)
                elif base in _FIXED:
                    at += _FIXED[base]
                else:
                    return out  # a type this reader does not know: the rest cannot be found
    except struct.error:  # cut short
        pass
    return out
