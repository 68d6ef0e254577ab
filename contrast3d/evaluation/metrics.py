"""Semantic-segmentation metrics from a confusion matrix summed over a dataset.

Rows of the confusion matrix are ground truth, columns predictions; points whose ground truth
is the ignore label (``-1``) are left out. IoU_c = TP / (TP + FP + FN); mIoU is the mean over the
classes that occur in the ground truth or the predictions (``valid``); mAcc is the mean over
classes present in the ground truth of TP / (TP + FN); allAcc is overall point accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def confusion_matrix(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                     num_classes: int, ignore_index: int = -1) -> np.ndarray:
    """``(K, K)`` int64 counts, ``[target, pred]``, over points with ``target != ignore_index``.

    Predictions outside ``[0, K)`` raise ``ValueError`` (a model/label-space mismatch).
    """
    pred = torch.as_tensor(pred).reshape(-1).long().cpu()
    target = torch.as_tensor(target).reshape(-1).long().cpu()
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} entries, target {target.numel()}")
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"target labels outside [0, {num_classes}) besides the ignore label {ignore_index}")
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions outside [0, {num_classes})")
    flat = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).numpy().astype(np.int64)


@dataclass
class SegmentationScores:
    """mIoU / mAcc / allAcc and per-class IoU/accuracy (NaN for classes absent everywhere)."""

    miou: float
    macc: float
    all_acc: float
    iou: np.ndarray
    acc: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        names = self.class_names or [str(i) for i in range(len(self.iou))]
        return {"mIoU": self.miou, "mAcc": self.macc, "allAcc": self.all_acc,
                "per_class": {n: {"IoU": _nan_to_none(i), "Acc": _nan_to_none(a)}
                              for n, i, a in zip(names, self.iou, self.acc)}}

    def table(self) -> str:
        """A plain-text per-class table (IoU and accuracy in %)."""
        names = self.class_names or [str(i) for i in range(len(self.iou))]
        width = max(12, max(map(len, names)))
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
        for n, i, a in zip(names, self.iou, self.acc):
            lines.append(f"{n:<{width}}  {_pct(i):>6}  {_pct(a):>6}")
        lines.append(f"{'mean':<{width}}  {_pct(self.miou):>6}  {_pct(self.macc):>6}   allAcc {_pct(self.all_acc)}")
        return "\n".join(lines)


def _pct(x: float) -> str:
    return "  -   " if x is None or np.isnan(x) else f"{100 * x:6.2f}"


def _nan_to_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def segmentation_scores(confusion: np.ndarray, class_names: list[str] | None = None) -> SegmentationScores:
    """Scores from a ``(K, K)`` ``[target, pred]`` confusion matrix."""
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    gt = conf.sum(1)
    pr = conf.sum(0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = conf.sum()
    return SegmentationScores(
        miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        macc=float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        all_acc=float(tp.sum() / total) if total else float("nan"),
        iou=iou, acc=acc, class_names=list(class_names or []))
