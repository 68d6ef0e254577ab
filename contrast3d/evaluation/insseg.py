"""Instance-segmentation inference and evaluation: proposals on every original point, ScanNet AP.

Per scene (:func:`predict_instances`):

1. centre it like the training samples (``CenterShift``) and voxelise it deterministically
   (``GridSample`` test mode; fragment ``k`` holds the ``(k mod c)``-th point of every voxel, so all
   fragments share the voxel order);
2. run the :class:`~contrast3d.evaluation.insseg_model.InsSegNet` on the first ``max_fragments``
   fragments (0 = all) and **vote per voxel**: the class probabilities are averaged, and so are the
   predicted centres ``p + o`` (each fragment's own point plus its offset); one fragment (the
   default, as Pointcept's evaluation of one voxelisation) needs no vote;
3. cluster the voxels (:func:`~contrast3d.evaluation.clustering.cluster_points`): connected
   components of the same-class radius graph on the voted centres (radius ``1.5 * grid_size`` by
   default: 3 cm at 2 cm voxels, Pointcept's ``cluster_thresh``), wall/floor never clustered,
   components smaller than ``min_points`` voxels dropped, score = mean probability of the
   proposal's class over its voxels; optionally also on the original coordinates (fragment 0's
   points) and both sets kept (PointGroup's dual set);
4. map each proposal from voxels to **every original point** through ``meta["inverse"]`` (a point
   belongs to a proposal when its voxel does; one sparse product, no loop over points).

:func:`evaluate_insseg` accumulates ScanNet's AP / AP50 / AP25
(:class:`~contrast3d.evaluation.instance_metrics.InstanceAPEvaluator`) and, from the same forward
passes, the semantic confusion matrix (mIoU of the semantic head).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from contrast3d.data.transforms import CenterShift
from contrast3d.data.voxelize import GridSample
from contrast3d.errors import DataError
from contrast3d.evaluation.clustering import ClusterConfig, ClusterResult, cluster_points
from contrast3d.evaluation.instance_metrics import (
    InstanceAPEvaluator,
    InstanceAPScores,
    InstanceEvalConfig,
    require_instance_labels,
)
from contrast3d.evaluation.metrics import SegmentationScores, confusion_matrix, segmentation_scores
from contrast3d.evaluation.semseg import _device_of, default_class_names
from contrast3d.structures import PointCloud, collate_points

__all__ = ["SceneInstances", "InsSegScores", "predict_instances", "voxel_to_point_proposals", "evaluate_insseg"]


@dataclass
class SceneInstances:
    """Predictions of one scene over its ``N`` original points.

    Attributes:
        proposals: instance proposals over the original points (``proposals.masks()`` is ``(K, N)``).
        semantic: ``(N,)`` int64 predicted class of every point.
        voxel_proposals: the same proposals over the ``M`` voxels.
        centres: ``(M, 3)`` voted predicted instance centres of the voxels (metres, original frame).
        inverse: ``(N,)`` voxel of every point.
    """

    proposals: ClusterResult
    semantic: np.ndarray
    voxel_proposals: ClusterResult
    centres: np.ndarray
    inverse: np.ndarray


@dataclass
class InsSegScores:
    """ScanNet instance AP and the semantic head's scores on the same scenes."""

    ap: InstanceAPScores
    semantic: SegmentationScores

    def to_dict(self) -> dict:
        sem = self.semantic.to_dict()
        return {**self.ap.to_dict(), "semantic": {k: sem[k] for k in ("mIoU", "mAcc", "allAcc") if k in sem}}

    def table(self) -> str:
        return (self.ap.table() + f"\nsemantic head: mIoU {100 * self.semantic.miou:.2f}  "
                f"mAcc {100 * self.semantic.macc:.2f}  allAcc {100 * self.semantic.all_acc:.2f}")


def voxel_to_point_proposals(proposals: ClusterResult, inverse: np.ndarray) -> ClusterResult:
    """Proposals over ``M`` voxels -> the same proposals over the ``N`` points (``inverse`` ``(N,)``:
    voxel of each point); a point belongs to a proposal when its voxel does."""
    inverse = np.asarray(inverse, dtype=np.int64).reshape(-1)
    n = inverse.size
    if inverse.size and (inverse.min() < 0 or inverse.max() >= proposals.num_points):
        raise ValueError(f"inverse indexes voxels outside [0, {proposals.num_points})")
    vox_to_pt = sp.csr_matrix((np.ones(n, dtype=np.int8), (inverse, np.arange(n))),
                              shape=(proposals.num_points, n))
    masks = (proposals.sparse_masks().astype(np.int8) @ vox_to_pt).tocsr()
    masks.sort_indices()
    return ClusterResult(point_index=masks.indices.astype(np.int64), offset=masks.indptr[1:].astype(np.int64),
                         classes=proposals.classes.copy(), scores=proposals.scores.copy(),
                         source=proposals.source.copy(), num_points=n)


@torch.no_grad()
def predict_instances(model: nn.Module, cloud: PointCloud, *, grid_size: float,
                      feat_keys: Sequence[str] = ("color", "normal"), cluster: ClusterConfig | None = None,
                      max_fragments: int = 1, device: torch.device | str | None = None) -> SceneInstances:
    """Instance proposals and semantics of every point of ``cloud`` (module docstring).

    ``model`` maps a :class:`~contrast3d.structures.PointBatch` to ``(logits (M, K), offsets (M, 3))``
    (an :class:`~contrast3d.evaluation.insseg_model.InsSegNet`); the caller sets ``model.eval()``.
    ``cluster.radius`` is in metres (:class:`ClusterConfig`; default 1.5 voxels of ``grid_size``).
    """
    cluster = cluster or ClusterConfig(radius=1.5 * grid_size)
    device = torch.device(device) if device is not None else _device_of(model)
    centred = CenterShift(apply_z=True)(cloud)
    shift = cloud.coord[:1].astype(np.float64) - centred.coord[:1].astype(np.float64)  # centred + shift = original
    fragments = GridSample(grid_size, mode="test").fragments(centred)
    if max_fragments > 0:
        fragments = fragments[:max_fragments]
    probs_sum: torch.Tensor | None = None
    centre_sum: torch.Tensor | None = None
    for frag in fragments:
        batch = collate_points([frag], feat_keys).to(device)
        logits, offsets = model(batch)
        probs = torch.softmax(logits.float(), dim=1)
        centre = batch.coord.float() + offsets.float()
        probs_sum = probs if probs_sum is None else probs_sum + probs
        centre_sum = centre if centre_sum is None else centre_sum + centre
    assert probs_sum is not None and centre_sum is not None
    probs_np = (probs_sum / len(fragments)).cpu().numpy().astype(np.float64)
    centres = (centre_sum / len(fragments)).cpu().numpy().astype(np.float64)
    semantic_vox = probs_np.argmax(1).astype(np.int64)
    voxel_coord = fragments[0].coord.astype(np.float64)
    if cluster.dual:
        vox = cluster_points(voxel_coord, semantic_vox, cluster, probs=probs_np, shifted_coord=centres)
    else:
        vox = cluster_points(centres, semantic_vox, cluster, probs=probs_np)
    inverse = np.asarray(fragments[0].meta["inverse"], dtype=np.int64)
    return SceneInstances(proposals=voxel_to_point_proposals(vox, inverse), semantic=semantic_vox[inverse],
                          voxel_proposals=vox, centres=centres + shift, inverse=inverse)


def evaluate_insseg(model: nn.Module, scenes: Iterable[PointCloud], *, num_classes: int, grid_size: float,
                    feat_keys: Sequence[str] = ("color", "normal"), cluster: ClusterConfig | None = None,
                    eval_cfg: InstanceEvalConfig | None = None, max_fragments: int = 1,
                    class_names: Sequence[str] | None = None, device: torch.device | str | None = None,
                    predictions: dict[str, SceneInstances] | None = None) -> InsSegScores:
    """ScanNet AP of ``model`` over ``scenes`` (each with ``segment`` and ``instance``) plus semantic scores.

    ``eval_cfg`` defaults to ScanNet's settings with ``num_classes`` and the clustering's ignored
    classes. The model's training mode is restored afterwards; ``predictions`` receives each scene's
    :class:`SceneInstances` by name.
    """
    cluster = cluster or ClusterConfig(radius=1.5 * grid_size)
    eval_cfg = eval_cfg or InstanceEvalConfig(num_classes=num_classes, ignore_classes=tuple(cluster.ignore_classes))
    names = default_class_names(num_classes, class_names)
    evaluator = InstanceAPEvaluator(eval_cfg, names)
    conf = np.zeros((num_classes, num_classes), np.int64)
    was_training = model.training
    model.eval()
    try:
        for cloud in scenes:
            segment, instance = require_instance_labels(cloud)
            pred = predict_instances(model, cloud, grid_size=grid_size, feat_keys=feat_keys, cluster=cluster,
                                     max_fragments=max_fragments, device=device)
            try:
                conf += confusion_matrix(pred.semantic, segment, num_classes)
            except ValueError as err:
                raise DataError(cloud.meta.get("path") or cloud.name or "<scene>",
                                f"{err} (model.num_classes={num_classes})") from None
            p = pred.proposals
            evaluator.add_scene(p.sparse_masks(), p.classes, p.scores, segment, instance)
            if predictions is not None:
                predictions[cloud.name] = pred
    finally:
        model.train(was_training)
    return InsSegScores(ap=evaluator.compute(), semantic=segmentation_scores(conf, names))
