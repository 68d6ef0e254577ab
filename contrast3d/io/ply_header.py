"""PLY header parsing: format, elements and their (scalar or list) properties.

Reference: the PLY format of Greg Turk (1994) as written by MeshLab, CloudCompare, Open3D,
VCGLib and the ScanNet tools. Only the header is handled here; :mod:`contrast3d.io.ply_body`
decodes the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contrast3d.errors import DataError

#: PLY scalar type names (both spellings) -> numpy type code without byte order.
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
#: numpy type code -> canonical PLY type name (what the writer emits).
PLY_NAMES: dict[str, str] = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
                             "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}
FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
_MAX_HEADER = 1 << 20  # a header longer than 1 MiB is not a PLY header


@dataclass
class PlyProperty:
    """One property: a scalar (``count_type is None``) or a list (count type + item type)."""

    name: str
    type: str  # numpy code of the scalar / list item, e.g. "f4"
    count_type: str | None = None  # numpy code of the list length, e.g. "u1"

    @property
    def is_list(self) -> bool:
        return self.count_type is not None


@dataclass
class PlyElement:
    """One element (``vertex``, ``face``, ...) with its row count and properties."""

    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)

    def has_lists(self) -> bool:
        return any(p.is_list for p in self.properties)

    def property(self, name: str) -> PlyProperty | None:
        return next((p for p in self.properties if p.name == name), None)


@dataclass
class PlyHeader:
    """A parsed header. ``data_start`` is the byte offset of the body."""

    format: str
    elements: list[PlyElement]
    comments: list[str]
    data_start: int

    @property
    def byte_order(self) -> str:
        return ">" if self.format == "binary_big_endian" else "<"

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


def _ply_type(word: str, source: str, lineno: int) -> str:
    try:
        return PLY_TYPES[word]
    except KeyError:
        raise DataError(source, f"bad PLY header: unknown property type '{word}' (line {lineno})") from None


def parse_header(data: bytes, source: str) -> PlyHeader:
    """Parse the header at the start of ``data`` (the whole file).

    Raises :class:`DataError` for a missing ``ply`` magic, missing/unsupported ``format``,
    unknown keywords or types, properties outside an element, duplicate names, negative or
    non-integer counts and a missing ``end_header``.
    """
    if not data.startswith(b"ply"):
        raise DataError(source, "not a PLY file (missing 'ply' magic line)")
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise DataError(source, "bad PLY header: no 'end_header' line")
    newline = data.find(b"\n", end)
    if newline < 0:
        # Header not terminated: only acceptable for an empty body (nothing after it).
        data_start = len(data)
    else:
        data_start = newline + 1
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise DataError(source, "bad PLY header: non-ASCII bytes in the header") from None
    lines = text.replace("\r", "").split("\n")
    if lines[0].strip() != "ply":
        raise DataError(source, "not a PLY file (first line is not 'ply')")
    if data[end:data_start].strip() != b"end_header":
        raise DataError(source, "bad PLY header: garbage after 'end_header'")
    fmt: str | None = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key in ("comment", "obj_info"):
            comments.append(line.strip()[len(key):].strip())
        elif key == "format":
            if len(words) != 3 or words[1] not in FORMATS:
                raise DataError(source, f"unsupported PLY format line '{line.strip()}' "
                                        f"(expected one of {', '.join(FORMATS)})")
            if words[2] not in ("1.0", "1"):
                raise DataError(source, f"unsupported PLY version '{words[2]}'")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3:
                raise DataError(source, f"bad PLY header line {lineno}: '{line.strip()}'")
            try:
                count = int(words[2])
            except ValueError:
                raise DataError(source, f"bad PLY header: element count '{words[2]}' is not an integer") from None
            if count < 0:
                raise DataError(source, f"bad PLY header: negative element count {count}")
            if any(e.name == words[1] for e in elements):
                raise DataError(source, f"bad PLY header: element '{words[1]}' declared twice")
            elements.append(PlyElement(words[1], count))
        elif key == "property":
            if not elements:
                raise DataError(source, f"bad PLY header: property before any element (line {lineno})")
            if len(words) == 3:
                prop = PlyProperty(words[2], _ply_type(words[1], source, lineno))
            elif len(words) == 5 and words[1] == "list":
                count_type = _ply_type(words[2], source, lineno)
                if count_type[0] == "f":
                    raise DataError(source, f"bad PLY header: list count type must be an integer (line {lineno})")
                prop = PlyProperty(words[4], _ply_type(words[3], source, lineno), count_type)
            else:
                raise DataError(source, f"bad PLY header line {lineno}: '{line.strip()}'")
            if elements[-1].property(prop.name) is not None:
                raise DataError(source, f"bad PLY header: property '{prop.name}' declared twice "
                                        f"in element '{elements[-1].name}'")
            elements[-1].properties.append(prop)
        else:
            raise DataError(source, f"bad PLY header line {lineno}: unknown keyword '{key}'")
    if fmt is None:
        raise DataError(source, "bad PLY header: no 'format' line")
    return PlyHeader(fmt, elements, comments, data_start)


def scalar_dtype(element: PlyElement, byte_order: str) -> np.dtype:
    """Structured dtype of one row of an element that has only scalar properties."""
    return np.dtype([(p.name, byte_order + p.type) for p in element.properties])
