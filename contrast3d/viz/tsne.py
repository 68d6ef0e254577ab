"""t-SNE of per-point features coloured by semantic class (scikit-learn, PCA initialisation)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrast3d.viz.render import class_colors, class_palette, new_figure, save_figure


def _np(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def stratified_subsample(labels: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of at most ``max_points`` points, every class represented.

    Each class gets ``max_points / num_classes`` points (all of it when smaller); the budget
    left over by small classes goes to the others in proportion to their size. Seeded.
    """
    labels = np.asarray(labels).reshape(-1)
    if len(labels) <= max_points:
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), np.int64)
    left = max_points
    while left > 0 and (quota < counts).any():  # water-filling: <= num_classes + 1 rounds
        open_ = quota < counts
        share = max(left // int(open_.sum()), 1)
        add = np.where(open_, np.minimum(counts - quota, share), 0)
        before = np.cumsum(add) - add  # trim so that the round hands out at most `left`
        add = np.minimum(add, np.maximum(left - before, 0))
        quota += add
        left -= int(add.sum())
    picks = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota) if q]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def tsne_embed(feats: np.ndarray, seed: int = 0, perplexity: float = 30.0, threads: int | None = 1) -> np.ndarray:
    """``(M, 2)`` t-SNE embedding of ``(M, C)`` features (PCA init, auto learning rate).

    ``threads`` caps the OpenMP / BLAS threads (``None`` = library default). One thread is the
    default: on a busy machine sklearn's OpenMP gradient loop is 30x slower oversubscribed, and
    a few thousand points embed in seconds on one core.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    feats = np.asarray(feats, dtype=np.float32)
    perplexity = float(min(perplexity, max(1.0, (len(feats) - 1) / 3)))
    tsne = TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=perplexity, random_state=seed)
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(feats)


def tsne_plot(feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, out_png: str | Path,
              class_names: Sequence[str] | None = None, max_points: int = 5000, seed: int = 0,
              perplexity: float = 30.0, normalize: bool = True, title: str | None = None,
              threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE scatter of per-point features coloured by class, with a legend; writes a PNG.

    Args:
        feats: ``(N, C)`` features; labels: ``(N,)`` int classes (``-1`` = ignore, left out).
        class_names: names indexed by class id (legend); default ``class <id>``.
        max_points: stratified, seeded subsample size (see :func:`stratified_subsample`).
        normalize: L2-normalise the features first (what cosine-trained features need).
        threads: thread cap of the embedding, see :func:`tsne_embed`.

    Returns:
        ``(embedding (M, 2), index (M,))``: the 2-D points and the input rows they come from.
    """
    feats, labels = _np(feats).astype(np.float32), _np(labels).astype(np.int64).reshape(-1)
    if feats.ndim != 2 or feats.shape[0] != labels.shape[0]:
        raise ValueError(f"feats {feats.shape} and labels {labels.shape} do not match")
    valid = np.flatnonzero(labels >= 0)
    if len(valid) < 3:
        raise ValueError("t-SNE needs at least 3 labelled points")
    index = valid[stratified_subsample(labels[valid], max_points, seed)]
    x = feats[index]
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    emb = tsne_embed(x, seed, perplexity, threads)
    fig = tsne_figure(emb, labels[index], class_names,
                      title or f"t-SNE of {len(index)} points, {feats.shape[1]}-d features")
    save_figure(fig, out_png)
    return emb, index


def class_label(class_id: int, class_names: Sequence[str] | None) -> str:
    """The legend name of ``class_id``: its entry of ``class_names`` when there is one, else the id."""
    if class_names is not None and 0 <= class_id < len(class_names) and str(class_names[class_id]):
        return str(class_names[class_id])
    return f"class {class_id}"


def tsne_figure(emb: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None,
                title: str | None = None) -> Any:
    """Scatter of a ``(M, 2)`` embedding coloured by ``(M,)`` int class (not saved).

    Colours are the fixed class palette (:func:`~contrast3d.viz.render.class_palette`, the same in the
    prediction pictures); the legend, right of the plot, names each class with its point count.
    """
    emb, labels = np.asarray(emb, np.float64), np.asarray(labels, np.int64).reshape(-1)
    classes = np.unique(labels)
    palette = class_palette(int(classes.max()) + 1 if len(classes) else 0)
    fig = new_figure(8.5, 6.5)
    ax = fig.add_subplot(1, 1, 1)
    size = float(np.clip(12000 / max(len(emb), 1), 3, 16))
    for c in classes:
        m = labels == c
        color = palette[c] if c >= 0 else class_colors(np.array([-1]))[0]
        name = f"{class_label(int(c), class_names)} ({int(m.sum())})"
        ax.scatter(emb[m, 0], emb[m, 1], s=size, color=color, label=name, linewidths=0, alpha=0.85)
    ncol = 1 if len(classes) <= 22 else 2
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=max(1.0, 6 / np.sqrt(size)), fontsize=9,
              frameon=False, ncol=ncol, handletextpad=0.3, title="class (points)", title_fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return fig
