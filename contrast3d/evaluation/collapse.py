"""Feature-collapse monitors for self-supervised pre-training.

All statistics are computed on **L2-normalised** per-point features ``(N, C)``:

* :func:`feature_std` -- std of every feature dimension over the points, averaged over the
  dimensions (SimSiam's collapse monitor). Features spread uniformly on the unit sphere give
  about ``1 / sqrt(C)``; fully collapsed features (all equal) give 0.
* :func:`effective_rank` -- ``exp`` of the entropy of the normalised singular values
  ``p_i = s_i / sum(s)`` (Roy & Vetterli 2007; RankMe). 1 for rank-one (collapsed) features,
  close to ``C`` for isotropic features. The features are *not* centred, so a constant feature
  matrix has rank 1 rather than 0.
* :func:`mean_pairwise_cosine` -- the mean cosine similarity of randomly sampled pairs of
  distinct points: about 0 for spread features, 1 when collapsed.

Large inputs are subsampled (seeded) so the monitors stay cheap inside a training loop.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

ArrayLike = torch.Tensor | np.ndarray


def _normalised(feats: ArrayLike, max_points: int | None = None, seed: int = 0) -> torch.Tensor:
    """``(M, C)`` float64 L2-normalised rows, ``M <= max_points`` (seeded random subsample)."""
    x = torch.as_tensor(feats).detach()
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, C), got {tuple(x.shape)}")
    x = x.to(device="cpu", dtype=torch.float64)
    if max_points is not None and x.shape[0] > max_points:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=gen)[:max_points]]
    return F.normalize(x, dim=1)


def feature_std(feats: ArrayLike, max_points: int | None = 200_000, seed: int = 0) -> float:
    """Mean over dimensions of the per-dimension std of the L2-normalised features.

    Args:
        feats: ``(N, C)`` features (any scale; rows are normalised first).
    Returns:
        A float in ``[0, 1]``: ~``1 / sqrt(C)`` for spread features, 0 when collapsed;
        NaN for fewer than 2 points.
    """
    x = _normalised(feats, max_points, seed)
    if x.shape[0] < 2:
        return float("nan")
    return float(x.std(dim=0, unbiased=False).mean())


def effective_rank(feats: ArrayLike, max_points: int | None = 20_000, seed: int = 0, eps: float = 1e-12) -> float:
    """``exp(H(p))`` with ``p`` the singular values of the (uncentred) L2-normalised features over their sum.

    Args:
        feats: ``(N, C)`` features.
    Returns:
        A float in ``[1, min(N, C)]``; NaN for an empty input.
    """
    x = _normalised(feats, max_points, seed)
    if x.shape[0] == 0:
        return float("nan")
    s = torch.linalg.svdvals(x)
    total = s.sum()
    if total <= eps:
        return float("nan")
    p = s / total
    p = p[p > eps]
    return float(torch.exp(-(p * torch.log(p)).sum()))


def mean_pairwise_cosine(feats: ArrayLike, num_pairs: int = 100_000, seed: int = 0) -> float:
    """Mean cosine similarity of ``num_pairs`` random pairs of distinct points (seeded).

    Args:
        feats: ``(N, C)`` features.
    Returns:
        A float in ``[-1, 1]``; NaN for fewer than 2 points.
    """
    x = torch.as_tensor(feats).detach()
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, C), got {tuple(x.shape)}")
    n = x.shape[0]
    if n < 2:
        return float("nan")
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (num_pairs,), generator=gen)
    j = (i + torch.randint(1, n, (num_pairs,), generator=gen)) % n  # j != i
    a = _normalised(x[i.to(x.device)])
    b = _normalised(x[j.to(x.device)])
    return float((a * b).sum(dim=1).mean())


def collapse_stats(feats: ArrayLike, seed: int = 0, prefix: str = "") -> dict[str, float]:
    """All monitors in one dict of scalars ready to log.

    Keys (after ``prefix``): ``feat_std``, ``feat_std_norm`` (``feat_std * sqrt(C)``: ~1 healthy,
    0 collapsed), ``eff_rank``, ``eff_rank_ratio`` (``eff_rank / C``) and ``mean_cos``.
    """
    c = int(torch.as_tensor(feats).shape[1])
    std = feature_std(feats, seed=seed)
    rank = effective_rank(feats, seed=seed)
    return {f"{prefix}feat_std": std, f"{prefix}feat_std_norm": std * math.sqrt(c),
            f"{prefix}eff_rank": rank, f"{prefix}eff_rank_ratio": rank / c,
            f"{prefix}mean_cos": mean_pairwise_cosine(feats, seed=seed)}
