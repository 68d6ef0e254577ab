"""PointInfoNCE (PointContrast §3.4): InfoNCE over matched point features.

For sampled matches ``(q_i, k_i)``, ``i = 1..M``, the loss is the mean over ``i`` of
``-log( exp(q_i·k_i / tau) / sum_j exp(q_i·k_j / tau) )`` where the ``k_j`` (``j != i``) of
the other sampled matches are the negatives. With ``group`` given, only keys of the same group
(e.g. the same scene) compete, the "negatives within each scene" variant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def point_info_nce(query: torch.Tensor, key: torch.Tensor, tau: float = 0.4,
                   group: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """PointInfoNCE loss.

    Args:
        query: ``(M, C)`` features of the matched points in view 1.
        key: ``(M, C)`` features of their matches in view 2 (row ``i`` matches row ``i``).
        tau: temperature.
        group: optional ``(M,)`` int group id (scene index) of each match; negatives are then
            restricted to keys of the same group.
        normalize: L2-normalise features first (cosine similarity), as PointContrast does.

    Returns:
        Scalar: mean cross-entropy over the ``M`` queries. ``0`` (with grad) when ``M == 0``.
    """
    if query.shape != key.shape or query.dim() != 2:
        raise ValueError(f"query and key must both be (M, C); got {tuple(query.shape)} and {tuple(key.shape)}")
    if query.shape[0] == 0:
        return (query.sum() + key.sum()) * 0.0
    if normalize:
        query = F.normalize(query, dim=1)
        key = F.normalize(key, dim=1)
    logits = query @ key.t() / tau
    if group is not None:
        same = group.view(-1, 1) == group.view(1, -1)
        logits = logits.masked_fill(~same, float("-inf"))
    target = torch.arange(query.shape[0], device=query.device)
    return F.cross_entropy(logits, target)


class PointInfoNCE(nn.Module):
    """Module form of :func:`point_info_nce` (``tau`` 0.4 by default, as in the paper)."""

    def __init__(self, tau: float = 0.4, normalize: bool = True):
        super().__init__()
        self.tau = tau
        self.normalize = normalize

    def forward(self, query: torch.Tensor, key: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        return point_info_nce(query, key, self.tau, group, self.normalize)
