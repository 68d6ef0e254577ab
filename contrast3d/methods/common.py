"""Config sections and builders shared by the view-pair methods (pair data, collate, smoke data).

``BackboneConfig``/``build_backbone`` live in :mod:`contrast3d.models.backbone` and are re-exported
here for the methods' convenience.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from contrast3d.data import transforms as T
from contrast3d.data.frame_dataset import SCENE_FILE, FramePairDataset
from contrast3d.data.scene_dataset import HolisticPairDataset, find_scene_dirs, pretraining_scene_dirs
from contrast3d.data.voxelize import GridSample
from contrast3d.errors import DataError
from contrast3d.models.backbone import BackboneConfig, build_backbone
from contrast3d.structures import MultiView, ViewBatch, collate_views

__all__ = ["BackboneConfig", "build_backbone", "PairDataConfig", "view_transform", "build_pair_dataset",
           "pair_collate", "smoke_frame_pairs", "smoke_scenes", "SMOKE_VIEWS"]

#: The ``data`` smoke settings of the two-view methods: coarse voxels, few points, strict reading.
SMOKE_VIEWS = {"grid_size": 0.1, "match_radius": 0.15, "max_points": 3000, "strict": True}


@dataclass
class PairDataConfig:
    """The ``data`` section of view-pair methods: per-view augmentation, voxels, matching.

    Attributes:
        grid_size: voxel edge in metres (PointContrast: 2.5 cm).
        feat_keys: per-point arrays concatenated into the backbone input (``[ones]``: geometry
            only, a constant 1 per point, as the official PointContrast code).
        match_radius: correspondence radius in metres (1.5 voxels).
        rotation: ``so3`` (independent rotation about x, y and z, as PointContrast's code),
            ``z`` (about the up axis only) or ``none``.
        scale: uniform scale range per view.
        shift: translation range per view in metres (uniform in ``[-shift, shift]`` per axis).
        color_aug: chromatic auto-contrast, translation and jitter per view.
        max_points: cap on voxels per view (random sphere crop after voxelisation; 0 = no cap).
        holistic_crop: for scene folders (no RGB-D frames), the fraction of the scene each view
            keeps around a random centre, so the two views overlap partially.
        min_overlap: drop frame pairs below this overlap (``None``: keep all mined pairs).
        strict: stop at the first unreadable scene instead of skipping it.
    """

    grid_size: float = 0.025
    feat_keys: list[str] = field(default_factory=lambda: ["color", "normal"])
    match_radius: float = 0.0375
    rotation: Literal["so3", "z", "none"] = "so3"
    scale: list[float] = field(default_factory=lambda: [0.8, 1.2])
    shift: float = 0.2
    color_aug: bool = True
    max_points: int = 80000
    holistic_crop: float = 0.6
    min_overlap: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        positive = {"data.grid_size": self.grid_size, "data.match_radius": self.match_radius}
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 (metres), got {value}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"data.scale must be [low, high] with 0 < low <= high, got {self.scale}")
        if self.max_points < 0 or not self.shift >= 0 or not 0 < self.holistic_crop <= 1:
            raise ValueError(f"data.max_points and data.shift must be >= 0 and data.holistic_crop in (0, 1], got "
                             f"{self.max_points}, {self.shift}, {self.holistic_crop}")
        if self.min_overlap is not None and not 0 <= self.min_overlap <= 1:
            raise ValueError(f"data.min_overlap must be in [0, 1] or null, got {self.min_overlap}")


def view_transform(cfg: PairDataConfig, holistic: bool = False) -> T.Compose:
    """Per-view augmentation: [crop] -> rotation -> scale -> shift -> colour -> voxels -> cap."""
    steps: list = []
    if holistic:
        steps.append(T.SphereCrop(sample_rate=cfg.holistic_crop, mode="random"))
    if cfg.rotation == "so3":
        steps.append(T.RandomRotate(angle=(-math.pi, math.pi), axis="xyz", p=1.0))
    elif cfg.rotation == "z":
        steps.append(T.RandomRotate(angle=(-math.pi, math.pi), axis="z", p=1.0))
    steps.append(T.RandomScale(tuple(cfg.scale)))
    if cfg.shift > 0:
        steps.append(T.RandomShift(((-cfg.shift, cfg.shift),) * 3))
    if cfg.color_aug:
        steps += [T.ChromaticAutoContrast(), T.ChromaticTranslation(), T.ChromaticJitter()]
    steps.append(GridSample(cfg.grid_size, mode="train"))
    if cfg.max_points > 0:
        steps.append(T.SphereCrop(point_max=cfg.max_points, mode="random"))
    return T.Compose(steps)


def build_pair_dataset(root: str, cfg: PairDataConfig) -> Dataset:
    """View pairs from ``root``: prepared RGB-D scenes (``scene.json``, ``contrast3d prepare
    rgbd``) when present, else the holistic variant over Pointcept scene folders."""
    on_error = "raise" if cfg.strict else "skip"
    frame_scenes = find_scene_dirs(root, SCENE_FILE)
    if frame_scenes:
        ds = FramePairDataset(frame_scenes, view_transform(cfg), cfg.match_radius,
                              min_overlap=cfg.min_overlap, on_error=on_error)
        if len(ds) == 0:
            raise DataError(root, f"prepared scenes found but no frame pairs (skipped: {len(ds.skipped)})")
        return ds
    scenes = pretraining_scene_dirs(root)  # never val/ or test/ scenes of a Pointcept root
    if not scenes:
        raise DataError(Path(root), "no prepared RGB-D scenes (scene.json) or Pointcept scene folders "
                                    "(coord.npy) found; run 'contrast3d prepare' or 'contrast3d simulate' first")
    return HolisticPairDataset(scenes, view_transform(cfg, holistic=True), cfg.match_radius, on_error=on_error)


def pair_collate(cfg: PairDataConfig) -> Callable[[list[MultiView]], ViewBatch]:
    """``list[MultiView] -> ViewBatch`` with the configured input features (picklable)."""
    return functools.partial(collate_views, feat_keys=tuple(cfg.feat_keys))


def smoke_frame_pairs(folder: Path) -> str:
    """Two tiny simulated scenes rendered to RGB-D frames and prepared as frame pairs (the default
    smoke data of view-pair methods); returns the prepared root."""
    from contrast3d.data.prepare import run_prepare
    from contrast3d.data.scene_jobs import find_sequences
    from contrast3d.simulate.batch import simulate_scenes

    sim = Path(folder) / "sim"
    simulate_scenes([11, 12], sim, frames=6, width=96, height=72, density=300.0, workers=1)
    inputs, ignored = find_sequences(sim)
    out = Path(folder) / "pairs"
    run_prepare("rgbd", inputs, out, {"frame_skip": 1, "voxel_size": 0.05, "min_overlap": 0.2, "segments": True},
                workers=1, quiet=True, ignored=ignored)
    return str(out)


def smoke_scenes(folder: Path) -> str:
    """Two tiny simulated scenes prepared as Pointcept folders with normals and superpoints
    (``contrast3d prepare scenes``), the smoke data of single-scene methods; returns the root."""
    from contrast3d.data.prepare import run_prepare
    from contrast3d.data.scene_jobs import find_scene_inputs
    from contrast3d.simulate import simulate_scene

    sim = Path(folder) / "sim"
    for seed in (11, 12):
        simulate_scene(seed, sim, n_frames=0, density=300.0)
    inputs, ignored = find_scene_inputs([sim / "pointcept"])
    out = Path(folder) / "scenes"
    run_prepare("scenes", inputs, out, {"segments": True}, workers=1, quiet=True, ignored=ignored)
    return str(out)
