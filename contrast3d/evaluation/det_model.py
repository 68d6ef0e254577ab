"""VoteNet-style 3D object detection on SpUNet features, as a :class:`~contrast3d.engine.objective.TrainObjective`.

The PointNet++ backbone of VoteNet (Qi et al., ICCV 2019) is replaced by the SpUNet (``num_classes=0``);
everything after it follows VoteNet's ScanNet model in plain PyTorch (:class:`VoteHead`):

1. **Seeds**: farthest point sampling (:func:`~contrast3d.models.point_ops.farthest_point_sampling`,
   starting at each scene's first voxel) of ``min(num_seeds, M_b)`` voxel **centres**
   ``(floor(p / g) + 0.5) g`` per scene; their backbone features are the seed features (``C`` wide).
2. **Votes**: a shared MLP ``C -> C -> C -> 3 + C`` (BN + ReLU between layers) gives an offset and a
   feature residual: ``vote_xyz = seed_xyz + dx``, ``vote_feat = (seed_feat + df) / |seed_feat + df|``
   (VoteNet normalises the vote features; one vote per seed).
3. **Vote clustering**: FPS of ``min(num_proposals, seeds_b)`` votes per scene, ball query (radius 0.3 m,
   16 votes, first hits in index order as PointNet++) around each; the grouped inputs are
   ``[(vote_xyz - centre) / radius, vote_feat]`` (PointNet++'s ``use_xyz`` + ``normalize_xyz``) through a
   shared MLP ``3 + C -> w -> w -> w`` (BN + ReLU after each layer) and max-pooled.
4. **Proposals**: an MLP ``w -> w -> w -> 2 + 3 + 2 NH + 4 NS + K`` predicts objectness (2 logits),
   the centre offset from the cluster centre, heading bin scores and normalised residuals (``NH``
   bins), size-cluster scores and normalised residuals (``NS = K`` clusters, one per class with the
   class's mean size, as VoteNet's ScanNet setting) and the semantic class (``K`` logits).

Heading: ground-truth boxes are **axis-aligned** (the box of each instance's points,
:func:`gt_boxes_from_batch`), so every box has heading 0; ``num_heading_bins`` defaults to 1 (VoteNet's
ScanNet setting), the heading class loss is then identically 0 and the residual is pulled to 0. Predicted
boxes are evaluated axis-aligned; the heading output is kept so other datasets can use it.

Losses (VoteNet's ``get_loss``, per batch; ``eps = 1e-6``)::

    vote     = sum_s m_s |vote_xyz_s - c_{inst(s)}|_1 / (sum m_s + eps)   (seeds on thing instances)
    d_p      = sqrt(min_g |agg_xyz_p - c_g|^2 + eps)  over the GT boxes of p's scene
    label_p  = d_p < 0.3;  mask_p = d_p < 0.3 or d_p > 0.6;  assign_p = argmin_g
    obj      = sum_p mask_p w_{label_p} CE_p / (sum mask_p + eps),  w = (0.2, 0.8)
    centre   = sum_p label_p min_g |centre_p - c_g|^2 / (sum label_p + eps) + sum_g min_p |centre_p - c_g|^2 / (G + eps)
    head_cls = sum label_p CE(heading_p, 0) / (sum label_p + eps); head_reg = same with Huber(res_p[0] - 0)
    size_cls = sum k_p CE(size_p, cls_a) / (sum k_p + eps)
    size_reg = sum k_p mean_xyz Huber(r_p[cls_a] - (s_a - mean_{cls_a}) / mean_{cls_a}) / (sum k_p + eps)
    sem      = sum k_p CE(sem_p, cls_a) / (sum k_p + eps),  k_p = label_p and cls_a known, a = assign_p
    loss     = 10 (vote + 0.5 obj + centre + 0.1 head_cls + head_reg + 0.1 size_cls + size_reg + 0.1 sem)

with Huber delta 1, ``agg_xyz`` the FPS-sampled vote positions, all matches restricted to the
proposal's own scene. ``k_p`` is VoteNet's ``objectness_label`` except under a points label budget,
where boxes without a labelled point have an unknown class (module docstring of
:mod:`~contrast3d.evaluation.insseg_model`): they give votes, objectness and centres but no
class/size supervision. Mean sizes per class (``head.mean_size``, a buffer saved with the weights) are
computed from the training scenes' ground-truth boxes (:func:`class_mean_sizes`; a class without
boxes takes the mean over all boxes).

Exports: ``backbone`` (the SpUNet) and ``det_head`` (record kind ``votenet_head`` with the head's
settings); :func:`load_det` rebuilds the :class:`VoteNetNet`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.engine.objective import Export, TrainObjective
from contrast3d.errors import DataError
from contrast3d.evaluation.detection_metrics import boxes_from_instances
from contrast3d.evaluation.insseg_model import (
    InstanceDataConfig,
    InstanceDataset,
    _export_paths,
)
from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
from contrast3d.models.blocks import set_bn_momentum
from contrast3d.models.heads import PointMLP
from contrast3d.models.point_ops import ball_query, farthest_point_sampling
from contrast3d.models.pretrained import check_keys, load_pretrained, read_weights
from contrast3d.models.spunet import SpUNet
from contrast3d.structures import PointBatch

HEAD_EXPORT = "det_head"
_EPS = 1e-6


# ----------------------------------------------------------------------------- configs
@dataclass
class DetModelConfig(BackboneConfig):
    """The ``model`` section: the backbone plus the VoteNet head (VoteNet's ScanNet values by default).

    Attributes:
        num_classes: semantic classes (also the size clusters); wall/floor are never targets.
        num_seeds: seeds per scene (FPS over voxel centres).
        num_proposals: vote clusters (proposals) per scene.
        proposal_radius: ball-query radius of vote clustering, metres.
        proposal_samples: votes grouped per proposal.
        proposal_width: width ``w`` of the proposal MLPs.
        num_heading_bins: heading bins (1: axis-aligned boxes, module docstring).
    """

    num_classes: int = 20
    num_seeds: int = 1024
    num_proposals: int = 256
    proposal_radius: float = 0.3
    proposal_samples: int = 16
    proposal_width: int = 128
    num_heading_bins: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.num_classes, self.num_seeds, self.num_proposals, self.proposal_samples,
               self.proposal_width, self.num_heading_bins) < 1:
            raise ValueError("model.num_classes, num_seeds, num_proposals, proposal_samples, proposal_width and "
                             "num_heading_bins must be >= 1")
        if self.proposal_radius <= 0:
            raise ValueError(f"model.proposal_radius must be > 0, got {self.proposal_radius}")


@dataclass
class DetConfig:
    """The ``method`` section of detection fine-tuning.

    Attributes:
        init, labels, backbone_lr_scale, eval_every, bn_momentum: as semantic segmentation
            (``eval_every`` logs ``val/mAP@0.25``).
        ignore_classes: classes that are not objects (wall, floor).
        near_threshold, far_threshold: objectness positive below / negative above (metres).
        objectness_weights: cross-entropy weights of (negative, positive) proposals.
        loss_scale: VoteNet multiplies the total loss by 10.
        nms_iou: axis-aligned 3D NMS threshold (same class, VoteNet's ``cls_nms``).
        conf_threshold: proposals with objectness probability at most this are dropped after NMS.
        per_class_proposal: every kept proposal is a box of every class scored ``obj * p(class)``
            (VoteNet's ScanNet evaluation); off: one box, its arg-max class, scored ``obj``.
    """

    init: str = "scratch"
    labels: str = "all"
    backbone_lr_scale: float = 1.0
    eval_every: int = 0
    bn_momentum: float | None = None
    ignore_classes: list[int] = field(default_factory=lambda: [0, 1])
    near_threshold: float = 0.3
    far_threshold: float = 0.6
    objectness_weights: list[float] = field(default_factory=lambda: [0.2, 0.8])
    loss_scale: float = 10.0
    nms_iou: float = 0.25
    conf_threshold: float = 0.05
    per_class_proposal: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.near_threshold <= self.far_threshold:
            raise ValueError("method.near_threshold must be > 0 and <= method.far_threshold")
        if len(self.objectness_weights) != 2:
            raise ValueError(f"method.objectness_weights must be [negative, positive], got {self.objectness_weights}")


HEAD_FIELDS = ("num_classes", "num_seeds", "num_proposals", "proposal_radius", "proposal_samples",
               "proposal_width", "num_heading_bins")


# ----------------------------------------------------------------------------- network
def voxel_centres(coord: torch.Tensor, grid_size: float) -> torch.Tensor:
    """``(N, 3)`` centre (metres) of the ``grid_size`` voxel containing each point of ``coord``."""
    return (torch.floor(coord / grid_size) + 0.5) * grid_size


def _shared_mlp(widths: list[int]) -> nn.Sequential:
    """``Linear (no bias) - BN - ReLU`` for every consecutive pair of ``widths`` (PointNet++'s SharedMLP)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _counts(offset: torch.Tensor) -> torch.Tensor:
    return torch.diff(offset, prepend=offset.new_zeros(1))


class VoteHead(nn.Module):
    """Voting, vote clustering and proposals (module docstring, steps 1-4).

    Args:
        in_channels: backbone feature width ``C``.
        num_classes, num_seeds, num_proposals, proposal_radius, proposal_samples, proposal_width,
        num_heading_bins: see :class:`DetModelConfig`.
    """

    def __init__(self, in_channels: int, num_classes: int = 20, num_seeds: int = 1024, num_proposals: int = 256,
                 proposal_radius: float = 0.3, proposal_samples: int = 16, proposal_width: int = 128,
                 num_heading_bins: int = 1):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.num_seeds, self.num_proposals = num_seeds, num_proposals
        self.radius, self.nsample = float(proposal_radius), proposal_samples
        self.num_heading_bins = num_heading_bins
        c, w, k = in_channels, proposal_width, num_classes
        self.vote_mlp = PointMLP(c, c, 3 + c, num_layers=3)
        self.group_mlp = _shared_mlp([3 + c, w, w, w])
        self.proposal_mlp = PointMLP(w, w, 2 + 3 + 2 * num_heading_bins + 4 * k + k, num_layers=3)
        self.mean_size: torch.Tensor
        self.register_buffer("mean_size", torch.ones(k, 3))

    def settings(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "num_seeds": self.num_seeds, "num_proposals": self.num_proposals,
                "proposal_radius": self.radius, "proposal_samples": self.nsample,
                "proposal_width": self.group_mlp[0].out_features, "num_heading_bins": self.num_heading_bins}

    def forward(self, feat: torch.Tensor, xyz: torch.Tensor, offset: torch.Tensor) -> dict[str, torch.Tensor]:
        """Proposals of a batch.

        Args:
            feat: ``(N, C)`` backbone features of the voxels.
            xyz: ``(N, 3)`` voxel centres (metres).
            offset: ``(B,)`` cumulative voxel counts per scene.

        Returns:
            ``seed_index`` ``(S,)`` (rows of ``feat``), ``seed_xyz``/``vote_xyz`` ``(S, 3)``,
            ``proposal_xyz`` ``(P, 3)`` (FPS-sampled votes), ``proposal_batch`` ``(P,)``,
            ``objectness`` ``(P, 2)``, ``center`` ``(P, 3)`` metres, ``heading_scores`` /
            ``heading_residuals_normalized`` ``(P, NH)``, ``size_scores`` ``(P, K)``,
            ``size_residuals_normalized`` ``(P, K, 3)``, ``sem_scores`` ``(P, K)``.
        """
        offset = offset.long()
        seeds_per = _counts(offset).clamp(max=self.num_seeds)
        seed_offset = torch.cumsum(seeds_per, 0)
        seed_index = farthest_point_sampling(xyz.detach(), offset, seed_offset)
        seed_xyz, seed_feat = xyz[seed_index], feat[seed_index]
        v = self.vote_mlp(seed_feat)
        vote_xyz = seed_xyz + v[:, :3]
        vote_feat = seed_feat + v[:, 3:]
        vote_feat = vote_feat / (vote_feat.norm(dim=1, keepdim=True) + 1e-12)
        prop_per = seeds_per.clamp(max=self.num_proposals)
        prop_offset = torch.cumsum(prop_per, 0)
        pick = farthest_point_sampling(vote_xyz.detach(), seed_offset, prop_offset)
        prop_xyz = vote_xyz[pick]
        nbr, _ = ball_query(vote_xyz.detach(), seed_offset, prop_xyz.detach(), prop_offset, self.radius, self.nsample)
        # every query is a vote itself (distance 0 < r^2), so no row is -1
        grouped = torch.cat([(vote_xyz[nbr] - prop_xyz[:, None, :]) / self.radius, vote_feat[nbr]], dim=-1)
        p, s = nbr.shape
        h = self.group_mlp(grouped.reshape(p * s, -1)).reshape(p, s, -1).max(dim=1).values
        out = self.proposal_mlp(h)
        nh, k = self.num_heading_bins, self.num_classes
        parts = torch.split(out, [2, 3, nh, nh, k, 3 * k, k], dim=1)
        batch_of = torch.repeat_interleave(torch.arange(offset.numel(), device=offset.device), prop_per)
        return {"seed_index": seed_index, "seed_xyz": seed_xyz, "vote_xyz": vote_xyz, "proposal_xyz": prop_xyz,
                "proposal_batch": batch_of, "objectness": parts[0], "center": prop_xyz + parts[1],
                "heading_scores": parts[2], "heading_residuals_normalized": parts[3], "size_scores": parts[4],
                "size_residuals_normalized": parts[5].reshape(p, k, 3), "sem_scores": parts[6]}


class VoteNetNet(nn.Module):
    """SpUNet features at voxel centres -> :class:`VoteHead`; ``forward(batch)`` gives its output dict."""

    def __init__(self, net: SpUNet, head: VoteHead, grid_size: float):
        super().__init__()
        self.net: SpUNet = net
        self.head: VoteHead = head
        self.grid_size = float(grid_size)

    def forward(self, batch: PointBatch) -> dict[str, torch.Tensor]:
        return self.head(self.net(batch), voxel_centres(batch.coord.float(), self.grid_size), batch.offset)


# ----------------------------------------------------------------------------- targets and losses
@dataclass
class BoxTargets:
    """Ground-truth boxes of a batch (axis-aligned, metres).

    Attributes:
        center, size: ``(G, 3)`` box centre ``(min + max) / 2`` and extent ``max - min`` of each instance's points.
        cls: ``(G,)`` class (``-1`` unknown under a points budget).
        batch: ``(G,)`` scene of each box.
        point_box: ``(N,)`` box row of every point, ``-1`` for points outside thing instances.
    """

    center: torch.Tensor
    size: torch.Tensor
    cls: torch.Tensor
    batch: torch.Tensor
    point_box: torch.Tensor


def gt_boxes_from_batch(coord: torch.Tensor, instance: torch.Tensor, instance_class: torch.Tensor,
                        batch: torch.Tensor) -> BoxTargets:
    """Axis-aligned boxes of the thing instances of a batch (``instance`` unique across scenes, ``< 0`` = none)."""
    mask = instance >= 0
    point_box = torch.full_like(instance, -1)
    if not bool(mask.any()):
        z = coord.new_zeros((0, 3))
        e = instance.new_zeros(0)
        return BoxTargets(z, z, e, e, point_box)
    _, inv = torch.unique(instance[mask], return_inverse=True)
    g = int(inv.max()) + 1
    pts = coord[mask].float()
    idx3 = inv[:, None].expand(-1, 3)
    lo = pts.new_full((g, 3), float("inf")).scatter_reduce(0, idx3, pts, reduce="amin")
    hi = pts.new_full((g, 3), float("-inf")).scatter_reduce(0, idx3, pts, reduce="amax")
    cls = instance.new_full((g,), -1).scatter_reduce(0, inv, instance_class[mask].long(), reduce="amax")
    scene = instance.new_zeros(g).scatter_reduce(0, inv, batch[mask].long(), reduce="amax", include_self=False)
    point_box[mask] = inv
    return BoxTargets((lo + hi) / 2, hi - lo, cls, scene, point_box)


def _masked_mean(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(value.dtype)
    return (value * m).sum() / (m.sum() + _EPS)


def votenet_loss(out: dict[str, torch.Tensor], gt: BoxTargets, mean_size: torch.Tensor, cfg: DetConfig
                 ) -> dict[str, torch.Tensor]:
    """VoteNet's losses (module docstring) of one batch: ``{"loss", "vote_loss", "objectness_loss", ...}``."""
    vote_xyz = out["vote_xyz"].float()
    dev = vote_xyz.device
    # append a dummy box in scene -1 so every proposal has a (far) nearest box and G >= 1
    g_real = gt.center.shape[0]
    center = torch.cat([gt.center.float(), vote_xyz.new_zeros((1, 3))])
    size = torch.cat([gt.size.float(), vote_xyz.new_ones((1, 3))])
    cls = torch.cat([gt.cls.long(), gt.cls.new_full((1,), -1).long()])
    scene = torch.cat([gt.batch.long(), torch.full((1,), -1, dtype=torch.long, device=dev)])
    # votes
    seed_box = gt.point_box[out["seed_index"]]
    on_obj = seed_box >= 0
    vote_dist = (vote_xyz - center[seed_box.clamp(min=0)]).abs().sum(-1)
    vote_loss = _masked_mean(vote_dist, on_obj)
    # objectness from the cluster centres (FPS-sampled votes)
    agg = out["proposal_xyz"].float()
    same = out["proposal_batch"][:, None] == scene[None, :]
    inf = torch.tensor(float("inf"), device=dev)
    d2 = torch.where(same, ((agg[:, None, :] - center[None]) ** 2).sum(-1), inf)
    dmin, assign = d2.min(dim=1)
    dist = torch.sqrt(dmin + _EPS)
    label = dist < cfg.near_threshold
    omask = label | (dist > cfg.far_threshold)
    weight = torch.tensor(cfg.objectness_weights, dtype=torch.float32, device=dev)
    obj_ce = F.cross_entropy(out["objectness"].float(), label.long(), weight=weight, reduction="none")
    objectness_loss = _masked_mean(obj_ce, omask)
    # centres: nearest box of each positive proposal + nearest proposal of each real box
    pred_center = out["center"].float()
    c2 = torch.where(same, ((pred_center[:, None, :] - center[None]) ** 2).sum(-1), inf)
    dist1 = torch.where(label, c2.min(dim=1).values, torch.zeros_like(dmin))
    center_loss = _masked_mean(dist1, label)
    if g_real:
        dist2 = c2[:, :g_real].min(dim=0).values
        center_loss = center_loss + dist2.sum() / (g_real + _EPS)
    # heading: every axis-aligned box has heading 0 -> bin 0, residual 0
    zeros = torch.zeros_like(assign)
    heading_cls = _masked_mean(F.cross_entropy(out["heading_scores"].float(), zeros, reduction="none"), label)
    heading_reg = _masked_mean(F.huber_loss(out["heading_residuals_normalized"].float()[:, 0],
                                            torch.zeros_like(dist), reduction="none", delta=1.0), label)
    # size and semantic class: positives whose box has a known class
    box_cls = cls[assign]
    known = label & (box_cls >= 0)
    c0 = box_cls.clamp(min=0)
    size_cls = _masked_mean(F.cross_entropy(out["size_scores"].float(), c0, reduction="none"), known)
    ms = mean_size.float()[c0]
    target = (size[assign] - ms) / ms
    pred_res = out["size_residuals_normalized"].float()[torch.arange(c0.numel(), device=dev), c0]
    size_reg = _masked_mean(F.huber_loss(pred_res, target, reduction="none", delta=1.0).mean(-1), known)
    sem_loss = _masked_mean(F.cross_entropy(out["sem_scores"].float(), c0, reduction="none"), known)
    box_loss = center_loss + 0.1 * heading_cls + heading_reg + 0.1 * size_cls + size_reg
    loss = cfg.loss_scale * (vote_loss + 0.5 * objectness_loss + box_loss + 0.1 * sem_loss)
    return {"loss": loss, "vote_loss": vote_loss, "objectness_loss": objectness_loss, "center_loss": center_loss,
            "heading_cls_loss": heading_cls, "heading_reg_loss": heading_reg, "size_cls_loss": size_cls,
            "size_reg_loss": size_reg, "sem_cls_loss": sem_loss, "pos_ratio": label.float().mean(),
            "neg_ratio": (omask & ~label).float().mean(), "num_boxes": torch.tensor(float(g_real), device=dev)}


def class_mean_sizes(dataset: InstanceDataset, num_classes: int) -> torch.Tensor:
    """``(K, 3)`` mean extent (metres) of the ground-truth boxes of each class over ``dataset``'s scenes.

    A class without boxes takes the mean over all boxes (1 m without any box). Classes are those of
    :meth:`InstanceDataset.instance_labels` (labelled points only under a points budget).
    """
    total = np.zeros((num_classes, 3))
    count = np.zeros(num_classes)
    for i in range(len(dataset)):  # one iteration per scene
        _, thing, instance_class = dataset.instance_labels(i)
        boxes, classes, _ = boxes_from_instances(dataset.raw(i).coord, instance_class, thing, dataset.eval_cfg)
        np.add.at(total, classes, boxes[:, 3:])
        np.add.at(count, classes, 1.0)
    overall = total.sum(0) / count.sum() if count.sum() > 0 else np.ones(3)
    means = np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], overall[None, :])
    return torch.as_tensor(np.maximum(means, 1e-3), dtype=torch.float32)


# ----------------------------------------------------------------------------- objective
class DetModel(TrainObjective):
    """VoteNet fine-tuning objective (module docstring); ``self.model`` is the :class:`VoteNetNet`."""

    def __init__(self, cfg: DetConfig, model: DetModelConfig, data: InstanceDataConfig | None = None):
        super().__init__()
        self.cfg, self.model_cfg, self.data_cfg = cfg, model, data or InstanceDataConfig()
        net = build_backbone(model, 0)
        head = VoteHead(net.out_channels, **head_settings(model))
        self.model = VoteNetNet(net, head, self.data_cfg.grid_size)
        set_bn_momentum(self.model, cfg.bn_momentum)

    def set_mean_sizes(self, sizes: torch.Tensor) -> None:
        """Set the per-class mean box sizes ``(K, 3)`` (metres) of the size clusters."""
        head = self.model.head
        if tuple(sizes.shape) != tuple(head.mean_size.shape):
            raise ValueError(f"mean sizes {tuple(sizes.shape)} for {tuple(head.mean_size.shape)}")
        with torch.no_grad():
            head.mean_size.copy_(sizes.to(head.mean_size))

    def backbone(self) -> nn.Module:
        return self.model.net

    def exports(self) -> dict[str, Export]:
        """``backbone`` (SpUNet record) and ``det_head`` (record kind ``votenet_head``)."""
        keys, grid = list(self.data_cfg.feat_keys), self.data_cfg.grid_size
        extra = {"task": "det", "class_names": list(self.data_cfg.class_names or []),
                 "ignore_classes": list(self.cfg.ignore_classes)}
        head = self.model.head
        record = {"kind": "votenet_head", "preset": self.model_cfg.preset, "in_channels": head.in_channels,
                  "num_classes": head.num_classes, "feat_keys": keys, "grid_size": grid,
                  "extra": {**extra, "head": head.settings(), "backbone": "backbone.safetensors"}}
        return {"backbone": Export(self.model.net, spunet_record(self.model.net, self.model_cfg.preset, keys, grid,
                                                                 extra=extra)),
                HEAD_EXPORT: Export(head, record)}

    def forward(self, batch: PointBatch) -> dict[str, torch.Tensor]:
        if batch.instance is None or "instance_class" not in batch.extra:
            names = ", ".join(str(m.get("name", "?")) for m in batch.meta)
            raise DataError(names or "<batch>", "training batch without instance labels and instance classes")
        out = self.model(batch)
        assert batch.batch is not None
        gt = gt_boxes_from_batch(batch.coord, batch.instance, batch.extra["instance_class"], batch.batch)
        losses = votenet_loss(out, gt, self.model.head.mean_size, self.cfg)
        return {k: (v if k == "loss" else v.detach()) for k, v in losses.items()}

    def param_groups(self) -> list[dict[str, Any]] | None:
        if self.cfg.backbone_lr_scale == 1.0:
            return None
        return [{"params": list(self.model.net.parameters()), "name": "backbone",
                 "lr_scale": self.cfg.backbone_lr_scale},
                {"params": list(self.model.head.parameters()), "name": "head"}]


def load_det(path: str | Path, device: str | torch.device = "cpu", lenient: bool = False) -> VoteNetNet:
    """The fine-tuned :class:`VoteNetNet` (``eval()``) of a run folder, its ``backbone.safetensors``
    (``det_head.safetensors`` next to it) or a training checkpoint; :class:`DataError` names the file."""
    bb_path, head_path, how = _export_paths(path, HEAD_EXPORT)
    backbone = load_pretrained(bb_path, name="backbone", lenient=lenient)
    state, record = read_weights(head_path, name=HEAD_EXPORT)
    if record.kind != "votenet_head":
        raise DataError(head_path, f"record kind '{record.kind}' is not 'votenet_head'")
    settings = dict(record.extra.get("head") or {})
    if set(settings) != set(HEAD_FIELDS) or record.grid_size is None:
        raise DataError(head_path, "record lacks the head settings or grid_size")
    if record.in_channels != backbone.record.out_channels:
        raise DataError(head_path, f"head takes {record.in_channels} channels but the backbone gives "
                                   f"{backbone.record.out_channels}")
    head = VoteHead(record.in_channels, **settings)
    check_keys(head, state, head_path if how == "files" else f"{head_path} ({HEAD_EXPORT})", lenient=lenient)
    assert isinstance(backbone.model, SpUNet)  # kind "spunet" records build SpUNets
    return VoteNetNet(backbone.model, head, record.grid_size).to(device).eval()


def head_settings(model: DetModelConfig) -> dict[str, Any]:
    """The :class:`VoteHead` keyword arguments of a ``model`` section."""
    return {k: v for k, v in asdict(model).items() if k in HEAD_FIELDS}


#: Section classes of a detection run config.
SECTIONS = {"data": InstanceDataConfig, "model": DetModelConfig, "method": DetConfig}
