"""Pair mining (exact vs KD-tree reference), matching, prepared scenes and the pair dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.spatial.distance import cdist

from contrast3d.data.frame_dataset import (
    FramePairDataset,
    load_frame_cloud,
    prepare_scene,
)
from contrast3d.data.pairs import (
    find_matches,
    load_pairs,
    mine_pairs,
    mine_pairs_reference,
    overlap_matrix,
    save_pairs,
)
from contrast3d.data.views import kept_index
from contrast3d.errors import DataError
from contrast3d.structures import PointCloud


def _frames(n: int, seed: int = 0, pts: int = 600) -> list[np.ndarray]:
    """Windows of a noisy wavy surface, sliding so that overlaps span 0..1 (many near 0.3)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x0 = rng.uniform(0, 4)
        xy = rng.uniform([x0, 0], [x0 + 1.0, 1.0], (pts, 2))
        z = 0.1 * np.sin(3 * xy[:, 0]) + rng.normal(0, 0.01, pts)
        out.append(np.column_stack([xy, z]).astype(np.float32))
    return out


def _brute_overlap(coords, r):
    n = len(coords)
    ov = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j and len(coords[i]) and len(coords[j]):
                ov[i, j] = (cdist(coords[i].astype(np.float64), coords[j].astype(np.float64)).min(1) <= r).mean()
    return np.maximum(ov, ov.T)


def test_mine_pairs_equals_reference():
    coords = _frames(30)
    fast = mine_pairs(coords)
    ref = mine_pairs_reference(coords)
    assert 0 < len(ref) < 30 * 29 // 2
    np.testing.assert_array_equal(fast[:, :2], ref[:, :2])
    np.testing.assert_allclose(fast[:, 2], ref[:, 2], rtol=0, atol=1e-12)
    # there are pairs on both sides of the threshold, close to it
    ov = overlap_matrix(coords, 0.075)[np.triu_indices(30, 1)]
    assert ((ov > 0.2) & (ov < 0.3)).any() and ((ov >= 0.3) & (ov < 0.4)).any()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.floats(0.02, 0.3))
def test_overlap_matrix_matches_brute_force(seed, n, radius):
    rng = np.random.default_rng(seed)
    coords = [rng.uniform(0, 1, (int(rng.integers(0, 60)), 3)).astype(np.float32) for _ in range(n)]
    np.testing.assert_allclose(overlap_matrix(coords, radius), _brute_overlap(coords, radius), atol=1e-12)


def test_radius_is_inclusive_and_exact_near_boundary():
    r = 0.075
    a = np.zeros((1, 3), np.float32)
    b_in = np.array([[r * (1 - 1e-6), 0, 0]], np.float32)
    b_out = np.array([[r * (1 + 1e-6), 0, 0]], np.float32)
    assert overlap_matrix([a, b_in], r)[0, 1] == 1.0
    assert overlap_matrix([a, b_out], r)[0, 1] == 0.0


def test_find_matches_one_way_and_mutual():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (300, 3))
    b = a[::2] + rng.normal(0, 0.005, (150, 3))
    m = find_matches(a, b, 0.03)
    d = cdist(a, b)
    ok = d.min(1) <= 0.03
    np.testing.assert_array_equal(m[:, 0], np.nonzero(ok)[0])
    np.testing.assert_array_equal(m[:, 1], d.argmin(1)[ok])
    mm = find_matches(a, b, 0.03, mutual=True)
    assert set(map(tuple, mm)) <= set(map(tuple, m))
    assert (d.argmin(0)[mm[:, 1]] == mm[:, 0]).all() and len(mm) >= 140
    assert find_matches(a, b[:0], 0.1).shape == (0, 2)


def test_pairs_file_round_trip(tmp_path):
    pairs = np.array([[0, 2, 0.5], [1, 2, 0.31]])
    save_pairs(tmp_path / "pairs.txt", pairs, ["a", "b", "c"])
    assert load_pairs(tmp_path) == [("a", "c", 0.5), ("b", "c", 0.31)]
    (tmp_path / "pairs.txt").write_text("a c\n")
    with pytest.raises(DataError, match="pairs.txt"):
        load_pairs(tmp_path)


def test_real_7scenes_pairs_match_reference(shared_data):
    from contrast3d.data.rgbd import frame_to_cloud
    from contrast3d.io.frames import open_frame_folder
    path = shared_data / "7scenes_chess_60frames"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    seq = open_frame_folder(path, load_color=False)
    coords = [frame_to_cloud(seq[i], voxel_size=0.05).coord for i in range(0, 60, 7)]
    np.testing.assert_array_equal(mine_pairs(coords, min_overlap=0.95), mine_pairs_reference(coords, min_overlap=0.95))


# ----------------------------------------------------------------------------- prepared scenes
def _write_7scenes(root, n=4):
    """A box corner seen by cameras sliding along x (depth rendered analytically: wall at z=2)."""
    root.mkdir(parents=True)
    k = np.array([[40.0, 0, 19.5], [0, 40.0, 14.5], [0, 0, 1]])
    np.savetxt(root / "camera-intrinsics.txt", k)
    u = np.mgrid[0:30, 0:40][1]
    for i in range(n):
        depth = 2.0 + 0.2 * np.sin(u / 5.0 + 0.8 * i)  # depth varies; the same wall shifts with camera
        pose = np.eye(4)
        pose[0, 3] = 0.4 * i
        Image.fromarray((depth * 1000).astype(np.uint16)).save(root / f"frame-{i:06d}.depth.png")
        Image.fromarray(np.full((30, 40, 3), 40 * i, np.uint8)).save(root / f"frame-{i:06d}.color.jpg")
        np.savetxt(root / f"frame-{i:06d}.pose.txt", pose)
    return root


@pytest.fixture()
def scene(tmp_path):
    out = tmp_path / "prepared"
    info = prepare_scene(_write_7scenes(tmp_path / "raw"), out, voxel_size=0.02)
    return out, info


def test_prepare_scene_layout(scene):
    out, info = scene
    assert json.loads((out / "scene.json").read_text())["frames"] == info["frames"]
    assert len(info["frames"]) == 4 and min(p.name for p in (out / "frames").iterdir()) == "frame-000000.npz"
    pairs = load_pairs(out)
    assert ("frame-000000", "frame-000001", pytest.approx(pairs[0][2])) == pairs[0] and pairs[0][2] >= 0.3
    assert all(ov >= 0.3 for _, _, ov in pairs)


def test_dataset_yields_matched_world_pairs(scene):
    out, _ = scene
    ds = FramePairDataset([out], match_radius=0.03)
    assert len(ds) >= 1
    pair = ds[0]
    assert len(pair.matches) > 50
    d = np.linalg.norm(pair.view1.coord[pair.matches[:, 0]] - pair.view2.coord[pair.matches[:, 1]], axis=1)
    assert d.max() <= 0.03 + 1e-6


def test_dataset_transform_remaps_and_is_seeded(scene):
    out, _ = scene
    from contrast3d.data.voxelize import GridSample

    def transform(cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        out = GridSample(0.05)(cloud, rng)
        out.coord = out.coord + rng.normal(0, 1, 3).astype(np.float32)  # a rigid shift per view
        return out

    plain = FramePairDataset([out], match_radius=0.03)[0]
    ds = FramePairDataset([out], transform=transform, match_radius=0.03)
    a, b = ds.get_sample(0, np.random.default_rng(3)), ds.get_sample(0, np.random.default_rng(3))
    np.testing.assert_array_equal(a.matches, b.matches)
    assert 0 < len(a.matches) <= len(a.view1)
    # matches are nearest neighbours within the radius among the KEPT points' world coordinates
    from scipy.spatial import cKDTree
    s1, s2 = a.view1.meta["sample_index"], a.view2.meta["sample_index"]
    raw1, raw2 = load_frame_cloud(out / "frames" / f"{a.meta['frames'][0]}.npz"), \
        load_frame_cloud(out / "frames" / f"{a.meta['frames'][1]}.npz")
    w1, w2 = raw1.coord[s1], raw2.coord[s2]
    d = np.linalg.norm(w1[a.matches[:, 0]] - w2[a.matches[:, 1]], axis=1)
    assert d.max() <= 0.03 + 1e-6
    dist, nn = cKDTree(w2).query(w1)
    expected = np.flatnonzero(dist <= 0.03)
    np.testing.assert_array_equal(a.matches[:, 0], expected)
    np.testing.assert_array_equal(a.matches[:, 1], nn[expected])
    # the views were shifted differently, so augmented coordinates alone would not match
    assert len(plain.matches) > 0
    # another generator (the engine's per-(seed, epoch, index) one) gives another augmentation
    assert not np.array_equal(ds.get_sample(0, np.random.default_rng(4)).view1.coord, a.view1.coord)


def test_kept_index_traces_points():
    view = PointCloud(coord=np.zeros((2, 3), np.float32), meta={"sample_index": np.array([2, 0])})
    np.testing.assert_array_equal(kept_index(view, 3), [2, 0])
    np.testing.assert_array_equal(kept_index(PointCloud(coord=np.zeros((3, 3), np.float32)), 3), [0, 1, 2])
    with pytest.raises(ValueError):
        kept_index(PointCloud(coord=np.zeros((2, 3), np.float32)), 3)


def test_bad_scene_raises_or_is_skipped(scene, tmp_path):
    out, _ = scene
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(DataError, match="scene.json"):
        FramePairDataset([bad])
    with pytest.warns(UserWarning):
        ds = FramePairDataset([bad, out], on_error="skip")
    assert len(ds.skipped) == 1 and len(ds) == len(load_pairs(out))
    (out / "frames" / "frame-000001.npz").unlink()
    with pytest.raises(DataError, match="missing"):
        FramePairDataset([out])
