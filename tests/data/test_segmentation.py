"""Felzenszwalb-Huttenlocher segmentation (ScanNet segmentator) against a slow pure-Python
reference, golden outputs of ScanNet's own binary, and known geometric cases."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from contrast3d.data.edge_sort import _gcc_argsort_f32, _stable_argsort_f32
from contrast3d.data.segmentation import compact_labels, segment_graph, segment_mesh, segment_mesh_obj, segment_points
from contrast3d.errors import DataError
from contrast3d.structures import TriangleMesh

F32 = np.float32


# ----------------------------------------------------------------------------- reference
def ref_mean_normals(v, f):
    """ScanNet's running mean of unit face normals, float32 scalars, plain loops."""
    normals = [[F32(0), F32(0), F32(0)] for _ in range(len(v))]
    counts = [0] * len(v)
    for i1, i2, i3 in f.tolist():
        p1, p2, p3 = ([F32(c) for c in v[i]] for i in (i1, i2, i3))
        u = [p2[d] - p1[d] for d in range(3)]
        w = [p3[d] - p1[d] for d in range(3)]
        c = [u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]]
        n = np.sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2])
        if not n > 0:
            continue
        c = [x / n for x in c]
        for i in (i1, i2, i3):
            t = F32(1) / (F32(counts[i]) + F32(1))
            normals[i] = [t * c[d] + (F32(1) - t) * normals[i][d] for d in range(3)]
            counts[i] += 1
    return normals


def ref_weight(p, n, a, b, unoriented=False):
    d = [F32(p[b][k]) - F32(p[a][k]) for k in range(3)]
    dd = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    d = [x / dd for x in d]
    na, nb = [F32(x) for x in n[a]], [F32(x) for x in n[b]]
    dot = na[0] * nb[0] + na[1] * nb[1] + na[2] * nb[2]
    if unoriented and dot < 0:
        nb = [-x for x in nb]
        dot = -dot
    dot2 = nb[0] * d[0] + nb[1] * d[1] + nb[2] * d[2]
    w = F32(1) - dot
    return w * w if dot2 > 0 else w


def ref_segment(num, edges, weights, k, min_size):
    """Obvious FH with dict union-find (union by rank as ScanNet); stable sort of the edges."""
    parent = {i: i for i in range(num)}
    rank = {i: 0 for i in range(num)}
    size = {i: 1 for i in range(num)}
    thr = {i: F32(k) for i in range(num)}

    def find(x):
        y = x
        while parent[y] != y:
            y = parent[y]
        parent[x] = y
        return y

    def join(x, y):
        if rank[x] > rank[y]:
            x, y = y, x
        parent[x] = y
        size[y] += size[x]
        if rank[x] == rank[y]:
            rank[y] += 1
        return y

    order = sorted(range(len(edges)), key=lambda e: weights[e])
    for e in order:
        x, y = find(edges[e][0]), find(edges[e][1])
        if x != y and weights[e] <= thr[x] and weights[e] <= thr[y]:
            r = join(x, y)
            thr[r] = weights[e] + F32(k) / F32(size[r])
    for e in order:
        x, y = find(edges[e][0]), find(edges[e][1])
        if x != y and (size[x] < min_size or size[y] < min_size):
            join(x, y)
    return np.array([find(i) for i in range(num)], dtype=np.int64)


def ref_segment_mesh(v, f, k, min_size):
    n = ref_mean_normals(v, f)
    edges = [e for i1, i2, i3 in f.tolist() for e in ((i1, i2), (i1, i3), (i3, i2))]
    return ref_segment(len(v), edges, [ref_weight(v, n, a, b) for a, b in edges], k, min_size)


def ref_segment_points(p, normals, k_neighbors, k, min_size, unoriented=False):
    d = ((p[:, None, :].astype(np.float64) - p[None, :, :]) ** 2).sum(-1)
    table = np.argsort(d, axis=1, kind="stable")[:, : k_neighbors + 1]
    seen, edges = set(), []
    for i in range(len(p)):
        for j in table[i].tolist():
            if j != i and frozenset((i, j)) not in seen:
                seen.add(frozenset((i, j)))
                edges.append((i, j))
    return ref_segment(len(p), edges, [ref_weight(p, normals, a, b, unoriented) for a, b in edges], k, min_size)


# ----------------------------------------------------------------------------- inputs
def grid_mesh(n, height):
    """n x n grid triangulated into 2 (n-1)^2 faces; z = height(x, y); spacing 0.1 m."""
    x, y = np.meshgrid(np.arange(n, dtype=np.float32) * F32(0.1), np.arange(n, dtype=np.float32) * F32(0.1),
                       indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), height(x, y).ravel()], 1).astype(np.float32)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    p = (i * n + j).ravel()
    f = np.concatenate([np.stack([p, p + n, p + 1], 1), np.stack([p + 1, p + n, p + n + 1], 1)])
    return v, f.astype(np.int64)


def golden_mesh():
    """The mesh whose ScanNet segIndices are pinned below: 14x14 grid folded at x = 0.6 plus a step."""
    return grid_mesh(14, lambda x, y: (np.where(x > 0.6, x - 0.6, 0.0)
                                       + np.where(y > 0.9, 0.05, 0.0)).astype(np.float32))


def sha(a):
    return hashlib.sha1(np.asarray(a).astype("<i8").tobytes()).hexdigest()


def same_partition(a, b):
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", range(6))
def test_mesh_matches_reference(seed):
    rng = np.random.default_rng(seed)
    levels = rng.integers(2, 6)  # quantised heights give many exactly tied weights
    v, f = grid_mesh(9, lambda x, y: (rng.integers(0, levels, x.shape) * 0.03).astype(np.float32))
    f = f[rng.permutation(len(f))]
    k, ms = [(0.01, 20), (0.05, 5), (0.5, 3)][seed % 3]
    ours = segment_mesh(v, f, k, ms, tie_order="stable")
    ref = ref_segment_mesh(v, f, k, ms)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("seed", range(4))
def test_points_match_reference(seed):
    rng = np.random.default_rng(100 + seed)
    p = rng.random((150, 3)).astype(np.float32)
    p[:75, 2] *= 0.02  # a noisy floor plus a blob
    normals = rng.normal(size=(150, 3))
    normals[:75] = (0, 0, 1) + 0.05 * normals[:75]
    normals = (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)
    k, ms = [(0.05, 10), (0.5, 4)][seed % 2]
    ours = segment_points(p, normals, k_neighbors=6, k_thresh=k, min_size=ms)
    np.testing.assert_array_equal(ours, ref_segment_points(p, normals, 6, k, ms))
    normals[rng.random(150) < 0.5] *= -1  # random signs: the orientation-invariant weight
    ours = segment_points(p, normals, k_neighbors=6, k_thresh=k, min_size=ms, orientation_invariant=True)
    np.testing.assert_array_equal(ours, ref_segment_points(p, normals, 6, k, ms, unoriented=True))


def test_golden_scannet_binary_output():
    """segIndices written by ScanNet's GCC-built segmentator for golden_mesh()."""
    v, f = golden_mesh()
    seg = segment_mesh(v, f, 0.01, 20)
    assert sorted(set(seg.tolist())) == [72, 81, 168, 180]
    assert sha(seg) == "cffc6a149baf04050023d6b93e99f31fd0a27162"
    seg = segment_mesh(v, f, 0.5, 5)
    assert sha(seg) == "66710fe23b2e5d43f952b58e1cff799674061813"
    stable = segment_mesh(v, f, 0.5, 5, tie_order="stable")
    assert sha(stable) != sha(seg) and same_partition(stable, seg)


@pytest.mark.parametrize("n,levels,digest", [
    (17, 7, "15cb49b086e48519d31072874c6d25f2962e3a54"),
    (1000, 2, "72b6d41660940793f6738bf325b426925285d2dc"),
    (4097, 1000, "fe8e103e132b10282779d000fc99cd990c2e075b"),
    (65536, 3, "a6df83ce9702be10fe9464502a5ea277e74efe7f"),
])
def test_gcc_argsort_matches_std_sort(n, levels, digest):
    """Permutations produced by g++ 12 std::sort on {w, index} structs compared by w."""
    w = ((np.arange(n, dtype=np.int64) * 7919 + 13) % levels).astype(np.float32) / levels
    order = _gcc_argsort_f32(w)
    assert sha(order) == digest
    np.testing.assert_array_equal(_stable_argsort_f32(w), np.argsort(w, kind="stable"))


def test_stable_argsort_special_values():
    w = np.array([0.5, -0.0, 0.0, -1e-7, np.inf, 3.0, np.nan, -2.0, 0.5, 1e-30], dtype=np.float32)
    order = _stable_argsort_f32(w)
    assert order[-1] == 6 and np.all(np.diff(w[order[:-1]]) >= 0)
    assert list(order[[0, 1]]) == [7, 3] and order.tolist().index(0) < order.tolist().index(8)


def test_two_perpendicular_planes_give_two_segments():
    v, f = grid_mesh(16, lambda x, y: np.zeros_like(x))
    up = v[:, 0] > 0.75  # fold the grid: this part becomes the vertical plane x = 0.75
    v[up, 2], v[up, 0] = v[up, 0] - 0.75, 0.75
    seg = segment_mesh(v, f, k_thresh=0.001, seg_min_verts=10, compact=True)
    assert seg.max() == 1
    flat, wall = v[:, 0] < 0.7, v[:, 2] > 0.06
    assert len(np.unique(seg[flat])) == 1 and len(np.unique(seg[wall])) == 1
    assert seg[flat][0] != seg[wall][0]
    # the same on a dense point cloud with its own PCA normals
    rng = np.random.default_rng(0)
    a = rng.random((3000, 2)).astype(np.float32)
    pts = np.concatenate([np.c_[a[:1500, 0], a[:1500, 1], np.zeros(1500)],
                          np.c_[np.zeros(1500), a[1500:, 1], a[1500:, 0]]])
    seg = segment_points(pts.astype(np.float32), k_neighbors=10, k_thresh=0.01, min_size=50, compact=True)
    assert seg.max() == 1
    inner = (pts[:, 0] > 0.1) | (pts[:, 2] > 0.1)
    assert same_partition(seg[inner], (pts[inner, 2] > 0.1).astype(int))


def test_flat_plane_is_one_segment():
    v, f = grid_mesh(20, lambda x, y: np.zeros_like(x))
    assert len(np.unique(segment_mesh(v, f))) == 1
    rng = np.random.default_rng(1)
    pts = np.c_[rng.random((2000, 2)), 1e-4 * rng.standard_normal(2000)].astype(np.float32)
    assert len(np.unique(segment_points(pts))) == 1


@pytest.mark.parametrize("seed", range(3))
def test_min_size_only_spares_isolated_components(seed):
    rng = np.random.default_rng(seed)
    parts, f_all, off = [], [], 0
    for size in (3, 12, 5):  # grids of size^2 vertices, some below the minimum
        v, f = grid_mesh(size, lambda x, y: (rng.random(x.shape) * 0.2).astype(np.float32))
        parts.append(v + off * 10), f_all.append(f + off)
        off += len(v)
    v, f = np.concatenate(parts), np.concatenate(f_all)
    min_size = 20
    seg = segment_mesh(v, f, k_thresh=1e-4, seg_min_verts=min_size, compact=True)
    adj = coo_matrix((np.ones(3 * len(f)), (f[:, [0, 1, 2]].ravel(), f[:, [1, 2, 0]].ravel())), shape=(len(v),) * 2)
    _, comp = connected_components(adj, directed=False)
    ids, counts = np.unique(seg, return_counts=True)
    for s, c in zip(ids, counts):
        if c < min_size:  # a small segment must be a whole connected component
            members = seg == s
            assert len(np.unique(comp[members])) == 1 and (comp == comp[members][0]).sum() == c
    assert len(ids) > 1


def test_outputs_and_determinism():
    v, f = golden_mesh()
    roots = segment_mesh(v, f, 0.05, 5)
    assert roots.dtype == np.int64 and roots.shape == (len(v),)
    assert np.all(roots[roots] == roots)  # ids are root vertices labelling themselves
    compact = segment_mesh_obj(TriangleMesh(v, f), 0.05, 5, compact=True)
    np.testing.assert_array_equal(compact, compact_labels(roots))
    assert set(compact.tolist()) == set(range(compact.max() + 1))
    np.testing.assert_array_equal(segment_mesh(v, f, 0.05, 5), roots)
    pts = np.random.default_rng(3).random((500, 3)).astype(np.float32)
    np.testing.assert_array_equal(segment_points(pts), segment_points(pts.copy()))
    a, b = np.array([0, 1]), np.array([1, 2])
    assert segment_graph(4, a, b, np.zeros(2, np.float32), 1.0, 1, compact=True).tolist() == [0, 0, 0, 1]


def test_bad_input_raises():
    v, f = golden_mesh()
    with pytest.raises(DataError):
        segment_mesh(v, f + len(v))
    with pytest.raises(DataError):
        segment_points(np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError):
        segment_mesh(v, f, tie_order="quick")
    assert segment_points(np.zeros((0, 3), np.float32)).shape == (0,)


def _read_mesh(path):
    try:
        from contrast3d.io.ply import read_ply_mesh
        mesh = read_ply_mesh(path)
        return mesh.vertices, mesh.faces
    except ImportError:  # pragma: no cover - before the PLY reader existed
        from plyfile import PlyData
        ply = PlyData.read(str(path))
        return (np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float32),
                np.stack(ply["face"]["vertex_indices"]).astype(np.int64))


def test_real_scan_identical_to_scannet(shared_data):
    """frag_115.ply: segIndices of ScanNet's segmentator (g++ 12 build, defaults) pinned by hash."""
    path = shared_data / "open3d_fragment_mesh" / "frag_115.ply"
    if not path.exists():
        pytest.skip(f"{path} not present")
    v, f = _read_mesh(path)
    seg = segment_mesh(v, f)
    assert len(np.unique(seg)) == 80
    assert sha(seg) == "5ba228856384da75e649385b79150d866b297c59"
