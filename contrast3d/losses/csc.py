"""Contrastive Scene Contexts (Hou et al., CVPR 2021): PointInfoNCE inside spatial partitions.

For ``M`` sampled matches ``(q_i, k_i)`` (view-1 anchor ``i``, its match in view 2), the space
around each anchor is split into ``P = 2 * num_angles`` partitions by the position of the other
matches relative to it (a ShapeContext-like descriptor), and one InfoNCE is computed per partition:

``CE_ip = -log( exp(q_i.k_i / tau) / (exp(q_i.k_i / tau) + sum_{j in N_p(i)} exp(q_i.k_j / tau)) )``

with ``N_p(i) = {j != i : partition(i, j) = p}``. Negatives therefore only compete with other
keys that sit in the same "direction and distance" from the anchor, which is the point of CSC:
hard negatives are not drowned by easy far-away ones.

**Partition of the pair (i, j)** (:func:`partition_ids`), from ``rel = key_coord[j] - anchor_coord[i]``
in *grid units* (voxels) and ``d = |rel|``:

* distance bin: ``d < r1`` -> ``-1`` (not a negative at all: too close to the anchor, i.e. most
  likely the same surface patch as the positive), ``r1 <= d < r2`` -> 0, ``d >= r2`` -> 1;
* angle bin (``num_angles`` of them), two conventions:

  - ``angle_mode="xy"`` (default): equal sectors of the horizontal angle
    ``atan2(rel_y, rel_x)`` in ``[0, 2 pi)``; with 4 angles these are the quadrants
    (x+y+, x-y+, x-y-, x+y-). A point straight above/below (``rel_x = rel_y = 0``) falls in sector 0.
  - ``angle_mode="csc_code"``: exactly the official code (``lib/shape_context.py`` with
    ``nbins_xy = nbins_zy = 2``): ``floor(atan2(y, x) mod 2pi / pi) * 2 + floor(atan2(y, z) mod pi / (pi/2))``.
    Worked out, this depends only on ``sign(y)`` and ``sign(y * z)``: the 4 "angle" bins of the
    released code are the quadrants of the vertical y-z plane (half-space y >= 0 or y < 0, each
    split into above / below), not horizontal sectors. Only ``num_angles = 4`` is defined.

  ``partition = distance_bin * num_angles + angle_bin``, ``-1`` = excluded. With the batch given,
  pairs from different scenes are excluded too (the official code runs the loss per scene).

**Units (decision).** We follow the paper's released code: coordinates in grid units and
``r1 = 2``, ``r2 = 20``. The official trainer takes the voxel coordinates of the anchors,
undoes the view's augmentation (so angles are measured in the scan's canonical, z-up frame),
centres them and divides by the 2.5 cm voxel size, so the bins are split at 5 cm and 50 cm.
Pointcept's port (``MSC-v1m2``) applies the same numbers ``r1 = 2, r2 = 20`` to its un-augmented
coordinates in *metres* (2 m and 20 m: nearly every negative of a room-scale view is then
either excluded or in the inner bin, the outer bin is empty), uses 4 partitions (distance x
above/below), and also trains on its fill value (the excluded pairs) as if it were a fifth
partition. We do not follow it. Callers should pass un-augmented coordinates divided by the
voxel size (the partition is translation-invariant, so centring is irrelevant); with a voxel size
other than 2.5 cm, scale ``r1``/``r2`` by ``0.025 / voxel_size`` to keep CSC's metric radii.

**Averaging (decision).** ``reduction="valid"`` (default): mean of ``CE_ip`` over the (anchor,
partition) cells that contain at least one negative; a cell without negatives has
``CE_ip = 0`` identically and would only dilute the loss. ``reduction="csc"``: the official
code's weighting, ``(1 / B) sum_b (1 / P) sum_p mean_{i in scene b} CE_ip`` with empty cells
counting as 0 and ``B`` the number of scenes that have matches (the official code divides by the
configured batch size). The temperature is 0.4 as in CSC's pre-training script; features are
L2-normalised (cosine similarity) as CSC's network does.

The implementation is vectorised over the ``M x M`` logits: every pair is mapped to a flat
(anchor, partition) cell; per-cell maxima (``scatter_reduce``, detached) stabilise the
log-sum-exp and per-cell sums of ``exp`` come from one ``index_add`` -- no ``(P, M, M)`` tensor
and no loop over anchors or partitions. Memory is a few ``M x M`` tensors (``M = 4096``: about 0.5 GB).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AngleMode = Literal["xy", "csc_code"]
Reduction = Literal["valid", "csc"]

NUM_DISTANCE_BINS = 2
_ROW_BLOCK = 2048  # rows of the (M, K) partition matrix computed at a time (bounds temporaries)


def num_partitions(num_angles: int = 4) -> int:
    """Number of partitions ``P = 2 * num_angles`` (2 distance bins x angle bins)."""
    return NUM_DISTANCE_BINS * num_angles


def _angle_bins(dx: torch.Tensor, dy: torch.Tensor, dz: torch.Tensor, num_angles: int,
                angle_mode: str) -> torch.Tensor:
    two_pi = 2.0 * math.pi
    if angle_mode == "xy":
        theta = torch.remainder(torch.atan2(dy, dx), two_pi)
        return torch.floor(theta * (num_angles / two_pi)).long().clamp_(0, num_angles - 1)
    # Official CSC code: 2 sectors of atan2(y, x) in [0, 2pi) times 2 of atan2(y, z) folded into [0, pi).
    xy = torch.floor(torch.remainder(torch.atan2(dy, dx), two_pi) / math.pi).long().clamp_(0, 1)
    zy = torch.floor(torch.remainder(torch.atan2(dy, dz), math.pi) / (math.pi / 2)).long().clamp_(0, 1)
    return xy * 2 + zy


@torch.no_grad()
def partition_ids(anchor_coord: torch.Tensor, key_coord: torch.Tensor | None = None, r1: float = 2.0,
                  r2: float = 20.0, num_angles: int = 4, angle_mode: AngleMode = "xy",
                  batch: torch.Tensor | None = None, key_batch: torch.Tensor | None = None) -> torch.Tensor:
    """CSC partition of every (anchor, key) pair.

    Args:
        anchor_coord: ``(M, 3)`` anchor positions in grid units (voxels), un-augmented frame.
        key_coord: ``(K, 3)`` positions of the candidate negatives in the same frame and units
            (default: ``anchor_coord``, as CSC: the negative ``k_j`` sits where its anchor ``q_j`` is).
        r1, r2: distance bin edges in grid units (``[r1, r2)`` -> bin 0, ``>= r2`` -> bin 1,
            ``< r1`` excluded).
        num_angles: angle bins (``csc_code`` mode requires 4).
        angle_mode: ``"xy"`` horizontal sectors or ``"csc_code"`` (see module docstring).
        batch: optional ``(M,)`` scene index of each anchor; ``key_batch`` ``(K,)`` of each key
            (default ``batch``). Pairs from different scenes are excluded.

    Returns:
        ``(M, K)`` int64: ``distance_bin * num_angles + angle_bin`` in ``[0, 2 * num_angles)``, or
        ``-1`` for excluded pairs (closer than ``r1``, other scene). The diagonal is not special-cased
        here (it is ``-1`` whenever ``r1 > 0`` because its distance is 0); :func:`csc_info_nce` never
        uses ``j == i`` as a negative.
    """
    key_coord = anchor_coord if key_coord is None else key_coord
    if anchor_coord.dim() != 2 or anchor_coord.shape[1] != 3 or key_coord.dim() != 2 or key_coord.shape[1] != 3:
        raise ValueError(f"coordinates must be (M, 3) and (K, 3); got {tuple(anchor_coord.shape)}, "
                         f"{tuple(key_coord.shape)}")
    if not 0.0 <= r1 < r2:
        raise ValueError(f"need 0 <= r1 < r2; got r1={r1}, r2={r2}")
    if angle_mode not in ("xy", "csc_code"):
        raise ValueError(f"angle_mode must be 'xy' or 'csc_code'; got {angle_mode!r}")
    if num_angles < 1 or (angle_mode == "csc_code" and num_angles != 4):
        raise ValueError(f"num_angles must be >= 1 (exactly 4 for 'csc_code'); got {num_angles}")
    if batch is not None:
        key_batch = batch if key_batch is None else key_batch
        if batch.shape != (anchor_coord.shape[0],) or key_batch.shape != (key_coord.shape[0],):
            raise ValueError("batch / key_batch must be (M,) / (K,)")
    dtype = torch.float64 if anchor_coord.dtype == torch.float64 else torch.float32
    anchor = anchor_coord.to(dtype)
    key = key_coord.to(anchor.device, dtype)
    out = torch.empty(anchor.shape[0], key.shape[0], dtype=torch.long, device=anchor.device)
    for start in range(0, anchor.shape[0], _ROW_BLOCK):
        rows = slice(start, start + _ROW_BLOCK)
        dx = key[None, :, 0] - anchor[rows, 0, None]
        dy = key[None, :, 1] - anchor[rows, 1, None]
        dz = key[None, :, 2] - anchor[rows, 2, None]
        dist = torch.sqrt(dx * dx + dy * dy + dz * dz)
        part = (dist >= r2).long() * num_angles + _angle_bins(dx, dy, dz, num_angles, angle_mode)
        excluded = dist < r1
        if batch is not None and key_batch is not None:  # key_batch was defaulted to batch above
            excluded |= batch[rows, None] != key_batch[None, :].to(batch.device)
        out[rows] = part.masked_fill_(excluded, -1)
    return out


def csc_info_nce(query: torch.Tensor, key: torch.Tensor, anchor_coord: torch.Tensor | None = None,
                 tau: float = 0.4, key_coord: torch.Tensor | None = None, r1: float = 2.0, r2: float = 20.0,
                 num_angles: int = 4, angle_mode: AngleMode = "xy", batch: torch.Tensor | None = None,
                 reduction: Reduction = "valid", normalize: bool = True,
                 partitions: torch.Tensor | None = None) -> torch.Tensor:
    """Partitioned PointInfoNCE of Contrastive Scene Contexts.

    Args:
        query: ``(M, C)`` anchor features (view 1); ``key``: ``(M, C)`` features of their matches
            (view 2), row ``i`` matches row ``i``.
        anchor_coord: ``(M, 3)`` anchor positions in grid units (voxels, un-augmented frame);
            ``key_coord`` optional ``(M, 3)`` key positions (default: ``anchor_coord``).
        tau: temperature (0.4, CSC's pre-training script).
        r1, r2, num_angles, angle_mode: see :func:`partition_ids`.
        batch: optional ``(M,)`` scene index of each match; negatives stay within a scene.
        reduction: ``"valid"`` (mean over (anchor, partition) cells with >= 1 negative) or
            ``"csc"`` (official weighting, empty cells count as 0); see the module docstring.
        normalize: L2-normalise the features first.
        partitions: optional precomputed ``(M, M)`` output of :func:`partition_ids` (then the
            coordinates, radii and angles are ignored; ``num_angles`` must still match).

    Returns:
        Scalar loss; ``0`` (with grad) when ``M == 0`` or no cell has a negative.
    """
    if query.shape != key.shape or query.dim() != 2:
        raise ValueError(f"query and key must both be (M, C); got {tuple(query.shape)} and {tuple(key.shape)}")
    if reduction not in ("valid", "csc"):
        raise ValueError(f"reduction must be 'valid' or 'csc'; got {reduction!r}")
    m = query.shape[0]
    zero = (query.sum() + key.sum()) * 0.0
    if m == 0:
        return zero
    if partitions is None:
        if anchor_coord is None:
            raise ValueError("anchor_coord (or precomputed partitions) is required")
        partitions = partition_ids(anchor_coord, key_coord, r1, r2, num_angles, angle_mode, batch)
    if partitions.shape != (m, m):
        raise ValueError(f"partitions must be ({m}, {m}); got {tuple(partitions.shape)}")
    n_part = num_partitions(num_angles)
    if int(partitions.max()) >= n_part:
        raise ValueError(f"partition ids must be < {n_part} for num_angles={num_angles}")
    if normalize:
        query = F.normalize(query, dim=1)
        key = F.normalize(key, dim=1)
    logits = query @ key.t() / tau                                    # (M, M)
    pos = logits.diagonal()                                           # (M,)

    # Flat cell index (anchor i, partition p); excluded pairs and the diagonal go to a dump column P.
    col = partitions.to(logits.device).clone()
    col.fill_diagonal_(-1)
    col = torch.where(col >= 0, col, torch.full_like(col, n_part))
    width = n_part + 1
    flat = (torch.arange(m, device=logits.device).view(-1, 1) * width + col).view(-1)

    with torch.no_grad():  # per-cell shift for a stable log-sum-exp (its value does not change the loss)
        shift = torch.full((m * width,), float("-inf"), dtype=logits.dtype, device=logits.device)
        shift = shift.scatter_reduce(0, flat, logits.reshape(-1), reduce="amax")
        shift = torch.maximum(shift.view(m, width), pos.detach().view(-1, 1))
    expo = torch.exp(logits.reshape(-1) - shift.view(-1)[flat])
    sums = torch.zeros(m * width, dtype=logits.dtype, device=logits.device).index_add(0, flat, expo)
    sums = sums.view(m, width)[:, :n_part]
    counts = torch.bincount(flat, minlength=m * width).view(m, width)[:, :n_part]
    cell_shift = shift[:, :n_part]
    lse = cell_shift + torch.log(torch.exp(pos.view(-1, 1) - cell_shift) + sums)
    valid = counts > 0
    ce = torch.where(valid, lse - pos.view(-1, 1), torch.zeros_like(lse))  # (M, P)

    if reduction == "valid":
        return ce[valid].mean() if bool(valid.any()) else zero + logits.sum() * 0.0
    if batch is None:
        return ce.sum() / (n_part * m)
    _, scene, per_scene = torch.unique(batch, return_inverse=True, return_counts=True)
    weight = 1.0 / (per_scene[scene].to(ce.dtype) * n_part * per_scene.numel())
    return (ce.sum(dim=1) * weight).sum()


class CSCInfoNCE(nn.Module):
    """Module form of :func:`csc_info_nce` (tau 0.4, r1 = 2, r2 = 20 voxels, 2 x 4 partitions)."""

    def __init__(self, tau: float = 0.4, r1: float = 2.0, r2: float = 20.0, num_angles: int = 4,
                 angle_mode: AngleMode = "xy", reduction: Reduction = "valid", normalize: bool = True):
        super().__init__()
        self.tau, self.r1, self.r2 = tau, r1, r2
        self.num_angles, self.angle_mode = num_angles, angle_mode
        self.reduction, self.normalize = reduction, normalize

    def forward(self, query: torch.Tensor, key: torch.Tensor, anchor_coord: torch.Tensor,
                key_coord: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        return csc_info_nce(query, key, anchor_coord, self.tau, key_coord, self.r1, self.r2, self.num_angles,
                            self.angle_mode, batch, self.reduction, self.normalize)
