"""Pictures of instance-segmentation and detection results: prediction beside ground truth.

* :func:`save_instances_png`: the scene from above at an angle (one camera for both panels, a ceiling
  cut away as :func:`~contrast3d.viz.predictions.below_ceiling` decides), predicted instances | ground-truth
  instances. Every instance has its own colour (:func:`~contrast3d.viz.render.hashed_colors`); a predicted
  instance that matches a ground-truth one (one-to-one assignment maximising IoU, IoU > :data:`MATCH_IOU`)
  takes its colour, so the same object has the same colour in both panels. Points of no instance (wall,
  floor, unassigned) are light grey shaded by height. With classes, each instance is labelled at the
  centre of its visible pixels (class name, and the score for predictions).
* :func:`save_boxes_png`: axis-aligned boxes drawn as wire frames over the scene (grey points shaded
  by height), viewed from the top and obliquely (rows), predictions | ground truth (columns); one
  colour per class (:func:`~contrast3d.viz.render.class_palette`), the top-scoring predictions labelled
  with class and score. :func:`top_boxes` picks the boxes worth drawing from a detector's output.

Boxes are given as an ``(D, 6)`` array ``(cx, cy, cz, dx, dy, dz)`` metres (optionally a 7th column
class and an 8th score), as an object with ``boxes`` / ``classes`` / ``scores`` (a
:class:`~contrast3d.evaluation.detection.SceneBoxes`), as a ``(boxes, classes[, scores])`` tuple, or as
a list of ``(centre, size, class, score)`` (:class:`~contrast3d.evaluation.task_runs.Box`).
matplotlib is imported only inside the functions (Agg canvas, no pyplot).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.viz.predictions import _names, below_ceiling
from contrast3d.viz.render import (
    Camera,
    class_palette,
    framed_camera,
    hashed_colors,
    new_figure,
    render_layers,
    save_figure,
)

__all__ = ["save_instances_png", "instances_figure", "save_boxes_png", "boxes_figure", "match_instances",
           "as_boxes", "top_boxes", "MATCH_IOU"]

#: IoU above which a predicted instance takes the colour of the ground-truth instance it is matched to.
MATCH_IOU = 0.25
#: Most instance labels written into one panel (larger scenes get none: they would hide the points).
MAX_INSTANCE_LABELS = 40
#: Grey range (low points -> high points) of points outside every instance / box.
BACKGROUND_GREY = (0.90, 0.70)


# ----------------------------------------------------------------------------- helpers
def _shaded_grey(coord: np.ndarray) -> np.ndarray:
    """``(N, 3)`` light grey, darker with height (the room's structure stays readable under the colours)."""
    z = coord[:, 2]
    span = float(z.max() - z.min()) if len(z) else 0.0
    t = (z - z.min()) / span if span > 0 else np.zeros_like(z)
    g = BACKGROUND_GREY[0] + (BACKGROUND_GREY[1] - BACKGROUND_GREY[0]) * t
    return np.repeat(g[:, None], 3, axis=1).astype(np.float32)


def _dense(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """``(N,)`` ids -> rows ``0..K-1`` (ascending id order; ``-1`` stays ``-1``) and ``K``."""
    out = np.full(ids.shape, -1, np.int64)
    has = ids >= 0
    uniq, inv = np.unique(ids[has], return_inverse=True)
    out[has] = inv.reshape(-1)
    return out, int(uniq.size)


def match_instances(pred: np.ndarray, gt: np.ndarray, min_iou: float = MATCH_IOU
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one match of predicted and ground-truth instances maximising the summed IoU.

    Args:
        pred, gt: ``(N,)`` int instance ids (``< 0`` = none).
        min_iou: pairs with IoU ``<=`` this are not matched.

    Returns:
        ``match`` ``(P,)`` int64: for each predicted instance (rows in ascending id order) the row of its
        ground-truth instance (ascending id order), ``-1`` = unmatched; ``iou`` ``(P,)`` float64 of the match.
    """
    from scipy.optimize import linear_sum_assignment

    p, n_p = _dense(np.asarray(pred, np.int64).reshape(-1))
    g, n_g = _dense(np.asarray(gt, np.int64).reshape(-1))
    match, iou_of = np.full(n_p, -1, np.int64), np.zeros(n_p)
    if n_p == 0 or n_g == 0:
        return match, iou_of
    both = (p >= 0) & (g >= 0)
    inter = np.bincount(p[both] * n_g + g[both], minlength=n_p * n_g).reshape(n_p, n_g).astype(np.float64)
    size_p = np.bincount(p[p >= 0], minlength=n_p).astype(np.float64)
    size_g = np.bincount(g[g >= 0], minlength=n_g).astype(np.float64)
    iou = inter / np.maximum(size_p[:, None] + size_g[None, :] - inter, 1.0)
    rows, cols = linear_sum_assignment(-iou)
    ok = iou[rows, cols] > min_iou
    match[rows[ok]] = cols[ok]
    iou_of[rows[ok]] = iou[rows[ok], cols[ok]]
    return match, iou_of


def _label_positions(rows: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean pixel ``(u, v)`` and visible pixel count of each of ``k`` instances (``rows`` ``(N,)`` per point,
    ``index`` ``(H, W)`` the point seen at each pixel)."""
    seen = index >= 0
    vv, uu = np.nonzero(seen)
    r = rows[index[seen]]
    ok = r >= 0
    count = np.bincount(r[ok], minlength=k).astype(np.float64)
    u = np.bincount(r[ok], weights=uu[ok], minlength=k) / np.maximum(count, 1)
    v = np.bincount(r[ok], weights=vv[ok], minlength=k) / np.maximum(count, 1)
    return u, v, count


def _instance_class(rows: np.ndarray, k: int, cls: np.ndarray | None) -> np.ndarray:
    """``(k,)`` class of each instance row: the majority of its points' classes (``-1`` without classes)."""
    out = np.full(k, -1, np.int64)
    if cls is None or k == 0:
        return out
    cls = np.asarray(cls, np.int64).reshape(-1)
    ok = (rows >= 0) & (cls >= 0)
    if not ok.any():
        return out
    c = int(cls[ok].max()) + 1
    votes = np.bincount(rows[ok] * c + cls[ok], minlength=k * c).reshape(k, c)
    has = votes.sum(1) > 0
    out[has] = votes[has].argmax(1)
    return out


def _instance_score(rows: np.ndarray, k: int, score: np.ndarray | None) -> np.ndarray:
    out = np.full(k, np.nan)
    if score is None or k == 0:
        return out
    score = np.asarray(score, np.float64).reshape(-1)
    ok = (rows >= 0) & np.isfinite(score)
    out[rows[ok]] = score[ok]
    return out


def _check_ids(name: str, ids: np.ndarray | None, n: int) -> np.ndarray | None:
    if ids is None:
        return None
    ids = np.asarray(ids).reshape(-1)
    if ids.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {ids.shape}")
    return ids


# ----------------------------------------------------------------------------- instances
def instances_figure(coord: np.ndarray, pred_instance: np.ndarray, gt_instance: np.ndarray | None, title: str = "",
                     pred_class: np.ndarray | None = None, gt_class: np.ndarray | None = None,
                     class_names: Sequence[str] | None = None, pred_score: np.ndarray | None = None,
                     panel_height: int = 520) -> Any:
    """The figure of :func:`save_instances_png` (not saved); ``fig.panels`` holds the rendered ``(H, W, 3)``
    images (prediction, then ground truth) and ``fig.info`` the counts."""
    coord = np.asarray(coord, np.float64)
    n = len(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or n == 0:
        raise ValueError(f"coord must be (N, 3) with N > 0, got {coord.shape}")
    pred = np.asarray(_check_ids("pred_instance", pred_instance, n), np.int64)
    gt = _check_ids("gt_instance", gt_instance, n)
    gt = None if gt is None else np.asarray(gt, np.int64)
    pred_class, gt_class = _check_ids("pred_class", pred_class, n), _check_ids("gt_class", gt_class, n)
    pred_score = _check_ids("pred_score", pred_score, n)

    p_rows, n_p = _dense(pred)
    g_rows, n_g = (_dense(gt) if gt is not None else (np.full(n, -1, np.int64), 0))
    match, iou = match_instances(pred, gt) if gt is not None else (np.full(n_p, -1, np.int64), np.zeros(n_p))
    # colour keys: ground-truth row g -> g; matched prediction -> its ground truth's key; others after them
    unmatched = np.flatnonzero(match < 0)
    p_key = match.copy()
    p_key[unmatched] = n_g + np.arange(unmatched.size)
    grey = _shaded_grey(coord)
    layers = [np.where((p_rows >= 0)[:, None], hashed_colors(np.where(p_rows >= 0, p_key[p_rows], -1)), grey)]
    if gt is not None:
        layers.append(np.where((g_rows >= 0)[:, None], hashed_colors(g_rows), grey))

    keep = below_ceiling(coord)
    cam = framed_camera(coord[keep], height=panel_height)
    images, index = render_layers(coord[keep], [layer[keep] for layer in layers], cam)
    h, w = cam.image_size
    k = len(images)
    hits50 = int((iou > 0.5).sum())
    titles = [f"prediction: {n_p} instances" + (f", {hits50} match ground truth at IoU > 0.5" if gt is not None
                                                 else "")]
    if gt is not None:
        titles.append(f"ground truth: {n_g} instances")
    fig = new_figure(k * w / 100 + 0.2 * k, h / 100 + 1.1)
    names = _names(list(class_names) if class_names is not None else None,
                   1 + max(int(np.max(pred_class, initial=-1)) if pred_class is not None else -1,
                           int(np.max(gt_class, initial=-1)) if gt_class is not None else -1))
    panels = [(p_rows, n_p, pred_class, pred_score), (g_rows, n_g, gt_class, None)][:k]
    for i, (image, name, (rows, count, cls, score)) in enumerate(zip(images, titles, panels)):
        ax = fig.add_axes((i / k + 0.004, 0.02, 1 / k - 0.008, 0.86))
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name, fontsize=10)
        if cls is None or count == 0 or count > MAX_INSTANCE_LABELS:
            continue
        kept_rows = rows[keep]
        u, v, visible = _label_positions(kept_rows, index, count)
        inst_cls = _instance_class(kept_rows, count, None if cls is None else np.asarray(cls)[keep])
        inst_score = _instance_score(kept_rows, count, None if score is None else np.asarray(score)[keep])
        for r in np.flatnonzero((visible >= 12) & (inst_cls >= 0)):
            text = names[inst_cls[r]] + (f" {inst_score[r]:.2f}" if np.isfinite(inst_score[r]) else "")
            ax.text(u[r], v[r], text, fontsize=6.5, ha="center", va="center", color="black",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    note = f"{n:,} points" + ("" if keep.all() else ", ceiling cut away")
    if gt is not None:
        note += f"; same colour = matched instances (IoU > {MATCH_IOU:g}), grey = no instance"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=11 if title else 10)
    fig.panels = images
    fig.info = {"pred_instances": n_p, "gt_instances": n_g, "matched": int((match >= 0).sum()), "matched50": hits50}
    return fig


def save_instances_png(coord: np.ndarray, pred_instance: np.ndarray, gt_instance: np.ndarray | None,
                       path: str | Path, title: str = "", pred_class: np.ndarray | None = None,
                       gt_class: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                       pred_score: np.ndarray | None = None) -> Path:
    """Write predicted instances beside the ground-truth instances of a scene; returns the PNG path.

    Args:
        coord: ``(N, 3)`` float metres.
        pred_instance: ``(N,)`` int predicted instance id of every point (``-1`` = none).
        gt_instance: ``(N,)`` int ground-truth instance id (``-1`` = none) or ``None`` (prediction only).
        pred_class, gt_class: ``(N,)`` int class of each point's instance (``-1`` = none): labels the instances.
        class_names: names indexed by class id (default ``class <i>``).
        pred_score: ``(N,)`` float score of each point's predicted instance (``NaN`` = none), shown in the labels.
    """
    return save_figure(instances_figure(coord, pred_instance, gt_instance, title, pred_class, gt_class,
                                        class_names, pred_score), path)


# ----------------------------------------------------------------------------- boxes
def as_boxes(boxes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (D, 6) float64, classes (D,) int64 (-1 unknown), scores (D,) float64 (NaN unknown))`` of any
    of the box forms in the module docstring (``None`` = no boxes)."""
    if boxes is None:
        return np.zeros((0, 6)), np.zeros(0, np.int64), np.zeros(0)
    if hasattr(boxes, "boxes"):
        b = np.asarray(boxes.boxes, np.float64).reshape(-1, 6)
        d = len(b)
        cls = getattr(boxes, "classes", None)
        score = getattr(boxes, "scores", None)
        return (b, np.full(d, -1, np.int64) if cls is None else np.asarray(cls, np.int64).reshape(d),
                np.full(d, np.nan) if score is None else np.asarray(score, np.float64).reshape(d))
    if isinstance(boxes, tuple) and len(boxes) in (2, 3) and np.ndim(boxes[0]) == 2:
        b = np.asarray(boxes[0], np.float64).reshape(-1, 6)
        d = len(b)
        score = np.asarray(boxes[2], np.float64).reshape(d) if len(boxes) == 3 else np.full(d, np.nan)
        return b, np.asarray(boxes[1], np.int64).reshape(d), score
    if isinstance(boxes, np.ndarray):
        arr = np.asarray(boxes, np.float64).reshape(len(boxes), -1) if boxes.size else np.zeros((0, 6))
        if arr.shape[1] not in (6, 7, 8):
            raise ValueError(f"box arrays must have 6, 7 or 8 columns, got {arr.shape}")
        d = len(arr)
        cls = arr[:, 6].astype(np.int64) if arr.shape[1] >= 7 else np.full(d, -1, np.int64)
        score = arr[:, 7] if arr.shape[1] == 8 else np.full(d, np.nan)
        return arr[:, :6].copy(), cls, score.astype(np.float64)
    rows = list(boxes)
    if not rows:
        return np.zeros((0, 6)), np.zeros(0, np.int64), np.zeros(0)
    b = np.array([np.concatenate([np.asarray(r[0], np.float64).reshape(3), np.asarray(r[1], np.float64).reshape(3)])
                  for r in rows])
    cls = np.array([int(r[2]) if len(r) > 2 else -1 for r in rows], np.int64)
    score = np.array([float(r[3]) if len(r) > 3 else np.nan for r in rows], np.float64)
    return b, cls, score


def top_boxes(boxes: Any, max_boxes: int | None = 20, min_score: float = 0.0, one_per_box: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes worth drawing, highest score first, as :func:`as_boxes` returns them.

    ``one_per_box``: a detector with per-class proposals (VoteNet's evaluation) repeats every kept box once
    per class; only the best-scoring class of each distinct box is kept. Then boxes scoring below
    ``min_score`` are dropped and the ``max_boxes`` best kept (``None`` = all).
    """
    b, cls, score = as_boxes(boxes)
    s = np.where(np.isfinite(score), score, -np.inf)
    order = np.argsort(-s, kind="stable")
    if one_per_box and len(b):
        _, first = np.unique(np.round(b[order], 9), axis=0, return_index=True)
        order = order[np.sort(first)]
    order = order[~(s[order] < min_score)]
    if max_boxes is not None:
        order = order[:max_boxes]
    return b[order], cls[order], score[order]


def _box_edges(boxes: np.ndarray) -> np.ndarray:
    """``(D, 12, 2, 3)`` end points of the 12 edges of each axis-aligned box ``(D, 6)``."""
    signs = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    corners = boxes[:, None, :3] + signs[None] * boxes[:, None, 3:]                     # (D, 8, 3)
    pairs = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)
                      if int(np.abs(signs[i] - signs[j]).sum() + 0.5) == 1])             # (12, 2)
    return corners[:, pairs]


def _draw_boxes(ax, cam: Camera, boxes: np.ndarray, colors: np.ndarray, labels: list[str | None]) -> None:
    if not len(boxes):
        return
    edges = _box_edges(boxes)
    u, v, _ = cam.project(edges.reshape(-1, 3))
    u, v = u.reshape(edges.shape[:3]), v.reshape(edges.shape[:3])
    from matplotlib.collections import LineCollection

    segs = list(np.stack([u, v], axis=-1).reshape(-1, 2, 2))                            # D * 12 of (2, 2)
    ax.add_collection(LineCollection(segs, colors=np.repeat(colors, 12, axis=0), linewidths=1.6, alpha=0.95))
    for i, text in enumerate(labels):
        if text:
            ax.text(u[i].min(), v[i].min() - 2, text, fontsize=7, ha="left", va="bottom", color="black",
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": colors[i], "edgecolor": "none", "alpha": 0.75},
                    clip_on=True)


def boxes_figure(coord: np.ndarray, pred_boxes: Any, gt_boxes: Any, title: str = "",
                 class_names: Sequence[str] | None = None, color: Any = None,
                 views: Sequence[str] = ("top", "oblique"), max_labels: int = 10, panel_height: int = 420) -> Any:
    """The figure of :func:`save_boxes_png` (not saved); ``fig.panels`` holds the rendered point images
    (row by row) and ``fig.info`` the box counts."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    coord = np.asarray(coord, np.float64)
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise ValueError(f"coord must be (N, 3) with N > 0, got {coord.shape}")
    if not views or any(v not in ("top", "oblique") for v in views):
        raise ValueError(f"views must be a non-empty subset of ('top', 'oblique'), got {views}")
    sets = [as_boxes(pred_boxes)] + ([as_boxes(gt_boxes)] if gt_boxes is not None else [])
    all_cls = np.concatenate([s[1] for s in sets])
    top_cls = int(all_cls.max()) if all_cls.size else -1
    names = _names(list(class_names) if class_names is not None else None, max(top_cls + 1, 0))
    palette = class_palette(max(top_cls + 1, 1))

    def colours_of(cls: np.ndarray) -> np.ndarray:
        if color is not None:
            return np.tile(np.asarray(to_rgb(color), np.float32), (len(cls), 1))
        out = np.tile(np.asarray([0.2, 0.2, 0.2], np.float32), (len(cls), 1))
        ok = cls >= 0
        out[ok] = palette[cls[ok]] * 0.85  # a little darker than the class colour: lines on light points
        return out

    keep = below_ceiling(coord)
    pts = coord[keep]
    grey = _shaded_grey(pts)
    cols = len(sets)
    cams = [framed_camera(pts, height=panel_height, elevation=90.0 if view == "top" else 55.0) for view in views]
    width = max(c.image_size[1] for c in cams)
    present = np.unique(all_cls[all_cls >= 0]) if color is None else np.zeros(0, np.int64)
    per_row = max(1, int(cols * width / 120))
    legend_h = (0.24 * -(-present.size // per_row) + 0.1) if present.size else 0.0  # inches
    fig_h = sum(c.image_size[0] for c in cams) / 100 + 0.4 * len(views) + 0.6 + legend_h
    fig = new_figure(cols * width / 100 + 0.2 * cols, fig_h)
    panels = []
    for r, (view, cam) in enumerate(zip(views, cams)):
        images, _ = render_layers(pts, [grey], cam)
        panels.append(images[0])
        h, w = cam.image_size
        for c, (b, cls, score) in enumerate(sets):
            ax = fig.add_subplot(len(views), cols, r * cols + c + 1)
            ax.imshow(images[0], interpolation="nearest")
            ax.set_axis_off()
            if c == 0:
                ranked = np.argsort(-np.where(np.isfinite(score), score, -np.inf), kind="stable")[:max_labels]
                labels: list[str | None] = [None] * len(b)
                for i in ranked:
                    labels[i] = (names[cls[i]] if cls[i] >= 0 else "box") + \
                        (f" {score[i]:.2f}" if np.isfinite(score[i]) else "")
                what = f"prediction: {len(b)} boxes"
            else:
                labels = [names[x] if x >= 0 else None for x in cls] if len(b) <= 3 * max_labels else [None] * len(b)
                what = f"ground truth: {len(b)} boxes"
            # draw the low scores first, so the best boxes lie on top
            order = np.argsort(np.where(np.isfinite(score), score, np.inf), kind="stable")
            _draw_boxes(ax, cam, b[order], colours_of(cls[order]), [labels[i] for i in order])
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"{what} ({'top view' if view == 'top' else 'oblique view'})", fontsize=10)
    if present.size:
        handles = [Patch(facecolor=palette[c] * 0.85, edgecolor="0.3", linewidth=0.5, label=names[c]) for c in present]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), per_row), fontsize=9, frameon=False,
                   handlelength=1.2, columnspacing=1.2)
    note = f"{len(coord):,} points" + ("" if keep.all() else ", ceiling cut away")
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=11 if title else 10)
    fig.tight_layout(rect=(0, legend_h / fig_h, 1, 1))
    fig.panels = panels
    fig.info = {"pred_boxes": len(sets[0][0]), "gt_boxes": len(sets[1][0]) if len(sets) > 1 else 0}
    return fig


def save_boxes_png(coord: np.ndarray, pred_boxes: Any, gt_boxes: Any, path: str | Path, title: str = "",
                   class_names: Sequence[str] | None = None, color: Any = None,
                   views: Sequence[str] = ("top", "oblique"), max_labels: int = 10) -> Path:
    """Write predicted boxes beside the ground-truth boxes of a scene; returns the PNG path.

    Args:
        coord: ``(N, 3)`` float metres (the scene, drawn grey under the boxes).
        pred_boxes: the predictions (any form of the module docstring); every box given is drawn, the
            ``max_labels`` best-scoring ones labelled with class and score (see :func:`top_boxes`).
        gt_boxes: the ground truth (same forms) or ``None`` (prediction only).
        class_names: names indexed by class id (default ``class <i>``).
        color: one matplotlib colour for every box instead of the class colours.
        views: rows of the picture, ``"top"`` and / or ``"oblique"``.
    """
    return save_figure(boxes_figure(coord, pred_boxes, gt_boxes, title, class_names, color, views, max_labels), path)
