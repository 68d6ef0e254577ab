"""FPS and ball query against slow, obvious float64 references on tiny batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contrast3d.models.point_ops import ball_query, farthest_point_sampling


def naive_fps(points: np.ndarray, m: int, start: int = 0) -> list[int]:
    """Textbook FPS: Python loops over iterations and points, float64."""
    chosen = [start]
    dist = [float("inf")] * len(points)
    for _ in range(m - 1):
        last = points[chosen[-1]]
        best, best_d = -1, -1.0
        for i, p in enumerate(points):
            d = float(((p - last) ** 2).sum())
            dist[i] = min(dist[i], d)
            if dist[i] > best_d:
                best, best_d = i, dist[i]
        chosen.append(best)
    return chosen


def naive_ball(points: np.ndarray, q: np.ndarray, radius: float, nsample: int, nearest: bool) -> list[int]:
    hits = [i for i, p in enumerate(points) if float(((p - q) ** 2).sum()) < radius ** 2]
    if nearest:
        hits.sort(key=lambda i: float(((points[i] - q) ** 2).sum()))
    hits = hits[:nsample]
    if not hits:
        return [-1] * nsample
    return hits + [hits[0]] * (nsample - len(hits))


def _batch(sizes, seed=0):
    g = np.random.default_rng(seed)
    pts = g.random((sum(sizes), 3))
    return pts, np.cumsum(sizes)


def test_fps_matches_naive_loop_per_scene():
    sizes, samples = [37, 1, 50, 12], [9, 1, 20, 12]
    pts, off = _batch(sizes)
    idx = farthest_point_sampling(torch.from_numpy(pts), torch.tensor(off), torch.tensor(np.cumsum(samples)))
    assert idx.dtype == torch.long and idx.shape == (sum(samples),)
    expect, s0 = [], 0
    for n, m in zip(sizes, samples):
        expect += [s0 + i for i in naive_fps(pts[s0:s0 + n], m)]
        s0 += n
    assert idx.tolist() == expect
    # all samples of a full-size request are distinct and cover the scene
    last = idx[-12:].tolist()
    assert sorted(last) == list(range(off[2], off[3]))


def test_fps_random_start_is_seeded_and_consistent():
    pts, off = _batch([40, 30], seed=3)
    new_off = torch.tensor([10, 17])
    a = farthest_point_sampling(torch.from_numpy(pts), torch.tensor(off), new_off, start="random",
                                generator=torch.Generator().manual_seed(5))
    b = farthest_point_sampling(torch.from_numpy(pts), torch.tensor(off), new_off, start="random",
                                generator=torch.Generator().manual_seed(5))
    assert a.tolist() == b.tolist()
    s1 = int(a[0])
    assert a[:10].tolist() == naive_fps(pts[:40], 10, start=s1)
    s2 = int(a[10]) - 40
    assert (a[10:] - 40).tolist() == naive_fps(pts[40:], 7, start=s2)


def test_fps_float32_and_errors():
    pts, off = _batch([20])
    idx = farthest_point_sampling(torch.from_numpy(pts).float(), torch.tensor(off), torch.tensor([6]))
    assert idx.tolist() == naive_fps(pts.astype(np.float32).astype(np.float64), 6)
    with pytest.raises(ValueError):
        farthest_point_sampling(torch.from_numpy(pts), torch.tensor(off), torch.tensor([21]))
    with pytest.raises(ValueError):
        farthest_point_sampling(torch.from_numpy(pts), torch.tensor([19]), torch.tensor([3]))
    assert farthest_point_sampling(torch.from_numpy(pts), torch.tensor(off), torch.tensor([0])).numel() == 0


@pytest.mark.parametrize("order", ["index", "nearest"])
@pytest.mark.parametrize("max_elements", [1 << 24, 7])
def test_ball_query_matches_brute_force(order, max_elements):
    sizes, qsizes = [60, 45, 3], [11, 8, 4]
    pts, off = _batch(sizes, seed=1)
    q, qoff = _batch(qsizes, seed=2)
    radius, ns = 0.3, 6
    idx, cnt = ball_query(torch.from_numpy(pts), torch.tensor(off), torch.from_numpy(q), torch.tensor(qoff),
                          radius, ns, order=order, max_elements=max_elements)
    assert idx.shape == (sum(qsizes), ns)
    p0, q0, rows, counts = 0, 0, [], []
    for n, m in zip(sizes, qsizes):
        for j in range(m):
            local = naive_ball(pts[p0:p0 + n], q[q0 + j], radius, ns, order == "nearest")
            rows.append([i + p0 if i >= 0 else -1 for i in local])
            counts.append(len(set(i for i in local if i >= 0)))
        p0, q0 = p0 + n, q0 + m
    assert idx.tolist() == rows
    assert cnt.tolist() == counts
    assert (cnt == 0).any() and (cnt == ns).any() and ((cnt > 0) & (cnt < ns)).any()  # all cases exercised


def test_ball_query_nsample_larger_than_scene_and_strict_radius():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.5, 0, 0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 0, 0]], dtype=torch.float64)
    idx, cnt = ball_query(pts, torch.tensor([3]), q, torch.tensor([1]), radius=1.0, nsample=5)
    assert idx.tolist() == [[0, 2, 0, 0, 0]]  # the point at distance exactly 1 is outside (strict <)
    assert cnt.tolist() == [2]


def test_ball_query_nearest_ties_by_index():
    pts = torch.tensor([[0.5, 0, 0], [-0.5, 0, 0], [0.2, 0, 0], [0, 0.5, 0]], dtype=torch.float64)
    q = torch.zeros(1, 3, dtype=torch.float64)
    idx, cnt = ball_query(pts, torch.tensor([4]), q, torch.tensor([1]), radius=0.6, nsample=3, order="nearest")
    assert idx.tolist() == [[2, 0, 1]] and cnt.tolist() == [3]
