"""Semantic-segmentation evaluation: whole-scene predictions for every original point, dataset scores.

A scene is centred like the training samples (``CenterShift``, so the voxel grid falls the same way)
and voxelised deterministically with ``GridSample`` test mode: fragment ``k`` holds the
``(k mod c)``-th point of every voxel (``c`` points in it), so the fragments share the voxel order.
The softmax of each fragment's logits is summed per voxel over the first ``max_fragments``
fragments (0 = all, Pointcept's test-time voting), the voxel's arg-max is its prediction, and
``meta["inverse"]`` maps it back to **every** original point. The confusion matrix is summed over
the dataset before mIoU / mAcc / allAcc are computed (:mod:`contrast3d.evaluation.metrics`).
With ``progress`` the scene loop shows :func:`~contrast3d.engine.logging.progress` (a bar on a
terminal, plain ``evaluating: 3/12 scenes  40 s`` lines otherwise).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contrast3d.data.transforms import CenterShift
from contrast3d.data.voxelize import GridSample
from contrast3d.engine.logging import progress as show_progress
from contrast3d.errors import DataError
from contrast3d.evaluation.metrics import SegmentationScores, confusion_matrix, segmentation_scores
from contrast3d.io.labels import SCANNET20_CLASSES
from contrast3d.structures import PointCloud, collate_points


def default_class_names(num_classes: int, names: Sequence[str] | None = None) -> list[str]:
    """``names`` if given (must have ``num_classes`` entries), else ScanNet-20 for 20 classes, else ``class<i>``."""
    if names:
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        return list(names)
    if num_classes == len(SCANNET20_CLASSES):
        return list(SCANNET20_CLASSES)
    return [f"class{i}" for i in range(num_classes)]


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_scene(model: nn.Module, cloud: PointCloud, *, grid_size: float,
                  feat_keys: Sequence[str] = ("color", "normal"), max_fragments: int = 0,
                  device: torch.device | str | None = None) -> np.ndarray:
    """``(N,)`` int64 class of every point of ``cloud`` (``N = len(cloud)``), from ``model``'s logits.

    ``model`` maps a :class:`~contrast3d.structures.PointBatch` to ``(M, K)`` logits (a SpUNet
    with its classification layer). The caller sets ``model.eval()``.
    """
    device = torch.device(device) if device is not None else _device_of(model)
    centred = CenterShift(apply_z=True)(cloud)  # deterministic: no rng needed
    fragments = GridSample(grid_size, mode="test").fragments(centred)
    if max_fragments > 0:
        fragments = fragments[:max_fragments]
    votes: torch.Tensor | None = None
    for frag in fragments:
        batch = collate_points([frag], feat_keys).to(device)
        probs = torch.softmax(model(batch).float(), dim=1)
        votes = probs if votes is None else votes + probs
    assert votes is not None
    voxel_pred = votes.argmax(dim=1).cpu().numpy()
    return voxel_pred[fragments[0].meta["inverse"]].astype(np.int64)


def evaluate_semseg(model: nn.Module, scenes: Iterable[PointCloud], *, num_classes: int, grid_size: float,
                    feat_keys: Sequence[str] = ("color", "normal"), max_fragments: int = 0,
                    class_names: Sequence[str] | None = None, device: torch.device | str | None = None,
                    predictions: dict[str, np.ndarray] | None = None, progress: bool = False,
                    run_dir: str | Path | None = None, desc: str = "evaluating") -> SegmentationScores:
    """Scores of ``model`` over ``scenes`` (a list of clouds, or a ``SceneDataset`` via :func:`raw_scenes`).

    Every scene must carry ``segment`` (``-1`` = ignore). The model's training mode is restored
    afterwards. ``predictions``, when given, receives each scene's per-point predictions by name.
    ``progress``: show the scene loop's progress (``desc``; plain lines also go to
    ``run_dir/train.log`` when ``run_dir`` is given); off, nothing is printed.
    """
    was_training = model.training
    model.eval()
    conf = np.zeros((num_classes, num_classes), np.int64)
    try:
        for cloud in show_progress(scenes, desc=desc, unit="scenes", enabled=progress, run_dir=run_dir):
            source = cloud.meta.get("path") or cloud.name or "<scene>"
            if cloud.segment is None:
                raise DataError(source, "no semantic labels (segment20.npy / segment.npy) to evaluate against")
            pred = predict_scene(model, cloud, grid_size=grid_size, feat_keys=feat_keys,
                                 max_fragments=max_fragments, device=device)
            try:
                conf += confusion_matrix(pred, cloud.segment, num_classes)
            except ValueError as err:
                raise DataError(source, f"{err} (model.num_classes={num_classes})") from None
            if predictions is not None:
                predictions[cloud.name] = pred
    finally:
        model.train(was_training)
    return segmentation_scores(conf, default_class_names(num_classes, class_names))


class RawScenes:
    """The un-augmented scenes of a dataset with ``raw(i)``, read one at a time; sized (``len``), so a
    progress display knows the total. Each ``iter()`` reads the scenes again."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[PointCloud]:
        for i in range(len(self.dataset)):
            yield self.dataset.raw(i)


def raw_scenes(dataset: Any) -> RawScenes:
    """The un-augmented scenes of a :class:`~contrast3d.data.scene_dataset.SceneDataset`, one at a time
    (a sized iterable: ``len(raw_scenes(ds)) == len(ds)``)."""
    return RawScenes(dataset)


def write_results(run_dir: str | Path, results: dict[str, Any], scores: SegmentationScores) -> tuple[Path, Path]:
    """``results.json`` (``results``) and the per-class table ``results.txt`` in ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, txt_path = run_dir / "results.json", run_dir / "results.txt"
    tmp = json_path.with_name(".results.json.tmp")
    tmp.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, json_path)
    header = (f"semantic segmentation, {results.get('val_scenes', '?')} validation scenes, "
              f"init {results.get('init')}, labels {results.get('label_budget')}, seed {results.get('seed')}, "
              f"{results.get('steps')} steps")
    txt_path.write_text(header + "\n" + scores.table() + "\n")
    return json_path, txt_path


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/Inf floats replaced by ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
