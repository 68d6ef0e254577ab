"""Point <-> pixel correspondence: project world points into an RGB-D frame.

Same pinhole convention as :mod:`contrast3d.data.rgbd`: a camera point ``(x, y, z)`` lands
at column ``u = fx x / z + cx`` and row ``v = fy y / z + cy`` with pixel centres at integer
coordinates, so it belongs to pixel ``(round(v), round(u))``.
"""
from __future__ import annotations

import numpy as np


def world_to_camera(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """``(N, 3)`` world points -> ``(N, 3)`` float64 camera points (``pose`` camera-to-world)."""
    pose = np.asarray(pose, np.float64)
    rot, trans = pose[:3, :3], pose[:3, 3]
    # inverse of a rigid transform: R^T (p - t), written row-wise as (p - t) @ R
    return (np.asarray(points, np.float64) - trans) @ rot


def project_points(points: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray,
                   image_size: tuple[int, int], depth: np.ndarray | None = None,
                   tolerance: float = 0.05, near: float = 1e-3
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible points of a frame and their pixels.

    Args:
        points: ``(N, 3)`` world coordinates, metres.
        intrinsics: ``(3, 3)`` pinhole matrix of the image.
        pose: ``(4, 4)`` camera-to-world.
        image_size: ``(H, W)``.
        depth: optional ``(H, W)`` depth image (metres, 0 = invalid). When given, a point is
            kept only if the pixel's depth is valid and ``|z_point - depth| <= tolerance``
            (rejects occluded points and points in holes).
        tolerance: depth-test tolerance, metres.
        near: minimum camera depth ``z`` (points behind / at the camera are dropped).

    Returns:
        ``(point_index, row, col)``: three ``(K,)`` int64 arrays, point indices ascending.
    """
    h, w = int(image_size[0]), int(image_size[1])
    k = np.asarray(intrinsics, np.float64)
    cam = world_to_camera(np.asarray(points).reshape(-1, 3), pose)
    z = cam[:, 2]
    front = np.nonzero(z > near)[0]
    cam, z = cam[front], z[front]
    col = np.floor(k[0, 0] * cam[:, 0] / z + k[0, 2] + 0.5).astype(np.int64)
    row = np.floor(k[1, 1] * cam[:, 1] / z + k[1, 2] + 0.5).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    idx, row, col, z = front[inside], row[inside], col[inside], z[inside]
    if depth is not None:
        depth = np.asarray(depth)
        if depth.shape != (h, w):
            raise ValueError(f"depth shape {depth.shape} differs from image_size {(h, w)}")
        d = depth[row, col].astype(np.float64)
        ok = (d > 0) & np.isfinite(d) & (np.abs(z - d) <= tolerance)
        idx, row, col = idx[ok], row[ok], col[ok]
    return idx.astype(np.int64), row, col
