"""Z-buffer triangle rasteriser (numba, cached) with exact per-pixel depth.

Pinhole camera, OpenCV convention (x right, y down, z forward); pixel ``(u, v)`` = (column,
row) has its centre at integer coordinates, i.e. its ray is ``((u - cx) / fx, (v - cy) / fy, 1)``.
Triangles are clipped against the near plane; the depth of a covered pixel is the exact
intersection of its ray with the triangle's plane, so back-projecting it lands on the triangle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False, nogil=True)
def _raster_kernel(vc: np.ndarray, faces: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                   width: int, height: int, near: float, far: float, zbuf: np.ndarray, tri: np.ndarray) -> None:
    poly = np.empty((4, 3))
    proj = np.empty((4, 2))
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        z0, z1, z2 = vc[a, 2], vc[b, 2], vc[c, 2]
        if z0 < near and z1 < near and z2 < near:
            continue
        if z0 > far and z1 > far and z2 > far:
            continue
        # plane of the triangle in camera space: n . p = d
        e1x, e1y, e1z = vc[b, 0] - vc[a, 0], vc[b, 1] - vc[a, 1], vc[b, 2] - vc[a, 2]
        e2x, e2y, e2z = vc[c, 0] - vc[a, 0], vc[c, 1] - vc[a, 1], vc[c, 2] - vc[a, 2]
        nx, ny, nz = e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x
        d = nx * vc[a, 0] + ny * vc[a, 1] + nz * vc[a, 2]
        if d == 0.0:
            continue  # plane through the camera centre: seen edge-on
        # clip the polygon against z >= near (Sutherland-Hodgman)
        k = 0
        for i in range(3):
            p = faces[f, i]
            q = faces[f, (i + 1) % 3]
            zp, zq = vc[p, 2], vc[q, 2]
            if zp >= near:
                poly[k, 0], poly[k, 1], poly[k, 2] = vc[p, 0], vc[p, 1], zp
                k += 1
            if (zp >= near) != (zq >= near):
                t = (near - zp) / (zq - zp)
                poly[k, 0] = vc[p, 0] + t * (vc[q, 0] - vc[p, 0])
                poly[k, 1] = vc[p, 1] + t * (vc[q, 1] - vc[p, 1])
                poly[k, 2] = near
                k += 1
        if k < 3:
            continue
        umin, umax, vmin, vmax = 1e30, -1e30, 1e30, -1e30
        for i in range(k):
            proj[i, 0] = fx * poly[i, 0] / poly[i, 2] + cx
            proj[i, 1] = fy * poly[i, 1] / poly[i, 2] + cy
            umin, umax = min(umin, proj[i, 0]), max(umax, proj[i, 0])
            vmin, vmax = min(vmin, proj[i, 1]), max(vmax, proj[i, 1])
        x0, x1 = max(int(np.ceil(umin)), 0), min(int(np.floor(umax)), width - 1)
        y0, y1 = max(int(np.ceil(vmin)), 0), min(int(np.floor(vmax)), height - 1)
        if x0 > x1 or y0 > y1:
            continue
        for s in range(1, k - 1):  # fan: (0, s, s+1)
            ax, ay = proj[0, 0], proj[0, 1]
            bx, by = proj[s, 0], proj[s, 1]
            qx, qy = proj[s + 1, 0], proj[s + 1, 1]
            area = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
            if area == 0.0:
                continue
            sgn = 1.0 if area > 0 else -1.0
            tx0 = max(int(np.ceil(min(ax, bx, qx))), 0)
            tx1 = min(int(np.floor(max(ax, bx, qx))), width - 1)
            ty0 = max(int(np.ceil(min(ay, by, qy))), 0)
            ty1 = min(int(np.floor(max(ay, by, qy))), height - 1)
            for y in range(ty0, ty1 + 1):
                ry = (y - cy) / fy
                for x in range(tx0, tx1 + 1):
                    w0 = sgn * ((bx - ax) * (y - ay) - (by - ay) * (x - ax))
                    w1 = sgn * ((qx - bx) * (y - by) - (qy - by) * (x - bx))
                    w2 = sgn * ((ax - qx) * (y - qy) - (ay - qy) * (x - qx))
                    if w0 < 0 or w1 < 0 or w2 < 0:
                        continue
                    den = nx * (x - cx) / fx + ny * ry + nz
                    if den == 0.0:
                        continue
                    z = d / den
                    if z < near or z > far:
                        continue
                    if z < zbuf[y, x]:
                        zbuf[y, x] = z
                        tri[y, x] = f


@numba.njit(cache=True, nogil=True)
def _to_camera(v: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``(V, 3)`` world points -> camera frame with the world-to-camera ``(4, 4)`` ``T``."""
    out = np.empty((v.shape[0], 3))
    for i in range(v.shape[0]):
        for r in range(3):
            out[i, r] = T[r, 0] * v[i, 0] + T[r, 1] * v[i, 1] + T[r, 2] * v[i, 2] + T[r, 3]
    return out


@numba.njit(cache=True, nogil=True)
def _surface_kernel(v: np.ndarray, faces: np.ndarray, tri: np.ndarray, zbuf: np.ndarray, pose: np.ndarray,
                    fx: float, fy: float, cx: float, cy: float, depth: np.ndarray, points: np.ndarray,
                    bary: np.ndarray) -> None:
    for y in range(tri.shape[0]):
        for x in range(tri.shape[1]):
            f = tri[y, x]
            if f < 0:
                depth[y, x] = 0.0
                points[y, x, 0] = points[y, x, 1] = points[y, x, 2] = np.nan
                bary[y, x, 0] = bary[y, x, 1] = bary[y, x, 2] = 0.0
                continue
            z = zbuf[y, x]
            depth[y, x] = z
            pc0, pc1 = (x - cx) / fx * z, (y - cy) / fy * z
            p = np.empty(3)
            for r in range(3):
                p[r] = pose[r, 0] * pc0 + pose[r, 1] * pc1 + pose[r, 2] * z + pose[r, 3]
                points[y, x, r] = p[r]
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            d00 = d01 = d11 = d20 = d21 = 0.0
            for r in range(3):
                e0, e1, e2 = v[b, r] - v[a, r], v[c, r] - v[a, r], p[r] - v[a, r]
                d00 += e0 * e0
                d01 += e0 * e1
                d11 += e1 * e1
                d20 += e2 * e0
                d21 += e2 * e1
            den = d00 * d11 - d01 * d01
            if den == 0.0:
                den = 1.0
            wb = (d11 * d20 - d01 * d21) / den
            wc = (d00 * d21 - d01 * d20) / den
            bary[y, x, 0], bary[y, x, 1], bary[y, x, 2] = 1.0 - wb - wc, wb, wc


@dataclass
class Raster:
    """Rasteriser output.

    Attributes:
        depth: ``(H, W)`` float32 z-depth in metres along the optical axis, ``0`` = no surface.
        tri: ``(H, W)`` int32 index of the visible face, ``-1`` = none.
        points: ``(H, W, 3)`` float32 world-space surface point (NaN where ``tri < 0``).
        bary: ``(H, W, 3)`` float32 barycentric coordinates of ``points`` in face ``tri``.
    """

    depth: np.ndarray
    tri: np.ndarray
    points: np.ndarray
    bary: np.ndarray


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` camera-frame rays with unit z through the pixel centres."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)


def rasterize(vertices: np.ndarray, faces: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray, width: int,
              height: int, near: float = 0.05, far: float = 100.0) -> Raster:
    """Render the visible face, exact depth, world point and barycentrics of every pixel.

    Args:
        vertices: ``(V, 3)`` world coordinates, metres. faces: ``(F, 3)`` int vertex indices.
        cam_to_world: ``(4, 4)`` camera pose (OpenCV axes). K: ``(3, 3)`` pinhole intrinsics.
    """
    pose = np.ascontiguousarray(cam_to_world, dtype=np.float64)
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    vc = _to_camera(v, np.ascontiguousarray(np.linalg.inv(pose)))
    zbuf = np.full((height, width), np.inf)
    tri = np.full((height, width), -1, np.int32)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    _raster_kernel(vc, f, fx, fy, cx, cy, int(width), int(height), float(near), float(far), zbuf, tri)
    depth = np.empty((height, width), np.float32)
    points = np.empty((height, width, 3), np.float32)
    bary = np.empty((height, width, 3), np.float32)
    _surface_kernel(v, f, tri, zbuf, pose, fx, fy, cx, cy, depth, points, bary)
    return Raster(depth, tri, points, bary)
