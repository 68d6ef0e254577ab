"""Parametric chairs, sofas, beds, tables and desks (local frame: front = +y, see model.py)."""
from __future__ import annotations

import numpy as np

from contrast3d.simulate import classes as C
from contrast3d.simulate.meshbuilder import MeshBuilder, rot_z
from contrast3d.simulate.model import Model, finish, handles, legs, tilt
from contrast3d.simulate.textures import MaterialFactory

EDGE = 0.05


def chair(mats: MaterialFactory) -> Model:
    """Four-legged, office (five-star base) or stool-like chair."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    kind = r.choice(["legs", "office", "legs"])
    w, d, sh = r.uniform(0.4, 0.55), r.uniform(0.4, 0.52), r.uniform(0.42, 0.5)
    frame = mats.wood() if r.random() < 0.6 else mats.solid(str(r.choice(["metal", "dark", "plastic"])))
    seat = mats.fabric() if r.random() < 0.6 else frame
    st = r.uniform(0.03, 0.07)
    if kind == "legs":
        legs(mb, w, d, sh - st, r.uniform(0.025, 0.045), frame, C.CHAIR, round_=r.random() < 0.4)
    else:
        mb.cylinder([0, 0, 0.06], 0.025, 0.025, sh - st - 0.06, mats.solid("metal"), C.CHAIR)
        base = mats.solid("dark")
        for k in range(5):
            a = 2 * np.pi * k / 5
            mb.box([0.14 * np.cos(a), 0.14 * np.sin(a), 0.04], [0.3, 0.04, 0.03], base, C.CHAIR, rot=rot_z(a))
            mb.cylinder([0.28 * np.cos(a), 0.28 * np.sin(a), 0.0], 0.025, 0.025, 0.03, base, C.CHAIR)
    mb.box([0, 0, sh - st / 2], [w, d, st], seat, C.CHAIR)
    bh, bt, ang = r.uniform(0.3, 0.55), r.uniform(0.02, 0.06), r.uniform(3, 15)
    R = tilt(ang)
    back_c = np.array([0, -d / 2 + bt / 2, sh]) + R @ np.array([0, 0, bh / 2 + 0.02])
    if kind == "legs" and r.random() < 0.4:  # slatted back: two posts + rails
        for x in (-w / 2 + 0.02, w / 2 - 0.02):
            mb.box(np.array([x, back_c[1], back_c[2]]), [0.03, bt, bh + 0.04], frame, C.CHAIR, rot=R)
        for k in range(int(r.integers(2, 5))):
            off = R @ np.array([0, 0, -bh / 2 + (k + 0.5) * bh / 4])
            mb.box(back_c + off, [w - 0.04, bt * 0.7, 0.04], frame, C.CHAIR, rot=R)
    else:
        mb.box(back_c, [w * r.uniform(0.85, 1.0), bt, bh], seat, C.CHAIR, rot=R)
    if kind == "office" and r.random() < 0.6:
        for x in (-w / 2 - 0.02, w / 2 + 0.02):
            mb.box([x, 0, sh + 0.2], [0.04, d * 0.7, 0.03], mats.solid("dark"), C.CHAIR)
            mb.box([x, -0.05, sh + 0.1], [0.03, 0.04, 0.2], mats.solid("dark"), C.CHAIR)
    return finish("chair", C.CHAIR, mb)


def sofa(mats: MaterialFactory, seats: int | None = None) -> Model:
    """Sofa with base, cushions, reclined back and arms; ``seats=1`` gives an armchair."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    n = seats or int(r.integers(2, 5))
    label, name = (C.CHAIR, "armchair") if n == 1 else (C.SOFA, "sofa")
    cw, d = r.uniform(0.55, 0.7), r.uniform(0.8, 1.0)
    arm = r.uniform(0.08, 0.22)
    w = n * cw + 2 * arm
    fab = mats.fabric()
    cush = fab if r.random() < 0.7 else mats.fabric()
    leg_h = r.uniform(0.0, 0.12)
    base_h = r.uniform(0.25, 0.35)
    if leg_h > 0.02:
        legs(mb, w - 0.06, d - 0.06, leg_h, 0.04, mats.wood(), label, round_=r.random() < 0.5)
    mb.box([0, 0, leg_h + base_h / 2], [w, d, base_h], fab, label)
    ch, bt = r.uniform(0.1, 0.16), r.uniform(0.15, 0.25)
    for k in range(n):
        x = -w / 2 + arm + (k + 0.5) * cw
        mb.box([x, bt / 2, leg_h + base_h + ch / 2], [cw - 0.01, d - bt - 0.02, ch], cush, label)
    bh = r.uniform(0.35, 0.55)
    R = tilt(r.uniform(5, 15))
    mb.box(np.array([0, -d / 2 + bt / 2 + 0.03, leg_h + base_h]) + R @ np.array([0, 0, bh / 2]),
           [w - 2 * arm, bt, bh], fab, label, rot=R)
    ah = r.uniform(0.15, 0.3)
    for x in (-w / 2 + arm / 2, w / 2 - arm / 2):
        mb.box([x, 0, leg_h + base_h + ah / 2], [arm, d, ah], fab, label)
    if n > 1 and r.random() < 0.6:  # throw pillows (clutter)
        for x in r.uniform(-w / 2 + arm + 0.2, w / 2 - arm - 0.2, int(r.integers(1, 3))):
            mb.box([x, -d / 2 + bt + 0.12, leg_h + base_h + ch + 0.18], [0.4, 0.12, 0.36], mats.fabric(), C.IGNORE, 1,
                   rot=tilt(20))
    return finish(name, label, mb)


def bed(mats: MaterialFactory) -> Model:
    """Bed frame, mattress, pillows, blanket and headboard (head at -y, foot at +y)."""
    r, mb = mats.rng, MeshBuilder(0.07)
    w = r.choice([r.uniform(0.9, 1.1), r.uniform(1.35, 1.85)])
    L = r.uniform(1.95, 2.15)
    wood = mats.wood() if r.random() < 0.7 else mats.solid("white")
    fh = r.uniform(0.15, 0.35)
    mb.box([0, 0, fh / 2], [w, L, fh], wood, C.BED)
    mh = r.uniform(0.18, 0.26)
    mb.box([0, 0.01, fh + mh / 2], [w - 0.04, L - 0.06, mh], mats.solid("white", 0.03), C.BED)
    blanket = mats.fabric()
    bl = L * r.uniform(0.55, 0.75)
    mb.box([0, L / 2 - bl / 2 + 0.02, fh + mh + 0.02], [w + 0.02, bl, 0.05], blanket, C.BED)
    mb.box([0, L / 2 + 0.01, fh + mh / 2], [w + 0.02, 0.03, mh + 0.04], blanket, C.BED)
    pil = mats.fabric() if r.random() < 0.5 else mats.solid("white", 0.03)
    npil = 1 if w < 1.2 else 2
    for k in range(npil):
        x = (k - (npil - 1) / 2) * (w / npil)
        mb.box([x, -L / 2 + 0.3, fh + mh + 0.06], [w / npil - 0.1, 0.4, 0.12], pil, C.BED)
    hh = r.uniform(0.8, 1.3)
    mb.box([0, -L / 2 - 0.03, hh / 2], [w + 0.06, 0.06, hh], wood, C.BED)
    if r.random() < 0.4:
        mb.box([0, L / 2 + 0.04, (fh + 0.2) / 2], [w + 0.06, 0.05, fh + 0.2], wood, C.BED)
    return finish("bed", C.BED, mb)


def table(mats: MaterialFactory, kind: str | None = None) -> Model:
    """Dining (rectangular or round) or coffee table."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    kind = kind or str(r.choice(["dining", "round", "coffee"]))
    top = mats.wood() if r.random() < 0.75 else mats.solid(str(r.choice(["white", "dark", "stone"])))
    leg = top if r.random() < 0.6 else mats.solid("metal")
    tt = r.uniform(0.025, 0.05)
    if kind == "round":
        rad, h = r.uniform(0.4, 0.6), r.uniform(0.72, 0.77)
        mb.cylinder([0, 0, h - tt], rad, rad, tt, top, C.TABLE)
        mb.cylinder([0, 0, 0.03], 0.04, 0.04, h - tt - 0.03, leg, C.TABLE)
        mb.cylinder([0, 0, 0], rad * 0.5, rad * 0.45, 0.03, leg, C.TABLE)
    else:
        if kind == "coffee":
            sx, sy, h = r.uniform(0.8, 1.3), r.uniform(0.45, 0.7), r.uniform(0.38, 0.5)
        else:
            sx, sy, h = r.uniform(1.1, 2.2), r.uniform(0.7, 1.0), r.uniform(0.72, 0.77)
        mb.box([0, 0, h - tt / 2], [sx, sy, tt], top, C.TABLE)
        lt = r.uniform(0.035, 0.07)
        legs(mb, sx, sy, h - tt, lt, leg, C.TABLE, round_=r.random() < 0.4, inset=r.uniform(0.0, 0.08))
        if kind == "coffee" and r.random() < 0.5:
            mb.box([0, 0, 0.1], [sx - 0.1, sy - 0.1, 0.02], top, C.TABLE)
    return finish("table", C.TABLE, mb)


def desk(mats: MaterialFactory) -> Model:
    """Desk: top, side panel or legs, drawer pedestal, modesty panel, maybe a monitor."""
    r, mb = mats.rng, MeshBuilder(EDGE)
    sx, sy, h = r.uniform(1.0, 1.7), r.uniform(0.55, 0.8), r.uniform(0.72, 0.76)
    top = mats.wood() if r.random() < 0.6 else mats.solid(str(r.choice(["white", "dark"])))
    body = top if r.random() < 0.6 else mats.solid(str(r.choice(["white", "metal", "dark"])))
    tt = 0.03
    mb.box([0, 0, h - tt / 2], [sx, sy, tt], top, C.DESK)
    pw = r.uniform(0.35, 0.45)
    side = float(r.choice([-1, 1]))
    px = side * (sx / 2 - pw / 2)
    mb.box([px, 0, (h - tt) / 2], [pw, sy - 0.02, h - tt], body, C.DESK)
    nd = int(r.integers(2, 5))
    hh = (h - tt - 0.05) / nd
    dark = mats.solid("metal")
    for k in range(nd):
        z = 0.03 + (k + 0.5) * hh
        mb.box([px, sy / 2 - 0.005, z], [pw - 0.02, 0.012, hh - 0.015], body, C.DESK)
        handles(mb, [px], z + hh * 0.25, sy / 2, dark, C.DESK, vertical=False)
    mb.box([-px, 0, (h - tt) / 2], [0.03, sy - 0.02, h - tt], body, C.DESK)
    mb.box([0, -sy / 2 + 0.02, h - tt - 0.2], [sx - 0.05, 0.02, 0.35], body, C.DESK)
    return finish("desk", C.DESK, mb)


def monitor(mats: MaterialFactory) -> Model:
    """A screen on a stand (clutter, label ignore)."""
    r, mb = mats.rng, MeshBuilder(0.04)
    w, h = r.uniform(0.45, 0.7), r.uniform(0.3, 0.42)
    dark = mats.solid("dark", 0.02)
    mb.box([0, 0, 0.01], [0.2, 0.18, 0.02], dark, C.IGNORE)
    mb.box([0, -0.03, 0.12], [0.04, 0.03, 0.22], dark, C.IGNORE)
    mb.box([0, -0.01, 0.1 + h / 2], [w, 0.03, h], dark, C.IGNORE)
    return finish("monitor", C.IGNORE, mb)
