"""Placing models in a floor plan without interpenetration.

Every candidate pose becomes a :class:`SceneObject` box; it is accepted only if its footprint
lies inside its room and it collides with no earlier object or reserved zone (door swings,
window fronts). Accepted models are merged into the scene mesh with fresh instance ids.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from contrast3d.simulate.footprint import SceneObject, fill_points, objects_collide
from contrast3d.simulate.layout import FloorPlan, Room, WallRun
from contrast3d.simulate.meshbuilder import MeshBuilder, rot_z
from contrast3d.simulate.model import Model


def yaw_facing(direction: np.ndarray) -> float:
    """Yaw that turns the local front (+y) towards the 2D ``direction``."""
    return float(np.arctan2(-direction[0], direction[1]))


class Placer:
    """Collision-checked placement into ``scene`` (a :class:`MeshBuilder`)."""

    def __init__(self, plan: FloorPlan, scene: MeshBuilder, objects: list[SceneObject], rng: np.random.Generator,
                 next_id: Callable[[], int]):
        self.plan, self.scene, self.objects, self.rng, self.next_id = plan, scene, objects, rng, next_id

    def fits(self, obj: SceneObject, margin: float = 0.02) -> bool:
        """Inside its room and clear of every other object (same ``group`` excepted)."""
        if not (self.plan.room_at(fill_points(obj)) == obj.room).all():
            return False
        return not any(objects_collide(obj, o, margin) for o in self.objects
                       if not (obj.group >= 0 and o.group == obj.group))

    def place(self, model: Model, center, yaw: float, room: int, z0: float = 0.0, kind: str = "furniture",
              group: int = -1, margin: float = 0.02) -> SceneObject | None:
        """Place ``model`` at ``center`` ``(2,)`` with ``yaw`` if it fits; return the object or None."""
        obj = SceneObject(model.name, model.label, -1, np.asarray(center, np.float64), model.half.copy(), float(yaw),
                          float(z0), float(z0 + model.height), room, kind, group)
        if obj.z1 > self.plan.height - 0.02 or not self.fits(obj, margin):
            return None
        parts = sorted({int(c[5][0]) for c in model.mb._chunks if c[4][0] >= 0})
        inst_map = {p: self.next_id() for p in parts}
        obj.instance = inst_map.get(0, -1)
        self.scene.extend(model.mb, rot=rot_z(yaw), offset=[obj.center[0], obj.center[1], z0], inst_map=inst_map)
        self.objects.append(obj)
        return obj

    def wall_pose(self, model: Model, run: WallRun, along: float, gap: float = 0.01) -> tuple[np.ndarray, float]:
        """Centre and yaw that put the model's back against ``run`` at ``along``."""
        return run.point(along, model.half[1] + gap), yaw_facing(run.normal)

    def against_wall(self, model: Model, room: Room, tries: int = 30, z0: float = 0.0, corner: bool = False,
                     runs: list[WallRun] | None = None, gap: float = 0.01, group: int = -1) -> SceneObject | None:
        """Back against a random wall of ``room`` (in a corner if ``corner``)."""
        hx = model.half[0]
        runs = [r for r in (runs or self.plan.runs_of(room.id)) if r.length > 2 * hx + 0.05]
        if not runs:
            return None
        weights = np.array([r.length for r in runs])
        for _ in range(tries):
            run = runs[int(self.rng.choice(len(runs), p=weights / weights.sum()))]
            if corner:
                along = run.lo + hx + 0.005 if self.rng.random() < 0.5 else run.hi - hx - 0.005
            else:
                along = self.rng.uniform(run.lo + hx + 0.01, run.hi - hx - 0.01)
            c, yaw = self.wall_pose(model, run, along, gap)
            obj = self.place(model, c, yaw, room.id, z0=z0, group=group)
            if obj is not None:
                return obj
        return None

    def free(self, model: Model, room: Room, tries: int = 30, wall_clear: float = 0.6,
             yaw: float | None = None) -> SceneObject | None:
        """Somewhere in the open floor of ``room``, ``wall_clear`` metres from its walls."""
        for _ in range(tries):
            x0, y0, x1, y1 = room.rects[int(self.rng.integers(len(room.rects)))]
            lo = np.array([x0, y0]) + wall_clear + model.half.max()
            hi = np.array([x1, y1]) - wall_clear - model.half.max()
            c = self.rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
            y = yaw if yaw is not None else (self.rng.integers(0, 4) * np.pi / 2 + self.rng.normal(0, 0.05))
            obj = self.place(model, c, y, room.id)
            if obj is not None:
                return obj
        return None

    def near(self, model: Model, anchor: SceneObject, offset_local, yaw_local: float, room: Room,
             margin: float = 0.02) -> SceneObject | None:
        """At ``offset_local`` ``(2,)`` in the anchor's frame, turned by ``yaw_local``."""
        R = rot_z(anchor.yaw)[:2, :2]
        return self.place(model, anchor.center + R @ np.asarray(offset_local), anchor.yaw + yaw_local, room.id,
                          margin=margin)

    def around(self, make: Callable[[], Model], table: SceneObject, room: Room, max_n: int = 8) -> list[SceneObject]:
        """Chairs around a table, each facing the table centre, footprints outside the table."""
        out: list[SceneObject] = []
        round_ = abs(table.half[0] - table.half[1]) < 1e-3
        slots = []
        if round_:
            n = int(np.clip(np.floor(2 * np.pi * table.half[0] / 0.65), 2, 6))
            a0 = self.rng.uniform(0, 2 * np.pi)
            slots = [(np.array([np.cos(a), np.sin(a)]), 0.0, table.half[0]) for a in a0 + 2 * np.pi * np.arange(n) / n]
        else:
            for axis in (0, 1):
                side_len = 2 * table.half[1 - axis]
                n = int(np.floor(side_len / 0.62))
                for s in (-1, 1):
                    nrm = np.zeros(2)
                    nrm[axis] = s
                    for k in range(n):
                        t = (k + 0.5) / n * side_len - side_len / 2
                        slots.append((nrm, t, table.half[axis]))
        R = rot_z(table.yaw)[:2, :2]
        for idx in self.rng.permutation(len(slots)):
            if len(out) >= max_n:
                break
            nrm, t, dist = slots[idx]
            if self.rng.random() < 0.15:
                continue
            model = make()
            tang = np.array([-nrm[1], nrm[0]])
            local = nrm * (dist + model.half[1] + self.rng.uniform(0.03, 0.2)) + tang * (t + self.rng.normal(0, 0.04))
            c = table.center + R @ local
            yaw = yaw_facing(table.center - c) + self.rng.normal(0, 0.15)
            obj = self.place(model, c, yaw, room.id, margin=0.01)
            if obj is not None:
                out.append(obj)
        return out

    def on_top(self, model: Model, support: SceneObject, room: Room, tries: int = 10,
               top: float | None = None) -> SceneObject | None:
        """On the top surface of ``support`` (a random spot fully on it)."""
        R = rot_z(support.yaw)[:2, :2]
        for _ in range(tries):
            room_ = np.maximum(support.half - model.half.max() - 0.02, 0.0)
            local = self.rng.uniform(-room_, room_)
            yaw = support.yaw + self.rng.normal(0, 0.3)
            obj = self.place(model, support.center + R @ local, yaw, room.id, z0=top if top is not None else support.z1,
                             margin=0.0)
            if obj is not None:
                return obj
        return None
