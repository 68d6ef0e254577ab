"""Pictures of a segmentation result: confusion matrix, per-class IoU bars, predicted vs ground-truth scene.

All three write a PNG (parent folders created) and return its path; ``contrast3d evaluate`` / ``predict``
call them. Classes keep one fixed colour everywhere (:func:`~contrast3d.viz.render.class_palette`);
unlabelled points (``-1``) are grey. matplotlib is imported only inside the functions.

* :func:`save_confusion_png`: the row-normalised confusion matrix (row = ground truth), each cell's
  percentage of its row (and the count, for up to :data:`COUNT_CELLS_MAX` classes) written in it when
  there are at most :data:`ANNOTATE_MAX` classes.
* :func:`save_class_iou_png`: horizontal per-class IoU bars, ``n/a`` for classes absent from both ground
  truth and prediction, the mean IoU as a dashed line.
* :func:`save_prediction_png`: the scene rendered from above at an angle (one camera for every panel, a
  ceiling cut away, see :func:`below_ceiling`): prediction | ground truth | errors (wrong points red,
  right ones light grey), legend with the classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.viz.render import (
    UNLABELLED_GREY,
    class_colors,
    class_palette,
    framed_camera,
    new_figure,
    render_layers,
    save_figure,
)

#: Largest class count whose confusion cells get their percentage written in.
ANNOTATE_MAX = 25
#: Largest class count whose confusion cells also get the point count.
COUNT_CELLS_MAX = 12
#: Perceptual sequential colour map of the confusion matrix (light = few, dark = many; empty cells white).
CONFUSION_CMAP = "magma_r"
#: Colours of the error panel: wrong, right, unlabelled points.
WRONG_RED = (0.86, 0.08, 0.08)
RIGHT_GREY = (0.80, 0.80, 0.80)
UNLABELLED_LIGHT = (0.93, 0.93, 0.93)


def _names(class_names: list[str] | None, n: int) -> list[str]:
    names = [str(x) for x in (class_names or [])]
    return [names[i] if i < len(names) and names[i] else f"class {i}" for i in range(n)]


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}k" if n >= 1e4 else f"{int(n)}"


def row_normalised(confusion: np.ndarray) -> np.ndarray:
    """``(C, C)`` float64 share of every ground-truth row (rows sum to 1; NaN rows without ground truth)."""
    conf = np.asarray(confusion, np.float64)
    rows = conf.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, conf / rows, np.nan)


def confusion_figure(confusion: np.ndarray, class_names: list[str], title: str = "") -> Any:
    """The figure of :func:`save_confusion_png` (not saved)."""
    import matplotlib

    from contrast3d.evaluation.metrics import segmentation_scores

    conf = np.asarray(confusion, np.int64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty (C, C) matrix, got shape {conf.shape}")
    c = conf.shape[0]
    names = _names(class_names, c)
    share = row_normalised(conf)
    gt = conf.sum(1)
    side = float(np.clip(0.42 * c + 2.6, 4.5, 14.0))
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps[CONFUSION_CMAP]
    image = cmap(np.nan_to_num(share))
    image[conf == 0] = (1.0, 1.0, 1.0, 1.0)  # no point: white
    image[gt == 0] = (0.86, 0.86, 0.86, 1.0)  # no ground truth: grey row
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks(np.arange(c), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(np.arange(c), [f"{n} ({_count(g)})" for n, g in zip(names, gt)], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class (points)")
    ax.set_xticks(np.arange(c + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(c + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    if c <= ANNOTATE_MAX:
        fontsize = 8 if c <= 12 else 6.5 if c <= 20 else 5.5
        for i, j in zip(*np.nonzero(conf)):
            p = 100 * share[i, j]
            if p < 0.5 and i != j:  # leave rounding noise out; the diagonal is always written
                continue
            text = f"{p:.0f}" if p >= 0.5 else "<1"
            if c <= COUNT_CELLS_MAX:
                text += f"\n{_count(conf[i, j])}"
            rgb = np.asarray(cmap(p / 100)[:3])
            dark = float(rgb @ np.array([0.299, 0.587, 0.114])) < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, linespacing=0.95,
                    color="white" if dark else "black")
    for i in np.flatnonzero(gt == 0):
        ax.text(c / 2 - 0.5, i, "no ground-truth points", ha="center", va="center", fontsize=7, color="0.45")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(0, 100), cmap), ax=ax, fraction=0.04, pad=0.02,
                 label="% of the ground-truth row")
    s = segmentation_scores(conf)
    summary = (f"{int(gt.sum()):,} labelled points; overall accuracy {100 * s.all_acc:.1f} %, "
               f"mIoU {100 * s.miou:.1f} %, mAcc {100 * s.macc:.1f} %")
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=10)
    fig.tight_layout()
    return fig


def save_confusion_png(confusion: np.ndarray, class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Write the row-normalised confusion heat map of ``confusion`` ``(C, C)`` int64 counts (rows = target,
    cols = prediction) with ``class_names`` ``(C,)`` on the axes; returns the PNG path."""
    return save_figure(confusion_figure(confusion, class_names, title), path)


def class_iou_figure(iou: np.ndarray, class_names: list[str], title: str = "") -> Any:
    """The figure of :func:`save_class_iou_png` (not saved)."""
    iou = np.asarray(iou, np.float64).reshape(-1)
    c = len(iou)
    if c == 0:
        raise ValueError("no classes to plot")
    names = _names(class_names, c)
    palette = class_palette(c)
    valid = np.isfinite(iou)
    fig = new_figure(7.5, float(np.clip(0.3 * c + 1.4, 2.5, 12.0)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(c)
    values = np.where(valid, 100 * iou, 0.0)
    ax.barh(y, values, color=palette, edgecolor="0.25", linewidth=0.6, height=0.72)
    for i in range(c):
        if valid[i]:
            ax.text(values[i] + 1, i, f"{values[i]:.1f}", va="center", ha="left", fontsize=8, zorder=4,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        else:
            ax.text(1, i, "n/a", va="center", ha="left", fontsize=8, color="0.45", style="italic")
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 108)
    ax.set_xlabel("IoU (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if valid.any():
        mean = 100 * float(np.mean(iou[valid]))
        ax.axvline(mean, color="black", linestyle="--", linewidth=1.2, zorder=3)
        ax.text(mean, -1.1, f"mIoU {mean:.1f}", ha="center", va="center", fontsize=9, fontweight="bold", zorder=4,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "black", "linewidth": 0.8})
        ax.set_ylim(c - 0.5, -1.8)
    note = f"{int(valid.sum())} of {c} classes present" + (" (n/a: not in ground truth or prediction)"
                                                           if not valid.all() else "")
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=10)
    fig.tight_layout()
    return fig


def save_class_iou_png(iou: np.ndarray, class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Write the per-class IoU bars of ``iou`` ``(C,)`` in [0, 1] (NaN: class absent from ground truth and
    prediction, shown as ``n/a``) with the mean IoU line; returns the PNG path."""
    return save_figure(class_iou_figure(iou, class_names, title), path)


def below_ceiling(coord: np.ndarray, grid: int = 32, cover: float = 0.4, cut: float = 0.12) -> np.ndarray:
    """``(N,)`` bool: the points to draw in a view from above -- all of them, unless the scene has a ceiling.

    A ceiling is a layer of points within 2 % of the top of the scene that covers more than ``cover`` of
    a ``grid x grid`` raster of the horizontal bounding box (walls alone cover only its rim); then the
    top ``cut`` of the height is left out (a cut-away view into the room).
    """
    coord = np.asarray(coord, np.float64)
    z = coord[:, 2]
    height = float(z.max() - z.min())
    keep = np.ones(len(coord), bool)
    if height <= 0:
        return keep
    top = z >= z.max() - 0.02 * height
    lo, hi = coord[:, :2].min(0), coord[:, :2].max(0)
    cell = np.floor((coord[top, :2] - lo) / np.maximum(hi - lo, 1e-9) * grid).clip(0, grid - 1).astype(np.int64)
    occupied = len(np.unique(cell[:, 0] * grid + cell[:, 1]))
    if occupied > cover * grid * grid:
        keep = z < z.max() - cut * height
    return keep


def prediction_figure(coord: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, class_names: list[str],
                      title: str = "", panel_height: int = 480) -> Any:
    """The figure of :func:`save_prediction_png` (not saved); panels are ``panel_height`` pixels high and as
    wide as the scene needs (:func:`~contrast3d.viz.render.framed_camera`)."""
    from matplotlib.patches import Patch

    coord = np.asarray(coord, np.float64)
    n = len(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or n == 0:
        raise ValueError(f"coord must be (N, 3) with N > 0, got {coord.shape}")
    pred = np.asarray(pred, np.int64).reshape(-1)
    if pred.shape != (n,):
        raise ValueError(f"pred must have shape ({n},), got {pred.shape}")
    if gt is not None:
        gt = np.asarray(gt, np.int64).reshape(-1)
        if gt.shape != (n,):
            raise ValueError(f"gt must have shape ({n},), got {gt.shape}")
    layers = [class_colors(pred)]
    titles = ["prediction"]
    if gt is not None:
        labelled = gt >= 0
        wrong = labelled & (pred != gt)
        errors = np.empty((n, 3), np.float32)
        errors[:] = RIGHT_GREY
        errors[~labelled] = UNLABELLED_LIGHT
        errors[wrong] = WRONG_RED
        layers += [class_colors(gt), errors]
        acc = 1 - wrong.sum() / max(int(labelled.sum()), 1)
        titles += ["ground truth", f"errors: {int(wrong.sum()):,} wrong (red), accuracy {100 * acc:.1f} %"]
    keep = below_ceiling(coord)
    cam = framed_camera(coord[keep], height=panel_height)
    images, _ = render_layers(coord[keep], [layer[keep] for layer in layers], cam)
    h, w = cam.image_size
    k = len(images)
    fig = new_figure(k * w / 100 + 0.3, h / 100 + 1.6)
    for i, (image, name) in enumerate(zip(images, titles)):
        ax = fig.add_axes((i / k + 0.005, 0.22, 1 / k - 0.01, 0.68))
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name, fontsize=10)
    ids = np.unique(np.concatenate([pred, gt if gt is not None else pred]))
    present = ids[ids >= 0]
    names = _names(class_names, int(present.max()) + 1 if len(present) else 0)
    palette = class_palette(len(names))
    handles = [Patch(facecolor=palette[c], edgecolor="0.3", linewidth=0.5, label=names[c]) for c in present]
    if (ids < 0).any():
        handles.append(Patch(facecolor=UNLABELLED_GREY, edgecolor="0.3", linewidth=0.5, label="unlabelled"))
    if handles:
        per_row = max(1, int(k * w / 125))
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.2), ncol=min(len(handles), per_row),
                   fontsize=9, frameon=False, handlelength=1.2, columnspacing=1.2)
    note = f"{n:,} points" + ("" if keep.all() else ", ceiling cut away")
    fig.suptitle(f"{title} ({note})" if title else note, fontsize=12)
    return fig


def save_prediction_png(coord: np.ndarray, pred: np.ndarray, gt: np.ndarray | None, class_names: list[str],
                        path: str | Path, title: str = "") -> Path:
    """Write the prediction picture of a scene; returns the PNG path.

    Args:
        coord: ``(N, 3)`` float metres.
        pred: ``(N,)`` int predicted class ids.
        gt: ``(N,)`` int ground truth (``-1`` = unlabelled, grey) or ``None`` (prediction panel only).
        class_names: names indexed by class id (legend).
    """
    return save_figure(prediction_figure(coord, pred, gt, class_names, title), path)
