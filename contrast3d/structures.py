"""Core data model: one scene (:class:`PointCloud`), a batch of scenes (:class:`PointBatch`),
two views of one scene with explicit matches (:class:`ViewPair`) and their batch
(:class:`PairBatch`).

Conventions (SPEC §3):

* ``PointCloud`` holds **numpy** arrays (what readers and transforms produce); ``PointBatch``
  holds **torch** tensors (what models consume).
* Coordinates are float32 metres. Colours are float32 in [0, 1]. Labels are int64 with
  ``-1`` meaning *ignore / unlabelled*.
* Every per-point array has the same first dimension ``N``. Per-point arrays that are not one
  of the named fields go into ``extra``; anything that is not per-point (scene name, camera
  pose, the voxel inverse map of the original points, ...) goes into ``meta``.
* A batch concatenates scenes along the point axis and carries Pointcept-style ``offset``
  (cumulative point counts, shape ``(B,)``) plus the per-point ``batch`` index.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from contrast3d.errors import DataError

#: Per-point fields of :class:`PointCloud` besides ``coord`` in the order they are listed.
POINT_FIELDS = ("color", "normal", "segment", "instance", "superpoint", "grid_coord")
_FLOAT3 = ("coord", "color", "normal")
_LABELS = ("segment", "instance", "superpoint")


@dataclass
class PointCloud:
    """One scene or partial scan: N points with optional attributes.

    Attributes:
        coord: ``(N, 3)`` float32, metres.
        color: ``(N, 3)`` float32 in [0, 1] (uint8 input is rescaled by :meth:`validate`).
        normal: ``(N, 3)`` float32 unit vectors.
        segment: ``(N,)`` int64 semantic class, ``-1`` = ignore.
        instance: ``(N,)`` int64 instance id, ``-1`` = none.
        superpoint: ``(N,)`` int64 over-segment id, ``-1`` = none.
        grid_coord: ``(N, 3)`` int64 voxel coordinates (set by voxelisation), in voxels.
        extra: further per-point arrays, each with first dimension ``N``.
        meta: non-per-point information (``name``, ``pose``, ``inverse`` ...).
    """

    coord: np.ndarray
    color: np.ndarray | None = None
    normal: np.ndarray | None = None
    segment: np.ndarray | None = None
    instance: np.ndarray | None = None
    superpoint: np.ndarray | None = None
    grid_coord: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    @property
    def name(self) -> str:
        return str(self.meta.get("name", ""))

    def point_arrays(self) -> dict[str, np.ndarray]:
        """All per-point arrays that are set, named fields first, then ``extra``."""
        out = {"coord": self.coord}
        for key in POINT_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    def get(self, key: str) -> np.ndarray | None:
        """A per-point array by name (named field or ``extra``), or ``None``."""
        if key == "coord" or key in POINT_FIELDS:
            return getattr(self, key)
        return self.extra.get(key)

    def set(self, key: str, value: np.ndarray | None) -> None:
        """Set a per-point array by name (named field or ``extra``)."""
        if key == "coord" or key in POINT_FIELDS:
            setattr(self, key, value)
        elif value is None:
            self.extra.pop(key, None)
        else:
            self.extra[key] = value

    def select(self, index: np.ndarray) -> "PointCloud":
        """A new cloud with the points picked by ``index`` (int indices or a bool mask).

        ``meta`` is shallow-copied; per-point arrays are indexed.
        """
        index = np.asarray(index)
        picked = {key: getattr(self, key)[index] if getattr(self, key) is not None else None
                  for key in ("coord",) + POINT_FIELDS}
        return PointCloud(**picked, extra={k: v[index] for k, v in self.extra.items()},
                          meta=dict(self.meta))

    def copy(self) -> "PointCloud":
        """A deep copy of the arrays (meta shallow-copied)."""
        arrays = {key: (None if getattr(self, key) is None else getattr(self, key).copy())
                  for key in ("coord",) + POINT_FIELDS}
        return PointCloud(**arrays, extra={k: v.copy() for k, v in self.extra.items()},
                          meta=dict(self.meta))

    def validate(self, source: str | None = None, allow_empty: bool = False) -> "PointCloud":
        """Check shapes, dtypes and finiteness; normalise dtypes in place; return ``self``.

        Raises :class:`DataError` naming ``source`` (default ``meta['path']`` or the name) for:
        an empty cloud (unless ``allow_empty``), a wrong shape, NaN/Inf coordinates, or a
        per-point array whose length differs from ``coord``.
        """
        src = source or self.meta.get("path") or self.name or "<point cloud>"
        coord = np.asarray(self.coord)
        if coord.ndim != 2 or coord.shape[1] != 3:
            raise DataError(src, f"coord must have shape (N, 3), got {coord.shape}")
        if not allow_empty and coord.shape[0] == 0:
            raise DataError(src, "empty point cloud (0 points)")
        if not np.issubdtype(coord.dtype, np.number):
            raise DataError(src, f"coord has non-numeric dtype {coord.dtype}")
        self.coord = coord.astype(np.float32, copy=False)
        if not np.isfinite(self.coord).all():
            bad = int((~np.isfinite(self.coord)).any(axis=1).sum())
            raise DataError(src, f"{bad} point(s) with NaN/Inf coordinates")
        n = coord.shape[0]
        for key, value in list(self.point_arrays().items()):
            if key == "coord":
                continue
            value = np.asarray(value)
            if value.shape[:1] != (n,):
                raise DataError(src, f"length mismatch: '{key}' has {value.shape[0] if value.ndim else 0} "
                                     f"entries for {n} points")
            if key in ("color", "normal") and (value.ndim != 2 or value.shape[1] != 3):
                raise DataError(src, f"'{key}' must have shape (N, 3), got {value.shape}")
            if key == "color":
                value = value.astype(np.float32) / 255.0 if value.dtype == np.uint8 else value.astype(np.float32, copy=False)
            elif key == "normal":
                value = value.astype(np.float32, copy=False)
                if not np.isfinite(value).all():
                    raise DataError(src, "NaN/Inf in normals")
            elif key in _LABELS:
                if value.ndim != 1:
                    raise DataError(src, f"'{key}' labels must have shape (N,), got {value.shape}")
                if not np.issubdtype(value.dtype, np.integer):
                    if np.issubdtype(value.dtype, np.floating) and np.all(np.isfinite(value)) \
                            and np.all(value == np.round(value)):
                        value = value.astype(np.int64)
                    else:
                        raise DataError(src, f"'{key}' labels must be integers, got dtype {value.dtype}")
                value = value.astype(np.int64, copy=False)
            elif key == "grid_coord":
                value = value.astype(np.int64, copy=False)
            self.set(key, value)
        return self


@dataclass
class PointBatch:
    """Several point clouds concatenated along the point axis (torch tensors).

    Attributes:
        coord: ``(N, 3)`` float32 metres.
        feat: ``(N, C)`` float32 input features of the backbone.
        grid_coord: ``(N, 3)`` int64 voxel coordinates, per scene, non-negative.
        offset: ``(B,)`` int64 cumulative point counts; scene ``b`` is
            ``[offset[b-1], offset[b])`` with ``offset[-1] = N``.
        batch: ``(N,)`` int64 scene index of each point (derived from ``offset`` if omitted).
        segment, instance, superpoint: optional ``(N,)`` int64 labels (``-1`` = ignore).
        extra: further per-point tensors (first dimension ``N``).
        meta: one dict per scene (names, inverse maps, ...).
    """

    coord: torch.Tensor
    feat: torch.Tensor
    grid_coord: torch.Tensor
    offset: torch.Tensor
    batch: torch.Tensor | None = None
    segment: torch.Tensor | None = None
    instance: torch.Tensor | None = None
    superpoint: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.batch is None:
            self.batch = offset_to_batch(self.offset)

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.offset.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PointBatch":
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device, non_blocking=non_blocking)
            elif f.name == "extra":
                moved[f.name] = {k: v.to(device, non_blocking=non_blocking) for k, v in value.items()}
        return replace(self, **moved)

    def scene_slices(self) -> list[slice]:
        """``slice`` of the point axis for each scene."""
        ends = self.offset.tolist()
        starts = [0] + ends[:-1]
        return [slice(s, e) for s, e in zip(starts, ends)]


@dataclass
class ViewPair:
    """Two views of one scene and their point correspondences.

    Attributes:
        view1, view2: the two views (each already augmented / voxelised or not).
        matches: ``(M, 2)`` int64; row ``(i, j)`` says point ``i`` of ``view1`` and point ``j``
            of ``view2`` are the same surface point.
        meta: scene-level information (scene name, frame ids, overlap ...).
    """

    view1: PointCloud
    view2: PointCloud
    matches: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, source: str | None = None) -> "ViewPair":
        src = source or self.meta.get("name") or "<view pair>"
        m = np.asarray(self.matches)
        if m.ndim != 2 or m.shape[1] != 2:
            raise DataError(src, f"matches must have shape (M, 2), got {m.shape}")
        m = m.astype(np.int64, copy=False)
        if m.size and (m.min() < 0 or m[:, 0].max() >= len(self.view1) or m[:, 1].max() >= len(self.view2)):
            raise DataError(src, "match index out of range of its view")
        self.matches = m
        return self


@dataclass
class PairBatch:
    """A batch of :class:`ViewPair` s: two :class:`PointBatch` es with global match indices.

    Attributes:
        view1, view2: the batched first and second views (same scene order).
        matches: ``(M, 2)`` int64 indices into the *concatenated* points of ``view1`` and
            ``view2``.
        match_offset: ``(B,)`` int64 cumulative match counts per scene.
        meta: one dict per pair.
    """

    view1: PointBatch
    view2: PointBatch
    matches: torch.Tensor
    match_offset: torch.Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.view1.batch_size

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PairBatch":
        return replace(self, view1=self.view1.to(device, non_blocking), view2=self.view2.to(device, non_blocking),
                       matches=self.matches.to(device, non_blocking=non_blocking),
                       match_offset=self.match_offset.to(device, non_blocking=non_blocking))


def offset_to_batch(offset: torch.Tensor) -> torch.Tensor:
    """``(B,)`` cumulative counts -> ``(N,)`` scene index of every point."""
    counts = torch.diff(offset, prepend=offset.new_zeros(1))
    return torch.repeat_interleave(torch.arange(offset.shape[0], device=offset.device), counts)


def batch_to_offset(batch: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """``(N,)`` sorted scene index -> ``(B,)`` cumulative counts."""
    size = batch_size if batch_size is not None else (int(batch.max()) + 1 if batch.numel() else 0)
    return torch.cumsum(torch.bincount(batch, minlength=size), 0)


def build_feat(cloud: PointCloud, feat_keys: Sequence[str]) -> np.ndarray:
    """Concatenate the per-point arrays named in ``feat_keys`` into an ``(N, C)`` float32 array.

    Raises :class:`DataError` if a key is missing.
    """
    parts = []
    for key in feat_keys:
        value = cloud.get(key)
        if value is None:
            raise DataError(cloud.meta.get("path") or cloud.name or "<point cloud>",
                            f"feature '{key}' requested but the cloud has no such field")
        value = np.asarray(value, dtype=np.float32)
        parts.append(value.reshape(len(cloud), -1))
    if not parts:
        return np.zeros((len(cloud), 0), np.float32)
    return np.concatenate(parts, axis=1)


def collate_points(clouds: Sequence[PointCloud], feat_keys: Sequence[str] = ("color", "normal")) -> PointBatch:
    """Concatenate voxelised clouds (``grid_coord`` set) into a :class:`PointBatch`.

    ``feat`` is built from ``feat_keys``; labels are carried when every cloud has them; per-point
    ``extra`` arrays present in every cloud are concatenated too.
    """
    if not clouds:
        raise ValueError("collate_points needs at least one cloud")
    for c in clouds:
        if c.grid_coord is None:
            raise ValueError(f"cloud '{c.name}' has no grid_coord: voxelise it before collating")
    counts = np.array([len(c) for c in clouds], dtype=np.int64)

    def cat(key: str, dtype) -> torch.Tensor | None:
        values = [c.get(key) for c in clouds]
        if any(v is None for v in values):
            return None
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(values, axis=0)).astype(dtype, copy=False))

    extra_keys = set.intersection(*(set(c.extra) for c in clouds))
    return PointBatch(
        coord=cat("coord", np.float32),
        feat=torch.from_numpy(np.concatenate([build_feat(c, feat_keys) for c in clouds], axis=0)),
        grid_coord=cat("grid_coord", np.int64),
        offset=torch.from_numpy(np.cumsum(counts)),
        segment=cat("segment", np.int64),
        instance=cat("instance", np.int64),
        superpoint=cat("superpoint", np.int64),
        extra={k: torch.from_numpy(np.concatenate([c.extra[k] for c in clouds], axis=0)) for k in sorted(extra_keys)},
        meta=[dict(c.meta) for c in clouds],
    )


def collate_pairs(pairs: Sequence[ViewPair], feat_keys: Sequence[str] = ("color", "normal")) -> PairBatch:
    """Batch :class:`ViewPair` s; match indices are shifted to index the concatenated views."""
    view1 = collate_points([p.view1 for p in pairs], feat_keys)
    view2 = collate_points([p.view2 for p in pairs], feat_keys)
    start1 = np.concatenate([[0], view1.offset[:-1].numpy()])
    start2 = np.concatenate([[0], view2.offset[:-1].numpy()])
    shifted = [np.asarray(p.matches, np.int64) + np.array([s1, s2], np.int64)
               for p, s1, s2 in zip(pairs, start1, start2)]
    counts = np.array([len(m) for m in shifted], np.int64)
    matches = np.concatenate(shifted, axis=0) if shifted else np.zeros((0, 2), np.int64)
    return PairBatch(view1=view1, view2=view2, matches=torch.from_numpy(matches.reshape(-1, 2)),
                     match_offset=torch.from_numpy(np.cumsum(counts)), meta=[dict(p.meta) for p in pairs])


def concat_clouds(clouds: Iterable[PointCloud]) -> PointCloud:
    """Concatenate clouds into one (fields kept only where every cloud has them)."""
    clouds = list(clouds)
    out = {}
    for key in ("coord",) + POINT_FIELDS:
        values = [getattr(c, key) for c in clouds]
        out[key] = None if any(v is None for v in values) else np.concatenate(values, axis=0)
    extra_keys = set.intersection(*(set(c.extra) for c in clouds)) if clouds else set()
    return PointCloud(**out, extra={k: np.concatenate([c.extra[k] for c in clouds]) for k in extra_keys},
                      meta=dict(clouds[0].meta) if clouds else {})


@dataclass
class TriangleMesh:
    """A triangle mesh with per-vertex attributes (reconstructed scans, CAD models, simulated rooms).

    Attributes:
        vertices: ``(V, 3)`` float32, metres.
        faces: ``(F, 3)`` int64 vertex indices (counter-clockwise seen from outside).
        vertex_color: ``(V, 3)`` float32 in [0, 1], or ``None``.
        vertex_normal: ``(V, 3)`` float32 unit vectors, or ``None``.
        vertex_segment, vertex_instance: ``(V,)`` int64 labels (``-1`` = ignore), or ``None``.
        vertex_extra: further per-vertex arrays (first dimension ``V``).
        meta: anything else (``name``, ``path``, class names ...).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_color: np.ndarray | None = None
    vertex_normal: np.ndarray | None = None
    vertex_segment: np.ndarray | None = None
    vertex_instance: np.ndarray | None = None
    vertex_extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def validate(self, source: str | None = None) -> "TriangleMesh":
        """Check shapes, finiteness and face indices; normalise dtypes; return ``self``."""
        src = source or self.meta.get("path") or self.meta.get("name") or "<mesh>"
        v = np.asarray(self.vertices)
        f = np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3:
            raise DataError(src, f"vertices must have shape (V, 3), got {v.shape}")
        if v.shape[0] == 0:
            raise DataError(src, "mesh has no vertices")
        if f.ndim != 2 or f.shape[1] != 3:
            raise DataError(src, f"faces must have shape (F, 3), got {f.shape}")
        if not np.isfinite(v).all():
            raise DataError(src, "NaN/Inf vertex coordinates")
        if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
            raise DataError(src, f"face index out of range [0, {v.shape[0]})")
        self.vertices = v.astype(np.float32, copy=False)
        self.faces = f.astype(np.int64, copy=False)
        # Reuse the point-cloud checks for the per-vertex arrays.
        cloud = self.to_point_cloud().validate(src)
        self.vertex_color, self.vertex_normal = cloud.color, cloud.normal
        self.vertex_segment, self.vertex_instance = cloud.segment, cloud.instance
        self.vertex_extra = cloud.extra
        return self

    def to_point_cloud(self) -> PointCloud:
        """The vertices as a :class:`PointCloud` (arrays shared, not copied)."""
        return PointCloud(coord=self.vertices, color=self.vertex_color, normal=self.vertex_normal,
                          segment=self.vertex_segment, instance=self.vertex_instance,
                          extra=dict(self.vertex_extra), meta=dict(self.meta))
