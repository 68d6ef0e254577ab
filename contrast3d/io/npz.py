"""Scenes stored as one ``.npz`` archive of per-point arrays.

The arrays are named as the files of a Pointcept scene folder (:mod:`contrast3d.io.pointcept`):
``coord`` ``(N, 3)`` (required), ``color`` ``(N, 3)`` (uint8 0..255, or float in 0..1 or 0..255),
``normal`` ``(N, 3)``, ``segment20`` / ``segment`` ``(N,)`` int (-1 ignore), ``instance``,
``superpoint``; any other ``(N, ...)`` array becomes ``extra[name]``. A ``pose`` ``(4, 4)`` (the
camera-to-world matrix of the frame clouds written by ``contrast3d prepare rgbd``, whose
``frames/<id>.npz`` are such archives) goes into ``meta["pose"]``.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import (
    PathLike,
    as_labels,
    check_color_range,
    check_coords,
    check_regular_file,
    point_coords,
    scale_color,
)
from contrast3d.io.pointcept import SEGMENT_FILES
from contrast3d.structures import POINT_FIELDS, PointCloud


def _load(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive (no pickles); any failure raises :class:`DataError` naming ``path``."""
    bad = (ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as err:
        raise DataError(path, f"cannot read file: {err.strerror or err}") from None
    except bad as err:
        raise DataError(path, f"not a valid .npz archive ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(path, "a single .npy array, not an .npz archive of named arrays")
    try:
        with archive:
            return {name: archive[name] for name in archive.files}
    except OSError as err:
        raise DataError(path, f"cannot read file: {err.strerror or err}") from None
    except bad as err:
        raise DataError(path, f"corrupt .npz archive ({err})") from None


def read_npz_scene(path: PathLike) -> PointCloud:
    """Read an ``.npz`` scene (module docstring for the array names) into a validated :class:`PointCloud`.

    ``meta`` gets ``path``, ``name`` (the file stem), ``pose`` when stored and ``segment_file`` (which
    label array was used). Raises :class:`DataError` for an unreadable archive, a missing ``coord``,
    wrong shapes, length mismatches, NaN/Inf coordinates, colours outside 0..255 or an empty scene.
    """
    file = check_regular_file(path, "scene archive")  # a FIFO would block np.load forever
    data = _load(file)
    if "coord" not in data:
        raise DataError(file, f"no 'coord' array (found: {', '.join(sorted(data)) or 'nothing'})")
    coord = point_coords(data.pop("coord"), file, "'coord' coordinates")
    n = coord.shape[0]
    cloud = PointCloud(coord=coord, meta={"path": str(file), "name": file.stem})
    for key in ("color", "normal"):
        if key in data:
            value = data.pop(key)
            if value.ndim != 2 or value.shape != (n, 3) or value.dtype.kind not in "iuf":
                raise DataError(file, f"'{key}' must be ({n}, 3) numbers, got {value.shape} {value.dtype}")
            if key == "color":
                cloud.color = check_color_range(scale_color(value), file)
            else:
                check_coords(value, file, "normals")
                cloud.normal = value.astype(np.float32)
    for name in SEGMENT_FILES:
        if name in data:
            cloud.segment = as_labels(data.pop(name), n, file, name)
            cloud.meta["segment_file"] = name
            break
    for key in ("instance", "superpoint"):
        if key in data:
            setattr(cloud, key, as_labels(data.pop(key), n, file, key))
    pose = data.pop("pose", None)
    if pose is not None:
        if pose.shape != (4, 4) or pose.dtype.kind not in "iuf" or not np.isfinite(pose).all():
            raise DataError(file, f"'pose' must be a finite (4, 4) matrix, got {pose.shape} {pose.dtype}")
        cloud.meta["pose"] = pose.astype(np.float64)
    for name, value in data.items():
        if name in POINT_FIELDS or name in SEGMENT_FILES:  # e.g. segment next to segment20
            cloud.meta.setdefault("unused_arrays", []).append(name)
            continue
        if value.ndim == 0 or value.shape[0] != n:
            raise DataError(file, f"length mismatch: '{name}' has shape {value.shape} for {n} points")
        if value.dtype.kind not in "biuf":
            raise DataError(file, f"'{name}' has unsupported dtype {value.dtype} (expected a numeric array)")
        cloud.extra[name] = value
    return cloud.validate(str(file))
