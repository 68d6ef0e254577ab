"""4DContrast's scene-object sequence figure: the ``t`` frames of one generated sequence side by side.

:func:`sequence_figure` draws a :class:`~contrast3d.data.fourd.SceneObjectSequence` (frames in world
coordinates, before the per-frame training augmentation); :func:`sequence_from_scene` generates one with
the training data code (:class:`~contrast3d.data.sequence_dataset.SceneObjectSequenceDataset`, default
:class:`~contrast3d.data.sequence_dataset.SequenceDataConfig`: 2 cm scene, 4 frames, 1,000 object points,
5-15 chunks, the paper's discard rules) and draws it. What the figure shows and the choices made:

* **One camera** (:func:`tight_camera`: orthographic, top-down oblique, azimuth -55 deg, elevation 55 deg)
  framing every frame's points and the removed points, identical in every panel, so the object's motion is
  the only change besides the per-frame point sampling.
* **Static points** keep their colour (grey without colour). **The moving object** is drawn in one strong
  colour (:data:`HIGHLIGHT`, magenta) with a splat one pixel wider than the scene's, and **on top of the
  scene** (an x-ray layer, not z-buffered against it), so it is visible in every panel even where a wall or
  furniture would hide it from this camera; within the object the z-buffer still applies.
* **Removed chunks**: the scene points that the sequence's chunks removed (all frames share them: chunks
  are drawn once per sequence) are drawn in a pale tint (:data:`REMOVED`) at their true positions, so the
  holes read as pale patches, and every chunk box (clipped to the scene's bounding box, the only part that
  can hold points) is outlined in orange. Points dropped by the per-frame random sampling (10 %) are
  simply absent.
* **Trajectory**: the object's positions over all frames (on the floor) as a thin black path, the current
  frame's position circled; these lines and the chunk outlines lie below the object, which is drawn once more
  on top of them.

The panels are placed at exact pixel positions (one image pixel = one PNG pixel, :func:`panel_figure`), so
callers and tests can crop a panel out of the PNG (:attr:`SequenceFigure.boxes`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.data.fourd import SceneObjectSequence, points_in_boxes
from contrast3d.errors import DataError
from contrast3d.viz.render import Camera, auto_radius, new_figure, splat

#: Colour of the moving object's points (RGB in [0, 1]).
HIGHLIGHT = (1.0, 0.0, 1.0)
#: Colour of the scene points inside the removed chunks.
REMOVED = (1.0, 0.86, 0.62)
#: Colour of the static points of a scene without colour.
STATIC_GREY = (0.62, 0.62, 0.62)
CHUNK_EDGE = "darkorange"
#: The 12 edges of a box as pairs of corner indices (corner ``k`` = bits (x, y, z) of ``k``).
BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


@dataclass
class SequenceFigure:
    """What :func:`sequence_figure` drew.

    Attributes:
        png: the PNG path.
        panels: ``t`` rendered ``(H, W, 3)`` float32 frames (without the overlaid lines).
        object_pixels: ``t`` counts of pixels showing an object point in each panel.
        boxes: ``t`` ``(row0, row1, col0, col1)`` pixel boxes of the panels in the PNG (end exclusive).
        camera: the shared camera.
        info: what :func:`sequence_from_scene` generated (empty from :func:`sequence_figure`).
    """

    png: Path
    panels: list[np.ndarray]
    object_pixels: list[int]
    boxes: list[tuple[int, int, int, int]]
    camera: Camera
    info: dict[str, Any] = field(default_factory=dict)


def panel_figure(images: Sequence[np.ndarray], titles: Sequence[str], suptitle: str | None = None, *,
                 gap: int = 12):
    """A headless figure with the ``(H_i, W_i, 3)`` images side by side at exact pixel positions.

    Each image occupies exactly its own pixel size at dpi 100 (``interpolation="nearest"``), so the PNG
    written by :func:`save_exact` shows every image pixel unchanged. Axes use pixel coordinates (column
    ``u``, row ``v``) for overlays. Titles are wrapped to their panel's width (the figure title to the
    figure's) and the space above the panels grows with the number of lines.

    Returns:
        ``(figure, axes list, boxes)``; boxes are ``(row0, row1, col0, col1)`` in the PNG, end exclusive.
    """
    import textwrap

    heights = [int(im.shape[0]) for im in images]
    widths = [int(im.shape[1]) for im in images]
    fig_w = sum(widths) + gap * (len(images) + 1)
    names = [textwrap.wrap(str(t), max(12, int(w / 7.0))) or [""] for t, w in zip(titles, widths)]
    sup = textwrap.wrap(suptitle, max(20, int(fig_w / 9.0))) if suptitle else []
    title_px = 8 + 13 * max(len(n) for n in names)
    sup_px = 10 + 16 * len(sup) if sup else 0
    top = title_px + sup_px
    fig_h = top + max(heights) + gap
    fig = new_figure(fig_w / 100, fig_h / 100)
    axes, boxes = [], []
    left = gap
    for im, lines, h, w in zip(images, names, heights, widths):
        ax = fig.add_axes((left / fig_w, (fig_h - top - h) / fig_h, w / fig_w, h / fig_h))
        ax.imshow(np.clip(im, 0, 1), interpolation="nearest", aspect="auto")
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
        fig.text((left + w / 2) / fig_w, 1 - (top - 4) / fig_h, "\n".join(lines), ha="center", va="bottom",
                 fontsize=9, linespacing=1.1)
        axes.append(ax)
        boxes.append((top, top + h, left, left + w))
        left += w + gap
    if sup:
        fig.text(0.5, 1 - 6 / fig_h, "\n".join(sup), ha="center", va="top", fontsize=11, linespacing=1.1)
    return fig, axes, boxes


def save_exact(fig, out: str | Path) -> Path:
    """Write a :func:`panel_figure` as PNG at its exact pixel size (creates the parent folder)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(K, 8, 3)`` corners of ``K`` axis-aligned boxes ``[lo, hi]`` (corner ``k``: bit 0 x, bit 1 y, bit 2 z)."""
    lo, hi = np.asarray(lo, np.float64).reshape(-1, 3), np.asarray(hi, np.float64).reshape(-1, 3)
    bits = (np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1  # (8, 3)
    return np.where(bits[None].astype(bool), hi[:, None, :], lo[:, None, :])


def tight_camera(coord: np.ndarray, azimuth: float = -55.0, elevation: float = 55.0,
                 image_size: tuple[int, int] = (360, 480), margin: float = 0.03) -> Camera:
    """:meth:`Camera.fit`'s viewing direction, framed on the projected points themselves (not on the corners
    of their 3D bounding box, which leave a room small in the middle of an oblique view)."""
    cam = Camera.fit(coord, azimuth=azimuth, elevation=elevation, image_size=image_size, margin=margin)
    proj = np.asarray(coord, np.float64).reshape(-1, 3) @ cam.rotation[:2].T
    pmin, pmax = proj.min(0), proj.max(0)
    h, w = cam.image_size
    scale = float(np.min(np.array([w, h], np.float64) * (1 - 2 * margin) / np.maximum(pmax - pmin, 1e-6)))
    centre = (pmin + pmax) / 2
    origin = np.array([centre[0] - w / (2 * scale), centre[1] + h / (2 * scale)])
    return Camera(cam.rotation, origin, scale, cam.image_size)


def render_frame(cam: Camera, static: np.ndarray, static_rgb: np.ndarray, obj: np.ndarray,
                 radius: int, object_radius: int, highlight: tuple[float, float, float] = HIGHLIGHT,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """One panel: the z-buffered static layer, then the object layer drawn over it.

    Args:
        static: ``(N, 3)`` metres, static points (scene, and the pale removed points); static_rgb ``(N, 3)``.
        obj: ``(M, 3)`` metres, object points (all drawn in ``highlight``).
        radius, object_radius: splat radii in pixels.

    Returns:
        ``(image (H, W, 3) float32, object_mask (H, W) bool)``.
    """
    u, v, d = cam.project(static)
    image, _ = splat(u, v, d, static_rgb, cam.image_size, radius, background)
    mask = np.zeros(cam.image_size, bool)
    if len(obj):
        ou, ov, od = cam.project(obj)
        colors = np.broadcast_to(np.asarray(highlight, np.float32), (len(obj), 3))
        _, index = splat(ou, ov, od, colors, cam.image_size, object_radius, background)
        mask = index >= 0
        image[mask] = np.asarray(highlight, np.float32)
    return image, mask


def sequence_figure(seq: SceneObjectSequence, out_png: str | Path, *, scene_coord: np.ndarray | None = None,
                    title: str | None = None, image_size: tuple[int, int] = (360, 480),
                    point_radius: int | None = None, highlight: tuple[float, float, float] = HIGHLIGHT,
                    azimuth: float = -55.0, elevation: float = 55.0) -> SequenceFigure:
    """Draw the frames of ``seq`` side by side (module docstring for what is shown).

    Args:
        seq: a generated sequence (frames in world coordinates, metres).
        out_png: output path (parent folders are created).
        scene_coord: ``(N, 3)`` the static scene the sequence was composed from (the points
            ``source_index`` refers to); with it the removed chunks' points are drawn pale. ``None``
            draws only the chunk outlines.
        title: figure title.
        image_size: ``(H, W)`` pixels per panel.
        point_radius: splat radius of the static points in pixels (default from the point density); the
            object uses one pixel more.
        highlight: RGB in [0, 1] of the object points.
        azimuth, elevation: camera direction in degrees (:meth:`Camera.fit`).
    """
    frames = seq.frames
    if not frames:
        raise ValueError("the sequence has no frames")
    removed = np.zeros((0, 3), np.float64)
    if scene_coord is not None:
        scene_coord = np.asarray(scene_coord, np.float64)
        removed = scene_coord[points_in_boxes(scene_coord, seq.chunk_lo, seq.chunk_hi)]
    every = np.concatenate([f.coord for f in frames] + [removed]).astype(np.float64)
    cam = tight_camera(every, azimuth=azimuth, elevation=elevation, image_size=image_size)
    n_static = max(int((~f.is_object).sum()) for f in frames) + len(removed)
    radius = auto_radius(n_static, cam.image_size) if point_radius is None else int(point_radius)
    pale = np.broadcast_to(np.asarray(REMOVED, np.float32), (len(removed), 3))
    panels, masks = [], []
    for f in frames:
        static = ~f.is_object
        rgb = (np.clip(f.color[static], 0, 1).astype(np.float32) if f.color is not None
               else np.broadcast_to(np.asarray(STATIC_GREY, np.float32), (int(static.sum()), 3)))
        image, mask = render_frame(cam, np.concatenate([f.coord[static], removed]), np.concatenate([rgb, pale]),
                                   f.coord[f.is_object], radius, radius + 1, highlight)
        panels.append(image)
        masks.append(mask)
    titles = [f"frame {k}: {int((~f.is_object).sum())} static + {int(f.is_object.sum())} object points"
              for k, f in enumerate(frames)]
    if title is None:
        title = (f"scene-object sequence: {len(frames)} frames, object highlighted, {len(seq.chunk_lo)} removed "
                 f"chunks (orange boxes, pale points); scene kept {seq.scene_keep:.0%}, object {seq.object_keep:.0%}")
    fig, axes, boxes = panel_figure(panels, titles, title)
    # overlays: chunk boxes (clipped to where the scene is) and the trajectory, in panel pixel coordinates
    ref = scene_coord if scene_coord is not None else every
    lo_s, hi_s = ref.min(0), ref.max(0)
    lo_c, hi_c = np.maximum(seq.chunk_lo, lo_s), np.minimum(seq.chunk_hi, hi_s)
    ok = np.all(lo_c <= hi_c, axis=1)
    corners = box_corners(lo_c[ok], hi_c[ok])  # (K, 8, 3)
    cu, cv, _ = cam.project(corners.reshape(-1, 3))
    cu, cv = cu.reshape(-1, 8), cv.reshape(-1, 8)
    edges = np.asarray(BOX_EDGES)
    seg_u = cu[:, edges].reshape(-1, 2).T  # (2, K * 12): one column per edge
    seg_v = cv[:, edges].reshape(-1, 2).T
    path = np.column_stack([seq.positions, np.full(len(seq.positions), seq.floor_z)])
    pu, pv, _ = cam.project(path)
    h, w = cam.image_size
    for k, ax in enumerate(axes):
        if seg_u.size:
            ax.plot(seg_u, seg_v, color=CHUNK_EDGE, linewidth=0.9, alpha=0.9, zorder=2)
        ax.plot(pu, pv, color="black", linewidth=1.0, linestyle="--", marker="o", markersize=3, zorder=2)
        ax.plot(pu[k], pv[k], marker="o", markersize=22, markerfacecolor="none", markeredgecolor="black",
                markeredgewidth=1.2, linestyle="none", zorder=2)
        top = np.zeros((h, w, 4), np.float32)  # the object again, above the lines: never hidden by an overlay
        top[masks[k]] = (*highlight, 1.0)
        ax.imshow(top, interpolation="nearest", aspect="auto", zorder=3)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    png = save_exact(fig, out_png)
    return SequenceFigure(png=png, panels=panels, object_pixels=[int(m.sum()) for m in masks], boxes=boxes,
                          camera=cam)


def sequence_from_scene(scene: str | Path, out_png: str | Path, *, objects_dir: str | Path | None = None,
                        seed: int = 0, config: Any = None, title: str | None = None,
                        image_size: tuple[int, int] = (360, 480)) -> SequenceFigure:
    """Generate one 4DContrast sequence in ``scene`` and draw it with :func:`sequence_figure`.

    Args:
        scene: a Pointcept scene folder (``coord.npy`` ...) or a folder of them (the first, sorted, is the
            scene; the others supply furniture objects when ``objects_dir`` is not given).
        out_png: output PNG.
        objects_dir: folder of OFF/OBJ/PLY objects (default: furniture instances cut from the scenes; with a
            single scene its own furniture, as in training).
        seed: seeds everything (``np.random.default_rng(seed)``: objects, trajectory, chunks, sampling).
        config: a :class:`~contrast3d.data.sequence_dataset.SequenceDataConfig` (default: the paper's);
            ``objects_dir`` overrides its field when given.
        title: figure title.

    Returns:
        The :class:`SequenceFigure`; ``info`` has ``scene``, ``object``, ``frames``, ``chunks``,
        ``scene_keep``, ``object_keep``, ``points`` (per frame) and ``object_points`` (per frame).
    """
    from dataclasses import replace

    from contrast3d.data.scene_dataset import find_scene_dirs
    from contrast3d.data.sequence_dataset import SceneObjectSequenceDataset, SequenceDataConfig

    cfg = config if config is not None else SequenceDataConfig()
    if objects_dir is not None:
        cfg = replace(cfg, objects_dir=str(objects_dir))
    dirs = find_scene_dirs(scene, "coord.npy")
    if not dirs:
        raise DataError(scene, "no Pointcept scene folder (coord.npy) here; run 'contrast3d convert' or "
                               "'contrast3d prepare scenes' first")
    dataset = SceneObjectSequenceDataset(dirs, cfg, on_error="raise")
    index, obj, seq = dataset.make_sequence(0, np.random.default_rng(seed))
    name = dataset.scene_dirs[index].name
    fig = sequence_figure(seq, out_png, scene_coord=dataset.scene(index).coord, image_size=image_size,
                          title=title or (f"{name}: {seq.num_frames}-frame sequence of {Path(obj.source).name} "
                                          f"(magenta), {len(seq.chunk_lo)} removed chunks (orange), seed {seed}"))
    fig.info = {"scene": name, "object": obj.source, "frames": seq.num_frames, "chunks": int(len(seq.chunk_lo)),
                "scene_keep": seq.scene_keep, "object_keep": seq.object_keep,
                "points": [len(f) for f in seq.frames], "object_points": [int(f.is_object.sum()) for f in seq.frames]}
    return fig


__all__ = ["HIGHLIGHT", "REMOVED", "SequenceFigure", "panel_figure", "save_exact", "box_corners", "tight_camera",
           "render_frame",
           "sequence_figure", "sequence_from_scene"]
