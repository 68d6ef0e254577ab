"""Image-to-point contrast's feature figure (Janda et al., Fig. 2): one RGB-D frame's pixel features next to
the same frame's point features, both mapped to colours.

Three panels, all in the plane of the ``S x S`` centre-cropped image the 2D network sees
(:class:`~contrast3d.data.frame_images.FrameImageDataset` ``raw_sample``: the frame's valid depth
back-projected in camera coordinates, the colour image resized and centre-cropped, every point's pixel from
the crop intrinsics):

1. the RGB crop;
2. the **pixel features** of the 2D network (the image2point stage-2d export, ``kind: image_unet``), one
   colour per pixel;
3. the **point features**: the 3D network run on the frame's points (voxelised at the record's
   ``grid_size``; every back-projected point takes its voxel's feature), each point splatted at its pixel
   (z-buffered by depth; splat radius from the depth-to-crop scale so the depth grid closes up), coloured
   by its feature. Pixels without a valid depth stay white.

Colours: features are L2-normalised (the contrastive losses compare directions), projected on their first
three principal components, and each component is mapped linearly to one RGB channel, its 1st..99th
percentile over the fitted sample spanning [0, 1] (clipped). Component signs are fixed (largest loading
positive) so the colours are deterministic. The PCA is fitted on at most ``max_fit`` features drawn at
random (seeded): in the **shared** projection half from the pixels and half from the points seen in the
image (equal weight, however many pixels and points there are), one set of components and one colour range
for both panels; in the **separate** projection each panel gets its own PCA (its own colour meaning).

Centring of the shared projection (``center``): by default (``each``) pixel and point features are each
standardised on their own before the joint fit (minus the modality's mean, divided by its RMS deviation), so
a colour means the same *relative deviation* from the modality's mean, along the same axes, in both panels.
Without it (``joint``: one common mean, no scaling; then equal colours are equal feature directions) any
constant offset between the two sets -- an untrained or partly trained head, e.g. a 2-step stage-3d run
whose joint PCA put 99 % of the variance on the pixel-vs-point axis -- takes the first component and paints
each panel one flat colour, and a set with a smaller spread (the same run's head output: centring alone left
its panel one flat tint) barely moves in the common colour range; both hide the structure the figure is
meant to compare. For a well-trained pair means and spreads agree and both choices coincide.

Which projection (``projection="auto"``, the default): the paper's figure compares the 3D network's
output with the 2D features it was trained to mimic, i.e. the features after the stage-3d 1x1 head, which
live in the 2D network's 16-d space. The head is **not exported** (``backbone.safetensors`` is the bare
SpUNet, whose output width, e.g. 96, is unrelated to the 2D space), but a stage-3d training checkpoint
(``RUN/checkpoints/last.pt``, passed as the backbone) holds it: then the point features are
``head(backbone(points))`` and one shared PCA is used. With an exported backbone (or any other 3D network)
the point features are the backbone's own and each network gets its own PCA even when the widths happen to
be equal, because the two spaces are not aligned; the title says which. ``projection="shared"`` forces one
PCA (widths must match), ``"separate"`` forces two.

Input features of the 3D network follow its record's ``feat_keys`` (``color`` from the frame, ``ones``,
``coord``; ``normal`` is estimated facing the camera, which sits at the origin of the camera frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from contrast3d.errors import DataError
from contrast3d.viz.render import splat
from contrast3d.viz.sequence import panel_figure, save_exact

Projection = Literal["auto", "shared", "separate"]


@dataclass
class PCAColors:
    """A fitted feature-to-RGB map: ``rgb = clip(((normalize(f) - mean) / scale @ components.T - lo) / (hi - lo))``.

    Attributes:
        mean: ``(C,)`` mean of the fitted (L2-normalised) features.
        scale: divisor of the centred features (1, or a modality's RMS deviation with ``center="each"``).
        components: ``(k, C)`` principal directions, ``k = min(3, C)``, largest variance first.
        lo, hi: ``(k,)`` 1st and 99th percentiles of the fitted projections (the colour range).
        explained: ``(k,)`` fraction of the fitted variance each component explains.
    """

    mean: np.ndarray
    components: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    explained: np.ndarray
    scale: float = 1.0

    def project(self, feats: np.ndarray) -> np.ndarray:
        """``(N, k)`` float64 PCA coordinates of ``(N, C)`` features (L2-normalised first)."""
        return (l2_normalize(feats) - self.mean) / self.scale @ self.components.T

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float32 RGB in [0, 1]; channels beyond ``k`` are 0.5."""
        proj = self.project(feats)
        out = np.full((len(proj), 3), 0.5, np.float32)
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        out[:, :proj.shape[1]] = np.clip((proj - self.lo) / span, 0, 1)
        return out


def l2_normalize(feats: np.ndarray) -> np.ndarray:
    """``(N, C)`` float64 rows scaled to unit length (zero rows stay zero)."""
    f = np.asarray(feats, np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def fit_pca_colors(*samples: np.ndarray, center: Literal["joint", "each"] = "joint") -> list[PCAColors]:
    """Fit one PCA to the rows of the ``(n_i, C)`` samples together (the caller balances their sizes).

    ``center="joint"`` subtracts the mean of all rows; ``"each"`` standardises each sample on its own
    first (subtract its mean, divide by its RMS deviation ``sqrt(mean_i |x_i - mean|^2)``; module docstring),
    so neither a constant offset nor a different spread between the samples decides the components.

    Returns:
        One :class:`PCAColors` per sample: the same components and colour range, the sample's mean and scale
        (``joint``: all the same mean, scale 1).
    """
    xs = [l2_normalize(s) for s in samples]
    if not xs or any(x.ndim != 2 for x in xs) or sum(len(x) for x in xs) < 2:
        raise ValueError(f"need at least 2 feature rows to fit a PCA, got {[x.shape for x in xs]}")
    if center == "joint":
        means, scales = [np.concatenate(xs).mean(0)] * len(xs), [1.0] * len(xs)
    elif center == "each":
        means = [x.mean(0) if len(x) else np.zeros(x.shape[1]) for x in xs]
        scales = [max(float(np.sqrt(((x - m) ** 2).sum(1).mean())), 1e-12) if len(x) else 1.0
                  for x, m in zip(xs, means)]
    else:
        raise ValueError(f"center must be 'joint' or 'each', got {center!r}")
    x = np.concatenate([(x - m) / sc for x, m, sc in zip(xs, means, scales)])
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    k = min(3, x.shape[1])
    comps = vt[:k].copy()
    big = np.argmax(np.abs(comps), axis=1)
    comps *= np.sign(comps[np.arange(k), big])[:, None]  # largest loading positive: deterministic colours
    proj = x @ comps.T
    var = sv ** 2
    explained = var[:k] / max(float(var.sum()), 1e-30)
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    return [PCAColors(m, comps, lo, hi, explained, sc) for m, sc in zip(means, scales)]


def _pick(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, size=k, replace=False))


def pixel_point_colors(pixel_feats: np.ndarray, point_feats: np.ndarray, shared: bool, max_fit: int = 20000,
                       seed: int = 0, center: Literal["joint", "each"] = "each"
                       ) -> tuple[np.ndarray, np.ndarray, list[PCAColors]]:
    """Colours of ``(P, C2)`` pixel and ``(N, C3)`` point features (module docstring for the fit).

    Args:
        shared: one PCA fitted to both (needs ``C2 == C3``) or one PCA each.
        max_fit: rows used to fit (a shared fit takes half from each); seed: seeds that sample.
        center: shared fit only: ``each`` (every modality standardised on its own, default) or ``joint``.

    Returns:
        ``(pixel RGB (P, 3), point RGB (N, 3), [pixel map, point map])`` (:class:`PCAColors`; a shared
        fit gives two maps with the same components and colour range).
    """
    pixel_feats, point_feats = np.asarray(pixel_feats), np.asarray(point_feats)
    rng = np.random.default_rng(seed)
    if shared:
        if pixel_feats.shape[1] != point_feats.shape[1]:
            raise ValueError(f"a shared projection needs one feature width, got pixels {pixel_feats.shape[1]} "
                             f"and points {point_feats.shape[1]}")
        k = min(max(max_fit // 2, 1), len(pixel_feats), len(point_feats))
        maps = fit_pca_colors(pixel_feats[_pick(len(pixel_feats), k, rng)],
                              point_feats[_pick(len(point_feats), k, rng)], center=center)
    else:
        maps = (fit_pca_colors(pixel_feats[_pick(len(pixel_feats), max_fit, rng)])
                + fit_pca_colors(point_feats[_pick(len(point_feats), max_fit, rng)]))
    return maps[0](pixel_feats), maps[1](point_feats), maps


def pixel_point_figure(image: np.ndarray, pixel_feats: np.ndarray, point_pixel: np.ndarray,
                       point_depth: np.ndarray, point_feats: np.ndarray, out_png: str | Path, *,
                       shared: bool, titles: tuple[str, str, str] | None = None, title: str | None = None,
                       point_radius: int = 0, max_fit: int = 20000, seed: int = 0,
                       center: Literal["joint", "each"] = "each", min_panel: int = 400) -> dict[str, Any]:
    """Write the three-panel figure: RGB | pixel features | point features in the image plane.

    Args:
        image: ``(3, H, W)`` float RGB in [0, 1] (the crop the 2D network saw).
        pixel_feats: ``(C2, H, W)`` per-pixel features of that image.
        point_pixel: ``(N, 2)`` int ``(row, col)`` of each point in the image (all inside it).
        point_depth: ``(N,)`` metres along the viewing direction (the nearest point wins a pixel).
        point_feats: ``(N, C3)`` per-point features.
        out_png: output path (parent folders are created).
        shared: one PCA for both (needs ``C2 == C3``) or one per panel.
        titles: the three panel titles; title: the figure title.
        point_radius: splat radius of the points in pixels (0 = one pixel each).
        max_fit: features used to fit the PCA; seed: seeds their sample.
        center: shared projection only: standardise each modality on its own (``each``) or centre both on
            one mean (``joint``), see :func:`fit_pca_colors`.
        min_panel: panels smaller than this many pixels (shorter side) are enlarged by an integer factor
            (nearest neighbour) in the PNG, e.g. a 224-pixel crop is drawn at 448.

    Returns:
        ``{"png", "boxes" (3 ``(row0, row1, col0, col1)`` panel boxes in the PNG), "panels" (3 ``(H, W, 3)``
        images at the image's resolution), "scale" (the enlargement), "projection" ("shared" / "separate"),
        "explained" (variance fraction of the PCA components: one list for a shared
        map, two for separate maps)}``.
    """
    image = np.asarray(image, np.float32)
    pixel_feats = np.asarray(pixel_feats)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {image.shape}")
    _, h, w = image.shape
    if pixel_feats.ndim != 3 or pixel_feats.shape[1:] != (h, w):
        raise ValueError(f"pixel_feats must be (C, {h}, {w}), got {pixel_feats.shape}")
    point_pixel = np.asarray(point_pixel, np.int64).reshape(-1, 2)
    n = len(point_pixel)
    if np.shape(point_depth) != (n,) or np.shape(point_feats)[0] != n or n == 0:
        raise ValueError(f"point_pixel {point_pixel.shape}, point_depth {np.shape(point_depth)} and point_feats "
                         f"{np.shape(point_feats)} must describe the same N > 0 points")
    if (point_pixel < 0).any() or (point_pixel[:, 0] >= h).any() or (point_pixel[:, 1] >= w).any():
        raise ValueError("point_pixel holds pixels outside the image")
    flat = pixel_feats.reshape(pixel_feats.shape[0], -1).T
    pix_rgb, pts_rgb, maps = pixel_point_colors(flat, point_feats, shared, max_fit, seed, center)
    feat_image = pix_rgb.reshape(h, w, 3)
    points_image, _ = splat(point_pixel[:, 1].astype(np.float64), point_pixel[:, 0].astype(np.float64),
                            np.asarray(point_depth, np.float64), pts_rgb, (h, w), point_radius)
    panels = [np.ascontiguousarray(image.transpose(1, 2, 0)), feat_image, points_image]
    names = titles or ("RGB", f"pixel features ({flat.shape[1]}-d)", f"point features ({np.shape(point_feats)[1]}-d)")
    scale = max(1, -(-int(min_panel) // min(h, w)))
    big = [p.repeat(scale, axis=0).repeat(scale, axis=1) for p in panels]
    fig, _, boxes = panel_figure(big, names, title or ("one shared PCA" if shared else "separate PCA per panel"))
    png = save_exact(fig, out_png)
    return {"png": str(png), "boxes": boxes, "panels": panels, "scale": scale,
            "projection": "shared" if shared else "separate",
            "explained": [m.explained.tolist() for m in (maps[:1] if shared else maps)]}


# ----------------------------------------------------------------------------------------- from weights
def load_point_head(path: str | Path) -> nn.Linear | None:
    """The stage-3d 1x1 head (``Linear`` to the 2D width) of an image2point training checkpoint, else ``None``.

    Exports (``.safetensors``) and Pointcept files never hold it; a contrast3d checkpoint holds it as
    ``head.weight`` / ``head.bias`` of its ``model`` state dict when its config's method is image2point.
    """
    from contrast3d.engine.checkpoint import CheckpointError, load_checkpoint

    if Path(path).suffix == ".safetensors":
        return None
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError:
        return None
    state = ckpt.get("model") or {}
    if (ckpt.get("config") or {}).get("method_name") != "image2point" or "head.weight" not in state:
        return None
    weight = state["head.weight"]
    bias = state.get("head.bias")
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    return head.eval()


@torch.no_grad()
def pixel_point_from_weights(image_net: str | Path, backbone: str | Path, frame: str | Path, out_png: str | Path,
                             *, index: int = 0, projection: Projection = "auto", device: str | torch.device = "cpu",
                             image_size: int | None = None, depth_stride: int = 1, depth_trunc: float | None = None,
                             max_fit: int = 20000, seed: int = 0, center: Literal["joint", "each"] = "each",
                             lenient: bool = False, title: str | None = None) -> dict[str, Any]:
    """The Fig. 2 panels of frame ``index`` under ``frame`` from the two networks' weights.

    Args:
        image_net: the 2D network: an image2point stage-2d export (``image_net.safetensors`` + ``.json``) or
            its training checkpoint (loaded by :func:`~contrast3d.models.pretrained.load_pretrained` with
            ``name="image_net"``); must be ``kind: image_unet``.
        backbone: the 3D network: an exported ``backbone.safetensors``, a training checkpoint (an image2point
            stage-3d one also supplies the head, module docstring) or a Pointcept ``.pth``.
        frame: an RGB-D frame folder, a folder of them or a ``prepare rgbd`` root
            (:func:`~contrast3d.data.frame_images.find_frame_sequences`).
        out_png: output PNG.
        index: which frame (in :class:`~contrast3d.data.frame_images.FrameImageDataset` order).
        projection: ``auto`` / ``shared`` / ``separate`` (module docstring).
        image_size: crop side (default the 2D record's ``extra.image_size``, else 224).
        depth_stride, depth_trunc: as in :class:`~contrast3d.data.frame_images.FrameImageDataset`.
        max_fit, seed: PCA fit sample size and its seed (also seeds the voxel sampling).
        center: ``each`` or ``joint`` centring of a shared projection (:func:`fit_pca_colors`).
        lenient: load partial state dicts (matching keys only).

    Returns:
        :func:`pixel_point_figure`'s dict plus ``frame``, ``points`` (points in the image), ``pixel_dim``,
        ``point_dim``, ``head`` (the stage-3d head was applied).
    """
    from contrast3d.data.frame_images import FrameImageDataset
    from contrast3d.data.normals import estimate_normals
    from contrast3d.models.pretrained import load_pretrained
    from contrast3d.viz.backbone_io import load_backbone, scene_features

    if projection not in ("auto", "shared", "separate"):
        raise ValueError(f"projection must be auto, shared or separate, got {projection!r}")
    pre = load_pretrained(image_net, name="image_net", device=device, lenient=lenient)
    if pre.record.kind != "image_unet":
        raise DataError(image_net, f"a '{pre.record.kind}' network, not a 2D image network (the image_net export "
                                   "of an image2point stage-2d run)")
    net2 = pre.model.eval()
    model, info = load_backbone(backbone, device, lenient=lenient)
    if getattr(model, "ndim", 3) != 3:
        raise DataError(backbone, f"a {model.ndim}D network; the figure needs a 3D backbone")
    head = load_point_head(backbone)
    size = int(image_size or pre.record.extra.get("image_size") or 224)
    frames = FrameImageDataset(frame, None, image_size=size, depth_trunc=depth_trunc, strict=True,
                               depth_stride=depth_stride)
    if not 0 <= index < len(frames):
        raise DataError(frame, f"--index {index} out of range: {len(frames)} frames")
    cloud, image, _, rgbd = frames.raw_sample(index)
    if "normal" in info["feat_keys"]:
        cloud.normal = estimate_normals(cloud.coord, viewpoint=np.zeros(3))
    pixel_feats = net2(torch.from_numpy(image)[None].to(device)).float()[0].cpu().numpy()
    feats = scene_features(model, cloud, info, device, seed=seed)
    if head is not None:
        feats = head(feats)
    point_feats = feats.numpy()
    pix = cloud.extra["pixel"]
    seen = np.flatnonzero(pix[:, 0] >= 0)
    if len(seen) == 0:
        raise DataError(rgbd.path, "no point of the frame falls inside the image crop")
    c2, c3 = pixel_feats.shape[0], point_feats.shape[1]
    if projection == "shared" and c2 != c3:
        raise DataError(backbone, f"--projection shared needs equal widths, but pixels are {c2}-d and points "
                                  f"{c3}-d (pass the stage-3d training checkpoint to apply its head)")
    shared = projection == "shared" or (projection == "auto" and head is not None and c2 == c3)
    if shared:
        why = ("one PCA fitted to pixel + point features" + (", each standardised on its own" if center == "each"
               else ": equal colours = equal feature directions"))
    elif projection == "separate":
        why = "separate PCA per network (as asked)"
    elif head is None:
        why = (f"separate PCA per network: the points carry the 3D backbone's own {c3}-d features (the stage-3d "
               f"head is not exported), not aligned with the {c2}-d pixel space")
    else:
        why = f"separate PCA per network: widths differ ({c2}-d pixels, {c3}-d points)"
    h, w = rgbd.depth.shape
    ratio = size * depth_stride / min(h, w)  # crop pixels per back-projected depth pixel
    radius = int(np.ceil(max(ratio - 1.0, 0.0) / 2))
    name = frames.frame_name(index)
    titles = (f"RGB ({size}x{size} crop)", f"pixel features ({c2}-d, 2D network)",
              f"point features ({c3}-d, 3D {'backbone + head' if head is not None else 'backbone'}, "
              f"{len(seen)} points)")
    out = pixel_point_figure(image, pixel_feats, pix[seen], cloud.coord[seen, 2], point_feats[seen], out_png,
                             shared=shared, titles=titles, title=title or f"{name}: {why}", point_radius=radius,
                             max_fit=max_fit, seed=seed, center=center)
    out.update(frame=name, points=int(len(seen)), pixel_dim=int(c2), point_dim=int(c3), head=head is not None,
               reason=why)
    return out


__all__ = ["PCAColors", "l2_normalize", "fit_pca_colors", "pixel_point_colors", "pixel_point_figure",
           "load_point_head", "pixel_point_from_weights"]
