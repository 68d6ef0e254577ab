"""Optimizers (SGD, AdamW) and learning-rate schedules (cosine / poly / step / exp / constant with warm-up).

Schedules are :class:`torch.optim.lr_scheduler.LambdaLR` over a picklable :class:`LRFactor`, so a
scheduler's ``state_dict`` (step count and base learning rates) restores exactly on resume; the
factor itself is rebuilt from the config.

Closed form of the factor ``f(s)`` multiplying each group's base learning rate at step ``s``
(``s`` optimizer steps already taken, ``W = warmup_steps``, ``T = total steps``)::

    s < W:   f = warmup_start_factor + (1 - warmup_start_factor) * s / W
    s >= W:  t = min(1, (s - W) / max(1, T - W))
             cosine:   f = m + (1 - m) * (1 + cos(pi t)) / 2          (m = min_factor)
             poly:     f = m + (1 - m) * (1 - t) ** power
             step:     f = gamma ** (number of milestones with milestone * T <= s)
             exp:      f = gamma ** floor((s - W) / step_size)      (staircase, the default)
                       f = gamma ** ((s - W) / step_size)           (staircase: false)
             constant: f = 1

``exp`` is the official PointContrast code's ``ExponentialLR(gamma=0.99)`` stepped every
``trainer.lr_update_freq`` iterations (1000 in its ``defaults.yaml``, 250 in its launch scripts):
a staircase multiplying the learning rate by ``gamma`` every ``step_size`` steps, independent of
the run length ``T``. That code also steps its scheduler once after the very first iteration, so
from step 1 on its factor is one stair (one factor ``gamma``) below this schedule's; the offset is
not copied.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class OptimConfig:
    """Optimizer settings.

    Attributes:
        name: ``sgd`` or ``adamw``.
        lr: base learning rate (per-group ``lr_scale`` multiplies it).
        weight_decay: L2 (SGD) or decoupled (AdamW) weight decay.
        momentum, nesterov: SGD only.
        betas, eps: AdamW only.
        no_decay_norm_bias: no weight decay for biases and normalisation weights.
        clip_grad_norm: clip the global gradient L2 norm to this value (``None`` = off).
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    no_decay_norm_bias: bool = False
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optim.lr must be > 0 and finite, got {self.lr}")
        if self.clip_grad_norm is not None and not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0):
            raise ValueError(f"optim.clip_grad_norm must be > 0 (finite) or null, got {self.clip_grad_norm}")
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"optim.{name} must be a finite number >= 0, got {value}")
        if not (0 <= self.betas[0] < 1 and 0 <= self.betas[1] < 1) or not self.eps > 0:
            raise ValueError(f"optim.betas must be in [0, 1) and optim.eps > 0, got {self.betas}, {self.eps}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule (see the module docstring for the formulas).

    Attributes:
        name: ``cosine``, ``poly``, ``step``, ``exp`` or ``constant``.
        warmup_steps: linear warm-up length ``W``.
        warmup_start_factor: factor at step 0 of the warm-up.
        min_factor: final factor of cosine/poly (fraction of the base learning rate).
        power: poly exponent.
        milestones: step schedule: fractions of the total steps at which the factor is multiplied by ``gamma``.
        gamma: step and exp schedules: the decay factor (exp: per ``step_size`` steps; set it,
            the default 0.1 suits ``step``; the official PointContrast value is 0.99).
        step_size: exp schedule: steps per factor ``gamma`` (official PointContrast launch scripts: 250).
        staircase: exp schedule: ``gamma ** floor(s / step_size)`` (official) instead of the
            smooth ``gamma ** (s / step_size)``.
    """

    name: Literal["cosine", "poly", "step", "exp", "constant"] = "cosine"
    warmup_steps: int = 0
    warmup_start_factor: float = 0.001
    min_factor: float = 0.0
    power: float = 0.9
    milestones: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.1
    step_size: int = 1000
    staircase: bool = True

    def __post_init__(self) -> None:
        if self.step_size < 1:
            raise ValueError(f"schedule.step_size must be >= 1, got {self.step_size}")
        if self.warmup_steps < 0:
            raise ValueError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if any(not 0.0 < m <= 1.0 for m in self.milestones):
            raise ValueError(f"schedule.milestones are fractions of the total steps in (0, 1], got {self.milestones}")
        for name in ("warmup_start_factor", "min_factor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"schedule.{name} must be in [0, 1], got {getattr(self, name)}")
        if not (math.isfinite(self.power) and self.power > 0 and 0 < self.gamma <= 1):
            raise ValueError(f"schedule.power must be > 0 and schedule.gamma in (0, 1], got {self.power}, {self.gamma}")


class LRFactor:
    """Picklable learning-rate factor ``f(step)`` for :class:`LambdaLR` (formulas in the module docstring)."""

    def __init__(self, cfg: ScheduleConfig, total_steps: int):
        self.cfg = cfg
        self.total = max(1, int(total_steps))

    def __call__(self, step: int) -> float:
        c = self.cfg
        w = c.warmup_steps
        if step < w:
            return c.warmup_start_factor + (1.0 - c.warmup_start_factor) * step / w
        t = min(1.0, (step - w) / max(1, self.total - w))
        if c.name == "cosine":
            return c.min_factor + (1.0 - c.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        if c.name == "poly":
            return c.min_factor + (1.0 - c.min_factor) * (1.0 - t) ** c.power
        if c.name == "step":
            return c.gamma ** sum(1 for m in c.milestones if step >= m * self.total)
        if c.name == "exp":
            n = (step - w) // c.step_size if c.staircase else (step - w) / c.step_size
            return c.gamma ** n
        return 1.0


def split_decay(named_params: Iterable[tuple[str, nn.Parameter]], modules: nn.Module) -> list[dict]:
    """Two parameter groups: with weight decay, and without (biases, norm-layer weights)."""
    no_decay_ids = {id(p) for m in modules.modules() if isinstance(m, _NORM_TYPES)
                    for p in m.parameters(recurse=False)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or id(p) in no_decay_ids or p.ndim <= 1 else decay).append(p)
    groups: list[dict[str, Any]] = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW over ``groups`` (default: every trainable parameter of ``model``).

    A group may carry ``lr_scale`` (multiplies ``cfg.lr``), its own ``lr``/``weight_decay``, a
    ``name`` (kept in the optimizer's group, for hooks and logs) and a ``schedule`` (a
    :class:`ScheduleConfig` or its dict, stored in the group as a plain dict for
    :func:`build_scheduler`). Parameters without ``requires_grad`` (frozen) are never optimised.
    """
    if groups is None:
        if cfg.no_decay_norm_bias:
            groups = split_decay(model.named_parameters(), model)
        else:
            groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    prepared = []
    for g in groups:
        g = dict(g)
        g["params"] = [p for p in g["params"] if p.requires_grad]
        scale = g.pop("lr_scale", 1.0)
        g.setdefault("lr", cfg.lr * scale)
        schedule = g.pop("schedule", None)
        if schedule is not None:
            is_config = dataclasses.is_dataclass(schedule) and not isinstance(schedule, type)
            g["schedule"] = dataclasses.asdict(schedule) if is_config else dict(schedule)
        if g["params"]:
            prepared.append(g)
    if not prepared:
        raise ValueError("the method has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(prepared, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    beta1, beta2 = cfg.betas  # a list when read from YAML
    return torch.optim.AdamW(prepared, lr=cfg.lr, betas=(beta1, beta2), eps=cfg.eps,
                             weight_decay=cfg.weight_decay)


class ScheduleLR(torch.optim.lr_scheduler.LambdaLR):
    """:class:`LambdaLR` whose ``state_dict`` holds only plain data (step, base and last learning
    rates): the factor is rebuilt from the config, so checkpoints load with ``weights_only=True``
    and a resumed run may change ``steps``."""

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["lr_lambdas"] = [None] * len(self.lr_lambdas)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the step count and put the saved learning rates back into the optimizer."""
        super().load_state_dict(state_dict)
        for group, lr in zip(self.optimizer.param_groups, self.get_last_lr()):
            group["lr"] = lr


def warmup_warning(cfg: ScheduleConfig, total_steps: int, group: str | None = None) -> str | None:
    """One line when the linear warm-up (``warmup_steps``) lasts the whole run (``>= total_steps``): the
    learning rate then never reaches its base value and the decay never starts; ``None`` otherwise.
    ``group``: the parameter group whose own schedule ``cfg`` is (``None``: the run's ``schedule``)."""
    w = cfg.warmup_steps
    if w <= 0 or w < total_steps:
        return None
    what = f"parameter group '{group}': its schedule's warmup_steps" if group else "schedule.warmup_steps"
    fix = "" if group else f"; e.g. --set schedule.warmup_steps={total_steps // 10}"
    return (f"{what} ({w}) >= steps ({total_steps}): the learning rate stays in the warm-up for the whole "
            f"run and never reaches optim.lr{fix}")


def schedule_warnings(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> list[str]:
    """:func:`warmup_warning` of ``cfg`` and of every parameter group's own ``schedule`` (each once)."""
    found: list[str] = []
    for i, g in enumerate(optimizer.param_groups):
        own = g.get("schedule")
        text = warmup_warning(ScheduleConfig(**own), total_steps, str(g.get("name", i))) if own else \
            warmup_warning(cfg, total_steps)
        if text and text not in found:
            found.append(text)
    return found


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> ScheduleLR:
    """A per-iteration scheduler (call ``step()`` once after every optimizer step that was taken).

    Each parameter group follows its own ``schedule`` (see :func:`build_optimizer`) or ``cfg``.
    """
    factors: list[Callable[[int], float]] = [
        LRFactor(ScheduleConfig(**g["schedule"]) if g.get("schedule") else cfg, total_steps)
        for g in optimizer.param_groups]
    return ScheduleLR(optimizer, factors)
