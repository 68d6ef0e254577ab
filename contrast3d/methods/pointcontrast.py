"""PointContrast (Xie et al., ECCV 2020): point-level contrast between two overlapping views.

Two partial scans of one scene (or two crops of a reconstruction, the "holistic" variant) are
augmented independently; matched points must have similar features. Losses (§3.4):

* ``infonce``: PointInfoNCE over up to ``num_matches`` sampled matches, temperature ``tau``;
  negatives are the other sampled matches' keys, across the batch or within each scene.
* ``hardest``: FCGF's hardest-contrastive loss, margins ``pos_margin``/``neg_margin``, hardest
  negative among ``num_negatives`` random points per view, known positives never negatives.

Where this follows the official code (facebookresearch/PointContrast, ``pretrain/``) rather than
the paper, each switch defaults to the official behaviour unless noted:

* ``head_dim`` (official: 32): the losses see a *signed* 1x1 projection of the decoder output.
  The official Res16UNet34C ends in a 1x1 convolution with bias (96 -> 32, no norm or ReLU after
  it); the SpUNet here returns its last decoder block, which ends in a ReLU, so without the head
  every feature is non-negative and every cosine similarity is >= 0 (half the sphere is
  unreachable). The head is a bias-carrying linear map applied per point (the same as a kernel-1
  sparse conv), is used only in pre-training and is not exported: :meth:`backbone` (what
  :meth:`PretrainMethod.exports` writes) is the SpUNet alone. ``head_dim: 0`` contrasts the
  decoder features directly (no head parameters exist then).
* ``fcgf_positive`` (official: true): the hardest-contrastive positive term ``[d^2 - m_p]_+`` of
  the FCGF / official code instead of the paper's ``[d - m_p]_+^2``
  (:mod:`contrast3d.losses.hardest_contrastive`).
* ``gather_negatives`` (official: false): PointInfoNCE negatives from every DDP process, with
  gradient (:func:`contrast3d.losses.info_nce.gather_rows`); the official code contrasts within
  each GPU's own batch. Only for ``infonce``.
* ``mask_repeated_keys`` (default true, the one switch that does *not* default to the official
  code, which keeps them): two sampled matches that share their view-2 point are not each
  other's negatives. Matches here are nearest neighbours from view 1 into view 2, so queries
  are unique but a key may repeat; unmasked, the repeated key sits in both numerator and
  denominator of the other query's softmax (a false negative). ``pointcontrast_official.yaml``
  turns it off.

The input side of the official recipe lives in the ``data``/``model`` sections
(``pointcontrast_official.yaml``): geometry-only input (``data.feat_keys: [ones]``,
``model.in_channels: 1``; the official code feeds three constant ones, which is the same
function of the geometry with a 3x wider first kernel) and frames stored denser than the
training voxel (``contrast3d prepare rgbd --store-voxel``; the official code stores every depth
pixel and voxelises only after rotating).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.losses import hardest_contrastive, matched_rows, point_info_nce
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
from contrast3d.structures import PointBatch, ViewBatch


@dataclass
class PointContrastConfig:
    """The ``method`` section (defaults from the paper and the official code).

    Attributes:
        loss: ``infonce`` (PointInfoNCE) or ``hardest`` (hardest-contrastive).
        tau: PointInfoNCE temperature.
        num_matches: matches sampled per batch (per process; PointInfoNCE 4096).
        negatives: ``batch`` (all sampled matches of the batch) or ``scene`` (same scene only).
        pos_margin, neg_margin: hardest-contrastive margins (0.1, 1.4) on L2 feature distances.
        num_negatives: hardest-contrastive negative pool per view.
        head_dim: width of the signed 1x1 projection head the losses see (official 32); 0 = no
            head, contrast the backbone's decoder features.
        fcgf_positive: hardest-contrastive positive term ``[d^2 - m_p]_+`` (official code) instead
            of the paper's ``[d - m_p]_+^2``.
        gather_negatives: PointInfoNCE negatives gathered from every DDP process (with gradient).
        mask_repeated_keys: a key whose view-2 point is another query's positive is not that
            query's negative.
    """

    loss: Literal["infonce", "hardest"] = "infonce"
    tau: float = 0.4
    num_matches: int = 4096
    negatives: Literal["batch", "scene"] = "batch"
    pos_margin: float = 0.1
    neg_margin: float = 1.4
    num_negatives: int = 2048
    head_dim: int = 32
    fcgf_positive: bool = True
    gather_negatives: bool = False
    mask_repeated_keys: bool = True

    def __post_init__(self) -> None:
        if self.head_dim < 0:
            raise ValueError(f"method.head_dim must be >= 0 (0 = no head), got {self.head_dim}")
        if not self.tau > 0 or self.num_matches < 1 or self.num_negatives < 1:
            raise ValueError(f"method.tau must be > 0 and method.num_matches / num_negatives >= 1, got "
                             f"{self.tau}, {self.num_matches}, {self.num_negatives}")
        if self.gather_negatives and self.loss != "infonce":
            raise ValueError("method.gather_negatives applies to loss 'infonce' only")


def sample_rows(count: int, num: int, device: torch.device) -> torch.Tensor:
    """Up to ``num`` distinct row indices out of ``count`` (all of them, in order, if fewer)."""
    if count <= num:
        return torch.arange(count, device=device)
    return torch.randperm(count, device=device)[:num]


class PointContrast(PretrainMethod):
    """Shared backbone (+ projection head) applied to both views; loss on matched point features."""

    def __init__(self, cfg: PointContrastConfig, model: BackboneConfig, data: PairDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.net = build_backbone(model)
        # Signed 1x1 projection (no norm / activation after it), pre-training only: not part of
        # backbone(), so never exported.
        self.head: nn.Module | None = nn.Linear(self.net.out_channels, cfg.head_dim) if cfg.head_dim > 0 else None

    def backbone(self) -> nn.Module:
        return self.net

    def embed(self, view: PointBatch) -> torch.Tensor:
        """``(N, head_dim)`` contrast features of one view (``(N, C)`` decoder features without head)."""
        feat = self.net(view)
        return feat if self.head is None else self.head(feat)

    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        f1 = self.embed(batch.view1)
        f2 = self.embed(batch.view2)
        pick = sample_rows(batch.matches.shape[0], cfg.num_matches, f1.device)
        matches = batch.matches[pick]
        q_raw, k_raw = matched_rows(f1, f2, matches)  # (M, D) each
        if cfg.loss == "infonce":
            group = None
            if cfg.negatives == "scene":
                group = torch.searchsorted(batch.match_offset, pick, right=True)
            key_id = matches[:, 1] if cfg.mask_repeated_keys else None
            loss = point_info_nce(q_raw, k_raw, cfg.tau, group,
                                  key_id=key_id, gather=cfg.gather_negatives)
            logs = {}
        else:
            per_scene = cfg.negatives == "scene"
            pos, neg = hardest_contrastive(
                f1, f2, matches, cfg.pos_margin, cfg.neg_margin,
                neg_pool1=sample_rows(f1.shape[0], cfg.num_negatives, f1.device),
                neg_pool2=sample_rows(f2.shape[0], cfg.num_negatives, f2.device),
                batch1=batch.view1.batch if per_scene else None, batch2=batch.view2.batch if per_scene else None,
                fcgf_positive=cfg.fcgf_positive, all_matches=batch.matches)
            loss, logs = pos + neg, {"pos_loss": pos.detach(), "neg_loss": neg.detach()}
        with torch.no_grad():
            q, k = F.normalize(q_raw, dim=1), F.normalize(k_raw, dim=1)
            logs["pos_cos"] = (q * k).sum(1).mean() if len(q) else q.new_zeros(())
            logs["matches"] = f1.new_tensor(float(batch.matches.shape[0]))
            if cfg.loss == "infonce":  # sampled matches whose view-2 point another one already has
                logs["repeated_keys"] = f1.new_tensor(float(len(q) - torch.unique(matches[:, 1]).numel()))
        return {"loss": loss, **logs}


SPEC = MethodSpec(
    config_cls=PointContrastConfig, method_cls=PointContrast,
    build_dataset=build_pair_dataset, build_collate=pair_collate,
    model_config_cls=BackboneConfig, data_config_cls=PairDataConfig,
    description="PointContrast: PointInfoNCE / hardest-contrastive between overlapping views",
    smoke={"model": {"preset": "spunet-tiny"},
           "data": SMOKE_VIEWS,
           "method": {"num_matches": 256, "num_negatives": 128}},
    smoke_data=smoke_frame_pairs,
)
