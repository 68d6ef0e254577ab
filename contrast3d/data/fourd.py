"""4DContrast scene-object sequences (Chen, Niessner, Dai, ECCV 2022, §3.3).

A static scan ``S`` (points in metres, z up) and a synthetic object ``O`` (a point cloud, e.g.
sampled from a CAD mesh) are composed into a sequence of ``t`` frames ``F_0 .. F_{t-1}`` in which
``O`` moves over the floor of ``S``. Every frame point remembers where it came from (a scene point
or an object point), which gives exact correspondences between any two frames.

**Floor map.** The scene is voxelised at ``cell_size`` (10 cm) and the occupied voxels of every
xy column are counted ("voxel accumulation" in the paper). A cell is *valid* when its column
holds ``1 <= accumulation <= max_accumulation`` (1) occupied voxels and the highest point of
the column lies within ``height_tolerance`` (20 cm) of the floor height. Decisions the paper
leaves open:

* floor height: ``p`` = the ``floor_percentile`` (1 %) percentile of z; the floor height is the
  mean z of the points within ``floor_band`` (5 cm) of ``p`` (the paper's "average floor height";
  the percentile alone sits on the low edge of the floor noise).
* vertical voxels are aligned to the floor: voxel ``k`` spans ``floor + (k -/+ 0.5) * cell``, so a
  noisy floor occupies one voxel per column instead of straddling a voxel boundary (which would
  give every floor column an accumulation of 2 and no valid cell at all).
* empty columns (accumulation 0: unobserved, outside the room or a hole) have no height and are
  invalid; "max height" is the highest *point* of the column.
* scenes with a ceiling have no valid cell; remove ceiling points before (ScanNet scans have none).

**Placement.** The object is centred at the centre of its xy bounding box and stands on the
floor (its lowest point at the floor height). Its bounding circle has radius ``r`` = half the xy
diagonal of its bounding box, so it contains the object under any rotation about z. A cell centre
is a *candidate* position when every cell whose square meets the open disc of radius ``r`` around
it is valid (binary erosion of the valid map; cells outside the map are invalid).

**Trajectory.** The start is a uniformly random candidate. Each following step draws an ideal
step length ``d ~ U[step_min, step_max]`` (30-90 cm) and direction: uniform for the first step,
else the previous *actual* step direction turned by ``U(-max_turn, max_turn)`` (150 deg). The next
position is the candidate nearest to the ideal point among all candidates whose actual distance
from the current position lies in ``[step_min, step_max]`` and whose actual turn relative to the
previous step is ``< max_turn``; so every realised step satisfies both constraints exactly. If no
candidate qualifies the attempt fails. The object's yaw (rotation about z, paper silent) starts
uniform in ``[0, 2 pi)`` and changes by ``U[-max_rotation_step, max_rotation_step]`` (45 deg) per step.

**Composition and augmentation** (paper's "1000 randomly sampled points from the synthetic
object", "randomly sampling different points ... in each individual frame", cubic chunks):

* one *object pool* of ``min(object_points, N_obj)`` (1000) object points is drawn without
  replacement per sequence; every frame shows this pool under the frame's pose. (Independent
  resampling per frame from a dense object would leave almost no point present in every frame,
  contradicting the paper's "30 % of the object points consistently represented".)
* every frame keeps each scene and pool point independently with probability ``point_keep_prob``
  (0.9, paper silent) -- the per-frame random sampling.
* ``U{chunks_min..chunks_max}`` (5-15) chunks are removed from the background scene *once per
  sequence* (the scene is static; removing independent chunks in each of 4 frames would leave
  ~0.7^4 < 30 % of the scan in every frame, so nearly every sequence would fail the paper's
  30 % rule). A chunk is centred at a random scene point and is a cube in scene-normalised
  coordinates: an axis-aligned box with edges ``s * extent`` (``extent`` = the scene's per-axis
  bounding-box size, one ``s ~ U[0.15, 0.45]`` per chunk). Object points are never removed.
* discard rules: with ``N_S`` scene points and ``P`` pool points, a sequence is kept iff
  (a) ``>= min_scene_keep`` (30 %) of the ``N_S`` scene points are present in *every* frame,
  (b) ``>= min_object_keep`` (30 %) of the ``P`` pool points are present in every frame, and
  (c) every frame has ``>= min_frame_keep`` (50 %) of ``N_S + P`` points.

The paper's further random rotation / scaling / translation of each 3D frame (not of the 4D
sequence) belongs to the training views, not here. Scenes are expected at the paper's 2 cm
resolution (voxel-downsample before). Colours are float32 in [0, 1] (uint8 is rescaled); when the
scene has colour and the object has none, object points are mid-grey (0.5); without scene colour
frames carry no colour.

Pose convention: ``SequenceFrame.pose`` ``(4, 4)`` maps the *given* object coordinates to world
coordinates of that frame, so ``object_points[source_index] ~= inv(pose) @ coord`` for object points.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage

from contrast3d.errors import DataError
from contrast3d.structures import PointCloud


@dataclass
class SequenceConfig:
    """All numbers of the scene-object sequence generation (defaults: the paper's, else documented above).

    Lengths in metres, angles in degrees, fractions in [0, 1].
    """

    num_frames: int = 4
    cell_size: float = 0.10
    floor_percentile: float = 1.0
    floor_band: float = 0.05
    max_accumulation: int = 1
    height_tolerance: float = 0.20
    step_min: float = 0.30
    step_max: float = 0.90
    max_turn_deg: float = 150.0
    max_rotation_step_deg: float = 45.0
    object_points: int = 1000
    point_keep_prob: float = 0.9
    chunks_min: int = 5
    chunks_max: int = 15
    chunk_size_min: float = 0.15
    chunk_size_max: float = 0.45
    min_scene_keep: float = 0.30
    min_object_keep: float = 0.30
    min_frame_keep: float = 0.50
    max_tries: int = 10  # attempts per requested sequence

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.object_points < 1 or self.max_tries < 1:
            raise ValueError("num_frames, object_points and max_tries must be >= 1")
        if not (0 < self.step_min <= self.step_max) or self.cell_size <= 0:
            raise ValueError("need 0 < step_min <= step_max and cell_size > 0")
        if not (0 <= self.chunks_min <= self.chunks_max) or not (0 <= self.chunk_size_min <= self.chunk_size_max):
            raise ValueError("need 0 <= chunks_min <= chunks_max and 0 <= chunk_size_min <= chunk_size_max")
        if not 0 < self.point_keep_prob <= 1:
            raise ValueError("point_keep_prob must be in (0, 1]")


@dataclass
class FloorMap:
    """10 cm floor accumulation map. Cell ``(i, j)`` covers ``origin + ([i, i+1), [j, j+1)) * cell_size``.

    Attributes:
        origin: ``(2,)`` float64 xy of the corner of cell ``(0, 0)``, metres.
        cell_size: cell edge, metres.
        floor_z: floor height, metres.
        accumulation: ``(H, W)`` int64 occupied voxels per column.
        max_height: ``(H, W)`` float64 highest point z per column, metres (``-inf`` when empty).
        valid: ``(H, W)`` bool valid floor cells.
    """

    origin: np.ndarray
    cell_size: float
    floor_z: float
    accumulation: np.ndarray
    max_height: np.ndarray
    valid: np.ndarray

    def cell_index(self, xy: np.ndarray) -> np.ndarray:
        """``(M, 2)`` int64 cell of each ``(M, 2)`` xy position (may lie outside the map)."""
        return np.floor((np.asarray(xy, np.float64)[:, :2] - self.origin) / self.cell_size).astype(np.int64)

    def cell_centers(self, mask: np.ndarray) -> np.ndarray:
        """``(K, 2)`` float64 xy centres of the cells where ``mask`` ``(H, W)`` is true (row-major order)."""
        return (np.argwhere(mask) + 0.5) * self.cell_size + self.origin

    def placeable(self, radius: float) -> np.ndarray:
        """``(H, W)`` bool: cells whose centre admits a bounding circle of ``radius`` metres on valid cells."""
        n = int(math.ceil(radius / self.cell_size + 0.5))
        gap = np.maximum(np.abs(np.arange(-n, n + 1)) - 0.5, 0.0) * self.cell_size
        footprint = gap[:, None] ** 2 + gap[None, :] ** 2 < radius ** 2
        footprint[n, n] = True
        return scipy.ndimage.binary_erosion(self.valid, structure=footprint, border_value=0)


@dataclass
class SequenceFrame:
    """One composed frame.

    Attributes:
        coord: ``(N_f, 3)`` float32 world coordinates, metres.
        color: ``(N_f, 3)`` float32 in [0, 1], or ``None``.
        is_object: ``(N_f,)`` bool, true for object points.
        source_index: ``(N_f,)`` int64 index into the scene points (static) or the object points (object).
        pose: ``(4, 4)`` float64 object-to-world transform of this frame (given object coordinates -> world).
    """

    coord: np.ndarray
    color: np.ndarray | None
    is_object: np.ndarray
    source_index: np.ndarray
    pose: np.ndarray

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    def to_point_cloud(self) -> PointCloud:
        """The frame as a :class:`PointCloud` (``extra``: ``is_object``, ``source_index``; ``meta["object_pose"]``)."""
        return PointCloud(coord=self.coord, color=self.color,
                          extra={"is_object": self.is_object, "source_index": self.source_index},
                          meta={"object_pose": self.pose.copy()})


def frame_correspondences(a: SequenceFrame, b: SequenceFrame) -> np.ndarray:
    """``(M, 2)`` int64 ``[index in a, index in b]`` of points with the same source (scene or object point).

    Static points then coincide in world coordinates, object points in object coordinates.
    """
    ka = a.source_index * 2 + a.is_object
    kb = b.source_index * 2 + b.is_object
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    return np.stack([ia, ib], 1).astype(np.int64)


def keep_fractions(frames: Sequence[SequenceFrame], num_scene: int, num_object: int) -> tuple[float, float, np.ndarray]:
    """Discard-rule statistics: (scene fraction in every frame, pool fraction in every frame, ``(t,)`` frame fractions).

    ``num_scene`` = points of the original scan, ``num_object`` = object pool size; a frame's fraction
    is its point count over ``num_scene + num_object``. Assumes each source appears at most once per frame.
    """
    t = len(frames)
    scene_src = np.concatenate([f.source_index[~f.is_object] for f in frames] + [np.zeros(0, np.int64)])
    object_src = np.concatenate([f.source_index[f.is_object] for f in frames] + [np.zeros(0, np.int64)])
    scene_frac = float((np.bincount(scene_src, minlength=num_scene) == t).sum()) / max(num_scene, 1)
    object_frac = float((np.unique(object_src, return_counts=True)[1] == t).sum()) / max(num_object, 1)
    frame_frac = np.array([len(f) for f in frames], np.float64) / max(num_scene + num_object, 1)
    return scene_frac, object_frac, frame_frac


@dataclass
class SceneObjectSequence:
    """A composed 4D sequence: ``frames[k]`` shows the scene and the object at ``positions[k]``, ``yaws[k]``.

    Attributes:
        frames: ``t`` :class:`SequenceFrame` s.
        positions: ``(t, 2)`` float64 xy of the object's bounding-box centre, metres (cell centres).
        yaws: ``(t,)`` float64 object rotation about z, radians.
        floor_z: floor height, metres.
        chunk_lo, chunk_hi: ``(K, 3)`` float64 corners of the removed background chunks, metres.
        object_index: which of the given objects was composed.
        object_pool: ``(P,)`` int64 object point indices shown in the frames (before per-frame sampling).
        scene_keep, object_keep, frame_keep: discard-rule statistics of :func:`keep_fractions`.
    """

    frames: list[SequenceFrame]
    positions: np.ndarray
    yaws: np.ndarray
    floor_z: float
    chunk_lo: np.ndarray
    chunk_hi: np.ndarray
    object_index: int
    object_pool: np.ndarray
    scene_keep: float
    object_keep: float
    frame_keep: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def correspondences(self, i: int, j: int) -> np.ndarray:
        """``(M, 2)`` int64 point indices ``[in frame i, in frame j]`` of corresponding points."""
        return frame_correspondences(self.frames[i], self.frames[j])

    def passes(self, config: SequenceConfig) -> bool:
        """The paper's discard rules (see the module docstring)."""
        return passes_discard_rules(self.scene_keep, self.object_keep, self.frame_keep, config)


def passes_discard_rules(scene_keep: float, object_keep: float, frame_keep: np.ndarray, config: SequenceConfig) -> bool:
    """True iff scene and object consistency and every frame's retention reach the configured minima."""
    return bool(scene_keep >= config.min_scene_keep and object_keep >= config.min_object_keep
                and np.all(np.asarray(frame_keep) >= config.min_frame_keep))


def build_floor_map(scene_coord: np.ndarray, config: SequenceConfig | None = None) -> FloorMap:
    """Floor accumulation map of a static scene ``(N, 3)`` (metres, z up); see the module docstring."""
    cfg = config or SequenceConfig()
    xyz = _check_points(scene_coord, "scene")
    z = xyz[:, 2]
    p = float(np.percentile(z, cfg.floor_percentile))
    band = np.abs(z - p) <= cfg.floor_band
    floor_z = float(z[band].mean()) if band.any() else p
    origin = xyz[:, :2].min(0)
    ij = np.floor((xyz[:, :2] - origin) / cfg.cell_size).astype(np.int64)
    h, w = (ij.max(0) + 1).tolist()
    col = ij[:, 0] * w + ij[:, 1]
    k = np.floor((z - floor_z) / cfg.cell_size + 0.5).astype(np.int64)
    k -= k.min()
    occupied = np.unique(col * (int(k.max()) + 1) + k) // (int(k.max()) + 1)
    acc = np.bincount(occupied, minlength=h * w)
    max_h = np.full(h * w, -np.inf)
    np.maximum.at(max_h, col, z)
    valid = (acc >= 1) & (acc <= cfg.max_accumulation) & (np.abs(max_h - floor_z) <= cfg.height_tolerance)
    return FloorMap(origin=origin, cell_size=float(cfg.cell_size), floor_z=floor_z, accumulation=acc.reshape(h, w),
                    max_height=max_h.reshape(h, w), valid=valid.reshape(h, w))


def object_frame(object_points: np.ndarray) -> tuple[np.ndarray, float]:
    """Object anchor ``(3,)`` (xy bounding-box centre, lowest z) and bounding-circle radius (half the xy diagonal)."""
    pts = np.asarray(object_points, np.float64)
    lo, hi = pts.min(0), pts.max(0)
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return anchor, 0.5 * float(np.hypot(hi[0] - lo[0], hi[1] - lo[1]))


def sample_trajectory(candidates: np.ndarray, rng: np.random.Generator,
                      config: SequenceConfig | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions ``(t, 2)`` (metres, rows of ``candidates`` ``(K, 2)``) and yaws ``(t,)`` (radians), or ``None``.

    Start: a uniform candidate. Step: the candidate nearest the ideal point among those at an actual distance in
    ``[step_min, step_max]`` with an actual turn ``< max_turn_deg``; ``None`` when none qualifies (module docstring).
    """
    cfg = config or SequenceConfig()
    if len(candidates) == 0:
        return None
    turn = math.radians(cfg.max_turn_deg)
    cos_turn = math.cos(turn)
    idx = [int(rng.integers(len(candidates)))]
    direction, theta = None, 0.0
    for _ in range(cfg.num_frames - 1):
        d = rng.uniform(cfg.step_min, cfg.step_max)
        theta = rng.uniform(0.0, 2 * math.pi) if direction is None else theta + rng.uniform(-turn, turn)
        here = candidates[idx[-1]]
        ideal = here + d * np.array([math.cos(theta), math.sin(theta)])
        delta = candidates - here
        dist = np.hypot(delta[:, 0], delta[:, 1])
        ok = (dist >= cfg.step_min) & (dist <= cfg.step_max)
        if direction is not None:
            ok &= delta @ direction > cos_turn * dist  # angle to the previous step < max_turn
        ok_idx = np.flatnonzero(ok)
        if len(ok_idx) == 0:
            return None
        best = int(ok_idx[np.argmin(((candidates[ok_idx] - ideal) ** 2).sum(1))])
        step = candidates[best] - here
        direction = step / np.hypot(*step)
        theta = math.atan2(step[1], step[0])
        idx.append(best)
    rot = math.radians(cfg.max_rotation_step_deg)
    turns = np.cumsum(rng.uniform(-rot, rot, cfg.num_frames - 1))
    yaws = rng.uniform(0.0, 2 * math.pi) + np.concatenate([[0.0], turns])
    return candidates[np.array(idx)].copy(), yaws


def object_pose(anchor: np.ndarray, position: np.ndarray, yaw: float, floor_z: float) -> np.ndarray:
    """``(4, 4)`` float64 map of object coordinates: anchor -> ``(x, y, floor_z)``, rotated by ``yaw`` about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = np.array([position[0], position[1], floor_z]) - pose[:3, :3] @ np.asarray(anchor, np.float64)
    return pose


def sample_chunks(scene_coord: np.ndarray, rng: np.random.Generator,
                  config: SequenceConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random background chunks: ``(K, 3)`` lower and upper corners (metres), ``K ~ U{chunks_min..chunks_max}``."""
    cfg = config or SequenceConfig()
    xyz = np.asarray(scene_coord)
    cols = np.ascontiguousarray(xyz.T)  # per-axis reductions on contiguous rows are much faster than .max(0)
    k = int(rng.integers(cfg.chunks_min, cfg.chunks_max + 1))
    extent = cols.max(1).astype(np.float64) - cols.min(1)
    centres = np.take(xyz, rng.integers(len(xyz), size=k), axis=0).astype(np.float64)
    half = 0.5 * rng.uniform(cfg.chunk_size_min, cfg.chunk_size_max, size=(k, 1)) * extent
    return centres - half, centres + half


def points_in_boxes(coord: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: point inside (boundary included) any of the ``(K, 3)`` boxes ``[lo, hi]``."""
    cols = np.ascontiguousarray(np.asarray(coord, np.float64).T)  # (3, N): contiguous per-axis comparisons
    inside = np.zeros(cols.shape[1], bool)
    for a, b in zip(np.asarray(lo, np.float64), np.asarray(hi, np.float64)):  # K <= 15 boxes, vectorised over points
        inside |= (cols[0] >= a[0]) & (cols[0] <= b[0]) & (cols[1] >= a[1]) & (cols[1] <= b[1]) \
            & (cols[2] >= a[2]) & (cols[2] <= b[2])
    return inside


def compose_sequence(scene_coord: np.ndarray, scene_color: np.ndarray | None, object_points: np.ndarray,
                     object_color: np.ndarray | None, positions: np.ndarray, yaws: np.ndarray, floor_z: float,
                     rng: np.random.Generator, config: SequenceConfig | None = None,
                     object_index: int = 0) -> SceneObjectSequence:
    """Compose the frames for a given trajectory: object pool, background chunks, per-frame sampling, statistics."""
    cfg = config or SequenceConfig()
    scene = np.asarray(scene_coord)
    obj = np.asarray(object_points, np.float64)
    n_s = len(scene)
    pool = np.sort(rng.choice(len(obj), size=min(cfg.object_points, len(obj)), replace=False)).astype(np.int64)
    lo, hi = sample_chunks(scene, rng, cfg)
    background = np.flatnonzero(~points_in_boxes(scene, lo, hi))
    s_col, o_col = _colors(scene_color, object_color, n_s, len(obj))
    anchor, _ = object_frame(obj)
    frames = []
    for pos, yaw in zip(positions, yaws):
        pose = object_pose(anchor, pos, float(yaw), floor_z)
        s_idx = background[rng.random(len(background)) < cfg.point_keep_prob]
        o_idx = pool[rng.random(len(pool)) < cfg.point_keep_prob]
        o_xyz = obj[o_idx] @ pose[:3, :3].T + pose[:3, 3]
        coord = np.concatenate([np.take(scene, s_idx, axis=0).astype(np.float32), o_xyz.astype(np.float32)])
        color = None
        if s_col is not None and o_col is not None:
            color = np.concatenate([np.take(s_col, s_idx, axis=0), o_col[o_idx]])
        is_obj = np.concatenate([np.zeros(len(s_idx), bool), np.ones(len(o_idx), bool)])
        frames.append(SequenceFrame(coord=coord, color=color, is_object=is_obj,
                                    source_index=np.concatenate([s_idx, o_idx]).astype(np.int64), pose=pose))
    scene_keep, object_keep, frame_keep = keep_fractions(frames, n_s, len(pool))
    return SceneObjectSequence(frames=frames, positions=np.asarray(positions, np.float64),
                               yaws=np.asarray(yaws, np.float64), floor_z=float(floor_z), chunk_lo=lo, chunk_hi=hi,
                               object_index=object_index, object_pool=pool, scene_keep=scene_keep,
                               object_keep=object_keep, frame_keep=frame_keep)


def generate_sequences(scene_coord: np.ndarray, scene_color: np.ndarray | None,
                       object_points: np.ndarray | Sequence[np.ndarray], num_sequences: int = 20,
                       rng: np.random.Generator | int | None = None, config: SequenceConfig | None = None, *,
                       object_color: np.ndarray | Sequence[np.ndarray | None] | None = None,
                       floor_map: FloorMap | None = None) -> list[SceneObjectSequence]:
    """Up to ``num_sequences`` sequences of objects moving through one static scene.

    Args:
        scene_coord: ``(N, 3)`` scene points, metres, z up (2 cm resolution in the paper).
        scene_color: ``(N, 3)`` float in [0, 1] or uint8, or ``None``.
        object_points: one ``(N_obj, 3)`` object (metres, z up) or a list of objects; each attempt picks
            one uniformly at random.
        num_sequences: sequences wanted (20 per scan in the paper).
        rng: ``np.random.Generator`` (or a seed); all randomness is drawn from it in a fixed order.
        config: :class:`SequenceConfig`.
        object_color: colours matching ``object_points`` (an array or a list with ``None`` entries).
        floor_map: a precomputed :func:`build_floor_map` of this scene (same config).

    Returns:
        The sequences that pass the discard rules, in generation order; fewer than ``num_sequences``
        when ``num_sequences * config.max_tries`` attempts do not produce enough (e.g. no free floor).
    """
    cfg = config or SequenceConfig()
    rng = np.random.default_rng(rng)
    scene = _check_points(scene_coord, "scene").astype(np.float32)
    scene_color = _unit_color(scene_color, len(scene), "scene")  # converted once, not per sequence
    raw: list[np.ndarray]
    colors: list[np.ndarray | None]
    if isinstance(object_points, np.ndarray) and object_points.ndim == 2:  # a single object
        raw = [object_points]
        colors = [None if object_color is None else np.asarray(object_color)]
    else:
        raw = list(object_points)
        colors = list(object_color) if object_color is not None else [None] * len(raw)
    if not raw or len(colors) != len(raw):
        raise DataError("object", "need at least one object and one colour entry (or None) per object")
    objects = [_check_points(o, f"object {i}") for i, o in enumerate(raw)]
    fmap = floor_map or build_floor_map(scene, cfg)
    candidates: dict[int, np.ndarray] = {}
    out: list[SceneObjectSequence] = []
    for _ in range(num_sequences * cfg.max_tries):
        if len(out) >= num_sequences:
            break
        oi = int(rng.integers(len(objects)))
        if oi not in candidates:
            candidates[oi] = fmap.cell_centers(fmap.placeable(object_frame(objects[oi])[1]))
        traj = sample_trajectory(candidates[oi], rng, cfg)
        if traj is None:
            continue
        seq = compose_sequence(scene, scene_color, objects[oi], colors[oi], traj[0], traj[1], fmap.floor_z, rng,
                               cfg, object_index=oi)
        if seq.passes(cfg):
            out.append(seq)
    return out


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise DataError(name, f"points must have shape (N >= 1, 3), got {pts.shape}")
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        raise DataError(name, "NaN/Inf coordinates")
    return pts


def _unit_color(color: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    if color is None:
        return None
    c = np.asarray(color)
    if c.shape != (n, 3):
        raise DataError(name, f"colours must have shape {(n, 3)}, got {c.shape}")
    return (c.astype(np.float32) / 255.0) if c.dtype == np.uint8 else c.astype(np.float32, copy=False)


def _colors(scene_color, object_color, n_scene: int, n_object: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    s = _unit_color(scene_color, n_scene, "scene")
    if s is None:
        return None, None
    o = _unit_color(object_color, n_object, "object")
    return s, (np.full((n_object, 3), 0.5, np.float32) if o is None else o)
