"""Hardest-contrastive loss (FCGF; PointContrast §3.4).

For matched pairs ``(i, j)`` of view-1 point ``i`` and view-2 point ``j``, with ``d`` the L2
distance of (normalised) features:

``L = mean_P [d(f_i, f_j) - m_p]_+^2
      + 0.5 * mean_i [m_n - min_{k in N2} d(f_i, f_k)]_+^2
      + 0.5 * mean_j [m_n - min_{k in N1} d(f_j, f_k)]_+^2``

where ``N1``/``N2`` are random subsets of each view's points (the negative pool), and a hardest
candidate that is itself a known positive of the anchor (a false negative) is excluded before
the hardest is taken (FCGF instead drops the term when its hardest is a positive; excluding
first keeps a true hard negative for every anchor). An anchor with no candidate left (e.g. all
in other scenes) is left out of the mean.

Positive term: the PointContrast paper (eq. 1) and the FCGF paper write ``[d - m_p]_+^2``, the
default here. The code of both (FCGF's ``HardestContrastiveLossTrainer`` and the official
PointContrast ``ddp_trainer.py``) computes ``[d^2 - m_p]_+`` on the squared distance instead:
``fcgf_positive=True``. The code form stops pulling once ``d < sqrt(m_p)`` (0.32 for
``m_p = 0.1``), the paper form once ``d < m_p``; at its margin the code form's gradient ``2 d``
jumps to zero, the paper form's ``2 (d - m_p)`` reaches zero continuously. PointContrast's method
config turns the code form on (the official default); this function keeps the paper form as its default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.losses.info_nce import matched_rows


def _pairwise_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(A, B)`` Euclidean distances, numerically safe for equal rows."""
    sq = (a * a).sum(1, keepdim=True) - 2.0 * a @ b.t() + (b * b).sum(1).view(1, -1)
    return sq.clamp_min(1e-12).sqrt()


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    kept = values[keep]
    return kept.mean() if kept.numel() else values.sum() * 0.0


def hardest_contrastive(feat1: torch.Tensor, feat2: torch.Tensor, matches: torch.Tensor,
                        pos_margin: float = 0.1, neg_margin: float = 1.4,
                        neg_pool1: torch.Tensor | None = None, neg_pool2: torch.Tensor | None = None,
                        batch1: torch.Tensor | None = None, batch2: torch.Tensor | None = None,
                        normalize: bool = True, fcgf_positive: bool = False,
                        all_matches: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative terms of the hardest-contrastive loss.

    Args:
        feat1: ``(N1, C)`` point features of view 1; ``feat2``: ``(N2, C)`` of view 2.
        matches: ``(M, 2)`` int64 positive pairs (index into ``feat1``, index into ``feat2``)
            that the loss is computed on (already sub-sampled by the caller).
        neg_pool1 / neg_pool2: ``(K1,)`` / ``(K2,)`` int64 indices of the candidate negatives in
            each view (default: every point).
        batch1 / batch2: optional ``(N1,)`` / ``(N2,)`` scene index; negatives then come only
            from the anchor's own scene.
        fcgf_positive: positive term ``[d^2 - m_p]_+`` (FCGF / official code) instead of the
            paper's ``[d - m_p]_+^2`` (see module docstring).
        all_matches: the full ``(P, 2)`` positive set used to recognise false negatives
            (default: ``matches``).

    Returns:
        ``(positive_term, negative_term)`` scalars; the loss is their sum.
    """
    if normalize:
        feat1 = F.normalize(feat1, dim=1)
        feat2 = F.normalize(feat2, dim=1)
    n1, n2 = feat1.shape[0], feat2.shape[0]
    if matches.shape[0] == 0:
        zero = (feat1.sum() + feat2.sum()) * 0.0
        return zero, zero
    dev = feat1.device
    pool1 = torch.arange(n1, device=dev) if neg_pool1 is None else neg_pool1.to(dev)
    pool2 = torch.arange(n2, device=dev) if neg_pool2 is None else neg_pool2.to(dev)
    i, j = matches[:, 0], matches[:, 1]
    f_i, f_j = matched_rows(feat1, feat2, matches)

    if fcgf_positive:
        pos = F.relu((f_i - f_j).pow(2).sum(1) - pos_margin)
    else:
        pos = F.relu((f_i - f_j).norm(dim=1) - pos_margin).pow(2)

    d12 = _pairwise_l2(f_i, feat2[pool2])   # (M, K2): view-1 anchors vs view-2 negatives
    d21 = _pairwise_l2(f_j, feat1[pool1])   # (M, K1): view-2 anchors vs view-1 negatives
    positives = matches if all_matches is None else all_matches
    pos_keys = positives[:, 0] * n2 + positives[:, 1]
    # Known positives of the anchor are never its negatives (false negatives).
    d12 = d12.masked_fill(torch.isin(i.view(-1, 1) * n2 + pool2.view(1, -1), pos_keys), float("inf"))
    d21 = d21.masked_fill(torch.isin(pool1.view(1, -1) * n2 + j.view(-1, 1), pos_keys), float("inf"))
    if batch1 is not None and batch2 is not None:
        d12 = d12.masked_fill(batch1[i].view(-1, 1) != batch2[pool2].view(1, -1), float("inf"))
        d21 = d21.masked_fill(batch2[j].view(-1, 1) != batch1[pool1].view(1, -1), float("inf"))
    min12 = d12.min(1).values
    min21 = d21.min(1).values
    keep12, keep21 = torch.isfinite(min12), torch.isfinite(min21)
    neg12 = F.relu(neg_margin - min12.masked_fill(~keep12, 0.0)).pow(2)
    neg21 = F.relu(neg_margin - min21.masked_fill(~keep21, 0.0)).pow(2)
    negative = 0.5 * _masked_mean(neg12, keep12) + 0.5 * _masked_mean(neg21, keep21)
    return pos.mean(), negative


class HardestContrastiveLoss(nn.Module):
    """Module form of :func:`hardest_contrastive` with the paper's margins (0.1, 1.4)."""

    def __init__(self, pos_margin: float = 0.1, neg_margin: float = 1.4, normalize: bool = True,
                 fcgf_positive: bool = False):
        super().__init__()
        self.pos_margin, self.neg_margin = pos_margin, neg_margin
        self.normalize, self.fcgf_positive = normalize, fcgf_positive

    def forward(self, feat1: torch.Tensor, feat2: torch.Tensor, matches: torch.Tensor, **kwargs) -> torch.Tensor:
        pos, neg = hardest_contrastive(feat1, feat2, matches, self.pos_margin, self.neg_margin,
                                       normalize=self.normalize, fcgf_positive=self.fcgf_positive, **kwargs)
        return pos + neg
