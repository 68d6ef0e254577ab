"""Surface normals of meshes and point clouds.

* :func:`mesh_vertex_normals` -- per-vertex normals of a triangle mesh, either the running mean of
  the unit face normals exactly as ScanNet's ``Segmentator`` computes it (float32, faces in file
  order), or the area-weighted sum of face normals.
* :func:`estimate_normals` -- PCA normals of a point cloud from its k nearest neighbours
  (optionally restricted to a radius), oriented toward a viewpoint or away from the centroid.

All coordinates are metres; normals are float32 unit vectors unless stated otherwise.
"""
from __future__ import annotations

from typing import Literal

import numba
import numpy as np
from scipy.spatial import cKDTree

from contrast3d.errors import DataError

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@numba.njit(cache=True)
def _scannet_mean_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Running mean of unit face normals, float32 arithmetic in the same order as ScanNet.

    ``vertices`` (V, 3) float32, ``faces`` (F, 3) int64. Face normal = normalised
    ``(p2 - p1) x (p3 - p1)``; every vertex of the face is updated with
    ``n <- lerp(n, face_normal, 1 / (count + 1))``. Zero-area faces are skipped (ScanNet would
    propagate a NaN into the vertex normal). Returns (V, 3) float32, *not* renormalised.
    """
    nv = vertices.shape[0]
    normals = np.zeros((nv, 3), dtype=np.float32)
    counts = np.zeros(nv, dtype=np.float32)
    for f in range(faces.shape[0]):
        i1 = faces[f, 0]
        i2 = faces[f, 1]
        i3 = faces[f, 2]
        ux = vertices[i2, 0] - vertices[i1, 0]
        uy = vertices[i2, 1] - vertices[i1, 1]
        uz = vertices[i2, 2] - vertices[i1, 2]
        vx = vertices[i3, 0] - vertices[i1, 0]
        vy = vertices[i3, 1] - vertices[i1, 1]
        vz = vertices[i3, 2] - vertices[i1, 2]
        cx = uy * vz - uz * vy
        cy = uz * vx - ux * vz
        cz = ux * vy - uy * vx
        n = np.sqrt(cx * cx + cy * cy + cz * cz)
        if not n > _F0:  # degenerate (or non-finite) face: no contribution
            continue
        cx = cx / n
        cy = cy / n
        cz = cz / n
        for k in range(3):
            i = faces[f, k]
            v = _F1 / (counts[i] + _F1)
            u = _F1 - v
            normals[i, 0] = v * cx + u * normals[i, 0]
            normals[i, 1] = v * cy + u * normals[i, 1]
            normals[i, 2] = v * cz + u * normals[i, 2]
            counts[i] += _F1
    return normals


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise DataError("<mesh>", f"vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise DataError("<mesh>", f"faces must have shape (F, 3), got {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise DataError("<mesh>", f"face index out of range [0, {v.shape[0]})")
    return v, f


def _normalize(n: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0).astype(np.float32, copy=False)


def mesh_vertex_normals(vertices: np.ndarray, faces: np.ndarray,
                        weighting: Literal["mean", "area"] = "mean",
                        normalize: bool = True) -> np.ndarray:
    """Per-vertex normals of a triangle mesh.

    Args:
        vertices: ``(V, 3)`` float, metres.
        faces: ``(F, 3)`` int vertex indices (counter-clockwise seen from outside).
        weighting: ``"mean"`` -- the running mean of the *unit* normals of the faces around the
            vertex, computed in float32 in face order exactly like ScanNet's segmentator;
            ``"area"`` -- the sum of the unnormalised cross products (area-weighted).
        normalize: rescale to unit length. ScanNet's segmentator uses the ``"mean"`` normals
            *without* renormalising (their length < 1 on curved surfaces), so pass ``False`` to get
            those.

    Returns:
        ``(V, 3)`` float32. Vertices in no (non-degenerate) face get ``(0, 0, 0)``.
    """
    v, f = _check_mesh(vertices, faces)
    if weighting == "mean":
        n = _scannet_mean_normals(v, f)
    elif weighting == "area":
        p = v.astype(np.float64)
        cross = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
        n = np.zeros((v.shape[0], 3), dtype=np.float64)
        for k in range(3):
            for d in range(3):
                n[:, d] += np.bincount(f[:, k], weights=cross[:, d], minlength=v.shape[0])
        n = n.astype(np.float32)
    else:
        raise ValueError(f"weighting must be 'mean' or 'area', got {weighting!r}")
    return _normalize(n) if normalize else n


@numba.njit(cache=True)
def _neighbour_covariances(coord: np.ndarray, idx: np.ndarray, n_valid: int) -> np.ndarray:
    """(N, 3, 3) float64 covariance of each point's neighbours ``idx`` (N, k); indices ``>= n_valid``
    (cKDTree's "missing" marker) are ignored."""
    n, k = idx.shape
    cov = np.zeros((n, 3, 3), dtype=np.float64)
    for i in range(n):
        m = 0
        sx = 0.0
        sy = 0.0
        sz = 0.0
        for j in range(k):
            q = idx[i, j]
            if q < n_valid:
                m += 1
                sx += coord[q, 0]
                sy += coord[q, 1]
                sz += coord[q, 2]
        if m < 3:
            continue
        mx = sx / m
        my = sy / m
        mz = sz / m
        cxx = cxy = cxz = cyy = cyz = czz = 0.0
        for j in range(k):
            q = idx[i, j]
            if q < n_valid:
                dx = coord[q, 0] - mx
                dy = coord[q, 1] - my
                dz = coord[q, 2] - mz
                cxx += dx * dx
                cxy += dx * dy
                cxz += dx * dz
                cyy += dy * dy
                cyz += dy * dz
                czz += dz * dz
        cov[i, 0, 0] = cxx / m
        cov[i, 0, 1] = cxy / m
        cov[i, 0, 2] = cxz / m
        cov[i, 1, 0] = cxy / m
        cov[i, 1, 1] = cyy / m
        cov[i, 1, 2] = cyz / m
        cov[i, 2, 0] = cxz / m
        cov[i, 2, 1] = cyz / m
        cov[i, 2, 2] = czz / m
    return cov


def pca_normals(coord: np.ndarray, neighbors: np.ndarray,
                viewpoint: np.ndarray | None = None) -> np.ndarray:
    """PCA normals from a precomputed neighbour table.

    Args:
        coord: ``(N, 3)`` float, metres.
        neighbors: ``(N, k)`` int indices into ``coord`` (the point itself may be included);
            entries ``>= N`` are treated as missing (as cKDTree returns them beyond a radius).
        viewpoint: ``(3,)`` metres or ``None``; see :func:`estimate_normals` for orientation.

    Returns:
        ``(N, 3)`` float32 unit normals: the eigenvector of the smallest eigenvalue of the
        neighbourhood covariance. Points with fewer than 3 valid neighbours get ``(0, 0, 1)``.
    """
    c = np.ascontiguousarray(coord, dtype=np.float64)
    idx = np.ascontiguousarray(neighbors, dtype=np.int64)
    cov = _neighbour_covariances(c, idx, c.shape[0])
    _, vecs = np.linalg.eigh(cov)
    normal = vecs[:, :, 0]
    degenerate = (np.abs(cov).sum(axis=(1, 2)) == 0)
    normal[degenerate] = (0.0, 0.0, 1.0)
    if viewpoint is not None:
        ref = np.asarray(viewpoint, dtype=np.float64).reshape(1, 3) - c  # toward the viewpoint
    else:
        ref = c - c.mean(axis=0, keepdims=True)  # away from the centroid
    flip = np.einsum("ij,ij->i", normal, ref) < 0
    normal[flip] *= -1.0
    return normal.astype(np.float32)


def knn(coord: np.ndarray, k: int, radius: float | None = None) -> np.ndarray:
    """``(N, k)`` int64 indices of the k nearest neighbours of every point (itself first, ties in
    cKDTree order); with ``radius`` neighbours farther than it are replaced by ``N``."""
    c = np.asarray(coord, dtype=np.float64)
    k = int(min(k, c.shape[0]))
    tree = cKDTree(c)
    kwargs = {} if radius is None else {"distance_upper_bound": float(radius)}
    _, idx = tree.query(c, k=k, workers=-1, **kwargs)
    return np.asarray(idx, dtype=np.int64).reshape(c.shape[0], k)


def estimate_normals(coord: np.ndarray, k: int = 16, radius: float | None = None,
                     viewpoint: np.ndarray | None = None) -> np.ndarray:
    """PCA normals of a point cloud.

    The normal of a point is the eigenvector of the smallest eigenvalue of the covariance of its
    ``k`` nearest neighbours (itself included; with ``radius`` only those within ``radius``
    metres -- Open3D's "hybrid" search). Sign: toward ``viewpoint`` (e.g. the sensor position)
    when given, otherwise pointing away from the cloud's centroid -- right for objects; for an
    indoor room seen from inside pass the sensor position or ``coord.mean(0)`` as ``viewpoint``.

    Args:
        coord: ``(N, 3)`` float, metres.
        k: neighbourhood size (including the point).
        radius: optional maximum neighbour distance, metres.
        viewpoint: optional ``(3,)`` position the normals should face, metres.

    Returns:
        ``(N, 3)`` float32 unit normals; ``(0, 0, 1)`` where fewer than 3 neighbours were found.
    """
    c = np.asarray(coord)
    if c.ndim != 2 or c.shape[1] != 3:
        raise DataError("<points>", f"coord must have shape (N, 3), got {c.shape}")
    if c.shape[0] == 0:
        return np.zeros((0, 3), dtype=np.float32)
    return pca_normals(c, knn(c, k, radius), viewpoint)
