"""Two augmented views of one scene in the Masked Scene Contrast style (MSC, Wu et al. 2023;
GroupContrast appendix Table 4), with correspondences and overlap-restricted segments.

Each view of a scene (Pointcept folder, metres) goes through its own draw of::

    rotate z ±180° -> rotate x ±3° -> rotate y ±3° -> scale U(0.9, 1.1) -> flip x/y (p 0.5 each)
    -> jitter N(0, 0.005) clipped at 0.02 m -> colour jitter (0.4, 0.4, 0.2, 0.02; p 0.8)
    -> chromatic jitter (std 0.05, p 0.95) -> grid sample (2 cm, one random point per voxel)
    -> sphere crop keeping 60 % of the voxels around a random point [-> point cap]

(the order of Pointcept's MSC configs: the crop comes after the grid sample). Matches are nearest
neighbours within ``match_radius`` between the **original** (pre-augmentation) coordinates of the
points each view kept (:func:`contrast3d.data.views.make_view_pair`), so they are exact whatever the
rotations, flips and crops did. Segment ids (``segment_key``, the graph-cut ``superpoint`` written by
``contrast3d prepare scenes``) are restricted to the overlap: a point without a match in the other
view gets ``-1``, as GroupContrast groups only segments seen by both views.

Decisions where the papers are silent: the match radius defaults to 1.5 grid cells (3 cm, MSC's
k-NN radius); colour jitter keeps colours in [0, 1] (clipped); the crop is per view with its own
random centre, so the two views overlap partially, as in MSC.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contrast3d.data import transforms as T
from contrast3d.data.color_transforms import ChromaticJitter, ColorJitter
from contrast3d.data.scene_dataset import SceneFolders
from contrast3d.data.views import make_view_pair
from contrast3d.data.voxelize import GridSample
from contrast3d.structures import MultiView


@dataclass
class MSCViewConfig:
    """Per-view augmentation of the MSC recipe (defaults: GroupContrast Table 4 / Pointcept MSC).

    Attributes:
        grid_size: voxel edge, metres.
        crop_fraction: share of each view's voxels kept by the random sphere crop (0.6).
        max_points: cap on voxels per view after the crop (0 = none).
        rotate_z, rotate_xy: rotation ranges in degrees (±180 about z, ±3 about x and y).
        scale: uniform scale range.
        flip: random flips of x and y (p 0.5 each).
        jitter_sigma, jitter_clip: per-point Gaussian jitter, metres.
        color_jitter: brightness, contrast, saturation, hue of the colour jitter; ``color_jitter_p``
            its probability per adjustment.
        chromatic_std, chromatic_p: per-point colour noise.
        match_radius: correspondence radius on the original coordinates, metres.
        segment_key: per-point id array restricted to the overlap (``superpoint``); ``""`` = none.
    """

    grid_size: float = 0.02
    crop_fraction: float = 0.6
    max_points: int = 0
    rotate_z: float = 180.0
    rotate_xy: float = 3.0
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    flip: bool = True
    jitter_sigma: float = 0.005
    jitter_clip: float = 0.02
    color_jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.2, 0.02])
    color_jitter_p: float = 0.8
    chromatic_std: float = 0.05
    chromatic_p: float = 0.95
    match_radius: float = 0.03
    segment_key: str = "superpoint"


def msc_view_transform(cfg: MSCViewConfig) -> T.Compose:
    """The per-view augmentation chain of :class:`MSCViewConfig` (``(cloud, rng) -> cloud``)."""
    z, xy = math.radians(cfg.rotate_z), math.radians(cfg.rotate_xy)
    steps: list = [T.RandomRotate(angle=(-z, z), axis="z", p=1.0)]
    if xy > 0:
        steps += [T.RandomRotate(angle=(-xy, xy), axis="x", p=1.0), T.RandomRotate(angle=(-xy, xy), axis="y", p=1.0)]
    steps.append(T.RandomScale(tuple(cfg.scale)))
    if cfg.flip:
        steps.append(T.RandomFlip(0.5, "xy"))
    if cfg.jitter_sigma > 0:
        steps.append(T.RandomJitter(cfg.jitter_sigma, cfg.jitter_clip))
    b, c, s, h = cfg.color_jitter
    steps += [ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=cfg.color_jitter_p),
              ChromaticJitter(p=cfg.chromatic_p, std=cfg.chromatic_std),
              GridSample(cfg.grid_size, mode="train")]
    if cfg.crop_fraction < 1.0:
        steps.append(T.SphereCrop(sample_rate=cfg.crop_fraction, mode="random"))
    if cfg.max_points > 0:
        steps.append(T.SphereCrop(point_max=cfg.max_points, mode="random"))
    return T.Compose(steps)


def restrict_to_overlap(views: MultiView, key: str) -> MultiView:
    """Set ``key`` ids of points without a match in the other view to ``-1`` (in place)."""
    if not key:
        return views
    for v, col in ((0, 0), (1, 1)):
        ids = views.views[v].get(key)
        if ids is None:
            continue
        matched = np.zeros(len(views.views[v]), bool)
        matched[views.matches[:, col]] = True
        views.views[v].set(key, np.where(matched, ids, -1).astype(np.int64))
    return views


class MSCViewDataset(SceneFolders):
    """Two MSC-augmented views of each Pointcept scene, a two-view :class:`MultiView` per sample.

    Args:
        scene_dirs: Pointcept scene folders (``coord.npy`` ..., ``superpoint.npy`` for segments).
        cfg: the view recipe.
        on_error, keep_raw: as :class:`~contrast3d.data.scene_dataset.SceneFolders`.
    """

    def __init__(self, scene_dirs: Iterable[str | Path], cfg: MSCViewConfig | None = None, on_error: str = "skip",
                 keep_raw: bool = True):
        self.cfg = cfg or MSCViewConfig()
        super().__init__(scene_dirs, msc_view_transform(self.cfg), on_error, keep_raw)

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:
        raw = self.raw(index)
        views = make_view_pair(raw, raw, self.transform, rng, self.cfg.match_radius,
                               meta={"name": raw.name, "scene": str(self.scene_dirs[index]), "index": int(index)})
        return restrict_to_overlap(views.validate(str(self.scene_dirs[index])), self.cfg.segment_key)

    def __getitem__(self, index: int) -> MultiView:
        return self.get_sample(index, np.random.default_rng(index))
