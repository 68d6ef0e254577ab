"""Meshes of the building shell (walls with openings and reveals, floors, ceilings) and of the
door / window fittings, plus the zones in front of openings that furniture must keep clear."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from contrast3d.simulate import classes as C
from contrast3d.simulate.footprint import SceneObject
from contrast3d.simulate.layout import FloorPlan, Opening, WallRun
from contrast3d.simulate.meshbuilder import MeshBuilder, grid_patch, rot_z
from contrast3d.simulate.textures import Material, MaterialFactory


def aa_patch(n_axis: int, coord: float, ranges: dict[int, tuple[float, float]], sign: int, edge: float):
    """An axis-aligned rectangle on the plane ``x[n_axis] = coord`` with normal ``sign * e_n``;
    ``ranges`` gives ``(lo, hi)`` for the two other axes."""
    a1, a2 = (n_axis + 1) % 3, (n_axis + 2) % 3
    origin = np.zeros(3)
    origin[n_axis], origin[a1], origin[a2] = coord, ranges[a1][0], ranges[a2][0]
    u, v = np.zeros(3), np.zeros(3)
    u[a1] = ranges[a1][1] - ranges[a1][0]
    v[a2] = ranges[a2][1] - ranges[a2][0]
    return grid_patch(origin, u, v, edge) if sign > 0 else grid_patch(origin, v, u, edge)


def _on_run(o: Opening, run: WallRun) -> bool:
    on_face = abs(o.c0 - run.line) < 1e-6 or abs(o.c1 - run.line) < 1e-6
    return o.axis == run.axis and on_face and o.lo < run.hi - 1e-6 and o.hi > run.lo + 1e-6


def build_shell(plan: FloorPlan, mats: MaterialFactory, next_id: Callable[[], int], edge: float = 0.1
                ) -> tuple[MeshBuilder, dict[int, Material]]:
    """Walls (one instance per run), floors (one per room), ceilings (ignored) and reveals."""
    mb = MeshBuilder(edge)
    rng = mats.rng
    wall_mat, floor_mat = {}, {}
    for room in plan.rooms:
        wall_mat[room.id] = (mats.make("stripes", "wall", scale=rng.uniform(0.15, 0.4), noise=0.04, axis=3,
                                       alt_family="wall") if rng.random() < 0.15 else mats.solid("wall", 0.05))
        if room.kind in ("bathroom", "kitchen"):
            floor_mat[room.id] = mats.make("tiles", "stone", scale=rng.uniform(0.2, 0.5), noise=0.05)
        elif rng.random() < 0.55:
            floor_mat[room.id] = mats.make("planks", "wood", scale=rng.uniform(0.1, 0.22), noise=0.06,
                                           axis=int(rng.integers(0, 2)))
        else:
            floor_mat[room.id] = mats.make("solid", "fabric", scale=0.15, noise=0.2)
    H = plan.height
    for run in plan.runs:
        run.instance = next_id()
        ops = sorted([o for o in plan.openings if _on_run(o, run)], key=lambda o: o.lo)
        cuts = [run.lo] + [x for o in ops for x in (o.lo, o.hi)] + [run.hi]
        mat = wall_mat[run.room]
        for k in range(len(cuts) // 2):
            a0, a1 = cuts[2 * k], cuts[2 * k + 1]
            if a1 - a0 > 1e-6:
                mb.add(aa_patch(run.axis, run.line, {1 - run.axis: (a0, a1), 2: (0.0, H)}, run.inward, edge),
                       mat, C.WALL, run.instance)
        for o in ops:
            for z0, z1 in ((0.0, o.z0), (o.z1, H)):
                if z1 - z0 > 1e-6:
                    mb.add(aa_patch(run.axis, run.line, {1 - run.axis: (o.lo, o.hi), 2: (z0, z1)}, run.inward, edge),
                           mat, C.WALL, run.instance)
    for o in plan.openings:  # reveals: the wall surfaces inside the hole
        mat, inst = wall_mat[o.rooms[0]], o.run.instance if o.run else -1
        along, across = 1 - o.axis, o.axis
        for a, sgn in ((o.lo, 1), (o.hi, -1)):
            mb.add(aa_patch(along, a, {across: (o.c0, o.c1), 2: (o.z0, o.z1)}, sgn, edge), mat, C.WALL, inst)
        mb.add(aa_patch(2, o.z1, {along: (o.lo, o.hi), across: (o.c0, o.c1)}, -1, edge), mat, C.WALL, inst)
        if o.z0 > 0:
            mb.add(aa_patch(2, o.z0, {along: (o.lo, o.hi), across: (o.c0, o.c1)}, 1, edge), mat, C.WALL, inst)
        elif o.rooms[1] >= 0:  # threshold floor between two rooms
            mb.add(aa_patch(2, 0.0, {along: (o.lo, o.hi), across: (o.c0, o.c1)}, 1, edge),
                   floor_mat[o.rooms[0]], C.FLOOR, -1)
    ceiling = mats.solid("white", 0.03)
    for room in plan.rooms:
        inst = next_id()
        for x0, y0, x1, y1 in room.rects:
            mb.add(aa_patch(2, 0.0, {0: (x0, x1), 1: (y0, y1)}, 1, edge), floor_mat[room.id], C.FLOOR, inst)
            mb.add(aa_patch(2, H, {0: (x0, x1), 1: (y0, y1)}, -1, edge), ceiling, C.IGNORE, -1)
    return mb, wall_mat


def _frame_2d(o: Opening, side: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Along-wall unit vector, into-room normal (2D) and the face coordinate for room side 0/1."""
    along = np.zeros(2)
    along[1 - o.axis] = 1.0
    run = o.wall
    inward = run.inward if side == 0 else -run.inward
    face = run.line if side == 0 else run.line - run.inward * (o.c1 - o.c0)
    n = np.zeros(2)
    n[o.axis] = inward
    return along, n, face


def _point(o: Opening, along: float, across: float) -> np.ndarray:
    return np.array([across, along]) if o.axis == 0 else np.array([along, across])


def build_fittings(plan: FloorPlan, mats: MaterialFactory, next_id: Callable[[], int], edge: float = 0.05
                   ) -> tuple[MeshBuilder, list[SceneObject]]:
    """Door frames and leaves, window frames and sills, and reserved zones in front of them."""
    mb, objs, rng = MeshBuilder(edge), [], mats.rng
    for o in plan.openings:
        inst = next_id()
        lbl = C.DOOR if o.kind == "door" else C.WINDOW
        mat = mats.wood() if rng.random() < 0.5 else mats.solid("white", 0.03)
        mid_c, w = 0.5 * (o.c0 + o.c1), o.hi - o.lo
        yaw_wall = 0.0 if o.axis == 1 else np.pi / 2  # box local x along the wall
        R = rot_z(yaw_wall)
        sides = [0, 1] if o.rooms[1] >= 0 else [0]
        if o.kind == "door":
            for side in sides:  # casings on the room faces
                along, n, face = _frame_2d(o, side)
                for a, width in ((o.lo - 0.035, 0.07), (o.hi + 0.035, 0.07)):
                    p = _point(o, a, face) + n * 0.01
                    mb.box([p[0], p[1], o.z1 / 2 + 0.035], [width, 0.02, o.z1 + 0.07], mat, lbl, inst, rot=R)
                p = _point(o, 0.5 * (o.lo + o.hi), face) + n * 0.01
                mb.box([p[0], p[1], o.z1 + 0.035], [w + 0.14, 0.02, 0.07], mat, lbl, inst, rot=R)
            leaf_mat = mats.wood() if rng.random() < 0.6 else mats.solid("white", 0.04)
            h = o.z1 - 0.01
            if o.rooms[1] < 0:  # entrance: closed leaf
                p = _point(o, 0.5 * (o.lo + o.hi), mid_c)
                mb.box([p[0], p[1], h / 2], [w - 0.01, 0.045, h], leaf_mat, lbl, inst, rot=R)
            else:  # interior: open leaf swung into one room
                side = int(rng.integers(0, 2))
                along, n, face = _frame_2d(o, side)
                hinge_lo = rng.random() < 0.5
                hinge = _point(o, o.lo if hinge_lo else o.hi, face)
                d0 = along if hinge_lo else -along
                th = np.deg2rad(rng.uniform(60, 95))
                d = np.cos(th) * d0 + np.sin(th) * n
                c = hinge + d * (w / 2) + np.array([-d[1], d[0]]) * 0.0
                mb.box([c[0], c[1], h / 2], [w - 0.02, 0.04, h], leaf_mat, lbl, inst, rot=rot_z(np.arctan2(d[1], d[0])))
            for side in sides:  # keep the swing / passage clear
                along, n, face = _frame_2d(o, side)
                c = _point(o, 0.5 * (o.lo + o.hi), face) + n * (w + 0.2) / 2
                objs.append(SceneObject("door zone", C.IGNORE, -1, c, np.array([w / 2 + 0.1, (w + 0.2) / 2]),
                                        yaw_wall, 0.0, o.z1, o.rooms[side], "reserve", inst))
        else:
            bar = 0.05
            p = _point(o, 0.5 * (o.lo + o.hi), mid_c)
            for z in (o.z0 + bar / 2, o.z1 - bar / 2):
                mb.box([p[0], p[1], z], [w, 0.06, bar], mat, lbl, inst, rot=R)
            for a in (o.lo + bar / 2, o.hi - bar / 2) + ((0.5 * (o.lo + o.hi),) if w > 1.0 else ()):
                q = _point(o, a, mid_c)
                mb.box([q[0], q[1], 0.5 * (o.z0 + o.z1)], [bar, 0.06, o.z1 - o.z0 - 2 * bar], mat, lbl, inst, rot=R)
            along, n, face = _frame_2d(o, 0)
            q = _point(o, 0.5 * (o.lo + o.hi), face) + n * 0.06
            mb.box([q[0], q[1], o.z0 - 0.015], [w + 0.1, 0.12, 0.03], mat, lbl, inst, rot=R)
            c = _point(o, 0.5 * (o.lo + o.hi), face) + n * 0.09
            objs.append(SceneObject("window zone", C.IGNORE, -1, c, np.array([w / 2 + 0.05, 0.09]), yaw_wall,
                                    o.z0 - 0.05, o.z1, o.rooms[0], "reserve", inst))
    return mb, objs
