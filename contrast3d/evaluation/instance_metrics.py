"""ScanNet instance-segmentation AP (AP, AP50, AP25), following ScanNet's ``evaluate_semantic_instance.py``.

Inputs per scene: predicted instances (a mask over the points, a class, a confidence) and the
ground truth as per-point ``segment`` (semantic class) and ``instance`` ids. Results accumulate
over scenes; AP is computed per class and IoU threshold over all scenes together.

Ground truth. An instance is the set of points sharing an ``instance`` id (``instance_ignore``,
default ``-1``, = none); its class is the majority ``segment`` label of its points (ScanNet encodes
one class per instance; the majority, over the instance's labelled points, makes inconsistent labels harmless;
ties go to the smaller class id). Instances whose class is
the ignore label or an ignored class (wall, floor) are not evaluated. Instances with fewer than
``min_region_size`` (100) points are not counted as ground truth but, as in ScanNet, a prediction
overlapping them is not penalised (see below).

Predictions. Masks with fewer than ``min_region_size`` points, and predictions whose class is
ignored or outside ``[0, num_classes)``, are dropped before matching (ScanNet does the same).

Matching, per IoU threshold ``t`` and class, as the ScanNet script (IoU ``> t``, strict):

* ground-truth instances in order; for each, the not-yet-matched predictions of its class that
  intersect it, in prediction order. The first with IoU ``> t`` matches it (true positive); every
  further one with IoU ``> t`` is a false positive with score ``min`` of the two scores while the
  ground truth keeps the ``max`` -- i.e. a ground truth is credited with its best-scoring
  prediction and duplicates are false positives. A ground truth with no match is a "hard" false
  negative.
* a prediction with IoU ``<= t`` to every ground truth of its class (small ones included) is a
  false positive unless the fraction of its points that are void or belong to a small ground-truth
  instance of its class is ``> t``. Void points (deviation, documented): ScanNet's script meant
  "points with a valid class but no instance" (its mask is nearly empty in practice because of how
  it encodes ids); Pointcept uses "points whose semantic label is ignored (``-1``, wall, floor)".
  We use the union: ignored semantic label, ignored class, or (``unassigned_is_void``) no instance.

Precision/recall and AP exactly as the script: scores sorted, one curve point per distinct score
(all predictions with a score ``>=`` it count as positive; ``tp``, ``fp``, ``fn = unmatched-by-
threshold + hard false negatives``), an artificial end point ``(recall 0, precision 1)``, and
``AP = sum_i p_i (r_{i-1} - r_{i+1}) / 2`` over the curve ordered by increasing score with
``r_{-1} = r_0`` and ``r_{n} = 0`` (the script's ``np.convolve(recall, [-.5, 0, .5])``). A class
with ground truth but no prediction has AP 0; a class without ground truth has AP NaN and is left
out of the means. Deviation: where the script would crash (ground truth and predictions exist but
every prediction is ignored and nothing matches) we return AP 0.

Thresholds: ScanNet's ``np.arange(0.5, 0.95, 0.05)`` is ``0.5, 0.55, ..., 0.9`` (nine values;
``0.95`` is *not* included) and AP is their mean; AP50 and AP25 use ``t = 0.5`` and ``0.25``.
We follow the script (``overlaps`` in :class:`InstanceEvalConfig` changes it). mAP is the mean
over classes with ground truth (NaN-mean), as the script's ``all_ap``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from contrast3d.errors import DataError
from contrast3d.structures import PointCloud

__all__ = ["InstanceEvalConfig", "InstanceAPScores", "InstanceAPEvaluator", "scannet_average_precision",
           "ground_truth_instances", "SCANNET_OVERLAPS"]

#: ScanNet's IoU thresholds for AP: ``np.arange(0.5, 0.95, 0.05)`` = 0.5 ... 0.9.
SCANNET_OVERLAPS: tuple[float, ...] = tuple(float(x) for x in np.arange(0.5, 0.95, 0.05))


@dataclass
class InstanceEvalConfig:
    """Settings of the ScanNet instance evaluation (defaults = ScanNet-20 benchmark)."""

    num_classes: int = 20
    ignore_classes: tuple[int, ...] = (0, 1)   # wall, floor: not instance classes
    ignore_index: int = -1                     # semantic label meaning "unlabelled"
    instance_ignore: int = -1                  # instance id meaning "no instance"
    min_region_size: int = 100                 # points; smaller GT not counted, smaller predictions dropped
    overlaps: tuple[float, ...] = SCANNET_OVERLAPS
    unassigned_is_void: bool = True            # points of a valid class without instance id are void


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def ground_truth_instances(segment, instance, cfg: InstanceEvalConfig | None = None):
    """Ground-truth instances of one scene.

    Args:
        segment: ``(N,)`` int semantic class per point.
        instance: ``(N,)`` int instance id per point.
        cfg: evaluation settings (ignored classes / labels).

    Returns:
        ``ids`` ``(G,)`` instance ids (ascending), ``classes`` ``(G,)`` majority class,
        ``counts`` ``(G,)`` point counts, and ``index`` ``(N,)`` the row in ``ids`` of each point's
        instance (``-1`` for none or an instance of an ignored class). Small instances are kept
        (they are needed to excuse predictions); :class:`InstanceAPEvaluator` filters them.
    """
    cfg = cfg or InstanceEvalConfig()
    seg = _np(segment).astype(np.int64).reshape(-1)
    ins = _np(instance).astype(np.int64).reshape(-1)
    if seg.shape != ins.shape:
        raise ValueError(f"segment has {seg.size} points, instance {ins.size}")
    has = ins != cfg.instance_ignore
    ids, inv = np.unique(ins[has], return_inverse=True)
    inv = inv.reshape(-1)
    lab = seg[has] != cfg.ignore_index                       # vote only with labelled points
    labels, lab_inv = np.unique(seg[has][lab], return_inverse=True)
    votes = np.bincount(inv[lab] * max(labels.size, 1) + lab_inv.reshape(-1),
                        minlength=ids.size * labels.size).reshape(ids.size, labels.size)
    classes = np.full(ids.size, cfg.ignore_index, dtype=np.int64)
    voted = votes.sum(1) > 0
    classes[voted] = labels[votes[voted].argmax(1)]
    counts = np.bincount(inv, minlength=ids.size)
    ok = (classes != cfg.ignore_index) & ~np.isin(classes, cfg.ignore_classes) & (classes >= 0) \
        & (classes < cfg.num_classes)
    row = np.full(ids.size, -1, dtype=np.int64)
    row[ok] = np.arange(int(ok.sum()))
    index = np.full(seg.size, -1, dtype=np.int64)
    index[has] = row[inv]
    return ids[ok], classes[ok].astype(np.int64), counts[ok].astype(np.int64), index


def scannet_average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int) -> float:
    """AP from scored examples exactly as ScanNet's script integrates its PR curve.

    Args:
        y_true: ``(E,)`` 1 for a matched ground truth (scored by its prediction), 0 for a false positive.
        y_score: ``(E,)`` scores.
        hard_false_negatives: ground truths never matched.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.size == 0:
        return 0.0
    order = np.argsort(y_score, kind="stable")
    s_sorted, cum = y_score[order], np.cumsum(y_true[order])
    _, first = np.unique(s_sorted, return_index=True)
    below = np.append(cum, 0.0)[first - 1]             # true examples scored below each threshold
    n_true = cum[-1]
    tp = n_true - below
    fp = y_true.size - first - tp
    fn = below + hard_false_negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.append(tp / (tp + fp), 1.0)
        recall = np.append(np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-300), 0.0), 0.0)
    ext = np.concatenate([recall[:1], recall, [0.0]])
    steps = 0.5 * (ext[:-2] - ext[2:])
    return float(np.dot(precision, steps))


@dataclass
class InstanceAPScores:
    """AP per class (``num_classes`` entries, NaN where not evaluated) and their means."""

    ap_table: np.ndarray             # (C, T) AP per class and threshold in ``overlaps``
    overlaps: np.ndarray             # (T,)
    ap: np.ndarray                   # (C,) mean over ``overlaps``
    ap50: np.ndarray                 # (C,)
    ap25: np.ndarray                 # (C,)
    map: float
    map50: float
    map25: float
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        names = self.class_names or [str(i) for i in range(len(self.ap))]
        per = {n: {"AP": _none(a), "AP50": _none(b), "AP25": _none(c)}
               for n, a, b, c in zip(names, self.ap, self.ap50, self.ap25) if not np.isnan(a)}
        return {"AP": _none(self.map), "AP50": _none(self.map50), "AP25": _none(self.map25), "per_class": per}

    def table(self) -> str:
        names = self.class_names or [str(i) for i in range(len(self.ap))]
        w = max(12, *(len(n) for n in names))
        lines = [f"{'class':<{w}}  {'AP':>6}  {'AP50':>6}  {'AP25':>6}"]
        for n, a, b, c in zip(names, self.ap, self.ap50, self.ap25):
            if not np.isnan(a):
                lines.append(f"{n:<{w}}  {_pct(a)}  {_pct(b)}  {_pct(c)}")
        lines.append(f"{'mean':<{w}}  {_pct(self.map)}  {_pct(self.map50)}  {_pct(self.map25)}")
        return "\n".join(lines)


def _none(x):
    return None if x is None or np.isnan(x) else float(x)


def _pct(x) -> str:
    return "   -  " if np.isnan(x) else f"{100 * x:6.2f}"


@dataclass
class _ClassScene:
    """One class of one scene: GT sizes, prediction stats and the (G, P) intersection counts."""

    gt_count: np.ndarray
    pred_score: np.ndarray
    pred_count: np.ndarray
    pred_void: np.ndarray
    inter: np.ndarray


def require_instance_labels(cloud: PointCloud) -> tuple[np.ndarray, np.ndarray]:
    """``(segment, instance)`` of a scene to evaluate against; :class:`DataError` naming it when absent."""
    if cloud.segment is None or cloud.instance is None:
        raise DataError(cloud.meta.get("path") or cloud.name or "<scene>",
                        "no semantic and instance labels (segment20.npy / instance.npy) to evaluate against")
    return cloud.segment, cloud.instance


class InstanceAPEvaluator:
    """Accumulates scenes with :meth:`add_scene`; :meth:`compute` returns :class:`InstanceAPScores`.

    Only per-instance statistics are kept (no masks), so memory grows with the number of instances.
    """

    def __init__(self, cfg: InstanceEvalConfig | None = None, class_names: list[str] | None = None):
        self.cfg = cfg or InstanceEvalConfig()
        self.class_names = list(class_names or [])
        self.reset()

    def reset(self) -> None:
        self._scenes: list[dict[int, _ClassScene]] = []

    def add_scene(self, pred_masks, pred_classes, pred_scores, segment, instance) -> None:
        """Add one scene.

        Args:
            pred_masks: ``(P, N)`` boolean masks (numpy, torch or a scipy sparse matrix).
            pred_classes: ``(P,)`` int class of each prediction.
            pred_scores: ``(P,)`` float confidence of each prediction.
            segment: ``(N,)`` int ground-truth semantic labels.
            instance: ``(N,)`` int ground-truth instance ids.
        """
        cfg = self.cfg
        _, gt_cls, gt_count, gt_index = ground_truth_instances(segment, instance, cfg)
        n, g = gt_index.size, gt_cls.size
        cls = _np(pred_classes).astype(np.int64).reshape(-1)
        score = _np(pred_scores).astype(np.float64).reshape(-1)
        if sp.issparse(pred_masks):
            coo = sp.coo_matrix(pred_masks)
            p_idx, n_idx = coo.row[coo.data != 0].astype(np.int64), coo.col[coo.data != 0].astype(np.int64)
            shape = coo.shape
        else:
            m = _np(pred_masks)
            m = m.reshape(0, n) if m.size == 0 else m
            shape = m.shape
            p_idx, n_idx = np.nonzero(m)
        p = cls.size
        if shape != (p, n) or score.size != p:
            raise ValueError(f"pred_masks {shape}, pred_classes ({p},), pred_scores ({score.size},) "
                             f"disagree with {n} points")
        seg = _np(segment).astype(np.int64).reshape(-1)
        void = (seg == cfg.ignore_index) | np.isin(seg, cfg.ignore_classes)
        if cfg.unassigned_is_void:
            void |= _np(instance).reshape(-1) == cfg.instance_ignore
        count = np.bincount(p_idx, minlength=p)
        void_inter = np.bincount(p_idx, weights=void[n_idx].astype(np.float64), minlength=p).astype(np.int64)
        gi = gt_index[n_idx]
        hit = gi >= 0
        inter = np.bincount(p_idx[hit] * max(g, 1) + gi[hit], minlength=p * g).reshape(p, g)
        keep = (count >= cfg.min_region_size) & (cls >= 0) & (cls < cfg.num_classes) \
            & ~np.isin(cls, cfg.ignore_classes)
        scene = {}
        for c in range(cfg.num_classes):
            if c in cfg.ignore_classes:
                continue
            pr, gr = np.flatnonzero(keep & (cls == c)), np.flatnonzero(gt_cls == c)
            scene[c] = _ClassScene(gt_count=gt_count[gr], pred_score=score[pr], pred_count=count[pr],
                                   pred_void=void_inter[pr], inter=inter[np.ix_(pr, gr)].T.copy())
        self._scenes.append(scene)

    def _class_ap(self, c: int, t: float) -> float:
        y_true, y_score, hard_fn = [], [], 0
        has_gt = has_pred = False
        for scene in self._scenes:
            s = scene[c]
            big = s.gt_count >= self.cfg.min_region_size
            has_gt |= bool(big.any())
            has_pred |= s.pred_score.size > 0
            union = s.gt_count[:, None] + s.pred_count[None, :] - s.inter
            iou = np.where(s.inter > 0, s.inter / np.maximum(union, 1), 0.0)     # (G, P)
            visited = np.zeros(s.pred_score.size, dtype=bool)
            for gi in np.flatnonzero(big):
                best = None
                for pi in np.flatnonzero(s.inter[gi] > 0):
                    if visited[pi] or iou[gi, pi] <= t:
                        continue
                    conf = float(s.pred_score[pi])
                    if best is None:
                        best, visited[pi] = conf, True
                    else:                                # duplicate: the lower score is a false positive
                        y_true.append(0.0)
                        y_score.append(min(best, conf))
                        best = max(best, conf)
                if best is None:
                    hard_fn += 1
                else:
                    y_true.append(1.0)
                    y_score.append(best)
            # predictions matching no GT of the class (small ones included): FP unless mostly ignored
            unmatched = ~(iou > t).any(0) if iou.size else np.ones(s.pred_score.size, dtype=bool)
            ignored = s.pred_void + s.inter[~big].sum(0)
            fp = unmatched & (ignored / np.maximum(s.pred_count, 1) <= t)
            y_true += [0.0] * int(fp.sum())
            y_score += s.pred_score[fp].tolist()
        if not has_gt:
            return float("nan")
        if not has_pred:
            return 0.0
        return scannet_average_precision(np.asarray(y_true), np.asarray(y_score), hard_fn)

    def compute(self) -> InstanceAPScores:
        cfg = self.cfg
        overlaps = np.asarray(cfg.overlaps, dtype=np.float64)
        thresholds = list(overlaps) + [0.5, 0.25]
        table = np.full((cfg.num_classes, len(thresholds)), np.nan)
        for c in range(cfg.num_classes):
            if c in cfg.ignore_classes:
                continue
            for j, t in enumerate(thresholds):
                table[c, j] = self._class_ap(c, float(t))
        k = len(overlaps)
        with np.errstate(invalid="ignore"):
            ap = table[:, :k].mean(1) if k else np.full(cfg.num_classes, np.nan)
        ap50, ap25 = table[:, k], table[:, k + 1]
        return InstanceAPScores(ap_table=table[:, :k], overlaps=overlaps, ap=ap, ap50=ap50, ap25=ap25,
                                map=_nanmean(ap), map50=_nanmean(ap50), map25=_nanmean(ap25),
                                class_names=self.class_names)


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
