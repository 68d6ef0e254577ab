"""Frame-pair mining by overlap (PointContrast / Pointcept rule) and point matching.

Overlap of frames A, B (world-coordinate clouds, normally 5 cm voxel-downsampled)::

    ov(A, B) = max(|{a in A : min_b |a - b| <= r}| / |A|,  |{b in B : min_a |b - a| <= r}| / |B|)

with ``r = 1.5 * voxel_size`` (7.5 cm); pairs with ``ov >= 0.3`` are kept.

:func:`mine_pairs` computes this exactly (same decisions and values as one KD-tree query per
pair, see :func:`mine_pairs_reference`): all frames are hashed once into one grid of cell size
``r``; any neighbour within ``r`` lies in the 27 cells around a point, so one parallel numba
pass over the points (sorted by cell) visits the candidate points of every other frame,
computes true float64 distances and counts, per frame B, the points of A with a hit. Two exact
shortcuts: neighbour cells whose box is farther than ``r`` from the point are skipped, and a
point stops once every frame present in its 27 cells has been hit. Cost is linear in the
number of (point, nearby point) pairs, independent of the number of frame pairs.

Storage (one prepared scene folder, written elsewhere) keeps the kept pairs once in
``pairs.txt`` as rows ``frame_i frame_j overlap`` (see :func:`save_pairs` / :func:`load_pairs`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numba as nb
import numpy as np
from scipy.spatial import cKDTree

from contrast3d.errors import DataError
from contrast3d.io._common import read_bytes

PAIRS_FILE = "pairs.txt"


@nb.njit(cache=True)
def _find(keys: np.ndarray, key: np.int64) -> int:
    """Index of ``key`` in sorted ``keys`` or -1."""
    lo, hi = 0, keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < keys.shape[0] and keys[lo] == key:
        return lo
    return -1


#: The 27 neighbour offsets: own cell, 6 faces, 12 edges, 8 corners (nearest first).
_OFFSETS = np.array(sorted(((dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)),
                           key=lambda d: (abs(d[0]) + abs(d[1]) + abs(d[2]), d)), np.int64)


@nb.njit(cache=True, parallel=True)
def _neighbour_cells(ukeys: np.ndarray, dims: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(U, 27)`` int64 index of each occupied cell's neighbours at ``offsets`` (-1 = empty)."""
    u = ukeys.shape[0]
    out = np.full((u, 27), -1, np.int64)
    syz = dims[1] * dims[2]
    for c in nb.prange(u):
        for t in range(27):
            out[c, t] = _find(ukeys, ukeys[c] + offsets[t, 0] * syz + offsets[t, 1] * dims[2] + offsets[t, 2])
    return out


@nb.njit(cache=True, parallel=True)
def _frames_near(frame: np.ndarray, cell_start: np.ndarray, neigh: np.ndarray, n_frames: int) -> np.ndarray:
    """``(U,)`` number of distinct frames with a point in each cell's 27-neighbourhood."""
    u = neigh.shape[0]
    out = np.zeros(u, np.int64)
    for c in nb.prange(u):
        mark = np.zeros(n_frames, np.bool_)
        n = 0
        for t in range(27):
            nc = neigh[c, t]
            if nc < 0:
                continue
            for q in range(cell_start[nc], cell_start[nc + 1]):
                if not mark[frame[q]]:
                    mark[frame[q]] = True
                    n += 1
        out[c] = n
    return out


@nb.njit(cache=True, parallel=True)
def _hit_counts(xyz: np.ndarray, frame: np.ndarray, cell_start: np.ndarray, neigh: np.ndarray,
                offsets: np.ndarray, near: np.ndarray, chunk_start: np.ndarray, radius: float,
                n_frames: int) -> np.ndarray:
    """``counts[A, B]`` = number of points of frame A with a point of frame B within ``radius``.

    ``xyz`` / ``frame`` are sorted by cell (cell size = ``radius``); cell ``c`` owns
    ``cell_start[c]:cell_start[c+1]``; ``neigh[c, t]`` is the cell at ``offsets[t]`` (-1 =
    empty); ``near[c]`` counts the frames present around ``c``. Exact shortcuts: a neighbour
    cell whose box is farther than ``radius`` from the point is skipped, and a point stops
    once every other frame present around it has been hit. Chunks of cells
    ``chunk_start[k]:chunk_start[k+1]`` run in parallel with private counts.
    """
    r2 = radius * radius
    prune = r2 * (1.0 + 1e-9)  # conservative: never skip a cell that could hold a hit
    n_chunks = chunk_start.shape[0] - 1
    partial = np.zeros((n_chunks, n_frames, n_frames), np.int32)
    for k in nb.prange(n_chunks):
        counts = partial[k]
        stamp = np.full(n_frames, -1, np.int64)
        for c in range(chunk_start[k], chunk_start[k + 1]):
            target = near[c] - 1
            for p in range(cell_start[c], cell_start[c + 1]):
                fa = frame[p]
                px, py, pz = xyz[p, 0], xyz[p, 1], xyz[p, 2]
                fx = px / radius - np.floor(px / radius)
                fy = py / radius - np.floor(py / radius)
                fz = pz / radius - np.floor(pz / radius)
                hits = 0
                for t in range(27):
                    if hits == target:
                        break
                    nc = neigh[c, t]
                    if nc < 0:
                        continue
                    gap = 0.0
                    for ax, f in ((0, fx), (1, fy), (2, fz)):
                        o = offsets[t, ax]
                        if o < 0:
                            gap += (f * radius) ** 2
                        elif o > 0:
                            gap += ((1.0 - f) * radius) ** 2
                    if gap > prune:
                        continue
                    for q in range(cell_start[nc], cell_start[nc + 1]):
                        fb = frame[q]
                        if fb == fa or stamp[fb] == p:
                            continue
                        dx = xyz[q, 0] - px
                        dy = xyz[q, 1] - py
                        dz = xyz[q, 2] - pz
                        if dx * dx + dy * dy + dz * dz <= r2:
                            stamp[fb] = p
                            counts[fa, fb] += 1
                            hits += 1
    return partial.sum(axis=0, dtype=np.int64)


def overlap_counts(coords: Sequence[np.ndarray], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact directed hit counts between all frames.

    Args:
        coords: ``F`` arrays ``(N_f, 3)`` (world metres).
        radius: neighbour radius (metres, inclusive).

    Returns:
        ``counts`` ``(F, F)`` int64 (``counts[a, b]`` = points of ``a`` within ``radius`` of
        some point of ``b``; diagonal 0) and ``sizes`` ``(F,)`` int64.
    """
    sizes = np.array([len(c) for c in coords], np.int64)
    n_frames = len(coords)
    if n_frames == 0 or sizes.sum() == 0:
        return np.zeros((n_frames, n_frames), np.int64), sizes
    xyz = np.concatenate([np.asarray(c, np.float64).reshape(-1, 3) for c in coords])
    if not np.isfinite(xyz).all():
        raise ValueError("non-finite coordinates")
    frame = np.repeat(np.arange(n_frames, dtype=np.int64), sizes)
    grid = np.floor(xyz / radius).astype(np.int64)
    grid -= grid.min(axis=0) - 1  # >= 1 so that the -1 neighbours stay >= 0
    dims = grid.max(axis=0) + 2
    key = (grid[:, 0] * dims[1] + grid[:, 1]) * dims[2] + grid[:, 2]
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1]).astype(np.int64)
    ukeys = key[first]
    cell_start = np.append(first, len(key)).astype(np.int64)
    neigh = _neighbour_cells(ukeys, dims.astype(np.int64), _OFFSETS)
    frame = frame[order]
    near = _frames_near(frame, cell_start, neigh, n_frames)
    # ~16 chunks per thread (balanced by point count), fewer when F x F counts get large.
    threads = nb.get_num_threads()
    n_chunks = int(min(len(ukeys), max(threads, min(16 * threads, 2 ** 24 // n_frames ** 2))))
    chunk_start = np.searchsorted(cell_start, np.linspace(0, len(xyz), n_chunks + 1)).astype(np.int64)
    chunk_start[0], chunk_start[-1] = 0, len(ukeys)
    chunk_start = np.unique(chunk_start)
    counts = _hit_counts(np.ascontiguousarray(xyz[order]), frame, cell_start, neigh, _OFFSETS, near,
                         chunk_start, float(radius), n_frames)
    return counts, sizes


def overlap_matrix(coords: Sequence[np.ndarray], radius: float) -> np.ndarray:
    """``(F, F)`` float64 symmetric overlap ``max(hits_ab / |A|, hits_ba / |B|)`` (diag 0)."""
    counts, sizes = overlap_counts(coords, radius)
    frac = counts / np.maximum(sizes, 1)[:, None]
    return np.maximum(frac, frac.T)


def mine_pairs(coords: Sequence[np.ndarray], voxel_size: float = 0.05, radius_factor: float = 1.5,
               min_overlap: float = 0.3) -> np.ndarray:
    """Kept frame pairs ``(K, 3)`` float64 rows ``(i, j, overlap)``, ``i < j``, sorted.

    ``coords``: the frames' voxel-downsampled world clouds ``(N_f, 3)``; neighbour radius is
    ``radius_factor * voxel_size``; a pair is kept iff its overlap ``>= min_overlap``.
    """
    ov = overlap_matrix(coords, radius_factor * voxel_size)
    i, j = np.nonzero(np.triu(ov >= min_overlap, k=1))
    return np.stack([i, j, ov[i, j]], axis=1).astype(np.float64).reshape(-1, 3)


def mine_pairs_reference(coords: Sequence[np.ndarray], voxel_size: float = 0.05,
                         radius_factor: float = 1.5, min_overlap: float = 0.3) -> np.ndarray:
    """Slow obvious reference of :func:`mine_pairs`: one KD-tree query per ordered pair."""
    r = radius_factor * voxel_size
    trees = [cKDTree(np.asarray(c, np.float64)) for c in coords]
    rows = []
    for i in range(len(coords)):
        for j in range(i + 1, len(coords)):
            fr = []
            for a, b in ((i, j), (j, i)):
                if len(coords[a]) == 0 or len(coords[b]) == 0:
                    fr.append(0.0)
                    continue
                hit = trees[b].query_ball_point(np.asarray(coords[a], np.float64), r, return_length=True) > 0
                fr.append(float(hit.mean()))
            if max(fr) >= min_overlap:
                rows.append((i, j, max(fr)))
    return np.array(rows, np.float64).reshape(-1, 3)


def find_matches(coord_a: np.ndarray, coord_b: np.ndarray, radius: float, mutual: bool = False) -> np.ndarray:
    """Point correspondences between two world-coordinate clouds.

    One-way (default): every point ``i`` of ``a`` whose nearest neighbour ``j`` in ``b`` is
    within ``radius`` gives row ``(i, j)`` (a point of ``b`` may appear several times).
    ``mutual=True`` keeps only rows where ``i`` is also the nearest point of ``a`` to ``j``.

    Returns ``(M, 2)`` int64, sorted by ``i``.
    """
    a = np.asarray(coord_a, np.float64).reshape(-1, 3)
    b = np.asarray(coord_b, np.float64).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    dist, j = cKDTree(b).query(a, k=1, distance_upper_bound=radius * (1 + 1e-12))
    i = np.nonzero(np.isfinite(dist) & (dist <= radius))[0]
    j = j[i]
    if mutual:
        _, back = cKDTree(a).query(b[j], k=1)
        keep = back == i
        i, j = i[keep], j[keep]
    return np.stack([i, j], axis=1).astype(np.int64)


def save_pairs(path: str | Path, pairs: np.ndarray, frame_ids: Sequence[str]) -> None:
    """Write kept pairs as text rows ``frame_id_i frame_id_j overlap`` (``pairs`` from :func:`mine_pairs`)."""
    lines = [f"{frame_ids[int(i)]} {frame_ids[int(j)]} {ov:.6f}" for i, j, ov in np.asarray(pairs).reshape(-1, 3)]
    Path(path).write_text("".join(line + "\n" for line in lines))


def load_pairs(scene_dir: str | Path) -> list[tuple[str, str, float]]:
    """The ``(frame_id_i, frame_id_j, overlap)`` rows of ``scene_dir/pairs.txt``."""
    path = Path(scene_dir) / PAIRS_FILE
    if not path.is_file():
        raise DataError(path, "missing pairs file (run scene preparation first)")
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 3:
                raise ValueError
            rows.append((parts[0], parts[1], float(parts[2])))
        except ValueError:
            raise DataError(path, f"line {n}: expected 'frame_i frame_j overlap', got {line!r}") from None
    return rows
