"""S3DIS (Stanford 3D Indoor Spaces, v1.2 aligned) room reader.

A room folder holds ``Annotations/<class>_<i>.txt``, one file per object, each line
``x y z r g b`` (metres, 0..255 colour). Known quirks of the release are tolerated: stray
control / non-ASCII bytes inside a number (e.g. a ``\\x10`` in one ``ceiling_1.txt`` of Area 5),
``\\r\\n`` line ends, blank lines, extra trailing columns, and the class name ``stairs`` (mapped
to clutter). Any other unparsable row raises :class:`DataError` naming the file and line.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import PathLike, read_bytes
from contrast3d.io.labels import s3dis_class_id
from contrast3d.structures import PointCloud

_JUNK = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")  # control / non-ASCII bytes
_NUMBER = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem))


def _parse_object(file: Path) -> np.ndarray:
    """``(M, 6)`` float64 rows of one annotation file."""
    data = read_bytes(file)
    try:  # fast path (C parser); rejects ragged rows, which then get the tolerant slow path
        with warnings.catch_warnings():  # an empty file is reported as an empty room, not warned about
            warnings.simplefilter("ignore", UserWarning)
            rows = np.loadtxt(io.BytesIO(data), dtype=np.float64, ndmin=2, comments=None, encoding="latin-1")
        if rows.shape[1] == 6 or rows.size == 0:
            return rows.reshape(-1, 6)
    except ValueError:
        pass
    # Slow path: clean and check line by line to tolerate the known quirks or name the bad line.
    parsed: list[list[float]] = []
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        parts = _JUNK.sub(b"", line).split()
        if not parts:
            continue
        if len(parts) < 6 or not all(_NUMBER.match(p) for p in parts[:6]):
            raise DataError(file, f"line {lineno}: expected 'x y z r g b', got {line[:80].decode('latin-1')!r}")
        parsed.append([float(p) for p in parts[:6]])
    return np.array(parsed, np.float64).reshape(-1, 6)


def is_s3dis_room(path: PathLike) -> bool:
    return (Path(path) / "Annotations").is_dir()


def read_s3dis_room(path: PathLike) -> PointCloud:
    """Read one S3DIS room as a validated :class:`PointCloud`.

    ``segment``: 13-class id of each object's file name (``S3DIS_CLASSES``); ``instance``:
    the object's index among the room's annotation files in natural order (0..K-1);
    ``color``: float32 in [0, 1]. Raises :class:`DataError` for a missing Annotations folder,
    malformed rows, colours outside 0..255, NaN/Inf coordinates or an empty room.
    """
    folder = Path(path)
    ann = folder / "Annotations"
    if not ann.is_dir():
        raise DataError(folder, "no Annotations folder: not an S3DIS room")
    files = sorted((f for f in ann.glob("*.txt") if f.is_file()), key=_natural_key)
    if not files:
        raise DataError(ann, "no annotation .txt files")
    parts, segments, instances, names = [], [], [], []
    for i, file in enumerate(files):
        rows = _parse_object(file)
        if not np.isfinite(rows).all():
            raise DataError(file, "NaN/Inf values")
        if rows.size and (rows[:, 3:].min() < 0 or rows[:, 3:].max() > 255):
            raise DataError(file, "colour values outside 0..255")
        class_name = file.stem.rsplit("_", 1)[0]
        names.append(file.stem)
        parts.append(rows)
        segments.append(np.full(rows.shape[0], s3dis_class_id(class_name), np.int64))
        instances.append(np.full(rows.shape[0], i, np.int64))
    table = np.concatenate(parts)
    cloud = PointCloud(
        coord=table[:, :3].astype(np.float32),
        color=(table[:, 3:] / 255.0).astype(np.float32),
        segment=np.concatenate(segments),
        instance=np.concatenate(instances),
        meta={"path": str(folder), "name": folder.name, "objects": names},
    )
    return cloud.validate(str(folder))
