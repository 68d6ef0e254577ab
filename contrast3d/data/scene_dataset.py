"""Datasets over Pointcept scene folders: single augmented scenes and holistic view pairs.

A Pointcept scene folder holds ``coord.npy`` (+ ``color.npy``, ``normal.npy``,
``segment20.npy``/``segment.npy``, ``instance.npy``, ``superpoint.npy``); a dataset root is a
folder of such folders (searched two levels deep, so ``<root>/pointcept/<scene>/`` from
``contrast3d simulate`` is found too).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from contrast3d.data.views import make_view_pair
from contrast3d.errors import DataError, read_or_skip
from contrast3d.io.pointcept import read_pointcept_scene
from contrast3d.structures import MultiView, PointCloud

Transform = Callable[[PointCloud, np.random.Generator], PointCloud]


def find_scene_dirs(root: str | Path, marker: str, depth: int = 2) -> list[Path]:
    """Sorted folders under ``root`` (itself included, up to ``depth`` levels) containing ``marker``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist")
    found, level = [], [root]
    for _ in range(depth + 1):
        found += [d for d in level if (d / marker).is_file()]
        level = [c for d in level if not (d / marker).is_file() for c in sorted(d.iterdir())
                 if c.is_dir() and not c.name.startswith(".")]
    return sorted(found)


#: Sub-folders of a Pointcept root that hold held-out scenes, never pre-trained on by default.
HELD_OUT_SPLITS = ("val", "test")


def pretraining_scene_dirs(root: str | Path, marker: str = "coord.npy", include_held_out: bool = False) -> list[Path]:
    """Scene folders under ``root`` for **pre-training**: like :func:`find_scene_dirs`, but scenes
    under ``root/val`` or ``root/test`` (Pointcept's split layout) are left out unless
    ``include_held_out``, so validation scenes never leak into pre-training."""
    root = Path(root)
    scenes = find_scene_dirs(root, marker)
    if include_held_out:
        return scenes
    held = [root / split for split in HELD_OUT_SPLITS if (root / split).is_dir()]
    return [d for d in scenes if not any(h == d or h in d.parents for h in held)]


class SceneFolders(Dataset):
    """Pointcept scene folders read (and optionally cached) for a dataset; subclasses define the items.

    Args:
        scene_dirs: Pointcept scene folders.
        transform: ``(cloud, rng) -> cloud`` (e.g. augmentation + voxelisation), or ``None``.
        on_error: ``"skip"`` unreadable scenes at construction (listed in ``self.skipped``) or
            ``"raise"`` the :class:`DataError`.
        keep_raw: also keep the scenes in memory (small datasets: avoids re-reading .npy files).
    """

    def __init__(self, scene_dirs: Iterable[str | Path], transform: Transform | None = None,
                 on_error: str = "skip", keep_raw: bool = True):
        self.transform = transform
        self.skipped: list[DataError] = []
        self.scene_dirs: list[Path] = []
        self._cache: dict[int, PointCloud] = {}
        scene_dirs = [Path(d) for d in scene_dirs]
        for d, cloud in read_or_skip(scene_dirs, read_pointcept_scene, on_error, self.skipped):
            if keep_raw:
                self._cache[len(self.scene_dirs)] = cloud
            self.scene_dirs.append(d)
        if not self.scene_dirs:
            raise DataError(next(iter(map(str, scene_dirs)), "<no scenes>"),
                            "no readable scenes" + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))

    def __len__(self) -> int:
        return len(self.scene_dirs)

    def raw(self, index: int) -> PointCloud:
        """The scene as read from disk (before augmentation); ``meta['name']`` is the folder name."""
        cloud = self._cache.get(index) or read_pointcept_scene(self.scene_dirs[index])
        cloud.meta.setdefault("name", self.scene_dirs[index].name)
        return cloud


class SceneDataset(SceneFolders):
    """Augmented Pointcept scenes, one :class:`PointCloud` per item (arguments: :class:`SceneFolders`)."""

    def get_sample(self, index: int, rng: np.random.Generator) -> PointCloud:
        cloud = self.raw(index)
        return cloud if self.transform is None else self.transform(cloud, rng)

    def __getitem__(self, index: int) -> PointCloud:
        return self.get_sample(index, np.random.default_rng(index))


class HolisticPairDataset(SceneFolders):
    """PointContrast's "holistic" variant: two independently augmented views of one scene.

    Both views come from the same reconstructed scene (the transform should crop, e.g. a random
    :class:`~contrast3d.data.transforms.SphereCrop` with ``sample_rate < 1``, so the views
    differ); matches are nearest neighbours within ``match_radius`` (metres) between the kept
    points' world coordinates (:func:`~contrast3d.data.views.make_view_pair`).
    """

    def __init__(self, scene_dirs: Iterable[str | Path], transform: Transform | None = None,
                 match_radius: float = 0.0375, on_error: str = "skip", keep_raw: bool = True):
        super().__init__(scene_dirs, transform, on_error, keep_raw)
        self.match_radius = match_radius

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:
        raw = self.raw(index)
        pair = make_view_pair(raw, raw, self.transform, rng, self.match_radius,
                              meta={"name": raw.name, "scene": str(self.scene_dirs[index]), "index": int(index)})
        return pair.validate(str(self.scene_dirs[index]))

    def __getitem__(self, index: int) -> MultiView:
        return self.get_sample(index, np.random.default_rng(index))
