"""A furniture model: parts built in a local frame plus its footprint.

Local frame: x right, y the direction the object faces (its front), z up; after
:func:`finish` the footprint is centred on the origin and the object stands on ``z = 0``.
Per-vertex ``inst`` of the builder holds a *part* index (0 = the main object; other indices
become separate instances, e.g. the counter top over base cabinets); parts labelled ``-1``
(books, a TV, clutter) get instance ``-1`` in the scene.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contrast3d.simulate.meshbuilder import MeshBuilder, cylinder


@dataclass
class Model:
    """Built geometry and its box: ``half`` ``(2,)`` half extents (x, y), ``height`` metres."""

    name: str
    label: int
    mb: MeshBuilder
    half: np.ndarray
    height: float


def finish(name: str, label: int, mb: MeshBuilder) -> Model:
    """Centre the footprint on the origin, put the base at ``z = 0`` and measure the box."""
    lo, hi = mb.bounds()
    mb.translate([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    return Model(name, label, mb, (hi[:2] - lo[:2]) / 2, float(hi[2] - lo[2]))


def ecylinder(mb: MeshBuilder, base, rx: float, ry: float, height: float, color, label: int, part: int = 0,
              taper: float = 1.0, caps: bool = True) -> None:
    """An elliptic (tapered) cylinder standing on ``base``."""
    mb.add(cylinder(1.0, taper, height, mb.edge / max(rx, ry, 1e-3), caps=caps), color, label, part,
           offset=base, scale=[rx, ry, 1.0])


def tub(mb: MeshBuilder, center, size, wall: float, color, label: int, part: int = 0, inner=None) -> None:
    """An open-topped container (bathtub, basin): four walls and a bottom, hollow inside.

    ``center`` is the centre of the bottom face; ``size`` the outer ``(sx, sy, sz)``.
    """
    cx, cy, cz = center
    sx, sy, sz = size
    mb.box([cx, cy, cz + wall / 2], [sx, sy, wall], color, label, part)
    mb.box([cx - sx / 2 + wall / 2, cy, cz + sz / 2], [wall, sy, sz], color, label, part)
    mb.box([cx + sx / 2 - wall / 2, cy, cz + sz / 2], [wall, sy, sz], color, label, part)
    mb.box([cx, cy - sy / 2 + wall / 2, cz + sz / 2], [sx - 2 * wall, wall, sz], color, label, part)
    mb.box([cx, cy + sy / 2 - wall / 2, cz + sz / 2], [sx - 2 * wall, wall, sz], color, label, part)


def legs(mb: MeshBuilder, sx: float, sy: float, h: float, t: float, color, label: int, round_: bool,
         inset: float = 0.0, part: int = 0) -> None:
    """Four legs of height ``h`` at the corners of an ``sx`` x ``sy`` rectangle."""
    for ix in (-1, 1):
        for iy in (-1, 1):
            x, y = ix * (sx / 2 - t / 2 - inset), iy * (sy / 2 - t / 2 - inset)
            if round_:
                mb.cylinder([x, y, 0.0], t / 2, t / 2 * 0.8, h, color, label, part)
            else:
                mb.box([x, y, h / 2], [t, t, h], color, label, part)


def handles(mb: MeshBuilder, xs, z: float, y: float, color, label: int, vertical: bool, part: int = 0) -> None:
    """Small bar handles on a front face at ``y``."""
    for x in xs:
        size = [0.015, 0.02, 0.12] if vertical else [0.12, 0.02, 0.015]
        mb.box([x, y + 0.01, z], size, color, label, part)


def tilt(angle_deg: float) -> np.ndarray:
    """Rotation tilting the +z axis towards -y by ``angle_deg`` (a reclined back)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
