"""Correspondence precision of FramePairDataset matches on simulated scenes with known geometry.

The simulator's ``render/<i>.npz`` holds, per pixel, the visible triangle and the exact
(noise-free) depth. A frame cloud point is a back-projected pixel, so projecting it with the
frame's pose and intrinsics recovers its pixel exactly; from that pixel the true surface point
(exact depth) and triangle follow. A match is TRUE when the two true surface points are within
the matching radius (the pair would be matched on noise-free geometry too) -- the matches are
made on the noisy sensor depth.
"""
from __future__ import annotations

import numpy as np
import pytest

simulate = pytest.importorskip("contrast3d.simulate", reason="contrast3d.simulate (the scene simulator) "
                                                             "is not importable yet")

from contrast3d.data.frame_dataset import FramePairDataset, prepare_scene  # noqa: E402
from contrast3d.io.ply import read_ply_mesh  # noqa: E402
from contrast3d.structures import PointCloud  # noqa: E402

VOXEL = 0.025
RADIUS = 1.5 * VOXEL


def true_surface(view: PointCloud, scene_dir, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free world point ``(N, 3)`` and triangle id ``(N,)`` of every point of a frame cloud."""
    pose = np.asarray(view.meta["pose"], np.float64)
    cam = (view.coord.astype(np.float64) - pose[:3, 3]) @ pose[:3, :3]
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    ui, vi = np.round(u).astype(np.int64), np.round(v).astype(np.int64)
    assert max(np.abs(u - ui).max(), np.abs(v - vi).max()) < 0.01  # points sit on pixel centres
    with np.load(scene_dir / "render" / f"{view.meta['frame']}.npz") as z:
        tri, depth = z["tri"][vi, ui], z["depth"][vi, ui].astype(np.float64)
    assert (tri >= 0).all() and (depth > 0).all()
    ray = np.stack([(ui - K[0, 2]) / K[0, 0], (vi - K[1, 2]) / K[1, 1], np.ones(len(ui))], axis=1)
    return (ray * depth[:, None]) @ pose[:3, :3].T + pose[:3, 3], tri


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("corr")
    sim = simulate.simulate_scene(1, root / "sim", n_frames=16, width=320, height=240)
    out = root / "prepared"
    info = prepare_scene(sim, out, voxel_size=VOXEL, depth_trunc=4.0, frame_skip=2, segments=False)
    assert len(info["frames"]) == 8 and info["num_pairs"] >= 10
    return sim, out


@pytest.mark.parametrize("mutual", [False, True])
def test_matches_are_true_correspondences(prepared, mutual):
    sim, out = prepared
    K = np.loadtxt(sim / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
    mesh = read_ply_mesh(sim / f"{sim.name}_mesh.ply")
    face_instance = mesh.vertex_instance[mesh.faces[:, 0]]
    face_label = mesh.vertex_segment[mesh.faces[:, 0]]
    ds = FramePairDataset([out], match_radius=RADIUS, mutual=mutual)
    total = within_radius = within_voxel = same_object = 0
    for pair in ds:
        m = pair.matches
        p1, t1 = true_surface(pair.view1, sim, K)
        p2, t2 = true_surface(pair.view2, sim, K)
        d = np.linalg.norm(p1[m[:, 0]] - p2[m[:, 1]], axis=1)
        a, b = t1[m[:, 0]], t2[m[:, 1]]
        total += len(m)
        within_radius += int((d <= RADIUS).sum())
        within_voxel += int((d <= VOXEL).sum())
        same_object += int(((face_instance[a] == face_instance[b]) & (face_label[a] == face_label[b])).sum())
    assert total > 50_000
    precision = within_radius / total
    print(f"mutual={mutual}: {total} matches in {len(ds)} pairs; true within {RADIUS * 100:.2f} cm: "
          f"{precision:.4f}, within 1 voxel: {within_voxel / total:.4f}, same object: {same_object / total:.4f}")
    assert precision >= 0.95
    assert same_object / total >= 0.95
    if mutual:  # mutual nearest neighbours: also within one voxel
        assert within_voxel / total >= 0.95
