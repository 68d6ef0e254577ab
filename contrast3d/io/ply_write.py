"""PLY writer for point clouds and triangle meshes (binary little-endian or ascii).

Written vertex properties, in order: ``x y z`` (float), ``nx ny nz`` (float), ``red green blue``
(uchar, colour * 255 rounded), ``segment instance superpoint`` (int), then every ``extra``
array as scalar properties in its own dtype (int64 -> int when it fits, else double; bool ->
uchar; float16 -> float). A ``(N, k)`` extra becomes ``name_0 .. name_{k-1}``; ``(N, 1)`` is
written as ``name``. CloudCompare and MeshLab show these as scalar fields. Meshes get a
``face`` element ``list uchar int vertex_indices``. The file is written under a temporary
name and renamed into place.
"""
from __future__ import annotations

import re

import numpy as np

from contrast3d.io._common import PathLike, atomic_file, color_to_uint8
from contrast3d.io.ply_header import PLY_NAMES
from contrast3d.structures import PointCloud, TriangleMesh

_INT32 = np.iinfo(np.int32)


def _ply_code(values: np.ndarray, name: str) -> np.dtype:
    """The numpy dtype (little-endian) a per-point array is written as."""
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind == "b":
        return np.dtype("<u1")
    if kind == "f":
        return np.dtype("<f8" if size == 8 else "<f4")
    if kind in "iu":
        if size <= 4:
            return np.dtype(f"<{kind}{size}")
        if values.size == 0 or (values.min() >= _INT32.min and values.max() <= _INT32.max):
            return np.dtype("<i4")
        return np.dtype("<f8")
    raise ValueError(f"cannot write per-point array '{name}' of dtype {values.dtype} to PLY")


def _columns(cloud: PointCloud) -> list[tuple[str, np.ndarray]]:
    """(property name, (N,) array) in write order."""
    n = len(cloud)
    cols: list[tuple[str, np.ndarray]] = [(a, cloud.coord[:, i].astype(np.float32)) for i, a in enumerate("xyz")]
    if cloud.normal is not None:
        cols += [(a, np.asarray(cloud.normal)[:, i].astype(np.float32)) for i, a in enumerate(("nx", "ny", "nz"))]
    if cloud.color is not None:
        rgb = color_to_uint8(cloud.color)
        cols += [(a, rgb[:, i]) for i, a in enumerate(("red", "green", "blue"))]
    for key in ("segment", "instance", "superpoint"):
        value = getattr(cloud, key)
        if value is not None:
            value = np.asarray(value).reshape(n)
            if value.size and (value.min() < _INT32.min or value.max() > _INT32.max):
                raise ValueError(f"'{key}' labels do not fit a 32-bit PLY int")
            cols.append((key, value.astype(np.int32)))
    taken = {name for name, _ in cols}
    for key, value in cloud.extra.items():
        value = np.asarray(value)
        if value.shape[:1] != (n,):
            raise ValueError(f"extra '{key}' has shape {value.shape}, expected first dimension {n}")
        name = re.sub(r"\s+", "_", key) or "extra"
        flat = value.reshape(n, -1)
        names = [name] if flat.shape[1] == 1 else [f"{name}_{i}" for i in range(flat.shape[1])]
        for i, col_name in enumerate(names):
            if col_name in taken:
                raise ValueError(f"extra '{key}' would be written as '{col_name}', which is already taken")
            taken.add(col_name)
            cols.append((col_name, flat[:, i]))
    return cols


def write_ply(path: PathLike, data: PointCloud | TriangleMesh, binary: bool = True,
              comments: tuple[str, ...] = ("written by contrast3d",)) -> None:
    """Write a cloud or a mesh to ``path`` (binary little-endian unless ``binary=False``).

    Floats are written exactly (ascii uses 9 / 17 significant digits), so labels, extras,
    coordinates and normals read back bit-identical; colours round-trip when they are
    multiples of 1/255 (which everything read from uint8 is).
    Raises ``ValueError`` for arrays that have no PLY representation.
    """
    faces = None
    if isinstance(data, TriangleMesh):
        faces = np.asarray(data.faces, dtype=np.int64).reshape(-1, 3)
        if faces.size and (faces.min() < 0 or faces.max() > _INT32.max):
            raise ValueError("face indices must be non-negative 32-bit integers")
        cloud = data.to_point_cloud()
        cloud.superpoint = cloud.extra.pop("superpoint", None)
    else:
        cloud = data
    cols = _columns(cloud)
    dtype = np.dtype([(name, _ply_code(values, name)) for name, values in cols])
    rows = np.empty(len(cloud), dtype)
    for name, values in cols:
        rows[name] = values
    lines = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    lines += [f"comment {c}" for c in comments]
    lines.append(f"element vertex {len(cloud)}")
    lines += [f"property {PLY_NAMES[dtype[name].str[1:]]} {name}" for name, _ in cols]
    if faces is not None:
        lines += [f"element face {faces.shape[0]}", "property list uchar int vertex_indices"]
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii")
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        if binary:
            fh.write(rows.tobytes())
            if faces is not None:
                frows = np.empty(faces.shape[0], [("n", "u1"), ("v", "<i4", (3,))])
                frows["n"] = 3
                frows["v"] = faces
                fh.write(frows.tobytes())
        else:
            fmts = ["%.17g" if dtype[n].kind == "f" and dtype[n].itemsize == 8 else
                    "%.9g" if dtype[n].kind == "f" else "%d" for n, _ in cols]
            np.savetxt(fh, rows, fmt=" ".join(fmts))
            if faces is not None:
                np.savetxt(fh, faces, fmt="3 %d %d %d")
