"""4DContrast training samples: scene-object sequences generated on the fly from Pointcept scenes.

One sample (:meth:`SceneObjectSequenceDataset.get_sample`) is one sequence ``F_0 .. F_{t-1}`` of
:func:`contrast3d.data.fourd.generate_sequences` (an object moving over the floor of a static scan,
background chunks removed, per-frame point sampling; all rules and their defaults are documented
there) turned into a :class:`~contrast3d.structures.MultiView` of ``t + 1`` views:

* views ``0 .. t-1``: the frames as **3D views**, each rigidly augmented on its own (random
  rotation, scale, shift; the paper's "random rotation, translation, and scaling to each
  individually considered 3D frame") and voxelised at ``grid_size`` (2 cm) with one random point
  per voxel;
* view ``t``: the **4D view**, all frames concatenated in their common (un-augmented) world frame
  with ``extra["time"]`` = frame index and voxelised in space-time at ``grid_size_4d`` (5 cm) by
  :class:`~contrast3d.data.voxelize4d.GridSample4D`: ``grid_coord`` is ``(M, 4)``.

Matches (``pair_matches``, indices into the views):

* ``(i, j)``, ``i < j < t`` (3D-3D): the sequence's exact correspondences
  (:meth:`~contrast3d.data.fourd.SceneObjectSequence.correspondences`: the same scene point, or the
  same object point) restricted to points *kept* by both views' voxelisation / crop
  (:func:`~contrast3d.data.views.kept_index`); a matched pair is therefore one and the same source
  point (same world position before augmentation for static points, same object-local position
  for object points), never a nearest-neighbour guess.
* ``(i, t)`` (3D-4D): every point of 3D view ``i`` and the space-time voxel of the 4D view that
  contains the same source point in frame ``i`` (through the 4D voxeliser's ``inverse``), so every
  3D point has exactly one 4D partner. 4D-4D matches are not stored: the method composes them from
  ``(i, j)``, ``(i, t)`` and ``(j, t)``.

Decisions the paper leaves open (all configurable in :class:`SequenceDataConfig`):

* **On the fly, not prepared.** A sequence costs ~5-20 ms (floor map cached per scene), far less
  than a training step, and a stored sequence would be t copies of a scan; so there is no
  ``prepare sequences`` step and every epoch sees new trajectories, objects and chunks.
* **Scene resolution.** Scenes (and objects) are voxel-downsampled once, deterministically (lowest
  index per voxel), to ``scene_grid_size`` (2 cm, the paper's "2cm resolution for the scene")
  before composing; 0 keeps the stored points.
* **Objects.** With ``objects_dir`` set: every OFF/OBJ/PLY file below it (read by
  :func:`contrast3d.io.read_any`); meshes are sampled area-weighted with ``cad_points`` surface
  points (seeded by the file name, so an object is the same in every run), point-cloud files are
  subsampled to at most ``cad_points``; coordinates are multiplied by ``cad_scale`` (metres) and
  turned z-up when ``cad_up="y"``. By default (no ``objects_dir``) objects are **furniture cut
  from the other scenes' instance labels** (``instance.npy``; an instance's class is the majority
  ``segment`` label), so pre-training needs no extra data: ScanNet-20 classes ``object_classes``
  (default cabinet, chair, sofa, table, desk, toilet, bathtub: the paper's eight ModelNet
  categories mapped to ScanNet-20; dresser and nightstand are cabinets), at least
  ``min_object_points`` points after downsampling and an xy bounding-box diagonal of at most
  ``max_object_size`` metres. An empty ``object_classes`` takes every instance (scenes without
  semantic labels). With a single scene its own furniture is used.
* **Failures.** A try draws ``objects_per_try`` candidate objects (uniformly, without replacement)
  and runs ``sequence.max_tries`` trajectory attempts over them; when no sequence passes the
  discard rules the next try uses a random other scene, up to ``scene_tries`` tries, then a
  :class:`DataError` names the scene.
* **Frame augmentation.** Rotation about the up axis (``rotation="z"``, uniform in
  ``[-pi, pi)``; ``so3`` and ``none`` available), uniform scale in ``scale`` (0.8-1.2), shift in
  ``[-shift, shift]`` metres per axis (0.2), colour augmentation (chromatic auto-contrast,
  translation, jitter) only when ``color`` is an input feature and ``color_aug``; then 3D voxels
  and an optional random sphere crop to ``max_points`` (0 = whole frames, as the paper). The 4D
  view is never augmented nor cropped (the paper augments "the static 3D frame interpretations of
  the sequence (but not the sequence)").
* **Input features.** Geometry only (``feat_keys: [ones]``, the paper); ``[color]`` (or
  ``[ones, color]``) as an option. Frames carry no normals, so only ``ones`` and ``color`` exist.
* **Per-point bookkeeping.** Views keep ``extra["is_object"]`` and ``extra["source_index"]`` (4D
  also ``extra["time"]``) and ``meta["origin_index"]`` (index into the frame / the concatenated
  sequence); the voxelisers' ``inverse`` and ``sample_index`` are dropped from the returned views
  (large and no longer needed once the matches exist).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from contrast3d.data import transforms as T
from contrast3d.data.fourd import FloorMap, SceneObjectSequence, SequenceConfig, build_floor_map, generate_sequences
from contrast3d.data.scene_dataset import pretraining_scene_dirs
from contrast3d.data.views import augment_view, kept_index
from contrast3d.data.voxelize import GridSample, voxelize
from contrast3d.data.voxelize4d import GridSample4D
from contrast3d.errors import DataError, read_or_skip
from contrast3d.io.pointcept import read_pointcept_scene
from contrast3d.structures import MultiView, PointCloud, TriangleMesh

#: The paper's ModelNet furniture categories as ScanNet-20 ids: cabinet (dresser, nightstand), chair, sofa,
#: table, desk, toilet, bathtub.
DEFAULT_OBJECT_CLASSES = (2, 4, 5, 6, 12, 16, 18)
CAD_SUFFIXES = (".off", ".obj", ".ply")
FEAT_KEYS = ("ones", "color")


@dataclass
class SequenceDataConfig:
    """The ``data`` section of 4DContrast (module docstring for every decision).

    Attributes:
        grid_size: 3D voxel edge, metres (paper 2 cm).
        grid_size_4d: spatial edge of the 4D voxels, metres (paper 5 cm); time is one voxel per frame.
        feat_keys: backbone input, ``ones`` (geometry only, default) and/or ``color``.
        scene_grid_size: scenes and objects are downsampled to this before composing (0 = as stored).
        sequence: the sequence generation rules (:class:`~contrast3d.data.fourd.SequenceConfig`).
        objects_dir: folder of OFF/OBJ/PLY objects; ``None`` = furniture cut from the other scenes.
        object_classes: ScanNet-20 classes of scene instances used as objects (empty = all instances).
        min_object_points: smallest object (points after downsampling).
        max_object_size: largest object xy bounding-box diagonal, metres.
        cad_points: surface points sampled per CAD mesh (or kept per point-cloud file).
        cad_scale: CAD coordinates are multiplied by this to get metres.
        cad_up: CAD up axis, ``z`` or ``y`` (turned to z-up).
        objects_per_try: candidate objects drawn per try; scene_tries: tries before a DataError.
        rotation: per-frame rotation: ``z`` (up axis), ``so3`` or ``none``.
        scale: per-frame uniform scale range; shift: per-frame translation range, metres.
        color_aug: colour augmentation per frame (only when ``color`` is an input feature).
        max_points: cap on the points of each 3D view (random sphere crop; 0 = no cap).
        strict: stop at the first unreadable scene / object file instead of skipping it.
    """

    grid_size: float = 0.02
    grid_size_4d: float = 0.05
    feat_keys: list[str] = field(default_factory=lambda: ["ones"])
    scene_grid_size: float = 0.02
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    objects_dir: str | None = None
    object_classes: list[int] = field(default_factory=lambda: list(DEFAULT_OBJECT_CLASSES))
    min_object_points: int = 100
    max_object_size: float = 2.0
    cad_points: int = 5000
    cad_scale: float = 1.0
    cad_up: Literal["z", "y"] = "z"
    objects_per_try: int = 4
    scene_tries: int = 5
    rotation: Literal["z", "so3", "none"] = "z"
    scale: list[float] = field(default_factory=lambda: [0.8, 1.2])
    shift: float = 0.2
    color_aug: bool = True
    max_points: int = 0
    strict: bool = False

    def __post_init__(self) -> None:
        if self.grid_size <= 0 or self.grid_size_4d <= 0 or self.scene_grid_size < 0:
            raise ValueError("data.grid_size and data.grid_size_4d must be > 0, data.scene_grid_size >= 0")
        bad = [k for k in self.feat_keys if k not in FEAT_KEYS]
        if bad or not self.feat_keys:
            raise ValueError(f"data.feat_keys must be a non-empty subset of {list(FEAT_KEYS)} (sequence frames "
                             f"carry no normals), got {self.feat_keys}")
        if self.objects_per_try < 1 or self.scene_tries < 1 or self.min_object_points < 1 or self.cad_points < 1:
            raise ValueError("data.objects_per_try, scene_tries, min_object_points and cad_points must be >= 1")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"data.scale must be [lo, hi] with 0 < lo <= hi, got {self.scale}")


@dataclass
class ObjectShape:
    """An object to move through scenes.

    Attributes:
        coord: ``(N, 3)`` float32 points, metres, z up (any position: the sequence places it).
        color: ``(N, 3)`` float32 in [0, 1] or ``None``.
        source: where it came from (``scene:instance`` or the CAD file).
        scene: index of the scene it was cut from (``-1`` for CAD objects).
    """

    coord: np.ndarray
    color: np.ndarray | None
    source: str
    scene: int = -1


def downsample_index(coord: np.ndarray, grid_size: float) -> np.ndarray:
    """``(M,)`` int64 ascending indices keeping the lowest-index point per voxel (all points when ``grid_size`` 0)."""
    if grid_size <= 0 or len(coord) == 0:
        return np.arange(len(coord), dtype=np.int64)
    return np.sort(voxelize(coord, grid_size)[1])


def scene_objects(cloud: PointCloud, cfg: SequenceDataConfig, scene: int = -1) -> list[ObjectShape]:
    """Furniture instances of a (downsampled) scene as objects (module docstring for the rules).

    An instance's class is its most frequent ``segment`` label; instances of ``cfg.object_classes``
    (all instances when empty) with ``>= min_object_points`` points and an xy diagonal ``<= max_object_size``.
    """
    if cloud.instance is None or len(cloud) == 0:
        return []
    inst = np.asarray(cloud.instance, np.int64)
    valid = inst >= 0
    if cfg.object_classes:
        if cloud.segment is None:
            return []
        valid &= np.asarray(cloud.segment) >= 0
    ids = np.flatnonzero(valid)
    if len(ids) == 0:
        return []
    order = ids[np.argsort(inst[ids], kind="stable")]
    uniq, starts = np.unique(inst[order], return_index=True)
    groups = np.split(order, starts[1:])
    out = []
    for iid, members in zip(uniq.tolist(), groups):  # one iteration per instance, not per point
        if cfg.object_classes:
            labels, counts = np.unique(np.asarray(cloud.segment)[members], return_counts=True)
            if int(labels[np.argmax(counts)]) not in cfg.object_classes:
                continue
        pts = cloud.coord[members]
        extent = pts.max(0) - pts.min(0)
        if len(members) < cfg.min_object_points or math.hypot(extent[0], extent[1]) > cfg.max_object_size:
            continue
        color = None if cloud.color is None else cloud.color[members]
        out.append(ObjectShape(pts.astype(np.float32), color, f"{cloud.name}:{iid}", scene))
    return out


def sample_mesh_surface(mesh: TriangleMesh, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """``num`` area-weighted random surface points ``(num, 3)`` float32 and their vertex colours (or ``None``)."""
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    if len(f) == 0:
        raise DataError(mesh.meta.get("path", "<mesh>"), "mesh has no faces to sample")
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    if not area.sum() > 0:
        raise DataError(mesh.meta.get("path", "<mesh>"), "mesh has zero surface area")
    face = rng.choice(len(f), size=num, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(num)), rng.random(num)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    pts = (v[f[face]] * w[:, :, None]).sum(1).astype(np.float32)
    color = None
    if mesh.vertex_color is not None:
        color = np.clip((mesh.vertex_color[f[face]].astype(np.float64) * w[:, :, None]).sum(1), 0, 1).astype(np.float32)
    return pts, color


def read_cad_object(path: Path, cfg: SequenceDataConfig) -> ObjectShape:
    """One CAD object file (OFF/OBJ/PLY mesh or PLY points) as an :class:`ObjectShape` (module docstring)."""
    from contrast3d.io import read_any

    data = read_any(path)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    if isinstance(data, TriangleMesh) and data.num_faces > 0:
        coord, color = sample_mesh_surface(data, cfg.cad_points, rng)
    else:
        cloud = data.to_point_cloud() if isinstance(data, TriangleMesh) else data
        keep = np.sort(rng.choice(len(cloud), size=min(cfg.cad_points, len(cloud)), replace=False))
        coord, color = cloud.coord[keep], None if cloud.color is None else cloud.color[keep]
    coord = coord.astype(np.float64) * cfg.cad_scale
    if cfg.cad_up == "y":
        coord = np.column_stack([coord[:, 0], -coord[:, 2], coord[:, 1]])
    keep = downsample_index(coord, cfg.scene_grid_size)
    if len(keep) < 1 or not np.isfinite(coord).all():
        raise DataError(path, "object has no usable points")
    return ObjectShape(coord[keep].astype(np.float32), None if color is None else color[keep], str(path))


def load_cad_objects(folder: str | Path, cfg: SequenceDataConfig, skipped: list | None = None) -> list[ObjectShape]:
    """Every OFF/OBJ/PLY file below ``folder`` as an object (sorted by path)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(root, "objects folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CAD_SUFFIXES)
    good = read_or_skip(files, lambda p: read_cad_object(p, cfg), "raise" if cfg.strict else "skip",
                        skipped if skipped is not None else [])
    if not good:
        raise DataError(root, f"no readable {'/'.join(s[1:].upper() for s in CAD_SUFFIXES)} objects found")
    return [obj for _, obj in good]


def frame_transform(cfg: SequenceDataConfig) -> T.Compose:
    """Per-3D-frame augmentation: rotation -> scale -> shift -> [colour] -> 3D voxels -> [sphere crop]."""
    steps: list = []
    if cfg.rotation != "none":
        steps.append(T.RandomRotate(angle=(-math.pi, math.pi), axis="xyz" if cfg.rotation == "so3" else "z", p=1.0))
    steps.append(T.RandomScale(tuple(cfg.scale)))
    if cfg.shift > 0:
        steps.append(T.RandomShift(((-cfg.shift, cfg.shift),) * 3))
    if cfg.color_aug and "color" in cfg.feat_keys:
        steps += [T.ChromaticAutoContrast(), T.ChromaticTranslation(), T.ChromaticJitter()]
    steps.append(GridSample(cfg.grid_size, mode="train"))
    if cfg.max_points > 0:
        steps.append(T.SphereCrop(point_max=cfg.max_points, mode="random"))
    return T.Compose(steps)


def _slim(view: PointCloud) -> PointCloud:
    for key in ("inverse", "sample_index"):
        view.meta.pop(key, None)
    return view


def sequence_views(seq: SceneObjectSequence, transform, voxelize_4d: GridSample4D, rng: np.random.Generator,
                   meta: dict | None = None) -> MultiView:
    """The ``t`` augmented 3D views, the 4D view and their matches of one sequence (module docstring).

    Args:
        seq: a generated sequence (frames in world coordinates).
        transform: per-3D-frame augmentation ``(cloud, rng) -> cloud`` (e.g. :func:`frame_transform`).
        voxelize_4d: the space-time voxeliser of the 4D view.
        rng: all randomness (3D frames in order, then the 4D voxels).

    Returns:
        ``MultiView`` with ``views[:t]`` 3D (``grid_coord`` ``(N_i, 3)``), ``views[t]`` 4D (``(M, 4)``) and
        ``pair_matches`` ``(i, j)`` for ``i < j < t`` and ``(i, t)``.
    """
    frames = [f.to_point_cloud() for f in seq.frames]
    t = len(frames)
    views, kept, position = [], [], []
    for f in frames:
        view, _ = augment_view(f, transform, rng)
        k = kept_index(view, len(f))
        pos = np.full(len(f), -1, np.int64)
        pos[k] = np.arange(len(k))
        views.append(view)
        kept.append(k)
        position.append(pos)
    sizes = np.array([len(f) for f in frames], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    colors = [f.color for f in frames]
    joined = PointCloud(
        coord=np.concatenate([f.coord for f in frames]),
        color=None if any(c is None for c in colors) else np.concatenate([c for c in colors if c is not None]),
        extra={"time": np.repeat(np.arange(t, dtype=np.int64), sizes),
               "is_object": np.concatenate([f.extra["is_object"] for f in frames]),
               "source_index": np.concatenate([f.extra["source_index"] for f in frames])},
        meta={"name": frames[0].name})
    view4 = voxelize_4d(joined, rng)
    inverse4 = view4.meta["inverse"]
    matches: dict[tuple[int, int], np.ndarray] = {}
    for i in range(t):
        for j in range(i + 1, t):
            corr = seq.correspondences(i, j)
            a, b = position[i][corr[:, 0]], position[j][corr[:, 1]]
            ok = (a >= 0) & (b >= 0)
            matches[(i, j)] = np.stack([a[ok], b[ok]], 1)
        matches[(i, t)] = np.stack([np.arange(len(kept[i]), dtype=np.int64), inverse4[starts[i] + kept[i]]], 1)
    out = MultiView([_slim(v) for v in views] + [_slim(view4)], matches, meta=dict(meta or {}))
    return out.validate()


@dataclass
class _Scene:
    coord: np.ndarray
    color: np.ndarray | None
    floor_map: FloorMap


class SceneObjectSequenceDataset(Dataset):
    """One 4DContrast sequence sample per scene and epoch (module docstring).

    Args:
        scene_dirs: Pointcept scene folders (``coord.npy`` [+ ``color.npy``, ``segment*.npy``, ``instance.npy``]).
        cfg: the ``data`` section.
        on_error: ``"skip"`` unreadable scenes / object files (listed in ``self.skipped``) or ``"raise"``.
        cache: keep each downsampled scene and its floor map in memory after first use (per process).

    Raises :class:`DataError` when no scene is readable or no object is available.
    """

    def __init__(self, scene_dirs: Iterable[str | Path], cfg: SequenceDataConfig, on_error: str = "skip",
                 cache: bool = True):
        self.cfg = cfg
        self.cache = cache
        self.skipped: list[DataError] = []
        dirs = [Path(d) for d in scene_dirs]
        objects_dir = cfg.objects_dir
        cad = objects_dir is not None
        good = read_or_skip(dirs, lambda d: self._index_scene(d, not cad), on_error, self.skipped)
        if not good:
            raise DataError(next(iter(map(str, dirs)), "<no scenes>"),
                            "no readable scenes" + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))
        self.scene_dirs = [d for d, _ in good]
        if objects_dir is not None:
            self.objects = load_cad_objects(objects_dir, cfg, self.skipped)
        else:
            self.objects = [ObjectShape(o.coord, o.color, o.source, i) for i, (_, objs) in enumerate(good)
                            for o in objs]
        if not self.objects:
            raise DataError(dirs[0].parent if dirs else "<no scenes>",
                            "no objects: no scene instance of classes "
                            f"{cfg.object_classes} with >= {cfg.min_object_points} points and an xy size <= "
                            f"{cfg.max_object_size} m; set data.objects_dir to a folder of OFF/OBJ/PLY objects")
        self._object_scene = np.array([o.scene for o in self.objects], np.int64)
        self._scenes: dict[int, _Scene] = {}

    def _index_scene(self, folder: Path, with_objects: bool) -> list[ObjectShape]:
        cloud = read_pointcept_scene(folder)
        if not with_objects:
            return []
        return scene_objects(cloud.select(downsample_index(cloud.coord, self.cfg.scene_grid_size)), self.cfg)

    def __len__(self) -> int:
        return len(self.scene_dirs)

    def scene(self, index: int) -> _Scene:
        """Downsampled scene ``index`` (coords, colours) and its floor map (cached)."""
        if index in self._scenes:
            return self._scenes[index]
        cloud = read_pointcept_scene(self.scene_dirs[index])
        keep = downsample_index(cloud.coord, self.cfg.scene_grid_size)
        coord = cloud.coord[keep]
        color = None if cloud.color is None else cloud.color[keep]
        out = _Scene(coord, color, build_floor_map(coord, self.cfg.sequence))
        if self.cache:
            self._scenes[index] = out
        return out

    def object_candidates(self, scene: int) -> np.ndarray:
        """Indices of the objects usable in ``scene``: those from other scenes (all if there are none)."""
        other = np.flatnonzero(self._object_scene != scene)
        return other if len(other) else np.arange(len(self.objects))

    def make_sequence(self, index: int, rng: np.random.Generator) -> tuple[int, ObjectShape, SceneObjectSequence]:
        """``(scene index, object, sequence)``: first in scene ``index``, then in random other scenes."""
        cfg = self.cfg
        for attempt in range(cfg.scene_tries):
            si = index if attempt == 0 else int(rng.integers(len(self)))
            scene = self.scene(si)
            pool = self.object_candidates(si)
            pick = rng.choice(pool, size=min(cfg.objects_per_try, len(pool)), replace=False)
            objs = [self.objects[k] for k in pick]
            seqs = generate_sequences(scene.coord, scene.color, [o.coord for o in objs], 1, rng, cfg.sequence,
                                      object_color=[o.color for o in objs], floor_map=scene.floor_map)
            if seqs:
                return si, objs[seqs[0].object_index], seqs[0]
        raise DataError(self.scene_dirs[index], f"no scene-object sequence passed the discard rules in "
                                                f"{cfg.scene_tries} tries of {cfg.sequence.max_tries} trajectories "
                                                "(no free floor for the objects?)")

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:
        si, obj, seq = self.make_sequence(index, rng)
        meta = {"name": self.scene_dirs[si].name, "scene": str(self.scene_dirs[si]), "index": int(index),
                "object": obj.source, "num_frames": seq.num_frames}
        return sequence_views(seq, frame_transform(self.cfg), GridSample4D(self.cfg.grid_size_4d), rng, meta)

    def __getitem__(self, index: int) -> MultiView:
        return self.get_sample(index, np.random.default_rng(index))


def build_sequence_dataset(root: str, cfg: SequenceDataConfig) -> SceneObjectSequenceDataset:
    """The 4DContrast dataset over the Pointcept scene folders under ``root`` (``prepare scenes`` / ``simulate``)."""
    scenes = pretraining_scene_dirs(root)  # never val/ or test/ scenes of a Pointcept root
    if not scenes:
        raise DataError(Path(root), "no Pointcept scene folders (coord.npy) found; run 'contrast3d simulate' or "
                                    "'contrast3d prepare scenes' first")
    return SceneObjectSequenceDataset(scenes, cfg, on_error="raise" if cfg.strict else "skip")


__all__ = ["SequenceDataConfig", "ObjectShape", "SceneObjectSequenceDataset", "build_sequence_dataset",
           "sequence_views", "frame_transform", "scene_objects", "load_cad_objects", "read_cad_object",
           "sample_mesh_surface", "downsample_index", "DEFAULT_OBJECT_CLASSES"]
