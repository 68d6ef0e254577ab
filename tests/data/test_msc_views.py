"""MSC-style two views of one scene: exact matches on original coordinates, segments restricted to
the overlap, per-view independent augmentation, seeded by the generator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.spatial import cKDTree

from contrast3d.data.msc_views import MSCViewConfig, MSCViewDataset
from contrast3d.data.scene_dataset import find_scene_dirs
from contrast3d.structures import collate_views


@pytest.fixture(scope="module")
def dataset(sim_scenes, tmp_path_factory):
    root = tmp_path_factory.mktemp("msc")
    shutil.copytree(sim_scenes / "pointcept", root / "pointcept")
    scenes = find_scene_dirs(root, "coord.npy")
    for d in scenes:  # segments: a coarse grid id per point stands in for the graph-cut superpoints
        cell = np.floor(np.load(d / "coord.npy")[:, :2] / 0.5).astype(np.int64)
        np.save(d / "superpoint.npy", cell[:, 0] * 100 + cell[:, 1])
    return MSCViewDataset(scenes, MSCViewConfig(grid_size=0.05))


def test_matches_are_nearest_neighbours_of_original_coordinates(dataset):
    views = dataset.get_sample(0, np.random.default_rng(0))
    raw = dataset.raw(0)
    w1 = raw.coord[views.view1.meta["origin_index"]]
    w2 = raw.coord[views.view2.meta["origin_index"]]
    dist, nn = cKDTree(w2).query(w1)
    expected = np.flatnonzero(dist <= dataset.cfg.match_radius)
    np.testing.assert_array_equal(views.matches[:, 0], expected)
    np.testing.assert_array_equal(views.matches[:, 1], nn[expected])
    assert 0 < len(expected) < len(w1)  # the 60 % crops overlap partially
    # each view is rotated/flipped on its own: augmented coordinates of matched points differ
    a, b = views.view1.coord[views.matches[:, 0]], views.view2.coord[views.matches[:, 1]]
    assert np.median(np.linalg.norm(a - b, axis=1)) > 0.1
    voxels = len(np.unique(np.floor(raw.coord / 0.05), axis=0))
    assert 0.4 < len(views.view1) / voxels < 0.8  # a 60 % crop of the voxelised scene


def test_segments_restricted_to_overlap_and_shared_ids_in_a_batch(dataset):
    views = dataset.get_sample(1, np.random.default_rng(3))
    for v, col in ((views.view1, 0), (views.view2, 1)):
        matched = np.zeros(len(v), bool)
        matched[views.matches[:, col]] = True
        assert (v.superpoint[~matched] == -1).all() and (v.superpoint[matched] >= 0).all()
    other = dataset.get_sample(0, np.random.default_rng(4))
    batch = collate_views([views, other], feat_keys=("color",))
    m = batch.matches
    s1, s2 = batch.view1.superpoint[m[:, 0]], batch.view2.superpoint[m[:, 1]]
    # matched points are in the overlap (ids kept) and in the same scene; scenes never share ids
    assert (s1 >= 0).all() and (s2 >= 0).all()
    scene1 = batch.view1.batch[m[:, 0]]
    assert (batch.view2.batch[m[:, 1]] == scene1).all()
    ids1 = set(batch.view1.superpoint[batch.view1.batch == 0].tolist()) - {-1}
    ids2 = set(batch.view1.superpoint[batch.view1.batch == 1].tolist()) - {-1}
    assert not ids1 & ids2


def test_seeded(dataset):
    a = dataset.get_sample(0, np.random.default_rng(7))
    b = dataset.get_sample(0, np.random.default_rng(7))
    c = dataset.get_sample(0, np.random.default_rng(8))
    np.testing.assert_array_equal(a.view1.coord, b.view1.coord)
    np.testing.assert_array_equal(a.matches, b.matches)
    assert a.view1.coord.shape != c.view1.coord.shape or not np.array_equal(a.view1.coord, c.view1.coord)


def test_pretraining_never_sees_held_out_scenes(tmp_path):
    from contrast3d.data.scene_dataset import pretraining_scene_dirs

    for split, names in (("train", ("a", "b")), ("val", ("c",)), ("test", ("d",))):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "coord.npy").write_bytes(b"")
    assert [d.name for d in pretraining_scene_dirs(tmp_path)] == ["a", "b"]
    assert sorted(d.name for d in pretraining_scene_dirs(tmp_path, include_held_out=True)) == ["a", "b", "c", "d"]
    assert [d.name for d in pretraining_scene_dirs(tmp_path / "train")] == ["a", "b"]
