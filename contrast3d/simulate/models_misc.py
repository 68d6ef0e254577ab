"""Parametric bathroom fixtures and decor: toilet, sink, bathtub (+ shower curtain), lamps,
pictures, curtains, trash cans, plants and boxes (front = +y, see model.py)."""
from __future__ import annotations

import numpy as np

from contrast3d.simulate import classes as C
from contrast3d.simulate.meshbuilder import MeshBuilder, pleated_sheet, rot_x
from contrast3d.simulate.model import Model, ecylinder, finish, tub
from contrast3d.simulate.textures import MaterialFactory

EDGE = 0.04


def toilet(mats: MaterialFactory) -> Model:
    """Pedestal, elliptic bowl, seat, lid and cistern (back at -y)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    white = mats.solid("white", 0.02)
    bh = r.uniform(0.36, 0.42)
    ecylinder(mb, [0, 0.05, 0], 0.12, 0.17, bh - 0.12, white, C.TOILET, taper=1.25)
    ecylinder(mb, [0, 0.1, bh - 0.12], 0.18, 0.23, 0.12, white, C.TOILET)
    ecylinder(mb, [0, 0.1, bh], 0.18, 0.23, 0.02, mats.solid(str(r.choice(["white", "wood", "dark"])), 0.02), C.TOILET)
    tw, th = r.uniform(0.35, 0.45), r.uniform(0.3, 0.42)
    mb.box([0, -0.2, bh - 0.05 + th / 2], [tw, 0.17, th], white, C.TOILET)
    mb.box([0, -0.2, bh - 0.05 + th + 0.01], [tw + 0.02, 0.19, 0.02], white, C.TOILET)
    return finish("toilet", C.TOILET, mb)


def sink(mats: MaterialFactory) -> Model:
    """Pedestal wash basin, or a vanity cabinet (cabinet, part 1) with a basin on top."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    white = mats.solid("white", 0.02)
    metal = mats.solid("metal", 0.03)
    w, d = r.uniform(0.45, 0.65), r.uniform(0.38, 0.5)
    if r.random() < 0.5:
        h = r.uniform(0.8, 0.88)
        ecylinder(mb, [0, -0.05, 0], 0.09, 0.08, h - 0.18, white, C.SINK, taper=0.7)
        z0 = h - 0.18
    else:
        h = r.uniform(0.8, 0.88)
        body = mats.wood() if r.random() < 0.5 else mats.solid("white")
        mb.box([0, 0, (h - 0.16) / 2], [w + 0.1, d, h - 0.16], body, C.CABINET, 1)
        mb.box([0, d / 2 + 0.006, (h - 0.16) / 2], [w + 0.08, 0.012, h - 0.18], body, C.CABINET, 1)
        z0 = h - 0.16
    tub(mb, [0, 0, z0], [w, d, 0.16], 0.04, white, C.SINK)
    mb.cylinder([0, -d / 2 + 0.06, z0 + 0.16], 0.02, 0.015, 0.15, metal, C.SINK)
    mb.box([0, -d / 2 + 0.12, z0 + 0.29], [0.025, 0.14, 0.025], metal, C.SINK)
    return finish("sink", C.SINK, mb)


def bathtub(mats: MaterialFactory) -> Model:
    """Tub (bathtub) with, often, a rod and shower curtain (shower curtain, part 1) along
    its open long side (+y)."""
    r, mb = mats.rng, MeshBuilder(0.05)
    L, w, h = r.uniform(1.5, 1.8), r.uniform(0.7, 0.8), r.uniform(0.5, 0.6)
    white = mats.solid("white", 0.02)
    tub(mb, [0, 0, 0], [L, w, h], 0.08, white, C.BATHTUB)
    mb.box([0, w / 2 - 0.005, h / 2], [L, 0.01, h], white, C.BATHTUB)
    if r.random() < 0.75:
        top = r.uniform(1.85, 2.0)
        mb.cylinder([-L / 2, w / 2 - 0.05, top], 0.012, 0.012, L, mats.solid("metal"), C.SHOWER_CURTAIN, 1,
                    rot=np.array([[0, 0, 1.0], [0, 1, 0], [-1, 0, 0]]) @ np.eye(3))
        frac = r.uniform(0.35, 0.9)
        cw = L * frac
        geom = pleated_sheet(cw, top - h - 0.15, 0.06, r.uniform(0.12, 0.2), 0.05)
        x0 = -L / 2 + cw / 2 if r.random() < 0.5 else L / 2 - cw / 2
        mb.add(geom, mats.fabric(), C.SHOWER_CURTAIN, 1, offset=[x0, w / 2 - 0.05, h + 0.15])
    return finish("bathtub", C.BATHTUB, mb)


def lamp(mats: MaterialFactory, kind: str | None = None) -> Model:
    """Floor or table lamp: base, pole, conical shade (otherfurniture)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    kind = kind or str(r.choice(["floor", "table"]))
    metal = mats.solid(str(r.choice(["metal", "dark", "wood"])))
    shade = mats.solid(str(r.choice(["white", "fabric"])), 0.03)
    if kind == "floor":
        hp, rb, rs = r.uniform(1.3, 1.7), r.uniform(0.12, 0.18), r.uniform(0.16, 0.25)
    else:
        hp, rb, rs = r.uniform(0.25, 0.45), r.uniform(0.06, 0.1), r.uniform(0.1, 0.17)
    mb.cylinder([0, 0, 0], rb, rb * 0.9, 0.03, metal, C.OTHERFURNITURE)
    mb.cylinder([0, 0, 0.03], 0.012, 0.012, hp, metal, C.OTHERFURNITURE)
    sh = rs * r.uniform(0.8, 1.3)
    mb.cylinder([0, 0, hp + 0.03 - sh * 0.6], rs, rs * r.uniform(0.55, 0.9), sh, shade, C.OTHERFURNITURE, caps=False)
    return finish("lamp", C.OTHERFURNITURE, mb)


def picture(mats: MaterialFactory) -> Model:
    """Framed painting, thin along y (hung with its back at -y)."""
    r, mb = mats.rng, MeshBuilder(0.03)
    w, h = r.uniform(0.3, 1.2), r.uniform(0.3, 0.9)
    fw = r.uniform(0.02, 0.06)
    frame = mats.wood() if r.random() < 0.5 else mats.solid(str(r.choice(["dark", "white", "metal"])))
    mb.box([0, 0, h / 2], [w, 0.02, h], mats.make("painting", "fabric", scale=r.uniform(0.08, 0.3), noise=0.1),
           C.PICTURE)
    for z in (fw / 2, h - fw / 2):
        mb.box([0, 0.01, z], [w + 0.01, 0.03, fw], frame, C.PICTURE)
    for x in (-w / 2 + fw / 2, w / 2 - fw / 2):
        mb.box([x, 0.01, h / 2], [fw, 0.03, h], frame, C.PICTURE)
    return finish("picture", C.PICTURE, mb)


def curtain(mats: MaterialFactory, width: float, height: float, mat=None) -> Model:
    """One pleated curtain panel ``width`` x ``height`` with a rod segment on top."""
    r, mb = mats.rng, MeshBuilder(0.05)
    mb.add(pleated_sheet(width, height, r.uniform(0.05, 0.1), r.uniform(0.1, 0.2), 0.05), mat or mats.fabric(),
           C.CURTAIN, 0)
    mb.cylinder([-width / 2 - 0.03, 0, height + 0.02], 0.012, 0.012, width + 0.06, mats.solid("metal"), C.CURTAIN,
                rot=np.array([[0, 0, 1.0], [0, 1, 0], [-1, 0, 0]]))
    return finish("curtain", C.CURTAIN, mb)


def trash_can(mats: MaterialFactory) -> Model:
    r, mb = mats.rng, MeshBuilder(EDGE)
    rad, h = r.uniform(0.1, 0.18), r.uniform(0.25, 0.6)
    mb.cylinder([0, 0, 0], rad * 0.85, rad, h, mats.solid(str(r.choice(["plastic", "metal", "dark"]))),
                C.OTHERFURNITURE)
    return finish("trash can", C.OTHERFURNITURE, mb)


def plant(mats: MaterialFactory) -> Model:
    """Pot and a blobby crown of leaves (not a ScanNet-20 class: ignore)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    rp, hp = r.uniform(0.1, 0.2), r.uniform(0.2, 0.4)
    mb.cylinder([0, 0, 0], rp * 0.8, rp, hp, mats.solid(str(r.choice(["stone", "white", "dark", "plastic"]))), C.IGNORE)
    leaf = mats.make("solid", "leaf", scale=0.06, noise=0.4)
    hc = r.uniform(0.3, 1.2)
    for _ in range(int(r.integers(3, 7))):
        rr = r.uniform(0.1, 0.25)
        c = [r.normal(0, rp * 0.6), r.normal(0, rp * 0.6), hp + r.uniform(0.1, 1.0) * hc]
        ecylinder(mb, [c[0], c[1], c[2] - rr], rr, rr * r.uniform(0.7, 1.3), 2 * rr, leaf, C.IGNORE, taper=0.3)
    return finish("plant", C.IGNORE, mb)


def box_clutter(mats: MaterialFactory) -> Model:
    """One to three stacked cardboard boxes or a bag (ignore)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    z = 0.0
    for _ in range(int(r.integers(1, 4))):
        s = r.uniform([0.2, 0.2, 0.1], [0.6, 0.5, 0.4])
        mb.box([r.normal(0, 0.02), r.normal(0, 0.02), z + s[2] / 2], s,
               mats.solid(str(r.choice(["wood", "plastic", "white"])), 0.1), C.IGNORE, rot=rot_x(0.0))
        z += s[2]
    return finish("box", C.IGNORE, mb)


def small_object(mats: MaterialFactory) -> Model:
    """Tabletop clutter: a cup, a book stack or a bowl (ignore)."""
    r, mb = mats.rng, MeshBuilder(0.03)
    kind = r.choice(["cup", "books", "bowl"])
    col = mats.solid(str(r.choice(["plastic", "white", "fabric", "dark"])))
    if kind == "cup":
        mb.cylinder([0, 0, 0], 0.04, 0.045, 0.1, col, C.IGNORE)
    elif kind == "books":
        z = 0.0
        for _ in range(int(r.integers(1, 5))):
            t = r.uniform(0.02, 0.05)
            mb.box([r.normal(0, 0.01), r.normal(0, 0.01), z + t / 2], [r.uniform(0.15, 0.3), r.uniform(0.12, 0.22), t],
                   mats.color("fabric"), C.IGNORE)
            z += t
    else:
        mb.cylinder([0, 0, 0], 0.07, 0.12, 0.07, col, C.IGNORE)
    return finish(str(kind), C.IGNORE, mb)
