"""PLY readers: :func:`read_ply` (points) and :func:`read_ply_mesh` (triangle mesh).

Vertex properties are mapped onto :class:`~contrast3d.structures.PointCloud` fields by name
(case-insensitive, a CloudCompare ``scalar_`` prefix ignored):

* ``x y z`` -> ``coord`` (required)
* ``red green blue`` (or ``r g b`` / ``diffuse_red ...``) -> ``color`` (uchar / 255, ushort / 65535)
* ``nx ny nz`` (or ``normal_x ...``) -> ``normal``
* ``segment`` / ``label`` / ``semantic`` / ``semantic_label`` -> ``segment``
* ``instance`` / ``objectId`` / ``instance_id`` / ``object_id`` -> ``instance``
* ``superpoint`` -> ``superpoint``
* any other scalar -> ``extra[name]`` in its file dtype (native byte order)

Faces come from the ``face`` element's list property ``vertex_indices`` (or ``vertex_index``);
polygons are fan-triangulated, faces with fewer than three corners are dropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import PathLike, check_color_range, read_bytes, scale_color
from contrast3d.io.ply_body import ElementData, PlyList, read_body
from contrast3d.io.ply_header import PlyHeader, parse_header
from contrast3d.structures import POINT_FIELDS, PointCloud, TriangleMesh

_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_LABEL_NAMES = {
    "segment": ("segment", "label", "semantic", "semantic_label"),
    "instance": ("instance", "objectid", "instance_id", "object_id"),
    "superpoint": ("superpoint", "superpoint_id"),
}
_FACE_NAMES = ("vertex_indices", "vertex_index")


def _key(name: str) -> str:
    low = name.lower()
    return low[len("scalar_"):] if low.startswith("scalar_") and len(low) > len("scalar_") else low


def _find(columns: dict[str, str], names: tuple[str, ...]) -> list[str] | None:
    """File property names for the first candidate tuple fully present, else ``None``."""
    if all(n in columns for n in names):
        return [columns[n] for n in names]
    return None


def vertex_fields(vertex: ElementData, source: str) -> dict:
    """Map the decoded vertex element onto PointCloud keyword arguments (unvalidated)."""
    scalars = {name: v for name, v in vertex.items() if not isinstance(v, PlyList)}
    columns: dict[str, str] = {}
    for name in scalars:
        columns.setdefault(_key(name), name)
    used: set[str] = set()
    xyz = _find(columns, ("x", "y", "z"))
    if xyz is None:
        raise DataError(source, "PLY vertex element has no x, y, z properties")
    used.update(xyz)
    out: dict = {"coord": np.stack([scalars[n].astype(np.float32) for n in xyz], axis=1)}
    for names in _COLOR_NAMES:
        cols = _find(columns, names)
        if cols is not None:
            out["color"] = check_color_range(scale_color(np.stack([scalars[n] for n in cols], axis=1)), source)
            used.update(cols)
            break
    for names in _NORMAL_NAMES:
        cols = _find(columns, names)
        if cols is not None:
            out["normal"] = np.stack([scalars[n].astype(np.float32) for n in cols], axis=1)
            used.update(cols)
            break
    for field_name, candidates in _LABEL_NAMES.items():
        for cand in candidates:
            if cand in columns:
                values = scalars[columns[cand]]
                if values.dtype.kind == "f" and not (np.isfinite(values).all()
                                                     and np.all(values == np.round(values))):
                    raise DataError(source, f"label property '{columns[cand]}' has non-integer values")
                out[field_name] = values.astype(np.int64)
                used.add(columns[cand])
                break
    extra = {}
    for name, values in scalars.items():
        if name in used:
            continue
        key = f"ply_{name}" if name in POINT_FIELDS or name == "coord" else name
        extra[key] = values
    out["extra"] = extra
    return out


def _load(path: PathLike, wanted: set[str]) -> tuple[PlyHeader, dict[str, ElementData], str]:
    source = str(path)
    data = read_bytes(path)
    header = parse_header(data, source)
    if header.element("vertex") is None:
        raise DataError(source, "PLY file has no 'vertex' element")
    return header, read_body(data, header, source, wanted), source


def _meta(path: PathLike, header: PlyHeader) -> dict:
    return {"path": str(path), "name": Path(path).stem, "ply_format": header.format,
            "comments": list(header.comments)}


def read_ply(path: PathLike) -> PointCloud:
    """Read the vertices of a PLY file (any format) as a validated :class:`PointCloud`.

    Returns ``coord`` ``(N, 3)`` float32, optional ``color`` float32 in [0, 1], ``normal``,
    int64 labels and ``extra`` scalars. Faces, if any, are checked but not returned.
    Raises :class:`DataError` for any malformed file, empty cloud or NaN/Inf coordinate.
    """
    header, elements, source = _load(path, {"vertex"})
    fields = vertex_fields(elements["vertex"], source)
    return PointCloud(**fields, meta=_meta(path, header)).validate(source)


def triangulate(faces: PlyList) -> tuple[np.ndarray, int]:
    """Fan-triangulate polygons: ``(F, 3)`` int64 triangles and the number of dropped faces (< 3 corners)."""
    counts = faces.counts.astype(np.int64)
    values = faces.values.astype(np.int64)
    if counts.size and (counts == 3).all():
        return values.reshape(-1, 3), 0
    starts = faces.starts()
    ntri = np.maximum(counts - 2, 0)
    row = np.repeat(np.arange(counts.size), ntri)
    j = np.arange(int(ntri.sum()), dtype=np.int64) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    base = starts[row]
    tris = np.stack([values[base], values[base + j], values[base + j + 1]], axis=1)
    return tris, int((counts < 3).sum())


def face_list(elements: dict[str, ElementData], source: str) -> PlyList | None:
    """The face corner lists of a decoded body, ``None`` if there is no face element."""
    face = elements.get("face")
    if face is None:
        return None
    for name in _FACE_NAMES:
        value = face.get(name)
        if isinstance(value, PlyList):
            if value.values.dtype.kind == "f":
                raise DataError(source, f"face property '{name}' has a float item type")
            return value
    raise DataError(source, "PLY face element has no list property 'vertex_indices'")


def read_ply_mesh(path: PathLike) -> TriangleMesh:
    """Read a PLY mesh as a validated :class:`TriangleMesh` (per-vertex attributes as in :func:`read_ply`).

    ``superpoint`` (if present) goes to ``vertex_extra``. Raises :class:`DataError` if the file
    has no face element or a face index is out of range.
    """
    header, elements, source = _load(path, {"vertex", "face"})
    mesh = _mesh(path, header, elements, source)
    if mesh is None:
        raise DataError(source, "PLY file has no 'face' element (a point cloud, not a mesh)")
    return mesh


def _mesh(path: PathLike, header: PlyHeader, elements: dict[str, ElementData], source: str) -> TriangleMesh | None:
    faces = face_list(elements, source)
    if faces is None:
        return None
    fields = vertex_fields(elements["vertex"], source)
    tris, dropped = triangulate(faces)
    meta = _meta(path, header)
    if dropped:
        meta["dropped_faces"] = dropped
    extra = dict(fields["extra"])
    if "superpoint" in fields:
        extra["superpoint"] = fields["superpoint"]
    mesh = TriangleMesh(vertices=fields["coord"], faces=tris, vertex_color=fields.get("color"),
                        vertex_normal=fields.get("normal"), vertex_segment=fields.get("segment"),
                        vertex_instance=fields.get("instance"), vertex_extra=extra, meta=meta)
    return mesh.validate(source)


def read_ply_auto(path: PathLike) -> PointCloud | TriangleMesh:
    """A :class:`TriangleMesh` if the file has at least one face, else a :class:`PointCloud`."""
    header, elements, source = _load(path, {"vertex", "face"})
    face = header.element("face")
    if face is not None and face.count > 0:
        mesh = _mesh(path, header, elements, source)
        if mesh is not None:
            return mesh
    fields = vertex_fields(elements["vertex"], source)
    return PointCloud(**fields, meta=_meta(path, header)).validate(source)
