"""GroupContrast's segment-grouping figure (the paper's Fig. 4): a scene coloured by prototype
assignment, next to its geometric (graph-cut) segments and, where labels exist, the ground truth.

:func:`grouping_figure` draws the panels from arrays; :func:`grouping_from_weights` computes the
assignments from a GroupContrast training checkpoint (``<run>/checkpoints/last.pt``): it rebuilds the
method from the checkpoint's config, loads the checkpoint's ``model`` state dict, voxelises the scene
with the run's ``data.grid_size``, runs the encoder ``f`` and projector ``g``, pools the L2-normalised
``g`` features per segment (:func:`~contrast3d.losses.groupcontrast.segment_mean`) and assigns every
segment to its most similar prototype (``argmax_n z S^T``; the temperature does not change an argmax;
with ``network="teacher"`` the teacher's centre is subtracted first, as in ``K``). Every point takes its
segment's prototype, as in training (Eq. 5).

Segments are the scene's ``superpoint`` ids when it has them (``contrast3d prepare scenes``), else the
graph-cut over-segmentation of the voxelised points (:func:`~contrast3d.data.segmentation.segment_points`,
normals estimated when missing). Colours: prototypes and classes use one fixed categorical palette (id ``k``
always gets the same colour); segments get pseudo-random colours per id; ``-1`` (none / ignore) is grey.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from contrast3d.errors import DataError
from contrast3d.viz.render import Camera, auto_radius, hashed_colors, new_figure, save_figure, splat

_GREY = np.array([0.72, 0.72, 0.72], np.float32)


def categorical_colors(ids: np.ndarray) -> np.ndarray:
    """``(N,)`` int ids -> ``(N, 3)`` float32 RGB: ids 0..39 from matplotlib's tab20 + tab20b, larger ids
    from a golden-ratio hue walk, ``< 0`` grey."""
    import matplotlib

    # tab20 / tab20b are ListedColormaps; the stubs type colormaps[...] as the Colormap base (no .colors)
    palette = np.concatenate([matplotlib.colormaps["tab20"].colors,  # type: ignore[attr-defined]
                              matplotlib.colormaps["tab20b"].colors])  # type: ignore[attr-defined]
    ids = np.asarray(ids, np.int64)
    out = np.empty((len(ids), 3), np.float32)
    out[:] = _GREY
    small = (ids >= 0) & (ids < len(palette))
    out[small] = palette[ids[small]]
    big = ids >= len(palette)
    out[big] = hashed_colors(ids[big])
    return out


def grouping_figure(coord: np.ndarray, assignment: np.ndarray, segments: np.ndarray, labels: np.ndarray | None,
                    out_png: str | Path, title: str | None = None, *, image_size: tuple[int, int] = (450, 600),
                    point_radius: int | None = None) -> Path:
    """Write the grouping figure: prototype groups | geometric segments [| ground truth], one camera.

    Args:
        coord: ``(N, 3)`` metres.
        assignment: ``(N,)`` int prototype index of every point (``-1`` = unassigned, grey).
        segments: ``(N,)`` int graph-cut segment id of every point (``-1`` = none).
        labels: ``(N,)`` int semantic labels (``-1`` = ignore) or ``None`` (no ground-truth panel).
        out_png: output path (parent folders are created).
        title: figure title.
        image_size: ``(H, W)`` pixels per panel.
        point_radius: splat radius in pixels (default from the point density).

    Returns:
        The PNG path.
    """
    coord = np.asarray(coord, np.float64)
    n = len(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or n == 0:
        raise ValueError(f"coord must be (N, 3) with N > 0, got {coord.shape}")
    arrays = {"assignment": assignment, "segments": segments, **({"labels": labels} if labels is not None else {})}
    for name, arr in arrays.items():
        if np.shape(arr) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {np.shape(arr)}")
    assignment, segments = np.asarray(assignment, np.int64), np.asarray(segments, np.int64)
    n_groups = len(np.unique(assignment[assignment >= 0]))
    n_segments = len(np.unique(segments[segments >= 0]))
    panels = [(f"prototype groups ({n_groups} used)", categorical_colors(assignment)),
              (f"geometric segments ({n_segments})", hashed_colors(segments))]
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        panels.append((f"ground truth ({len(np.unique(labels[labels >= 0]))} classes)", categorical_colors(labels)))
    cam = Camera.fit(coord, image_size=image_size)
    radius = auto_radius(n, cam.image_size) if point_radius is None else point_radius
    u, v, depth = cam.project(coord)
    h, w = cam.image_size
    fig = new_figure(len(panels) * w / 100 + 0.4, h / 100 + (0.9 if title else 0.5))
    for i, (name, colors) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        image, _ = splat(u, v, depth, colors, cam.image_size, radius)
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_png)


def group_purity(groups: np.ndarray, labels: np.ndarray) -> float:
    """Share of labelled points whose label is the majority label of their group (1 = every group is
    one class; ``nan`` without labelled, grouped points)."""
    groups, labels = np.asarray(groups, np.int64), np.asarray(labels, np.int64)
    ok = (groups >= 0) & (labels >= 0)
    if not ok.any():
        return float("nan")
    _, g = np.unique(groups[ok], return_inverse=True)
    _, y = np.unique(labels[ok], return_inverse=True)
    table = np.zeros((g.max() + 1, y.max() + 1), np.int64)
    np.add.at(table, (g, y), 1)
    return float(table.max(axis=1).sum() / ok.sum())


def _load_method(weights_path: str | Path, device: str | torch.device):
    """``(GroupContrast method with the checkpoint's weights in eval mode, its data config, the step)``."""
    from contrast3d.config import ConfigError, from_dict
    from contrast3d.engine.checkpoint import load_checkpoint
    from contrast3d.methods.groupcontrast import (
        GroupContrast,
        GroupContrastConfig,
        GroupContrastDataConfig,
    )
    from contrast3d.models.backbone import BackboneConfig

    ckpt = load_checkpoint(weights_path)
    cfg = ckpt.get("config") or {}
    if cfg.get("method_name") != "groupcontrast":
        raise DataError(weights_path, f"a checkpoint of method '{cfg.get('method_name')}', not of groupcontrast "
                                      "(the grouping figure needs its projector g and prototypes)")
    try:
        method_cfg = from_dict(GroupContrastConfig, cfg.get("method") or {}, source=str(weights_path))
        model_cfg = from_dict(BackboneConfig, cfg.get("model") or {}, source=str(weights_path))
        data_cfg = from_dict(GroupContrastDataConfig, cfg.get("data") or {}, source=str(weights_path))
    except (ConfigError, ValueError, TypeError) as err:
        raise DataError(weights_path, f"checkpoint config does not describe a GroupContrast run: {err}") from None
    if not method_cfg.grouping:
        raise DataError(weights_path, "this run was trained without grouping (method.grouping=false): no prototypes")
    method = GroupContrast(method_cfg, model_cfg, data_cfg)
    try:
        method.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        raise DataError(weights_path, f"weights do not fit the configured model: {str(err).splitlines()[0]}") from None
    return method.to(device).eval(), data_cfg, int(ckpt.get("step", 0))


@torch.no_grad()
def grouping_from_weights(weights_path: str | Path, scene_path: str | Path, out_png: str | Path, *,
                          network: Literal["student", "teacher"] = "student", device: str | torch.device = "cpu",
                          seed: int = 0, grid_size: float | None = None, title: str | None = None,
                          bn: Literal["running", "batch"] = "running") -> dict[str, Any]:
    """Prototype assignments of a scene from a GroupContrast checkpoint, drawn by :func:`grouping_figure`.

    Args:
        weights_path: a GroupContrast training checkpoint (``<run>/checkpoints/last.pt``).
        scene_path: any scene :func:`contrast3d.io.read_any` reads (Pointcept folder, PLY, ScanNet scan ...).
        out_png: output PNG.
        network: ``student`` (``f``, ``g``, ``S`` of the student) or ``teacher`` (EMA copy, centred logits).
        device: where the network runs.
        seed: seeds the voxel subsampling (one random point per voxel).
        grid_size: voxel edge in metres (default: the run's ``data.grid_size``).
        title: figure title (default: scene, network and step).
        bn: ``running`` (BatchNorm with the statistics stored in training, as fine-tuning starts) or
            ``batch`` (the scene's own statistics). Measured here: a 300-step CPU run on simulated rooms
            (BatchNorm momentum 0.01) gave 2 groups on the real ScanNet scan with its running statistics and
            10 with the scan's own, i.e. the stored statistics do not transfer across domains.

    Returns:
        ``{"png", "title", "points" (voxels drawn), "segments", "used_prototypes", "purity"}`` -- ``purity`` is
        :func:`group_purity` of the groups against the labels (``nan`` without labels).
    """
    from contrast3d.data.normals import estimate_normals
    from contrast3d.data.segmentation import segment_points
    from contrast3d.data.voxelize import GridSample
    from contrast3d.losses.groupcontrast import segment_index
    from contrast3d.models.blocks import batch_norms
    from contrast3d.structures import collate_points
    from contrast3d.viz.backbone_io import read_scene

    if network not in ("student", "teacher"):
        raise ValueError(f"network must be 'student' or 'teacher', got {network!r}")
    if bn not in ("running", "batch"):
        raise ValueError(f"bn must be 'running' or 'batch', got {bn!r}")
    method, data_cfg, step = _load_method(weights_path, device)
    if bn == "batch":  # normalise with this scene's statistics (the running buffers are updated, never saved)
        for module in batch_norms(method):
            module.train()
    cloud = read_scene(scene_path)
    if cloud.normal is None:
        cloud = cloud.copy()
        cloud.normal = estimate_normals(cloud.coord, viewpoint=cloud.coord.mean(0))
    for key in data_cfg.feat_keys:
        if key != "ones" and cloud.get(key) is None:
            raise DataError(scene_path, f"the network reads '{key}' (data.feat_keys) but the scene has none")
    vox = GridSample(grid_size or data_cfg.grid_size, mode="train").sample(cloud, np.random.default_rng(seed))
    seg = vox.get(data_cfg.segment_key) if data_cfg.segment_key else None
    if seg is None:
        seg = segment_points(vox.coord, vox.normal, compact=True)
    seg = np.asarray(seg, np.int64)
    net = method.student if network == "student" else method.teacher_net()
    batch = collate_points([vox], data_cfg.feat_keys).to(device)
    feats = net.encoder(batch)
    seg_t = torch.as_tensor(seg, device=feats.device)
    logits, ids = net.group_logits(feats, seg_t)
    if network == "teacher" and method.center is not None:
        logits = logits - method.center.center.to(logits)
    rows = segment_index(seg_t, ids)
    best = logits.argmax(dim=1) if len(ids) else rows.new_zeros(1)
    assign = torch.where(rows >= 0, best[rows.clamp_min(0)], -1).cpu().numpy()
    labels = vox.segment if vox.segment is not None and (vox.segment >= 0).any() else None
    title = title or (f"{Path(scene_path).name}: {network} prototype groups, step {step}"
                      + (" (BatchNorm: scene statistics)" if bn == "batch" else ""))
    png = grouping_figure(vox.coord, assign, seg, labels, out_png, title)
    return {"png": str(png), "title": title, "points": int(len(vox)), "segments": int(len(ids)),
            "used_prototypes": int(len(np.unique(assign[assign >= 0]))),
            "purity": group_purity(assign, labels) if labels is not None else float("nan")}
