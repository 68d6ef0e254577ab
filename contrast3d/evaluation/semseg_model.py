"""The supervised segmentation model as a :class:`PretrainMethod`, so the engine trains it unchanged.

:class:`SemsegModel` is a SpUNet with its ``final`` classification layer and a cross-entropy loss
(``ignore_index=-1``); :func:`load_backbone_init` puts a pre-trained backbone (``backbone.safetensors``
exported by the engine, keys of ``SpUNet(num_classes=0)``) into it: every matching key is loaded,
``final`` stays freshly initialised, shape mismatches are refused with a message naming the file.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.engine.export import load_backbone_state
from contrast3d.errors import DataError
from contrast3d.evaluation.semseg_data import SemsegDataConfig, SemsegDataset, resolve_scene_split, train_transform
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import BackboneConfig, build_backbone
from contrast3d.structures import PointBatch, collate_points

IGNORE_INDEX = -1


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


class SemsegModel(PretrainMethod):
    """SpUNet + classification layer trained with cross-entropy on ``batch.segment``."""

    def __init__(self, cfg: SemsegConfig, model: SemsegModelConfig):
        super().__init__()
        if model.num_classes < 1:
            raise ValueError(f"model.num_classes must be >= 1 for segmentation, got {model.num_classes}")
        self.cfg = cfg
        self.num_classes = model.num_classes
        self.net = build_backbone(model, model.num_classes)
        if cfg.bn_momentum is not None:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = cfg.bn_momentum

    def backbone(self) -> nn.Module:
        """The whole fine-tuned network (exported as ``backbone.safetensors`` at the end of training)."""
        return self.net

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
@dataclass
class InitReport:
    """What :func:`load_backbone_init` did: ``loaded`` / ``missing`` (model keys not in the file,
    normally only ``final.*``) / ``unexpected`` (file keys the model lacks) / ``skipped`` (``final.*``
    of the file, never loaded)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["num_loaded"] = len(self.loaded)
        del out["loaded"]
        return out

    def summary(self) -> str:
        return (f"init {self.path}: loaded {len(self.loaded)} tensors; missing {len(self.missing)} "
                f"({', '.join(self.missing[:4])}{' ...' if len(self.missing) > 4 else ''}); "
                f"unexpected {len(self.unexpected)}; skipped {len(self.skipped)}")


def _sidecar_hint(path: Path, model: SemsegModelConfig | None) -> str:
    """Which model the file was exported from, read from its ``.json`` sidecar (when present)."""
    try:
        saved = json.loads(path.with_suffix(".json").read_text()).get("config", {}).get("model", {})
    except (OSError, ValueError, AttributeError):
        return ""
    if not isinstance(saved, dict) or "preset" not in saved:
        return ""
    hint = f"; it was exported from model.preset={saved['preset']} in_channels={saved.get('in_channels')}"
    if model is not None:
        hint += (f" (fine-tuning model: preset={model.preset} in_channels={model.in_channels}); "
                 f"use --set model.preset={saved['preset']} --set model.in_channels={saved.get('in_channels')}")
    return hint


def load_backbone_init(net: nn.Module, path: str | Path, model: SemsegModelConfig | None = None) -> InitReport:
    """Load the pre-trained backbone at ``path`` into ``net`` (all matching keys but ``final.*``).

    Raises :class:`DataError` naming the file when it is unreadable, when a shared key has a
    different shape (another preset / input width), or when no key matches at all.
    """
    path = Path(path)
    state = load_backbone_state(path)
    own = net.state_dict()
    report = InitReport(str(path))
    report.skipped = sorted(k for k in state if k.startswith("final."))
    body = {k: v for k, v in state.items() if not k.startswith("final.")}
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in body.items() if k in own and v.shape != own[k].shape]
    if bad:
        k, got, want = bad[0]
        raise DataError(path, f"backbone shapes do not match the fine-tuning model: {len(bad)} tensor(s) differ, "
                              f"e.g. '{k}' is {list(got)} in the file but {list(want)} in the model"
                              f"{_sidecar_hint(path, model)}")
    loadable = {k: v for k, v in body.items() if k in own}
    if not loadable:
        raise DataError(path, f"none of its {len(state)} tensors matches a SpUNet key: not a backbone export "
                              f"of this project?")
    report.loaded = sorted(loadable)
    report.missing = [k for k in own if k not in loadable]
    report.unexpected = sorted(k for k in body if k not in own)
    missing_body = [k for k in report.missing if not k.startswith("final.")]
    if missing_body or report.unexpected:
        warnings.warn(f"{path}: {len(missing_body)} backbone tensor(s) missing, {len(report.unexpected)} unexpected")
    with torch.no_grad():
        for k, v in loadable.items():
            own[k].copy_(v.to(own[k].dtype))
    return report


# ----------------------------------------------------------------------------- spec
def _build_dataset(root: str, cfg: SemsegDataConfig) -> SemsegDataset:
    """Every training scene of ``root`` with all labels (the label budget is applied by fine-tuning)."""
    split = resolve_scene_split(root, cfg.val_fraction)
    return SemsegDataset(split.train, train_transform(cfg), on_error="raise" if cfg.strict else "skip",
                         keep_raw=cfg.cache_scenes)


def semseg_collate(cfg: SemsegDataConfig):
    """``list[PointCloud] -> PointBatch`` with the configured input features (picklable)."""
    import functools

    return functools.partial(collate_points, feat_keys=tuple(cfg.feat_keys))


SPEC = MethodSpec(
    config_cls=SemsegConfig, method_cls=SemsegModel, build_dataset=_build_dataset, build_collate=semseg_collate,
    model_config_cls=SemsegModelConfig, data_config_cls=SemsegDataConfig,
    description="supervised semantic segmentation (cross-entropy) for fine-tuning",
)
