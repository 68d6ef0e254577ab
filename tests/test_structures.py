"""Batches for every method: K-view samples, per-sample id shifts shared by all views of a sample,
images with a point->pixel index, and clear refusals of malformed samples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contrast3d.errors import DataError
from contrast3d.structures import MultiView, PointCloud, collate_points, collate_views, view_pair


def cloud(n: int, seed: int, superpoint=None, extra=None) -> PointCloud:
    rng = np.random.default_rng(seed)
    c = PointCloud(coord=rng.random((n, 3), dtype=np.float32), color=rng.random((n, 3), dtype=np.float32),
                   grid_coord=rng.integers(0, 10, (n, 3)), superpoint=superpoint, extra=dict(extra or {}))
    return c


def test_k_views_matches_and_shared_id_shifts():
    # sample 0: ids up to 4 in view 0, up to 6 in view 2; sample 1: ids up to 2
    s0 = MultiView([cloud(5, 0, np.array([0, 1, 4, -1, 4])), cloud(4, 1, np.array([1, 1, 0, 0])),
                    cloud(3, 2, np.array([6, -1, 0]))],
                   {(0, 1): np.array([[0, 1], [2, 3]]), (0, 2): np.array([[4, 0]]), (1, 2): np.array([[3, 2]])})
    s1 = MultiView([cloud(2, 3, np.array([2, 0])), cloud(3, 4, np.array([1, 2, -1])), cloud(2, 5, np.array([0, 0]))],
                   {(0, 1): np.array([[1, 2]])})
    b = collate_views([s0.validate(), s1.validate()], feat_keys=("color",))
    assert len(b.views) == 3 and b.batch_size == 2
    # sample 1's ids are shifted by 1 + max id of sample 0 over ALL its views (6 + 1 = 7) in every view
    assert b.views[0].superpoint.tolist() == [0, 1, 4, -1, 4, 9, 7]
    assert b.views[1].superpoint.tolist() == [1, 1, 0, 0, 8, 9, -1]
    assert b.views[2].superpoint.tolist() == [6, -1, 0, 7, 7]
    # match indices address the concatenated views; absent pairs contribute nothing
    assert b.pair_matches[(0, 1)].tolist() == [[0, 1], [2, 3], [6, 6]]
    assert b.pair_match_offset[(0, 1)].tolist() == [2, 3]
    assert b.pair_matches[(0, 2)].tolist() == [[4, 0]] and b.pair_match_offset[(0, 2)].tolist() == [1, 1]
    assert b.matches is b.pair_matches[(0, 1)] and b.view2 is b.views[1]
    moved = b.to("cpu")
    assert torch.equal(moved.pair_matches[(1, 2)], b.pair_matches[(1, 2)])


def test_images_and_pixel_index():
    img = np.zeros((3, 4, 5), np.float32)
    a = MultiView([cloud(3, 0)], image=img, pixels=np.array([[0, 1, 2], [2, 3, 4]]))
    b = MultiView([cloud(4, 1)], image=img + 1, pixels=np.array([[3, 0, 0]]))
    batch = collate_views([a.validate(), b.validate()], feat_keys=("color",))
    assert batch.images.shape == (2, 3, 4, 5) and float(batch.images[1].mean()) == 1.0
    assert batch.pixel_point.tolist() == [0, 2, 6]  # view-0 points of sample 1 start at 3
    assert batch.pixel_index.tolist() == [[0, 1, 2], [0, 3, 4], [1, 0, 0]]
    with pytest.raises(DataError, match="pixel index out of range"):
        MultiView([cloud(3, 0)], image=img, pixels=np.array([[0, 4, 0]])).validate()
    with pytest.raises(ValueError, match="every sample"):
        collate_views([a, MultiView([cloud(2, 2)])], feat_keys=("color",))


def test_collate_rejects_extra_that_is_not_per_point():
    good = cloud(4, 0, extra={"time": np.arange(4)})
    assert collate_points([good], ("color",)).extra["time"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="extra array 'pose'.*not one row per point"):
        collate_points([cloud(4, 0, extra={"pose": np.eye(4)[:3]})], ("color",))
    with pytest.raises(ValueError, match="extra array 'scale'"):
        collate_points([cloud(4, 0, extra={"scale": np.float32(2.0)})], ("color",))


def test_view_pair_validation_names_the_problem():
    pair = view_pair(cloud(3, 0), cloud(2, 1), np.array([[0, 2]]), {"name": "s"})
    with pytest.raises(DataError, match="s: match index out of range"):
        pair.validate()
    with pytest.raises(DataError, match="is not a pair i < j"):
        MultiView([cloud(3, 0), cloud(2, 1)], {(1, 0): np.zeros((0, 2), np.int64)}).validate()
