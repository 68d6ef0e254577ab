"""Feature-similarity maps: how similar every point's feature is to one query point's feature.

:func:`similarity_map` colours one scene by cosine similarity to a query point of the same scene,
optionally beside an RGB or label panel of the same view; :func:`similarity_map_pair` shows two views
side by side, view 2 coloured by similarity to the query feature of view 1 (the cross-view figure of
PointContrast / contrastive scene papers). Both write a PNG with a colour bar and the query marked by a star.

Colour range (``value_range``): ``"fixed"`` is the whole cosine range [-1, 1] on a diverging map (white =
orthogonal), so two checkpoints are comparable and a collapse (every point ~1) shows as a uniformly red
scene; ``"unit"`` is [0, 1] and ``"auto"`` the similarities' own min..max, both on a perceptual
sequential map (viridis). Diverging maps are used only for the signed range.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from contrast3d.viz.render import (
    Camera,
    auto_radius,
    class_colors,
    class_palette,
    colorize,
    framed_camera,
    new_figure,
    save_figure,
    splat,
)

ArrayLike = np.ndarray | torch.Tensor
ValueRange = Literal["fixed", "unit", "auto"]
#: The ``value_range`` choices, see the module docstring.
VALUE_RANGES: tuple[str, ...] = ("fixed", "unit", "auto")
#: Colour map of the signed range [-1, 1] and of the others.
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "viridis"
#: Panel background behind a diverging map (its middle is white, so white points must not vanish).
DIVERGING_BACKGROUND = (0.68, 0.68, 0.68)


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


def similarity_range(sim: np.ndarray, value_range: str = "fixed", vmin: float | None = None,
                     vmax: float | None = None) -> tuple[float, float]:
    """The colour range ``(lo, hi)`` of similarities ``sim`` ``(N,)``.

    ``"fixed"`` -> (-1, 1), ``"unit"`` -> (0, 1), ``"auto"`` -> (min, max) of ``sim`` (widened by 1e-3
    when constant); ``vmin`` / ``vmax`` override either end.
    """
    if value_range == "fixed":
        lo, hi = -1.0, 1.0
    elif value_range == "unit":
        lo, hi = 0.0, 1.0
    elif value_range == "auto":
        sim = np.asarray(sim, np.float64)
        finite = sim[np.isfinite(sim)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (-1.0, 1.0)
        if hi - lo < 1e-3:
            lo, hi = lo - 1e-3, hi + 1e-3
    else:
        raise ValueError(f"value_range must be one of {', '.join(VALUE_RANGES)}, got {value_range!r}")
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    if not hi > lo:
        raise ValueError(f"empty colour range [{lo}, {hi}]")
    return lo, hi


def default_cmap(lo: float, hi: float) -> str:
    """Diverging :data:`DIVERGING_CMAP` for a range symmetric about 0 (white = 0), else :data:`SEQUENTIAL_CMAP`."""
    return DIVERGING_CMAP if lo < 0 < hi and abs(lo + hi) < 1e-9 else SEQUENTIAL_CMAP


def _background(cmap: str) -> tuple[float, float, float]:
    import matplotlib

    mid = np.asarray(matplotlib.colormaps[cmap](0.5)[:3])
    return DIVERGING_BACKGROUND if mid.min() > 0.8 else (1.0, 1.0, 1.0)


def _panel(ax: Any, coord: np.ndarray, colors: np.ndarray, cam: Camera, radius: int | None,
           background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Draw one rendered view with per-point ``colors`` ``(N, 3)`` on ``ax``; return ``(N, 2)`` pixel positions."""
    u, v, depth = cam.project(coord)
    r = auto_radius(len(coord), cam.image_size) if radius is None else radius
    image, _ = splat(u, v, depth, colors, cam.image_size, r, background)
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    return np.stack([u, v], axis=1)


def _star(ax: Any, uv: np.ndarray, label: str, marker: str = "*", color: str = "magenta") -> None:
    ax.plot(uv[0], uv[1], marker=marker, markersize=20, markerfacecolor=color, markeredgecolor="black",
            markeredgewidth=1.2, linestyle="none", label=label)


def _colorbar(fig: Any, axes: Any, cmap: str, vmin: float, vmax: float) -> Any:
    import matplotlib
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=matplotlib.colors.Normalize(vmin, vmax), cmap=matplotlib.colormaps[cmap])
    return fig.colorbar(sm, ax=axes, fraction=0.035, pad=0.02, label="cosine similarity to query")


def _stats(sim: np.ndarray) -> str:
    return f"min {np.min(sim):.2f}, median {np.median(sim):.2f}, max {np.max(sim):.2f}"


def _rgb01(rgb: ArrayLike) -> np.ndarray:
    colors = _np(rgb).astype(np.float32)
    return colors / 255.0 if colors.size and colors.max() > 1.0 else colors


def _with_step(title: str, step: int | None) -> str:
    return title if step is None else f"{title} (step {step})"


def similarity_figure(coord: ArrayLike, sim: np.ndarray, query_index: int, *, value_range: str = "fixed",
                      cmap: str | None = None, vmin: float | None = None, vmax: float | None = None,
                      view: Camera | None = None, image_size: tuple[int, int] = (600, 800),
                      point_radius: int | None = None, title: str | None = None, step: int | None = None,
                      rgb: ArrayLike | None = None, labels: ArrayLike | None = None,
                      class_names: list[str] | None = None) -> Any:
    """The figure of :func:`similarity_map` from precomputed similarities ``sim`` ``(N,)`` (not saved).

    With ``rgb`` ``(N, 3)`` (float [0, 1] or 0..255) or ``labels`` ``(N,)`` (int, ``-1`` grey) a context
    panel of the same view is drawn left of the similarity panel (``rgb`` wins when both are given).
    """
    from matplotlib.patches import Patch

    coord = _np(coord).astype(np.float64)
    sim = np.asarray(sim, np.float32)
    lo, hi = similarity_range(sim, value_range, vmin, vmax)
    cmap = cmap or default_cmap(lo, hi)
    cam = view if view is not None else framed_camera(coord, height=image_size[0],
                                                       max_aspect=max(image_size[1] / image_size[0], 1.0))
    h, w = cam.image_size
    context, legend = None, []
    if rgb is not None:
        context = ("RGB", _rgb01(rgb))
    elif labels is not None:
        ids = _np(labels).astype(np.int64).reshape(-1)
        context = ("labels", class_colors(ids))
        present = np.unique(ids[ids >= 0])
        palette = class_palette(int(present.max()) + 1 if len(present) else 0)
        names = list(class_names or [])
        legend = [Patch(facecolor=palette[c], edgecolor="0.3", linewidth=0.5,
                        label=names[c] if c < len(names) else str(c)) for c in present]
        if (ids < 0).any():
            legend.append(Patch(facecolor=class_colors(np.array([-1]))[0], edgecolor="0.3", linewidth=0.5,
                                label="unlabelled"))
    n_panels = 2 if context is not None else 1
    fig = new_figure(n_panels * w / 100 + 1.4, h / 100 + (0.9 if title or step is not None else 0.5))
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    fig.subplots_adjust(wspace=0.04)
    ax = axes[-1]
    uv = _panel(ax, coord, colorize(sim, cmap, lo, hi)[0], cam, point_radius, _background(cmap))
    _star(ax, uv[query_index], "query")
    ax.set_title(f"cosine similarity to the query\n{_stats(sim)}", fontsize=10)
    if context is not None:
        uv0 = _panel(axes[0], coord, np.clip(context[1], 0, 1), cam, point_radius)
        _star(axes[0], uv0[query_index], "query")
        axes[0].set_title(f"{context[0]}\n(query: star)", fontsize=10)
    if legend:
        axes[0].legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(legend), 5),
                       fontsize=8, frameon=False, handlelength=1.2, columnspacing=1.0)
    _colorbar(fig, axes, cmap, lo, hi)
    heading = title if title is not None else f"similarity to point {query_index}"
    fig.suptitle(_with_step(heading, step))
    return fig


def similarity_map(coord: ArrayLike, feats: ArrayLike, query_index: int, out_png: str | Path, *,
                   cmap: str | None = None, vmin: float | None = None, vmax: float | None = None,
                   value_range: str = "fixed", view: Camera | None = None, image_size: tuple[int, int] = (600, 800),
                   point_radius: int | None = None, title: str | None = None, step: int | None = None,
                   rgb: ArrayLike | None = None, labels: ArrayLike | None = None,
                   class_names: list[str] | None = None) -> np.ndarray:
    """Render one scene coloured by cosine similarity to point ``query_index``; write a PNG.

    Args:
        coord: ``(N, 3)`` metres; feats: ``(N, C)`` per-point features.
        query_index: the query point (marked with a star).
        cmap: matplotlib colour map (default :func:`default_cmap` of the range).
        value_range: ``"fixed"`` [-1, 1], ``"unit"`` [0, 1] or ``"auto"`` (see :func:`similarity_range`);
            ``vmin`` / ``vmax`` override either end.
        view: a fixed :class:`Camera` (default :func:`~contrast3d.viz.render.framed_camera` on ``coord``,
            ``image_size[0]`` pixels high, at most ``image_size[1]`` wide).
        title: figure title; ``step`` (the checkpoint's training step) is appended to it.
        rgb, labels, class_names: optional context panel, see :func:`similarity_figure`.

    Returns:
        ``(N,)`` float32 similarities.
    """
    coord, feats = _np(coord).astype(np.float64), _np(feats)
    if not 0 <= query_index < len(coord):
        raise IndexError(f"query_index {query_index} out of range for {len(coord)} points")
    sim = cosine_similarity_to(feats, feats[query_index])
    fig = similarity_figure(coord, sim, query_index, value_range=value_range, cmap=cmap, vmin=vmin, vmax=vmax,
                            view=view, image_size=image_size, point_radius=point_radius, title=title, step=step,
                            rgb=rgb, labels=labels, class_names=class_names)
    save_figure(fig, out_png)
    return sim


def similarity_map_pair(coord1: ArrayLike, feats1: ArrayLike, coord2: ArrayLike, feats2: ArrayLike,
                        query_index: int, out_png: str | Path, *, match_index: int | None = None,
                        rgb1: ArrayLike | None = None, shared_view: bool = True, cmap: str | None = None,
                        vmin: float | None = None, vmax: float | None = None, value_range: str = "fixed",
                        image_size: tuple[int, int] = (500, 650), point_radius: int | None = None,
                        titles: tuple[str, str] = ("view 1 (query)", "view 2"), title: str | None = None,
                        step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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
        value_range, vmin, vmax, cmap: colour range and map, as in :func:`similarity_map`.
        title: figure title; ``step`` (the checkpoint's training step) is appended to it.

    Returns:
        ``(sim1 (N_1,), sim2 (N_2,))`` float32 similarities to the query feature.
    """
    coord1, coord2 = _np(coord1).astype(np.float64), _np(coord2).astype(np.float64)
    feats1, feats2 = _np(feats1), _np(feats2)
    if not 0 <= query_index < len(coord1):
        raise IndexError(f"query_index {query_index} out of range for {len(coord1)} points of view 1")
    query = feats1[query_index]
    sim1, sim2 = cosine_similarity_to(feats1, query), cosine_similarity_to(feats2, query)
    lo, hi = similarity_range(np.concatenate([sim1, sim2]), value_range, vmin, vmax)
    cmap = cmap or default_cmap(lo, hi)
    if shared_view:
        cam1 = cam2 = Camera.fit(np.concatenate([coord1, coord2]), image_size=image_size)
    else:
        cam1, cam2 = Camera.fit(coord1, image_size=image_size), Camera.fit(coord2, image_size=image_size)
    h, w = image_size
    heading = title if title is not None else ("cross-view similarity" if step is not None else None)
    fig = new_figure(2 * w / 100 + 1.6, h / 100 + (0.9 if heading else 0.5))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    fig.subplots_adjust(wspace=0.04)
    background = _background(cmap)
    if rgb1 is not None:
        uv1 = _panel(ax1, coord1, np.clip(_rgb01(rgb1), 0, 1), cam1, point_radius)
    else:
        uv1 = _panel(ax1, coord1, colorize(sim1, cmap, lo, hi)[0], cam1, point_radius, background)
    uv2 = _panel(ax2, coord2, colorize(sim2, cmap, lo, hi)[0], cam2, point_radius, background)
    _star(ax1, uv1[query_index], "query")
    best = int(np.argmax(sim2))
    _star(ax2, uv2[best], "most similar", marker="X", color="white")
    if match_index is not None:
        _star(ax2, uv2[match_index], "true match")
    ax2.legend(loc="lower right", fontsize=8, framealpha=0.8, markerscale=0.5)
    ax1.set_title(titles[0], fontsize=10)
    ax2.set_title(f"{titles[1]}\n{_stats(sim2)}", fontsize=10)
    _colorbar(fig, [ax1, ax2], cmap, lo, hi)
    if heading:
        fig.suptitle(_with_step(heading, step))
    save_figure(fig, out_png)
    return sim1, sim2
