"""MSC cross masks: patches of the union, disjoint views, exact ratio over patches, constant per patch."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d.data.masking import CrossMaskConfig, cross_masks, patch_index


def test_patch_index_hand_example():
    coord1 = np.array([[0.01, 0.01, 0.01], [0.15, 0.0, 0.0], [0.19, 0.09, 0.05]])
    coord2 = np.array([[0.05, 0.09, 0.02], [-0.01, 0.0, 0.0], [0.35, 0.0, 0.0]])
    p1, p2, num = patch_index(coord1, coord2, grid_size=0.1)
    # cells: (0,0,0) (1,0,0) (1,0,0) | (0,0,0) (-1,0,0) (3,0,0) -> 4 patches, ids in sorted cell order
    assert num == 4
    assert p1.tolist() == [1, 2, 2] and p2.tolist() == [1, 0, 3]
    # A coarser grid merges them; scenes keep identical cells apart.
    assert patch_index(coord1, coord2, grid_size=1.0)[2] == 2     # cells 0 and -1 along x
    _, _, per_scene = patch_index(coord1, coord1, 0.1, batch1=np.array([0, 0, 1]), batch2=np.array([1, 1, 1]))
    assert per_scene == 4                                         # (s0,c0) (s0,c1) (s1,c1) (s1,c0)


def _overlapping_views(seed: int = 0, n: int = 3000):
    rng = np.random.default_rng(seed)
    coord1 = rng.uniform([0.0, 0.0, 0.0], [1.2, 0.8, 0.3], size=(n, 3))
    coord2 = rng.uniform([0.5, 0.0, 0.0], [1.7, 0.8, 0.3], size=(n, 3))
    return coord1, coord2


def test_masks_disjoint_and_constant_within_patch():
    coord1, coord2 = _overlapping_views()
    m1, m2 = cross_masks(coord1, coord2, rng=np.random.default_rng(1))
    p1, p2, num = patch_index(coord1, coord2)
    masked1, masked2 = set(p1[m1].tolist()), set(p2[m2].tolist())
    assert masked1 and masked2 and not masked1 & masked2
    # constant within a patch: every patch holds only masked or only unmasked points of a view
    assert not masked1 & set(p1[~m1].tolist())
    assert not masked2 & set(p2[~m2].tolist())
    # the views overlap, so some patches hold points of both views (the disjointness above is not vacuous)
    assert np.intersect1d(p1, p2).size > 10
    assert len(masked1) <= int(num * 0.4) and len(masked2) <= int(num * 0.4)


@pytest.mark.parametrize("ratio", [0.4, 0.5, 0.1, 0.0])
def test_exact_ratio_over_patches(ratio):
    # Both views hold a point in every patch, so every chosen patch is visible in the masks.
    rng = np.random.default_rng(4)
    cells = np.stack(np.meshgrid(np.arange(7), np.arange(5), np.arange(3), indexing="ij"), -1).reshape(-1, 3)
    coord1 = (cells + rng.uniform(0.05, 0.95, cells.shape)) * 0.1
    coord2 = np.concatenate([(cells + rng.uniform(0.05, 0.95, cells.shape)) * 0.1] * 2)  # 2 points per patch
    m1, m2 = cross_masks(coord1, coord2, rng=np.random.default_rng(9), mask_ratio=ratio)
    num = cells.shape[0]
    n_mask = int(num * ratio)
    assert m1.sum() == n_mask                  # one view-1 point per patch
    assert m2.sum() == 2 * n_mask
    p1, p2, _ = patch_index(coord1, coord2)
    assert len(set(p2[m2].tolist())) == n_mask
    assert not set(p1[m1].tolist()) & set(p2[m2].tolist())
    if ratio == 0.5:                           # 105 patches: 52 + 52 masked, one visible in both
        assert len(set(p1[m1].tolist()) | set(p2[m2].tolist())) == num - 1


def test_seeded_and_uniform_over_patches():
    coord1, coord2 = _overlapping_views(2, n=800)
    a = cross_masks(coord1, coord2, rng=np.random.default_rng(5))
    b = cross_masks(coord1, coord2, rng=np.random.default_rng(5))
    c = cross_masks(coord1, coord2, rng=np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # Each patch is masked in view 1 with probability ~ mask_ratio.
    p1, _, _ = patch_index(coord1, coord2)
    first = np.unique(p1, return_index=True)[1]
    freq = np.mean([cross_masks(coord1, coord2, rng=np.random.default_rng(s))[0][first] for s in range(300)], axis=0)
    assert abs(freq.mean() - 0.4) < 0.02 and freq.min() > 0.25 and freq.max() < 0.55


def test_batched_scenes_and_errors():
    coord1, coord2 = _overlapping_views(3, n=400)
    b1 = np.repeat([0, 1], 200)
    b2 = np.repeat([0, 1], 200)
    m1, m2 = cross_masks(coord1, coord2, rng=np.random.default_rng(0), batch1=b1, batch2=b2)
    assert m1.shape == (400,) and m2.shape == (400,) and m1.dtype == bool
    cfg = CrossMaskConfig()
    assert (cfg.grid_size, cfg.mask_ratio) == (0.1, 0.4)
    with pytest.raises(ValueError):
        cross_masks(coord1, coord2, rng=np.random.default_rng(0), mask_ratio=0.6)
    with pytest.raises(ValueError):
        patch_index(coord1[:, :2], coord2)
    bad = coord1.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        patch_index(bad, coord2)
    e1, e2 = cross_masks(np.zeros((0, 3)), np.zeros((0, 3)), rng=np.random.default_rng(0))
    assert e1.shape == (0,) and e2.shape == (0,)
