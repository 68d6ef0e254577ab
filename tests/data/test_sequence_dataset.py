"""4DContrast sequence samples: objects from scenes / CAD files, exact 3D-3D and 3D-4D matches, seeding."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d.data.fourd import SequenceConfig
from contrast3d.data.sequence_dataset import (
    SequenceDataConfig,
    build_sequence_dataset,
    downsample_index,
    sample_mesh_surface,
    scene_objects,
)
from contrast3d.data.voxelize4d import space_time_coordinates
from contrast3d.errors import DataError
from contrast3d.io.pointcept import write_pointcept_scene
from contrast3d.structures import PointCloud, TriangleMesh, collate_views


def _box_surface(rng, lo, hi, n):
    """``n`` points on the surface of the axis-aligned box ``[lo, hi]``."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    pts = rng.uniform(lo, hi, (n, 3))
    axis = rng.integers(0, 3, n)
    side = rng.integers(0, 2, n)
    pts[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    return pts


def make_room(seed: int, size: float = 3.0, spacing: float = 0.05, extra_instances: bool = False) -> PointCloud:
    """Floor (instance 0, class 1), four walls (instances 1-4, class 0), a chair-sized box (instance 7, class 4)."""
    rng = np.random.default_rng(seed)
    g = np.arange(spacing / 2, size, spacing)
    gx, gy = np.meshgrid(g, g)
    parts = [(np.column_stack([gx.ravel(), gy.ravel(), rng.normal(0, 0.003, gx.size)]), 1, 0)]
    s, h = np.meshgrid(np.arange(0, size, 0.1), np.arange(0.05, 1.5, 0.1))
    for k, (fixed, axis) in enumerate(((0.0, 1), (size, 1), (0.0, 0), (size, 0))):
        w = np.zeros((s.size, 3))
        w[:, 1 - axis], w[:, axis], w[:, 2] = s.ravel(), fixed, h.ravel()
        parts.append((w, 0, 1 + k))
    corner = rng.uniform(0.5, size - 1.0, 2)
    parts.append((_box_surface(rng, [*corner, 0.0], [*(corner + [0.4, 0.3]), 0.7], 400), 4, 7))
    if extra_instances:
        parts.append((_box_surface(rng, [0.3, 0.3, 0], [0.8, 0.8, 0.4], 100), 3, 8))        # a "bed": not default
        parts.append((_box_surface(rng, [2.0, 0.2, 0], [2.1, 0.3, 0.1], 20), 4, 9))         # too few points
        parts.append((_box_surface(rng, [0.2, 0.2, 0], [2.4, 2.4, 0.5], 500), 6, 10))       # too large
    coord = np.concatenate([p for p, _, _ in parts]).astype(np.float32)
    segment = np.concatenate([np.full(len(p), c) for p, c, _ in parts])
    instance = np.concatenate([np.full(len(p), i) for p, _, i in parts])
    return PointCloud(coord=coord, color=rng.random((len(coord), 3)).astype(np.float32), segment=segment,
                      instance=instance, meta={"name": f"room{seed}"})


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    for seed in (1, 2):
        write_pointcept_scene(root / f"room{seed}", make_room(seed), segment_name="segment20")
    return root


def small_config(**kw) -> SequenceDataConfig:
    base = dict(grid_size=0.05, grid_size_4d=0.1, scene_grid_size=0.0, min_object_points=50,
                sequence=SequenceConfig(num_frames=3, object_points=200))
    base.update(kw)
    return SequenceDataConfig(**base)


# --- objects -------------------------------------------------------------------------------------------------------

def test_scene_objects_picks_furniture_instances():
    cloud = make_room(3, extra_instances=True)
    cfg = small_config()
    objs = scene_objects(cloud, cfg, scene=5)
    assert [o.source for o in objs] == ["room3:7"] and objs[0].scene == 5
    np.testing.assert_array_equal(objs[0].coord, cloud.coord[cloud.instance == 7])
    np.testing.assert_array_equal(objs[0].color, cloud.color[cloud.instance == 7])
    every = scene_objects(cloud, small_config(object_classes=[]))                  # all instances that fit
    assert [o.source for o in every] == ["room3:7", "room3:8"]
    cloud.segment = None
    assert scene_objects(cloud, cfg) == [] and len(scene_objects(cloud, small_config(object_classes=[]))) == 2


def test_downsample_keeps_lowest_index_per_voxel():
    coord = np.array([[0.01, 0, 0], [0.02, 0, 0], [0.3, 0, 0], [0.04, 0.01, 0]], np.float32)
    np.testing.assert_array_equal(downsample_index(coord, 0.1), [0, 2])
    np.testing.assert_array_equal(downsample_index(coord, 0.0), [0, 1, 2, 3])


def _cube_off(path, half: float = 0.2) -> None:
    v = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (0.0, 2 * half)])
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
    lines = ["OFF", f"{len(v)} {len(faces)} 0"] + [" ".join(map(str, p)) for p in v]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def test_mesh_surface_sampling_is_on_the_surface_and_area_weighted():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [3, 0, 0], [0, 3, 0]], np.float32)
    mesh = TriangleMesh(vertices=vertices, faces=np.array([[0, 1, 2], [3, 4, 5]]))
    pts, color = sample_mesh_surface(mesh, 20000, np.random.default_rng(0))
    assert color is None and pts.shape == (20000, 3) and np.all(pts[:, 2] == 0)
    assert np.all(pts[:, 0] + pts[:, 1] <= 3 + 1e-5) and np.all(pts >= -1e-6)
    # areas 0.5 and 4.5: P(x + y <= 1) = 0.1 (small triangle) + 0.9 * 0.5 / 4.5 (that part of the big one)
    assert abs(np.mean(pts[:, 0] + pts[:, 1] <= 1) - 0.2) < 0.015


def test_cad_objects_from_a_folder(scene_root, tmp_path):
    objects = tmp_path / "cad"
    objects.mkdir()
    _cube_off(objects / "cube.off")
    ds = build_sequence_dataset(str(scene_root), small_config(objects_dir=str(objects), cad_points=800))
    assert len(ds.objects) == 1 and ds.objects[0].source.endswith("cube.off") and ds.objects[0].scene == -1
    pts = ds.objects[0].coord.astype(np.float64)
    on_face = np.isclose(np.abs(pts[:, :2]), 0.2, atol=1e-5).any(1) | np.isclose(pts[:, 2], 0, atol=1e-5) \
        | np.isclose(pts[:, 2], 0.4, atol=1e-5)
    assert len(pts) == 800 and on_face.all()
    sample = ds.get_sample(0, np.random.default_rng(0))
    assert sample.meta["object"].endswith("cube.off")
    again = build_sequence_dataset(str(scene_root), small_config(objects_dir=str(objects), cad_points=800))
    np.testing.assert_array_equal(again.objects[0].coord, pts.astype(np.float32))   # seeded by the file name
    y_up = build_sequence_dataset(str(scene_root), small_config(objects_dir=str(objects), cad_points=800, cad_up="y"))
    np.testing.assert_allclose(y_up.objects[0].coord, np.column_stack([pts[:, 0], -pts[:, 2], pts[:, 1]]), atol=1e-6)


def test_no_objects_and_bad_config_raise(tmp_path):
    cloud = make_room(4)
    cloud.instance = None
    write_pointcept_scene(tmp_path / "room4", cloud)
    with pytest.raises(DataError, match="objects_dir"):
        build_sequence_dataset(str(tmp_path), small_config())
    with pytest.raises(ValueError, match="feat_keys"):
        small_config(feat_keys=["normal"])
    with pytest.raises(DataError, match="OFF"):
        build_sequence_dataset(str(tmp_path / "room4"), small_config(objects_dir=str(tmp_path)))  # no OFF files


# --- samples -------------------------------------------------------------------------------------------------------

def world_of(view: PointCloud, frame: PointCloud) -> np.ndarray:
    return frame.coord[view.meta["origin_index"]].astype(np.float64)


@pytest.mark.parametrize("kw", [{}, {"max_points": 900, "rotation": "so3"}])
def test_matches_are_exact_and_complete(scene_root, kw):
    ds = build_sequence_dataset(str(scene_root), small_config(**kw))
    sample = ds.get_sample(0, np.random.default_rng(11))
    _, obj, seq = ds.make_sequence(0, np.random.default_rng(11))      # the same sequence, regenerated
    assert sample.meta["object"] == obj.source and not obj.source.startswith("room1:")  # from the other scene
    t = seq.num_frames
    views = sample.views
    assert len(views) == t + 1 and views[t].grid_coord.shape[1] == 4
    assert all(v.grid_coord.shape[1] == 3 for v in views[:t])
    if kw:
        assert all(len(v) <= 900 for v in views[:t])
    frames = [f.to_point_cloud() for f in seq.frames]
    object_matches = 0
    for i in range(t):
        world = world_of(views[i], frames[i])
        T = views[i].meta["transform"]
        np.testing.assert_allclose(views[i].coord, world @ T[:3, :3].T + T[:3, 3], atol=2e-4)  # rigid per frame
        src_i = list(zip(views[i].extra["is_object"].tolist(), views[i].extra["source_index"].tolist()))
        for j in range(i + 1, t):
            lookup = {key: b for b, key in enumerate(zip(views[j].extra["is_object"].tolist(),
                                                         views[j].extra["source_index"].tolist()))}
            naive = {(a, lookup[key]) for a, key in enumerate(src_i) if key in lookup}
            got = sample.pair_matches[(i, j)]
            assert {tuple(r) for r in got.tolist()} == naive and len(got) == len(naive) > 0
            a, b = got[:, 0], got[:, 1]
            static = ~views[i].extra["is_object"][a]
            wi, wj = world_of(views[i], frames[i]), world_of(views[j], frames[j])
            np.testing.assert_array_equal(wi[a[static]], wj[b[static]])           # same world position
            pi, pj = seq.frames[i].pose, seq.frames[j].pose
            local_i = (wi[a[~static]] - pi[:3, 3]) @ pi[:3, :3]
            local_j = (wj[b[~static]] - pj[:3, 3]) @ pj[:3, :3]
            object_matches += int((~static).sum())
            np.testing.assert_allclose(local_i, local_j, atol=1e-5)              # same object-local position
            np.testing.assert_allclose(local_i, obj.coord[views[i].extra["source_index"][a[~static]]], atol=1e-5)
    assert object_matches > 0 or kw  # a crop may cut the object out of some frames


def test_3d_4d_matches_point_to_the_voxel_of_the_same_point(scene_root):
    cfg = small_config()
    ds = build_sequence_dataset(str(scene_root), cfg)
    sample = ds.get_sample(1, np.random.default_rng(3))
    _, _, seq = ds.make_sequence(1, np.random.default_rng(3))
    t = seq.num_frames
    v4 = sample.views[t]
    all_world = np.concatenate([f.coord for f in seq.frames])
    all_time = np.repeat(np.arange(t), [len(f) for f in seq.frames])
    ref_gc, _ = space_time_coordinates(all_world, all_time, cfg.grid_size_4d)
    np.testing.assert_array_equal(v4.grid_coord, ref_gc[v4.meta["origin_index"]])
    np.testing.assert_array_equal(v4.coord, all_world[v4.meta["origin_index"]])     # the 4D view is not augmented
    starts = np.concatenate([[0], np.cumsum([len(f) for f in seq.frames])[:-1]])
    for i in range(t):
        m = sample.pair_matches[(i, t)]
        np.testing.assert_array_equal(m[:, 0], np.arange(len(sample.views[i])))     # every 3D point, once
        mine = ref_gc[starts[i] + sample.views[i].meta["origin_index"]]
        np.testing.assert_array_equal(v4.grid_coord[m[:, 1]], mine)                  # its own (x, y, z, t=i) voxel
        assert (v4.grid_coord[m[:, 1], 3] == i).all()


def test_seeded_reproducible_and_rng_dependent(scene_root):
    ds = build_sequence_dataset(str(scene_root), small_config())
    a, b = ds.get_sample(0, np.random.default_rng(5)), ds.get_sample(0, np.random.default_rng(5))
    c = ds.get_sample(0, np.random.default_rng(6))
    for x, y in zip(a.views, b.views):
        np.testing.assert_array_equal(x.coord, y.coord)
        np.testing.assert_array_equal(x.grid_coord, y.grid_coord)
    assert all(np.array_equal(a.pair_matches[k], b.pair_matches[k]) for k in a.pair_matches)
    same = [x.coord.shape == y.coord.shape and np.array_equal(x.coord, y.coord) for x, y in zip(a.views, c.views)]
    assert not all(same)


def test_colour_option_and_collation(scene_root):
    ds = build_sequence_dataset(str(scene_root), small_config(feat_keys=["ones", "color"]))
    samples = [ds.get_sample(i, np.random.default_rng(i)) for i in range(2)]
    batch = collate_views(samples, feat_keys=("ones", "color"))
    assert len(batch.views) == 4 and batch.views[3].grid_coord.shape[1] == 4
    assert batch.views[0].feat.shape[1] == 4 and batch.views[3].feat.shape[1] == 4
    assert all(v.color is not None for s in samples for v in s.views)
    n0 = len(samples[0].views[1])
    m = batch.pair_matches[(1, 3)].numpy()
    assert m[:n0, 0].max() < n0 and m[n0:, 0].min() >= n0          # second sample's rows shifted
