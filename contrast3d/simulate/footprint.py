"""Oriented 2D footprints (yaw-rotated rectangles with a z-interval) and overlap tests."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SceneObject:
    """One placed thing, described by an oriented box.

    Attributes:
        name: model name (``chair``, ``door``, ``reserve`` ...); ``label`` its ScanNet-20 id.
        instance: instance id in the scene mesh (``-1`` for reserved empty zones).
        center: ``(2,)`` footprint centre, metres; ``half``: ``(2,)`` half extents along the
            object's local x / y; ``yaw``: rotation of local x from world x, radians.
        z0, z1: vertical extent, metres; ``room``: room id; ``kind``: ``furniture``,
            ``fitting`` (doors, windows, curtains) or ``reserve`` (door swing, window front);
        group: objects of one group (a window and its curtains) may touch each other.
    """

    name: str
    label: int
    instance: int
    center: np.ndarray
    half: np.ndarray
    yaw: float
    z0: float
    z1: float
    room: int
    kind: str = "furniture"
    group: int = -1

    def corners(self) -> np.ndarray:
        """``(4, 2)`` footprint corners, counter-clockwise."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        r = np.array([[c, -s], [s, c]])
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * self.half
        return self.center + local @ r.T

    @property
    def front(self) -> np.ndarray:
        """``(2,)`` unit vector the object faces (its local +y)."""
        return np.array([-np.sin(self.yaw), np.cos(self.yaw)])


def polygons_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test of two convex polygons ``(K, 2)``; touching within ``-margin`` is
    not an overlap, ``margin > 0`` also rejects polygons closer than ``margin``."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        axes = np.stack([-edges[:, 1], edges[:, 0]], 1)
        axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
        pa, pb = a @ axes.T, b @ axes.T
        if np.any((pa.max(0) + margin <= pb.min(0)) | (pb.max(0) + margin <= pa.min(0))):
            return False
    return True


def objects_collide(a: SceneObject, b: SceneObject, margin: float = 0.0, z_eps: float = 1e-3) -> bool:
    """Whether two objects' boxes intersect (z-intervals overlapping by more than ``z_eps``)."""
    if min(a.z1, b.z1) - max(a.z0, b.z0) <= z_eps:
        return False
    return polygons_overlap(a.corners(), b.corners(), margin)


def fill_points(obj: SceneObject, step: float = 0.04) -> np.ndarray:
    """``(K, 2)`` points covering the footprint (grid of ``step`` metres plus the corners)."""
    n = np.maximum(2, np.ceil(2 * obj.half / step).astype(int) + 1)
    u, v = np.meshgrid(np.linspace(-1, 1, n[0]), np.linspace(-1, 1, n[1]), indexing="ij")
    local = np.stack([u.ravel(), v.ravel()], 1) * obj.half * 0.999
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    return obj.center + local @ np.array([[c, -s], [s, c]]).T
