"""PointGroup clustering against a naive BFS on a small cloud, plus ignore/min-size/dual behaviour."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from contrast3d.evaluation.clustering import ClusterConfig, cluster_dual, cluster_points, radius_components


def naive_components(coord, labels, radius):
    """BFS over an O(N^2) adjacency list, float64; returns a list of sets of point indices."""
    n = len(coord)
    seen, comps = [False] * n, []
    for s in range(n):
        if seen[s] or labels[s] < 0:
            continue
        seen[s], comp, todo = True, {s}, deque([s])
        while todo:
            i = todo.popleft()
            for j in range(n):
                if not seen[j] and labels[j] == labels[i] and np.sqrt(((coord[i] - coord[j]) ** 2).sum()) <= radius:
                    seen[j] = True
                    comp.add(j)
                    todo.append(j)
        comps.append(frozenset(comp))
    return comps


def _cloud(seed=0, n=300):
    g = np.random.default_rng(seed)
    coord = g.random((n, 3)) * [1.0, 1.0, 0.3]
    labels = g.integers(-1, 4, n)
    return coord, labels


def _partition(ids):
    return {frozenset(np.flatnonzero(ids == k).tolist()) for k in np.unique(ids[ids >= 0])}


@pytest.mark.parametrize("seed", [0, 1])
def test_radius_components_equal_bfs_partition(seed):
    coord, labels = _cloud(seed)
    ids = radius_components(coord, labels, 0.09)
    assert set(naive_components(coord, labels, 0.09)) == _partition(ids)
    assert (ids[labels < 0] == -1).all()
    # ids ordered by smallest member index
    firsts = [np.flatnonzero(ids == k).min() for k in range(ids.max() + 1)]
    assert firsts == sorted(firsts)
    assert len(set(naive_components(coord, labels, 0.09))) > 10


def test_cluster_points_ignore_and_min_size():
    coord, labels = _cloud(2, 400)
    cfg = ClusterConfig(radius=0.1, min_points=4, ignore_classes=(1,))
    res = cluster_points(coord, labels, cfg)
    masked = np.where(labels == 1, -1, labels)
    expect = {c for c in naive_components(coord, masked, 0.1) if len(c) >= 4}
    got = {frozenset(res.point_index[s:e].tolist()) for s, e in zip(res.offset - res.sizes, res.offset)}
    assert got == expect and len(got) > 3
    assert all(len(c) >= 4 for c in got)
    # some small components exist and were dropped
    assert any(len(c) < 4 for c in naive_components(coord, masked, 0.1))
    assert not np.isin(res.classes, [1]).any()
    for k in range(len(res)):
        pts = res.point_index[res.offset[k] - res.sizes[k]:res.offset[k]]
        assert (labels[pts] == res.classes[k]).all()
    assert np.all(res.scores == 1.0) and np.all(res.source == 0)
    masks = res.masks()
    assert masks.shape == (len(res), 400) and masks.sum() == res.point_index.size
    ids = res.instance_ids()
    assert _partition(ids) == got


def test_scores_are_mean_class_probability():
    coord = np.array([[0, 0, 0], [0.02, 0, 0], [0.04, 0, 0], [5, 5, 5], [5.02, 5, 5]], dtype=float)
    sem = np.array([2, 2, 2, 3, 3])
    probs = np.zeros((5, 4))
    probs[[0, 1, 2], 2] = [0.9, 0.6, 0.3]
    probs[[3, 4], 3] = [0.5, 1.0]
    res = cluster_points(coord, sem, ClusterConfig(radius=0.03, min_points=2, ignore_classes=()), probs=probs)
    assert res.classes.tolist() == [2, 3]
    np.testing.assert_allclose(res.scores, [0.6, 0.75])


def test_dual_set_is_union_and_overlaps_resolve_by_score():
    # two chairs 0.05 m apart: one cluster on original coordinates, two after shifting to their centres
    coord = np.array([[0.0, 0, 0], [0.03, 0, 0], [0.06, 0, 0], [0.09, 0, 0]])
    shifted = np.array([[0.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    sem = np.full(4, 5)
    probs = np.zeros((4, 6))
    probs[:, 5] = [0.2, 0.2, 1.0, 1.0]
    cfg = ClusterConfig(radius=0.035, min_points=2, ignore_classes=())
    res = cluster_dual(coord, shifted, sem, cfg, probs=probs)
    assert res.source.tolist() == [0, 1, 1]
    sets = [res.point_index[s:e].tolist() for s, e in zip(res.offset - res.sizes, res.offset)]
    assert sets == [[0, 1, 2, 3], [0, 1], [2, 3]]
    np.testing.assert_allclose(res.scores, [0.6, 0.2, 1.0])
    assert res.instance_ids().tolist() == [0, 0, 2, 2]
    with pytest.raises(ValueError):
        cluster_points(coord, sem, ClusterConfig(dual=True))


def test_empty_and_all_ignored():
    coord = np.zeros((3, 3))
    res = cluster_points(coord, np.array([0, 1, -1]))  # default ignores 0 and 1
    assert len(res) == 0 and res.instance_ids().tolist() == [-1, -1, -1]
    assert res.masks().shape == (0, 3)
