"""Felzenszwalb-Huttenlocher graph over-segmentation of meshes and point clouds (superpoints).

:func:`segment_mesh` reproduces ScanNet's ``Segmentator`` (``segmentator.cpp``) step by step:

1. vertex normal = running mean of the unit face normals in face order, float32, **not**
   renormalised (:func:`contrast3d.data.normals.mesh_vertex_normals` with ``normalize=False``);
2. three edges per face ``(i1, i2), (i1, i3), (i3, i2)`` in face order, duplicates kept;
3. weight ``w = 1 - n_a . n_b``, squared when ``n_b . (p_b - p_a) / |p_b - p_a| > 0`` (convex),
   all in float32;
4. edges sorted by weight; ScanNet's ``std::sort`` leaves ties in an implementation-defined
   order, reproduced for GCC's libstdc++ by ``tie_order="gcc"`` (default for meshes);
   ``tie_order="stable"`` keeps ties in edge order (= ScanNet built with ``std::stable_sort``);
5. union-find (union by rank, ``find`` re-points only the queried element, as ScanNet's
   ``universe``) merging when ``w <= threshold`` of both components, then
   ``threshold[root] = w + k / |C|`` (initial threshold ``k``);
6. one pass over the sorted edges joining any two components one of which has fewer than
   ``seg_min_verts`` vertices;
7. output: the root vertex index of every vertex (ScanNet's ``segIndices``), or with
   ``compact=True`` ids ``0..S-1`` numbered by ascending root index.

Deviation: zero-area faces are skipped when averaging normals (ScanNet would put a NaN into the
vertex normal); edges with an undefined weight never merge in step 5.

:func:`segment_points` runs the same steps 3-7 on a point cloud: edges from a kNN graph (each
unordered pair once, at its first occurrence in the row-major kNN table, ``a`` = the row point),
unit PCA normals when none are given (with the sign-invariant weight unless a viewpoint orients
them, see :func:`segment_points`).
"""
from __future__ import annotations

from typing import Literal

import numba
import numpy as np

from contrast3d.data.edge_sort import _gcc_argsort_f32, _stable_argsort_f32
from contrast3d.data.normals import _check_mesh, knn, mesh_vertex_normals, pca_normals
from contrast3d.errors import DataError
from contrast3d.structures import TriangleMesh

TieOrder = Literal["stable", "gcc"]

_F1 = np.float32(1.0)
_F0 = np.float32(0.0)


@numba.njit(cache=True, error_model="numpy")
def _edge_weights(points: np.ndarray, normals: np.ndarray, a: np.ndarray, b: np.ndarray,
                  unoriented: bool = False) -> np.ndarray:
    """(E,) float32 ScanNet edge weights; ``points``/``normals`` (V, 3) float32, ``a``/``b`` (E,).

    ``unoriented``: first flip ``n_b`` when ``n_a . n_b < 0`` (normals with arbitrary signs)."""
    w = np.empty(a.shape[0], dtype=np.float32)
    for e in range(a.shape[0]):
        i = a[e]
        j = b[e]
        dx = points[j, 0] - points[i, 0]
        dy = points[j, 1] - points[i, 1]
        dz = points[j, 2] - points[i, 2]
        dd = np.sqrt(dx * dx + dy * dy + dz * dz)
        dx = dx / dd
        dy = dy / dd
        dz = dz / dd
        dot = normals[i, 0] * normals[j, 0] + normals[i, 1] * normals[j, 1] + normals[i, 2] * normals[j, 2]
        dot2 = normals[j, 0] * dx + normals[j, 1] * dy + normals[j, 2] * dz
        if unoriented and dot < _F0:
            dot = -dot
            dot2 = -dot2
        ww = _F1 - dot
        if dot2 > _F0:  # convex: make normal differences matter much less
            ww = ww * ww
        w[e] = ww
    return w


@numba.njit(cache=True)
def _find(parent: np.ndarray, x: int) -> int:
    y = x
    while y != parent[y]:
        y = parent[y]
    parent[x] = y  # ScanNet re-points only the queried element
    return y


@numba.njit(cache=True)
def _join(parent: np.ndarray, rank: np.ndarray, size: np.ndarray, x: int, y: int) -> int:
    """Union by rank of roots ``x`` and ``y``; returns the new root."""
    if rank[x] > rank[y]:
        parent[y] = x
        size[x] += size[y]
        return x
    parent[x] = y
    size[y] += size[x]
    if rank[x] == rank[y]:
        rank[y] += 1
    return y


@numba.njit(cache=True)
def _felzenszwalb(num_vertices: int, a: np.ndarray, b: np.ndarray, w: np.ndarray,
                  order: np.ndarray, c: np.float32, min_size: int) -> np.ndarray:
    """Root vertex index (V,) int64 of every vertex after FH merging and the min-size pass."""
    parent = np.arange(num_vertices)
    rank = np.zeros(num_vertices, dtype=np.int32)
    size = np.ones(num_vertices, dtype=np.int64)
    threshold = np.full(num_vertices, c, dtype=np.float32)
    sa = a[order]  # sorted copies: sequential access in both passes
    sb = b[order]
    sw = w[order]
    for e in range(sa.shape[0]):
        x = _find(parent, sa[e])
        y = _find(parent, sb[e])
        if x != y and sw[e] <= threshold[x] and sw[e] <= threshold[y]:
            r = _join(parent, rank, size, x, y)
            threshold[r] = sw[e] + c / np.float32(size[r])
    for e in range(sa.shape[0]):
        x = _find(parent, sa[e])
        y = _find(parent, sb[e])
        if x != y and (size[x] < min_size or size[y] < min_size):
            _join(parent, rank, size, x, y)
    out = np.empty(num_vertices, dtype=np.int64)
    for q in range(num_vertices):
        out[q] = _find(parent, q)
    return out


@numba.njit(cache=True)
def _knn_edges(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected kNN edges, each pair once at its first row-major occurrence in ``idx`` (N, k).

    Self entries and entries ``>= N`` (missing) are skipped. Returns ``a`` (the row point) and
    ``b`` (its neighbour), (E,) int64 each.
    """
    n, k = idx.shape
    a = np.empty(n * k, dtype=np.int64)
    b = np.empty(n * k, dtype=np.int64)
    m = 0
    for i in range(n):
        for t in range(k):
            j = idx[i, t]
            if j == i or j >= n:
                continue
            if j < i:  # seen already if i is in row j
                seen = False
                for s in range(k):
                    if idx[j, s] == i:
                        seen = True
                        break
                if seen:
                    continue
            a[m] = i
            b[m] = j
            m += 1
    return a[:m].copy(), b[:m].copy()


def compact_labels(ids: np.ndarray) -> np.ndarray:
    """Relabel segment ids (e.g. root indices) to ``0..S-1`` in ascending id order; (V,) int64."""
    return np.unique(np.asarray(ids), return_inverse=True)[1].reshape(-1).astype(np.int64)


def segment_graph(num_vertices: int, a: np.ndarray, b: np.ndarray, w: np.ndarray,
                  k_thresh: float = 0.01, min_size: int = 20, compact: bool = False,
                  tie_order: TieOrder = "stable") -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of a weighted graph (steps 4-7 of the module doc).

    Args:
        num_vertices: V.
        a, b: ``(E,)`` int edge end points in ``[0, V)``; edge order breaks weight ties.
        w: ``(E,)`` float32 weights (dimensionless).
        k_thresh: FH constant ``k`` (larger gives larger segments).
        min_size: components below this many vertices are merged along the sorted edges.
        compact: return ``0..S-1`` ids instead of root vertex indices.
        tie_order: how edges of equal weight are ordered: ``"stable"`` -- by edge index;
            ``"gcc"`` -- as GCC/libstdc++ ``std::sort`` leaves them (ScanNet's binary on Linux).

    Returns:
        ``(V,)`` int64 segment id per vertex.
    """
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=np.float32)
    if not (a.shape == b.shape == w.shape) or a.ndim != 1:
        raise ValueError(f"a, b, w must be (E,) arrays of one length, got {a.shape}, {b.shape}, {w.shape}")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= num_vertices):
        raise ValueError(f"edge end point out of range [0, {num_vertices})")
    if tie_order == "stable":
        order = _stable_argsort_f32(w)
    elif tie_order == "gcc":
        order = _gcc_argsort_f32(w)
    else:
        raise ValueError(f"tie_order must be 'stable' or 'gcc', got {tie_order!r}")
    roots = _felzenszwalb(int(num_vertices), a, b, w, order, np.float32(k_thresh), int(min_size))
    return compact_labels(roots) if compact else roots


def mesh_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ScanNet's mesh edges: per face ``(i1, i2), (i1, i3), (i3, i2)`` in face order; (3F,) int64 each."""
    f = np.asarray(faces, dtype=np.int64)
    return f[:, [0, 0, 2]].reshape(-1), f[:, [1, 2, 1]].reshape(-1)


def segment_mesh(vertices: np.ndarray, faces: np.ndarray, k_thresh: float = 0.01,
                 seg_min_verts: int = 20, compact: bool = False,
                 tie_order: TieOrder = "gcc") -> np.ndarray:
    """ScanNet ``Segmentator`` over-segmentation of a triangle mesh (see the module docstring).

    Args:
        vertices: ``(V, 3)`` float, metres.
        faces: ``(F, 3)`` int vertex indices.
        k_thresh: FH constant (ScanNet ``kThresh``, default 0.01).
        seg_min_verts: minimum segment size in vertices (ScanNet ``segMinVerts``, default 20).
        compact: ``False`` -- the root vertex index per vertex, like ScanNet's ``segIndices``;
            ``True`` -- ids ``0..S-1`` in ascending root order.
        tie_order: ``"gcc"`` (default) orders equal-weight edges as ScanNet's GCC-built binary,
            giving identical ``segIndices``; ``"stable"`` keeps edge order (a little faster).

    Returns:
        ``(V,)`` int64 segment id per vertex.
    """
    v, f = _check_mesh(vertices, faces)
    if not np.isfinite(v).all():
        raise DataError("<mesh>", "NaN/Inf vertex coordinates")
    normals = mesh_vertex_normals(v, f, weighting="mean", normalize=False)
    a, b = mesh_edges(f)
    w = _edge_weights(v, normals, a, b)
    return segment_graph(v.shape[0], a, b, w, k_thresh, seg_min_verts, compact, tie_order)


def segment_mesh_obj(mesh: TriangleMesh, k_thresh: float = 0.01, seg_min_verts: int = 20,
                     compact: bool = False, tie_order: TieOrder = "gcc") -> np.ndarray:
    """:func:`segment_mesh` on a :class:`TriangleMesh` (its stored normals are not used)."""
    return segment_mesh(mesh.vertices, mesh.faces, k_thresh, seg_min_verts, compact, tie_order)


def segment_points(coord: np.ndarray, normals: np.ndarray | None = None, k_neighbors: int = 10,
                   k_thresh: float = 0.01, min_size: int = 20, normal_k: int | None = None,
                   viewpoint: np.ndarray | None = None, compact: bool = False,
                   orientation_invariant: bool | None = None, neighbors: np.ndarray | None = None) -> np.ndarray:
    """FH over-segmentation of a point cloud on its kNN graph with ScanNet's normal-based weights.

    Args:
        coord: ``(N, 3)`` float, metres.
        normals: ``(N, 3)`` float unit normals, consistently oriented; ``None`` -- PCA normals
            from the ``normal_k`` nearest neighbours, oriented toward ``viewpoint`` if given,
            else away from the centroid (:func:`contrast3d.data.normals.estimate_normals`).
        k_neighbors: neighbours per point in the graph (self excluded); each unordered pair
            becomes one edge, ``a`` = the point in whose kNN row the pair first occurs.
        k_thresh: FH constant ``k``.
        min_size: minimum segment size in points (smaller components are merged unless isolated).
        normal_k: neighbourhood size for PCA normals (self included); ``None`` -- the graph
            neighbourhood, ``k_neighbors + 1`` (one kNN query serves both).
        viewpoint: ``(3,)`` metres, orientation reference for estimated normals.
        compact: return ``0..S-1`` ids instead of root point indices.
        orientation_invariant: flip ``n_b`` per edge to agree with ``n_a`` before weighting, so
            normals with arbitrary signs work (``w = 1 - |n_a . n_b|``; the convexity test then
            uses the flipped normal). ``None`` -- on exactly when the normals are estimated here
            without a ``viewpoint`` (a centroid-based sign flips on planes through the centroid).
        neighbors: optional precomputed ``knn(coord, k)`` table ``(N, k)`` (itself first) with
            ``k >= k_neighbors + 1`` (and ``>= normal_k`` when normals are estimated); saves the
            kNN query when the caller already has it.

    Returns:
        ``(N,)`` int64 segment id per point.
    """
    c = np.ascontiguousarray(coord, dtype=np.float32)
    if c.ndim != 2 or c.shape[1] != 3:
        raise DataError("<points>", f"coord must have shape (N, 3), got {c.shape}")
    if not np.isfinite(c).all():
        raise DataError("<points>", "NaN/Inf coordinates")
    n = c.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    kg = k_neighbors + 1
    normal_k = kg if normal_k is None else int(normal_k)
    need = min(max(kg, normal_k if normals is None else 0), n)
    if neighbors is None:
        idx = knn(c, need)
    else:
        idx = np.asarray(neighbors, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[0] != n or idx.shape[1] < need:
            raise ValueError(f"neighbors must have shape ({n}, >= {need}), got {idx.shape}")
    if normals is None:
        nrm = pca_normals(c, idx[:, :normal_k], viewpoint)
    else:
        nrm = np.ascontiguousarray(normals, dtype=np.float32)
        if nrm.shape != c.shape:
            raise DataError("<points>", f"normals must have shape {c.shape}, got {nrm.shape}")
    a, b = _knn_edges(np.ascontiguousarray(idx[:, :kg]))
    if orientation_invariant is None:
        orientation_invariant = normals is None and viewpoint is None
    w = _edge_weights(c, nrm, a, b, bool(orientation_invariant))
    return segment_graph(n, a, b, w, k_thresh, min_size, compact)
