"""Space-time (4D) voxelisation for 4DContrast: one random point per occupied (x, y, z, t) voxel.

A 4D sequence is the concatenation of ``t`` frames; every point carries its integer frame index
``time`` in ``cloud.extra[time_key]``. A point at ``coord`` (metres) in frame ``k`` falls in the
space-time voxel

    (floor(x / g_x) - m_x, floor(y / g_y) - m_y, floor(z / g_z) - m_z, k),

where ``m`` (``grid_min``, ``(3,)`` int64) is the minimum absolute spatial voxel index over *all*
frames, so every frame shares one spatial grid and a static point keeps the same ``(x, y, z)``
voxel in every frame. The time coordinate is the frame index itself (not shifted, one voxel per
frame): two frames are never merged, whatever the spatial voxel size. The 4D SpUNet
(:func:`contrast3d.models.backbone.build_backbone` with ``ndim=4``) then convolves over all four
coordinates.

:class:`GridSample4D` keeps one uniformly random point of every occupied space-time voxel (a
fresh choice per call drawn from the ``rng``, like :class:`~contrast3d.data.voxelize.GridSample`
in train mode) and keeps the same bookkeeping (``meta["origin_index"]``, ``sample_index``,
``inverse``), so correspondences can be traced from the input points to the kept voxels. Output
voxels are in lexicographic ``(t, x, y, z)`` order, so the kept points are grouped by frame.

Everything is vectorised (one sort of int64 keys, or ``np.lexsort`` when the ravelled key would
overflow int64); no Python loop runs over points.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contrast3d.data.voxelize import _inverse, as_grid_size, grid_coordinates, take_points
from contrast3d.structures import PointCloud


def frame_index(cloud: PointCloud, time_key: str = "time") -> np.ndarray:
    """``(N,)`` int64 frame index of every point from ``cloud.extra[time_key]``.

    Raises ``ValueError`` when the array is missing, not one value per point, not integer-valued or negative.
    """
    if time_key not in cloud.extra:
        raise ValueError(f"4D voxelisation needs a per-point frame index in cloud.extra[{time_key!r}]")
    t = np.asarray(cloud.extra[time_key])
    if t.shape != (len(cloud),):
        raise ValueError(f"cloud.extra[{time_key!r}] must have shape ({len(cloud)},), got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        if not (np.issubdtype(t.dtype, np.floating) and np.all(np.isfinite(t)) and np.all(t == np.round(t))):
            raise ValueError(f"cloud.extra[{time_key!r}] must hold integer frame indices, got dtype {t.dtype}")
    t = t.astype(np.int64)
    if t.size and t.min() < 0:
        raise ValueError(f"cloud.extra[{time_key!r}] frame indices must be >= 0")
    return t


def space_time_coordinates(coord: np.ndarray, time: np.ndarray,
                           grid_size: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-point space-time voxels.

    Args:
        coord: ``(N, 3)`` coordinates, metres.
        time: ``(N,)`` int64 frame index (``>= 0``).
        grid_size: spatial voxel edge in metres (scalar or ``(3,)``).

    Returns:
        ``(N, 4)`` int64 ``(x, y, z, t)`` voxels (spatial part min-shifted over all frames to be ``>= 0``,
        ``t`` the frame index) and ``grid_min`` ``(3,)`` int64 (the absolute spatial voxel of ``x = y = z = 0``).
    """
    spatial, grid_min = grid_coordinates(coord, grid_size)
    time = np.asarray(time, np.int64).reshape(-1, 1)
    if time.shape[0] != spatial.shape[0]:
        raise ValueError(f"need one frame index per point: {time.shape[0]} for {spatial.shape[0]} points")
    return np.concatenate([spatial, time], axis=1), grid_min


def group_space_time(grid_coord: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort points by space-time voxel, voxels in lexicographic ``(t, x, y, z)`` order.

    Args:
        grid_coord: ``(N, 4)`` int64 non-negative ``(x, y, z, t)`` voxels.

    Returns:
        ``order`` ``(N,)`` int64 point indices sorted by voxel (ascending input index inside a voxel),
        ``starts`` ``(M,)`` int64 position in ``order`` where each voxel begins, ``counts`` ``(M,)``
        int64 points per voxel (as :func:`contrast3d.data.voxelize.group_voxels`).
    """
    gc = np.asarray(grid_coord, np.int64)
    n = gc.shape[0]
    if n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    cols = [gc[:, 3], gc[:, 0], gc[:, 1], gc[:, 2]]  # most significant first
    extent = [int(c.max()) + 1 for c in cols]
    if int(np.prod(np.array(extent, dtype=object))) < 2 ** 63:
        key = cols[0]
        for c, e in zip(cols[1:], extent[1:]):
            key = key * e + c
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        new = sorted_key[1:] != sorted_key[:-1]
    else:  # exact lexicographic fallback (stable); np.lexsort sorts by the last key first
        order = np.lexsort(cols[::-1])
        sorted_gc = gc[order]
        new = np.any(sorted_gc[1:] != sorted_gc[:-1], axis=1)
    starts = np.flatnonzero(np.concatenate([[True], new])).astype(np.int64)
    counts = np.diff(np.append(starts, n)).astype(np.int64)
    return order.astype(np.int64), starts, counts


@dataclass
class GridSample4D:
    """Space-time voxel down-sampling: one uniformly random point per occupied ``(x, y, z, t)`` voxel.

    Args:
        grid_size: spatial voxel edge in metres (scalar or per axis; 4DContrast: 5 cm).
        time_key: ``cloud.extra`` key of the per-point integer frame index.

    Called as ``t(cloud, rng)``; the output cloud (M points, one per voxel, in ``(t, x, y, z)`` voxel order)
    carries:
        ``grid_coord`` ``(M, 4)`` int64 ``(x, y, z, t)``; spatial part ``>= 0``, ``t`` = the frame index;
        ``extra[time_key]`` of the kept points (with every other per-point array);
        ``meta["sample_index"]`` ``(M,)`` int64 input index of each kept point;
        ``meta["inverse"]`` ``(N,)`` int64 output index of every input point's voxel;
        ``meta["grid_size"]`` ``(3,)`` float64, ``meta["grid_min"]`` ``(3,)`` int64 (spatial, as
        :class:`~contrast3d.data.voxelize.GridSample`), ``meta["time_key"]``;
        ``meta["origin_index"]`` composed as in :func:`~contrast3d.data.voxelize.take_points`.
    """

    grid_size: float | Sequence[float] = 0.05
    time_key: str = "time"

    def __post_init__(self) -> None:
        as_grid_size(self.grid_size)

    def __call__(self, cloud: PointCloud, rng: np.random.Generator | None = None) -> PointCloud:
        if rng is None:
            raise ValueError("GridSample4D needs an rng (one random point per voxel)")
        point_gc, grid_min = space_time_coordinates(cloud.coord, frame_index(cloud, self.time_key), self.grid_size)
        order, starts, counts = group_space_time(point_gc)
        pick = rng.integers(0, counts) if len(counts) else np.zeros(0, np.int64)
        index = order[starts + pick]
        out = take_points(cloud, index)
        out.grid_coord = point_gc[index]
        out.meta.update(sample_index=index, inverse=_inverse(order, starts, counts),
                        grid_size=as_grid_size(self.grid_size), grid_min=grid_min, time_key=self.time_key)
        return out
