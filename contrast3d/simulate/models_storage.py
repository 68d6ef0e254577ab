"""Parametric cabinets, bookshelves, refrigerators and kitchen counters (front = +y)."""
from __future__ import annotations

import itertools

import numpy as np

from contrast3d.simulate import classes as C
from contrast3d.simulate.meshbuilder import MeshBuilder
from contrast3d.simulate.model import Model, finish, handles, legs, tub
from contrast3d.simulate.textures import MaterialFactory

EDGE = 0.06


def _doors(mb: MeshBuilder, x0: float, x1: float, z0: float, z1: float, y: float, n: int, mat, knob, label: int,
           part: int = 0, drawers: bool = False) -> None:
    """``n`` door (or drawer) fronts across ``[x0, x1]`` on the face at ``y``, with handles."""
    if drawers:
        hh = (z1 - z0) / n
        for k in range(n):
            z = z0 + (k + 0.5) * hh
            mb.box([(x0 + x1) / 2, y + 0.006, z], [x1 - x0 - 0.01, 0.012, hh - 0.012], mat, label, part)
            handles(mb, [(x0 + x1) / 2], z + hh * 0.2, y + 0.012, knob, label, vertical=False, part=part)
        return
    ww = (x1 - x0) / n
    for k in range(n):
        x = x0 + (k + 0.5) * ww
        mb.box([x, y + 0.006, (z0 + z1) / 2], [ww - 0.01, 0.012, z1 - z0 - 0.01], mat, label, part)
        hx = x + (ww / 2 - 0.05) * (1 if k % 2 == 0 else -1)
        handles(mb, [hx], (z0 + z1) / 2 + min(0.3, (z1 - z0) * 0.25), y + 0.012, knob, label, vertical=True, part=part)


def cabinet(mats: MaterialFactory, kind: str | None = None) -> Model:
    """Nightstand, wardrobe, sideboard or TV stand (with a TV, label ignore)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    kind = kind or str(r.choice(["nightstand", "wardrobe", "sideboard", "tv stand", "file"]))
    dims = {"nightstand": ((0.38, 0.55), (0.35, 0.45), (0.45, 0.65)),
            "wardrobe": ((0.9, 1.8), (0.55, 0.62), (1.8, 2.2)),
            "sideboard": ((0.9, 1.8), (0.4, 0.5), (0.7, 0.95)),
            "tv stand": ((1.0, 1.8), (0.38, 0.5), (0.4, 0.6)),
            "file": ((0.4, 0.5), (0.5, 0.65), (0.65, 1.3))}[kind]
    sx, sy, h = (r.uniform(*d) for d in dims)
    body = mats.wood() if r.random() < 0.6 else mats.solid(str(r.choice(["white", "dark", "metal"])))
    front = body if r.random() < 0.7 else mats.solid(str(r.choice(["white", "wood", "dark"])))
    knob = mats.solid("metal")
    plinth = r.uniform(0.0, 0.1)
    if plinth > 0.04 and r.random() < 0.5:
        legs(mb, sx - 0.02, sy - 0.02, plinth, 0.04, body, C.CABINET, round_=True)
    else:
        mb.box([0, 0, plinth / 2], [sx - 0.04, sy - 0.04, max(plinth, 0.01)], body, C.CABINET)
    mb.box([0, 0, plinth + (h - plinth) / 2], [sx, sy, h - plinth], body, C.CABINET)
    if kind in ("nightstand", "file"):
        _doors(mb, -sx / 2, sx / 2, plinth, h - 0.02, sy / 2, int(r.integers(1, 4)), front, knob, C.CABINET,
               drawers=True)
    else:
        n = max(1, round(sx / r.uniform(0.4, 0.6)))
        split = r.random() < 0.5 and kind != "wardrobe"
        z_top = h - 0.02
        if split:
            _doors(mb, -sx / 2, sx / 2, z_top - 0.18, z_top, sy / 2, 1, front, knob, C.CABINET, drawers=True)
            z_top -= 0.18
        _doors(mb, -sx / 2, sx / 2, plinth + 0.01, z_top, sy / 2, n, front, knob, C.CABINET)
    name = "tv stand" if kind == "tv stand" else "cabinet"
    if kind == "tv stand" and r.random() < 0.8:  # a TV on top (not a ScanNet-20 class)
        tw = min(sx - 0.1, r.uniform(0.8, 1.4))
        dark = mats.solid("dark", 0.02)
        mb.box([0, -0.05, h + 0.01], [0.3, 0.2, 0.02], dark, C.IGNORE, 1)
        mb.box([0, -0.05, h + 0.05], [0.05, 0.04, 0.08], dark, C.IGNORE, 1)
        mb.box([0, -0.05, h + 0.08 + tw * 0.28], [tw, 0.05, tw * 0.56], dark, C.IGNORE, 1)
    return finish(name, C.CABINET, mb)


def bookshelf(mats: MaterialFactory) -> Model:
    """Open shelving with side panels, back, shelves and rows of books (books: ignore)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    sx, sy, h = r.uniform(0.6, 1.6), r.uniform(0.25, 0.4), r.uniform(0.8, 2.2)
    mat = mats.wood() if r.random() < 0.6 else mats.solid(str(r.choice(["white", "dark"])))
    t = r.uniform(0.018, 0.035)
    for x in (-sx / 2 + t / 2, sx / 2 - t / 2):
        mb.box([x, 0, h / 2], [t, sy, h], mat, C.BOOKSHELF)
    mb.box([0, -sy / 2 + 0.005, h / 2], [sx - 2 * t, 0.01, h], mat, C.BOOKSHELF)
    n = max(2, round(h / r.uniform(0.3, 0.4)))
    zs = np.linspace(0.05, h - t / 2, n + 1)
    for z in zs:
        mb.box([0, 0, z], [sx - 2 * t, sy, t], mat, C.BOOKSHELF)
    fill = r.uniform(0.3, 0.95)
    for z0, z1 in itertools.pairwise(zs):  # books per shelf
        x = -sx / 2 + t + r.uniform(0.0, 0.1)
        while x < sx / 2 - t - 0.06:
            bw = r.uniform(0.02, 0.06)
            if r.random() < fill:
                bh = min(z1 - z0 - t - 0.02, r.uniform(0.16, 0.3))
                bd = min(sy - 0.03, r.uniform(0.14, 0.24))
                col = mats.color(str(r.choice(["fabric", "plastic", "white", "dark"])))
                mb.box([x + bw / 2, -sy / 2 + 0.015 + bd / 2, z0 + t / 2 + bh / 2], [bw, bd, bh], col, C.IGNORE, 1)
            x += bw + 0.002
    return finish("bookshelf", C.BOOKSHELF, mb)


def refrigerator(mats: MaterialFactory) -> Model:
    """Tall box with fridge and freezer doors and handles."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    sx, sy, h = r.uniform(0.6, 0.9), r.uniform(0.62, 0.75), r.uniform(1.5, 1.95)
    body = mats.solid(str(r.choice(["white", "metal", "dark"])), 0.03)
    mb.box([0, 0, h / 2], [sx, sy, h], body, C.REFRIGERATOR)
    split = h * r.uniform(0.3, 0.4)
    knob = mats.solid("metal")
    for z0, z1 in ((0.02, split), (split + 0.01, h - 0.01)):
        mb.box([0, sy / 2 + 0.01, (z0 + z1) / 2], [sx - 0.01, 0.02, z1 - z0], body, C.REFRIGERATOR)
        mb.box([sx / 2 - 0.06, sy / 2 + 0.04, (z0 + z1) / 2], [0.025, 0.03, min(0.5, (z1 - z0) * 0.6)], knob,
               C.REFRIGERATOR)
    return finish("refrigerator", C.REFRIGERATOR, mb)


def counter(mats: MaterialFactory, length: float | None = None, with_sink: bool | None = None) -> Model:
    """Kitchen run: base cabinets (cabinet, part 0), worktop (counter, part 1), maybe a
    drop-in sink (sink, part 2) and a hob (ignore)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    L = length or r.uniform(1.2, 3.2)
    d, h = r.uniform(0.58, 0.65), r.uniform(0.86, 0.92)
    body = mats.wood() if r.random() < 0.5 else mats.solid(str(r.choice(["white", "dark", "plastic"])))
    knob = mats.solid("metal")
    mb.box([0, -0.03, 0.05], [L, d - 0.06, 0.1], mats.solid("dark"), C.CABINET)
    mb.box([0, -0.01, 0.1 + (h - 0.14) / 2], [L, d - 0.02, h - 0.14], body, C.CABINET)
    n = max(1, round(L / 0.6))
    _doors(mb, -L / 2, L / 2, 0.11, h - 0.05, d / 2 - 0.01, n, body, knob, C.CABINET)
    top = mats.make("solid", "stone", noise=0.15, scale=0.08) if r.random() < 0.6 else mats.wood()
    mb.box([0, 0.01, h - 0.02], [L + 0.02, d + 0.02, 0.04], top, C.COUNTER, 1)
    if with_sink if with_sink is not None else r.random() < 0.6:
        steel = mats.solid("metal", 0.03)
        sx = min(0.8, L * 0.4)
        xs = r.uniform(-L / 2 + sx / 2 + 0.05, L / 2 - sx / 2 - 0.05)
        tub(mb, [xs, 0.02, h], [sx, 0.45, 0.06], 0.02, steel, C.SINK, 2)
        mb.cylinder([xs, -0.2, h + 0.06], 0.02, 0.015, 0.3, steel, C.SINK, 2)
        mb.box([xs, -0.12, h + 0.34], [0.03, 0.18, 0.03], steel, C.SINK, 2)
    if L > 1.8 and r.random() < 0.6:  # hob
        mb.box([r.uniform(-L / 2 + 0.4, L / 2 - 0.4), 0.02, h + 0.005], [0.58, 0.5, 0.01], mats.solid("dark"),
               C.IGNORE, 3)
    return finish("counter", C.COUNTER, mb)


def wall_cabinet(mats: MaterialFactory, length: float) -> Model:
    """Upper kitchen cabinets (hung on the wall above a counter)."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    d, h = r.uniform(0.3, 0.38), r.uniform(0.6, 0.8)
    body = mats.wood() if r.random() < 0.5 else mats.solid(str(r.choice(["white", "dark", "plastic"])))
    mb.box([0, 0, h / 2], [length, d, h], body, C.CABINET)
    _doors(mb, -length / 2, length / 2, 0.01, h - 0.01, d / 2, max(1, round(length / 0.5)), body,
           mats.solid("metal"), C.CABINET)
    return finish("wall cabinet", C.CABINET, mb)
