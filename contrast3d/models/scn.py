"""Siamese correspondence network (SCN) of FAC (Liu et al., CVPR 2023, §3.3).

For one scene with backbone features ``D`` (``N x f_c``):

1. **Reshape** ``D`` into feature maps ``E`` (``m x w x f_c``, ``w = ceil(N / m)``, paper ``m = 20``):
   points keep their input order, row-major, ``E[r, c] = D[r * w + c]``; the ``m * w - N`` slots
   after the last point are zero padding (the paper writes ``N / m`` and says nothing about ``N``
   not divisible by ``m``).
2. **Projector** ``h``: point-MLP (``Linear(f_c, hidden)``, applied at every map position, i.e. a
   1x1 convolution), ReLU, point-MLP (``Linear(hidden, f_c)``); ``hidden = f_c`` by default. Its
   input is ``E`` itself (§3.3: "apply the projector h to E^a and E^b respectively"), and the
   same ``h`` serves both views (Siamese, shared weights).
3. **Score maps** ``S = h(E)`` of ``E``'s shape. The paper names only the two point-MLPs and the
   ReLU, so by default ``S`` passes no further activation (``activation="none"``); the option
   ``"sigmoid"`` makes ``S`` a gate in ``(0, 1)``.
4. **Enhanced maps** ``H = E * S`` (element-wise), reshaped back to ``F`` (``N x f_c``), dropping
   the padding.

Because ``h`` acts on each position separately, ``F_i = D_i * h(D_i)`` exactly: the reshape is
a layout that changes no value of ``F`` (padding slots never mix with points). It is kept for
fidelity with the paper and :meth:`SiameseCorrespondence.maps` returns the per-scene ``E, S, H``
maps for inspection. A batch (Pointcept ``offset``) is reshaped scene by scene, each scene padded
to its own multiple of ``m``; :meth:`~SiameseCorrespondence.forward` stacks the padded maps of all
scenes along the point axis and runs ``h`` once. ``score_maps=False`` (ablation) returns ``D``
unchanged. The SCN is used only during pre-training; it is not part of the exported backbone.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def to_map(feat: torch.Tensor, m: int) -> torch.Tensor:
    """``(N, C)`` features of one scene -> ``(m, ceil(N / m), C)`` map, zero-padded at the end."""
    n, c = feat.shape
    width = -(-n // m)
    padded = feat.new_zeros(m * width, c)
    padded[:n] = feat
    return padded.view(m, width, c)


def from_map(fmap: torch.Tensor, n: int) -> torch.Tensor:
    """``(m, w, C)`` map -> ``(n, C)`` point features (the padding after point ``n`` is dropped)."""
    return fmap.reshape(-1, fmap.shape[-1])[:n]


class SiameseCorrespondence(nn.Module):
    """FAC's SCN: ``F = reshape^-1(E * h(E))`` with ``E = reshape(D)`` per scene.

    Args:
        channels: ``f_c``, width of the backbone features (input and output).
        m: number of map rows (paper: 20).
        hidden: width between the two point-MLPs (default ``channels``).
        score_maps: ``False`` makes the module the identity (ablation without SCN).
        activation: ``none`` (default, paper text) or ``sigmoid`` applied to ``S``.
    """

    def __init__(self, channels: int, m: int = 20, hidden: int | None = None, score_maps: bool = True,
                 activation: Literal["none", "sigmoid"] = "none"):
        super().__init__()
        if m < 1 or channels < 1:
            raise ValueError(f"channels and m must be positive; got channels={channels}, m={m}")
        if activation not in ("none", "sigmoid"):
            raise ValueError(f"unknown score activation {activation!r}")
        self.channels, self.m, self.score_maps, self.activation = channels, m, score_maps, activation
        hidden = channels if hidden is None else hidden
        self.h: nn.Sequential | None = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                                     nn.Linear(hidden, channels)) if score_maps else None

    def scores(self, fmap: torch.Tensor) -> torch.Tensor:
        """``S = h(E)`` for a map (or any ``(..., f_c)`` tensor)."""
        if self.h is None:
            raise RuntimeError("scores() needs score_maps=True")
        s = self.h(fmap)
        return torch.sigmoid(s) if self.activation == "sigmoid" else s

    def _layout(self, n: int, offset: torch.Tensor | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot of every point in the stacked padded maps, and the per-scene padded sizes ``m * w_s``."""
        offset = torch.tensor([n], device=device) if offset is None else offset.to(device)
        if offset.numel() == 0 or int(offset[-1]) != n:
            raise ValueError(f"offset must end at the number of points {n}; got {offset.tolist()}")
        counts = torch.diff(offset, prepend=offset.new_zeros(1))
        padded = -(-counts // self.m) * self.m
        scene = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
        local = torch.arange(n, device=device) - (offset - counts)[scene]
        return (torch.cumsum(padded, 0) - padded)[scene] + local, padded

    def forward(self, feat: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """Enhanced features ``F``.

        Args:
            feat: ``(N, f_c)`` backbone features ``D`` of a batch of scenes.
            offset: ``(B,)`` cumulative point counts (Pointcept); ``None`` = one scene.

        Returns:
            ``(N, f_c)`` ``F`` in the input point order (``feat`` itself when ``score_maps=False``).
        """
        if not self.score_maps:
            return feat
        if feat.dim() != 2 or feat.shape[1] != self.channels:
            raise ValueError(f"feat must be (N, {self.channels}); got {tuple(feat.shape)}")
        slot, padded = self._layout(feat.shape[0], offset, feat.device)
        stacked = feat.new_zeros(int(padded.sum()), self.channels).index_copy(0, slot, feat)
        return (stacked * self.scores(stacked))[slot]

    def maps(self, feat: torch.Tensor, offset: torch.Tensor | None = None
             ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per scene ``(E, S, H)``, each ``(m, ceil(N_s / m), f_c)`` (for inspection; slow path)."""
        if self.h is None:
            raise RuntimeError("maps() needs score_maps=True")
        ends = [feat.shape[0]] if offset is None else offset.tolist()
        out, start = [], 0
        for end in ends:
            e = to_map(feat[start:end], self.m)
            s = self.scores(e)
            out.append((e, s, e * s))
            start = end
        return out
