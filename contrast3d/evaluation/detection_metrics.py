"""Axis-aligned 3D box IoU and NMS, ground-truth boxes from instance labels, and VoteNet/ScanNet mAP.

Boxes. ``box_format="center"`` (default, VoteNet's ScanNet boxes): ``(cx, cy, cz, dx, dy, dz)``,
centre and full side lengths in metres. ``box_format="minmax"``: ``(xmin, ymin, zmin, xmax, ymax,
zmax)``. IoU = intersection volume / union volume; two boxes with zero union (degenerate) have IoU 0.
Functions take numpy arrays or torch tensors and return the same kind.

NMS. Greedy, as VoteNet's ``nms_3d_faster``: visit boxes by decreasing score and drop every later
box whose IoU with a kept one is ``> iou_threshold`` (strict). With ``classes`` given only boxes of
the same class suppress each other (VoteNet's ``nms_3d_faster_samecls``). The IoU matrix is
computed once, vectorised; the greedy pass loops over boxes (not points). Ties in score: the lower
index comes first (stable sort; VoteNet's ``np.argsort`` leaves ties unspecified).

Ground-truth boxes. Each instance (see :func:`~contrast3d.evaluation.instance_metrics.ground_truth_instances`:
majority semantic label over its labelled points, instances of ignored classes dropped) gives the
axis-aligned box of its points, centre ``(min + max) / 2`` and size ``max - min``, as VoteNet's
ScanNet preparation does.

mAP. Per class and IoU threshold, VOC style as VoteNet's ``eval_det.py`` (``eval_det_cls``): all
predictions of the class over all scenes sorted by decreasing score; each takes the ground-truth box
of its scene with the largest IoU (the first on ties); it is a true positive when that IoU is
``> threshold`` (strict) and the box is not taken yet, otherwise a false positive (duplicates are
false positives, even if another, lower-IoU box of the scene is still free -- as VOC/VoteNet).
``recall = cum TP / #GT``, ``precision = cum TP / cum (TP + FP)``, AP by all-point interpolation
(VoteNet's default ``use_07_metric=False``: area under the monotone precision envelope; the
11-point VOC07 rule is available). mAP@0.25 and mAP@0.5 are the means over classes. Decisions:
a class without ground truth has AP NaN and is left out of the mean (VoteNet would put NaN, or 0,
into the mean depending on the code path); a class with ground truth but no prediction has AP 0;
ignored classes (wall, floor; VoteNet's 18 ScanNet classes) are NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from contrast3d.evaluation.instance_metrics import InstanceEvalConfig, ground_truth_instances

__all__ = ["to_minmax", "to_center", "box_iou_3d", "nms_3d", "boxes_from_instances", "voc_average_precision",
           "average_precision_class", "DetectionEvaluator", "DetectionScores"]


def _xp(x):
    return torch if isinstance(x, torch.Tensor) else np


def to_minmax(boxes, box_format: str = "center"):
    """``(..., 6)`` boxes in ``box_format`` -> ``(xmin, ymin, zmin, xmax, ymax, zmax)``."""
    if box_format == "minmax":
        return boxes
    if box_format != "center":
        raise ValueError(f"box_format must be 'center' or 'minmax'; got {box_format!r}")
    half = boxes[..., 3:6] / 2
    parts = [boxes[..., :3] - half, boxes[..., :3] + half]
    return np.concatenate(parts, -1) if _xp(boxes) is np else torch.cat(parts, -1)


def to_center(boxes):
    """``(..., 6)`` min/max boxes -> ``(cx, cy, cz, dx, dy, dz)``."""
    lo, hi = boxes[..., :3], boxes[..., 3:6]
    parts = [(lo + hi) / 2, hi - lo]
    return np.concatenate(parts, -1) if _xp(boxes) is np else torch.cat(parts, -1)


def box_iou_3d(boxes1, boxes2, box_format: str = "center"):
    """Pairwise IoU of axis-aligned boxes.

    Args:
        boxes1: ``(N, 6)`` boxes (metres), numpy or torch.
        boxes2: ``(M, 6)`` boxes of the same kind.
        box_format: ``"center"`` ``(cx, cy, cz, dx, dy, dz)`` or ``"minmax"``.

    Returns:
        ``(N, M)`` IoU in ``[0, 1]`` (0 where the union is empty).
    """
    xp = _xp(boxes1)
    a, b = to_minmax(boxes1, box_format), to_minmax(boxes2, box_format)
    lo = xp.maximum(a[:, None, :3], b[None, :, :3])
    hi = xp.minimum(a[:, None, 3:], b[None, :, 3:])
    inter = (hi - lo).clip(min=0).prod(-1)
    vol_a = (a[:, 3:] - a[:, :3]).clip(min=0).prod(-1)
    vol_b = (b[:, 3:] - b[:, :3]).clip(min=0).prod(-1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    positive = union > 0
    safe = xp.where(positive, union, xp.ones_like(union))
    return xp.where(positive, inter / safe, xp.zeros_like(union))


def nms_3d(boxes, scores, iou_threshold: float = 0.25, classes=None, box_format: str = "center"):
    """Greedy axis-aligned 3D NMS.

    Args:
        boxes: ``(K, 6)`` boxes (numpy or torch).
        scores: ``(K,)`` scores.
        iou_threshold: a box is suppressed by a kept one when their IoU is ``> iou_threshold``
            (VoteNet uses 0.25 on ScanNet).
        classes: optional ``(K,)`` class per box; boxes of different classes never suppress each other.
        box_format: see :func:`box_iou_3d`.

    Returns:
        Indices of the kept boxes in decreasing score order (``int64``, same kind as ``boxes``).
    """
    is_torch = isinstance(boxes, torch.Tensor)
    b = torch.as_tensor(boxes).double()
    s = torch.as_tensor(scores).double().reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"{b.shape[0]} boxes but {s.shape[0]} scores")
    order = torch.sort(-s, stable=True).indices
    iou = box_iou_3d(b[order], b[order], box_format)
    over = iou > iou_threshold
    if classes is not None:
        c = torch.as_tensor(classes).reshape(-1)[order]
        over &= c[:, None] == c[None, :]
    alive = torch.ones(order.numel(), dtype=torch.bool)
    keep = []
    for i in range(order.numel()):
        if alive[i]:
            keep.append(i)
            alive &= ~over[i]
    kept = order[torch.tensor(keep, dtype=torch.long)]
    if is_torch:
        return kept.to(boxes.device)
    return kept.numpy()


def boxes_from_instances(coord, segment, instance, cfg: InstanceEvalConfig | None = None, min_points: int = 1):
    """Ground-truth boxes of one scene from per-point labels.

    Args:
        coord: ``(N, 3)`` point coordinates (metres).
        segment: ``(N,)`` int semantic labels.
        instance: ``(N,)`` int instance ids (``cfg.instance_ignore`` = none).
        cfg: label conventions (ignored classes, ignore labels, number of classes).
        min_points: instances with fewer points are skipped (VoteNet: none skipped).

    Returns:
        ``boxes`` ``(K, 6)`` float64 ``(cx, cy, cz, dx, dy, dz)``, ``classes`` ``(K,)`` int64 and
        ``ids`` ``(K,)`` the instance ids.
    """
    coord = coord.detach().cpu().numpy() if isinstance(coord, torch.Tensor) else np.asarray(coord)
    coord = coord.astype(np.float64)
    ids, classes, counts, index = ground_truth_instances(segment, instance, cfg)
    if coord.shape != (index.size, 3):
        raise ValueError(f"coord {coord.shape} does not match {index.size} labels")
    k = ids.size
    lo = np.full((k, 3), np.inf)
    hi = np.full((k, 3), -np.inf)
    pts = index >= 0
    np.minimum.at(lo, index[pts], coord[pts])
    np.maximum.at(hi, index[pts], coord[pts])
    keep = counts >= min_points
    return to_center(np.concatenate([lo, hi], 1)[keep]), classes[keep], ids[keep]


def voc_average_precision(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """VOC AP from a PR curve (predictions in decreasing score order).

    All-point (default, VoteNet/VOC2010+): area under the precision envelope ``max_{r' >= r} p(r')``
    with sentinels ``(0, 0)`` and ``(1, 0)``. ``use_07_metric``: mean of the envelope at recall
    ``0, 0.1, ..., 1`` (VOC2007).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        return float(sum((precision[recall >= t].max() if (recall >= t).any() else 0.0)
                         for t in np.linspace(0.0, 1.0, 11)) / 11.0)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def average_precision_class(pred_scene, pred_boxes, pred_scores, gt_scene, gt_boxes, iou_threshold: float,
                            use_07_metric: bool = False, box_format: str = "center"):
    """VOC-style AP of one class over many scenes.

    Args:
        pred_scene: ``(P,)`` int scene index of each prediction.
        pred_boxes: ``(P, 6)`` predicted boxes.
        pred_scores: ``(P,)`` scores.
        gt_scene: ``(G,)`` int scene index of each ground-truth box.
        gt_boxes: ``(G, 6)`` ground-truth boxes.
        iou_threshold: true positive when IoU ``> iou_threshold``.

    Returns:
        ``(recall, precision, ap)``: ``(P,)`` arrays in decreasing-score order and the AP (NaN when
        ``G == 0``; 0 when ``P == 0 < G``).
    """
    pred_scene = np.asarray(pred_scene, dtype=np.int64).reshape(-1)
    gt_scene = np.asarray(gt_scene, dtype=np.int64).reshape(-1)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 6)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 6)
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    npos = gt_scene.size
    if npos == 0:
        return np.zeros(scores.size), np.zeros(scores.size), float("nan")
    if scores.size == 0:
        return np.zeros(0), np.zeros(0), 0.0
    # best ground truth of each prediction in its own scene (first on ties, as VoteNet's strict '>')
    ovmax = np.full(scores.size, -np.inf)
    jmax = np.zeros(scores.size, dtype=np.int64)
    for s in np.unique(pred_scene):
        pi, gi = np.flatnonzero(pred_scene == s), np.flatnonzero(gt_scene == s)
        if gi.size:
            iou = box_iou_3d(pred_boxes[pi], gt_boxes[gi], box_format)
            best = iou.argmax(1)
            ovmax[pi], jmax[pi] = iou[np.arange(pi.size), best], gi[best]
    order = np.argsort(-scores, kind="stable")
    ovmax, jmax = ovmax[order], jmax[order]
    hit = ovmax > iou_threshold
    tp = np.zeros(scores.size)
    first = np.unique(jmax[hit], return_index=True)[1]   # first (highest-scored) claim of each GT box
    tp[np.flatnonzero(hit)[first]] = 1.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = ctp / npos
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return recall, precision, voc_average_precision(recall, precision, use_07_metric)


@dataclass
class DetectionScores:
    """AP per class and IoU threshold (NaN where not evaluated) and the means."""

    ap: np.ndarray                    # (C, T)
    recall: np.ndarray                # (C, T) final recall (VoteNet's "AR")
    thresholds: np.ndarray            # (T,)
    map: np.ndarray                   # (T,) mean over classes with ground truth
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        names = self.class_names or [str(i) for i in range(self.ap.shape[0])]
        out: dict[str, float | None | dict[str, float]] = {}
        for j, t in enumerate(self.thresholds):
            key = f"mAP@{t:g}"
            out[key] = None if np.isnan(self.map[j]) else float(self.map[j])
            out[f"per_class@{t:g}"] = {n: float(a) for n, a in zip(names, self.ap[:, j]) if not np.isnan(a)}
        return out


class DetectionEvaluator:
    """Accumulates scenes of predicted and ground-truth boxes; :meth:`compute` gives :class:`DetectionScores`."""

    def __init__(self, num_classes: int = 20, ignore_classes: tuple[int, ...] = (0, 1),
                 iou_thresholds: tuple[float, ...] = (0.25, 0.5), class_names: list[str] | None = None,
                 use_07_metric: bool = False, box_format: str = "center"):
        self.num_classes = num_classes
        self.ignore_classes = tuple(ignore_classes)
        self.iou_thresholds = tuple(iou_thresholds)
        self.class_names = list(class_names or [])
        self.use_07_metric = use_07_metric
        self.box_format = box_format
        self.reset()

    def reset(self) -> None:
        self._pred: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._gt: list[tuple[np.ndarray, np.ndarray]] = []

    def add_scene(self, pred_boxes, pred_classes, pred_scores, gt_boxes, gt_classes) -> None:
        """Add one scene: ``(P, 6)`` boxes, ``(P,)`` classes and scores; ``(G, 6)`` boxes, ``(G,)`` classes."""
        def arr(x, dtype):
            return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(dtype)
        pb, pc, ps = arr(pred_boxes, np.float64).reshape(-1, 6), arr(pred_classes, np.int64).reshape(-1), \
            arr(pred_scores, np.float64).reshape(-1)
        gb, gc = arr(gt_boxes, np.float64).reshape(-1, 6), arr(gt_classes, np.int64).reshape(-1)
        if not (pb.shape[0] == pc.size == ps.size and gb.shape[0] == gc.size):
            raise ValueError(f"inconsistent shapes: pred {pb.shape}/{pc.shape}/{ps.shape}, gt {gb.shape}/{gc.shape}")
        self._pred.append((pb, pc, ps))
        self._gt.append((gb, gc))

    def compute(self) -> DetectionScores:
        t_count = len(self.iou_thresholds)
        ap = np.full((self.num_classes, t_count), np.nan)
        rec = np.full((self.num_classes, t_count), np.nan)
        p_scene = np.concatenate([np.full(p[1].size, i) for i, p in enumerate(self._pred)] or [np.zeros(0)])
        g_scene = np.concatenate([np.full(g[1].size, i) for i, g in enumerate(self._gt)] or [np.zeros(0)])
        pb = np.concatenate([p[0] for p in self._pred] or [np.zeros((0, 6))])
        pc = np.concatenate([p[1] for p in self._pred] or [np.zeros(0, np.int64)])
        ps = np.concatenate([p[2] for p in self._pred] or [np.zeros(0)])
        gb = np.concatenate([g[0] for g in self._gt] or [np.zeros((0, 6))])
        gc = np.concatenate([g[1] for g in self._gt] or [np.zeros(0, np.int64)])
        for c in range(self.num_classes):
            if c in self.ignore_classes:
                continue
            pm, gm = pc == c, gc == c
            for j, t in enumerate(self.iou_thresholds):
                r, _, a = average_precision_class(p_scene[pm], pb[pm], ps[pm], g_scene[gm], gb[gm], t,
                                                  self.use_07_metric, self.box_format)
                ap[c, j] = a
                rec[c, j] = np.nan if np.isnan(a) else (r[-1] if r.size else 0.0)
        with np.errstate(invalid="ignore"):
            means = np.array([np.nanmean(ap[:, j]) if np.isfinite(ap[:, j]).any() else np.nan
                              for j in range(t_count)])
        return DetectionScores(ap=ap, recall=rec, thresholds=np.asarray(self.iou_thresholds, dtype=np.float64),
                               map=means, class_names=self.class_names)
