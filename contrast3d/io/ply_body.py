"""PLY body decoding (ascii and binary, either byte order) into numpy arrays.

Elements with only scalar properties are decoded in one ``np.frombuffer`` call (binary) or one
reshape of the token array (ascii). Elements with list properties whose rows all have the same
length (triangle-only meshes) use a fixed-size structured dtype; otherwise a small numba
kernel walks the rows to find each row's offset and list lengths, and the values are then
gathered with vectorised fancy indexing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from contrast3d.errors import DataError
from contrast3d.io.ply_header import PlyElement, PlyHeader, scalar_dtype


@dataclass
class PlyList:
    """A list property: ``counts`` ``(R,)`` int64 row lengths, ``values`` the concatenated items."""

    counts: np.ndarray
    values: np.ndarray

    def starts(self) -> np.ndarray:
        """``(R,)`` int64 index into ``values`` of each row's first item."""
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64) if len(self.counts) else \
            np.zeros(0, np.int64)


ElementData = dict[str, "np.ndarray | PlyList"]


def _rows_word(element: PlyElement) -> str:
    return {"vertex": "vertices", "face": "faces"}.get(element.name, f"'{element.name}' rows")


def _truncated(source: str, element: PlyElement, found: int) -> DataError:
    return DataError(source, f"truncated file: expected {element.count} {_rows_word(element)}, found {found}")


@numba.njit(cache=True)
def _walk_binary(buf, pos, n, is_list, size, csize, csigned, big):  # pragma: no cover - jitted
    """Row walker for binary elements with lists. Returns (offsets, counts, end, status, row).

    status 0: ok; 1: truncated at ``row``; 2: negative list length at ``row``.
    """
    nprop = is_list.shape[0]
    offs = np.zeros((n, nprop), np.int64)
    counts = np.zeros((n, nprop), np.int64)
    end = buf.shape[0]
    for r in range(n):
        for j in range(nprop):
            offs[r, j] = pos
            if is_list[j]:
                cs = csize[j]
                if pos + cs > end:
                    return offs, counts, pos, 1, r
                value = 0
                for b in range(cs):
                    byte = buf[pos + (b if big else cs - 1 - b)]
                    value = value * 256 + byte
                if csigned[j] and value >= (1 << (8 * cs - 1)):
                    value -= 1 << (8 * cs)
                if value < 0:
                    return offs, counts, pos, 2, r
                counts[r, j] = value
                pos += cs + value * size[j]
            else:
                pos += size[j]
            if pos > end:
                return offs, counts, pos, 1, r
    return offs, counts, pos, 0, n


@numba.njit(cache=True)
def _walk_tokens(tokens, pos, n, is_list):  # pragma: no cover - jitted
    """Row walker over ascii tokens (as float64). Same return convention as ``_walk_binary``;
    status 2 also covers a non-integral list length."""
    nprop = is_list.shape[0]
    offs = np.zeros((n, nprop), np.int64)
    counts = np.zeros((n, nprop), np.int64)
    end = tokens.shape[0]
    for r in range(n):
        for j in range(nprop):
            if pos >= end:
                return offs, counts, pos, 1, r
            offs[r, j] = pos
            if is_list[j]:
                value = tokens[pos]
                if not (value >= 0 and value == np.floor(value) and value < 1e12):
                    return offs, counts, pos, 2, r
                counts[r, j] = np.int64(value)
                pos += 1 + counts[r, j]
            else:
                pos += 1
            if pos > end:
                return offs, counts, pos, 1, r
    return offs, counts, pos, 0, n


def _gather(buf: np.ndarray, starts: np.ndarray, code: str) -> np.ndarray:
    """Values of numpy type ``code`` (with byte order) whose bytes start at ``starts``."""
    dtype = np.dtype(code)
    idx = starts[:, None] + np.arange(dtype.itemsize, dtype=np.int64)
    return np.ascontiguousarray(buf[idx]).view(dtype).reshape(-1).astype(dtype.newbyteorder("="))


def _list_item_starts(item0: np.ndarray, counts: np.ndarray, step: int) -> np.ndarray:
    total = int(counts.sum())
    first = np.repeat(item0, counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return first + within * step


def _binary_element(data: bytes, pos: int, element: PlyElement, order: str, source: str) -> tuple[ElementData, int]:
    remaining = len(data) - pos
    if not element.has_lists():
        dtype = scalar_dtype(element, order)
        if dtype.itemsize == 0:
            return {}, pos
        if remaining < element.count * dtype.itemsize:
            raise _truncated(source, element, remaining // dtype.itemsize)
        rows = np.frombuffer(data, dtype=dtype, count=element.count, offset=pos)
        scalars: ElementData = {p.name: rows[p.name].astype(rows.dtype[p.name].newbyteorder("="))
                                for p in element.properties}
        return scalars, pos + element.count * dtype.itemsize
    props = element.properties
    min_row = sum(np.dtype(p.count_type if p.is_list else p.type).itemsize for p in props)
    if remaining < element.count * min_row:
        raise _truncated(source, element, remaining // max(min_row, 1))
    if element.count == 0:
        return {p.name: PlyList(np.zeros(0, np.int64), np.zeros(0, p.type)) if p.is_list
                else np.zeros(0, p.type) for p in props}, pos
    if len(props) == 1:  # fast path: one list property with a constant length (triangles)
        p = props[0]
        assert p.count_type is not None  # the element has lists and this is its only property
        ctype = np.dtype(order + p.count_type)
        k = int(np.frombuffer(data, ctype, 1, pos)[0])
        if 0 <= k and element.count * (ctype.itemsize + k * np.dtype(p.type).itemsize) <= remaining:
            row = np.dtype([("n", ctype), ("v", order + p.type, (k,))])
            rows = np.frombuffer(data, row, element.count, pos)
            if (rows["n"] == k).all():
                values = rows["v"].reshape(-1).astype(np.dtype(p.type))
                return {p.name: PlyList(np.full(element.count, k, np.int64), values)}, \
                    pos + element.count * row.itemsize
    buf = np.frombuffer(data, np.uint8)
    is_list = np.array([p.is_list for p in props])
    size = np.array([np.dtype(p.type).itemsize for p in props], np.int64)
    csize = np.array([np.dtype(p.count_type).itemsize if p.is_list else 0 for p in props], np.int64)
    csigned = np.array([p.count_type is not None and p.count_type[0] == "i" for p in props])
    offs, counts, end, status, row = _walk_binary(buf, pos, element.count, is_list, size, csize, csigned,
                                                  order == ">")
    if status == 1:
        raise _truncated(source, element, int(row))
    if status == 2:
        raise DataError(source, f"negative list length in {element.name} row {int(row)}")
    out: ElementData = {}
    for j, p in enumerate(props):
        if p.is_list:
            c = counts[:, j]
            starts = _list_item_starts(offs[:, j] + csize[j], c, int(size[j]))
            out[p.name] = PlyList(c.copy(), _gather(buf, starts, order + p.type))
        else:
            out[p.name] = _gather(buf, offs[:, j], order + p.type)
    return out, int(end)


def _cast_tokens(values: np.ndarray, code: str, source: str, element: PlyElement, name: str) -> np.ndarray:
    dtype = np.dtype(code)
    if dtype.kind == "f":
        return values.astype(dtype)
    info = np.iinfo(dtype)
    if values.size and not (np.all(values == np.floor(values)) and values.min() >= info.min
                            and values.max() <= info.max):
        raise DataError(source, f"ascii value out of range or non-integer for {dtype} property "
                                f"'{name}' of element '{element.name}'")
    return values.astype(dtype)


def _ascii_element(tokens: np.ndarray, pos: int, element: PlyElement, source: str) -> tuple[ElementData, int]:
    props = element.properties
    if not props:
        return {}, pos
    if not element.has_lists():
        need = element.count * len(props)
        if tokens.shape[0] - pos < need:
            raise _truncated(source, element, (tokens.shape[0] - pos) // len(props))
        table = tokens[pos:pos + need].reshape(element.count, len(props))
        return {p.name: _cast_tokens(table[:, j], p.type, source, element, p.name)
                for j, p in enumerate(props)}, pos + need
    if tokens.shape[0] - pos < element.count * len(props):
        raise _truncated(source, element, (tokens.shape[0] - pos) // len(props))
    is_list = np.array([p.is_list for p in props])
    offs, counts, end, status, row = _walk_tokens(tokens, pos, element.count, is_list)
    if status == 1:
        raise _truncated(source, element, int(row))
    if status == 2:
        raise DataError(source, f"bad list length in {element.name} row {int(row)} (must be a non-negative integer)")
    out: ElementData = {}
    for j, p in enumerate(props):
        if p.is_list:
            c = counts[:, j]
            starts = _list_item_starts(offs[:, j] + 1, c, 1)
            out[p.name] = PlyList(c.copy(), _cast_tokens(tokens[starts], p.type, source, element, p.name))
        else:
            out[p.name] = _cast_tokens(tokens[offs[:, j]], p.type, source, element, p.name)
    return out, int(end)


def _ascii_tokens(body: bytes, source: str) -> np.ndarray:
    words = body.split()
    if not words:
        return np.zeros(0, np.float64)
    try:
        return np.array(words).astype(np.float64)
    except (ValueError, OverflowError):
        bad = next((w for w in words if not _is_number(w)), b"?")
        raise DataError(source, f"non-numeric value {bad[:40]!r} in ascii PLY body") from None


def _is_number(word: bytes) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def read_body(data: bytes, header: PlyHeader, source: str, wanted: set[str] | None = None) -> dict[str, ElementData]:
    """Decode every element of the body (elements are sequential, so all are walked).

    Returns ``{element name: {property name: array or PlyList}}`` for the elements in
    ``wanted`` (all when ``None``), arrays in native byte order.
    """
    result: dict[str, ElementData] = {}
    if header.format == "ascii":
        tokens = _ascii_tokens(data[header.data_start:], source)
        pos = 0
        for element in header.elements:
            values, pos = _ascii_element(tokens, pos, element, source)
            if wanted is None or element.name in wanted:
                result[element.name] = values
        return result
    pos = header.data_start
    for element in header.elements:
        values, pos = _binary_element(data, pos, element, header.byte_order, source)
        if wanted is None or element.name in wanted:
            result[element.name] = values
    return result
