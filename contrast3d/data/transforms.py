"""Seeded point-cloud augmentations (Pointcept's transform set, adapted to colours in [0, 1]).

Every transform is a callable ``t(cloud, rng) -> PointCloud``: it draws all randomness from the
``np.random.Generator`` it is given (no global RNG, so equal generator states give equal
outputs) and returns a new :class:`~contrast3d.structures.PointCloud`, never writing into the
input's arrays (unchanged arrays are shared, ``meta`` is copied).

Coordinate bookkeeping:

* ``meta["transform"]``: ``(4, 4)`` float64 homogeneous matrix of the total *affine* map applied so
  far (identity when absent). Every geometric transform (centre shift, rotation, flip, scale,
  shift) left-multiplies its own matrix, so ``coord_out ~= coord_in @ T[:3, :3].T + T[:3, 3]``.
  Normals are mapped by the inverse transpose of the linear part, keeping their length (unit
  normals stay unit). Per-point noise (:class:`RandomJitter`, :class:`ElasticDistortion`) is
  not affine and is not recorded.
* ``grid_coord`` is never touched by geometric transforms (as in Pointcept): it describes the
  frame at voxelisation time.
* Subsampling transforms (:class:`SphereCrop`, :class:`RandomDropout`) keep points in input order
  and compose ``meta["origin_index"]`` (see :func:`~contrast3d.data.voxelize.take_points`).

Colour transforms (:mod:`contrast3d.data.color_transforms`, re-exported here) expect ``color`` as
float ``(N, 3)`` in [0, 1] and keep it there (except :class:`NormalizeColor`, which belongs at the
end of a pipeline). Clouds without colour pass through unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.interpolate
import scipy.ndimage

from contrast3d.data.color_transforms import (  # noqa: F401 - colour transforms re-exported
    ChromaticAutoContrast,
    ChromaticJitter,
    ChromaticTranslation,
    ColorJitter,
    HueSaturationTranslation,
    NormalizeColor,
    RandomColorDrop,
    RandomColorGrayscale,
    _new,
    grayscale,
    hsv_to_rgb,
    rgb_to_hsv,
)
from contrast3d.data.voxelize import GridSample, take_points
from contrast3d.structures import PointCloud

#: A cloud-to-cloud augmentation ``(cloud, rng) -> cloud``.
Transform = Callable[[PointCloud, np.random.Generator], PointCloud]
#: A pipeline step: a :data:`Transform`, or one that may split the cloud (``GridSample(mode="test")``).
Step = Callable[[PointCloud, np.random.Generator], "PointCloud | list[PointCloud]"]


def get_transform(cloud: PointCloud) -> np.ndarray:
    """``(4, 4)`` float64 total affine map recorded in ``meta["transform"]`` (identity if absent)."""
    return np.array(cloud.meta.get("transform", np.eye(4)), dtype=np.float64)


def apply_affine(cloud: PointCloud, linear: np.ndarray, translation: np.ndarray) -> PointCloud:
    """``coord @ linear.T + translation`` (metres); normals by the length-preserving inverse transpose.

    ``linear`` ``(3, 3)`` must be invertible; the step is left-multiplied into ``meta["transform"]``.
    """
    linear = np.asarray(linear, np.float64)
    translation = np.asarray(translation, np.float64)
    step = np.eye(4)
    step[:3, :3], step[:3, 3] = linear, translation
    coord = (cloud.coord.astype(np.float64) @ linear.T + translation).astype(np.float32)
    out = _new(cloud, coord=coord)
    if cloud.normal is not None:
        inv = np.linalg.inv(linear)
        inv = inv / abs(np.linalg.det(inv)) ** (1 / 3)
        normal = cloud.normal.astype(np.float64)
        mapped = normal @ inv
        if not np.allclose(inv @ inv.T, np.eye(3), atol=1e-12):  # not a similarity: keep lengths
            norm = np.linalg.norm(mapped, axis=1, keepdims=True)
            mapped *= np.linalg.norm(normal, axis=1, keepdims=True) / np.where(norm > 0, norm, 1.0)
        out.normal = mapped.astype(np.float32)
    out.meta["transform"] = step @ get_transform(cloud)
    return out


def _bbox_center(coord: np.ndarray) -> np.ndarray:
    if len(coord) == 0:
        return np.zeros(3)
    return (coord.min(0).astype(np.float64) + coord.max(0)) / 2


def axis_rotation(axis: str, angle: float) -> np.ndarray:
    """``(3, 3)`` right-handed rotation by ``angle`` radians about ``"x"``, ``"y"`` or ``"z"``."""
    c, s = math.cos(angle), math.sin(angle)
    i = "xyz".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    rot = np.eye(3)
    rot[j, j], rot[j, k], rot[k, j], rot[k, k] = c, -s, s, c
    return rot


@dataclass
class Compose:
    """Apply ``transforms`` in order with the same ``rng``.

    Calling a ``Compose`` is a :data:`Transform` (one cloud out). A step that returns a list
    (``GridSample(mode="test")``) makes every later step run on each element and the result is a
    list too: such pipelines are run with :meth:`apply` (calling them raises ``TypeError``).
    """

    transforms: Sequence[Step]

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        out = self.apply(cloud, rng)
        if isinstance(out, list):
            raise TypeError("this Compose pipeline returns a list of clouds (test-mode GridSample): use Compose.apply")
        return out

    def apply(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud | list[PointCloud]:
        """Run the pipeline; a list of clouds if a step split the cloud, else one cloud.

        Once split, each later step maps every element; a list returned for an element (a second
        splitting step) is spliced in place, so the result is always a flat list.
        """
        data: PointCloud | list[PointCloud] = cloud
        for t in self.transforms:
            if not isinstance(data, list):
                data = t(data, rng)
                continue
            mapped: list[PointCloud] = []
            for c in data:  # one iteration per fragment (a handful), not per point
                r = t(c, rng)
                if isinstance(r, list):
                    mapped.extend(r)
                else:
                    mapped.append(r)
            data = mapped
        return data


# --------------------------------------------------------------------------- geometry
@dataclass
class CenterShift:
    """Translate so the x/y bounding-box centre is at 0 and, if ``apply_z``, min z is 0.

    Deterministic: ``rng`` is accepted for the :data:`Transform` signature and may be ``None``.
    """

    apply_z: bool = True

    def __call__(self, cloud: PointCloud, rng: np.random.Generator | None = None) -> PointCloud:
        if len(cloud) == 0:
            return _new(cloud)
        lo, hi = cloud.coord.min(0).astype(np.float64), cloud.coord.max(0).astype(np.float64)
        shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] if self.apply_z else 0.0])
        return apply_affine(cloud, np.eye(3), -shift)


@dataclass
class RandomRotate:
    """With probability ``p``, rotate about ``center`` (default: bounding-box centre).

    ``axis`` names one or more axes (``"z"``, ``"xyz"``); rotations apply in that order.
    ``angle`` is one ``(lo, hi)`` range in radians used for every listed axis, or a list with one
    range per axis. Pointcept's ``angle=[-1, 1]`` (units of pi) is ``(-pi, pi)`` here.
    """

    angle: Sequence[float] | Sequence[Sequence[float]] = (-math.pi, math.pi)
    axis: str = "z"
    center: Sequence[float] | None = None
    p: float = 0.5

    def _ranges(self) -> list[tuple[float, float]]:
        ang = np.asarray(self.angle, np.float64)
        ang = np.broadcast_to(ang, (len(self.axis), 2)) if ang.ndim == 1 else ang
        if ang.shape != (len(self.axis), 2) or any(a not in "xyz" for a in self.axis):
            raise ValueError(f"bad RandomRotate axis={self.axis!r} / angle={self.angle!r}")
        return [(float(lo), float(hi)) for lo, hi in ang]

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        ranges = self._ranges()
        if rng.random() >= self.p:
            return _new(cloud)
        rot = np.eye(3)
        for ax, (lo, hi) in zip(self.axis, ranges):
            rot = axis_rotation(ax, rng.uniform(lo, hi)) @ rot
        center = _bbox_center(cloud.coord) if self.center is None else np.asarray(self.center, np.float64)
        return apply_affine(cloud, rot, center - rot @ center)


@dataclass
class RandomRotateTargetAngle:
    """With probability ``p``, rotate by one of ``angle`` (radians, chosen uniformly) about one axis."""

    angle: Sequence[float] = (math.pi / 2, math.pi, 3 * math.pi / 2)
    axis: str = "z"
    center: Sequence[float] | None = None
    p: float = 0.75

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if rng.random() >= self.p:
            return _new(cloud)
        rot = axis_rotation(self.axis, float(rng.choice(np.asarray(self.angle, np.float64))))
        center = _bbox_center(cloud.coord) if self.center is None else np.asarray(self.center, np.float64)
        return apply_affine(cloud, rot, center - rot @ center)


@dataclass
class RandomFlip:
    """Negate each axis in ``axes`` independently with probability ``p`` (float or one per axis)."""

    p: float | Sequence[float] = 0.5
    axes: str = "xy"

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        p = np.broadcast_to(np.asarray(self.p, np.float64), (len(self.axes),))
        flip = np.ones(3)
        for ax, draw, prob in zip(self.axes, rng.random(len(self.axes)), p):
            if draw < prob:
                flip["xyz".index(ax)] = -1.0
        return apply_affine(cloud, np.diag(flip), np.zeros(3)) if (flip < 0).any() else _new(cloud)


@dataclass
class RandomScale:
    """Multiply coordinates (about the origin) by ``U(scale)``, one factor per axis if ``anisotropic``."""

    scale: Sequence[float] = (0.95, 1.05)
    anisotropic: bool = False

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        factor = rng.uniform(self.scale[0], self.scale[1], 3 if self.anisotropic else 1)
        return apply_affine(cloud, np.diag(np.broadcast_to(factor, (3,))), np.zeros(3))


@dataclass
class RandomShift:
    """Translate by ``U(shift[i])`` metres along each axis ``i``."""

    shift: Sequence[Sequence[float]] = ((-0.2, 0.2), (-0.2, 0.2), (0.0, 0.0))

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        bounds = np.asarray(self.shift, np.float64)
        return apply_affine(cloud, np.eye(3), rng.uniform(bounds[:, 0], bounds[:, 1]))


@dataclass
class RandomJitter:
    """Add per-point noise ``clip(N(0, sigma), -clip, clip)`` metres (not recorded in ``transform``)."""

    sigma: float = 0.01
    clip: float = 0.05

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        noise = np.clip(self.sigma * rng.standard_normal((len(cloud), 3)), -self.clip, self.clip)
        return _new(cloud, coord=(cloud.coord + noise).astype(np.float32))


@dataclass
class ElasticDistortion:
    """With probability ``p``, displace points by smoothed noise, once per ``(granularity, magnitude)``.

    Granularity is the noise-grid spacing in metres, magnitude multiplies the noise (metres).
    Not recorded in ``transform``. Raises ``ValueError`` if a noise grid would exceed
    ``max_cells`` cells (very large scene for the granularity).
    """

    distortion_params: Sequence[Sequence[float]] = ((0.2, 0.4), (0.8, 1.6))
    p: float = 0.95
    max_cells: int = 20_000_000

    def _distort(self, coord: np.ndarray, granularity: float, magnitude: float,
                 rng: np.random.Generator) -> np.ndarray:
        lo = coord.min(0)
        dims = ((coord - lo).max(0) // granularity).astype(np.int64) + 3
        if int(np.prod(dims)) > self.max_cells:
            raise ValueError(f"ElasticDistortion noise grid {tuple(dims)} too large; raise granularity")
        noise = rng.standard_normal((*dims, 3)).astype(np.float32)
        for _ in range(2):
            for ax in range(3):
                noise = scipy.ndimage.uniform_filter1d(noise, 3, axis=ax, mode="constant")
        axes = [np.linspace(a - granularity, a + granularity * (d - 2), d) for a, d in zip(lo, dims)]
        interp = scipy.interpolate.RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0.0)
        return coord + interp(coord) * magnitude

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if len(cloud) == 0 or rng.random() >= self.p:
            return _new(cloud)
        coord = cloud.coord.astype(np.float64)
        for granularity, magnitude in self.distortion_params:
            coord = self._distort(coord, float(granularity), float(magnitude), rng)
        return _new(cloud, coord=coord.astype(np.float32))


# --------------------------------------------------------------------------- cropping
@dataclass
class SphereCrop:
    """Keep the ``point_max`` (or ``sample_rate * N``) points nearest to a centre, if N is larger.

    ``mode="random"``: the centre is a uniformly random point; ``"center"``: the bounding-box
    centre (Pointcept uses the middle point of the array). Kept points stay in input order.
    """

    point_max: int = 80000
    sample_rate: float | None = None
    mode: str = "random"

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        if self.mode not in ("random", "center"):
            raise ValueError(f"SphereCrop mode must be 'random' or 'center', got {self.mode!r}")
        n = len(cloud)
        keep = max(1, int(self.sample_rate * n) if self.sample_rate is not None else int(self.point_max))
        if n <= keep:
            return _new(cloud)
        coord = cloud.coord.astype(np.float64)
        center = coord[rng.integers(n)] if self.mode == "random" else _bbox_center(coord)
        dist = np.sum((coord - center) ** 2, axis=1)
        return take_points(cloud, np.sort(np.argpartition(dist, keep - 1)[:keep]))


@dataclass
class RandomDropout:
    """With probability ``dropout_application_ratio``, keep a random ``1 - dropout_ratio`` of points."""

    dropout_ratio: float = 0.2
    dropout_application_ratio: float = 0.5

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        n = len(cloud)
        if rng.random() >= self.dropout_application_ratio or n == 0:
            return _new(cloud)
        keep = max(1, int(n * (1 - self.dropout_ratio)))
        return take_points(cloud, np.sort(rng.choice(n, keep, replace=False)))


TRANSFORMS: dict[str, type] = {cls.__name__: cls for cls in (
    CenterShift, RandomRotate, RandomRotateTargetAngle, RandomFlip, RandomScale, RandomShift,
    RandomJitter, ElasticDistortion, SphereCrop, RandomDropout, ChromaticAutoContrast,
    ChromaticTranslation, ChromaticJitter, HueSaturationTranslation, RandomColorGrayscale,
    ColorJitter, RandomColorDrop, NormalizeColor, GridSample)}


def build_transforms(configs: Sequence[dict[str, Any]]) -> Compose:
    """``[{"type": "RandomRotate", "axis": "z", ...}, ...]`` -> :class:`Compose` (names in ``TRANSFORMS``)."""
    out = []
    for cfg in configs:
        cfg = dict(cfg)
        name = cfg.pop("type", None)
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; known: {sorted(TRANSFORMS)}")
        out.append(TRANSFORMS[name](**cfg))
    return Compose(out)
