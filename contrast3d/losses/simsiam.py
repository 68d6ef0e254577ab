"""SimSiam negative-cosine loss (Chen & He, CVPR 2021), as used by 4DContrast (ECCV 2022, Eqs. 1-3, 5, 7).

For a prediction ``p`` (predictor output) and a target ``z`` (projection / encoder output),

    D(p, z) = - p / ||p||_2 . SG(z) / ||z||_2,

where ``SG`` is the stop-gradient: ``z`` is a constant during back-propagation, so gradients reach
the network only through the predictor branch ``p``. Rows are matched pairs (correspondences), and
:func:`negative_cosine` averages ``D`` over the ``N`` rows (4DContrast writes a sum over the
correspondences; the mean keeps the loss scale independent of the number of matches, which the
paper leaves to its loss weights). The symmetrised loss (Eq. 2 / 3 / 7) is

    L = D(p1, SG(z2)) / 2 + D(p2, SG(z1)) / 2.

Stop-gradient placement: 4DContrast's Eq. 5 (the 3D-4D loss) writes ``D(SG(p^3D), z^4D)`` -- the
stop-gradient on the *predictor output* ``p``, the inverse of SimSiam. We do not implement that:
with ``p`` frozen and gradients flowing only into ``z``, nothing stops the projection ``z`` from
moving towards a constant that the (stopped) predictions can always match, i.e. the collapse that
SimSiam's stop-gradient exists to prevent (SimSiam §4.1: without the stop-gradient on ``z`` the
outputs collapse). Every use of this module, the 3D-4D term included, therefore puts the
stop-gradient on ``z``; this is a fixed property of the loss, not an option.

Zero vectors: rows are L2-normalised with ``F.normalize`` (norm clamped at ``1e-12``), so a zero
row contributes cosine 0 instead of NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``D(p, SG(z))``: mean over rows of ``-cos(p_i, z_i)``; no gradient flows into ``z``.

    Args:
        p: ``(N, C)`` predictions (gradient flows).
        z: ``(N, C)`` targets (detached).

    Returns:
        Scalar in ``[-1, 1]``. ``0`` (with grad) when ``N == 0``.
    """
    if p.shape != z.shape or p.dim() != 2:
        raise ValueError(f"p and z must both be (N, C); got {tuple(p.shape)} and {tuple(z.shape)}")
    if p.shape[0] == 0:
        return p.sum() * 0.0
    return -(F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(dim=1).mean()


def simsiam_loss(p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Symmetrised SimSiam loss ``D(p1, SG(z2)) / 2 + D(p2, SG(z1)) / 2`` over ``(N, C)`` matched rows.

    Row ``i`` of the view-1 tensors (``p1``, ``z1``) corresponds to row ``i`` of the view-2 tensors.
    """
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


class SimSiamLoss(nn.Module):
    """Module form of :func:`simsiam_loss` (no parameters)."""

    def forward(self, p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return simsiam_loss(p1, z1, p2, z2)
