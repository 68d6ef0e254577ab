"""Procedural solid textures baked into vertex colours.

A :class:`Material` maps vertex positions ``(N, 3)`` float (metres, in the frame the part is
built in) to colours ``(N, 3)`` float32 in [0, 1]. Textures are functions of position, so the
colour is continuous across a subdivided surface; features are kept larger than the
subdivision edge length (~5-10 cm) so they survive vertex-colour interpolation.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

_PRIMES = np.array([73856093, 19349663, 83492791], np.int64)


def value_noise(p: np.ndarray, scale: float, table: np.ndarray) -> np.ndarray:
    """Smooth value noise in [-1, 1] at points ``p`` ``(N, 3)``; lattice spacing ``scale`` metres.

    ``table`` is a ``(256,)`` float array of lattice values from the scene generator.
    """
    q = np.asarray(p, np.float64) / scale
    base = np.floor(q).astype(np.int64)
    f = q - base
    f = f * f * (3.0 - 2.0 * f)
    out = np.zeros(len(q))
    for corner in range(8):
        off = np.array([(corner >> k) & 1 for k in range(3)], np.int64)
        h = ((base + off) * _PRIMES)
        idx = (h[:, 0] ^ h[:, 1] ^ h[:, 2]) & 255
        w = np.prod(np.where(off == 1, f, 1.0 - f), axis=1)
        out += w * table[idx]
    return out


def fbm(p: np.ndarray, scale: float, table: np.ndarray, octaves: int = 3) -> np.ndarray:
    """Fractal sum of :func:`value_noise` octaves, roughly in [-1, 1]."""
    total, amp, norm = np.zeros(len(p)), 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(p + 17.3 * o, scale / 2 ** o, table)
        norm += amp
        amp *= 0.5
    return total / norm


@dataclass
class Material:
    """A parametric texture.

    Attributes:
        kind: ``solid``, ``wood``, ``fabric``, ``stripes``, ``planks``, ``tiles``, ``painting``.
        base: ``(3,)`` base RGB in [0, 1]; ``alt`` a second colour for two-tone patterns.
        scale: characteristic feature size in metres; ``noise`` the noise amplitude.
        axis: the grain / stripe axis (0, 1, 2) in the part frame.
        table: ``(256,)`` lattice of random values (makes the texture unique per seed).
    """

    kind: str
    base: np.ndarray
    alt: np.ndarray
    scale: float
    noise: float
    axis: int
    table: np.ndarray = field(repr=False)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        n = fbm(p, max(self.scale, 0.05), self.table)
        base = np.broadcast_to(self.base, p.shape).copy()
        if self.kind == "wood":
            a = p[:, self.axis]
            b = p[:, (self.axis + 1) % 3] + p[:, (self.axis + 2) % 3]
            ring = 0.5 + 0.5 * np.sin(2 * np.pi * (b / self.scale + 1.5 * n) + 0.3 * a)
            base = base * (0.82 + 0.3 * ring[:, None])
        elif self.kind == "stripes":  # axis 3: along x + y (vertical stripes on any wall)
            a = p[:, 0] + p[:, 1] if self.axis == 3 else p[:, self.axis]
            s = np.sin(2 * np.pi * a / self.scale) > 0.0
            base = np.where(s[:, None], self.base, self.alt)
        elif self.kind == "fabric":
            c = (np.sin(2 * np.pi * p[:, 0] / self.scale) * np.sin(2 * np.pi * p[:, 1] / self.scale)
                 * np.sign(np.sin(2 * np.pi * p[:, 2] / self.scale) + 1e-9))
            mix = np.clip(0.5 + 0.35 * c, 0, 1)[:, None]
            base = base * (1 - mix) + self.alt * mix
        elif self.kind == "planks":
            w = self.scale
            row = np.floor(p[:, (self.axis + 1) % 2] / w)
            col = np.floor((p[:, self.axis] + 0.37 * w * 7 * row) / (6 * w))
            idx = ((row.astype(np.int64) * 92821 + col.astype(np.int64) * 68917) & 255)
            shade = 0.85 + 0.3 * (self.table[idx] * 0.5 + 0.5)
            grain = 0.06 * np.sin(2 * np.pi * p[:, (self.axis + 1) % 2] / (w / 3) + 3 * n)
            base = base * (shade + grain)[:, None]
        elif self.kind == "tiles":
            ij = np.floor(p[:, :2] / self.scale).astype(np.int64)
            checker = ((ij[:, 0] + ij[:, 1]) & 1).astype(bool)
            base = np.where(checker[:, None], self.base, self.alt)
        elif self.kind == "painting":
            hues = np.stack([fbm(p + 3.1 * k, self.scale, self.table, 2) for k in range(3)], 1)
            base = np.clip(self.base + 0.45 * hues, 0, 1)
        out = base * (1.0 + self.noise * n[:, None])
        fine = value_noise(p * 1.7, 0.03, self.table)  # fine speckle (below vertex spacing mostly)
        out = out * (1.0 + 0.25 * self.noise * fine[:, None])
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


#: Palettes as (hue range, saturation range, value range) per family.
PALETTES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "wood": ((0.05, 0.11), (0.35, 0.75), (0.25, 0.8)),
    "fabric": ((0.0, 1.0), (0.1, 0.7), (0.2, 0.85)),
    "wall": ((0.0, 1.0), (0.0, 0.18), (0.72, 0.97)),
    "metal": ((0.5, 0.7), (0.0, 0.08), (0.35, 0.85)),
    "white": ((0.0, 1.0), (0.0, 0.05), (0.86, 0.98)),
    "dark": ((0.0, 1.0), (0.0, 0.3), (0.08, 0.3)),
    "plastic": ((0.0, 1.0), (0.0, 0.85), (0.3, 0.95)),
    "stone": ((0.05, 0.15), (0.0, 0.25), (0.45, 0.9)),
    "leaf": ((0.22, 0.4), (0.45, 0.8), (0.2, 0.55)),
}


class MaterialFactory:
    """Draws random materials from one scene generator (``numpy.random.Generator``)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def color(self, family: str) -> np.ndarray:
        (h0, h1), (s0, s1), (v0, v1) = PALETTES[family]
        r = self.rng
        return _hsv(r.uniform(h0, h1), r.uniform(s0, s1), r.uniform(v0, v1))

    def make(self, kind: str, family: str, scale: float | None = None, noise: float | None = None,
             axis: int | None = None, alt_family: str | None = None) -> Material:
        r = self.rng
        base = self.color(family)
        alt = self.color(alt_family) if alt_family else np.clip(base * r.uniform(0.6, 1.3), 0, 1)
        return Material(kind=kind, base=base, alt=alt,
                        scale=float(scale if scale is not None else r.uniform(0.1, 0.4)),
                        noise=float(noise if noise is not None else r.uniform(0.04, 0.15)),
                        axis=int(axis if axis is not None else r.integers(0, 3)),
                        table=r.uniform(-1, 1, 256))

    def wood(self) -> Material:
        return self.make("wood", "wood", scale=self.rng.uniform(0.04, 0.12), noise=0.08,
                         axis=int(self.rng.integers(0, 2)))

    def fabric(self) -> Material:
        r = self.rng
        kind = r.choice(["solid", "fabric", "stripes"], p=[0.55, 0.25, 0.2])
        return self.make(str(kind), "fabric", scale=r.uniform(0.08, 0.3), noise=r.uniform(0.05, 0.2),
                         alt_family="fabric" if kind != "solid" and r.random() < 0.5 else None)

    def solid(self, family: str, noise: float = 0.05) -> Material:
        return self.make("solid", family, scale=0.3, noise=noise)
