"""Depth- and colour-sensor noise models (Kinect / Structure-sensor like)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class DepthNoise:
    """Parameters of :func:`noisy_depth` (metres, degrees)."""

    sigma0: float = 0.0012
    sigma2: float = 0.0019
    z_ref: float = 0.4
    min_range: float = 0.3
    max_range: float = 5.0
    grazing_deg: tuple[float, float] = (75.0, 82.0)
    edge_jump: float = 0.05
    edge_drop: float = 0.7
    blobs: float = 1.5
    pixel_drop: float = 0.003


def depth_sigma(z: np.ndarray, p: DepthNoise | None = None) -> np.ndarray:
    """Axial noise std (metres) at depth ``z``: ``sigma0 + sigma2 * (z - z_ref)^2``."""
    p = p or DepthNoise()
    return p.sigma0 + p.sigma2 * (np.asarray(z) - p.z_ref) ** 2


def noisy_depth(depth: np.ndarray, cos_incidence: np.ndarray, rng: np.random.Generator,
                p: DepthNoise | None = None) -> np.ndarray:
    """A sensor reading of the exact ``depth`` ``(H, W)`` (metres, 0 = none).

    ``cos_incidence`` ``(H, W)`` is ``|cos|`` of the angle between the view ray and the surface
    normal. Returns float32 metres quantised to millimetres, 0 = invalid: out of range, grazing
    angle, depth edges, random blob-shaped dropouts and single-pixel dropouts; valid pixels get
    depth-dependent Gaussian noise.
    """
    p = p or DepthNoise()
    h, w = depth.shape
    z = depth.astype(np.float64)
    valid = (z >= p.min_range) & (z <= p.max_range)
    limit = np.cos(np.deg2rad(rng.uniform(*p.grazing_deg, size=(h, w))))
    valid &= cos_incidence > limit
    zf = np.where(z > 0, z, 1e3)
    jump = ndimage.maximum_filter(zf, 3) - ndimage.minimum_filter(zf, 3)
    edge = jump > p.edge_jump * np.maximum(z, 1.0)
    valid &= ~(edge & (rng.random((h, w)) < p.edge_drop))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.poisson(p.blobs))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, 0.06 * h), rng.uniform(2, 0.06 * w)
        valid &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 > 1.0
    valid &= rng.random((h, w)) >= p.pixel_drop
    zn = z + rng.normal(size=(h, w)) * depth_sigma(z, p)
    zn = np.round(zn * 1000.0) / 1000.0
    return np.where(valid, zn, 0.0).astype(np.float32)


def noisy_color(rgb: np.ndarray, rng: np.random.Generator, sigma: float = 0.015) -> np.ndarray:
    """Sensor colour from linear-ish ``rgb`` ``(H, W, 3)`` in [0, 1]: per-frame exposure and
    white balance, gamma, Gaussian pixel noise; returns uint8."""
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, 3)
    out = np.clip(rgb * gain, 0, 1) ** (1 / 1.1)
    out = out + rng.normal(0, sigma, out.shape)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
