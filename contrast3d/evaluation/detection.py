"""3D detection inference and evaluation: boxes from a :class:`~contrast3d.evaluation.det_model.VoteNetNet`,
NMS, and VoteNet's mAP@0.25 / mAP@0.5.

Per scene (:func:`predict_boxes`): centre it like the training samples (``CenterShift``), voxelise it
deterministically (``GridSample`` test mode, fragment 0: one point per voxel; no voting over
fragments -- the proposals of two voxelisations cannot be averaged), run the network and decode
(:func:`decode_proposals`): centre ``= cluster centre + offset``, size ``= mean_size[c] + r_c *
mean_size[c]`` for the arg-max size cluster ``c`` (VoteNet), objectness probability and class
probabilities (softmax). Then, as VoteNet's ScanNet evaluation (:func:`select_boxes`):

* greedy axis-aligned NMS among proposals of the same arg-max class (classes in ``ignore_classes``
  excluded from the arg-max), IoU ``> 0.25`` suppresses, ordered by objectness;
* proposals with objectness ``<= conf_threshold`` (0.05) are dropped;
* ``per_class_proposal``: every kept proposal is a box of every non-ignored class with score
  ``objectness * p(class)``; otherwise one box of its arg-max class scored by objectness.

Deviation: VoteNet also drops boxes containing no input point (``remove_empty_box``, off in its
training-time evaluation); we do not. Boxes are returned in the scene's original coordinates.
Ground truth: :func:`~contrast3d.evaluation.detection_metrics.boxes_from_instances` on every
original point (wall/floor instances not counted); mAP by
:class:`~contrast3d.evaluation.detection_metrics.DetectionEvaluator`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from contrast3d.data.transforms import CenterShift
from contrast3d.data.voxelize import GridSample
from contrast3d.evaluation.detection_metrics import (
    DetectionEvaluator,
    DetectionScores,
    boxes_from_instances,
    nms_3d,
)
from contrast3d.evaluation.instance_metrics import InstanceEvalConfig, require_instance_labels
from contrast3d.evaluation.semseg import _device_of, default_class_names
from contrast3d.structures import PointCloud, collate_points

__all__ = ["BoxSelection", "SceneBoxes", "decode_proposals", "select_boxes", "predict_boxes", "evaluate_det",
           "detection_table"]


@dataclass
class BoxSelection:
    """Post-processing settings (VoteNet's ScanNet evaluation)."""

    nms_iou: float = 0.25
    conf_threshold: float = 0.05
    per_class_proposal: bool = True
    ignore_classes: tuple[int, ...] = (0, 1)


@dataclass
class SceneBoxes:
    """Detections of one scene: ``boxes`` ``(D, 6)`` ``(cx, cy, cz, dx, dy, dz)`` metres (original
    frame), ``classes`` ``(D,)`` int64, ``scores`` ``(D,)`` float64."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def decode_proposals(out: dict[str, torch.Tensor], mean_size: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(centre (P, 3), size (P, 3), objectness prob (P,), class probs (P, K))`` of a head output."""
    size_cls = out["size_scores"].argmax(dim=1)
    ms = mean_size.float()[size_cls]
    res = out["size_residuals_normalized"].float()[torch.arange(size_cls.numel(), device=size_cls.device), size_cls]
    size = (ms + res * ms).clamp(min=1e-3)
    obj = torch.softmax(out["objectness"].float(), dim=1)[:, 1]
    sem = torch.softmax(out["sem_scores"].float(), dim=1)
    return out["center"].float(), size, obj, sem


def select_boxes(center, size, objectness, sem_prob, cfg: BoxSelection | None = None) -> SceneBoxes:
    """NMS, confidence filter and per-class expansion of one scene's proposals (module docstring).

    Args:
        center, size: ``(P, 3)`` metres (numpy or torch).
        objectness: ``(P,)`` probability of being an object.
        sem_prob: ``(P, K)`` class probabilities.
    """
    cfg = cfg or BoxSelection()
    c, s, o, p = (np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
                  for x in (center, size, objectness, sem_prob))
    k = p.shape[1]
    allowed = np.setdiff1d(np.arange(k), np.asarray(cfg.ignore_classes, dtype=np.int64))
    if c.shape[0] == 0 or allowed.size == 0:
        return SceneBoxes(np.zeros((0, 6)), np.zeros(0, np.int64), np.zeros(0))
    boxes = np.concatenate([c, s], axis=1)
    label = allowed[p[:, allowed].argmax(1)]
    kept = np.asarray(nms_3d(boxes, o, cfg.nms_iou, classes=label), dtype=np.int64)
    kept = kept[o[kept] > cfg.conf_threshold]
    if not cfg.per_class_proposal:
        return SceneBoxes(boxes[kept], label[kept], o[kept])
    n = kept.size
    return SceneBoxes(np.repeat(boxes[kept], allowed.size, axis=0), np.tile(allowed, n),
                      (o[kept, None] * p[kept][:, allowed]).reshape(-1))


def _attr(obj: object, name: str) -> Any:
    """``obj.name`` for duck-typed networks (a :class:`VoteNetNet` or a test double)."""
    return getattr(obj, name)


@torch.no_grad()
def predict_boxes(model: nn.Module, cloud: PointCloud, *, feat_keys: Sequence[str] = ("color", "normal"),
                  grid_size: float | None = None, selection: BoxSelection | None = None,
                  device: torch.device | str | None = None) -> SceneBoxes:
    """Detections in ``cloud`` (original coordinates) by a :class:`VoteNetNet` (``model.eval()`` set by the caller).

    ``grid_size`` defaults to ``model.grid_size`` (the voxel size the head was trained with).
    """
    grid = float(grid_size if grid_size is not None else _attr(model, "grid_size"))
    device = torch.device(device) if device is not None else _device_of(model)
    centred = CenterShift(apply_z=True)(cloud)
    shift = cloud.coord[0].astype(np.float64) - centred.coord[0].astype(np.float64)
    frag = GridSample(grid, mode="test").fragments(centred)[0]
    out = model(collate_points([frag], feat_keys).to(device))
    mean_size: torch.Tensor = _attr(_attr(model, "head"), "mean_size")
    center, size, obj, sem = decode_proposals(out, mean_size)
    found = select_boxes(center, size, obj, sem, selection)
    found.boxes[:, :3] += shift
    return found


def evaluate_det(model: nn.Module, scenes: Iterable[PointCloud], *, num_classes: int,
                 feat_keys: Sequence[str] = ("color", "normal"), grid_size: float | None = None,
                 selection: BoxSelection | None = None, class_names: Sequence[str] | None = None,
                 device: torch.device | str | None = None, predictions: dict[str, SceneBoxes] | None = None
                 ) -> DetectionScores:
    """mAP@0.25 / mAP@0.5 of ``model`` over ``scenes`` (each with ``segment`` and ``instance``).

    The model's training mode is restored afterwards; ``predictions`` receives each scene's
    :class:`SceneBoxes` by name.
    """
    selection = selection or BoxSelection()
    gt_cfg = InstanceEvalConfig(num_classes=num_classes, ignore_classes=tuple(selection.ignore_classes))
    evaluator = DetectionEvaluator(num_classes, tuple(selection.ignore_classes), (0.25, 0.5),
                                   default_class_names(num_classes, class_names))
    was_training = model.training
    model.eval()
    try:
        for cloud in scenes:
            segment, instance = require_instance_labels(cloud)
            found = predict_boxes(model, cloud, feat_keys=feat_keys, grid_size=grid_size, selection=selection,
                                  device=device)
            gt_boxes, gt_classes, _ = boxes_from_instances(cloud.coord, segment, instance, gt_cfg)
            evaluator.add_scene(found.boxes, found.classes, found.scores, gt_boxes, gt_classes)
            if predictions is not None:
                predictions[cloud.name] = found
    finally:
        model.train(was_training)
    return evaluator.compute()


def detection_table(scores: DetectionScores) -> str:
    """Per-class AP (%) at each IoU threshold and the means, as plain text."""
    names = scores.class_names or [str(i) for i in range(scores.ap.shape[0])]
    width = max(12, *(len(n) for n in names))
    heads = "  ".join(f"{'AP@' + format(t, 'g'):>8}" for t in scores.thresholds)
    lines = [f"{'class':<{width}}  {heads}"]

    def pct(x: float) -> str:
        return f"{'-':>8}" if np.isnan(x) else f"{100 * x:8.2f}"

    for i, name in enumerate(names):
        if not np.isnan(scores.ap[i]).all():
            lines.append(f"{name:<{width}}  " + "  ".join(pct(a) for a in scores.ap[i]))
    lines.append(f"{'mean':<{width}}  " + "  ".join(pct(m) for m in scores.map))
    return "\n".join(lines)
