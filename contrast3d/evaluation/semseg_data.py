"""Data side of semantic-segmentation fine-tuning: config, train/val scene split, augmentation, dataset.

Train/val scenes (:func:`resolve_scene_split`):

* ``DIR/train/`` and ``DIR/val/`` both exist: their Pointcept scene folders (Pointcept's layout).
* otherwise every scene folder under ``DIR`` (two levels deep), **sorted by path**; the last
  ``ceil(val_fraction * n)`` scenes (at least 1, at most ``n - 1``) are the validation split.
* a single scene: training and validation would be the same scene (``mode: "single"``).

**Train/validation leaks are refused** (:func:`scene_overlap`): a validation scene that is also a
training scene (the same folder name, the same folder behind a link, or byte-identical
``coord.npy``), as with a single scene or a scene copied into both ``train/`` and ``val/``, is a
:class:`~contrast3d.errors.DataError` naming the data folder and the scenes, unless
``allow_overlap`` (``--allow-overlap``, ``data.allow_overlap``): then the overlap is kept in the
split (``overlap``), and the run warns and marks its results (``leak`` / ``warning`` in
``results.json``, a ``WARNING`` line in ``results.txt``).

The split is saved as ``RUN/scene_split.json``.

Training samples (:func:`train_transform`, Pointcept's ScanNet semseg pipeline, colours kept in
[0, 1] as in pre-training): centre shift, random dropout, rotation about z (+ small tilts), scale,
x/y flips, jitter, [elastic distortion], chromatic auto-contrast / translation / jitter,
``GridSample`` train mode, random ``SphereCrop`` cap. Limited-annotation labels are masked before
augmentation (:class:`SemsegDataset`); :class:`LabelledGridSample` keeps a voxel's sparse label
when the randomly sampled point of that voxel is unlabelled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contrast3d.data import transforms as T
from contrast3d.data.scene_dataset import SceneDataset, find_scene_dirs
from contrast3d.data.voxelize import GridSample
from contrast3d.errors import DataError
from contrast3d.evaluation.split_files import read_split_file
from contrast3d.evaluation.splits import LabelBudget, LabelSplit, make_split, split_from_file
from contrast3d.io.pointcept import SEGMENT_FILES
from contrast3d.structures import PointCloud


@dataclass
class SemsegDataConfig:
    """The ``data`` section of semantic-segmentation fine-tuning.

    Attributes:
        grid_size: voxel edge in metres (training and evaluation).
        feat_keys: per-point arrays concatenated into the input (colour + normal = 6 channels, as
            in pre-training).
        max_points: cap on voxels per training sample (random sphere crop; 0 = no cap).
        rotate_z: random rotation about z (p = 0.5, full circle).
        tilt: random rotation about x and y within ``[-tilt, tilt]`` radians (p = 0.5; 0 = off).
        scale: uniform scale range.
        flip: probability of negating x and of negating y.
        jitter: per-point Gaussian noise sigma in metres (clipped at 4 sigma; 0 = off).
        dropout: fraction of points dropped, applied to 20 % of the samples (0 = off).
        elastic: Pointcept's elastic distortion (slow on large scenes).
        color_aug: chromatic auto-contrast, translation and jitter.
        val_fraction: fraction of the scenes used for validation when ``DIR`` has no train/val folders.
        allow_overlap: run even when validation scenes are also training scenes (one scene: an
            overfitting check); the results are marked as leaked (module docstring).
        class_names: names of the classes (default: ScanNet-20 when ``model.num_classes`` is 20).
        cache_scenes: keep the training scenes in memory (off for full ScanNet).
        strict: stop at the first unreadable scene instead of skipping it.
    """

    grid_size: float = 0.02
    feat_keys: list[str] = field(default_factory=lambda: ["color", "normal"])
    max_points: int = 100000
    rotate_z: bool = True
    tilt: float = math.pi / 64
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    flip: float = 0.5
    jitter: float = 0.005
    dropout: float = 0.2
    elastic: bool = False
    color_aug: bool = True
    val_fraction: float = 0.2
    allow_overlap: bool = False
    class_names: list[str] | None = None
    cache_scenes: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        if self.grid_size <= 0:
            raise ValueError(f"data.grid_size must be > 0, got {self.grid_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if len(self.scale) != 2:
            raise ValueError(f"data.scale must be [low, high], got {self.scale}")


# ----------------------------------------------------------------------------- train / val scenes
@dataclass
class SceneSplit:
    """Training and validation scene folders; ``mode`` is ``folders``, ``fraction`` or ``single``;
    ``overlap``: names of the validation scenes that are also training scenes (a leak, kept only
    when allowed)."""

    train: list[Path]
    val: list[Path]
    mode: str
    overlap: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "train": [str(p) for p in self.train], "val": [str(p) for p in self.val],
                "overlap": list(self.overlap)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def leak(self) -> dict | None:
        """``None`` without overlap, else the record results carry: ``overlap`` (scene names), ``count``,
        ``val_scenes``, ``mode`` and a one-line ``warning``."""
        if not self.overlap:
            return None
        return {"overlap": list(self.overlap), "count": len(self.overlap), "val_scenes": len(self.val),
                "mode": self.mode, "warning": leak_warning(self)}


def leak_warning(split: SceneSplit) -> str:
    """The one-line warning of a split whose validation scenes overlap its training scenes."""
    return (f"{len(split.overlap)} of the {len(split.val)} validation scene(s) are also training scenes "
            f"({_names(split.overlap)}; allowed by --allow-overlap): these scores measure fitting, not "
            "generalisation, and must not be compared with held-out results")


def _names(names: list[str], at_most: int = 3) -> str:
    shown = ", ".join(names[:at_most])
    return shown + (f" and {len(names) - at_most} more" if len(names) > at_most else "")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scene_overlap(train: list[Path], val: list[Path]) -> dict[str, str]:
    """Validation scenes that are also training scenes: ``{val scene name: why}``.

    A validation scene overlaps when a training scene has its folder name, is the same folder
    (links resolved) or has a byte-identical ``coord.npy`` (only files of equal size are hashed,
    so this stays cheap on full ScanNet).
    """
    names = {p.name for p in train}
    real = {p.resolve(): p.name for p in train}
    out: dict[str, str] = {}
    for p in val:
        if p.name in names:
            out[p.name] = "same name" if p.resolve() not in real else "same folder"
        elif p.resolve() in real:
            out[p.name] = f"same folder as training scene {real[p.resolve()]}"

    def size(p: Path) -> int:
        try:
            return (p / "coord.npy").stat().st_size
        except OSError:
            return -1

    by_size: dict[int, list[Path]] = {}
    for p in train:
        by_size.setdefault(size(p), []).append(p)
    by_size.pop(-1, None)
    digests: dict[Path, str] = {}

    def digest(p: Path) -> str:
        if p not in digests:
            digests[p] = _digest(p / "coord.npy")
        return digests[p]

    for p in val:
        same = by_size.get(size(p), [])
        if p.name in out or not same:
            continue
        twin = next((t for t in same if digest(t) == digest(p)), None)
        if twin is not None:
            out[p.name] = f"same coord.npy as training scene {twin.name}"
    return out


def resolve_scene_split(root: str | Path, val_fraction: float = 0.2, allow_overlap: bool = False,
                        allow_flag: str | None = "--allow-overlap") -> SceneSplit:
    """Train/val scene folders of ``root`` (see the module docstring).

    :class:`DataError` naming ``root`` when there are no scenes, or when validation scenes are also
    training scenes and not ``allow_overlap`` (the message offers ``allow_flag`` when there is one).
    """
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        parts = {}
        for name in ("train", "val"):
            parts[name] = find_scene_dirs(root / name, "coord.npy")
            if not parts[name]:
                raise DataError(root / name, "no Pointcept scene folders (coord.npy) found")
        split = SceneSplit(parts["train"], parts["val"], "folders")
    else:
        scenes = find_scene_dirs(root, "coord.npy")
        if not scenes:
            raise DataError(root, "no Pointcept scene folders (coord.npy) found; run 'contrast3d convert' or "
                                  "'contrast3d simulate' first")
        if len(scenes) == 1:
            split = SceneSplit(scenes, scenes, "single", [scenes[0].name])
        else:
            n_val = min(len(scenes) - 1, max(1, math.ceil(val_fraction * len(scenes))))
            split = SceneSplit(scenes[:-n_val], scenes[-n_val:], "fraction")
    if split.mode != "single":
        found = scene_overlap(split.train, split.val)
        split.overlap = sorted(found)
    else:
        found = {split.overlap[0]: "the only scene"}
    if split.overlap and not allow_overlap:
        raise DataError(root, _refusal(split, found, allow_flag, val_fraction))
    return split


def _refusal(split: SceneSplit, found: dict[str, str], allow_flag: str | None, val_fraction: float) -> str:
    allow = f", or pass {allow_flag} to run anyway (results are then marked as leaked)" if allow_flag else ""
    if split.mode == "single":
        return (f"only one scene ({split.overlap[0]}): it would be both the training and the validation scene, "
                f"a train/validation leak; give more scenes (the last {100 * val_fraction:g} % by name are held "
                f"out) or a train/ + val/ layout{allow}")
    shown = "; ".join(f"{n} ({found[n]})" for n in split.overlap[:3])
    more = f" and {len(split.overlap) - 3} more" if len(split.overlap) > 3 else ""
    return (f"{len(split.overlap)} validation scene(s) are also training scenes: {shown}{more}, a "
            f"train/validation leak; remove them from {'train/' if split.mode == 'folders' else 'the training scenes'}"
            f" or rename the copies (every scene once){allow}")


# ----------------------------------------------------------------------------- augmentation
@dataclass
class LabelledGridSample:
    """``GridSample`` train mode that does not lose sparse labels.

    A voxel whose randomly kept point is unlabelled (``-1``) takes the label of a labelled point
    of the same voxel, if it has one (limited annotations: few labelled points per scene).
    """

    grid_size: float = 0.02

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        out = GridSample(self.grid_size, mode="train")(cloud, rng)
        assert isinstance(out, PointCloud)  # train mode returns one cloud
        if cloud.segment is None:
            return out
        assert out.segment is not None  # the sampled points keep the input's labels
        labelled = cloud.segment >= 0
        voxel_label = np.full(len(out), -1, np.int64)
        voxel_label[out.meta["inverse"][labelled]] = cloud.segment[labelled]
        out.segment = np.where(out.segment >= 0, out.segment, voxel_label)
        return out


def train_transform(cfg: SemsegDataConfig, sparse_labels: bool = False) -> T.Compose:
    """The augmentation + voxelisation pipeline of one training sample (module docstring)."""
    steps: list = [T.CenterShift(apply_z=True)]
    if cfg.dropout > 0:
        steps.append(T.RandomDropout(dropout_ratio=cfg.dropout, dropout_application_ratio=0.2))
    if cfg.rotate_z:
        steps.append(T.RandomRotate(angle=(-math.pi, math.pi), axis="z", center=(0, 0, 0), p=0.5))
    if cfg.tilt > 0:
        steps += [T.RandomRotate(angle=(-cfg.tilt, cfg.tilt), axis=a, center=(0, 0, 0), p=0.5) for a in "xy"]
    if tuple(cfg.scale) != (1.0, 1.0):
        steps.append(T.RandomScale(tuple(cfg.scale)))
    if cfg.flip > 0:
        steps.append(T.RandomFlip(p=cfg.flip, axes="xy"))
    if cfg.jitter > 0:
        steps.append(T.RandomJitter(sigma=cfg.jitter, clip=4 * cfg.jitter))
    if cfg.elastic:
        steps.append(T.ElasticDistortion())
    if cfg.color_aug:
        steps += [T.ChromaticAutoContrast(p=0.2), T.ChromaticTranslation(p=0.95, ratio=0.05),
                  T.ChromaticJitter(p=0.95, std=0.05)]
    steps.append(LabelledGridSample(cfg.grid_size) if sparse_labels else GridSample(cfg.grid_size, mode="train"))
    if cfg.max_points > 0:
        steps.append(T.SphereCrop(point_max=cfg.max_points, mode="random"))
    return T.Compose(steps)


# ----------------------------------------------------------------------------- dataset
class SemsegDataset(SceneDataset):
    """Labelled training scenes under a :class:`LabelSplit` (scenes kept, labelled points).

    Build it over every training scene, choose the split (:meth:`make_label_split`, which may
    need the labels), then :meth:`apply_split`. Scene names (folder names) must be unique.
    """

    def __init__(self, scene_dirs: Iterable[str | Path], transform=None, on_error: str = "skip",
                 keep_raw: bool = True):
        super().__init__(scene_dirs, transform, on_error, keep_raw)
        self._drop_unlabelled(on_error)
        self.split: LabelSplit | None = None
        names = [d.name for d in self.scene_dirs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(self.scene_dirs[names.index(dup[0])],
                            f"scene folder names must be unique, {len(dup)} repeated (e.g. '{dup[0]}')")

    def _drop_unlabelled(self, on_error: str) -> None:
        """Leave out (``skip``: warned, listed in ``skipped``) or refuse (``raise``) scenes without a
        label file; :class:`DataError` when no scene has one."""
        import warnings

        def labelled(d: Path) -> bool:
            return any((d / f"{name}.npy").is_file() for name in SEGMENT_FILES)

        keep = [i for i, d in enumerate(self.scene_dirs) if labelled(d)]
        if len(keep) == len(self.scene_dirs):
            return
        bad = [DataError(d, "no segment20.npy / segment.npy: semantic labels are needed for fine-tuning")
               for d in self.scene_dirs if not labelled(d)]
        if on_error == "raise" or not keep:
            extra = "" if keep else f" (none of the {len(self.scene_dirs)} training scenes has labels)"
            raise DataError(bad[0].source, bad[0].reason + extra)
        for err in bad:
            warnings.warn(f"skipping scene: {err}", stacklevel=3)
        self.skipped += bad
        self._cache = {j: self._cache[i] for j, i in enumerate(keep) if i in self._cache}
        self.scene_dirs = [self.scene_dirs[i] for i in keep]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.scene_dirs]

    def labels(self, index: int) -> np.ndarray:
        """The scene's full semantic labels; :class:`DataError` when it has none."""
        cloud = self.raw(index)
        if cloud.segment is None:
            raise DataError(self.scene_dirs[index], "no segment20.npy / segment.npy: semantic labels are "
                                                    "needed for fine-tuning")
        return cloud.segment

    def make_label_split(self, budget: LabelBudget, seed: int, val_names: Iterable[str] = ()) -> LabelSplit:
        """The scenes / labelled points of ``budget`` chosen by ``seed`` (:func:`make_split`), or read
        from its split file (:func:`split_from_file`; ``val_names`` name leaked scenes in its errors)."""
        if budget.kind == "file":
            table = read_split_file(budget.path)
            counts = {n: len(self.labels(i)) for i, n in enumerate(self.names)} if table.kind == "points" else None
            return split_from_file(table, self.names, counts, seed, val_names, str(budget))
        segments = ({n: self.labels(i) for i, n in enumerate(self.names)} if budget.kind == "points" else None)
        coords = ({n: self.raw(i).coord for i, n in enumerate(self.names)}
                  if budget.kind == "points" and budget.selection == "kmeans" else None)
        return make_split(budget, self.names, segments, seed, coords=coords)

    def apply_split(self, split: LabelSplit) -> None:
        """Keep only ``split.scenes`` and mask labels to ``split.points`` from now on."""
        keep = set(split.scenes)
        unknown = keep - set(self.names)
        if unknown:
            raise DataError(min(unknown), "label split names a scene that is not among the training scenes")
        picked = [i for i, n in enumerate(self.names) if n in keep]
        self._cache = {j: self._cache[i] for j, i in enumerate(picked) if i in self._cache}
        self.scene_dirs = [self.scene_dirs[i] for i in picked]
        self.split = split

    def get_sample(self, index: int, rng: np.random.Generator) -> PointCloud:
        cloud = self.raw(index)
        segment = self.labels(index)
        if self.split is not None:
            segment = self.split.mask_labels(cloud.name, segment)
        cloud = dataclasses.replace(cloud, segment=segment, extra=dict(cloud.extra), meta=dict(cloud.meta))
        return cloud if self.transform is None else self.transform(cloud, rng)
