"""Seeded augmentations: geometry bookkeeping (``meta["transform"]``), cropping and colour."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import pdist

from contrast3d.data import transforms as T
from contrast3d.structures import PointCloud

GEOMETRIC = [T.CenterShift(), T.CenterShift(apply_z=False), T.RandomRotate(p=1.0),
             T.RandomRotate(angle=[(-0.3, 0.3), (-0.2, 0.2), (-math.pi, math.pi)], axis="xyz", p=1.0),
             T.RandomRotateTargetAngle(p=1.0), T.RandomFlip(p=1.0), T.RandomFlip(p=(1.0, 0.0, 1.0), axes="xyz"),
             T.RandomScale(), T.RandomScale((0.5, 2.0), anisotropic=True), T.RandomShift()]
COLOR = [T.ChromaticAutoContrast(p=1.0), T.ChromaticTranslation(p=1.0, ratio=0.3), T.ChromaticJitter(p=1.0, std=0.2),
         T.HueSaturationTranslation(), T.RandomColorGrayscale(p=1.0),
         T.ColorJitter(0.6, 0.6, 0.6, 0.5, p=1.0), T.RandomColorDrop(p=1.0, color_augment=0.5)]
OTHER = [T.RandomJitter(), T.ElasticDistortion(), T.SphereCrop(point_max=100), T.RandomDropout(0.3, 1.0)]
ALL = GEOMETRIC + COLOR + OTHER


def make_cloud(seed: int = 0, n: int = 300) -> PointCloud:
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return PointCloud(coord=(rng.random((n, 3)) * [4, 3, 2.5] + [1, -2, 0.3]).astype(np.float32),
                      color=rng.random((n, 3)).astype(np.float32), normal=normal.astype(np.float32),
                      segment=rng.integers(-1, 10, n), extra={"strength": rng.random(n).astype(np.float32)},
                      meta={"name": "scene"})


def apply_matrix(m: np.ndarray, coord: np.ndarray) -> np.ndarray:
    return coord.astype(np.float64) @ m[:3, :3].T + m[:3, 3]


def snapshot(cloud: PointCloud) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in cloud.point_arrays().items()}


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__)
def test_seeded_new_cloud_and_input_untouched(t):
    cloud = make_cloud()
    before, meta_before = snapshot(cloud), dict(cloud.meta)
    a = t(cloud, np.random.default_rng(11))
    b = t(cloud, np.random.default_rng(11))
    assert a is not cloud and a.meta is not cloud.meta
    for key, value in before.items():                               # no in-place writes
        np.testing.assert_array_equal(cloud.get(key), value)
    assert cloud.meta.keys() == meta_before.keys()
    for key, value in a.point_arrays().items():                      # deterministic given the rng
        np.testing.assert_array_equal(value, b.get(key))
        assert len(value) == len(a)
    assert a.coord.dtype == np.float32
    others = [t(cloud, np.random.default_rng(seed)) for seed in range(12, 16)]
    differs = any(not np.array_equal(v, c.get(k)) for c in others for k, v in a.point_arrays().items())
    assert differs or isinstance(t, (T.CenterShift, T.RandomFlip, T.RandomColorGrayscale, T.RandomColorDrop))


@pytest.mark.parametrize("t", GEOMETRIC, ids=lambda t: type(t).__name__)
def test_recorded_transform_reproduces_coords_and_normals(t):
    cloud = make_cloud(1)
    out = t(cloud, np.random.default_rng(3))
    m = out.meta["transform"]
    assert m.shape == (4, 4) and np.allclose(m[3], [0, 0, 0, 1])
    np.testing.assert_allclose(out.coord, apply_matrix(m, cloud.coord), atol=1e-5)
    # normals stay unit and stay perpendicular to (transformed) tangent directions
    np.testing.assert_allclose(np.linalg.norm(out.normal, axis=1), 1.0, atol=1e-5)
    tangent = np.cross(cloud.normal, [0.3, -0.5, 0.8])
    np.testing.assert_allclose(np.sum((tangent @ m[:3, :3].T) * out.normal, axis=1), 0.0, atol=1e-5)
    np.testing.assert_array_equal(out.segment, cloud.segment)
    np.testing.assert_array_equal(out.color, cloud.color)


def test_compose_accumulates_transform():
    cloud = make_cloud(2)
    pipe = T.Compose([T.CenterShift(), T.RandomRotate(p=1.0), T.RandomFlip(p=1.0), T.RandomScale((0.5, 2)),
                      T.RandomShift(), T.ChromaticJitter(p=1.0), T.RandomRotateTargetAngle(p=1.0, axis="x")])
    out = pipe(cloud, np.random.default_rng(0))
    np.testing.assert_allclose(out.coord, apply_matrix(out.meta["transform"], cloud.coord), atol=1e-5)
    again = pipe(out, np.random.default_rng(1))                     # composes on top of an existing one
    np.testing.assert_allclose(again.coord, apply_matrix(again.meta["transform"], cloud.coord), atol=1e-4)


def test_rotation_rigid_and_rotates_normals():
    cloud = make_cloud(3, n=120)
    t = T.RandomRotate(angle=(-math.pi, math.pi), axis="xyz", p=1.0)
    out = t(cloud, np.random.default_rng(5))
    rot = out.meta["transform"][:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(rot), 1.0)
    np.testing.assert_allclose(pdist(out.coord), pdist(cloud.coord), atol=1e-5)
    np.testing.assert_allclose(out.normal, cloud.normal @ rot.T, atol=1e-6)
    # rotation about the bounding-box centre keeps the centroid-to-centre vector length
    centre = (cloud.coord.min(0) + cloud.coord.max(0)) / 2
    np.testing.assert_allclose(apply_matrix(out.meta["transform"], centre[None])[0], centre, atol=1e-5)


def test_rotation_axis_angle_range_and_p():
    cloud = make_cloud(4)
    for seed in range(10):
        m = T.RandomRotate(angle=(0.1, 0.4), axis="z", center=(0, 0, 0), p=1.0)(cloud, np.random.default_rng(seed))
        angle = math.atan2(m.meta["transform"][1, 0], m.meta["transform"][0, 0])
        assert 0.1 <= angle <= 0.4
        np.testing.assert_array_equal(m.coord[:, 2], cloud.coord[:, 2])
        target = T.RandomRotateTargetAngle(p=1.0)(cloud, np.random.default_rng(seed)).meta["transform"]
        angle = math.atan2(target[1, 0], target[0, 0]) % (2 * math.pi)
        assert min(abs(angle - a) for a in (math.pi / 2, math.pi, 3 * math.pi / 2)) < 1e-9
    out = T.RandomRotate(p=0.0)(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.coord, cloud.coord)
    assert "transform" not in out.meta
    with pytest.raises(ValueError):
        T.RandomRotate(axis="w", p=1.0)(cloud, np.random.default_rng(0))


def test_flip_scale_shift_center():
    cloud = make_cloud(5)
    out = T.RandomFlip(p=(1.0, 0.0))(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.coord, cloud.coord * [-1, 1, 1])
    np.testing.assert_array_equal(out.normal, cloud.normal * [-1, 1, 1])
    out = T.RandomScale((0.5, 0.8))(cloud, np.random.default_rng(0))
    s = out.meta["transform"][0, 0]
    assert 0.5 <= s <= 0.8
    np.testing.assert_allclose(out.coord, cloud.coord * s, rtol=1e-6)
    np.testing.assert_allclose(out.normal, cloud.normal, atol=1e-6)
    out = T.RandomShift()(cloud, np.random.default_rng(0))
    d = out.meta["transform"][:3, 3]
    assert np.all(np.abs(d[:2]) <= 0.2) and d[2] == 0
    out = T.CenterShift()(cloud, np.random.default_rng(0))
    np.testing.assert_allclose((out.coord.min(0) + out.coord.max(0))[:2] / 2, 0, atol=1e-6)
    assert abs(out.coord[:, 2].min()) < 1e-6
    out = T.CenterShift(apply_z=False)(cloud, np.random.default_rng(0))
    np.testing.assert_array_equal(out.coord[:, 2], cloud.coord[:, 2])


def test_jitter_and_elastic_are_bounded_nonrigid_noise():
    cloud = make_cloud(6, n=2000)
    out = T.RandomJitter(sigma=0.01, clip=0.02)(cloud, np.random.default_rng(0))
    d = out.coord - cloud.coord
    assert np.abs(d).max() <= 0.02 + 1e-6 and 0.005 < d.std() < 0.015 and "transform" not in out.meta
    out = T.ElasticDistortion(((0.2, 0.4),), p=1.0)(cloud, np.random.default_rng(0))
    d = np.linalg.norm(out.coord - cloud.coord, axis=1)
    assert 0 < d.mean() < 0.4 and d.max() < 1.0
    with pytest.raises(ValueError):
        T.ElasticDistortion(((0.001, 1.0),), p=1.0)(cloud, np.random.default_rng(0))


def test_sphere_crop():
    cloud = make_cloud(7, n=500)
    coord = cloud.coord.astype(np.float64)
    out = T.SphereCrop(point_max=120, mode="center")(cloud, np.random.default_rng(0))
    assert len(out) == 120
    idx = out.meta["origin_index"]
    assert np.all(np.diff(idx) > 0)                                  # input order kept
    np.testing.assert_array_equal(out.segment, cloud.segment[idx])
    np.testing.assert_array_equal(out.extra["strength"], cloud.extra["strength"][idx])
    dist = np.linalg.norm(coord - (coord.min(0) + coord.max(0)) / 2, axis=1)
    dropped = np.setdiff1d(np.arange(500), idx)
    assert dist[idx].max() <= dist[dropped].min()                    # the nearest points to the centre
    out = T.SphereCrop(point_max=10**6, sample_rate=0.25)(cloud, np.random.default_rng(1))
    idx = out.meta["origin_index"]
    assert len(out) == 125
    d_all = np.linalg.norm(coord[idx][:, None] - coord[None], axis=2)  # some kept point is the centre
    dropped = np.setdiff1d(np.arange(500), idx)
    assert np.any(d_all[:, idx].max(1) <= d_all[:, dropped].min(1))
    assert len(T.SphereCrop(point_max=1000)(cloud, np.random.default_rng(0))) == 500
    chained = T.SphereCrop(point_max=50)(out, np.random.default_rng(2))  # origin_index composes
    np.testing.assert_array_equal(chained.coord, cloud.coord[chained.meta["origin_index"]])


def test_random_dropout():
    cloud = make_cloud(8, n=200)
    out = T.RandomDropout(0.3, 1.0)(cloud, np.random.default_rng(0))
    assert len(out) == 140 and len(np.unique(out.meta["origin_index"])) == 140
    np.testing.assert_array_equal(out.coord, cloud.coord[out.meta["origin_index"]])
    assert len(T.RandomDropout(0.3, 0.0)(cloud, np.random.default_rng(0))) == 200


@pytest.mark.parametrize("t", COLOR, ids=lambda t: type(t).__name__)
def test_color_stays_in_unit_range(t):
    cloud = make_cloud(9)
    cloud.color[:5] = [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0.5, 0.5, 0.5], [0, 1, 1]]
    for seed in range(5):
        out = t(cloud, np.random.default_rng(seed))
        assert out.color.dtype == np.float32 and out.color.shape == cloud.color.shape
        assert out.color.min() >= 0 and out.color.max() <= 1
        np.testing.assert_array_equal(out.coord, cloud.coord)
    no_color = PointCloud(coord=cloud.coord)
    assert t(no_color, np.random.default_rng(0)).color is None


def test_color_semantics():
    cloud = make_cloud(10)
    rng = np.random.default_rng
    c = cloud.color
    out = T.ChromaticAutoContrast(p=1.0, blend_factor=1.0)(cloud, rng(0)).color
    np.testing.assert_allclose(out.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(out.max(0), 1, atol=1e-6)
    d = T.ChromaticTranslation(p=1.0, ratio=0.05)(cloud, rng(0)).color - c
    inside = np.all((c > 0.1) & (c < 0.9), axis=1)
    assert np.ptp(d[inside], axis=0).max() < 1e-6 and np.abs(d).max() <= 0.05 + 1e-6
    gray = T.RandomColorGrayscale(p=1.0)(cloud, rng(0)).color
    np.testing.assert_allclose(gray[:, 0], c @ [0.2989, 0.587, 0.114], atol=1e-6)
    assert np.all(gray[:, 0] == gray[:, 1]) and np.all(gray[:, 1] == gray[:, 2])
    np.testing.assert_array_equal(T.RandomColorDrop(p=1.0)(cloud, rng(0)).color, 0)
    np.testing.assert_allclose(T.NormalizeColor()(cloud, rng(0)).color, c * 2 - 1, atol=1e-6)
    out = T.NormalizeColor(mean=(0.1, 0.2, 0.3), std=(1, 2, 4))(cloud)
    np.testing.assert_allclose(out.color, (c - [0.1, 0.2, 0.3]) / [1, 2, 4], atol=1e-6)
    hs = T.HueSaturationTranslation()(cloud, rng(0)).color            # value (max channel) kept
    np.testing.assert_allclose(hs.max(1), c.max(1), atol=1e-6)
    assert not np.allclose(hs, c)
    np.testing.assert_allclose(T.HueSaturationTranslation(0.0, 0.0)(cloud, rng(0)).color, c, atol=1e-6)


def test_color_jitter_torchvision_semantics():
    cloud = make_cloud(11)
    c, rng = cloud.color.astype(np.float64), np.random.default_rng
    b = T.ColorJitter(brightness=(0.5, 0.5), p=1.0)(cloud, rng(0)).color
    np.testing.assert_allclose(b, c * 0.5, atol=1e-6)
    s = T.ColorJitter(saturation=(0.0, 0.0), p=1.0)(cloud, rng(0)).color
    np.testing.assert_allclose(s, np.repeat(c @ [0.2989, 0.587, 0.114], 3).reshape(-1, 3), atol=1e-6)
    k = T.ColorJitter(contrast=(0.0, 0.0), p=1.0)(cloud, rng(0)).color
    np.testing.assert_allclose(k, (c @ [0.2989, 0.587, 0.114]).mean(), atol=1e-6)
    h = T.ColorJitter(hue=(0.5, 0.5), p=1.0)(cloud, rng(0)).color        # half a turn twice = identity
    h2 = T.ColorJitter(hue=(0.5, 0.5), p=1.0)(PointCloud(coord=cloud.coord, color=h), rng(0)).color
    np.testing.assert_allclose(h2, c, atol=1e-5)
    np.testing.assert_allclose(T.rgb_to_hsv(h)[:, 1:], T.rgb_to_hsv(c)[:, 1:], atol=1e-5)
    np.testing.assert_array_equal(T.ColorJitter(p=1.0)(cloud, rng(0)).color, cloud.color)  # all off
    with pytest.raises(ValueError):
        T.ColorJitter(hue=0.7)
    with pytest.raises(ValueError):
        T.ColorJitter(brightness=-1)


def test_hsv_round_trip_matches_colorsys():
    import colorsys
    c = np.random.default_rng(0).random((200, 3))
    c[:3] = [[0, 0, 0], [0.4, 0.4, 0.4], [1, 0, 1]]
    hsv = T.rgb_to_hsv(c)
    np.testing.assert_allclose(hsv, [colorsys.rgb_to_hsv(*x) for x in c], atol=1e-12)
    np.testing.assert_allclose(T.hsv_to_rgb(hsv), c, atol=1e-12)


def test_build_transforms_from_config():
    pipe = T.build_transforms([{"type": "RandomRotate", "axis": "z", "p": 1.0},
                               {"type": "GridSample", "grid_size": 0.2}])
    out = pipe(make_cloud(12), np.random.default_rng(0))
    assert out.grid_coord is not None and "transform" in out.meta
    with pytest.raises(ValueError):
        T.build_transforms([{"type": "NoSuchTransform"}])


clouds = st.integers(1, 40).flatmap(lambda n: st.tuples(
    arrays(np.float32, (n, 3), elements=st.floats(-1e5, 1e5, width=32)),
    arrays(np.float32, (n, 3), elements=st.floats(-1, 1, width=32)), st.integers(0, 2)))


@settings(max_examples=40, deadline=None)
@given(data=clouds, which=st.sampled_from(GEOMETRIC), seed=st.integers(0, 2 ** 16))
def test_geometric_property(data, which, seed):
    coord, normal, dup = data
    coord, normal = np.concatenate([coord] * (dup + 1)), np.concatenate([normal] * (dup + 1))
    norm = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.where(norm > 1e-3, normal / np.maximum(norm, 1e-3), [[0, 0, 1]]).astype(np.float32)
    cloud = PointCloud(coord=coord, normal=normal)
    out = which(cloud, np.random.default_rng(seed))
    m = out.meta["transform"]
    expect = apply_matrix(m, coord)
    tol = 4 * np.finfo(np.float32).eps * (1 + np.abs(coord).max() + np.abs(expect).max())
    np.testing.assert_allclose(out.coord, expect, atol=tol, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(out.normal, axis=1), 1, atol=1e-5)
    lin = m[:3, :3]
    if np.allclose(lin @ lin.T, np.eye(3)) and len(coord) > 1:    # rigid: distances preserved
        np.testing.assert_allclose(pdist(out.coord.astype(np.float64)), pdist(coord.astype(np.float64)), atol=2 * tol)
