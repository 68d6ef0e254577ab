"""Mesh vertex normals and PCA point normals."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d.data.normals import estimate_normals, knn, mesh_vertex_normals, pca_normals
from contrast3d.errors import DataError


def uv_sphere(n_lat=24, n_lon=48, r=2.0):
    """Closed UV sphere of radius r, faces counter-clockwise seen from outside."""
    th = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    v = np.c_[np.sin(t).ravel() * np.cos(p).ravel(), np.sin(t).ravel() * np.sin(p).ravel(), np.cos(t).ravel()]
    v = np.vstack([v, [0, 0, 1], [0, 0, -1]]) * r
    top, bot = len(v) - 2, len(v) - 1
    faces = []
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [(a, c, b), (b, c, d)]
    last = (n_lat - 2) * n_lon
    for j in range(n_lon):
        faces += [(top, j, (j + 1) % n_lon), (bot, last + (j + 1) % n_lon, last + j)]
    return v.astype(np.float32), np.array(faces, dtype=np.int64)


@pytest.mark.parametrize("weighting", ["mean", "area"])
def test_mesh_normals_sphere_and_plane(weighting):
    v, f = uv_sphere()
    n = mesh_vertex_normals(v, f, weighting=weighting)
    radial = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert n.dtype == np.float32 and n.shape == v.shape
    assert np.min(np.sum(n * radial, axis=1)) > 0.995
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    plane_v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [5, 5, 5]], np.float32)
    plane_f = np.array([[0, 1, 2], [2, 1, 3]])
    n = mesh_vertex_normals(plane_v, plane_f, weighting=weighting)
    np.testing.assert_allclose(n[:4], np.tile([0, 0, 1], (4, 1)), atol=1e-7)
    np.testing.assert_array_equal(n[4], 0)  # in no face


def test_mean_normals_are_scannet_running_mean():
    # one vertex shared by a face in +z and a face in +x: mean (0.5, 0, 0.5), not renormalised
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, -1], [0, 1, -1]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3], [3, 3, 4]])  # last face degenerate: skipped
    n = mesh_vertex_normals(v, f, weighting="mean", normalize=False)
    np.testing.assert_allclose(n[0], [-0.5, 0, 0.5], atol=1e-7)
    np.testing.assert_allclose(n[4], 0)
    # area weighting favours the big face
    v2 = v.copy()
    v2[1] *= 10
    v2[2] *= 1
    big = mesh_vertex_normals(v2, f[:2], weighting="area")
    assert big[0, 2] > 0.9
    with pytest.raises(ValueError):
        mesh_vertex_normals(v, f, weighting="angle")
    with pytest.raises(DataError):
        mesh_vertex_normals(v, f + 10)


def test_estimate_normals_plane_sphere_orientation():
    rng = np.random.default_rng(0)
    plane = np.c_[rng.random((3000, 2)) * 4, 0.001 * rng.standard_normal(3000) + 1.0].astype(np.float32)
    n = estimate_normals(plane, k=16, viewpoint=np.array([0, 0, 5.0]))
    assert n.dtype == np.float32 and np.min(n[:, 2]) > 0.95
    n = estimate_normals(plane, k=16, viewpoint=np.array([0, 0, -5.0]))
    assert np.max(n[:, 2]) < -0.95
    d = rng.standard_normal((5000, 3))
    sphere = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32) + np.float32(3.0)
    n = estimate_normals(sphere, k=20)  # default: away from the centroid = outward
    radial = sphere - 3.0
    assert np.min(np.sum(n * radial, axis=1)) > 0.97
    n = estimate_normals(sphere, k=20, viewpoint=np.array([3.0, 3.0, 3.0]))  # toward the centre
    assert np.max(np.sum(n * radial, axis=1)) < -0.97
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)


def test_radius_and_degenerate_neighbourhoods():
    pts = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0.1, 0.1, 0], [10, 10, 10]], np.float32)
    idx = knn(pts, 4, radius=0.5)
    assert idx[4, 0] == 4 and np.all(idx[4, 1:] == len(pts))  # isolated: only itself
    n = estimate_normals(pts, k=4, radius=0.5)
    np.testing.assert_allclose(np.abs(n[:4, 2]), 1, atol=1e-6)
    np.testing.assert_array_equal(n[4], [0, 0, 1])
    assert estimate_normals(np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(DataError):
        estimate_normals(np.zeros((4, 2)))


def test_pca_matches_per_point_reference():
    rng = np.random.default_rng(5)
    pts = rng.random((200, 3))
    idx = knn(pts, 8)
    n = pca_normals(pts, idx)
    for i in range(0, 200, 17):
        q = pts[idx[i]]
        w, vecs = np.linalg.eigh(np.cov(q.T, bias=True))
        ref = vecs[:, 0] * np.sign(vecs[:, 0] @ (pts[i] - pts.mean(0)))
        np.testing.assert_allclose(n[i], ref, atol=1e-5)
