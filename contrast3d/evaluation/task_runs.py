"""Reload a finished ``contrast3d finetune insseg`` / ``finetune det`` run and predict one scene exactly as
its final evaluation does.

A run folder (:mod:`~contrast3d.evaluation.finetune_tasks`) holds ``config.yaml`` and the fine-tuned
network: ``backbone.safetensors`` + ``insseg_heads.safetensors`` (instance segmentation) or
``det_head.safetensors`` (detection). :func:`load_task_run` finds which task the folder is
(:func:`run_task`: the head file, else ``method_name`` of ``config.yaml``), rebuilds the network with
:func:`~contrast3d.evaluation.insseg_model.load_insseg` / :func:`~contrast3d.evaluation.det_model.load_det`
and resolves the run's own config (no presets: ``config.yaml`` is the whole config).

Prediction goes through the functions the final evaluation calls, with the settings it derives from
the config (:func:`~contrast3d.evaluation.finetune_tasks.cluster_config`,
:func:`~contrast3d.evaluation.finetune_tasks.box_selection`, ``method.eval_fragments``, ``data.grid_size``,
``data.feat_keys``):

* :func:`predict_run_instances`: :func:`~contrast3d.evaluation.insseg.predict_instances`; the
  proposals (over every original point) are those ``evaluate_insseg`` hands to the AP evaluator, and
  ``evaluated`` marks the ones it scores (at least ``method.min_region_size`` points, a class in
  ``[0, K)`` that is not ignored). The per-point ``instance`` id is the highest-scoring evaluated
  proposal containing the point (:meth:`~contrast3d.evaluation.clustering.ClusterResult.instance_ids`;
  proposals overlap only with ``method.dual``), ``-1`` for none.
* :func:`predict_run_boxes`: :func:`~contrast3d.evaluation.detection.predict_boxes` (same NMS,
  confidence threshold and per-class expansion), the boxes in the scene's original frame.

Ground truth as the evaluation derives it: :func:`gt_instances` (thing instances by
:func:`~contrast3d.evaluation.instance_metrics.ground_truth_instances`; wall/floor and unlabelled
instances are ``-1``) and :func:`gt_boxes` (:func:`~contrast3d.evaluation.detection_metrics.boxes_from_instances`
with ``evaluate_det``'s settings). No picture is drawn here (see :mod:`contrast3d.viz.instances`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from contrast3d.config import load_yaml
from contrast3d.engine.config import TrainConfig
from contrast3d.errors import DataError
from contrast3d.evaluation.clustering import ClusterResult
from contrast3d.evaluation.det_model import HEAD_EXPORT, load_det
from contrast3d.evaluation.detection import SceneBoxes, predict_boxes
from contrast3d.evaluation.detection_metrics import boxes_from_instances
from contrast3d.evaluation.finetune_tasks import TASKS, box_selection, cluster_config, load_task_config
from contrast3d.evaluation.insseg import predict_instances
from contrast3d.evaluation.insseg_model import HEADS_EXPORT, load_insseg
from contrast3d.evaluation.instance_metrics import InstanceEvalConfig, ground_truth_instances, require_instance_labels
from contrast3d.evaluation.semseg import default_class_names
from contrast3d.structures import PointCloud

__all__ = ["TaskRun", "Box", "InstancePrediction", "run_task", "load_task_run", "predict_run_instances",
           "predict_run_boxes", "box_list", "gt_instances", "gt_boxes"]

#: The head export that marks each task's run folder.
HEAD_FILES = {"insseg": f"{HEADS_EXPORT}.safetensors", "det": f"{HEAD_EXPORT}.safetensors"}


@dataclass
class TaskRun:
    """A finished insseg / det run: its network (``eval()``, on ``device``) and resolved config."""

    run_dir: Path
    task: str
    cfg: TrainConfig
    net: nn.Module
    device: torch.device

    @property
    def num_classes(self) -> int:
        return int(self.cfg.model.num_classes)

    @property
    def ignore_classes(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.cfg.method.ignore_classes)

    @property
    def class_names(self) -> list[str]:
        """The configured names, else the defaults (ScanNet-20 / ``class<i>``)."""
        try:
            return default_class_names(self.num_classes, self.cfg.data.class_names)
        except ValueError:
            return default_class_names(self.num_classes)

    def eval_config(self) -> InstanceEvalConfig:
        """The ground-truth conventions of the run's evaluation (``min_region_size``: insseg only)."""
        cfg = InstanceEvalConfig(num_classes=self.num_classes, ignore_classes=self.ignore_classes)
        if self.task == "insseg":
            cfg.min_region_size = int(self.cfg.method.min_region_size)
        return cfg


class Box(NamedTuple):
    """One axis-aligned detection: ``centre`` / ``size`` ``(3,)`` metres, class id, score."""

    centre: np.ndarray
    size: np.ndarray
    cls: int
    score: float


@dataclass
class InstancePrediction:
    """Instances of one scene as the final evaluation computes them (module docstring).

    Attributes:
        instance: ``(N,)`` int64 proposal index of every point (``-1`` = none; evaluated proposals only).
        classes, scores, sizes: ``(K,)`` class id, confidence and point count of every proposal.
        evaluated: ``(K,)`` bool, the proposals the AP evaluator scores.
        semantic: ``(N,)`` int64 semantic-head class of every point.
        proposals: the point-level :class:`ClusterResult` handed to the AP evaluator.
    """

    instance: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    sizes: np.ndarray
    evaluated: np.ndarray
    semantic: np.ndarray
    proposals: ClusterResult

    def point_class(self) -> np.ndarray:
        """``(N,)`` int64 class of each point's instance (``-1`` = none)."""
        return np.where(self.instance >= 0, self.classes[np.maximum(self.instance, 0)], -1).astype(np.int64) \
            if len(self.classes) else np.full(len(self.instance), -1, np.int64)

    def point_score(self) -> np.ndarray:
        """``(N,)`` float64 score of each point's instance (``NaN`` = none)."""
        if not len(self.scores):
            return np.full(len(self.instance), np.nan)
        return np.where(self.instance >= 0, self.scores[np.maximum(self.instance, 0)], np.nan)


# ----------------------------------------------------------------------------- loading
def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        from contrast3d.engine.distributed import resolve_device

        return resolve_device("auto")
    return torch.device(device)


def run_task(run: str | Path) -> str:
    """``"insseg"`` or ``"det"``: the task of a run folder; :class:`DataError` naming it for anything else."""
    run = Path(run)
    if not run.is_dir():
        raise DataError(run, "run folder not found (expected the --out folder of 'contrast3d finetune insseg' "
                             "or 'finetune det')")
    found = [task for task, name in HEAD_FILES.items() if (run / name).is_file()]
    if len(found) == 1:
        return found[0]
    config = run / "config.yaml"
    try:
        method = str(load_yaml(config).get("method_name") or "") if config.is_file() else ""
    except (DataError, AttributeError):
        method = ""
    if len(found) > 1:
        if method in found:
            return method
        raise DataError(run, f"holds both {HEAD_FILES['insseg']} and {HEAD_FILES['det']} and config.yaml "
                             f"does not say which task it is")
    if method in HEAD_FILES:
        raise DataError(run / HEAD_FILES[method], f"missing: the '{method}' run exported no fine-tuned head "
                                                  f"(unfinished run?)")
    what = f"a '{method}' run" if method else "not a fine-tuning run folder"
    raise DataError(run, f"{what}; expected a finished 'contrast3d finetune insseg' or 'finetune det' run "
                         f"({HEAD_FILES['insseg']} or {HEAD_FILES['det']} next to backbone.safetensors)")


def load_task_run(run: str | Path, device: str | torch.device = "cpu") -> TaskRun:
    """Rebuild a finished insseg / det run (module docstring); :class:`DataError` names the file at fault."""
    run = Path(run)
    task = run_task(run)
    config = run / "config.yaml"
    if not config.is_file():
        raise DataError(config, "missing: the run's config (voxel size, input features, clustering / box "
                                "selection) is needed next to the weights")
    cfg = load_task_config(task, files=[config], presets=False)
    dev = _device(device)
    net: nn.Module
    if task == "insseg":
        net = load_insseg(run, device=dev)
        classes = net.heads.num_classes
    else:
        net = load_det(run, device=dev)
        classes = net.head.num_classes
    if int(classes) != int(cfg.model.num_classes):
        raise DataError(run / HEAD_FILES[task], f"head has {classes} classes but config.yaml says "
                                                f"model.num_classes={cfg.model.num_classes}: files of different runs")
    return TaskRun(run, task, cfg, net, dev)


# ----------------------------------------------------------------------------- prediction
def _require(run: TaskRun, task: str) -> None:
    if run.task != task:
        raise ValueError(f"{run.run_dir} is a '{run.task}' run, not '{task}' ({TASKS[task].title})")


def predict_run_instances(run: TaskRun, cloud: PointCloud) -> InstancePrediction:
    """Instances of every point of ``cloud`` by an insseg run, as its final evaluation computes them."""
    _require(run, "insseg")
    cfg = run.cfg
    was_training = run.net.training
    run.net.eval()
    try:
        pred = predict_instances(run.net, cloud, grid_size=cfg.data.grid_size, feat_keys=cfg.data.feat_keys,
                                 cluster=cluster_config(cfg), max_fragments=cfg.method.eval_fragments,
                                 device=run.device)
    finally:
        run.net.train(was_training)
    p = pred.proposals
    k = len(p)
    ev = run.eval_config()
    evaluated = (p.sizes >= ev.min_region_size) & (p.classes >= 0) & (p.classes < ev.num_classes) \
        & ~np.isin(p.classes, ev.ignore_classes)
    keep = np.flatnonzero(evaluated)
    if keep.size:
        starts = p.offset - p.sizes
        pts = np.concatenate([p.point_index[starts[i]:p.offset[i]] for i in keep])
        sub = ClusterResult(point_index=pts, offset=np.cumsum(p.sizes[keep]), classes=p.classes[keep],
                            scores=p.scores[keep], source=p.source[keep], num_points=p.num_points)
        local = sub.instance_ids()
        instance = np.where(local >= 0, keep[np.maximum(local, 0)], -1).astype(np.int64)
    else:
        instance = np.full(p.num_points, -1, np.int64)
    return InstancePrediction(instance=instance, classes=p.classes.astype(np.int64), scores=p.scores.astype(np.float64),
                              sizes=p.sizes.astype(np.int64), evaluated=evaluated if k else np.zeros(0, bool),
                              semantic=np.asarray(pred.semantic, np.int64), proposals=p)


def predict_run_boxes(run: TaskRun, cloud: PointCloud) -> SceneBoxes:
    """Detections in ``cloud`` (original frame) by a det run, as its final evaluation computes them
    (``boxes`` ``(D, 6)`` centre + size, ``classes`` ``(D,)``, ``scores`` ``(D,)``); :func:`box_list` lists them."""
    _require(run, "det")
    cfg = run.cfg
    was_training = run.net.training
    run.net.eval()
    try:
        return predict_boxes(run.net, cloud, feat_keys=cfg.data.feat_keys, grid_size=cfg.data.grid_size,
                             selection=box_selection(cfg), device=run.device)
    finally:
        run.net.train(was_training)


def box_list(found: SceneBoxes) -> list[Box]:
    """The detections as :class:`Box` es, highest score first (ties: evaluation order)."""
    order = np.argsort(-np.asarray(found.scores, np.float64), kind="stable")
    return [Box(found.boxes[i, :3].copy(), found.boxes[i, 3:6].copy(), int(found.classes[i]), float(found.scores[i]))
            for i in order]


# ----------------------------------------------------------------------------- ground truth
def gt_instances(run: TaskRun, cloud: PointCloud) -> tuple[np.ndarray, np.ndarray]:
    """``(instance, cls)``, both ``(N,)`` int64: the ground-truth thing instance of every point (``0..G-1``,
    ``-1`` = none, wall/floor or unlabelled) and its class (``-1`` = none), as the evaluation counts them."""
    segment, instance = require_instance_labels(cloud)
    _, classes, _, index = ground_truth_instances(segment, instance, run.eval_config())
    cls = np.where(index >= 0, classes[np.maximum(index, 0)], -1) if len(classes) else np.full(len(index), -1)
    return index.astype(np.int64), cls.astype(np.int64)


def gt_boxes(run: TaskRun, cloud: PointCloud) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (G, 6) centre + size metres, classes (G,))``: the ground-truth boxes of ``evaluate_det``."""
    segment, instance = require_instance_labels(cloud)
    cfg = InstanceEvalConfig(num_classes=run.num_classes, ignore_classes=tuple(box_selection(run.cfg).ignore_classes))
    boxes, classes, _ = boxes_from_instances(cloud.coord, segment, instance, cfg)
    return boxes, classes.astype(np.int64)
