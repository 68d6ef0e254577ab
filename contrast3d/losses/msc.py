"""Masked Scene Contrast (Wu et al., CVPR 2023): matches, mask token and the three loss terms.

MSC trains on two augmented views of one scene whose input features are masked with
complementary 10 cm patches (:func:`contrast3d.data.masking.cross_masks`). Its loss is

``L = w_c * L_nce + w_r * (L_color + L_normal)``

* **Matches** (:func:`knn_matches`): for every view-1 point, its ``max_k = 8`` nearest view-2
  points in the *original* (un-augmented) coordinates; those strictly closer than ``radius = 3 cm``
  are candidates and one of them is drawn uniformly at random; the view-1 points with no
  candidate are dropped; if more than ``max_pairs = 8192`` pairs remain (over the whole batch), a
  uniform random subset of ``max_pairs`` is kept. Points are only matched within their scene.
* **L_nce** (:func:`msc_info_nce`): PointInfoNCE over all matched pairs of the batch, tau 0.4;
  every other match of the batch -- from any scene -- is a negative, as in the released code.
* **L_color** (:func:`color_reconstruction_loss`): a linear head predicts the colour of each
  *masked* point; the target is the point's (augmented) input colour before masking, i.e. what
  the mask token replaced. Released-code normalisation: squared Euclidean error summed over the
  3 channels, averaged over masked points (3x ``F.mse_loss``); pass both views concatenated to
  get the released code's pooling over the two views. Unmasked points do not contribute.
* **L_normal** (:func:`normal_reconstruction_loss`): ``mean over masked points of 1 - cos(pred, n)``.
  The released code (Pointcept ``MSC-v1m1``) adds ``+mean(cos(pred, n))`` to the loss: it
  *minimises* the cosine (equivalently maximises ``1 - cos``), training the head towards the
  opposite normal -- a sign error (its ScanNet preset also leaves ``reconstruct_normal`` off). We
  minimise ``1 - cos``, the reconstruction the paper describes. ``unoriented=True`` uses
  ``1 - |cos|`` for normals whose sign is arbitrary (e.g. un-oriented PCA normals); default False.
* **Mask token** (:func:`apply_mask_token`, :class:`MaskToken`): a learned ``(C_in,)`` vector that
  replaces the input feature of every masked point (initialised from a truncated normal with
  std 0.02, as the released code).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn

from contrast3d.losses.info_nce import matched_rows, point_info_nce


def _knn_matches_scene(coord1: np.ndarray, coord2: np.ndarray, radius: float, max_k: int,
                       rng: np.random.Generator) -> np.ndarray:
    if coord1.shape[0] == 0 or coord2.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.int64)
    k = min(max_k, coord2.shape[0])
    dist, idx = cKDTree(coord2).query(coord1, k=k, distance_upper_bound=radius)
    dist, idx = dist.reshape(coord1.shape[0], k), idx.reshape(coord1.shape[0], k)
    ok = dist < radius                       # strict, as the released code; sorted, so ok rows are prefixes
    count = ok.sum(axis=1)
    rows = np.flatnonzero(count > 0)
    pick = np.floor(rng.random(rows.shape[0]) * count[rows]).astype(np.int64)
    pick = np.minimum(pick, count[rows] - 1)
    return np.stack([rows, idx[rows, pick]], axis=1).astype(np.int64)


def knn_matches(coord1: np.ndarray, coord2: np.ndarray, radius: float = 0.03, max_pairs: int | None = 8192, *,
                rng: np.random.Generator, max_k: int = 8, batch1: np.ndarray | None = None,
                batch2: np.ndarray | None = None) -> np.ndarray:
    """MSC correspondences: one random neighbour within ``radius`` among the ``max_k`` nearest.

    Args:
        coord1: ``(N1, 3)`` original (un-augmented) coordinates of view 1, metres; ``coord2``
            ``(N2, 3)`` of view 2 in the same frame.
        radius: match radius in metres (3 cm), strict (``distance < radius``).
        max_pairs: at most this many pairs over the whole batch (8192); ``None`` keeps all.
        rng: generator for the neighbour choice and the sub-sampling.
        max_k: neighbours searched per view-1 point (8).
        batch1 / batch2: optional ``(N1,)`` / ``(N2,)`` scene index; matches stay within a scene.

    Returns:
        ``(K, 2)`` int64 ``[index in view 1, index in view 2]``, sorted by the view-1 index; every
        view-1 point appears at most once.
    """
    coord1 = np.asarray(coord1, dtype=np.float64)
    coord2 = np.asarray(coord2, dtype=np.float64)
    if coord1.ndim != 2 or coord1.shape[1] != 3 or coord2.ndim != 2 or coord2.shape[1] != 3:
        raise ValueError(f"coordinates must be (N, 3); got {coord1.shape} and {coord2.shape}")
    if not radius > 0 or max_k < 1:
        raise ValueError(f"need radius > 0 and max_k >= 1; got {radius}, {max_k}")
    if batch1 is None and batch2 is None:
        pairs = _knn_matches_scene(coord1, coord2, radius, max_k, rng)
    else:
        if batch1 is None or batch2 is None:
            raise ValueError("give both batch1 and batch2, or neither")
        batch1, batch2 = np.asarray(batch1), np.asarray(batch2)
        if batch1.shape != (coord1.shape[0],) or batch2.shape != (coord2.shape[0],):
            raise ValueError("batch1 / batch2 must have one entry per point")
        parts = []
        for scene in np.unique(batch1):      # loop over scenes (few), not points
            at1, at2 = np.flatnonzero(batch1 == scene), np.flatnonzero(batch2 == scene)
            local = _knn_matches_scene(coord1[at1], coord2[at2], radius, max_k, rng)
            parts.append(np.stack([at1[local[:, 0]], at2[local[:, 1]]], axis=1))
        pairs = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    if max_pairs is not None and pairs.shape[0] > max_pairs:
        keep = np.sort(rng.choice(pairs.shape[0], size=max_pairs, replace=False))
        pairs = pairs[keep]
    return pairs


def msc_info_nce(feat1: torch.Tensor, feat2: torch.Tensor, matches: torch.Tensor, tau: float = 0.4) -> torch.Tensor:
    """InfoNCE over all matched pairs of the batch (negatives from every scene).

    Args:
        feat1: ``(N1, C)`` output features of view 1; ``feat2``: ``(N2, C)`` of view 2.
        matches: ``(K, 2)`` int64 pairs from :func:`knn_matches`.
        tau: temperature (0.4).
    """
    matches = torch.as_tensor(matches, dtype=torch.long, device=feat1.device)
    if matches.dim() != 2 or matches.shape[1] != 2:
        raise ValueError(f"matches must be (K, 2); got {tuple(matches.shape)}")
    return point_info_nce(*matched_rows(feat1, feat2, matches), tau=tau)


def _masked(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"pred and target must both be (N, D); got {tuple(pred.shape)} and {tuple(target.shape)}")
    mask = torch.as_tensor(mask, device=pred.device)
    if mask.dtype != torch.bool or mask.shape != (pred.shape[0],):
        raise ValueError(f"mask must be a ({pred.shape[0]},) bool tensor; got {mask.dtype} {tuple(mask.shape)}")
    return pred[mask], target.to(pred.dtype)[mask]


def color_reconstruction_loss(pred: torch.Tensor, color: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Colour reconstruction on masked points.

    Args:
        pred: ``(N, 3)`` predicted colour of every point (colour head on the output features).
        color: ``(N, 3)`` the input colour before masking (same scale as the network input).
        mask: ``(N,)`` bool, True = masked point; only these contribute.

    Returns:
        ``mean over masked points of |pred - color|^2`` (sum over channels); ``0`` (with grad) if
        nothing is masked.
    """
    p, t = _masked(pred, color, mask)
    if p.shape[0] == 0:
        return pred.sum() * 0.0
    return ((p - t) ** 2).sum(dim=1).mean()


def normal_reconstruction_loss(pred: torch.Tensor, normal: torch.Tensor, mask: torch.Tensor,
                               unoriented: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """Normal reconstruction on masked points: ``mean(1 - cos(pred, normal))`` (``1 - |cos|`` if unoriented).

    Args:
        pred: ``(N, 3)`` predicted normal (any length) of every point; ``normal``: ``(N, 3)`` target
            normals in the same frame as the view (after its rotation).
        mask: ``(N,)`` bool, True = masked point; only these contribute.

    Returns:
        Scalar in ``[0, 2]``; ``0`` (with grad) if nothing is masked.
    """
    p, t = _masked(pred, normal, mask)
    if p.shape[0] == 0:
        return pred.sum() * 0.0
    cos = F.cosine_similarity(p, t, dim=1, eps=eps)
    return (1.0 - (cos.abs() if unoriented else cos)).mean()


def apply_mask_token(feat: torch.Tensor, mask: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Replace the input features of masked points by the learned token.

    Args:
        feat: ``(N, C)`` input features; mask: ``(N,)`` bool (True = masked); token: ``(C,)``.

    Returns:
        ``(N, C)``: ``token`` on masked rows, ``feat`` elsewhere; gradients reach ``token`` only
        through masked rows and ``feat`` only through unmasked rows.
    """
    if feat.dim() != 2 or token.shape != (feat.shape[1],):
        raise ValueError(f"feat must be (N, C) and token (C,); got {tuple(feat.shape)} and {tuple(token.shape)}")
    mask = torch.as_tensor(mask, device=feat.device)
    if mask.dtype != torch.bool or mask.shape != (feat.shape[0],):
        raise ValueError(f"mask must be a ({feat.shape[0]},) bool tensor")
    return torch.where(mask.view(-1, 1), token.to(feat.dtype).view(1, -1), feat)


class MaskToken(nn.Module):
    """Learned MSC mask token, ``(in_channels,)``, truncated-normal init (std 0.02, clipped at +-2)."""

    def __init__(self, in_channels: int, std: float = 0.02):
        super().__init__()
        self.token = nn.Parameter(torch.empty(in_channels))
        nn.init.trunc_normal_(self.token, mean=0.0, std=std, a=-2.0, b=2.0)

    def forward(self, feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return apply_mask_token(feat, mask, self.token)
