"""Depth back-projection and RGB-D frame -> :class:`PointCloud` conversion.

Pinhole model with pixel centres at integer coordinates: pixel (row ``v``, column ``u``) with
depth ``z`` (metres) is the camera point ``((u - cx) z / fx, (v - cy) z / fy, z)``; a pose
(camera-to-world ``(4, 4)``) maps it to world coordinates.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from contrast3d.data.voxelize import voxelize
from contrast3d.io.frames import FrameSequence, RGBDFrame
from contrast3d.structures import PointCloud


def depth_to_points(depth: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray | None = None,
                    depth_trunc: float | None = None, stride: int = 1,
                    return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Back-project a depth image.

    Args:
        depth: ``(H, W)`` float metres, ``0`` / non-finite = invalid (dropped).
        intrinsics: ``(3, 3)`` pinhole matrix.
        pose: optional ``(4, 4)`` camera-to-world; without it points are in camera coordinates.
        depth_trunc: drop depths ``> depth_trunc`` metres.
        stride: use every ``stride``-th row and column.
        return_index: also return the flat pixel index ``v * W + u`` of each point.

    Returns:
        ``(N, 3)`` float32 points (row-major pixel order), and ``(N,)`` int64 pixel indices
        if ``return_index``.
    """
    depth = np.asarray(depth)
    h, w = depth.shape
    k = np.asarray(intrinsics, dtype=np.float64)
    rows = np.arange(0, h, stride)
    cols = np.arange(0, w, stride)
    sub = depth[::stride, ::stride].astype(np.float64)
    valid = np.isfinite(sub) & (sub > 0)
    if depth_trunc is not None:
        valid &= sub <= depth_trunc
    vi, ui = np.nonzero(valid)
    z = sub[vi, ui]
    v = rows[vi]
    u = cols[ui]
    x = (u - k[0, 2]) * z / k[0, 0]
    y = (v - k[1, 2]) * z / k[1, 1]
    pts = np.stack([x, y, z], axis=1)
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float64)
        pts = pts @ pose[:3, :3].T + pose[:3, 3]
    pts = pts.astype(np.float32)
    if return_index:
        return pts, (v.astype(np.int64) * w + u)
    return pts


def voxel_downsample_index(coord: np.ndarray, voxel_size: float) -> np.ndarray:
    """Indices (ascending, ``(K,)`` int64) of the lowest-index point in each occupied voxel.

    Voxels are ``floor(coord / voxel_size)`` (:func:`contrast3d.data.voxelize.voxelize`).
    """
    if len(coord) == 0:
        return np.zeros(0, np.int64)
    return np.sort(voxelize(np.asarray(coord), voxel_size)[1])


def frame_to_cloud(frame: RGBDFrame, voxel_size: float | None = None, depth_trunc: float | None = None,
                   stride: int = 1, world: bool = True) -> PointCloud:
    """One RGB-D frame as a :class:`PointCloud` (world coordinates unless ``world=False``).

    ``voxel_size`` (metres): keep the first point per voxel (colour follows the point).
    ``meta`` carries ``name``, ``path``, ``pose`` and ``intrinsics``.
    """
    pts, pix = depth_to_points(frame.depth, frame.intrinsics, frame.pose if world else None,
                               depth_trunc=depth_trunc, stride=stride, return_index=True)
    color = None
    if frame.color is not None:
        color = frame.color.reshape(-1, 3)[pix].astype(np.float32)
    cloud = PointCloud(coord=pts, color=color,
                       meta={"name": frame.name, "path": frame.path, "pose": frame.pose,
                             "intrinsics": frame.intrinsics, "frame": frame.name})
    if voxel_size:
        cloud = cloud.select(voxel_downsample_index(cloud.coord, voxel_size))
    return cloud


def sequence_to_clouds(frames: FrameSequence | Iterable[RGBDFrame], frame_skip: int = 25,
                       voxel_size: float | None = 0.05, depth_trunc: float | None = None,
                       stride: int = 1) -> Iterator[PointCloud]:
    """World-frame clouds of every ``frame_skip``-th frame (PointContrast uses 25)."""
    if isinstance(frames, FrameSequence):
        for frame_id in frames.ids[::frame_skip]:
            yield frame_to_cloud(frames.read(frame_id), voxel_size, depth_trunc, stride)
    else:
        for i, frame in enumerate(frames):
            if i % frame_skip == 0:
                yield frame_to_cloud(frame, voxel_size, depth_trunc, stride)
