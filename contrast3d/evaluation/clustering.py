"""PointGroup-style clustering of points into instance proposals.

PointGroup (Jiang et al., CVPR 2020) groups points of the same predicted semantic class that lie
within a radius ``r`` of each other: the proposals are the connected components of the graph
whose edges join points ``i, j`` with ``sem_i == sem_j`` and ``|x_i - x_j| <= r``. It does this
twice, on the original coordinates ``p`` ("Q set") and on the offset-shifted coordinates
``p + o`` ("P set", votes towards instance centres), and keeps the union of both proposal sets
(the "dual set"; proposals may overlap).

Implementation: one ``scipy.spatial.cKDTree`` over the candidate points, ``query_pairs(r)`` for
all pairs within the radius, pairs of different classes dropped, then
``scipy.sparse.csgraph.connected_components`` -- no Python loop over points.

Decisions the paper leaves open (defaults in :class:`ClusterConfig`):

* radius ``0.03`` m and minimum cluster size ``50`` points (PointGroup's ScanNet settings);
  smaller components are discarded. Both apply to each set of the dual set.
* ignored classes: ``(0, 1)``, wall and floor in the ScanNet-20 label order used across
  contrast3d; points with semantic prediction ``< 0`` are never clustered.
* radius test ``<=`` (cKDTree semantics); PointGroup's CUDA ball query uses ``<``; the two differ
  only for pairs at exactly distance ``r``.
* score: PointGroup learns a ScoreNet; without one we score a proposal by the mean predicted
  probability of its class over its points when ``probs`` is given, else ``1.0``.
* proposal order: the original-coordinate set first, then the shifted set; inside a set by the
  smallest point index of each cluster (deterministic).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["ClusterConfig", "ClusterResult", "cluster_points", "cluster_dual", "radius_components"]


@dataclass
class ClusterConfig:
    """Clustering settings (PointGroup ScanNet defaults)."""

    radius: float = 0.03              # metres
    min_points: int = 50              # clusters with fewer points are dropped
    ignore_classes: tuple[int, ...] = (0, 1)
    dual: bool = False                # also cluster shifted coordinates and keep the union


@dataclass
class ClusterResult:
    """Instance proposals over ``num_points`` points.

    Attributes:
        point_index: ``(P,)`` int64 point indices of all proposals, concatenated (ascending inside one).
        offset: ``(K,)`` int64 cumulative ends of each proposal in ``point_index`` (Pointcept-style).
        classes: ``(K,)`` int64 semantic class of each proposal.
        scores: ``(K,)`` float64 confidence of each proposal.
        source: ``(K,)`` int64, ``0`` = clustered on original coordinates, ``1`` = on shifted ones.
        num_points: ``N``, the number of points of the scene.
    """

    point_index: np.ndarray
    offset: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    source: np.ndarray
    num_points: int
    sizes: np.ndarray = field(init=False)

    def __post_init__(self):
        self.sizes = np.diff(self.offset, prepend=0).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    def sparse_masks(self) -> sp.csr_matrix:
        """``(K, N)`` boolean CSR matrix, row ``k`` = points of proposal ``k``."""
        indptr = np.concatenate([[0], self.offset]).astype(np.int64)
        data = np.ones(self.point_index.shape[0], dtype=bool)
        return sp.csr_matrix((data, self.point_index, indptr), shape=(len(self), self.num_points))

    def masks(self) -> np.ndarray:
        """``(K, N)`` dense boolean masks."""
        return self.sparse_masks().toarray()

    def instance_ids(self) -> np.ndarray:
        """``(N,)`` int64 proposal index per point, ``-1`` = none; where proposals overlap (dual
        set) the highest-scoring one wins (ties: the lower proposal index)."""
        order = np.lexsort((-np.arange(len(self)), self.scores))  # rank 0 = weakest proposal
        rank = np.empty(len(self), dtype=np.int64)
        rank[order] = np.arange(len(self))
        owner = np.repeat(np.arange(len(self)), self.sizes)
        best = np.full(self.num_points, -1, dtype=np.int64)
        np.maximum.at(best, self.point_index, rank[owner])
        return np.where(best >= 0, order[np.maximum(best, 0)], -1) if len(self) else best


def radius_components(coord: np.ndarray, labels: np.ndarray, radius: float) -> np.ndarray:
    """Connected components of the same-label radius graph.

    Args:
        coord: ``(N, 3)`` coordinates (metres).
        labels: ``(N,)`` int class per point; points with ``label < 0`` are left out.
        radius: edge when ``|x_i - x_j| <= radius`` and ``labels_i == labels_j``.

    Returns:
        ``(N,)`` int64 component id, ``-1`` for left-out points; ids are ``0..C-1`` ordered by the
        smallest point index of each component.
    """
    coord = np.asarray(coord, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if coord.ndim != 2 or coord.shape[0] != labels.shape[0]:
        raise ValueError(f"coord {coord.shape} and labels {labels.shape} disagree")
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    keep = np.flatnonzero(labels >= 0)
    if keep.size == 0:
        return out
    pairs = cKDTree(coord[keep]).query_pairs(float(radius), output_type="ndarray")
    lab = labels[keep]
    pairs = pairs[lab[pairs[:, 0]] == lab[pairs[:, 1]]]
    n = keep.size
    graph = sp.coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # relabel by smallest member index (np.unique's first occurrence on points in index order)
    _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    out[keep] = rank[inverse.reshape(-1)]
    return out


def _proposals(coord, semantic, probs, cfg: ClusterConfig, source: int):
    sem = np.asarray(semantic).astype(np.int64).reshape(-1).copy()
    if cfg.ignore_classes:
        sem[np.isin(sem, np.asarray(cfg.ignore_classes))] = -1
    comp = radius_components(coord, sem, cfg.radius)
    valid = comp >= 0
    sizes = np.bincount(comp[valid], minlength=int(comp.max()) + 1 if valid.any() else 0)
    big = np.flatnonzero(sizes >= cfg.min_points)
    remap = np.full(sizes.size + 1, -1, dtype=np.int64)  # last entry: points outside any component
    remap[big] = np.arange(big.size)
    cid = remap[comp]
    members = np.flatnonzero(cid >= 0)
    members = members[np.argsort(cid[members], kind="stable")]
    counts = sizes[big]
    offset = np.cumsum(counts).astype(np.int64)
    starts = offset - counts
    classes = sem[members[starts]] if big.size else np.zeros(0, dtype=np.int64)
    if probs is None:
        scores = np.ones(big.size, dtype=np.float64)
    else:
        p = np.asarray(probs, dtype=np.float64)
        owner = cid[members]
        scores = np.bincount(owner, weights=p[members, classes[owner]], minlength=big.size) / np.maximum(counts, 1)
    return members.astype(np.int64), offset, classes.astype(np.int64), scores, np.full(big.size, source, np.int64)


def cluster_points(coord: np.ndarray, semantic: np.ndarray, cfg: ClusterConfig | None = None,
                   probs: np.ndarray | None = None, shifted_coord: np.ndarray | None = None) -> ClusterResult:
    """PointGroup clustering of one scene.

    Args:
        coord: ``(N, 3)`` point coordinates in metres (original, or already offset-shifted).
        semantic: ``(N,)`` int predicted class per point (``< 0`` = never clustered).
        cfg: :class:`ClusterConfig` (radius, minimum size, ignored classes, dual set).
        probs: optional ``(N, C)`` class probabilities; proposal score = mean probability of the
            proposal's class over its points (``1.0`` without).
        shifted_coord: ``(N, 3)`` ``coord + predicted offset``; required when ``cfg.dual``.

    Returns:
        :class:`ClusterResult` (proposals of ``coord`` first, then of ``shifted_coord``).
    """
    cfg = cfg or ClusterConfig()
    coord = np.asarray(coord)
    n = coord.shape[0]
    if np.asarray(semantic).reshape(-1).shape[0] != n:
        raise ValueError(f"semantic has {np.asarray(semantic).size} entries for {n} points")
    if probs is not None and np.asarray(probs).shape[0] != n:
        raise ValueError(f"probs has {np.asarray(probs).shape[0]} rows for {n} points")
    parts = [_proposals(coord, semantic, probs, cfg, 0)]
    if cfg.dual:
        if shifted_coord is None:
            raise ValueError("cfg.dual needs shifted_coord (coord + predicted offsets)")
        if np.asarray(shifted_coord).shape != coord.shape:
            raise ValueError(f"shifted_coord {np.asarray(shifted_coord).shape} vs coord {coord.shape}")
        parts.append(_proposals(shifted_coord, semantic, probs, cfg, 1))
    shift = np.cumsum([0] + [p[0].size for p in parts[:-1]])
    return ClusterResult(point_index=np.concatenate([p[0] for p in parts]),
                         offset=np.concatenate([p[1] + s for p, s in zip(parts, shift)]).astype(np.int64),
                         classes=np.concatenate([p[2] for p in parts]),
                         scores=np.concatenate([p[3] for p in parts]),
                         source=np.concatenate([p[4] for p in parts]), num_points=n)


def cluster_dual(coord: np.ndarray, shifted_coord: np.ndarray, semantic: np.ndarray,
                 cfg: ClusterConfig | None = None, probs: np.ndarray | None = None) -> ClusterResult:
    """Dual-set clustering (union of proposals on ``coord`` and on ``shifted_coord``)."""
    cfg = cfg or ClusterConfig()
    cfg = ClusterConfig(radius=cfg.radius, min_points=cfg.min_points, ignore_classes=cfg.ignore_classes, dual=True)
    return cluster_points(coord, semantic, cfg, probs=probs, shifted_coord=shifted_coord)
