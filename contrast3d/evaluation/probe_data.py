"""Labelled probe batches from Pointcept scenes, the ``contrast3d probe`` job, and the probe hook
of the pre-training loop (``contrast3d pretrain --probe-data DIR --probe-every K``).

The probes fit their classifiers on the training scenes and score the validation scenes of
:func:`~contrast3d.evaluation.semseg_data.resolve_scene_split`, so a validation scene that is also
a training scene (one scene only, or a copy in both ``train/`` and ``val/``) is refused as for
fine-tuning; :func:`probe_backbone` and :func:`build_probe` take ``allow_overlap`` for an
explicit overfitting check, whose result then carries a ``warning`` (the pre-training hook never
allows it). The probes' feature pass shows its progress only when asked (``progress``; off by default,
so a caller printing JSON or a quiet benchmark stays quiet)."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.data.voxelize import GridSample
from contrast3d.errors import DataError
from contrast3d.evaluation.probes import ProbeCallback
from contrast3d.evaluation.semseg_data import SceneSplit, resolve_scene_split
from contrast3d.io.pointcept import read_pointcept_scene
from contrast3d.structures import PointBatch, collate_points


def scene_batches(scene_dirs: Sequence[Path], grid_size: float, feat_keys: Sequence[str],
                  seed: int = 0, num_classes: int | None = None) -> list[PointBatch]:
    """One voxelised, labelled single-scene :class:`PointBatch` per scene.

    Probes score voxels (one seeded point per voxel), not every original point: that keeps a
    probe cheap enough to run inside the pre-training loop. A scene without semantic labels, or
    with a label outside ``0 .. num_classes - 1`` (``-1`` = ignore), is a :class:`DataError`.
    """
    batches = []
    for i, d in enumerate(scene_dirs):
        cloud = read_pointcept_scene(d)
        if cloud.segment is None:
            raise DataError(d, "no semantic labels (segment20.npy or segment.npy): the probes need labelled scenes")
        top = int(cloud.segment.max())
        if num_classes is not None and top >= num_classes:
            raise DataError(d, f"label {top} does not fit --num-classes {num_classes} (labels must be in "
                               f"0..{num_classes - 1}, -1 = ignore)")
        vox = GridSample(grid_size, mode="train").sample(cloud, np.random.default_rng([seed, i]))
        vox.meta.pop("inverse", None)
        batches.append(collate_points([vox], tuple(feat_keys)))
    return batches


def build_probe(data_dir: str | Path, grid_size: float, feat_keys: Sequence[str], num_classes: int = 20,
                every: int = 0, max_scenes: int = 8, seed: int = 0, max_train_points: int = 20_000,
                prefix: str = "probe/", allow_overlap: bool = False, progress: bool = False) -> ProbeCallback:
    """A :class:`ProbeCallback` on ``data_dir``'s train/val scenes (at most ``max_scenes`` each,
    ``max_train_points`` seeded training voxels for the classifiers); overlapping train/val scenes
    are a :class:`DataError` unless ``allow_overlap``; ``progress``: see :class:`ProbeCallback`."""
    if num_classes < 1 or max_scenes < 1:
        raise DataError("probe", f"num_classes ({num_classes}) and max_scenes ({max_scenes}) must be >= 1")
    split = _probe_split(data_dir, allow_overlap)
    return ProbeCallback(scene_batches(split.train[:max_scenes], grid_size, feat_keys, seed, num_classes),
                         scene_batches(split.val[:max_scenes], grid_size, feat_keys, seed + 1, num_classes),
                         num_classes, every, seed=seed, max_train_points=max_train_points, prefix=prefix,
                         progress=progress)


def _probe_split(data_dir: str | Path, allow_overlap: bool, allow_flag: str | None = None) -> SceneSplit:
    # the flag to offer: `contrast3d probe --allow-overlap`; pretrain --probe-data has none
    return resolve_scene_split(data_dir, allow_overlap=allow_overlap, allow_flag=allow_flag)


def probe_backbone(init: str | Path, data_dir: str | Path, num_classes: int = 20, max_scenes: int = 8,
                   grid_size: float | None = None, seed: int = 0, lenient: bool = False,
                   allow_overlap: bool = False, progress: bool = False) -> dict[str, Any]:
    """Linear and kNN probe mIoU plus collapse statistics of saved weights (any file
    :func:`~contrast3d.models.pretrained.load_pretrained` reads), fed as its record says.

    Overlapping train/val scenes are a :class:`DataError` unless ``allow_overlap``; then the result
    has ``warning`` (a string) and ``leak_scenes`` (how many validation scenes are training scenes).
    ``progress``: show the feature pass (plain lines go to stdout when it is no terminal).
    """
    from contrast3d.models.pretrained import load_pretrained

    split = _probe_split(data_dir, allow_overlap, "--allow-overlap")  # a leak fails before the weights are read
    pre = load_pretrained(init, lenient=lenient)
    grid = grid_size or pre.record.grid_size
    if not grid:
        raise DataError(init, "the weights record no grid_size; pass --grid-size")
    probe = build_probe(data_dir, grid, pre.record.feat_keys, num_classes, max_scenes=max_scenes, seed=seed,
                        allow_overlap=allow_overlap, progress=progress)
    result: dict[str, Any] = {"init": str(init), **probe.evaluate(pre.model)}
    leak = split.leak()
    if leak:
        print(f"WARNING: train/validation leak: {leak['warning']}", file=sys.stderr, flush=True)
        result.update(warning=f"train/validation leak: {leak['warning']}", leak_scenes=leak["count"])
    return result


def pretrain_probe_hook(data_dir: str | Path, every: int, num_classes: int = 20, progress: bool = False):
    """The engine's periodic callback running the probes on the objective's backbone every ``every``
    steps; voxel size and input features come from the backbone's export record. ``progress`` (pass
    the run's ``cfg.progress``): show the feature pass on rank 0."""
    from contrast3d.engine.trainer import PeriodicCallback

    _probe_split(data_dir, allow_overlap=False)  # a bad folder or a train/val leak fails now, not at step K
    probes: list[ProbeCallback] = []

    def run(ctx) -> dict[str, float]:
        if not probes:
            record = ctx.method.exports()["backbone"].record
            probes.append(build_probe(data_dir, record["grid_size"], record["feat_keys"], num_classes,
                                      every=every, prefix=""))
        probes[0].progress = progress and ctx.dist.is_main
        return probes[0].evaluate(ctx.method.backbone())

    return PeriodicCallback(every, run, "probe")  # logged probe/<key>
