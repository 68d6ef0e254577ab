"""Scene generator: a furnished floor plan as one labelled :class:`TriangleMesh`.

:func:`generate_scene` is deterministic per seed: every random draw comes from one
``np.random.default_rng(seed)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import numpy as np

from contrast3d.simulate import models_misc as M
from contrast3d.simulate import models_seating as S
from contrast3d.simulate import models_storage as T
from contrast3d.simulate.footprint import SceneObject
from contrast3d.simulate.layout import FloorPlan, Room, make_floorplan
from contrast3d.simulate.placement import Placer
from contrast3d.simulate.structure import build_fittings, build_shell
from contrast3d.simulate.textures import MaterialFactory
from contrast3d.structures import TriangleMesh


@dataclass
class SimScene:
    """A generated scene.

    Attributes:
        name: scene name; ``seed`` the seed it was generated from.
        mesh: the labelled mesh (vertex colour, normal, ScanNet-20 ``vertex_segment``,
            ``vertex_instance``), metres, z up.
        plan: the floor plan (rooms, walls, openings, room-id grid).
        objects: placed furniture / fittings and reserved zones (footprint boxes).
        lights: ``(L, 3)`` point-light positions, metres (one per room, under the ceiling).
    """

    name: str
    seed: int
    mesh: TriangleMesh
    plan: FloorPlan
    objects: list[SceneObject]
    lights: np.ndarray
    meta: dict = field(default_factory=dict)


def _curtains(p: Placer, mats: MaterialFactory, plan: FloorPlan) -> None:
    rng = mats.rng
    for o, zone in [(o, z) for o in plan.openings if o.kind == "window"
                    for z in p.objects if z.kind == "reserve" and z.name == "window zone"
                    and z.room == o.rooms[0] and abs(z.center[o.axis] - (o.wall.line + o.wall.inward * 0.09)) < 1e-6
                    and o.lo - 1e-6 <= z.center[1 - o.axis] <= o.hi + 1e-6]:
        if plan.rooms[o.rooms[0]].kind == "bathroom" or rng.random() < 0.35:
            continue
        top = min(plan.height - 0.05, o.z1 + rng.uniform(0.05, 0.3))
        bottom = 0.02 if rng.random() < 0.6 else max(0.02, o.z0 - 0.15)
        mat = mats.fabric()
        w = rng.uniform(0.3, 0.6)
        for along in ((o.lo - w / 2 + 0.15, o.hi + w / 2 - 0.15) if rng.random() < 0.8 else (o.lo - w / 2 + 0.15,)):
            model = M.curtain(mats, w, top - bottom - 0.02, mat)
            c, yaw = p.wall_pose(model, o.wall, along, gap=0.05)
            p.place(model, c, yaw, o.rooms[0], z0=bottom, kind="fitting", group=zone.group)


def _furnish(p: Placer, mats: MaterialFactory, room: Room) -> None:
    rng, kind = mats.rng, room.kind
    ch = lambda q: rng.random() < q

    def chairs_at(anchor: SceneObject | None, make=None):
        if anchor is not None:
            p.around(make or (lambda: S.chair(mats)), anchor, room, max_n=int(rng.integers(2, 9)))

    def desk_with_chair():
        d = p.against_wall(S.desk(mats), room)
        if d is not None:
            c = S.chair(mats)
            p.near(c, d, [rng.normal(0, 0.1), d.half[1] + c.half[1] + rng.uniform(0.02, 0.25)],
                   np.pi + rng.normal(0, 0.3), room, margin=0.0)
            if ch(0.6):
                p.on_top(S.monitor(mats), d, room)
            if ch(0.4):
                p.on_top(M.lamp(mats, "table"), d, room)
            if ch(0.5):
                p.on_top(M.small_object(mats), d, room)

    if kind == "bedroom":
        b = p.against_wall(S.bed(mats), room)
        if b is not None:
            ns = T.cabinet(mats, "nightstand")
            for s in (-1, 1) if ch(0.7) else (int(rng.choice([-1, 1])),):
                o = p.near(ns, b, [s * (b.half[0] + ns.half[0] + rng.uniform(0.02, 0.1)), -b.half[1] + ns.half[1]], 0.0,
                           room, margin=0.0)
                if o is not None and ch(0.6):
                    p.on_top(M.lamp(mats, "table"), o, room)
                ns = T.cabinet(mats, "nightstand")
        if ch(0.7):
            p.against_wall(T.cabinet(mats, "wardrobe"), room, corner=ch(0.5))
        if ch(0.6):
            desk_with_chair()
        if ch(0.4):
            p.against_wall(T.bookshelf(mats), room)
        if ch(0.4):
            p.against_wall(T.cabinet(mats, "sideboard"), room)
        if ch(0.3):
            p.against_wall(S.sofa(mats, 1), room)
    elif kind == "living":
        sofa = p.against_wall(S.sofa(mats), room)
        if sofa is not None:
            t = S.table(mats, "coffee")
            ct = p.near(t, sofa, [rng.normal(0, 0.1), sofa.half[1] + t.half[1] + rng.uniform(0.3, 0.5)], 0.0, room)
            if ct is not None:
                for _ in range(int(rng.integers(0, 3))):
                    p.on_top(M.small_object(mats), ct, room)
                for sgn in (-1, 1):
                    if ch(0.4):
                        a = S.sofa(mats, 1)
                        p.near(a, ct, [sgn * (ct.half[0] + a.half[1] + rng.uniform(0.2, 0.4)), 0.0],
                               -sgn * np.pi / 2, room)
            if ch(0.6):
                lm = M.lamp(mats, "floor")
                p.near(lm, sofa, [int(rng.choice([-1, 1])) * (sofa.half[0] + 0.3), -sofa.half[1] + 0.25], 0.0, room)
        if ch(0.7):
            p.against_wall(T.cabinet(mats, "tv stand"), room)
        for _ in range(int(rng.integers(0, 3))):
            p.against_wall(T.bookshelf(mats), room)
        if ch(0.4):
            chairs_at(p.free(S.table(mats), room))
    elif kind == "office":
        for _ in range(int(rng.integers(1, 5))):
            desk_with_chair()
        if ch(0.4):
            chairs_at(p.free(S.table(mats, "dining"), room))
        for _ in range(int(rng.integers(1, 4))):
            p.against_wall(T.bookshelf(mats) if ch(0.5)
                           else T.cabinet(mats, str(rng.choice(["file", "sideboard", "wardrobe"]))), room)
    elif kind == "kitchen":
        runs = sorted(p.plan.runs_of(room.id), key=lambda r: -r.length)
        for run in runs[:int(rng.integers(1, 3))]:
            L = min(run.length - 0.1, rng.uniform(1.2, 3.5))
            c = p.against_wall(T.counter(mats, L), room, runs=[run])
            if c is not None and ch(0.6):
                wc = T.wall_cabinet(mats, L * rng.uniform(0.5, 1.0))
                p.against_wall(wc, room, runs=[run], z0=rng.uniform(1.4, 1.55), tries=10)
        p.against_wall(T.refrigerator(mats), room)
        if ch(0.7):
            chairs_at(p.free(S.table(mats, str(rng.choice(["dining", "round"]))), room))
    elif kind == "dining":
        chairs_at(p.free(S.table(mats, "dining" if ch(0.7) else "round"), room, wall_clear=0.8))
        for _ in range(int(rng.integers(1, 3))):
            p.against_wall(T.cabinet(mats, "sideboard") if ch(0.6) else T.bookshelf(mats), room)
    elif kind == "bathroom":
        if ch(0.8):
            p.against_wall(M.bathtub(mats), room, corner=True)
        p.against_wall(M.toilet(mats), room)
        p.against_wall(M.sink(mats), room)
        if ch(0.4):
            p.against_wall(T.cabinet(mats, "nightstand"), room)
    # decor and clutter, any room
    for _ in range(int(rng.integers(0, 4) if kind != "bathroom" else rng.integers(0, 2))):
        pic = M.picture(mats)
        p.against_wall(pic, room, z0=rng.uniform(1.0, 1.9 - pic.height / 2), gap=0.005, tries=10)
    for make, q in ((M.plant, 0.5), (M.trash_can, 0.5), (M.box_clutter, 0.3), (lambda m: M.lamp(m, "floor"), 0.3)):
        if ch(q):
            model = make(mats)
            (p.against_wall(model, room, gap=rng.uniform(0.02, 0.3), tries=10) if ch(0.7)
             else p.free(model, room, 10, 0.3))


def generate_scene(seed: int, name: str | None = None, structure_edge: float = 0.1) -> SimScene:
    """A random furnished scene for ``seed`` (same seed -> identical scene).

    ``structure_edge`` is the subdivision edge length (metres) of walls / floors / ceilings.
    """
    rng = np.random.default_rng(seed)
    mats = MaterialFactory(rng)
    ids = count()
    next_id = lambda: next(ids)
    plan = make_floorplan(rng)
    scene, _wall_mats = build_shell(plan, mats, next_id, structure_edge)
    fittings, objects = build_fittings(plan, mats, next_id)
    scene.extend(fittings)
    placer = Placer(plan, scene, objects, rng, next_id)
    _curtains(placer, mats, plan)
    for room in plan.rooms:
        _furnish(placer, mats, room)
    name = name or f"sim{seed:06d}"
    mesh = scene.to_mesh(name)
    lights = np.array([[(r.rects[0][0] + r.rects[0][2]) / 2, (r.rects[0][1] + r.rects[0][3]) / 2, plan.height - 0.3]
                       for r in plan.rooms])
    mesh.meta.update(seed=seed, rooms=[r.kind for r in plan.rooms])
    return SimScene(name, seed, mesh, plan, objects, lights)
