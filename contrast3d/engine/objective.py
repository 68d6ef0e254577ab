"""The contract between the engine and whatever it trains: a :class:`TrainObjective`.

Pre-training methods (:mod:`contrast3d.methods`) and fine-tuning models
(:mod:`contrast3d.evaluation`) both subclass :class:`TrainObjective`; the engine knows nothing
else about them. Per step the :class:`~contrast3d.engine.trainer.Trainer` does::

    out = objective(batch)                    # {"loss": scalar with grad, **logged scalars}
    out["loss"].backward()
    objective.before_optimizer_step(ctx)      # e.g. cancel prototype gradients early in training
    optimizer.step(); scheduler.step()        # scheduler only when the step was not skipped (AMP)
    objective.after_step(ctx)                 # EMA teacher, centering buffers, momentum schedules

and, at the end, writes every network of :meth:`TrainObjective.exports` as safetensors plus one
typed JSON record (:mod:`contrast3d.models.pretrained`).

What an objective declares:

* :meth:`exports` — the networks handed to users, by name (``"backbone"`` is the 3D backbone and
  always present; an image-to-point method adds ``"image_net"``). Each :class:`Export` carries the
  record fields only the objective knows (preset, widths, input features, voxel size); the engine
  adds method, step, config digest and package version.
* :meth:`frozen_modules` — networks that are used but never trained (a frozen 2D network). The
  trainer keeps them in ``eval()`` even when it calls ``train()``, gives them no gradient and no
  optimizer state, never converts them to SyncBatchNorm, and leaves their weights out of every
  checkpoint, recording each one's source and a digest of its tensors instead (checked on resume).
* :meth:`param_groups` — optimizer groups, each with its own ``lr_scale`` and optionally its own
  ``schedule`` (a :class:`~contrast3d.engine.optim.ScheduleConfig` overriding the run's).
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class HookContext:
    """What :meth:`TrainObjective.before_optimizer_step` and :meth:`~TrainObjective.after_step` see.

    Attributes:
        step: optimizer steps done so far (``before_optimizer_step``: the step about to be taken is
            ``step + 1``; ``after_step``: the step just taken is ``step``).
        max_steps: steps of the whole run.
        optimizer: the optimizer (its groups carry ``name`` when the objective named them).
        world_size, rank: the process group (1 and 0 without DDP).
        device: the training device.
        all_reduce: ``all_reduce(tensor)`` sums a tensor over all processes **in place** and returns
            it (identity with one process), e.g. for DDP-correct centering means.
    """

    step: int
    max_steps: int
    optimizer: torch.optim.Optimizer
    world_size: int = 1
    rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t


@dataclass
class Export:
    """One network an objective hands to users after training.

    Attributes:
        module: the network; its ``state_dict`` keys are the file's keys.
        record: typed fields of :class:`~contrast3d.models.pretrained.PretrainedRecord` the objective
            knows (``kind``, ``preset``, ``in_channels``, ``feat_keys``, ``grid_size`` ...).
        pointcept: also write ``<name>.pth`` loadable by Pointcept (3D SpUNet backbones only).
    """

    module: nn.Module
    record: dict[str, Any] = field(default_factory=dict)
    pointcept: bool = False


@dataclass
class Frozen:
    """A frozen network and where it came from (``source``: a file path or a description)."""

    module: nn.Module
    source: str = ""


class TrainObjective(nn.Module, metaclass=abc.ABCMeta):
    """Base class of everything the engine trains (module docstring for the protocol).

    Everything that must be saved (student, teacher, prototypes, centering buffers) is a
    sub-module, parameter or buffer, so the objective's ``state_dict`` (minus frozen modules) is
    the whole training state.
    """

    @abc.abstractmethod
    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """``{"loss": scalar with grad, **other 0-d tensors to log}`` for one batch."""

    @abc.abstractmethod
    def backbone(self) -> nn.Module:
        """The 3D backbone (the network probes and periodic evaluations look at)."""

    def exports(self) -> dict[str, Export]:
        """Networks written at the end of training, by file stem (default: the backbone only)."""
        return {"backbone": Export(self.backbone())}

    def frozen_modules(self) -> dict[str, Frozen]:
        """Sub-modules that are used but never trained, by attribute path (default: none)."""
        return {}

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Optimizer groups ``{"params": [...], "name": str, "lr_scale": float, "schedule":
        ScheduleConfig | None, "weight_decay": ...}`` or ``None`` for one group of every trainable
        parameter."""
        return None

    def before_optimizer_step(self, ctx: HookContext) -> None:
        """After backward (and clipping), before ``optimizer.step()``."""

    def after_step(self, ctx: HookContext) -> None:
        """After every optimizer step (``ctx.step`` counts steps done, 1 after the first)."""

    def train(self, mode: bool = True) -> TrainObjective:
        """``nn.Module.train`` that keeps :meth:`frozen_modules` in ``eval()``."""
        super().train(mode)
        for frozen in self.frozen_modules().values():
            frozen.module.eval()
        return self


def frozen_prefixes(objective: TrainObjective) -> dict[str, str]:
    """``{frozen name: "attr.path."}`` state-dict prefix of each frozen module (found by identity)."""
    frozen = objective.frozen_modules()
    ids = {id(f.module): name for name, f in frozen.items()}
    out: dict[str, str] = {}
    for path, module in objective.named_modules():
        if id(module) in ids and ids[id(module)] not in out:
            out[ids[id(module)]] = f"{path}." if path else ""
    missing = set(frozen) - set(out)
    if missing:
        raise ValueError(f"frozen modules {sorted(missing)} are not sub-modules of {type(objective).__name__}")
    return out


def module_prefix(objective: nn.Module, module: nn.Module) -> str:
    """State-dict key prefix of ``module`` inside ``objective`` (``""`` for the objective itself)."""
    for path, m in objective.named_modules():
        if m is module:
            return f"{path}." if path else ""
    raise ValueError(f"{type(module).__name__} is not a sub-module of {type(objective).__name__}")


def tensor_digest(module: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``module``'s state dict (16 hex digits)."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
