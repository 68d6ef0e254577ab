"""The supervised segmentation model as a :class:`~contrast3d.engine.objective.TrainObjective`, so
the engine trains it unchanged.

:class:`SemsegModel` is a SpUNet with its ``final`` classification layer and a cross-entropy loss
(``ignore_index=-1``); :func:`load_backbone_init` puts pre-trained weights into it through the one
loader (:func:`~contrast3d.models.pretrained.load_into`): every key but ``final.*`` must match
(unless lenient), ``final`` stays freshly initialised. The fine-tuned network is exported with its
head and a record (``num_classes``, class names) as ``model`` besides ``backbone``, so ``contrast3d
evaluate`` / ``predict`` (:mod:`contrast3d.evaluation.tester`) rebuild it exactly.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.engine.objective import Export, TrainObjective
from contrast3d.errors import DataError
from contrast3d.evaluation.semseg import default_class_names
from contrast3d.evaluation.semseg_data import SemsegDataConfig
from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
from contrast3d.models.blocks import set_bn_momentum
from contrast3d.models.pretrained import LoadReport, load_into
from contrast3d.structures import PointBatch, collate_points

IGNORE_INDEX = -1
#: File stem of the fine-tuned network with its classification head (``RUN/model.safetensors`` + ``.json``).
MODEL_EXPORT = "model"
#: ``extra["task"]`` of that export's record.
MODEL_TASK = "semseg"


@dataclass
class SemsegModelConfig(BackboneConfig):
    """The ``model`` section: the backbone (:class:`BackboneConfig`) plus the number of classes."""

    num_classes: int = 20


@dataclass
class SemsegConfig:
    """The ``method`` section: what to fine-tune from, on which labels, and how to evaluate.

    Attributes:
        init: ``scratch`` or a ``backbone.safetensors`` from pre-training (``--init``).
        labels: label budget (``--labels``): ``all``, ``1%`` (share of training scenes) or ``20pts``
            (labelled points per scene); see :class:`~contrast3d.evaluation.splits.LabelBudget`.
        label_smoothing: cross-entropy label smoothing.
        backbone_lr_scale: learning-rate factor of every layer but ``final`` (1 = same rate).
        eval_every: validation every N steps during training, logged as ``val/mIoU`` (0 = only at the end).
        eval_fragments: test-mode fragments voted per scene in the final evaluation (0 = all).
        periodic_fragments: fragments per scene in the periodic evaluations (cheaper).
        bn_momentum: BatchNorm momentum of every layer (``None``: the backbone's 0.01, Pointcept's);
            short CPU runs need a larger one (0.1) for the running statistics used at evaluation.
    """

    init: str = "scratch"
    labels: str = "all"
    label_smoothing: float = 0.0
    backbone_lr_scale: float = 1.0
    eval_every: int = 0
    eval_fragments: int = 0
    periodic_fragments: int = 1
    bn_momentum: float | None = None


class SemsegModel(TrainObjective):
    """SpUNet + classification layer trained with cross-entropy on ``batch.segment``."""

    #: Settings a resumed run takes from its run folder (weights, label split), so they cannot change.
    resume_fixed_keys = ("method.init", "method.labels", "data.val_fraction")

    def __init__(self, cfg: SemsegConfig, model: SemsegModelConfig, data: SemsegDataConfig | None = None):
        super().__init__()
        if model.num_classes < 1:
            raise ValueError(f"model.num_classes must be >= 1 for segmentation, got {model.num_classes}")
        self.cfg, self.model_cfg, self.data_cfg = cfg, model, data or SemsegDataConfig()
        self.num_classes = model.num_classes
        self.net = build_backbone(model, model.num_classes)
        set_bn_momentum(self.net, cfg.bn_momentum)

    def backbone(self) -> nn.Module:
        """The whole fine-tuned network, classification layer included."""
        return self.net

    def exports(self) -> dict[str, Export]:
        """The fine-tuned network, twice: ``backbone`` (what ``--init`` and bench read, unchanged) and
        ``model`` (:data:`MODEL_EXPORT`, what ``contrast3d evaluate`` / ``predict`` read): the same
        weights, head ``final`` included, with a record saying it is a semseg model (``extra.task``,
        ``num_classes``, ``extra.class_names`` -- the configured names or the defaults)."""
        feat_keys, grid = list(self.data_cfg.feat_keys), self.data_cfg.grid_size
        record = spunet_record(self.net, self.model_cfg.preset, feat_keys, grid,
                               extra={"class_names": list(self.data_cfg.class_names or [])})
        try:
            names = default_class_names(self.num_classes, self.data_cfg.class_names)
        except ValueError:  # a wrong-length data.class_names fails the final evaluation, with its own message
            names = list(self.data_cfg.class_names or [])
        model = spunet_record(self.net, self.model_cfg.preset, feat_keys, grid,
                              extra={"task": MODEL_TASK, "class_names": names})
        return {"backbone": Export(self.net, record), MODEL_EXPORT: Export(self.net, model)}

    def forward(self, batch: PointBatch) -> dict[str, torch.Tensor]:
        target = batch.segment
        if target is None:
            names = ", ".join(str(m.get("name", "?")) for m in batch.meta)
            raise DataError(names or "<batch>", "training batch without semantic labels")
        logits = self.net(batch)
        valid = target != IGNORE_INDEX
        count = valid.sum()
        if count.item() == 0:  # e.g. a crop without any of the few labelled points: no signal, no NaN
            loss = logits.sum() * 0.0
            acc = logits.new_zeros(())
        else:
            top = int(target.max())
            if top >= self.num_classes or int(target.min()) < IGNORE_INDEX:
                names = ", ".join(str(m.get("path", m.get("name", "?"))) for m in batch.meta)
                raise DataError(names, f"labels outside [0, {self.num_classes}) besides -1 (max {top}); "
                                       f"set model.num_classes")
            loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX,
                                   label_smoothing=self.cfg.label_smoothing)
            with torch.no_grad():
                acc = (logits.argmax(1)[valid] == target[valid]).float().mean()
        return {"loss": loss, "acc": acc.detach(), "labelled": count.float()}

    def param_groups(self) -> list[dict[str, Any]] | None:
        if self.cfg.backbone_lr_scale == 1.0:
            return None
        head = [p for n, p in self.net.named_parameters() if n.startswith("final.")]
        body = [p for n, p in self.net.named_parameters() if not n.startswith("final.")]
        return [{"params": body, "lr_scale": self.cfg.backbone_lr_scale}, {"params": head}]


# ----------------------------------------------------------------------------- init from pre-training
def load_backbone_init(net: nn.Module, path: str | Path, model: SemsegModelConfig | None = None,
                       lenient: bool = False) -> LoadReport:
    """Load the pre-trained weights at ``path`` (anything :func:`~contrast3d.models.pretrained.load_pretrained`
    reads) into ``net``, every key but ``final.*`` (the new classification layer stays fresh).

    Raises :class:`DataError` naming the file for an unreadable file, a record of another preset
    or input width than ``model`` (with the ``--set`` that fixes it), or a partial load, unless
    ``lenient``.
    """
    expect = {"preset": model.preset, "in_channels": model.in_channels} if model is not None else None
    report, _ = load_into(net, path, lenient=lenient, skip=("final.",), expect=expect)
    return report


# ----------------------------------------------------------------------------- data
def semseg_collate(cfg: SemsegDataConfig):
    """``list[PointCloud] -> PointBatch`` with the configured input features (picklable)."""
    return functools.partial(collate_points, feat_keys=tuple(cfg.feat_keys))


#: Section classes of a fine-tuning run config.
SECTIONS = {"data": SemsegDataConfig, "model": SemsegModelConfig, "method": SemsegConfig}
