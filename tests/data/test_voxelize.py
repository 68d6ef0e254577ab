"""Voxelisation: ``voxelize``, hashes and ``GridSample`` train/test modes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from contrast3d.data.transforms import Compose, RandomRotate, SphereCrop
from contrast3d.data.voxelize import GridSample, fnv_hash, grid_coordinates, group_voxels, ravel_hash, voxelize
from contrast3d.structures import PointCloud


def make_cloud(rng: np.random.Generator, n: int = 400, extent: float = 2.0) -> PointCloud:
    coord = (rng.random((n, 3)) * extent - extent / 2).astype(np.float32)
    return PointCloud(coord=coord, color=rng.random((n, 3)).astype(np.float32),
                      segment=rng.integers(0, 5, n), meta={"name": "scene"})


def check_voxelize(coord: np.ndarray, grid: float | np.ndarray, hash: str) -> None:
    """All documented invariants of ``voxelize`` against a brute-force reference."""
    gc, uidx, inv, counts = voxelize(coord, grid, hash=hash)
    n = len(coord)
    absolute = np.floor(coord.astype(np.float64) / np.broadcast_to(grid, (3,))).astype(np.int64)
    ref = absolute - absolute.min(0)
    assert gc.dtype == uidx.dtype == inv.dtype == counts.dtype == np.int64
    assert inv.shape == (n,) and gc.shape == (len(uidx), 3) and counts.shape == uidx.shape
    np.testing.assert_array_equal(gc[inv], ref)                   # every point maps to its own voxel
    assert (gc >= 0).all() and (gc.min(0) == 0).all()
    assert len(np.unique(gc, axis=0)) == len(gc)                  # voxels are distinct
    assert len(gc) == len(np.unique(ref, axis=0))                 # ... and all occupied voxels appear
    np.testing.assert_array_equal(counts, np.bincount(inv, minlength=len(gc)))
    np.testing.assert_array_equal(inv[uidx], np.arange(len(gc)))
    first = np.full(len(gc), n)
    np.minimum.at(first, inv, np.arange(n))
    np.testing.assert_array_equal(uidx, first)                    # lowest input index per voxel


def test_voxelize_small_hand_example():
    coord = np.array([[0.01, 0, 0], [0.04, 0, 0], [0.06, 0, 0], [-0.01, 0.0, 0.12]], np.float32)
    gc, uidx, inv, counts = voxelize(coord, 0.05)
    # absolute voxels: (0,0,0), (0,0,0), (1,0,0), (-1,0,2) -> shifted by (-1,0,0)
    np.testing.assert_array_equal(gc, [[0, 0, 2], [1, 0, 0], [2, 0, 0]])  # lexicographic order
    np.testing.assert_array_equal(uidx, [3, 0, 2])
    np.testing.assert_array_equal(inv, [1, 1, 2, 0])
    np.testing.assert_array_equal(counts, [1, 2, 1])


@pytest.mark.parametrize("hash", ["ravel", "fnv"])
def test_voxelize_invariants_dense(hash):
    rng = np.random.default_rng(0)
    coord = (rng.random((3000, 3)) * 1.0 - 0.3).astype(np.float32)
    check_voxelize(coord, 0.1, hash)
    check_voxelize(coord, np.array([0.1, 0.2, 0.05]), hash)


def test_hashes_give_same_partition():
    rng = np.random.default_rng(1)
    gc, _ = grid_coordinates(rng.normal(size=(2000, 3)), 0.2)
    ref = np.unique(gc, axis=0, return_inverse=True)[1].ravel()
    for h in ("ravel", "fnv"):
        order, starts, counts = group_voxels(gc, h)
        label = np.empty(len(gc), np.int64)
        label[order] = np.repeat(np.arange(len(starts)), counts)
        # same partition: the (label, ref) pairs are in one-to-one correspondence
        n_pairs = len(np.unique(np.stack([label, ref], 1), axis=0))
        assert n_pairs == len(starts) == ref.max() + 1
    assert fnv_hash(gc).dtype == np.uint64


def test_ravel_overflow_falls_back_to_exact_sort():
    coord = np.array([[0, 0, 0], [1e5, 1e5, 1e5], [1e5, 1e5, 1e5], [-1e5, 3, 1e5]], np.float64)
    gc, _ = grid_coordinates(coord, 1e-4)
    with pytest.raises(OverflowError):
        ravel_hash(gc)
    check_voxelize(coord, 1e-4, "ravel")


def test_bad_inputs():
    with pytest.raises(ValueError):
        voxelize(np.zeros((3, 3)), 0.0)
    with pytest.raises(ValueError):
        voxelize(np.array([[0, 0, np.nan]]), 0.1)
    with pytest.raises(ValueError):
        voxelize(np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError):
        GridSample(0.1, mode="eval")
    with pytest.raises(ValueError):
        GridSample(0.1)(make_cloud(np.random.default_rng(0), 5))  # train mode without rng


def check_train(cloud: PointCloud, out: PointCloud, grid: float) -> None:
    idx, inv = out.meta["sample_index"], out.meta["inverse"]
    assert idx.dtype == inv.dtype == np.int64 and out.grid_coord.dtype == np.int64
    assert len(np.unique(out.grid_coord, axis=0)) == len(out)          # one point per voxel
    np.testing.assert_array_equal(out.coord, cloud.coord[idx])
    ref_gc, grid_min = grid_coordinates(cloud.coord, grid)
    np.testing.assert_array_equal(out.meta["grid_min"], grid_min)
    # every kept point lies in its voxel [(g + grid_min) * grid, (g + grid_min + 1) * grid) ...
    # (checked as floor(coord / grid): subtracting would round e.g. -1e-42 / 0.01 + 1 to 1.0)
    absolute = np.floor(out.coord.astype(np.float64) / grid).astype(np.int64)
    np.testing.assert_array_equal(absolute, out.grid_coord + grid_min)
    # ... and inverse maps every input point to the kept point of the same voxel
    np.testing.assert_array_equal(out.grid_coord[inv], ref_gc)
    np.testing.assert_array_equal(inv[idx], np.arange(len(out)))
    assert len(out) == len(np.unique(ref_gc, axis=0))


def test_gridsample_train_invariants_and_labels():
    rng = np.random.default_rng(2)
    cloud = make_cloud(rng)
    out = GridSample(0.25)(cloud, np.random.default_rng(0))
    check_train(cloud, out, 0.25)
    lo = (out.grid_coord + out.meta["grid_min"]) * 0.25                 # voxel bounds in metres
    assert np.all(out.coord >= lo - 1e-6) and np.all(out.coord < lo + 0.25 + 1e-6)
    np.testing.assert_array_equal(out.segment, cloud.segment[out.meta["sample_index"]])
    np.testing.assert_array_equal(out.meta["origin_index"], out.meta["sample_index"])
    assert cloud.grid_coord is None and "inverse" not in cloud.meta     # input untouched


def test_gridsample_train_randomness():
    cloud = make_cloud(np.random.default_rng(3), n=600)
    gs = GridSample(0.5)
    a = gs(cloud, np.random.default_rng(7)).meta["sample_index"]
    b = gs(cloud, np.random.default_rng(7)).meta["sample_index"]
    c = gs(cloud, np.random.default_rng(8)).meta["sample_index"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # every point of a voxel gets picked sometimes (uniform choice inside the voxel)
    rng = np.random.default_rng(0)
    seen = np.zeros(len(cloud), bool)
    for _ in range(200):
        seen[gs(cloud, rng).meta["sample_index"]] = True
    assert seen.all()


def test_gridsample_test_mode_fragments_cover_every_point():
    cloud = make_cloud(np.random.default_rng(4), n=500)
    frags = GridSample(0.4, mode="test")(cloud)
    _, _, inverse, counts = voxelize(cloud.coord, 0.4)
    assert isinstance(frags, list) and len(frags) == counts.max()
    first = []
    for k, frag in enumerate(frags):
        check_train(cloud, frag, 0.4)
        assert frag.meta["fragment"] == k and frag.meta["num_fragments"] == len(frags)
        first.append(frag.meta["sample_index"][frag.meta["first_visit"]])
    first = np.concatenate(first)
    np.testing.assert_array_equal(np.sort(first), np.arange(len(cloud)))   # exactly once
    union = np.unique(np.concatenate([f.meta["sample_index"] for f in frags]))
    np.testing.assert_array_equal(union, np.arange(len(cloud)))


def test_compose_maps_over_test_fragments_and_tracks_origin():
    cloud = make_cloud(np.random.default_rng(5), n=800)
    pipeline = Compose([SphereCrop(point_max=300, mode="center"), GridSample(0.3, mode="test"),
                        RandomRotate(p=1.0)])
    frags = pipeline.apply(cloud, np.random.default_rng(0))
    assert isinstance(frags, list)
    with pytest.raises(TypeError, match="Compose.apply"):
        pipeline(cloud, np.random.default_rng(0))  # calling a Compose promises one cloud
    for frag in frags:
        origin = frag.meta["origin_index"]
        np.testing.assert_array_equal(frag.color, cloud.color[origin])
        assert "transform" in frag.meta and len(frag.meta["inverse"]) == 300


def test_empty_cloud():
    cloud = PointCloud(coord=np.zeros((0, 3), np.float32))
    gc, uidx, inv, counts = voxelize(cloud.coord, 0.1)
    assert gc.shape == (0, 3) and len(uidx) == len(inv) == len(counts) == 0
    assert len(GridSample(0.1)(cloud, np.random.default_rng(0))) == 0
    frags = GridSample(0.1, mode="test")(cloud)
    assert len(frags) == 1 and len(frags[0]) == 0


coords = st.integers(1, 60).flatmap(lambda n: arrays(np.float32, (n, 3), elements=st.floats(
    -1e6, 1e6, width=32, allow_nan=False)))


@settings(max_examples=60, deadline=None)
@given(coord=coords, dup=st.integers(0, 3), grid=st.sampled_from([0.01, 0.05, 1.0, 7.3]),
       hash=st.sampled_from(["ravel", "fnv"]), seed=st.integers(0, 2 ** 16))
def test_gridsample_property(coord, dup, grid, hash, seed):
    coord = np.concatenate([coord] * (dup + 1))                        # duplicated points
    check_voxelize(coord, grid, hash)
    cloud = PointCloud(coord=coord)
    check_train(cloud, GridSample(grid, hash=hash)(cloud, np.random.default_rng(seed)), grid)
    frags = GridSample(grid, mode="test", hash=hash)(cloud)
    assert len(frags) == voxelize(coord, grid)[3].max() >= dup + 1
    for frag in frags:
        assert len(np.unique(frag.grid_coord, axis=0)) == len(frag) == len(frags[0])
    first = np.concatenate([f.meta["sample_index"][f.meta["first_visit"]] for f in frags])
    np.testing.assert_array_equal(np.sort(first), np.arange(len(coord)))
