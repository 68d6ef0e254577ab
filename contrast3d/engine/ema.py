"""Exponential moving averages of weights, for momentum encoders and EMA teachers.

``teacher = m * teacher + (1 - m) * student`` for parameters (and, by default, a plain copy of
buffers such as BatchNorm running statistics). A method typically owns an :class:`EMATeacher`
as a sub-module (so it is saved in checkpoints) and calls ``teacher.update(student, m)`` from
:meth:`~contrast3d.engine.objective.TrainObjective.after_step`, with ``m`` from
:func:`cosine_momentum` (BYOL/DINO schedule).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from torch import nn


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, momentum: float,
                buffers: Literal["copy", "ema", "none"] = "copy") -> None:
    """In place: ``target_param = momentum * target_param + (1 - momentum) * source_param``.

    ``target`` and ``source`` must have the same architecture (same parameter/buffer names).
    Floating buffers are copied (``"copy"``), averaged like parameters (``"ema"``) or left alone;
    integer buffers (e.g. ``num_batches_tracked``) are always copied unless ``"none"``.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    t_params = dict(target.named_parameters())
    s_params = dict(source.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(t_params) ^ set(s_params))[:5]
        raise ValueError(f"EMA target and source differ in parameters, e.g. {missing}")
    names = list(t_params)
    tgt = [t_params[n].data for n in names]
    src = [s_params[n].data.to(t_params[n].dtype) for n in names]
    if tgt:
        torch._foreach_lerp_(tgt, src, 1.0 - momentum)
    if buffers == "none":
        return
    s_bufs = dict(source.named_buffers())
    for name, buf in target.named_buffers():
        if name not in s_bufs:
            continue
        if buffers == "ema" and buf.is_floating_point():
            buf.lerp_(s_bufs[name].to(buf.dtype), 1.0 - momentum)
        else:
            buf.copy_(s_bufs[name])


def cosine_momentum(step: int, max_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """BYOL/DINO momentum schedule: ``base`` at step 0 rising to ``final`` at ``max_steps`` (cosine)."""
    t = min(1.0, max(0.0, step / max(1, max_steps)))
    return final - (final - base) * (math.cos(math.pi * t) + 1.0) / 2.0


class EMATeacher(nn.Module):
    """A frozen copy of a module, updated as an EMA of the module it was copied from.

    The copy's parameters have ``requires_grad=False``, so the optimizer and DDP ignore them;
    being a sub-module of the method, it is saved and restored with the method's ``state_dict``.

    >>> teacher = EMATeacher(student)          # in the method's __init__
    >>> teacher.update(student, momentum=0.99)  # in after_step
    >>> with torch.no_grad(): t = teacher(x)
    """

    def __init__(self, source: nn.Module, buffers: Literal["copy", "ema", "none"] = "copy"):
        super().__init__()
        self.module = copy.deepcopy(source)
        self.buffers_mode = buffers
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, source: nn.Module, momentum: float) -> None:
        """One EMA step towards ``source``."""
        ema_update_(self.module, source, momentum, self.buffers_mode)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)
