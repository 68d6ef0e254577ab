"""Voxelisation: grid coordinates, voxel grouping and Pointcept-style :class:`GridSample`.

A point at ``coord`` (metres) falls in voxel ``floor(coord / grid_size)``; voxel coordinates are
shifted by their minimum so that ``grid_coord >= 0``. The shift is kept as ``grid_min``
(absolute voxel index of ``grid_coord == 0``), so voxel ``g`` spans
``[(g + grid_min) * grid_size, (g + grid_min + 1) * grid_size)`` metres.

Everything is vectorised (one sort of the voxel keys); no Python loop runs over points.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contrast3d.structures import PointCloud

HASHES = ("ravel", "fnv")
_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
#: Largest |coord / grid_size| accepted (keeps voxel indices and ravelled keys in int64).
_MAX_INDEX = float(2 ** 52)


def as_grid_size(grid_size: float | Sequence[float]) -> np.ndarray:
    """``grid_size`` (metres, scalar or one per axis) as a ``(3,)`` float64 array; must be > 0."""
    size = np.broadcast_to(np.asarray(grid_size, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise ValueError(f"grid_size must be finite and > 0, got {grid_size!r}")
    return size


def grid_coordinates(coord: np.ndarray, grid_size: float | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Voxel coordinates of every point.

    Args:
        coord: ``(N, 3)`` float coordinates, metres.
        grid_size: voxel edge length in metres (scalar or ``(3,)``).

    Returns:
        ``grid_coord`` ``(N, 3)`` int64 voxel coordinates, min-shifted to be ``>= 0``, and
        ``grid_min`` ``(3,)`` int64, the absolute voxel index subtracted (zeros when ``N == 0``).
    """
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"coord must have shape (N, 3), got {coord.shape}")
    scaled = np.floor(coord.astype(np.float64) / as_grid_size(grid_size))
    if not np.all(np.isfinite(scaled)):
        raise ValueError("coord contains NaN/Inf")
    if scaled.size and np.abs(scaled).max() > _MAX_INDEX:
        raise ValueError(f"coord / grid_size exceeds {_MAX_INDEX:.0e} voxels: grid_size too small for the extent")
    absolute = scaled.astype(np.int64)
    grid_min = absolute.min(axis=0) if len(absolute) else np.zeros(3, np.int64)
    return absolute - grid_min, grid_min


def fnv_hash(grid_coord: np.ndarray) -> np.ndarray:
    """FNV-1a 64-bit hash of ``(N, 3)`` non-negative int voxel coordinates -> ``(N,)`` uint64.

    Pointcept's default key; distinct voxels collide with probability ~``N**2 / 2**64``.
    """
    arr = np.asarray(grid_coord).astype(np.uint64)
    key = np.full(arr.shape[0], _FNV_OFFSET, dtype=np.uint64)
    for j in range(arr.shape[1]):  # loop over the 3 axes, not over points
        key = np.bitwise_xor(key * _FNV_PRIME, arr[:, j])
    return key


def ravel_hash(grid_coord: np.ndarray) -> np.ndarray:
    """Exact C-order ravelled key of ``(N, 3)`` non-negative int voxel coordinates -> ``(N,)`` int64.

    Raises ``OverflowError`` when the bounding box of the voxels has ``>= 2**63`` cells.
    """
    arr = np.asarray(grid_coord, dtype=np.int64)
    if arr.shape[0] == 0:
        return np.zeros(0, np.int64)
    extent = [int(e) + 1 for e in arr.max(axis=0)]
    if extent[0] * extent[1] * extent[2] >= 2 ** 63:
        raise OverflowError("voxel bounding box too large for an int64 ravelled key")
    return (arr[:, 0] * extent[1] + arr[:, 1]) * extent[2] + arr[:, 2]


def group_voxels(grid_coord: np.ndarray, hash: str = "ravel") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort points by voxel.

    Args:
        grid_coord: ``(N, 3)`` int64 non-negative voxel coordinates.
        hash: ``"ravel"`` (exact; voxels in lexicographic ``(x, y, z)`` order, falling back to
            an exact lexicographic sort when the ravelled key would overflow) or ``"fnv"``
            (Pointcept's FNV-1a key; voxels in key order).

    Returns:
        ``order`` ``(N,)`` int64 point indices sorted by voxel (ascending input index inside a
        voxel), ``starts`` ``(M,)`` int64 position in ``order`` where each voxel begins and
        ``counts`` ``(M,)`` int64 points per voxel.
    """
    if hash not in HASHES:
        raise ValueError(f"hash must be one of {HASHES}, got {hash!r}")
    n = grid_coord.shape[0]
    if n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    try:
        key = fnv_hash(grid_coord) if hash == "fnv" else ravel_hash(grid_coord)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        new = sorted_key[1:] != sorted_key[:-1]
    except OverflowError:
        order = np.lexsort((grid_coord[:, 2], grid_coord[:, 1], grid_coord[:, 0]))  # stable
        sorted_gc = grid_coord[order]
        new = np.any(sorted_gc[1:] != sorted_gc[:-1], axis=1)
    starts = np.flatnonzero(np.concatenate([[True], new])).astype(np.int64)
    counts = np.diff(np.append(starts, n)).astype(np.int64)
    return order.astype(np.int64), starts, counts


def _inverse(order: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 voxel index of every point from the output of :func:`group_voxels`."""
    inverse = np.empty(order.shape[0], np.int64)
    inverse[order] = np.repeat(np.arange(starts.shape[0], dtype=np.int64), counts)
    return inverse


def voxelize(coord: np.ndarray, grid_size: float | Sequence[float], hash: str = "ravel"
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic voxelisation (like ``np.unique`` on voxel coordinates).

    Args:
        coord: ``(N, 3)`` coordinates in metres.
        grid_size: voxel edge in metres (scalar or ``(3,)``).
        hash: voxel ordering, see :func:`group_voxels`.

    Returns:
        ``grid_coord`` ``(M, 3)`` int64 coordinates of the M occupied voxels (min-shifted,
        ``>= 0``); ``unique_index`` ``(M,)`` int64 lowest input index of a point in each voxel;
        ``inverse`` ``(N,)`` int64 voxel of every point, so ``grid_coord[inverse]`` are the
        per-point voxel coordinates; ``counts`` ``(M,)`` int64 points per voxel.
    """
    point_gc, _ = grid_coordinates(coord, grid_size)
    order, starts, counts = group_voxels(point_gc, hash)
    unique_index = order[starts]
    return point_gc[unique_index], unique_index, _inverse(order, starts, counts), counts


def take_points(cloud: PointCloud, index: np.ndarray) -> PointCloud:
    """``cloud.select(index)`` that also tracks where the points came from.

    ``meta["origin_index"]`` (int64, one per output point) is composed: the index of each point in
    the cloud at the start of the pipeline (the identity when absent). ``meta["inverse"]`` and
    ``meta["sample_index"]`` of an earlier voxelisation no longer describe the new cloud and are
    dropped.
    """
    index = np.asarray(index, dtype=np.int64)
    out = cloud.select(index)
    origin = cloud.meta.get("origin_index")
    out.meta["origin_index"] = index.copy() if origin is None else np.asarray(origin, np.int64)[index]
    out.meta.pop("inverse", None)
    out.meta.pop("sample_index", None)
    return out


@dataclass
class GridSample:
    """Voxel down-sampling (Pointcept's ``GridSample``).

    Args:
        grid_size: voxel edge in metres (scalar or per axis).
        mode: ``"train"`` keeps one random point per occupied voxel (a fresh choice per call,
            drawn from ``rng``) and returns one :class:`PointCloud`. ``"test"`` returns a
            ``list[PointCloud]`` of K = max points per voxel fragments; fragment ``k`` holds, for
            every voxel with ``c`` points, its ``(k mod c)``-th point (ascending input index), so
            every fragment has one point per voxel and together they contain every input point.
            Test mode is deterministic and ignores ``rng``.
        hash: ``"ravel"`` (exact, default) or ``"fnv"`` (Pointcept's key), see :func:`group_voxels`.

    Output clouds (M points, one per voxel, in voxel order) carry:
        ``grid_coord`` ``(M, 3)`` int64 voxel coordinates (``>= 0``);
        ``meta["sample_index"]`` ``(M,)`` int64 input index of each kept point;
        ``meta["inverse"]`` ``(N,)`` int64 output index of every input point's voxel;
        ``meta["grid_size"]`` ``(3,)`` float64 and ``meta["grid_min"]`` ``(3,)`` int64;
        ``meta["origin_index"]`` composed as in :func:`take_points`;
        test mode also ``meta["fragment"]`` (k), ``meta["num_fragments"]`` (K) and
        ``meta["first_visit"]`` ``(M,)`` bool, True where the point has not appeared in an
        earlier fragment (over all fragments each input point is first visited exactly once).
    """

    grid_size: float | Sequence[float] = 0.05
    mode: str = "train"
    hash: str = "ravel"

    def __post_init__(self) -> None:
        if self.mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {self.mode!r}")
        if self.hash not in HASHES:
            raise ValueError(f"hash must be one of {HASHES}, got {self.hash!r}")
        as_grid_size(self.grid_size)

    def __call__(self, cloud: PointCloud, rng: np.random.Generator | None = None
                 ) -> PointCloud | list[PointCloud]:
        if self.mode == "train":
            if rng is None:
                raise ValueError("GridSample(mode='train') needs an rng")
            return self.sample(cloud, rng)
        return self.fragments(cloud)

    def _group(self, cloud: PointCloud):
        point_gc, grid_min = grid_coordinates(cloud.coord, self.grid_size)
        order, starts, counts = group_voxels(point_gc, self.hash)
        return point_gc, grid_min, order, starts, counts

    def _make(self, cloud: PointCloud, index: np.ndarray, point_gc: np.ndarray, grid_min: np.ndarray,
              inverse: np.ndarray) -> PointCloud:
        out = take_points(cloud, index)
        out.grid_coord = point_gc[index]
        out.meta.update(sample_index=index, inverse=inverse, grid_size=as_grid_size(self.grid_size),
                        grid_min=grid_min)
        return out

    def sample(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        """Train mode: one uniformly random point per voxel."""
        point_gc, grid_min, order, starts, counts = self._group(cloud)
        pick = rng.integers(0, counts) if len(counts) else np.zeros(0, np.int64)
        index = order[starts + pick]
        return self._make(cloud, index, point_gc, grid_min, _inverse(order, starts, counts))

    def fragments(self, cloud: PointCloud) -> list[PointCloud]:
        """Test mode: fragments covering every point (see class docstring)."""
        point_gc, grid_min, order, starts, counts = self._group(cloud)
        inverse = _inverse(order, starts, counts)
        num = int(counts.max()) if len(counts) else 1
        out = []
        for k in range(num):  # one iteration per fragment (max points in a voxel)
            index = order[starts + k % counts] if len(counts) else np.zeros(0, np.int64)
            frag = self._make(cloud, index, point_gc, grid_min, inverse)
            frag.meta.update(fragment=k, num_fragments=num, first_visit=k < counts)
            out.append(frag)
        return out
