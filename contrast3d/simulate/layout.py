"""Floor plans: rooms as unions of axis-aligned rectangles, walls, doors and windows.

Everything is in metres on a 5 cm grid, z up, floor at ``z = 0``. Rooms are separated by
interior walls of thickness ``thickness``; the room-id grid (``-1`` = solid / outside) gives
the wall faces as maximal straight *runs* between a room cell and a solid cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CELL = 0.05


@dataclass
class Room:
    """One room: ``rects`` are ``(x0, y0, x1, y1)`` interior rectangles (metres); ``kind`` is
    ``bedroom``, ``living``, ``office``, ``kitchen``, ``dining`` or ``bathroom``."""

    id: int
    kind: str
    rects: list[tuple[float, float, float, float]]

    @property
    def area(self) -> float:
        return float(sum((r[2] - r[0]) * (r[3] - r[1]) for r in self.rects))


@dataclass
class WallRun:
    """A straight wall face. ``axis`` is the axis of its normal (0: face is ``x = line``, the
    along-wall coordinate is y; 1: face is ``y = line``, along is x); ``inward`` (+1/-1) points
    into ``room``; ``other`` is the room behind the wall (``-1`` = outside)."""

    axis: int
    line: float
    lo: float
    hi: float
    inward: int
    room: int
    other: int
    instance: int = -1

    @property
    def length(self) -> float:
        return self.hi - self.lo

    def point(self, along: float, offset: float = 0.0) -> np.ndarray:
        """The 2D point at ``along`` on the face, ``offset`` metres into the room."""
        c = self.line + self.inward * offset
        return np.array([c, along]) if self.axis == 0 else np.array([along, c])

    @property
    def normal(self) -> np.ndarray:
        """``(2,)`` unit normal into the room."""
        n = np.zeros(2)
        n[self.axis] = self.inward
        return n


@dataclass
class Opening:
    """A door or window hole through a wall: ``[lo, hi]`` along the wall, ``[c0, c1]`` across
    its thickness (``c0 < c1``, coordinates on ``axis``), ``[z0, z1]`` vertically."""

    kind: str
    axis: int
    lo: float
    hi: float
    c0: float
    c1: float
    z0: float
    z1: float
    rooms: tuple[int, int]
    run: WallRun | None = None

    @property
    def wall(self) -> WallRun:
        """The wall run the opening is cut into (the layout sets ``run`` on every opening it makes)."""
        if self.run is None:
            raise ValueError(f"{self.kind} opening has no wall run")
        return self.run


@dataclass
class FloorPlan:
    """Rooms, wall runs, openings, storey height and the room-id grid (``grid[ix, iy]``)."""

    rooms: list[Room]
    height: float
    thickness: float
    origin: np.ndarray
    grid: np.ndarray
    runs: list[WallRun] = field(default_factory=list)
    openings: list[Opening] = field(default_factory=list)

    def room_at(self, xy: np.ndarray) -> np.ndarray:
        """Room id ``(N,)`` int at 2D points ``(N, 2)``; ``-1`` in walls or outside."""
        ij = np.floor((np.asarray(xy, np.float64) - self.origin) / CELL).astype(np.int64)
        ok = (ij >= 0).all(1) & (ij[:, 0] < self.grid.shape[0]) & (ij[:, 1] < self.grid.shape[1])
        out = np.full(len(ij), -1, np.int64)
        out[ok] = self.grid[ij[ok, 0], ij[ok, 1]]
        return out

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: 2D points inside a room or inside a door opening."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        ok = self.room_at(xy) >= 0
        for o in self.openings:
            if o.kind == "door":
                a, c = xy[:, 1 - o.axis], xy[:, o.axis]
                ok |= (a >= o.lo) & (a <= o.hi) & (c >= o.c0) & (c <= o.c1)
        return ok

    def runs_of(self, room: int) -> list[WallRun]:
        return [r for r in self.runs if r.room == room]

    def cell_centres(self) -> np.ndarray:
        """``(nx, ny, 2)`` centres of the grid cells."""
        ix, iy = np.meshgrid(np.arange(self.grid.shape[0]), np.arange(self.grid.shape[1]), indexing="ij")
        return self.origin + (np.stack([ix, iy], -1) + 0.5) * CELL


def _snap(x: float) -> float:
    return round(x / CELL) * CELL


def _rooms(rng: np.random.Generator, t: float) -> list[Room]:
    """Random room rectangles: single, L-shaped or 2-3 connected rooms."""
    s = lambda a, b: _snap(rng.uniform(a, b))
    layout = rng.choice(["single", "L", "multi"], p=[0.4, 0.2, 0.4])
    if layout == "single":
        w, d = s(3.0, 7.0), s(3.0, 6.0)
        kinds = ["bedroom", "living", "office", "kitchen", "dining"] + (["bathroom"] if w * d < 12 else [])
        if w * d < 9:
            kinds = ["bathroom", "bedroom", "office"]
        return [Room(0, str(rng.choice(kinds)), [(0.0, 0.0, w, d)])]
    if layout == "L":
        w, d = s(5.0, 8.0), s(4.5, 7.0)
        cw, cd = _snap(w * rng.uniform(0.35, 0.55)), _snap(d * rng.uniform(0.35, 0.55))
        rects = [(0.0, 0.0, w, d - cd), (0.0, d - cd, w - cw, d)]
        if rng.random() < 0.5:  # mirror the notch to the other side
            rects = [(0.0, 0.0, w, d - cd), (cw, d - cd, w, d)]
        return [Room(0, str(rng.choice(["living", "office", "kitchen", "bedroom"])), rects)]
    w, d = s(6.0, 9.5), s(3.6, 6.5)
    split = _snap(w * rng.uniform(0.45, 0.65))
    big = Room(0, str(rng.choice(["living", "bedroom", "office", "dining"])), [(0.0, 0.0, split, d)])
    x0 = split + t
    if rng.random() < 0.5 or d < 4.5:
        if (w - x0) * d < 10 and rng.random() < 0.7:
            kind = "bathroom"
        else:
            kind = str(rng.choice(["kitchen", "office", "bedroom"]))
        return [big, Room(1, kind, [(x0, 0.0, w, d)])]
    sy = _snap(d * rng.uniform(0.4, 0.6))
    return [big, Room(1, "bathroom", [(x0, 0.0, w, sy)]),
            Room(2, str(rng.choice(["kitchen", "office", "bedroom"])), [(x0, sy + t, w, d)])]


def _rasterise(rooms: list[Room], t: float) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min([[r[0], r[1]] for room in rooms for r in room.rects], 0) - t - 4 * CELL
    hi = np.max([[r[2], r[3]] for room in rooms for r in room.rects], 0) + t + 4 * CELL
    shape = np.ceil((hi - lo) / CELL - 1e-6).astype(int)
    grid = np.full(shape, -1, np.int16)
    cx = lo[0] + (np.arange(shape[0]) + 0.5) * CELL
    cy = lo[1] + (np.arange(shape[1]) + 0.5) * CELL
    for room in rooms:
        for x0, y0, x1, y1 in room.rects:
            grid[np.ix_((cx > x0) & (cx < x1), (cy > y0) & (cy < y1))] = room.id
    return lo, grid


def _extract_runs(grid: np.ndarray, origin: np.ndarray, t: float) -> list[WallRun]:
    """Maximal straight wall faces between room cells and solid cells (vectorised run finding)."""
    k = round(t / CELL)
    runs = []
    for axis in (0, 1):
        g = grid if axis == 0 else grid.T  # g[i, j]: i across the face normal, j along
        n = g.shape[0]
        for side in (+1, -1):  # wall on the +i or -i side of a room cell
            nb = np.roll(g, -side, axis=0)
            mask = (g >= 0) & (nb < 0)
            mask[0 if side < 0 else -1] = False
            i, j = np.nonzero(mask)
            room = g[i, j].astype(np.int64)
            oi = np.clip(i + side * (1 + k), 0, n - 1)
            other = g[oi, j].astype(np.int64)
            order = np.lexsort((j, other, room, i))
            i, j, room, other = i[order], j[order], room[order], other[order]
            brk = np.ones(len(i), bool)
            brk[1:] = (np.diff(i) != 0) | (np.diff(room) != 0) | (np.diff(other) != 0) | (np.diff(j) != 1)
            starts = np.nonzero(brk)[0]
            ends = np.append(starts[1:], len(i)) - 1
            for s_, e_ in zip(starts, ends):
                line = origin[axis] + (i[s_] + (1 if side > 0 else 0)) * CELL
                lo = origin[1 - axis] + j[s_] * CELL
                hi = origin[1 - axis] + (j[e_] + 1) * CELL
                runs.append(WallRun(axis, round(float(line), 4), round(float(lo), 4), round(float(hi), 4),
                                    -side, int(room[s_]), int(other[s_])))
    return runs


def _free_interval(run: WallRun, openings: list[Opening], width: float, rng: np.random.Generator,
                   margin: float = 0.3) -> float | None:
    """A random start along ``run`` for an opening of ``width`` clear of other openings."""
    taken = [(o.lo - margin, o.hi + margin) for o in openings if o.axis == run.axis
             and (abs(o.c0 - run.line) < 1e-6 or abs(o.c1 - run.line) < 1e-6)]
    for _ in range(20):
        a = _snap(rng.uniform(run.lo + margin, run.hi - margin - width)) if run.length > width + 2 * margin else None
        if a is None:
            return None
        if all(a + width <= t0 or a >= t1 for t0, t1 in taken):
            return a
    return None


def _opening(run: WallRun, a: float, width: float, z0: float, z1: float, kind: str, t: float) -> Opening:
    c_far = run.line - run.inward * t
    return Opening(kind, run.axis, a, a + width, min(run.line, c_far), max(run.line, c_far), z0, z1,
                   (run.room, run.other), run)


def make_floorplan(rng: np.random.Generator) -> FloorPlan:
    """A random floor plan with walls, interior doors, windows and maybe an entrance door."""
    t = float(rng.choice([0.1, 0.15, 0.2]))
    height = _snap(rng.uniform(2.45, 3.0))
    rooms = _rooms(rng, t)
    origin, grid = _rasterise(rooms, t)
    runs = _extract_runs(grid, origin, t)
    plan = FloorPlan(rooms, height, t, origin, grid, runs)
    door_top = min(_snap(rng.uniform(2.0, 2.15)), height - 0.2)
    # Interior doors: connect every room to room 0 or, failing that, to room 1.
    for room in rooms[1:]:
        cands = [r for r in runs if r.room == room.id and r.other >= 0 and r.other < room.id and r.length > 1.4]
        cands.sort(key=lambda r: (r.other, -r.length))
        for run in cands:
            w = _snap(rng.uniform(0.8, 1.0))
            a = _free_interval(run, plan.openings, w, rng, 0.15)
            if a is not None:
                plan.openings.append(_opening(run, a, w, 0.0, door_top, "door", t))
                break
    # Windows on exterior walls.
    for room in rooms:
        ext = [r for r in runs if r.room == room.id and r.other < 0 and r.length > 1.4]
        n_win = int(rng.integers(0 if room.kind == "bathroom" else 1, 3 if room.kind != "bathroom" else 2))
        for run in rng.permutation(len(ext))[:n_win] if ext else []:
            run = ext[run]
            w = _snap(rng.uniform(0.6, min(2.2, run.length - 0.7)))
            sill = _snap(rng.uniform(1.4, 1.6) if room.kind == "bathroom" else rng.uniform(0.6, 1.0))
            top = min(_snap(rng.uniform(1.9, 2.3)), height - 0.2)
            a = _free_interval(run, plan.openings, w, rng)
            if a is not None and top - sill > 0.4:
                plan.openings.append(_opening(run, a, w, sill, top, "window", t))
    # Entrance door.
    if rng.random() < 0.7:
        ext = [r for r in runs if r.other < 0 and r.length > 1.5 and rooms[r.room].kind != "bathroom"]
        if ext:
            run = ext[int(rng.integers(len(ext)))]
            w = _snap(rng.uniform(0.85, 1.0))
            a = _free_interval(run, plan.openings, w, rng, 0.2)
            if a is not None:
                plan.openings.append(_opening(run, a, w, 0.0, door_top, "door", t))
    return plan
