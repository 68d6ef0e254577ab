"""SemanticKITTI scans: ``velodyne/NNNNNN.bin`` (float32 x y z remission) and ``labels/NNNNNN.label``
(uint32: lower 16 bits raw semantic id, upper 16 bits instance id).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import PathLike, check_coords, read_bytes
from contrast3d.io.labels import semantickitti_to_train
from contrast3d.structures import PointCloud


def find_label_file(bin_path: PathLike) -> Path | None:
    """The ``.label`` of a scan: beside the ``.bin`` or in the sibling ``labels/`` folder."""
    p = Path(bin_path)
    for cand in (p.with_suffix(".label"), p.parent.parent / "labels" / f"{p.stem}.label"):
        if cand.is_file():
            return cand
    return None


def read_semantickitti(bin_path: PathLike, label_path: PathLike | None = None) -> PointCloud:
    """Read one SemanticKITTI scan as a validated :class:`PointCloud`.

    ``coord`` ``(N, 3)`` float32 metres; ``extra['strength']`` ``(N,)`` float32 remission;
    with labels: ``segment`` 0..18 via the learning map (unlabeled / unknown -> -1),
    ``instance`` = upper 16 bits (0, "no instance", -> -1) and ``extra['segment_raw']`` the raw
    semantic id. Raises :class:`DataError` for a size that is not a multiple of 16 bytes / 4
    bytes, a label count differing from the point count, NaN/Inf or an empty scan.
    """
    data = read_bytes(bin_path)
    if len(data) % 16:
        raise DataError(bin_path, f"size {len(data)} bytes is not a multiple of 16 (float32 x y z remission)")
    scan = np.frombuffer(data, "<f4").reshape(-1, 4)
    check_coords(scan[:, :3], bin_path)
    cloud = PointCloud(coord=scan[:, :3].copy(), extra={"strength": scan[:, 3].copy()},
                       meta={"path": str(bin_path), "name": Path(bin_path).stem})
    if label_path is not None:
        raw = read_bytes(label_path)
        if len(raw) % 4:
            raise DataError(label_path, f"size {len(raw)} bytes is not a multiple of 4 (uint32 labels)")
        label = np.frombuffer(raw, "<u4")
        if label.shape[0] != len(cloud):
            raise DataError(label_path, f"length mismatch: {label.shape[0]} labels for {len(cloud)} points")
        semantic = (label & 0xFFFF).astype(np.int64)
        instance = (label >> 16).astype(np.int64)
        cloud.segment = semantickitti_to_train(semantic)
        cloud.instance = np.where(instance == 0, -1, instance)
        cloud.extra["segment_raw"] = semantic
        cloud.meta["label_path"] = str(label_path)
    return cloud.validate(str(bin_path))
