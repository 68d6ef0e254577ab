"""Contrastive Scene Contexts (Hou et al., CVPR 2021): PointContrast pairs, negatives split by scene context.

Per step, for a batch of view pairs (mined RGB-D frame pairs or two holistic crops of a scene,
:func:`~contrast3d.methods.common.build_pair_dataset`) with their ``(M, 2)`` matches:

1. ``F^1 = G(X^1)``, ``F^2 = G(X^2)``: one shared SpUNet on both views (as PointContrast).
2. Per scene ``b``, up to ``num_matches`` matches ``(i, i')`` are drawn uniformly without
   replacement (all of them when fewer): anchors ``q_i = F^1_i``, keys ``k_i = F^2_{i'}``.
3. The space around each anchor is split into ``2 x num_angles`` partitions (distance bins
   ``[r1, r2)`` / ``>= r2`` times angle sectors) by the position of the *other anchors* relative to
   it, and one InfoNCE is computed per (anchor, partition) with the keys of that partition as
   negatives (:func:`contrast3d.losses.csc.csc_info_nce`, the maths and the averaging are in its
   module docstring); ``L`` = mean over scenes of the per-scene loss.

Every decision the paper leaves open, in one place (``CSCConfig`` / data field in brackets):

* **Partition coordinates.** The partition of a pair ``(i, j)`` is computed from the *world*
  (un-augmented) coordinates of the two view-1 anchors divided by the grid unit, as the released
  trainer does (it undoes the view's random rotation with ``T0``, centres and divides by the voxel
  size). The views in the batch are rotated, scaled and shifted independently, so their ``coord``
  cannot be used; the world coordinates of the kept points are not in a platform batch either.
  :func:`build_csc_dataset` therefore wraps the pair dataset's per-view transform in
  :class:`KeepWorldCoord`, which stores each view's pre-augmentation coordinates as the per-point
  ``extra["world_coord"]`` array (metres) *before* the augmentation chain; croppers and the
  voxeliser index ``extra`` with the kept points, so after collation
  ``batch.view1.extra["world_coord"][p]`` is exactly ``raw.coord[origin_index[p]]``. A rotation of
  view 1 changes ``coord``, ``grid_coord``, the features, not the partitions.
* **Grid unit** (``partition_grid`` = null): coordinates are in units of ``data.grid_size`` (CSC:
  2.5 cm, so ``r1 = 2``, ``r2 = 20`` are 5 cm and 50 cm). With coarser voxels set
  ``partition_grid: 0.025`` to keep CSC's metric radii (the CPU-small preset does).
* **Radii / angles** (``r1`` = 2, ``r2`` = 20, ``num_angles`` = 4, ``angle_mode`` = ``xy``): the
  paper's ShapeContext-like partition; ``xy`` = 4 horizontal quadrants of ``atan2(dy, dx)``, the
  description of the paper; ``csc_code`` = the released ``shape_context.py`` bins (quadrants of the
  vertical y-z plane, see :mod:`contrast3d.losses.csc`). Pairs closer than ``r1`` are no negatives.
* **Keys of a partition** sit where their anchors are (``key_coord`` = anchor coordinates), as the
  released code: the negative ``k_j`` of anchor ``i`` is in partition ``p`` iff anchor ``j`` is.
* **Sampling** (``num_matches`` = 4096): per *scene*, as the released ``PartitionPointNCELossTrainer``
  (PointContrast's trainer samples 4096 per batch); the loss is computed scene by scene (an
  ``M x M`` logits matrix per scene, not ``(B M)^2``) and averaged over the scenes that have
  matches. Draws use torch's global RNG, which the engine checkpoints (bit-identical resume).
* **Averaging** (``reduction`` = ``valid``): per scene, the mean over (anchor, partition) cells
  with at least one negative; ``csc`` = the released weighting (empty cells count 0, mean over the
  ``P`` partitions and the anchors).
* **Temperature** ``tau`` = 0.4 (CSC's script), features L2-normalised (cosine), computed in
  float32 outside autocast.
* **Input** (``data.feat_keys``): the presets use colour + normal (6 channels) like the other
  methods so that the downstream fine-tuning presets load the stem; the released CSC code feeds
  RGB only (``feat_keys: [color]``, ``in_channels: 3``); ``feat_keys: [ones]``, ``in_channels: 1``
  is the geometry-only input.
* **Logs**: ``loss_csc`` (the only term), ``pos_cos`` (mean cosine of the sampled positives),
  ``matches`` (matches in the batch), ``anchors`` (sampled anchors) and ``cells`` (mean number of
  partitions per anchor that contain at least one negative, out of ``2 num_angles``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from contrast3d.losses.csc import csc_info_nce, num_partitions, partition_ids
from contrast3d.losses.info_nce import matched_rows
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import (
    SMOKE_VIEWS,
    BackboneConfig,
    PairDataConfig,
    build_backbone,
    build_pair_dataset,
    pair_collate,
    smoke_frame_pairs,
)
from contrast3d.methods.pointcontrast import sample_rows
from contrast3d.structures import PointBatch, PointCloud, ViewBatch

#: ``extra`` key of the per-point pre-augmentation (world) coordinates, metres.
WORLD_KEY = "world_coord"


class KeepWorldCoord:
    """Per-view transform wrapper: ``extra["world_coord"] = coord`` (metres), then ``inner``.

    Applied to a world-coordinate cloud before any augmentation, so every kept output point carries
    the coordinates it had before rotation, scaling, shifting and jitter (``(N, 3)`` float32).
    Picklable (DataLoader workers).
    """

    def __init__(self, inner=None):
        self.inner = inner

    def __call__(self, cloud: PointCloud, rng: np.random.Generator) -> PointCloud:
        start = replace(cloud, extra={**cloud.extra, WORLD_KEY: np.asarray(cloud.coord, np.float32)},
                        meta=dict(cloud.meta))
        return start if self.inner is None else self.inner(start, rng)


def build_csc_dataset(root: str, cfg: PairDataConfig) -> Dataset:
    """:func:`~contrast3d.methods.common.build_pair_dataset` whose views carry ``extra["world_coord"]``."""
    ds = build_pair_dataset(root, cfg)
    ds.transform = KeepWorldCoord(ds.transform)  # type: ignore[attr-defined]
    return ds


def world_coord(view: PointBatch) -> torch.Tensor:
    """``(N, 3)`` pre-augmentation coordinates (metres) of a view built by :func:`build_csc_dataset`."""
    coord = view.extra.get(WORLD_KEY)
    if coord is None:
        raise ValueError(f"the batch has no per-point '{WORLD_KEY}': build the dataset with "
                         "contrast3d.methods.csc.build_csc_dataset (KeepWorldCoord) so partitions can use "
                         "un-augmented coordinates")
    return coord


@dataclass
class CSCConfig:
    """The ``method`` section (defaults from CSC's pre-training script; module docstring for the choices).

    Attributes:
        tau: InfoNCE temperature.
        num_matches: matches sampled per scene.
        r1, r2: distance bin edges in grid units (``< r1`` excluded, ``[r1, r2)`` inner, ``>= r2`` outer).
        num_angles: angle sectors (``csc_code`` requires 4).
        angle_mode: ``xy`` (horizontal sectors, the paper) or ``csc_code`` (the released bins).
        reduction: ``valid`` (mean over non-empty cells) or ``csc`` (released weighting).
        partition_grid: metres per grid unit of the partition coordinates (``None``: ``data.grid_size``).
    """

    tau: float = 0.4
    num_matches: int = 4096
    r1: float = 2.0
    r2: float = 20.0
    num_angles: int = 4
    angle_mode: Literal["xy", "csc_code"] = "xy"
    reduction: Literal["valid", "csc"] = "valid"
    partition_grid: float | None = None

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.num_matches < 1:
            raise ValueError(f"method.tau and method.num_matches must be positive; got {self.tau}, "
                             f"{self.num_matches}")
        if not 0.0 <= self.r1 < self.r2:
            raise ValueError(f"method.r1 / r2 need 0 <= r1 < r2; got {self.r1}, {self.r2}")
        if self.num_angles < 1 or (self.angle_mode == "csc_code" and self.num_angles != 4):
            raise ValueError(f"method.num_angles must be >= 1 (4 for angle_mode csc_code); got {self.num_angles}")
        if self.partition_grid is not None and self.partition_grid <= 0:
            raise ValueError(f"method.partition_grid must be > 0 or null; got {self.partition_grid}")


class CSC(PretrainMethod):
    """Shared backbone on both views; partitioned PointInfoNCE on sampled matches, scene by scene."""

    def __init__(self, cfg: CSCConfig, model: BackboneConfig, data: PairDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.net = build_backbone(model)
        self.unit = float(cfg.partition_grid if cfg.partition_grid is not None else data.grid_size)

    def backbone(self) -> nn.Module:
        return self.net

    def sample_matches(self, batch: ViewBatch) -> list[torch.Tensor]:
        """Per scene, ``(M_b, 2)`` rows of ``batch.matches`` drawn uniformly (torch's global RNG)."""
        matches, ends = batch.matches, batch.match_offset.tolist()
        out, start = [], 0
        for end in ends:  # one draw per scene (a handful), not per point
            pick = sample_rows(end - start, self.cfg.num_matches, matches.device) + start
            out.append(matches[pick])
            start = end
        return out

    def anchor_partitions(self, batch: ViewBatch, matches: torch.Tensor) -> torch.Tensor:
        """``(M, M)`` partition ids of one scene's sampled matches (``-1`` = no negative), computed from
        the anchors' world coordinates in grid units, never from the augmented view."""
        anchor = world_coord(batch.view1)[matches[:, 0]].float() / self.unit
        return partition_ids(anchor, None, self.cfg.r1, self.cfg.r2, self.cfg.num_angles, self.cfg.angle_mode)

    def nonempty_cells(self, part: torch.Tensor) -> torch.Tensor:
        """``(M,)`` number of partitions holding at least one negative (``j != i``) of each anchor."""
        m, width = part.shape[0], num_partitions(self.cfg.num_angles) + 1
        rows = torch.arange(m, device=part.device).view(-1, 1) * width
        counts = torch.bincount((rows + part.where(part >= 0, width - 1)).view(-1), minlength=m * width).view(m, width)
        diag = part.diagonal()                     # the anchor itself is no negative (only possible if r1 == 0)
        counts[torch.arange(m, device=part.device), diag.where(diag >= 0, width - 1)] -= 1
        return (counts[:, :-1] > 0).sum(1).float()

    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        world_coord(batch.view1)  # fail before the backbone runs if the dataset was not wrapped
        f1 = self.net(batch.view1)
        f2 = self.net(batch.view2)
        dev = f1.device
        with torch.autocast(dev.type, enabled=False):
            f1, f2 = f1.float(), f2.float()
            losses, cos, cells = [], [], []
            for matches in self.sample_matches(batch):
                if matches.shape[0] == 0:
                    continue
                part = self.anchor_partitions(batch, matches)
                q, k = matched_rows(f1, f2, matches)
                losses.append(csc_info_nce(q, k, tau=cfg.tau, num_angles=cfg.num_angles, reduction=cfg.reduction,
                                           partitions=part))
                with torch.no_grad():
                    cos.append((F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1))
                    cells.append(self.nonempty_cells(part))
            loss = torch.stack(losses).mean() if losses else (f1.sum() + f2.sum()) * 0.0
            with torch.no_grad():
                zero = f1.new_zeros(())
                logs = {"loss_csc": loss.detach(),
                        "pos_cos": torch.cat(cos).mean() if cos else zero,
                        "matches": f1.new_tensor(float(batch.matches.shape[0])),
                        "anchors": f1.new_tensor(float(sum(len(c) for c in cos))),
                        "cells": torch.cat(cells).mean() if cells else zero}
        return {"loss": loss, **logs}


SPEC = MethodSpec(
    config_cls=CSCConfig, method_cls=CSC,
    build_dataset=build_csc_dataset, build_collate=pair_collate,
    model_config_cls=BackboneConfig, data_config_cls=PairDataConfig,
    description="CSC: PointInfoNCE within ShapeContext space partitions (distance x angle) of each anchor",
    smoke={"model": {"preset": "spunet-tiny"},
           "data": SMOKE_VIEWS,
           "method": {"num_matches": 256, "partition_grid": 0.025}},
    smoke_data=smoke_frame_pairs,
)
