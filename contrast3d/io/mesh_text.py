"""Text mesh formats: OFF (ModelNet, Princeton) and Wavefront OBJ (ShapeNet).

* OFF: ``OFF`` / ``COFF`` / ``NOFF`` / ``CNOFF`` headers, ``#`` comments, the ModelNet quirk of
  the counts glued to the keyword (``OFF490 518 0``), polygons fan-triangulated, optional
  per-face colours ignored.
* OBJ: ``v`` (extra ``r g b`` columns kept as vertex colour), ``vn``, ``f`` with ``v``,
  ``v/vt``, ``v/vt/vn``, ``v//vn`` corners and negative (relative) indices; polygons
  fan-triangulated; everything else (``vt``, ``g``, ``o``, ``usemtl``, ``l`` ...) ignored.

Both return validated :class:`~contrast3d.structures.TriangleMesh` objects (vertices float32,
faces int64) and raise :class:`DataError` for anything malformed.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import PathLike, read_bytes, scale_color
from contrast3d.io.ply import triangulate
from contrast3d.io.ply_body import PlyList, _walk_tokens
from contrast3d.structures import TriangleMesh

_OFF_KEY = re.compile(rb"^\s*(ST)?(C)?(N)?(4)?(n)?OFF", re.ASCII)


def _floats(words: list[bytes], source: str, what: str) -> np.ndarray:
    try:
        return np.array(words).astype(np.float64) if words else np.zeros(0, np.float64)
    except (ValueError, OverflowError):
        raise DataError(source, f"non-numeric value in {what}") from None


def _count(word: bytes, source: str, what: str) -> int:
    try:
        value = int(word)
    except ValueError:
        raise DataError(source, f"bad OFF header: {what} '{word[:20].decode('latin-1')}' is not an integer") from None
    if value < 0:
        raise DataError(source, f"bad OFF header: negative {what} {value}")
    return value


def read_off(path: PathLike) -> TriangleMesh:
    """Read an OFF mesh. Vertex colours (``COFF``) and normals (``NOFF``) are kept."""
    source = str(path)
    data = read_bytes(path)
    m = _OFF_KEY.match(data)
    if m is None:
        raise DataError(source, "not an OFF file (missing 'OFF' keyword)")
    if m.group(1) or m.group(4) or m.group(5):
        raise DataError(source, f"unsupported OFF variant '{m.group(0).decode().strip()}'")
    has_color, has_normal = bool(m.group(2)), bool(m.group(3))
    body = re.sub(rb"#[^\n]*", b"", data[m.end():])
    lines = body.split(b"\n")
    # Face lines may carry colours, so faces are walked by their corner counts below.
    words = body.split()
    if len(words) < 3:
        raise DataError(source, "bad OFF header: expected vertex, face and edge counts")
    nv, nf = _count(words[0], source, "vertex count"), _count(words[1], source, "face count")
    _count(words[2], source, "edge count")
    vlen = 3 + 3 * has_normal + 4 * has_color
    tokens = words[3:]
    if len(tokens) < nv * vlen:
        raise DataError(source, f"truncated file: expected {nv} vertices, found {len(tokens) // vlen}")
    table = _floats(tokens[:nv * vlen], source, "vertex rows").reshape(nv, vlen)
    face_tokens = tokens[nv * vlen:]
    if len(face_tokens) < nf:
        raise DataError(source, f"truncated file: expected {nf} faces, found {len(face_tokens)}")
    faces = _off_faces(face_tokens, nf, lines, 3 + nv * vlen, source)
    tris, dropped = triangulate(faces)
    mesh = TriangleMesh(vertices=table[:, :3], faces=tris, meta={"path": source, "name": Path(path).stem})
    col = 3
    if has_normal:
        mesh.vertex_normal = table[:, col:col + 3].astype(np.float32)
        col += 3
    if has_color:
        mesh.vertex_color = np.clip(scale_color(table[:, col:col + 3]), 0.0, 1.0)
    if dropped:
        mesh.meta["dropped_faces"] = dropped
    return mesh.validate(source)


def _off_faces(face_tokens: list[bytes], nf: int, lines: list[bytes], skip: int, source: str) -> PlyList:
    """Corner lists of ``nf`` faces; fast token walk, per-line fallback for per-face colours.

    ``lines`` are the body lines (comments removed), ``skip`` the number of tokens before the
    first face (counts and vertex rows).
    """
    if nf == 0:
        return PlyList(np.zeros(0, np.int64), np.zeros(0, np.int64))
    values = _floats(face_tokens, source, "face rows")
    offs, counts, end, status, row = _walk_tokens(values, 0, nf, np.array([True]))
    if status == 0 and end == values.shape[0]:
        c = counts[:, 0]
        idx = np.repeat(offs[:, 0] + 1, c) + np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        return PlyList(c.copy(), _indices(values[idx], source))
    # Slow path: one face per line (colours or trailing garbage after the indices).
    seen, first = 0, len(lines)
    for i, line in enumerate(lines):
        seen += len(line.split())
        if seen >= skip:
            first = i + 1
            break
    face_lines = [ln for ln in lines[first:] if ln.strip()][:nf]
    if len(face_lines) < nf:
        raise DataError(source, f"truncated file: expected {nf} faces, found {len(face_lines)}")
    counts_l, corners = [], []
    for i, line in enumerate(face_lines):
        parts = line.split()
        k = _count(parts[0], source, f"corner count of face {i}")
        if len(parts) < 1 + k:
            raise DataError(source, f"face {i} lists {k} corners but has {len(parts) - 1} values")
        counts_l.append(k)
        corners.extend(parts[1:1 + k])
    return PlyList(np.array(counts_l, np.int64), _indices(_floats(corners, source, "face rows"), source))


def _indices(values: np.ndarray, source: str) -> np.ndarray:
    if values.size and not (np.isfinite(values).all() and np.all(values == np.floor(values))
                            and np.abs(values).max() < 2**62):
        raise DataError(source, "face index is not an integer")
    return values.astype(np.int64)


def read_obj(path: PathLike) -> TriangleMesh:
    """Read a Wavefront OBJ mesh (geometry only; materials and texture coordinates ignored)."""
    source = str(path)
    text = read_bytes(path)
    verts: list[list[bytes]] = []
    normals: list[list[bytes]] = []
    counts: list[int] = []
    v_refs: list[int] = []
    n_refs: list[int] = []
    all_normals = True
    for lineno, raw in enumerate(text.split(b"\n"), start=1):
        parts = raw.split(b"#", 1)[0].split()
        if not parts:
            continue
        key = parts[0]
        if key == b"v":
            if len(parts) < 4:
                raise DataError(source, f"line {lineno}: vertex needs 3 coordinates")
            verts.append(parts[1:7] if len(parts) >= 7 else parts[1:4])
        elif key == b"vn":
            if len(parts) < 4:
                raise DataError(source, f"line {lineno}: normal needs 3 components")
            normals.append(parts[1:4])
        elif key == b"f":
            corners = parts[1:]
            counts.append(len(corners))
            for corner in corners:
                fields = corner.split(b"/")
                try:
                    vi = int(fields[0])
                    ni = int(fields[2]) if len(fields) > 2 and fields[2] else 0
                except ValueError:
                    raise DataError(source, f"line {lineno}: bad face corner "
                                            f"'{corner[:30].decode('latin-1')}'") from None
                if vi == 0:
                    raise DataError(source, f"line {lineno}: face index 0 (OBJ indices start at 1)")
                v_refs.append(vi - 1 if vi > 0 else len(verts) + vi)
                if ni == 0:
                    all_normals = False
                n_refs.append(ni - 1 if ni > 0 else len(normals) + ni)
    if not verts:
        raise DataError(source, "OBJ file has no vertices")
    width = min(len(v) for v in verts)
    try:
        table = np.array([v[:width] for v in verts]).astype(np.float64)
    except (ValueError, OverflowError):
        raise DataError(source, "non-numeric vertex coordinate") from None
    tris, dropped = triangulate(PlyList(np.array(counts, np.int64), np.array(v_refs, np.int64)))
    mesh = TriangleMesh(vertices=table[:, :3], faces=tris, meta={"path": source, "name": Path(path).stem})
    if width >= 6:
        mesh.vertex_color = np.clip(scale_color(table[:, 3:6]), 0.0, 1.0)
    if normals and all_normals and v_refs:
        vn = _floats([w for n in normals for w in n], source, "vn rows").reshape(-1, 3)
        ref = np.array(n_refs, np.int64)
        if ref.min() < 0 or ref.max() >= vn.shape[0]:
            raise DataError(source, f"normal index out of range [1, {vn.shape[0]}]")
        normal = np.zeros((table.shape[0], 3), np.float32)
        vref = np.array(v_refs, np.int64)
        if vref.min() >= 0 and vref.max() < table.shape[0]:
            normal[vref] = vn[ref]
            mesh.vertex_normal = normal
    if dropped:
        mesh.meta["dropped_faces"] = dropped
    return mesh.validate(source)
