"""Rasteriser: analytic depth of planes and a cube; triangle ids consistent with depth; noise."""
from __future__ import annotations

import time

import numpy as np

from contrast3d.simulate.meshbuilder import box, grid_patch
from contrast3d.simulate.raster import pixel_rays, rasterize
from contrast3d.simulate.render import Renderer, intrinsics
from contrast3d.simulate.scene import generate_scene
from contrast3d.simulate.sensor import DepthNoise, depth_sigma, noisy_depth
from contrast3d.simulate.trajectory import camera_trajectory

W, H = 80, 60
K = intrinsics(W, H, 70.0)


def test_fronto_parallel_plane_exact_depth():
    v, f, _ = grid_patch([-10, -10, 2.0], [20, 0, 0], [0, 20, 0], 5.0)
    r = rasterize(v, f, np.eye(4), K, W, H)
    assert (r.tri >= 0).all()
    np.testing.assert_allclose(r.depth, 2.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.points[..., 2], 2.0, atol=1e-6)


def test_tilted_plane_and_near_clipping():
    # floor 1 m below the camera (OpenCV: y down), extending behind the camera
    v, f, _ = grid_patch([-20, 1.0, -5.0], [0, 0, 25.0], [40, 0, 0], 50.0)
    r = rasterize(v, f, np.eye(4), K, W, H, near=0.05)
    rays = pixel_rays(K, W, H)
    expect = np.where(rays[..., 1] > 1.0 / 20.0, 1.0 / np.maximum(rays[..., 1], 1e-9), 0.0)
    inside = expect > 0
    np.testing.assert_allclose(r.depth[inside], expect[inside], rtol=1e-5)
    assert (r.tri[rays[..., 1] <= 0] == -1).all()


def test_cube_depth_and_silhouette():
    v, f, _ = box([1.0, 1.0, 1.0], 0.25)
    pose = np.eye(4)
    pose[:3, 3] = [0, 0, -3.0]  # camera 3 m in front of the cube centre, looking +z
    r = rasterize(v, f, pose, K, W, H)
    rays = pixel_rays(K, W, H)
    front = (np.abs(rays[..., 0]) * 2.5 < 0.5 - 1e-3) & (np.abs(rays[..., 1]) * 2.5 < 0.5 - 1e-3)
    outside = (np.abs(rays[..., 0]) * 2.5 > 0.5 + 1e-3) | (np.abs(rays[..., 1]) * 2.5 > 0.5 + 1e-3)
    assert front.sum() > 50
    np.testing.assert_allclose(r.depth[front], 2.5, atol=1e-6)
    assert (r.depth[outside] == 0).all() and (r.tri[outside] == -1).all()


def test_triangle_ids_consistent_with_depth():
    sc = generate_scene(1)
    poses = camera_trajectory(sc.plan, sc.objects, 3, np.random.default_rng(0))
    m = sc.mesh
    v = m.vertices.astype(np.float64)
    for pose in poses:
        r = rasterize(m.vertices, m.faces, pose, K, W, H)
        hit = r.tri >= 0
        assert hit.mean() > 0.5  # windows show the sky (no surface)
        pc = pixel_rays(K, W, H)[hit] * r.depth[hit, None].astype(np.float64)
        pw = pc @ pose[:3, :3].T + pose[:3, 3]
        tri = m.faces[r.tri[hit]]
        a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
        n = np.cross(b - a, c - a)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        dist = np.abs(((pw - a) * n).sum(1))
        assert np.quantile(dist, 0.999) < 1e-4 and dist.max() < 2e-3
        bary = r.bary[hit]
        assert bary.min() > -1e-2 and bary.max() < 1 + 1e-2
        recon = (v[tri] * bary[:, :, None]).sum(1)
        assert np.quantile(np.linalg.norm(recon - pw, axis=1), 0.999) < 1e-3


def test_depth_noise_model():
    rng = np.random.default_rng(0)
    z = np.linspace(0.2, 6.0, 240 * 320).reshape(240, 320)
    cos = np.ones_like(z)
    cos[:, :10] = 0.1  # grazing
    p = DepthNoise(blobs=0, pixel_drop=0.0)
    d = noisy_depth(z, cos, rng, p)
    assert (d[:, :10] == 0).all()
    assert (d[z > p.max_range] == 0).all() and (d[z < p.min_range] == 0).all()
    assert np.allclose(d * 1000, np.round(d * 1000), atol=1e-3)
    ok = d > 0
    err = (d - z)[ok]
    assert np.abs(err).max() < 6 * depth_sigma(6.0) + 5e-4
    far = ok & (z > 3.5) & (z < 4.5)
    assert 0.5 * depth_sigma(4.0) < np.std((d - z)[far]) < 1.5 * depth_sigma(4.0)


def test_frame_determinism_and_timing(capsys):
    sc = generate_scene(3)
    poses = camera_trajectory(sc.plan, sc.objects, 4, np.random.default_rng(0))
    ren = Renderer(sc.mesh, sc.lights, 320, 240)
    a = ren.render(poses[1], np.random.default_rng(5))
    b = ren.render(poses[1], np.random.default_rng(5))
    np.testing.assert_array_equal(a.color, b.color)
    np.testing.assert_array_equal(a.depth, b.depth)
    c = ren.render(poses[1], np.random.default_rng(6))
    assert not np.array_equal(a.depth, c.depth)
    start = time.perf_counter()
    for p in poses:
        ren.render(p, np.random.default_rng(0))
    per = (time.perf_counter() - start) / len(poses)
    with capsys.disabled():
        print(f"\n[simulate] render 320x240, {sc.mesh.num_faces} faces: {per * 1000:.0f} ms/frame")
    assert per < 2.0
    assert a.color.dtype == np.uint8 and a.color.shape == (240, 240 + 80, 3)
    valid = a.depth > 0
    assert 0.5 < valid.mean() < 1.0
    clean = a.depth_clean[valid].astype(np.float64)
    assert (np.abs(a.depth[valid] - clean) < 6 * depth_sigma(clean) + 1e-3).all()
