"""Seeded colour augmentations on ``(N, 3)`` float colours in [0, 1] (Pointcept's set, rescaled).

Same contract as :mod:`contrast3d.data.transforms`: ``t(cloud, rng) -> PointCloud``, randomness
only from ``rng``, a new cloud returned, colours kept in [0, 1] (except :class:`NormalizeColor`,
which belongs at the end of a pipeline). Clouds without colour pass through unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from contrast3d.structures import PointCloud

_LUMA = np.array([0.2989, 0.587, 0.114])


def _new(cloud: PointCloud, **changes: Any) -> PointCloud:
    """A new cloud sharing unchanged arrays, with its own ``extra``/``meta`` dicts."""
    return replace(cloud, extra=dict(cloud.extra), meta=dict(cloud.meta), **changes)

def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` RGB in [0, 1] -> HSV, all channels in [0, 1] (hue as a fraction of a turn)."""
    rgb = np.asarray(rgb, np.float64)
    maxc, minc = rgb.max(-1), rgb.min(-1)
    span = maxc - minc
    safe = np.where(span > 0, span, 1.0)
    rc, gc, bc = np.moveaxis((maxc[..., None] - rgb) / safe[..., None], -1, 0)
    r, g = rgb[..., 0], rgb[..., 1]
    h = np.select([r == maxc, g == maxc], [bc - gc, 2.0 + rc - bc], 4.0 + gc - rc)
    h = np.where(span > 0, (h / 6.0) % 1.0, 0.0)
    s = np.where(maxc > 0, span / np.where(maxc > 0, maxc, 1.0), 0.0)
    return np.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv` (``(N, 3)`` floats in [0, 1])."""
    h, s, v = np.moveaxis(np.asarray(hsv, np.float64), -1, 0)
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, i[None, ..., None], axis=0)[0]


def grayscale(color: np.ndarray) -> np.ndarray:
    """``(N, 3)`` -> ``(N, 1)`` luminance (ITU-R 601 weights, as torchvision)."""
    return (np.asarray(color, np.float64) @ _LUMA)[:, None]


def _with_color(cloud: PointCloud, color: np.ndarray) -> PointCloud:
    return _new(cloud, color=np.clip(color, 0.0, 1.0).astype(np.float32))


@dataclass
class ChromaticAutoContrast:
    """With probability ``p``, blend colours with their per-channel min-max stretch."""

    p: float = 0.2
    blend_factor: float | None = None

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or len(cloud) == 0 or rng.random() >= self.p:
            return _new(cloud)
        color = cloud.color.astype(np.float64)
        lo, hi = color.min(0), color.max(0)
        stretched = np.where(hi > lo, (color - lo) / np.where(hi > lo, hi - lo, 1.0), color)
        blend = rng.random() if self.blend_factor is None else self.blend_factor
        return _with_color(cloud, (1 - blend) * color + blend * stretched)


@dataclass
class ChromaticTranslation:
    """With probability ``p``, add one offset ``U(-ratio, ratio)`` per channel to every colour."""

    p: float = 0.95
    ratio: float = 0.05

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or rng.random() >= self.p:
            return _new(cloud)
        return _with_color(cloud, cloud.color + (rng.random(3) - 0.5) * 2 * self.ratio)


@dataclass
class ChromaticJitter:
    """With probability ``p``, add per-point Gaussian colour noise of ``std`` (colour units)."""

    p: float = 0.95
    std: float = 0.005

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or rng.random() >= self.p:
            return _new(cloud)
        return _with_color(cloud, cloud.color + self.std * rng.standard_normal((len(cloud), 3)))


@dataclass
class HueSaturationTranslation:
    """With probability ``p``, shift hue by ``U(-hue_max, hue_max)`` turns and scale saturation by
    ``1 + U(-saturation_max, saturation_max)``."""

    hue_max: float = 0.5
    saturation_max: float = 0.2
    p: float = 1.0

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or rng.random() >= self.p:
            return _new(cloud)
        hue, sat = (rng.random(2) - 0.5) * 2 * np.array([self.hue_max, self.saturation_max])
        hsv = rgb_to_hsv(cloud.color)
        hsv[:, 0] = (hsv[:, 0] + hue) % 1.0
        hsv[:, 1] = np.clip(hsv[:, 1] * (1 + sat), 0.0, 1.0)
        return _with_color(cloud, hsv_to_rgb(hsv))


@dataclass
class RandomColorGrayscale:
    """With probability ``p``, replace colours by their luminance on all three channels."""

    p: float = 0.2

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or rng.random() >= self.p:
            return _new(cloud)
        return _with_color(cloud, np.repeat(grayscale(cloud.color), 3, axis=1))


def _jitter_range(value: float | Sequence[float], name: str, center: float, bound: tuple[float, float]):
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        lo, hi = center - value, center + value
        lo = max(lo, bound[0])
    else:
        lo, hi = (float(v) for v in value)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{name} range {value!r} outside {bound}")
    return None if lo == hi == center else (lo, hi)


@dataclass
class ColorJitter:
    """torchvision ``ColorJitter`` on ``(N, 3)`` colours in [0, 1]; each of the four adjustments
    (in random order) is applied with probability ``p`` (Pointcept's ``RandomColorJitter``).

    ``brightness``/``contrast``/``saturation``: ``b`` means factor ``U(max(0, 1-b), 1+b)`` (or give
    a ``(lo, hi)`` range); ``hue``: ``h <= 0.5`` means a hue shift ``U(-h, h)`` turns.
    """

    brightness: float | Sequence[float] = 0.0
    contrast: float | Sequence[float] = 0.0
    saturation: float | Sequence[float] = 0.0
    hue: float | Sequence[float] = 0.0
    p: float = 0.95

    def __post_init__(self) -> None:
        inf = float("inf")
        self._ranges = [_jitter_range(self.brightness, "brightness", 1.0, (0.0, inf)),
                        _jitter_range(self.contrast, "contrast", 1.0, (0.0, inf)),
                        _jitter_range(self.saturation, "saturation", 1.0, (0.0, inf)),
                        _jitter_range(self.hue, "hue", 0.0, (-0.5, 0.5))]

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or len(cloud) == 0:
            return _new(cloud)
        color = cloud.color.astype(np.float64)
        for fn in rng.permutation(4):
            rng_range = self._ranges[fn]
            if rng_range is None or rng.random() >= self.p:
                continue
            f = rng.uniform(*rng_range)
            if fn == 0:
                color = color * f
            elif fn == 1:
                color = f * color + (1 - f) * grayscale(color).mean()
            elif fn == 2:
                color = f * color + (1 - f) * grayscale(color)
            else:
                hsv = rgb_to_hsv(color)
                hsv[:, 0] = (hsv[:, 0] + f) % 1.0
                color = hsv_to_rgb(hsv)
            color = np.clip(color, 0.0, 1.0)
        return _with_color(cloud, color)


@dataclass
class RandomColorDrop:
    """With probability ``p``, multiply colours by ``color_augment`` (0 = drop them)."""

    p: float = 0.2
    color_augment: float = 0.0

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if cloud.color is None or rng.random() >= self.p:
            return _new(cloud)
        return _with_color(cloud, cloud.color * self.color_augment)


@dataclass
class NormalizeColor:
    """``(color - mean) / std``; the default maps [0, 1] to [-1, 1]. Deterministic; put it last.

    Records ``meta["color_normalization"] = (mean, std)``. Pointcept-style features (colour in
    [0, 1]) need no normalisation at all: leave this transform out.
    """

    mean: float | Sequence[float] = 0.5
    std: float | Sequence[float] = 0.5

    def __call__(self, cloud: PointCloud, rng: np.random.Generator | None = None) -> PointCloud:
        if cloud.color is None:
            return _new(cloud)
        out = _new(cloud, color=((cloud.color - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32))
        out.meta["color_normalization"] = (self.mean, self.std)
        return out
