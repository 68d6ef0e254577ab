"""Pointcept preprocessed scene folders: one ``.npy`` per per-point array.

Layout (Pointcept's ScanNet / S3DIS preprocessing): ``coord.npy`` ``(N, 3)`` float, ``color.npy``
``(N, 3)`` 0..255 (uint8 or float), ``normal.npy`` ``(N, 3)``, ``segment20.npy`` /
``segment.npy`` ``(N,)`` int (-1 ignore), ``instance.npy``, ``superpoint.npy``; any other
``(N, ...)`` ``.npy`` becomes ``extra[stem]``.

Label file names: the readers accept ``segment20.npy`` (Pointcept's ScanNet name, preferred when
both exist) and ``segment.npy``; every writer of this project (``contrast3d convert``,
``contrast3d simulate``, ``contrast3d prepare scenes`` for inputs without a label file name) writes
:data:`SEGMENT_FILE`, ``segment.npy`` (Pointcept's generic name, whatever the label set).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import (
    PathLike,
    as_labels,
    atomic_dir,
    check_color_range,
    check_coords,
    color_to_uint8,
    load_npy,
    point_coords,
)
from contrast3d.structures import POINT_FIELDS, PointCloud

#: Files tried, in order, for the semantic labels.
SEGMENT_FILES = ("segment20", "segment")
#: The semantic label file the writers produce (without ``.npy``).
SEGMENT_FILE = "segment"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def is_pointcept_scene(path: PathLike) -> bool:
    """Whether ``path`` is a folder with a ``coord.npy`` (any kind of file: the reader refuses a FIFO ...)."""
    return (Path(path) / "coord.npy").exists()


def _vec3(arr: np.ndarray, n: int, file: Path) -> np.ndarray:
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(file, f"expected shape (N, 3), got {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(file, f"length mismatch: {arr.shape[0]} rows for {n} points")
    return arr


def read_pointcept_scene(path: PathLike) -> PointCloud:
    """Read a Pointcept scene folder into a validated :class:`PointCloud`.

    Colours are rescaled from 0..255 to float32 [0, 1] (values outside 0..255 are refused). ``meta``
    gets ``path``, ``name`` (the folder name) and ``segment_file`` (which label file was used).
    Raises :class:`DataError` for a missing ``coord.npy``, wrong shapes / dtypes, length
    mismatches, NaN/Inf coordinates or an empty scene.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(folder, "not a folder (expected a Pointcept scene folder)")
    coord_file = folder / "coord.npy"
    if not coord_file.is_file():
        raise DataError(folder, "no coord.npy: not a Pointcept scene folder")
    coord = point_coords(load_npy(coord_file), coord_file)
    n = coord.shape[0]
    cloud = PointCloud(coord=coord, meta={"path": str(folder), "name": folder.name})
    files = {f.stem: f for f in sorted(folder.glob("*.npy")) if f.is_file()}
    if "color" in files:
        color = _vec3(load_npy(files["color"]), n, files["color"]).astype(np.float32) / np.float32(255.0)
        cloud.color = check_color_range(color, files["color"])
    if "normal" in files:
        normal = _vec3(load_npy(files["normal"]), n, files["normal"]).astype(np.float32)
        check_coords(normal, files["normal"], "normals")
        cloud.normal = normal
    used = {"coord", "color", "normal"}
    for stem in SEGMENT_FILES:
        if stem in files:
            cloud.segment = as_labels(load_npy(files[stem]), n, files[stem], stem)
            cloud.meta["segment_file"] = stem
            used.add(stem)
            break
    for key in ("instance", "superpoint"):
        if key in files:
            setattr(cloud, key, as_labels(load_npy(files[key]), n, files[key], key))
            used.add(key)
    for stem, file in files.items():
        if stem in used:
            continue
        if stem in POINT_FIELDS or stem == "coord":  # e.g. segment.npy next to segment20.npy
            cloud.meta.setdefault("unused_files", []).append(file.name)
            continue
        arr = load_npy(file)
        if arr.ndim == 0 or arr.shape[0] != n:
            raise DataError(file, f"length mismatch: shape {arr.shape} for {n} points")
        cloud.extra[stem] = arr
    return cloud.validate(str(folder))


def write_pointcept_scene(path: PathLike, cloud: PointCloud, segment_name: str = SEGMENT_FILE) -> None:
    """Write ``cloud`` as a Pointcept scene folder, atomically (temporary folder, then rename).

    ``coord``/``normal`` float32, ``color`` uint8 0..255 (like Pointcept), labels int32 (the
    semantic labels as ``<segment_name>.npy``), extras in their own dtype. An existing folder
    is replaced only if it holds nothing but ``.npy`` files (else ``FileExistsError``).
    """
    if segment_name not in SEGMENT_FILES:
        raise ValueError(f"segment_name must be one of {SEGMENT_FILES}")
    arrays: dict[str, np.ndarray] = {"coord": np.asarray(cloud.coord, np.float32)}
    if cloud.color is not None:
        arrays["color"] = color_to_uint8(cloud.color)
    if cloud.normal is not None:
        arrays["normal"] = np.asarray(cloud.normal, np.float32)
    for key, name in (("segment", segment_name), ("instance", "instance"), ("superpoint", "superpoint")):
        value = getattr(cloud, key)
        if value is not None:
            arrays[name] = np.asarray(value).astype(np.int32)
    for key, value in cloud.extra.items():
        if not _SAFE_NAME.match(key) or key in arrays or key in POINT_FIELDS or key in SEGMENT_FILES:
            raise ValueError(f"extra '{key}' cannot be stored as '{key}.npy' in a Pointcept scene")
        arrays[key] = np.asarray(value)
    with atomic_dir(path) as tmp:
        for name, value in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
