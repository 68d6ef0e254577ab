"""Hand-held scanning trajectories: a person walking through the free floor space.

The path joins random waypoints by shortest paths on the 5 cm free-space grid (cost rising
near walls and furniture), is smoothed, and carries a camera ~1.5 m high that sweeps its yaw
around the walking direction with small pitch / roll wobble. Poses are camera-to-world
``(4, 4)`` in OpenCV axes (x right, y down, z forward).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import dijkstra

from contrast3d.simulate.footprint import SceneObject
from contrast3d.simulate.layout import CELL, FloorPlan


def clearance_map(plan: FloorPlan, objects: list[SceneObject], max_z: float = 1.9) -> np.ndarray:
    """``(nx, ny)`` distance in metres from each grid cell centre to the nearest wall or
    obstacle footprint (objects starting below ``max_z``; reserved zones are free)."""
    centres = plan.cell_centres()
    free = plan.inside(centres.reshape(-1, 2)).reshape(plan.grid.shape)
    for o in objects:
        if o.kind == "reserve" or o.z0 >= max_z:
            continue
        c, s = np.cos(o.yaw), np.sin(o.yaw)
        d = centres - o.center
        lx, ly = d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c
        free &= ~((np.abs(lx) <= o.half[0] + CELL / 2) & (np.abs(ly) <= o.half[1] + CELL / 2))
    return ndimage.distance_transform_edt(free) * CELL


def _grid_graph(walk: np.ndarray, clear: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    idx = -np.ones(walk.shape, np.int64)
    cells = np.argwhere(walk)
    idx[walk] = np.arange(len(cells))
    rows, cols, wts = [], [], []
    for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):
        a = cells
        b = cells + [di, dj]
        ok = (b[:, 0] >= 0) & (b[:, 0] < walk.shape[0]) & (b[:, 1] >= 0) & (b[:, 1] < walk.shape[1])
        a, b = a[ok], b[ok]
        ok = walk[b[:, 0], b[:, 1]]
        a, b = a[ok], b[ok]
        c = 0.5 * (clear[a[:, 0], a[:, 1]] + clear[b[:, 0], b[:, 1]])
        rows.append(idx[a[:, 0], a[:, 1]])
        cols.append(idx[b[:, 0], b[:, 1]])
        wts.append(np.hypot(di, dj) * CELL * (1.0 + 3.0 * np.exp(-(c - 0.3) / 0.2)))
    n = len(cells)
    g = sparse.coo_matrix((np.concatenate(wts), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return g.tocsr(), cells


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest")


def walk_path(plan: FloorPlan, objects: list[SceneObject], rng: np.random.Generator, length: float,
              clearance: float = 0.3) -> np.ndarray:
    """``(M, 2)`` smooth walking path of about ``length`` metres sampled every 2 cm."""
    clear = clearance_map(plan, objects)
    walk = clear >= clearance
    lab, n = ndimage.label(walk)
    if n == 0:
        raise ValueError(f"no free floor space with {clearance} m clearance")
    walk = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    g, cells = _grid_graph(walk, clear)
    weight = clear[walk] ** 2
    pts = [int(rng.choice(len(cells), p=weight / weight.sum()))]
    path = [cells[pts[0]]]
    total = 0.0
    while total < length and len(pts) < 40:
        dist, pred = dijkstra(g, directed=False, indices=pts[-1], return_predecessors=True)
        euclid = np.linalg.norm(cells - cells[pts[-1]], axis=1) * CELL
        w = np.where(np.isfinite(dist) & (euclid > 1.0), weight * np.minimum(euclid, 3.0), 0.0)
        if w.sum() <= 0:
            break
        nxt = int(rng.choice(len(cells), p=w / w.sum()))
        seg, k = [], nxt
        while k != pts[-1] and k >= 0:
            seg.append(cells[k])
            k = pred[k]
        path.extend(seg[::-1])
        total += euclid[nxt]
        pts.append(nxt)
    xy = plan.origin + (np.asarray(path, np.float64) + 0.5) * CELL
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    keep = np.concatenate([[True], seg > 1e-9])
    xy, s = xy[keep], s[keep]
    t = np.arange(0, s[-1], 0.02)
    xy = np.stack([np.interp(t, s, xy[:, 0]), np.interp(t, s, xy[:, 1])], 1)
    smooth = _smooth(xy, 12)
    ij = np.clip(np.floor((smooth - plan.origin) / CELL).astype(int), 0, np.array(walk.shape) - 1)
    bad = clear[ij[:, 0], ij[:, 1]] < clearance * 0.6
    smooth[bad] = xy[bad]
    return smooth


def look_at_pose(pos: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world ``(4, 4)``: looking along heading ``yaw`` (from +x, about +z), tilted by
    ``pitch`` (negative = down) and rolled by ``roll`` about the optical axis (radians)."""
    fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * right + s * down, -s * right + c * down
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, fwd, pos
    return T


def camera_trajectory(plan: FloorPlan, objects: list[SceneObject], n_frames: int, rng: np.random.Generator,
                      step: tuple[float, float] = (0.1, 0.2)) -> np.ndarray:
    """``(n_frames, 4, 4)`` camera-to-world poses of a person scanning the scene.

    Frames are spaced ``step`` metres (random in the range) along the walking path; the camera is
    held at ~1.5 m (person-dependent, with a little bob), its yaw sweeps up to ~±70 degrees around
    the walking direction, pitch wobbles around -15 degrees and roll by a few degrees.
    """
    spacing = rng.uniform(*step)
    path = walk_path(plan, objects, rng, length=max(n_frames * spacing, 2.0))
    d = np.gradient(path, axis=0)
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    heading = _smooth(heading, 40)
    s = np.linspace(0, len(path) - 1, n_frames)
    t = np.arange(n_frames) / max(n_frames - 1, 1)
    xy = np.stack([np.interp(s, np.arange(len(path)), path[:, k]) for k in range(2)], 1)
    base = np.interp(s, np.arange(len(path)), heading)

    def wobble(amp: float, cycles: tuple[float, float], k: int = 3) -> np.ndarray:
        out = np.zeros(n_frames)
        for _ in range(k):
            f = rng.uniform(*cycles) * max(1.0, n_frames / 40)
            out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        return amp * out / k

    yaw = base + wobble(np.deg2rad(rng.uniform(50, 90)), (0.5, 2.0))
    pitch = np.deg2rad(-rng.uniform(8, 22)) + wobble(np.deg2rad(12), (0.5, 3.0))
    roll = wobble(np.deg2rad(4), (0.5, 4.0))
    h = (rng.uniform(1.35, 1.65) + wobble(0.04, (1.0, 5.0))
         + 0.015 * np.sin(np.linspace(0, 2 * np.pi * n_frames / 3, n_frames)))
    h = np.minimum(h, plan.height - 0.3)
    return np.stack([look_at_pose(np.array([xy[i, 0], xy[i, 1], h[i]]), yaw[i], pitch[i], roll[i])
                     for i in range(n_frames)])
