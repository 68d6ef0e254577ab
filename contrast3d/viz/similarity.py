"""Feature-similarity maps: how similar every point's feature is to one query point's feature.

:func:`similarity_map` colours one scene by cosine similarity to a query point of the same scene;
:func:`similarity_map_pair` shows two views side by side, view 2 coloured by similarity to the
query feature of view 1 (the cross-view figure of PointContrast / contrastive scene papers).
Both write a PNG with a colour bar and the query marked by a star.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrast3d.viz.render import (
    Camera,
    auto_radius,
    colorize,
    new_figure,
    save_figure,
    splat,
)

ArrayLike = np.ndarray | torch.Tensor


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def cosine_similarity_to(feats: ArrayLike, query: ArrayLike) -> np.ndarray:
    """``(N,)`` float32 cosine similarity of every row of ``feats`` ``(N, C)`` to ``query`` ``(C,)``."""
    f = _np(feats).astype(np.float64)
    q = _np(query).astype(np.float64).reshape(-1)
    if f.ndim != 2 or f.shape[1] != q.shape[0]:
        raise ValueError(f"feats {f.shape} and query {q.shape} do not match")
    fn = np.linalg.norm(f, axis=1) * max(np.linalg.norm(q), 1e-12)
    return (f @ q / np.maximum(fn, 1e-12)).astype(np.float32)


def _panel(ax: Any, coord: np.ndarray, values: np.ndarray, cam: Camera, cmap: str, vmin: float, vmax: float,
           radius: int | None, rgb: np.ndarray | None = None) -> np.ndarray:
    """Draw one rendered view on ``ax``; return the ``(N, 2)`` pixel position of every point."""
    colors = rgb if rgb is not None else colorize(values, cmap, vmin, vmax)[0]
    u, v, depth = cam.project(coord)
    r = auto_radius(len(coord), cam.image_size) if radius is None else radius
    image, _ = splat(u, v, depth, colors, cam.image_size, r)
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    return np.stack([u, v], axis=1)


def _star(ax: Any, uv: np.ndarray, label: str, marker: str = "*", color: str = "magenta") -> None:
    ax.plot(uv[0], uv[1], marker=marker, markersize=20, markerfacecolor=color, markeredgecolor="black",
            markeredgewidth=1.2, linestyle="none", label=label)


def _colorbar(fig: Any, axes: Any, cmap: str, vmin: float, vmax: float) -> None:
    import matplotlib
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=matplotlib.colors.Normalize(vmin, vmax), cmap=matplotlib.colormaps[cmap])
    fig.colorbar(sm, ax=axes, fraction=0.035, pad=0.02, label="cosine similarity to query")


def similarity_map(coord: ArrayLike, feats: ArrayLike, query_index: int, out_png: str | Path, *,
                   cmap: str = "jet", vmin: float | None = None, vmax: float | None = None,
                   view: Camera | None = None, image_size: tuple[int, int] = (600, 800),
                   point_radius: int | None = None, title: str | None = None) -> np.ndarray:
    """Render one scene coloured by cosine similarity to point ``query_index``; write a PNG.

    Args:
        coord: ``(N, 3)`` metres; feats: ``(N, C)`` per-point features.
        query_index: the query point (marked with a star).
        vmin, vmax: colour range (default the range of the similarities).
        view: a fixed :class:`Camera` (default fitted to ``coord``).

    Returns:
        ``(N,)`` float32 similarities.
    """
    coord, feats = _np(coord).astype(np.float64), _np(feats)
    if not 0 <= query_index < len(coord):
        raise IndexError(f"query_index {query_index} out of range for {len(coord)} points")
    sim = cosine_similarity_to(feats, feats[query_index])
    _, lo, hi = colorize(sim, cmap, vmin, vmax)
    cam = view if view is not None else Camera.fit(coord, image_size=image_size)
    h, w = cam.image_size
    fig = new_figure(w / 100 + 1.4, h / 100 + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    uv = _panel(ax, coord, sim, cam, cmap, lo, hi, point_radius)
    _star(ax, uv[query_index], "query")
    ax.set_title(title or f"similarity to point {query_index}")
    _colorbar(fig, ax, cmap, lo, hi)
    save_figure(fig, out_png)
    return sim


def similarity_map_pair(coord1: ArrayLike, feats1: ArrayLike, coord2: ArrayLike, feats2: ArrayLike,
                        query_index: int, out_png: str | Path, *, match_index: int | None = None,
                        rgb1: ArrayLike | None = None, shared_view: bool = True, cmap: str = "jet",
                        vmin: float | None = None, vmax: float | None = None,
                        image_size: tuple[int, int] = (500, 650), point_radius: int | None = None,
                        titles: tuple[str, str] = ("view 1 (query)", "view 2")) -> tuple[np.ndarray, np.ndarray]:
    """Two panels: view 1 with the query, view 2 coloured by similarity to the query's feature.

    Args:
        coord1, feats1, coord2, feats2: ``(N_i, 3)`` metres and ``(N_i, C)`` features of the views.
        query_index: query point in view 1 (star in panel 1).
        match_index: optional true correspondence of the query in view 2 (star in panel 2); the
            most similar point of view 2 is always marked with a cross.
        rgb1: optional ``(N_1, 3)`` colours of view 1; default view 1 coloured by its own
            similarity to the query (same colour scale as view 2).
        shared_view: one camera fitted to both views (right when both are in world coordinates);
            ``False`` fits one camera per view.

    Returns:
        ``(sim1 (N_1,), sim2 (N_2,))`` float32 similarities to the query feature.
    """
    coord1, coord2 = _np(coord1).astype(np.float64), _np(coord2).astype(np.float64)
    feats1, feats2 = _np(feats1), _np(feats2)
    if not 0 <= query_index < len(coord1):
        raise IndexError(f"query_index {query_index} out of range for {len(coord1)} points of view 1")
    query = feats1[query_index]
    sim1, sim2 = cosine_similarity_to(feats1, query), cosine_similarity_to(feats2, query)
    _, lo, hi = colorize(np.concatenate([sim1, sim2]), cmap, vmin, vmax)
    if shared_view:
        cam1 = cam2 = Camera.fit(np.concatenate([coord1, coord2]), image_size=image_size)
    else:
        cam1, cam2 = Camera.fit(coord1, image_size=image_size), Camera.fit(coord2, image_size=image_size)
    h, w = image_size
    fig = new_figure(2 * w / 100 + 1.6, h / 100 + 0.5)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors1 = None
    if rgb1 is not None:
        colors1 = _np(rgb1).astype(np.float32)
        colors1 = colors1 / 255.0 if colors1.max() > 1.0 else colors1
    uv1 = _panel(ax1, coord1, sim1, cam1, cmap, lo, hi, point_radius, colors1)
    uv2 = _panel(ax2, coord2, sim2, cam2, cmap, lo, hi, point_radius)
    _star(ax1, uv1[query_index], "query")
    best = int(np.argmax(sim2))
    _star(ax2, uv2[best], "most similar", marker="X", color="white")
    if match_index is not None:
        _star(ax2, uv2[match_index], "true match")
    ax2.legend(loc="lower right", fontsize=8, framealpha=0.8, markerscale=0.5)
    ax1.set_title(titles[0])
    ax2.set_title(titles[1])
    _colorbar(fig, [ax1, ax2], cmap, lo, hi)
    save_figure(fig, out_png)
    return sim1, sim2
