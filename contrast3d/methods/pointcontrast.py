"""PointContrast (Xie et al., ECCV 2020): point-level contrast between two overlapping views.

Two partial scans of one scene (or two crops of a reconstruction, the "holistic" variant) are
augmented independently; matched points must have similar backbone features. Losses (§3.4):

* ``infonce``: PointInfoNCE over up to ``num_matches`` sampled matches, temperature ``tau``;
  negatives are the other sampled matches' keys, across the batch or within each scene.
* ``hardest``: FCGF's hardest-contrastive loss, margins ``pos_margin``/``neg_margin``, hardest
  negative among ``num_negatives`` random points per view, known positives never negatives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.losses import hardest_contrastive, point_info_nce
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import (
    BackboneConfig,
    PairDataConfig,
    build_backbone,
    build_pair_dataset,
    pair_collate,
    smoke_frame_pairs,
)
from contrast3d.structures import ViewBatch


@dataclass
class PointContrastConfig:
    """The ``method`` section (defaults from the paper).

    Attributes:
        loss: ``infonce`` (PointInfoNCE) or ``hardest`` (hardest-contrastive).
        tau: PointInfoNCE temperature.
        num_matches: matches sampled per batch (PointInfoNCE 4096).
        negatives: ``batch`` (all sampled matches of the batch) or ``scene`` (same scene only).
        pos_margin, neg_margin: hardest-contrastive margins (0.1, 1.4) on L2 feature distances.
        num_negatives: hardest-contrastive negative pool per view.
    """

    loss: Literal["infonce", "hardest"] = "infonce"
    tau: float = 0.4
    num_matches: int = 4096
    negatives: Literal["batch", "scene"] = "batch"
    pos_margin: float = 0.1
    neg_margin: float = 1.4
    num_negatives: int = 2048


def sample_rows(count: int, num: int, device: torch.device) -> torch.Tensor:
    """Up to ``num`` distinct row indices out of ``count`` (all of them, in order, if fewer)."""
    if count <= num:
        return torch.arange(count, device=device)
    return torch.randperm(count, device=device)[:num]


class PointContrast(PretrainMethod):
    """Shared backbone applied to both views; loss on matched point features."""

    def __init__(self, cfg: PointContrastConfig, model: BackboneConfig, data: PairDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.net = build_backbone(model)

    def backbone(self) -> nn.Module:
        return self.net

    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        f1 = self.net(batch.view1)
        f2 = self.net(batch.view2)
        pick = sample_rows(batch.matches.shape[0], self.cfg.num_matches, f1.device)
        matches = batch.matches[pick]
        if self.cfg.loss == "infonce":
            group = None
            if self.cfg.negatives == "scene":
                group = torch.searchsorted(batch.match_offset, pick, right=True)
            loss = point_info_nce(f1[matches[:, 0]], f2[matches[:, 1]], self.cfg.tau, group)
            logs = {}
        else:
            per_scene = self.cfg.negatives == "scene"
            pos, neg = hardest_contrastive(
                f1, f2, matches, self.cfg.pos_margin, self.cfg.neg_margin,
                neg_pool1=sample_rows(f1.shape[0], self.cfg.num_negatives, f1.device),
                neg_pool2=sample_rows(f2.shape[0], self.cfg.num_negatives, f2.device),
                batch1=batch.view1.batch if per_scene else None, batch2=batch.view2.batch if per_scene else None,
                all_matches=batch.matches)
            loss, logs = pos + neg, {"pos_loss": pos.detach(), "neg_loss": neg.detach()}
        with torch.no_grad():
            q, k = F.normalize(f1[matches[:, 0]], dim=1), F.normalize(f2[matches[:, 1]], dim=1)
            logs["pos_cos"] = (q * k).sum(1).mean() if len(q) else q.new_zeros(())
            logs["matches"] = f1.new_tensor(float(batch.matches.shape[0]))
        return {"loss": loss, **logs}


SPEC = MethodSpec(
    config_cls=PointContrastConfig, method_cls=PointContrast,
    build_dataset=build_pair_dataset, build_collate=pair_collate,
    model_config_cls=BackboneConfig, data_config_cls=PairDataConfig,
    description="PointContrast: PointInfoNCE / hardest-contrastive between overlapping views",
    smoke={"model": {"preset": "spunet-tiny"},
           "data": {"grid_size": 0.1, "match_radius": 0.15, "max_points": 3000, "strict": True},
           "method": {"num_matches": 256, "num_negatives": 128}},
    smoke_data=smoke_frame_pairs,
)
