"""Space-time voxelisation (``GridSample4D``) against a naive per-point reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from contrast3d.data.voxelize4d import GridSample4D, group_space_time, space_time_coordinates
from contrast3d.structures import PointCloud


def make_sequence_cloud(rng: np.random.Generator, frames: int = 3, n: int = 300, extent: float = 0.6) -> PointCloud:
    """``frames`` copies of overlapping random points (so static voxels repeat over time) plus noise points."""
    base = rng.random((n, 3)) * extent - 0.2
    coord = np.concatenate([base + rng.normal(0, 0.01, base.shape) for _ in range(frames)]).astype(np.float32)
    time = np.repeat(np.arange(frames), n)
    return PointCloud(coord=coord, segment=rng.integers(0, 4, len(coord)),
                      extra={"time": time, "label": np.arange(len(coord))}, meta={"name": "seq"})


def naive_voxels(coord: np.ndarray, time: np.ndarray, grid: float) -> tuple[dict, np.ndarray]:
    """``{(x, y, z, t): [point indices]}`` by a Python loop, and the spatial minimum voxel."""
    absolute = [tuple(math.floor(float(c) / grid) for c in p) for p in coord.astype(np.float64)]
    low = np.min(np.array(absolute), axis=0)
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for i, (a, t) in enumerate(zip(absolute, time)):
        key = (a[0] - int(low[0]), a[1] - int(low[1]), a[2] - int(low[2]), int(t))
        groups.setdefault(key, []).append(i)
    return groups, low


def check_against_naive(cloud: PointCloud, grid: float, out: PointCloud) -> None:
    groups, low = naive_voxels(cloud.coord, cloud.extra["time"], grid)
    keys = [tuple(int(v) for v in g) for g in out.grid_coord]
    assert out.grid_coord.shape == (len(groups), 4) and out.grid_coord.dtype == np.int64
    assert len(set(keys)) == len(keys) == len(groups)                   # unique (voxel, t) keys, all occupied
    assert keys == sorted(keys, key=lambda k: (k[3], k[0], k[1], k[2]))   # (t, x, y, z) order
    sample = out.meta["sample_index"]
    for key, idx in zip(keys, sample):
        assert int(idx) in groups[key]                                   # the kept point lies in its voxel
    np.testing.assert_array_equal(out.coord, cloud.coord[sample])
    np.testing.assert_array_equal(out.extra["time"], out.grid_coord[:, 3])
    np.testing.assert_array_equal(out.meta["grid_min"], low)
    inverse = out.meta["inverse"]
    for key, members in groups.items():                                  # every point -> its own voxel's row
        row = keys.index(key)
        assert all(int(inverse[m]) == row for m in members)


@pytest.mark.parametrize("grid", [0.05, 0.13])
def test_matches_naive_reference(grid):
    rng = np.random.default_rng(0)
    cloud = make_sequence_cloud(rng)
    out = GridSample4D(grid)(cloud, np.random.default_rng(1))
    check_against_naive(cloud, grid, out)


def test_frames_are_never_merged():
    """The same position in three frames gives three voxels, however large the spatial voxel."""
    coord = np.array([[0.01, 0.02, 0.03]] * 3 + [[0.5, 0.5, 0.5]], np.float32)
    cloud = PointCloud(coord=coord, extra={"time": np.array([0, 1, 2, 1])})
    out = GridSample4D(10.0)(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.grid_coord, [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 2]])
    # rows 1 (t = 1) hold two points; each frame's points map to that frame's voxel only
    np.testing.assert_array_equal(out.meta["inverse"], [0, 1, 2, 1])


def test_hand_example_grid_coordinates():
    coord = np.array([[0.01, 0.0, 0.0], [0.06, 0.0, 0.0], [-0.01, 0.0, 0.12], [0.02, 0.01, 0.01]], np.float32)
    gc, low = space_time_coordinates(coord, np.array([1, 0, 0, 1]), 0.05)
    # absolute voxels (0,0,0), (1,0,0), (-1,0,2), (0,0,0) -> shifted by (-1, 0, 0); t unshifted
    np.testing.assert_array_equal(low, [-1, 0, 0])
    np.testing.assert_array_equal(gc, [[1, 0, 0, 1], [2, 0, 0, 0], [0, 0, 2, 0], [1, 0, 0, 1]])
    cloud = PointCloud(coord=coord, extra={"time": np.array([1, 0, 0, 1])})
    out = GridSample4D(0.05)(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.grid_coord, [[0, 0, 2, 0], [2, 0, 0, 0], [1, 0, 0, 1]])
    assert int(out.meta["sample_index"][2]) in (0, 3)


def test_random_choice_per_voxel_follows_the_rng():
    coord = np.zeros((4, 3), np.float32)  # one voxel, four points, one frame
    cloud = PointCloud(coord=coord, extra={"time": np.zeros(4, np.int64)})
    vox = GridSample4D(0.1)
    picks = {int(vox(cloud, np.random.default_rng(s)).meta["sample_index"][0]) for s in range(60)}
    assert picks == {0, 1, 2, 3}                                          # every member can be chosen
    a = vox(make_sequence_cloud(np.random.default_rng(3)), np.random.default_rng(7)).meta["sample_index"]
    b = vox(make_sequence_cloud(np.random.default_rng(3)), np.random.default_rng(7)).meta["sample_index"]
    c = vox(make_sequence_cloud(np.random.default_rng(3)), np.random.default_rng(8)).meta["sample_index"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_origin_index_is_composed_and_extra_kept():
    cloud = make_sequence_cloud(np.random.default_rng(4), n=50)
    cloud.meta["origin_index"] = np.arange(len(cloud)) * 10
    out = GridSample4D(0.1)(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.meta["origin_index"], out.meta["sample_index"] * 10)
    np.testing.assert_array_equal(out.extra["label"], out.meta["sample_index"])
    np.testing.assert_array_equal(out.segment, cloud.segment[out.meta["sample_index"]])
    assert out.meta["time_key"] == "time"


def test_custom_time_key_and_float_frame_index():
    cloud = make_sequence_cloud(np.random.default_rng(5), n=40)
    cloud.extra["frame"] = cloud.extra.pop("time").astype(np.float32)
    out = GridSample4D(0.1, time_key="frame")(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.grid_coord[:, 3], out.extra["frame"])


def test_overflowing_key_falls_back_to_exact_lexsort():
    rng = np.random.default_rng(6)
    coord = rng.uniform(-1e6, 1e6, (200, 3))
    coord[100:] = coord[:100]  # same positions in frame 1
    time = np.repeat([0, 1], 100)
    gc, _ = space_time_coordinates(coord, time, 1e-6)
    order, starts, counts = group_space_time(gc)
    assert len(starts) == 200 and (counts == 1).all()
    keys = [tuple(gc[i, [3, 0, 1, 2]]) for i in order]
    assert keys == sorted(keys)


def test_empty_cloud():
    cloud = PointCloud(coord=np.zeros((0, 3), np.float32), extra={"time": np.zeros(0, np.int64)})
    out = GridSample4D(0.1)(cloud, np.random.default_rng(0))
    assert len(out) == 0 and out.grid_coord.shape == (0, 4)


@pytest.mark.parametrize("extra, message", [({}, "frame index"), ({"time": np.array([0, -1])}, ">= 0"),
                                            ({"time": np.array([0.5, 1.0])}, "integer"),
                                            ({"time": np.array([0, 1, 2])}, "shape")])
def test_bad_time_raises(extra, message):
    cloud = PointCloud(coord=np.zeros((2, 3), np.float32), extra=extra)
    with pytest.raises(ValueError, match=message):
        GridSample4D(0.1)(cloud, np.random.default_rng(0))


def test_needs_rng_and_positive_grid():
    cloud = PointCloud(coord=np.zeros((2, 3), np.float32), extra={"time": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="rng"):
        GridSample4D(0.1)(cloud)
    with pytest.raises(ValueError):
        GridSample4D(0.0)
