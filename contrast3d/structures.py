"""Core data model: one scene (:class:`PointCloud`), a batch of scenes (:class:`PointBatch`),
K >= 1 views of one sample with explicit matches per pair of views and an optional image
(:class:`MultiView`) and their batch (:class:`ViewBatch`; ``PairBatch`` is its K = 2 name).

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
* Per-point *id* arrays (:data:`ID_KEYS`: ``instance``, ``superpoint``, ``region``) are made
  unique across the samples of a batch by collation (``-1`` stays ``-1``); all views of one sample
  get the same shift, so an id names the same segment in every view.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

from contrast3d.errors import DataError

#: Per-point fields of :class:`PointCloud` besides ``coord`` in the order they are listed.
POINT_FIELDS = ("color", "normal", "segment", "instance", "superpoint", "grid_coord")
_FLOAT3 = ("coord", "color", "normal")
_LABELS = ("segment", "instance", "superpoint")
#: Per-point id arrays shifted per sample by collation so ids are unique within a batch.
ID_KEYS = ("instance", "superpoint", "region")


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

    def select(self, index: np.ndarray) -> PointCloud:
        """A new cloud with the points picked by ``index`` (int indices or a bool mask).

        ``meta`` is shallow-copied; per-point arrays are indexed.
        """
        index = np.asarray(index)
        picked: dict[str, Any] = {key: getattr(self, key)[index] if getattr(self, key) is not None else None
                  for key in ("coord",) + POINT_FIELDS}
        return PointCloud(**picked, extra={k: v[index] for k, v in self.extra.items()},
                          meta=dict(self.meta))

    def copy(self) -> PointCloud:
        """A deep copy of the arrays (meta shallow-copied)."""
        arrays: dict[str, Any] = {key: (None if getattr(self, key) is None else getattr(self, key).copy())
                  for key in ("coord",) + POINT_FIELDS}
        return PointCloud(**arrays, extra={k: v.copy() for k, v in self.extra.items()},
                          meta=dict(self.meta))

    def validate(self, source: str | None = None, allow_empty: bool = False) -> PointCloud:
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
                value = (value.astype(np.float32) / 255.0 if value.dtype == np.uint8
                         else value.astype(np.float32, copy=False))
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

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PointBatch:
        """A copy with every tensor moved to ``device``."""
        moved: dict[str, Any] = {}
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
class MultiView:
    """K >= 1 views of one sample (two scans of a scene, two augmentations, a sequence's frames,
    one RGB-D frame with its image) and how they correspond.

    Attributes:
        views: the K views (each augmented / voxelised or not).
        pair_matches: ``{(i, j): (M, 2) int64}`` for view pairs ``i < j``; row ``(a, b)`` says point
            ``a`` of view ``i`` and point ``b`` of view ``j`` are the same surface point.
        image: optional ``(3, H, W)`` float32 image in [0, 1] belonging to view 0.
        pixels: ``(P, 3)`` int64 rows ``(point of view 0, row, col)`` of the points seen in ``image``.
        meta: sample-level information (scene name, frame ids, overlap ...).
    """

    views: list[PointCloud]
    pair_matches: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    image: np.ndarray | None = None
    pixels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def view1(self) -> PointCloud:
        return self.views[0]

    @property
    def view2(self) -> PointCloud:
        return self.views[1]

    @property
    def matches(self) -> np.ndarray:
        """The ``(M, 2)`` matches of views 0 and 1."""
        return self.pair_matches[(0, 1)]

    def validate(self, source: str | None = None) -> MultiView:
        """Check match and pixel index shapes and ranges; return ``self`` (int64 indices)."""
        src = source or self.meta.get("name") or "<views>"
        if not self.views:
            raise DataError(src, "a sample needs at least one view")
        for (i, j), m in list(self.pair_matches.items()):
            if not (0 <= i < j < len(self.views)):
                raise DataError(src, f"match key {(i, j)} is not a pair i < j of the {len(self.views)} views")
            m = np.asarray(m)
            if m.ndim != 2 or m.shape[1] != 2:
                raise DataError(src, f"matches {(i, j)} must have shape (M, 2), got {m.shape}")
            m = m.astype(np.int64, copy=False)
            if m.size and (m.min() < 0 or m[:, 0].max() >= len(self.views[i]) or m[:, 1].max() >= len(self.views[j])):
                raise DataError(src, f"match index out of range of its view {(i, j)}")
            self.pair_matches[(i, j)] = m
        if self.image is not None:
            img = np.asarray(self.image)
            if img.ndim != 3 or img.shape[0] != 3:
                raise DataError(src, f"image must have shape (3, H, W), got {img.shape}")
            px = np.zeros((0, 3), np.int64) if self.pixels is None else np.asarray(self.pixels, np.int64)
            if px.ndim != 2 or px.shape[1] != 3:
                raise DataError(src, f"pixels must have shape (P, 3), got {px.shape}")
            if px.size and (px.min() < 0 or px[:, 0].max() >= len(self.views[0]) or px[:, 1].max() >= img.shape[1]
                            or px[:, 2].max() >= img.shape[2]):
                raise DataError(src, "pixel index out of range of view 0 or the image")
            self.image, self.pixels = img.astype(np.float32, copy=False), px
        return self


def view_pair(view1: PointCloud, view2: PointCloud, matches: np.ndarray,
              meta: dict[str, Any] | None = None) -> MultiView:
    """The K = 2 :class:`MultiView`: two views and their ``(M, 2)`` matches."""
    return MultiView([view1, view2], {(0, 1): matches}, meta=dict(meta or {}))


@dataclass
class ViewBatch:
    """A batch of :class:`MultiView` s: one :class:`PointBatch` per view index, global match indices.

    Attributes:
        views: ``K`` batched views (same sample order in each).
        pair_matches: ``{(i, j): (M, 2) int64}`` indices into the *concatenated* points of views
            ``i`` and ``j``.
        pair_match_offset: ``{(i, j): (B,) int64}`` cumulative match counts per sample.
        images: ``(B, 3, H, W)`` float32 images of view 0 (``None`` without images).
        pixel_point: ``(P,)`` int64 point of ``views[0]`` seen by a pixel.
        pixel_index: ``(P, 3)`` int64 ``(image, row, col)`` of that pixel.
        meta: one dict per sample.
    """

    views: list[PointBatch]
    pair_matches: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    pair_match_offset: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    images: torch.Tensor | None = None
    pixel_point: torch.Tensor | None = None
    pixel_index: torch.Tensor | None = None
    meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.views[0].batch_size

    @property
    def view1(self) -> PointBatch:
        return self.views[0]

    @property
    def view2(self) -> PointBatch:
        return self.views[1]

    @property
    def matches(self) -> torch.Tensor:
        return self.pair_matches[(0, 1)]

    @property
    def match_offset(self) -> torch.Tensor:
        return self.pair_match_offset[(0, 1)]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ViewBatch:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(self, views=[v.to(device, non_blocking) for v in self.views],
                       pair_matches={k: v.to(device, non_blocking=non_blocking) for k, v in self.pair_matches.items()},
                       pair_match_offset={k: v.to(device, non_blocking=non_blocking)
                                          for k, v in self.pair_match_offset.items()},
                       images=mv(self.images), pixel_point=mv(self.pixel_point), pixel_index=mv(self.pixel_index))


#: The K = 2 case of :class:`ViewBatch` (PointContrast-style pairs).
PairBatch = ViewBatch


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

    ``"ones"`` is a constant 1 per point (geometry-only input). A missing key raises
    :class:`DataError` naming the scene and the two ways out: add the field (normals:
    ``contrast3d prepare scenes``) or drop it from the input (``--set data.feat_keys=[...]`` with the
    matching ``model.in_channels``).
    """
    parts = []
    for key in feat_keys:
        if key == "ones":  # geometry only: a constant input feature
            parts.append(np.ones((len(cloud), 1), np.float32))
            continue
        value = cloud.get(key)
        if value is None:
            source = cloud.meta.get("path") or cloud.name or "<point cloud>"
            rest = [k for k in feat_keys if k != key] or ["ones"]
            width = sum(1 if k == "ones" else (3 if cloud.get(k) is None else
                                               int(np.asarray(cloud.get(k)).reshape(len(cloud), -1).shape[1]))
                        for k in rest)
            drop = f"--set data.feat_keys=[{', '.join(rest)}] --set model.in_channels={width}"
            listed = f"data.feat_keys=[{', '.join(feat_keys)}]"
            if key == "normal":
                raise DataError(source, f"scene has no normals (normal.npy) but {listed} asks for them: add "
                                        f"normals with 'contrast3d prepare scenes --input SCENES --out DIR' and use "
                                        f"DIR, or leave them out with {drop}")
            raise DataError(source, f"scene has no '{key}' ({key}.npy) but {listed} asks for it: leave it out "
                                    f"with {drop}")
        value = np.asarray(value, dtype=np.float32)
        parts.append(value.reshape(len(cloud), -1))
    if not parts:
        return np.zeros((len(cloud), 0), np.float32)
    return np.concatenate(parts, axis=1)


def id_offsets(samples: Sequence[Sequence[PointCloud]], keys: Sequence[str] = ID_KEYS) -> dict[str, np.ndarray]:
    """Per-sample shifts ``{key: (B,) int64}`` making id arrays unique across a batch.

    ``samples[b]`` are the views of sample ``b``; the shift of sample ``b`` is the sum over earlier
    samples of ``1 + max id`` over all their views, so every view of one sample shifts alike.
    """
    out = {}
    for key in keys:
        tops = []
        for views in samples:
            values = [c.get(key) for c in views]
            tops.append(max((int(v.max()) + 1 for v in values if v is not None and len(v)), default=0))
        out[key] = np.concatenate([[0], np.cumsum(tops)[:-1]]).astype(np.int64)
    return out


def _shift_ids(values: list[np.ndarray], shifts: np.ndarray) -> np.ndarray:
    parts = [np.where(v >= 0, v.astype(np.int64) + s, -1) for v, s in zip(values, shifts)]
    return np.concatenate(parts, axis=0)


def collate_points(clouds: Sequence[PointCloud], feat_keys: Sequence[str] = ("color", "normal"),
                   shifts: dict[str, np.ndarray] | None = None) -> PointBatch:
    """Concatenate voxelised clouds (``grid_coord`` set) into a :class:`PointBatch`.

    ``feat`` is built from ``feat_keys``; labels are carried when every cloud has them; per-point
    ``extra`` arrays present in every cloud are concatenated too. Id arrays (:data:`ID_KEYS`) are
    shifted per cloud to be unique in the batch (``shifts`` from :func:`id_offsets`, default: each
    cloud its own sample). Raises ``ValueError`` for an ``extra`` array that is not per point.
    """
    if not clouds:
        raise ValueError("collate_points needs at least one cloud")
    for c in clouds:
        if c.grid_coord is None:
            raise ValueError(f"cloud '{c.name}' has no grid_coord: voxelise it before collating")
        for key, value in c.extra.items():
            if np.ndim(value) == 0 or np.shape(value)[0] != len(c):
                raise ValueError(f"cloud '{c.name}': extra array '{key}' has shape {np.shape(value)}, not one "
                                 f"row per point ({len(c)}); put per-scene data into meta")
    counts = np.array([len(c) for c in clouds], dtype=np.int64)
    shifts = shifts if shifts is not None else id_offsets([[c] for c in clouds])

    def cat(key: str, dtype) -> torch.Tensor | None:
        values = [v for c in clouds if (v := c.get(key)) is not None]
        if len(values) < len(clouds):
            return None
        if key in shifts:
            return torch.from_numpy(_shift_ids(values, shifts[key]))
        joined: np.ndarray = np.ascontiguousarray(np.concatenate(values, axis=0))
        return torch.from_numpy(joined if dtype is None else joined.astype(dtype, copy=False))

    extra_keys = sorted(set.intersection(*(set(c.extra) for c in clouds)))
    coord, grid_coord = cat("coord", np.float32), cat("grid_coord", np.int64)
    assert coord is not None and grid_coord is not None  # every cloud has both (checked above)
    return PointBatch(
        coord=coord,
        feat=torch.from_numpy(np.concatenate([build_feat(c, feat_keys) for c in clouds], axis=0)),
        grid_coord=grid_coord,
        offset=torch.from_numpy(np.cumsum(counts)),
        segment=cat("segment", np.int64),
        instance=cat("instance", np.int64),
        superpoint=cat("superpoint", np.int64),
        extra={k: t for k in extra_keys if (t := cat(k, None)) is not None},
        meta=[dict(c.meta) for c in clouds],
    )


def collate_views(samples: Sequence[MultiView], feat_keys: Sequence[str] = ("color", "normal")) -> ViewBatch:
    """Batch :class:`MultiView` s with the same number of views; match indices are shifted to
    index the concatenated views, id arrays shifted alike in every view of a sample, images
    stacked (every sample has one, of one size, or none has)."""
    if not samples:
        raise ValueError("collate_views needs at least one sample")
    k = len(samples[0].views)
    if any(len(s.views) != k for s in samples):
        raise ValueError("every sample of a batch must have the same number of views")
    shifts = id_offsets([s.views for s in samples])
    views = [collate_points([s.views[v] for s in samples], feat_keys, shifts) for v in range(k)]
    starts = [np.concatenate([[0], v.offset[:-1].numpy()]) for v in views]
    keys = sorted(set().union(*(s.pair_matches for s in samples)))
    matches, offsets = {}, {}
    for key in keys:
        i, j = key
        parts = [np.asarray(s.pair_matches.get(key, np.zeros((0, 2), np.int64)), np.int64).reshape(-1, 2)
                 + np.array([starts[i][b], starts[j][b]], np.int64) for b, s in enumerate(samples)]
        matches[key] = torch.from_numpy(np.concatenate(parts, axis=0))
        offsets[key] = torch.from_numpy(np.cumsum([len(p) for p in parts]).astype(np.int64))
    images = pixel_point = pixel_index = None
    has_image = [s.image is not None for s in samples]
    if any(has_image):
        if not all(has_image):
            raise ValueError("either every sample of a batch has an image or none has")
        shapes = {tuple(np.shape(s.image)) for s in samples if s.image is not None}  # (all have one)
        if len(shapes) != 1:
            raise ValueError(f"images of one batch must have one size, got {sorted(shapes)}")
        images = torch.from_numpy(np.stack([np.asarray(s.image, np.float32) for s in samples]))
        px = [np.zeros((0, 3), np.int64) if s.pixels is None else np.asarray(s.pixels, np.int64) for s in samples]
        pixel_point = torch.from_numpy(np.concatenate([p[:, 0] + starts[0][b] for b, p in enumerate(px)]))
        pixel_index = torch.from_numpy(np.concatenate(
            [np.column_stack([np.full(len(p), b, np.int64), p[:, 1], p[:, 2]]) for b, p in enumerate(px)]))
    return ViewBatch(views, matches, offsets, images, pixel_point, pixel_index, [dict(s.meta) for s in samples])


def collate_pairs(pairs: Sequence[MultiView], feat_keys: Sequence[str] = ("color", "normal")) -> ViewBatch:
    """:func:`collate_views` of two-view samples (the PointContrast batch)."""
    return collate_views(pairs, feat_keys)


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

    def validate(self, source: str | None = None) -> TriangleMesh:
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
