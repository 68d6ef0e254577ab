"""PointGroup-style instance segmentation as a :class:`~contrast3d.engine.objective.TrainObjective`,
and the instance-labelled training data shared with 3D detection (:mod:`~contrast3d.evaluation.det_model`).

Network (:class:`InsSegNet`, Pointcept's ``PG-v1m1`` layout): a SpUNet with ``num_classes=0``
gives ``(N, C)`` per-voxel features ``f``; two heads act on them (:class:`InsSegHeads`):

* ``seg_head``: ``Linear(C, K)`` semantic logits;
* ``bias_head``: ``Linear(C, C) - BatchNorm1d(eps 1e-3, momentum 0.01) - ReLU - Linear(C, 3)``, the
  offset ``o_i`` (metres) from point ``p_i`` to the centroid of its instance.

Losses (PointGroup, Jiang et al. 2020; Pointcept's weights 1, 1, 1)::

    L = CE(logits, segment; ignore -1) + L_reg + L_dir
    L_reg = sum_i m_i |o_i - (c_i - p_i)|_1 / (sum_i m_i + 1e-8)         (L1 summed over x, y, z)
    L_dir = -sum_i m_i <o_i / (|o_i| + 1e-8), g_i / (|g_i| + 1e-8)> / (sum_i m_i + 1e-8),  g_i = c_i - p_i

with ``c_i`` the **mean** of the (augmented, voxelised, cropped) training points of ``p_i``'s instance
(:func:`instance_centroids`, as Pointcept's ``InstanceParser`` after ``GridSample``/``SphereCrop``) and
``m_i = 1`` for points of a *thing* instance. Things are the instances whose class (majority of
their labelled points) is neither ignored (``-1``) nor in ``ignore_classes`` (wall, floor):
:class:`InstanceDataset` sets ``instance = -1`` everywhere else before augmentation.

Label budgets (:mod:`contrast3d.evaluation.splits`). Limited reconstructions keep a share of the
scenes, fully labelled. Limited annotations (``20pts``) apply to the **semantic part only**: the
cross-entropy sees the N labelled points per scene; the instance layer (which points form a thing
instance: the ids of ``instance.npy`` with wall/floor/unlabelled instances removed using the full
labels) stays complete, so the offset losses use every point of every thing instance, labelled or
not. For detection the same holds for the box geometry (votes, objectness, centres); the box's
class (size cluster, semantic class) is the majority of the instance's *labelled* points, and
boxes without any labelled point take part in the geometric losses only
(``extra["instance_class"] = -1``, see :mod:`~contrast3d.evaluation.det_model`).

Exports: ``backbone`` (the fine-tuned SpUNet, ``num_classes=0``; loadable by
:func:`~contrast3d.models.pretrained.load_pretrained` and usable as ``--init`` of any task) and
``insseg_heads`` (record kind ``insseg_heads``); :func:`load_insseg` rebuilds the whole
:class:`InsSegNet` from a run folder or a training checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.data import transforms as T
from contrast3d.engine.objective import Export, TrainObjective
from contrast3d.errors import DataError
from contrast3d.evaluation.instance_metrics import InstanceEvalConfig, ground_truth_instances
from contrast3d.evaluation.semseg_data import SemsegDataConfig, SemsegDataset, train_transform
from contrast3d.evaluation.semseg_model import IGNORE_INDEX, semseg_collate
from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
from contrast3d.models.blocks import set_bn_momentum
from contrast3d.models.pretrained import check_keys, load_pretrained, read_weights
from contrast3d.models.spunet import SpUNet
from contrast3d.structures import PointBatch, PointCloud

HEADS_EXPORT = "insseg_heads"


# ----------------------------------------------------------------------------- configs
@dataclass
class InstanceDataConfig(SemsegDataConfig):
    """The ``data`` section of instance segmentation and detection: :class:`SemsegDataConfig` plus

    Attributes:
        rotate_angle: the random rotation about z (``rotate_z``, p = 0.5) draws from
            ``[-rotate_angle, rotate_angle]`` radians: ``pi`` (full circle, Pointcept's PointGroup)
            or ``pi / 36`` (5 degrees, VoteNet's ScanNet setting: axis-aligned boxes stay tight).
    """

    rotate_angle: float = math.pi

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.rotate_angle <= math.pi + 1e-6:
            raise ValueError(f"data.rotate_angle must be in [0, pi], got {self.rotate_angle}")


@dataclass
class InsSegModelConfig(BackboneConfig):
    """The ``model`` section: the backbone plus the number of semantic classes."""

    num_classes: int = 20


@dataclass
class InsSegConfig:
    """The ``method`` section of instance-segmentation fine-tuning.

    Attributes:
        init, labels, backbone_lr_scale, eval_every, bn_momentum: as
            :class:`~contrast3d.evaluation.semseg_model.SemsegConfig` (``eval_every`` logs ``val/AP50``).
        eval_fragments: test-mode fragments voted per scene in the final evaluation (0 = all;
            Pointcept evaluates one voxelisation, the default 1).
        periodic_fragments: fragments per scene in the periodic evaluations.
        ignore_classes: classes that are not instances (wall, floor): no offset target, never
            clustered, not evaluated.
        cluster_radius: clustering radius in metres on offset-shifted coordinates; ``None`` =
            1.5 voxels (``1.5 * data.grid_size``: 3 cm at 2 cm, Pointcept's ``cluster_thresh``).
        min_cluster_points: proposals with fewer voxels are dropped (Pointcept keeps proposals of
            more than 100 points after a 50-point BFS threshold; 100 here).
        dual: also cluster the original coordinates and keep both proposal sets (PointGroup's
            dual set; off by default, as Pointcept).
        min_region_size: ScanNet AP: ground truth and predictions smaller than this many
            original points are not evaluated (100, as ScanNet).
    """

    init: str = "scratch"
    labels: str = "all"
    backbone_lr_scale: float = 1.0
    eval_every: int = 0
    eval_fragments: int = 1
    periodic_fragments: int = 1
    bn_momentum: float | None = None
    ignore_classes: list[int] = field(default_factory=lambda: [0, 1])
    cluster_radius: float | None = None
    min_cluster_points: int = 100
    dual: bool = False
    min_region_size: int = 100

    def __post_init__(self) -> None:
        if self.cluster_radius is not None and self.cluster_radius <= 0:
            raise ValueError(f"method.cluster_radius must be > 0 or null, got {self.cluster_radius}")
        if self.min_cluster_points < 1:
            raise ValueError(f"method.min_cluster_points must be >= 1, got {self.min_cluster_points}")


# ----------------------------------------------------------------------------- data
def instance_train_transform(cfg: InstanceDataConfig, sparse_labels: bool = False) -> T.Compose:
    """:func:`~contrast3d.evaluation.semseg_data.train_transform` with the z rotation limited to
    ``[-cfg.rotate_angle, cfg.rotate_angle]`` (same position in the chain: after centring and dropout)."""
    base = train_transform(dataclasses.replace(cfg, rotate_z=False), sparse_labels)
    steps = list(base.transforms)
    if cfg.rotate_z and cfg.rotate_angle > 0:
        at = next(i for i, s in enumerate(steps) if not isinstance(s, (T.CenterShift, T.RandomDropout)))
        steps.insert(at, T.RandomRotate(angle=(-cfg.rotate_angle, cfg.rotate_angle), axis="z",
                                        center=(0, 0, 0), p=0.5))
    return T.Compose(steps)


class InstanceDataset(SemsegDataset):
    """Training scenes with semantic and instance labels under a label split (module docstring).

    Each sample carries ``segment`` (budget-masked), ``instance`` (thing-instance ids ``0..G-1`` of the
    scene, ``-1`` elsewhere; complete under every budget) and, with ``with_classes``,
    ``extra["instance_class"]``: the class of the point's instance by the majority of its labelled
    points (``-1``: not a thing, or no labelled point under a points budget).
    """

    def __init__(self, scene_dirs: Iterable[str | Path], transform=None, on_error: str = "skip",
                 keep_raw: bool = True, *, num_classes: int = 20, ignore_classes: Sequence[int] = (0, 1),
                 with_classes: bool = False):
        super().__init__(scene_dirs, transform, on_error, keep_raw)
        self.eval_cfg = InstanceEvalConfig(num_classes=num_classes, ignore_classes=tuple(ignore_classes))
        self.with_classes = with_classes

    def instance_labels(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(segment, thing, instance_class)`` of scene ``index``, each ``(N,)`` int64 (module docstring)."""
        cloud = self.raw(index)
        if cloud.instance is None:
            raise DataError(self.scene_dirs[index], "no instance.npy: instance labels are needed for instance "
                                                    "segmentation and detection fine-tuning")
        full = self.labels(index)
        thing = ground_truth_instances(full, cloud.instance, self.eval_cfg)[3]
        segment = full if self.split is None else self.split.mask_labels(cloud.name, full)
        if self.with_classes:
            _, classes, _, row = ground_truth_instances(segment, thing, self.eval_cfg)
            instance_class = np.where(row >= 0, classes[np.maximum(row, 0)], -1).astype(np.int64)
        else:
            instance_class = np.full(len(cloud), -1, np.int64)
        return segment, thing, instance_class

    def get_sample(self, index: int, rng: np.random.Generator) -> PointCloud:
        cloud = self.raw(index)
        segment, thing, instance_class = self.instance_labels(index)
        extra = dict(cloud.extra)
        if self.with_classes:
            extra["instance_class"] = instance_class
        cloud = dataclasses.replace(cloud, segment=segment, instance=thing, extra=extra, meta=dict(cloud.meta))
        return cloud if self.transform is None else self.transform(cloud, rng)


#: ``list[PointCloud] -> PointBatch`` (instance ids shifted per sample by collation).
instance_collate = semseg_collate


# ----------------------------------------------------------------------------- losses
def instance_centroids(coord: torch.Tensor, instance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point centroid of the point's instance.

    Args:
        coord: ``(N, 3)`` float coordinates (metres).
        instance: ``(N,)`` int64 instance ids, unique across the batch; ``< 0`` = none.

    Returns:
        ``centroid`` ``(N, 3)`` (mean of the instance's points; ``0`` for points without an
        instance) and ``mask`` ``(N,)`` bool (point has an instance).
    """
    mask = instance >= 0
    centroid = torch.zeros_like(coord)
    if bool(mask.any()):
        _, inv = torch.unique(instance[mask], return_inverse=True)
        k = int(inv.max()) + 1
        sums = coord.new_zeros((k, coord.shape[1])).index_add_(0, inv, coord[mask])
        counts = torch.bincount(inv, minlength=k).to(coord.dtype)
        centroid[mask] = (sums / counts[:, None])[inv]
    return centroid, mask


def offset_losses(offset: torch.Tensor, coord: torch.Tensor, instance: torch.Tensor,
                  eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """PointGroup's offset losses ``(L_reg, L_dir)`` (module docstring).

    Args:
        offset: ``(N, 3)`` predicted offsets (metres).
        coord: ``(N, 3)`` point coordinates (metres).
        instance: ``(N,)`` thing-instance ids (``< 0`` = none).

    Returns:
        Two scalars; both are ``0`` (with a gradient path) when no point has an instance.
    """
    dtype = torch.promote_types(offset.dtype, torch.float32)  # float32 under AMP, float64 stays float64
    offset, coord = offset.to(dtype), coord.to(dtype)
    centroid, mask = instance_centroids(coord, instance)
    target = centroid - coord
    m = mask.to(offset.dtype)
    denom = m.sum() + eps
    l1 = ((offset - target).abs().sum(-1) * m).sum() / denom
    pred_dir = offset / (offset.norm(dim=1, keepdim=True) + eps)
    gt_dir = target / (target.norm(dim=1, keepdim=True) + eps)
    cos = (-(pred_dir * gt_dir).sum(-1) * m).sum() / denom
    return l1, cos


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, num_classes: int, meta: Sequence[dict],
                  label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy (``ignore_index=-1``), accuracy and labelled count; zero loss without labels.

    Raises :class:`DataError` naming the scenes for labels outside ``[-1, num_classes)``.
    """
    valid = target != IGNORE_INDEX
    count = valid.sum()
    if int(count) == 0:  # e.g. a crop without any of the few labelled points: no signal, no NaN
        return logits.sum() * 0.0, logits.new_zeros(()), count.float()
    top = int(target.max())
    if top >= num_classes or int(target.min()) < IGNORE_INDEX:
        names = ", ".join(str(m.get("path", m.get("name", "?"))) for m in meta)
        raise DataError(names or "<batch>", f"labels outside [0, {num_classes}) besides -1 (max {top}); "
                                            f"set model.num_classes")
    loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
    with torch.no_grad():
        acc = (logits.argmax(1)[valid] == target[valid]).float().mean()
    return loss, acc, count.float()


# ----------------------------------------------------------------------------- network
class InsSegHeads(nn.Module):
    """Semantic and offset heads on ``(N, C)`` backbone features (Pointcept's ``seg_head`` / ``bias_head``)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.seg_head = nn.Linear(in_channels, num_classes)
        self.bias_head = nn.Sequential(nn.Linear(in_channels, in_channels),
                                       nn.BatchNorm1d(in_channels, eps=1e-3, momentum=0.01),
                                       nn.ReLU(), nn.Linear(in_channels, 3))

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C)`` -> logits ``(N, K)`` and offsets ``(N, 3)`` (metres)."""
        return self.seg_head(feat), self.bias_head(feat)


class InsSegNet(nn.Module):
    """SpUNet features -> :class:`InsSegHeads`; ``forward(batch)`` gives ``(logits, offsets)``."""

    def __init__(self, net: SpUNet, heads: InsSegHeads):
        super().__init__()
        self.net: SpUNet = net
        self.heads: InsSegHeads = heads

    def forward(self, batch: PointBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.net(batch))


class InsSegModel(TrainObjective):
    """PointGroup fine-tuning objective (module docstring); ``self.model`` is the :class:`InsSegNet`."""

    def __init__(self, cfg: InsSegConfig, model: InsSegModelConfig, data: InstanceDataConfig | None = None):
        super().__init__()
        if model.num_classes < 1:
            raise ValueError(f"model.num_classes must be >= 1, got {model.num_classes}")
        self.cfg, self.model_cfg, self.data_cfg = cfg, model, data or InstanceDataConfig()
        self.num_classes = model.num_classes
        net = build_backbone(model, 0)
        self.model = InsSegNet(net, InsSegHeads(net.out_channels, model.num_classes))
        set_bn_momentum(self.model, cfg.bn_momentum)

    def backbone(self) -> nn.Module:
        """The fine-tuned SpUNet (features, ``num_classes=0``)."""
        return self.model.net

    def exports(self) -> dict[str, Export]:
        """``backbone`` (SpUNet record) and ``insseg_heads`` (record kind ``insseg_heads``)."""
        keys, grid = list(self.data_cfg.feat_keys), self.data_cfg.grid_size
        extra = {"task": "insseg", "class_names": list(self.data_cfg.class_names or []),
                 "ignore_classes": list(self.cfg.ignore_classes)}
        heads = self.model.heads
        head_record = {"kind": HEADS_EXPORT, "preset": self.model_cfg.preset, "in_channels": heads.in_channels,
                       "num_classes": heads.num_classes, "out_channels": 3, "feat_keys": keys, "grid_size": grid,
                       "extra": {**extra, "backbone": "backbone.safetensors"}}
        return {"backbone": Export(self.model.net, spunet_record(self.model.net, self.model_cfg.preset, keys, grid,
                                                                 extra=extra)),
                HEADS_EXPORT: Export(heads, head_record)}

    def forward(self, batch: PointBatch) -> dict[str, torch.Tensor]:
        if batch.segment is None or batch.instance is None:
            names = ", ".join(str(m.get("name", "?")) for m in batch.meta)
            raise DataError(names or "<batch>", "training batch without semantic and instance labels")
        logits, offsets = self.model(batch)
        seg, acc, count = semantic_loss(logits, batch.segment, self.num_classes, batch.meta)
        l1, cos = offset_losses(offsets, batch.coord, batch.instance)
        return {"loss": seg + l1 + cos, "seg_loss": seg.detach(), "offset_l1": l1.detach(),
                "offset_dir": cos.detach(), "acc": acc.detach(), "labelled": count,
                "instance_points": (batch.instance >= 0).sum().float()}

    def param_groups(self) -> list[dict[str, Any]] | None:
        if self.cfg.backbone_lr_scale == 1.0:
            return None
        return [{"params": list(self.model.net.parameters()), "name": "backbone",
                 "lr_scale": self.cfg.backbone_lr_scale},
                {"params": list(self.model.heads.parameters()), "name": "heads"}]


# ----------------------------------------------------------------------------- reload
def _export_paths(path: str | Path, head_name: str) -> tuple[Path, Path, str]:
    """``(backbone source, head source, how)`` of a run folder, a ``backbone.safetensors`` or a checkpoint."""
    path = Path(path)
    if path.is_dir():
        return path / "backbone.safetensors", path / f"{head_name}.safetensors", "files"
    if path.suffix == ".safetensors":
        return path, path.with_name(f"{head_name}.safetensors"), "files"
    return path, path, "checkpoint"


def load_insseg(path: str | Path, device: str | torch.device = "cpu", lenient: bool = False) -> InsSegNet:
    """The fine-tuned :class:`InsSegNet` (``eval()`` mode) of a run folder, its ``backbone.safetensors``
    (``insseg_heads.safetensors`` next to it) or a training checkpoint (``checkpoints/last.pt``).

    The backbone goes through :func:`~contrast3d.models.pretrained.load_pretrained`; the heads through
    the same reader and key check. :class:`DataError` names the file for anything missing or mismatched.
    """
    bb_path, head_path, how = _export_paths(path, HEADS_EXPORT)
    backbone = load_pretrained(bb_path, name="backbone", lenient=lenient)
    state, record = read_weights(head_path, name=HEADS_EXPORT)
    if record.kind != HEADS_EXPORT:
        raise DataError(head_path, f"record kind '{record.kind}' is not '{HEADS_EXPORT}'")
    if record.in_channels != backbone.record.out_channels:
        raise DataError(head_path, f"heads take {record.in_channels} channels but the backbone gives "
                                   f"{backbone.record.out_channels}")
    heads = InsSegHeads(record.in_channels, record.num_classes)
    check_keys(heads, state, head_path if how == "files" else f"{head_path} ({HEADS_EXPORT})", lenient=lenient)
    assert isinstance(backbone.model, SpUNet)  # kind "spunet" records build SpUNets
    return InsSegNet(backbone.model, heads).to(device).eval()


#: Section classes of an instance-segmentation run config.
SECTIONS = {"data": InstanceDataConfig, "model": InsSegModelConfig, "method": InsSegConfig}
