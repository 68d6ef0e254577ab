"""Per-point heads shared by the pre-training methods: projector / predictor MLPs and prototypes.

All heads act on plain ``(N, C)`` point-feature tensors (the ``features`` of a sparse tensor,
one row per voxel of the whole batch), so they are independent of the sparse-conv backend.

* :class:`PointMLP` -- ``num_layers`` linear layers; every layer but the last is followed by
  normalisation (``BatchNorm1d`` over the points of the batch, or none) and ReLU. The last layer
  is a bare linear map unless ``last_norm=True`` (then a ``BatchNorm1d`` follows it, no ReLU).
  Linear layers that feed a BatchNorm carry no bias (the norm's shift replaces it).
  :data:`Projector` and :data:`Predictor` are aliases: GroupContrast's projectors ``g``, ``h``
  and its asymmetric predictor ``h'`` (the paper does not give their depth; a 2-layer MLP
  with BatchNorm, as in BYOL/DINO heads, is the default the methods use), FAC's point-MLP ``h``.
* :class:`Prototypes` -- ``n`` learnable prototype vectors ``S`` (``(n, D)``) that are
  L2-normalised on every use, so the stored raw matrix (what an EMA teacher averages) can drift
  in scale without changing the cosine logits ``z S^T``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["bn", "none"]


class PointMLP(nn.Sequential):
    """Per-point MLP on ``(N, C)`` features: ``[Linear -> Norm -> ReLU] * (L - 1) -> Linear [-> Norm]``.

    Args:
        in_channels: ``C_in``.
        hidden: width of the hidden layers (ignored when ``num_layers == 1``).
        out_channels: ``C_out``.
        num_layers: number of linear layers ``L >= 1``.
        norm: ``"bn"`` (``BatchNorm1d`` over the ``N`` points, per channel) or ``"none"``.
        last_norm: also normalise the output (``BatchNorm1d``, no ReLU); only with ``norm="bn"``.

    Shapes: input ``(N, C_in)`` -> output ``(N, C_out)``. With ``norm="bn"`` in training mode
    ``N`` must be at least 2 (BatchNorm statistics).
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, num_layers: int = 2,
                 norm: Norm = "bn", last_norm: bool = False):
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if norm not in ("bn", "none"):
            raise ValueError(f"norm must be 'bn' or 'none', got {norm!r}")
        if last_norm and norm != "bn":
            raise ValueError("last_norm=True needs norm='bn'")
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden, bias=norm == "none"))
            if norm == "bn":
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU(inplace=True))
            width = hidden
        layers.append(nn.Linear(width, out_channels, bias=not last_norm))
        if last_norm:
            layers.append(nn.BatchNorm1d(out_channels))
        super().__init__(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"PointMLP expects (N, {self.in_channels}) features, got {tuple(x.shape)}")
        return super().forward(x)


#: A projector is a :class:`PointMLP` (alias kept for readable method code).
Projector = PointMLP
#: An asymmetric predictor (BYOL / GroupContrast ``h'``) is a :class:`PointMLP` too.
Predictor = PointMLP


class Prototypes(nn.Module):
    """``n`` learnable prototypes ``S`` of dimension ``D``, L2-normalised whenever they are used.

    Args:
        num_prototypes: ``n`` (GroupContrast: 32).
        dim: feature dimension ``D`` (keyword-only).

    The raw parameter ``weight`` ``(n, D)`` is initialised with i.i.d. normal entries and
    normalised rows (random directions on the unit sphere).
    """

    def __init__(self, num_prototypes: int = 32, *, dim: int):
        super().__init__()
        if num_prototypes < 1 or dim < 1:
            raise ValueError(f"need num_prototypes >= 1 and dim >= 1, got {num_prototypes}, {dim}")
        self.weight = nn.Parameter(F.normalize(torch.randn(num_prototypes, dim), dim=1))

    @property
    def num_prototypes(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def normalized(self) -> torch.Tensor:
        """``(n, D)`` prototypes with unit L2 norm rows (differentiable w.r.t. ``weight``)."""
        return F.normalize(self.weight, dim=1)

    def forward(self, z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Cosine logits ``z S^T``.

        Args:
            z: ``(S, D)`` (segment) features.
            normalize: L2-normalise the rows of ``z`` first (cosine similarity, GroupContrast Eq. 1).

        Returns:
            ``(S, n)`` similarities in ``[-1, 1]`` (when ``normalize``).
        """
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"Prototypes expects (S, {self.dim}) features, got {tuple(z.shape)}")
        if normalize:
            z = F.normalize(z, dim=1)
        return z @ self.normalized().t()

    def extra_repr(self) -> str:
        return f"num_prototypes={self.num_prototypes}, dim={self.dim}"
