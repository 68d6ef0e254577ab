"""RGB-D frames of a simulated scene: rasterise, shade (Lambertian + ambient), add sensor noise."""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from contrast3d.simulate.raster import rasterize
from contrast3d.simulate.sensor import DepthNoise, noisy_color, noisy_depth
from contrast3d.structures import TriangleMesh


@numba.njit(cache=True, nogil=True)
def _shade_kernel(tri: np.ndarray, bary: np.ndarray, points: np.ndarray, faces: np.ndarray, vcolor: np.ndarray,
                  vnormal: np.ndarray, fnormal: np.ndarray, pose: np.ndarray, fx: float, fy: float, cx: float,
                  cy: float, lights: np.ndarray, ambient: float, rgb: np.ndarray, cos_img: np.ndarray) -> None:
    """Per pixel: interpolated albedo and normal, Lambertian point lights + ambient, |cos| of
    the incidence angle; pixels with no surface get a sky gradient."""
    for y in range(tri.shape[0]):
        for x in range(tri.shape[1]):
            rc0, rc1 = (x - cx) / fx, (y - cy) / fy
            r0 = pose[0, 0] * rc0 + pose[0, 1] * rc1 + pose[0, 2]
            r1 = pose[1, 0] * rc0 + pose[1, 1] * rc1 + pose[1, 2]
            r2 = pose[2, 0] * rc0 + pose[2, 1] * rc1 + pose[2, 2]
            rn = np.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
            r0, r1, r2 = r0 / rn, r1 / rn, r2 / rn
            f = tri[y, x]
            if f < 0:
                cos_img[y, x] = 0.0
                rgb[y, x, 0] = 1.3 * (0.85 - 0.3 * r2)
                rgb[y, x, 1] = 1.3 * (0.88 - 0.15 * r2)
                rgb[y, x, 2] = 1.3 * (0.9 + 0.05 * r2)
                continue
            n0 = n1 = n2 = 0.0
            a0 = a1 = a2 = 0.0
            for k in range(3):
                v = faces[f, k]
                w = bary[y, x, k]
                n0 += w * vnormal[v, 0]
                n1 += w * vnormal[v, 1]
                n2 += w * vnormal[v, 2]
                a0 += w * vcolor[v, 0]
                a1 += w * vcolor[v, 1]
                a2 += w * vcolor[v, 2]
            nn = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2) + 1e-12
            n0, n1, n2 = n0 / nn, n1 / nn, n2 / nn
            if n0 * r0 + n1 * r1 + n2 * r2 > 0:
                n0, n1, n2 = -n0, -n1, -n2
            cos_img[y, x] = abs(fnormal[f, 0] * r0 + fnormal[f, 1] * r1 + fnormal[f, 2] * r2)
            light = ambient
            for li in range(lights.shape[0]):
                d0 = lights[li, 0] - points[y, x, 0]
                d1 = lights[li, 1] - points[y, x, 1]
                d2 = lights[li, 2] - points[y, x, 2]
                dist2 = d0 * d0 + d1 * d1 + d2 * d2
                c = (n0 * d0 + n1 * d1 + n2 * d2) / np.sqrt(max(dist2, 1e-9))
                if c > 0:
                    light += 0.9 * c * 6.0 / (4.0 + dist2)
            rgb[y, x, 0], rgb[y, x, 1], rgb[y, x, 2] = a0 * light, a1 * light, a2 * light


@dataclass
class Frame:
    """One rendered RGB-D frame.

    Attributes:
        color: ``(H, W, 3)`` uint8. depth: ``(H, W)`` float32 metres as the sensor reads it
            (noisy, mm-quantised, 0 = invalid). depth_clean: exact depth before noise.
        tri: ``(H, W)`` int32 visible mesh face (``-1`` = none); bary: ``(H, W, 3)`` float32.
        pose: ``(4, 4)`` camera-to-world (OpenCV axes). K: ``(3, 3)`` intrinsics.
    """

    color: np.ndarray
    depth: np.ndarray
    depth_clean: np.ndarray
    tri: np.ndarray
    bary: np.ndarray
    pose: np.ndarray
    K: np.ndarray


def intrinsics(width: int = 320, height: int = 240, hfov_deg: float = 66.0) -> np.ndarray:
    """``(3, 3)`` pinhole matrix with horizontal field of view ``hfov_deg`` (Kinect-like ~58-70)."""
    f = width / 2 / np.tan(np.deg2rad(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


class Renderer:
    """Renders frames of one mesh lit by point ``lights`` ``(L, 3)`` (metres)."""

    def __init__(self, mesh: TriangleMesh, lights: np.ndarray, width: int = 320, height: int = 240,
                 K: np.ndarray | None = None, noise: DepthNoise | None = None, ambient: float = 0.45):
        self.mesh, self.lights = mesh, np.asarray(lights, np.float64).reshape(-1, 3)
        self.width, self.height = width, height
        self.K = intrinsics(width, height) if K is None else np.asarray(K, np.float64)
        self.noise = noise or DepthNoise()
        self.ambient = ambient
        v, f = mesh.vertices.astype(np.float64), mesh.faces
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        self.face_normal = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        self._faces = np.ascontiguousarray(f, dtype=np.int64)
        self._v = np.ascontiguousarray(v)
        self._vcolor = np.ascontiguousarray(mesh.vertex_color if mesh.vertex_color is not None
                                            else np.full((len(v), 3), 0.7), dtype=np.float64)
        vn = mesh.vertex_normal
        if vn is None:  # area-weighted vertex normals from the faces
            vn = np.zeros_like(v)
            for k in range(3):
                np.add.at(vn, f[:, k], n)
        self._vnormal = np.ascontiguousarray(vn, dtype=np.float64)

    def render(self, pose: np.ndarray, rng: np.random.Generator | None = None, noise: bool = True) -> Frame:
        """Render at camera-to-world ``pose`` ``(4, 4)``; ``rng`` drives the sensor noise."""
        rng = rng or np.random.default_rng(0)
        pose = np.asarray(pose, np.float64)
        r = rasterize(self._v, self._faces, pose, self.K, self.width, self.height)
        rgb = np.empty((self.height, self.width, 3))
        cos_img = np.empty((self.height, self.width))
        K = self.K
        _shade_kernel(r.tri, r.bary, r.points, self._faces, self._vcolor, self._vnormal, self.face_normal, pose,
                      float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), self.lights, self.ambient,
                      rgb, cos_img)
        if noise:
            color = noisy_color(rgb, rng)
            depth = noisy_depth(r.depth, cos_img, rng, self.noise)
        else:
            color = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
            depth = r.depth.copy()
        return Frame(color, depth, r.depth, r.tri, r.bary, pose, self.K.copy())
