"""4DContrast scene-object sequences: floor map and placement vs naive loops, trajectory rules, correspondences,
chunk removal and the discard rules."""
from __future__ import annotations

import math

import numpy as np
import pytest

from contrast3d.data.fourd import (
    FloorMap,
    SceneObjectSequence,
    SequenceConfig,
    SequenceFrame,
    build_floor_map,
    compose_sequence,
    generate_sequences,
    keep_fractions,
    object_frame,
    passes_discard_rules,
    points_in_boxes,
    sample_chunks,
    sample_trajectory,
)
from contrast3d.errors import DataError


def _room(seed: int = 0, size=(4.0, 3.0), spacing: float = 0.04) -> np.ndarray:
    """Floor (noisy grid at z = 0), four 2 m walls and a 1.0 x 0.6 m table top at 0.75 m centred at (1.5, 1.2)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(spacing / 2, size[0], spacing), np.arange(spacing / 2, size[1], spacing))
    floor = np.column_stack([gx.ravel(), gy.ravel(), rng.normal(0, 0.005, gx.size)])
    walls = []
    for length, fixed, axis in ((size[0], 0.0, 1), (size[0], size[1], 1), (size[1], 0.0, 0), (size[1], size[0], 0)):
        s, h = np.meshgrid(np.arange(0, length, 0.08), np.arange(0.02, 2.0, 0.08))
        w = np.zeros((s.size, 3))
        w[:, 1 - axis], w[:, axis], w[:, 2] = s.ravel(), fixed, h.ravel()
        walls.append(w)
    tx, ty = np.meshgrid(np.arange(1.0, 2.0, spacing), np.arange(0.9, 1.5, spacing))
    table = np.column_stack([tx.ravel(), ty.ravel(), np.full(tx.size, 0.75)])
    return np.concatenate([floor, *walls, table]).astype(np.float32)


def _object(seed: int = 1, n: int = 2000) -> np.ndarray:
    """A 0.4 x 0.3 x 0.8 m box-like object, deliberately off-centre in its own coordinates."""
    rng = np.random.default_rng(seed)
    return rng.uniform([5.0, -2.0, 1.0], [5.4, -1.7, 1.8], (n, 3))


def _turn_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1)))


# --- floor map and placement ---------------------------------------------------------------------------------------

def naive_floor_map(coord, cfg):
    z = [float(p[2]) for p in coord]
    p = float(np.percentile(z, cfg.floor_percentile))
    band = [v for v in z if abs(v - p) <= cfg.floor_band]
    floor = sum(band) / len(band)
    ox, oy = min(float(c[0]) for c in coord), min(float(c[1]) for c in coord)
    cols: dict = {}
    for x, y, zz in coord.astype(np.float64):
        key = (math.floor((x - ox) / cfg.cell_size), math.floor((y - oy) / cfg.cell_size))
        cols.setdefault(key, []).append(zz)
    h = max(k[0] for k in cols) + 1
    w = max(k[1] for k in cols) + 1
    acc = np.zeros((h, w), np.int64)
    valid = np.zeros((h, w), bool)
    for (i, j), zs in cols.items():
        voxels = {math.floor((v - floor) / cfg.cell_size + 0.5) for v in zs}
        acc[i, j] = len(voxels)
        valid[i, j] = len(voxels) <= cfg.max_accumulation and abs(max(zs) - floor) <= cfg.height_tolerance
    return floor, acc, valid


def test_floor_map_matches_naive_and_hand_values():
    coord = _room(size=(1.2, 1.0), spacing=0.05)
    coord = coord[(coord[:, 0] < 1.2) & (coord[:, 1] < 1.0)]
    coord = np.concatenate([coord, [[0.55, 0.55, 0.3], [0.65, 0.45, 0.15], [0.33, 0.72, -0.08]]]).astype(np.float32)
    cfg = SequenceConfig()
    fmap = build_floor_map(coord, cfg)
    floor, acc, valid = naive_floor_map(coord, cfg)
    assert fmap.floor_z == pytest.approx(floor, abs=1e-9)
    assert abs(fmap.floor_z) < 0.005
    np.testing.assert_array_equal(fmap.accumulation, acc)
    np.testing.assert_array_equal(fmap.valid, valid)
    cell = lambda x, y: tuple(fmap.cell_index(np.array([[x, y]]))[0])  # noqa: E731
    assert fmap.valid[cell(0.45, 0.45)]  # plain floor
    assert not fmap.valid[cell(0.55, 0.55)] and fmap.accumulation[cell(0.55, 0.55)] == 2  # box top at 30 cm
    assert not fmap.valid[cell(0.65, 0.45)]  # a point at 15 cm is a second voxel (floor voxel spans +-5 cm)
    assert not fmap.valid[cell(0.33, 0.72)] and fmap.accumulation[cell(0.33, 0.72)] == 2  # 8 cm below the floor
    assert not fmap.valid[cell(0.02, 0.5)]  # wall column


def test_floor_map_height_rule_and_empty_cells():
    # one column holds a single voxel at 0.8 m (a shelf seen from above, nothing below): accumulation 1 but too high
    floor = np.column_stack([np.repeat(np.arange(0.05, 1.0, 0.1), 10), np.tile(np.arange(0.05, 1.0, 0.1), 10),
                             np.zeros(100)])
    floor = floor[~((floor[:, 0] > 0.5) & (floor[:, 0] < 0.6) & (floor[:, 1] > 0.5) & (floor[:, 1] < 0.6))]
    coord = np.concatenate([floor, [[0.55, 0.55, 0.8]], [[0.35, 0.35, 0.15]]])
    fmap = build_floor_map(coord)
    i, j = fmap.cell_index(np.array([[0.55, 0.55]]))[0]
    assert fmap.accumulation[i, j] == 1 and not fmap.valid[i, j]
    i, j = fmap.cell_index(np.array([[0.35, 0.35]]))[0]
    assert fmap.accumulation[i, j] == 2 and not fmap.valid[i, j]
    # a column 15 cm up with nothing else (accumulation 1, within 20 cm) is valid; an empty column is not
    fmap2 = build_floor_map(np.concatenate([floor, [[0.55, 0.55, 0.15]]]))
    i, j = fmap2.cell_index(np.array([[0.55, 0.55]]))[0]
    assert fmap2.valid[i, j]
    fmap3 = build_floor_map(floor)
    assert fmap3.accumulation[i, j] == 0 and not fmap3.valid[i, j]


@pytest.mark.parametrize("radius", [0.0, 0.04, 0.13, 0.27])
def test_placeable_matches_naive(radius):
    rng = np.random.default_rng(3)
    valid = rng.random((14, 11)) < 0.85
    fmap = FloorMap(origin=np.array([-0.3, 0.2]), cell_size=0.1, floor_z=0.0, accumulation=valid.astype(np.int64),
                    max_height=np.zeros(valid.shape), valid=valid)
    got = fmap.placeable(radius)
    c = 0.1
    for i in range(valid.shape[0]):
        for j in range(valid.shape[1]):
            cx, cy = (i + 0.5) * c, (j + 0.5) * c
            ok = True
            for a in range(i - 4, i + 5):
                for b in range(j - 4, j + 5):
                    dx = max(a * c - cx, 0.0, cx - (a + 1) * c)
                    dy = max(b * c - cy, 0.0, cy - (b + 1) * c)
                    if math.hypot(dx, dy) < radius or (a, b) == (i, j):
                        inside = 0 <= a < valid.shape[0] and 0 <= b < valid.shape[1]
                        ok = ok and inside and bool(valid[a, b])
            assert got[i, j] == ok, (i, j)


# --- trajectories ----------------------------------------------------------------------------------------------------

def test_trajectory_validity():
    scene, obj = _room(), _object()
    cfg = SequenceConfig()
    fmap = build_floor_map(scene, cfg)
    interior = fmap.valid[3:-3, 3:-3]
    assert interior.mean() > 0.5 and not interior.all()  # the table blocks some cells: the check can fail
    anchor, radius = object_frame(obj)
    assert radius == pytest.approx(0.25, abs=0.01)
    placeable = fmap.placeable(radius)
    seqs = generate_sequences(scene, None, obj, 6, np.random.default_rng(0), cfg)
    assert len(seqs) == 6
    for seq in seqs:
        assert seq.num_frames == 4 and seq.positions.shape == (4, 2)
        i, j = fmap.cell_index(seq.positions).T
        assert placeable[i, j].all()
        steps = np.diff(seq.positions, axis=0)
        lengths = np.linalg.norm(steps, axis=1)
        assert ((lengths >= 0.3 - 1e-9) & (lengths <= 0.9 + 1e-9)).all()
        assert all(_turn_deg(steps[k], steps[k + 1]) < 150.0 for k in range(len(steps) - 1))
        assert (np.abs(np.diff(seq.yaws)) <= math.radians(45.0) + 1e-12).all()
        for frame, pos in zip(seq.frames, seq.positions):
            xyz = frame.coord[frame.is_object].astype(np.float64)
            ci, cj = fmap.cell_index(xyz).T
            inside = (ci >= 0) & (cj >= 0) & (ci < fmap.valid.shape[0]) & (cj < fmap.valid.shape[1])
            assert inside.all() and fmap.valid[ci, cj].all()  # every object point stands on a valid floor cell
            assert xyz[:, 2].min() >= seq.floor_z - 1e-5
            placed = frame.pose[:3, :3] @ anchor + frame.pose[:3, 3]
            np.testing.assert_allclose(placed, [pos[0], pos[1], seq.floor_z], atol=1e-9)


class _ScriptedRng:
    """Stands in for a Generator: integers -> 0, scalar uniforms from a script of fractions, array uniforms -> low."""

    def __init__(self, fractions):
        self.fractions = list(fractions)

    def integers(self, n, size=None):
        return 0

    def uniform(self, low=0.0, high=1.0, size=None):
        if size is not None:
            return np.full(size, float(low))
        return low + self.fractions.pop(0) * (high - low)


def test_trajectory_picks_nearest_admissible_candidate():
    rng = np.random.default_rng(7)
    cand = np.concatenate([[[0.0, 0.0]], rng.uniform(-1.5, 1.5, (300, 2))])
    fractions = [0.5, 0.1, 0.9, 0.8, 0.2, 0.3]
    cfg = SequenceConfig()
    pos, _ = sample_trajectory(cand, _ScriptedRng(fractions + [0.0]), cfg)  # + the initial yaw
    # naive replay of the documented rule
    here, prev, theta = cand[0], None, 0.0
    expected = [here]
    for k in range(3):
        d = 0.3 + fractions[2 * k] * 0.6
        u = fractions[2 * k + 1]
        turn = math.radians(150)
        theta = u * 2 * math.pi if prev is None else theta + (-turn + u * 2 * turn)
        ideal = here + d * np.array([math.cos(theta), math.sin(theta)])
        best, best_d = None, math.inf
        for c in cand:
            step = c - here
            length = math.hypot(*step)
            if not 0.3 <= length <= 0.9:
                continue
            if prev is not None and _turn_deg(prev, step) >= 150.0:
                continue
            if (dd := float(((c - ideal) ** 2).sum())) < best_d:
                best, best_d = c, dd
        prev = best - here
        theta = math.atan2(prev[1], prev[0])
        here = best
        expected.append(best)
    np.testing.assert_allclose(pos, np.array(expected))


def test_trajectory_hand_cases():
    cfg = SequenceConfig(num_frames=3)
    line = np.array([[0.0, 0.0], [0.6, 0.0], [1.2, 0.0]])
    outcomes = set()
    for seed in range(40):
        traj = sample_trajectory(line, np.random.default_rng(seed), cfg)
        if traj is None:
            outcomes.add("none")  # started in the middle: going back is a 180 deg turn, going on is 1.2 m
            continue
        xs = tuple(np.round(traj[0][:, 0], 6))
        assert xs in {(0.0, 0.6, 1.2), (1.2, 0.6, 0.0)}
        outcomes.add(xs)
    assert len(outcomes) == 3
    assert sample_trajectory(np.array([[0.0, 0.0], [0.2, 0.0]]), np.random.default_rng(0), cfg) is None  # too short
    assert sample_trajectory(np.zeros((0, 2)), np.random.default_rng(0), cfg) is None


def test_reproducible_per_seed_and_seeds_differ():
    scene, obj = _room(), _object()
    a = generate_sequences(scene, None, obj, 2, np.random.default_rng(11))
    b = generate_sequences(scene, None, obj, 2, np.random.default_rng(11))
    c = generate_sequences(scene, None, obj, 2, np.random.default_rng(12))
    for sa, sb in zip(a, b):
        np.testing.assert_array_equal(sa.positions, sb.positions)
        for fa, fb in zip(sa.frames, sb.frames):
            np.testing.assert_array_equal(fa.coord, fb.coord)
            np.testing.assert_array_equal(fa.source_index, fb.source_index)
    assert not np.array_equal(a[0].positions, c[0].positions)
    assert not np.array_equal(a[0].frames[0].source_index, c[0].frames[0].source_index)


# --- correspondences ------------------------------------------------------------------------------------------------

def test_correspondences_exact():
    scene, obj = _room(), _object()
    color = np.random.default_rng(2).integers(0, 256, scene.shape).astype(np.uint8)
    seq = generate_sequences(scene, color, obj, 1, np.random.default_rng(4))[0]
    assert isinstance(seq, SceneObjectSequence)
    f0 = seq.frames[0]
    assert f0.color is not None and f0.color.dtype == np.float32
    np.testing.assert_allclose(f0.color[~f0.is_object], color[f0.source_index[~f0.is_object]] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(f0.color[f0.is_object], 0.5)
    for i, j in [(0, 1), (1, 3), (2, 0)]:
        fi, fj = seq.frames[i], seq.frames[j]
        m = seq.correspondences(i, j)
        assert m.dtype == np.int64 and m.shape[1] == 2
        keys_i = {(bool(o), int(s)) for o, s in zip(fi.is_object, fi.source_index)}
        keys_j = {(bool(o), int(s)) for o, s in zip(fj.is_object, fj.source_index)}
        assert len(m) == len(keys_i & keys_j)
        np.testing.assert_array_equal(fi.is_object[m[:, 0]], fj.is_object[m[:, 1]])
        np.testing.assert_array_equal(fi.source_index[m[:, 0]], fj.source_index[m[:, 1]])
        static = ~fi.is_object[m[:, 0]]
        np.testing.assert_array_equal(fi.coord[m[static, 0]], fj.coord[m[static, 1]])
        np.testing.assert_array_equal(fi.coord[m[static, 0]], scene[fi.source_index[m[static, 0]]])
        mo = m[~static]
        assert len(mo) > 300
        world_i, world_j = fi.coord[mo[:, 0]].astype(np.float64), fj.coord[mo[:, 1]].astype(np.float64)
        assert np.linalg.norm(world_i - world_j, axis=1).min() > 0.05  # the object really moved
        local_i = (world_i - fi.pose[:3, 3]) @ fi.pose[:3, :3]
        local_j = (world_j - fj.pose[:3, 3]) @ fj.pose[:3, :3]
        np.testing.assert_allclose(local_i, local_j, atol=2e-6)
        np.testing.assert_allclose(local_i, obj[fi.source_index[mo[:, 0]]], atol=2e-6)
    cloud = f0.to_point_cloud()
    assert len(cloud) == len(f0) and cloud.extra["is_object"].sum() == f0.is_object.sum()


# --- chunks and discard rules ---------------------------------------------------------------------------------------

def test_sample_chunks_ranges():
    scene = _room()[::25]
    extent = scene.max(0).astype(np.float64) - scene.min(0)
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(200):
        lo, hi = sample_chunks(scene, rng)
        counts.append(len(lo))
        rel = (hi - lo) / extent
        assert np.allclose(rel, rel[:, :1]) and ((rel >= 0.15 - 1e-12) & (rel <= 0.45 + 1e-12)).all()
        centres = (lo + hi) / 2
        assert (np.abs(centres[:, None, :] - scene[None].astype(np.float64)).max(2).min(1) < 1e-6).all()
    assert min(counts) == 5 and max(counts) == 15


def test_chunk_removal_matches_naive():
    scene, obj = _room(spacing=0.08), _object()
    cfg = SequenceConfig(point_keep_prob=1.0)
    pos = np.array([[2.8, 2.0], [2.8, 1.4], [3.2, 1.0], [2.6, 0.6]])
    seq = compose_sequence(scene, None, obj, None, pos, np.zeros(4), 0.0, np.random.default_rng(5), cfg)
    assert 5 <= len(seq.chunk_lo) <= 15
    inside = np.array([any(all(lo[k] <= p[k] <= hi[k] for k in range(3)) for lo, hi in zip(seq.chunk_lo, seq.chunk_hi))
                       for p in scene.astype(np.float64)])
    np.testing.assert_array_equal(points_in_boxes(scene, seq.chunk_lo, seq.chunk_hi), inside)
    assert 0 < inside.sum() < len(scene)
    for f in seq.frames:  # the same chunks in every frame; object points are never removed
        np.testing.assert_array_equal(f.source_index[~f.is_object], np.flatnonzero(~inside))
        np.testing.assert_array_equal(np.sort(f.source_index[f.is_object]), seq.object_pool)
    assert len(seq.object_pool) == 1000 and len(np.unique(seq.object_pool)) == 1000
    small = compose_sequence(scene, None, obj[:300], None, pos, np.zeros(4), 0.0, np.random.default_rng(5), cfg)
    assert len(small.object_pool) == 300
    assert seq.scene_keep == pytest.approx(1 - inside.mean()) and seq.object_keep == 1.0


def _frame(scene_src, object_src):
    s, o = np.asarray(scene_src, np.int64), np.asarray(object_src, np.int64)
    n = len(s) + len(o)
    return SequenceFrame(coord=np.zeros((n, 3), np.float32), color=None,
                         is_object=np.r_[np.zeros(len(s), bool), np.ones(len(o), bool)],
                         source_index=np.r_[s, o], pose=np.eye(4))


@pytest.mark.parametrize("scene_b, object_b, expect", [
    (range(30, 90), range(10), (0.30, 1.0, True)),  # exactly 30 % of the scan in both frames
    (range(31, 91), range(10), (0.29, 1.0, False)),
    (range(30, 90), [0, 1, 2], (0.30, 0.3, True)),  # exactly 30 % of the object pool in both frames
    (range(30, 90), [0, 1], (0.30, 0.2, False)),
])
def test_discard_consistency_rules(scene_b, object_b, expect):
    cfg = SequenceConfig()
    frames = [_frame(range(60), range(10)), _frame(scene_b, object_b)]
    s, o, f = keep_fractions(frames, 100, 10)
    assert (s, o) == pytest.approx(expect[:2])
    np.testing.assert_allclose(f, [70 / 110, (len(scene_b) + len(object_b)) / 110])
    assert passes_discard_rules(s, o, f, cfg) == expect[2]


def test_discard_frame_rule():
    cfg = SequenceConfig()
    ok = [_frame(range(45), range(10)), _frame(range(45), range(10))]  # 55 / 110 = 50 %
    s, o, f = keep_fractions(ok, 100, 10)
    assert passes_discard_rules(s, o, f, cfg)
    bad = [_frame(range(45), range(10)), _frame(range(44), range(10))]  # 54 / 110 < 50 %
    assert not passes_discard_rules(*keep_fractions(bad, 100, 10), cfg)


def test_generated_sequences_obey_discard_rules():
    scene, obj = _room(), _object()
    cfg = SequenceConfig()
    seqs = generate_sequences(scene, None, [obj, obj[:500]], 5, np.random.default_rng(9), cfg)
    assert len(seqs) == 5
    for seq in seqs:
        sets = [set(f.source_index[~f.is_object].tolist()) for f in seq.frames]
        common = set.intersection(*sets)
        assert seq.scene_keep == pytest.approx(len(common) / len(scene)) and seq.scene_keep >= 0.3
        pool = len(seq.object_pool)
        assert pool == (1000 if seq.object_index == 0 else 500)
        assert all(len(f) / (len(scene) + pool) >= 0.5 for f in seq.frames) and seq.object_keep >= 0.3
    strict = SequenceConfig(min_scene_keep=0.99, max_tries=2)  # chunks always remove > 1 %: everything is discarded
    assert generate_sequences(scene, None, obj, 3, np.random.default_rng(9), strict) == []


def test_no_free_floor_and_bad_input():
    scene = _room(spacing=0.08)
    ceiling = scene[scene[:, 2] < 0.05].copy()
    ceiling[:, 2] = 2.5
    assert generate_sequences(np.concatenate([scene, ceiling]), None, _object(), 2, np.random.default_rng(0)) == []
    huge = _object() * np.array([20.0, 20.0, 1.0])
    assert generate_sequences(scene, None, huge, 1, np.random.default_rng(0)) == []
    with pytest.raises(DataError):
        generate_sequences(np.zeros((0, 3)), None, _object(), 1, 0)
    with pytest.raises(DataError):
        generate_sequences(np.full((5, 3), np.nan), None, _object(), 1, 0)
    with pytest.raises(DataError):
        generate_sequences(scene, None, np.zeros((4, 2)), 1, 0)
    with pytest.raises(DataError):
        generate_sequences(scene, np.zeros((3, 3)), _object(), 1, 0)


def test_real_scannet_scene(shared_data):
    path = shared_data / "scannet_scene0000_00" / "DERIVED_scene0000_00_points_labels.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    data = np.load(path)
    rng = np.random.default_rng(0)
    chair = rng.uniform([-0.25, -0.25, 0.0], [0.25, 0.25, 0.9], (3000, 3))
    seqs = generate_sequences(data["coord"], data["color"], chair, 3, rng)
    assert len(seqs) == 3
    assert abs(seqs[0].floor_z) < 0.05  # ScanNet scans stand on z = 0
    assert all(s.frames[0].color is not None for s in seqs)
