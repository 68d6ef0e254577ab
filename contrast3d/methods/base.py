"""The interface between a pre-training method and the engine.

A method is one module in :mod:`contrast3d.methods` holding

* a typed config dataclass (loss and head hyper-parameters, e.g. ``PointContrastConfig``) whose
  fields all have defaults,
* a :class:`PretrainMethod` subclass built as ``MethodClass(method_cfg, model_cfg)``,
* ``SPEC = MethodSpec(...)`` naming those plus the ``model`` and ``data`` config classes and how
  to build the dataset and its collate function,

and one line in ``contrast3d/methods/__init__.py`` (``METHODS["name"] = module.SPEC``) plus an
optional preset ``contrast3d/configs/pretrain/<name>.yaml``. The engine never needs to change.

The engine calls, per step::

    out = method(batch)                 # dict: "loss" (scalar, differentiable) + logged scalars
    out["loss"].backward(); optimizer.step(); scheduler.step()
    method.on_step_end(step, max_steps) # momentum / EMA teacher updates, schedules of the method

and at the end exports ``method.backbone().state_dict()`` as safetensors.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset


class PretrainMethod(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every pre-training method (heads, losses, teachers around a backbone).

    Subclasses implement :meth:`forward` and :meth:`backbone`; the hooks have no-op defaults.
    Everything that must be saved (student, teacher, prototypes, centering buffers) is a
    sub-module, parameter or buffer, so the method's ``state_dict`` is the whole training state.
    """

    @abc.abstractmethod
    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """Loss and logged scalars for one batch.

        Returns:
            ``{"loss": scalar tensor with grad, **other 0-d tensors or floats to log}``. Every
            value is checked for finiteness by the engine; keep the dict small.
        """

    @abc.abstractmethod
    def backbone(self) -> nn.Module:
        """The network exported after pre-training (its ``state_dict`` keys are the export's keys)."""

    def on_step_end(self, step: int, max_steps: int) -> None:
        """Called after every optimizer step; ``step`` counts steps done (1 after the first)."""

    def param_groups(self) -> list[dict[str, Any]] | None:
        """Optimizer parameter groups (``{"params": [...], "lr_scale": 0.1, ...}``), or ``None`` for all."""
        return None


@dataclass(frozen=True)
class MethodSpec:
    """Everything the engine needs to run one method.

    Attributes:
        config_cls: the ``method`` section dataclass (losses, heads, momentum ...).
        method_cls: the :class:`PretrainMethod` subclass, called as ``method_cls(method_cfg, model_cfg)``.
        build_dataset: ``(root, data_cfg) -> Dataset`` of training samples. The dataset may define
            ``get_sample(index, rng: numpy.random.Generator)`` to receive a per-sample generator
            (see :mod:`contrast3d.engine.data`); otherwise it uses the reseeded global RNGs.
        build_collate: ``data_cfg -> callable(list of samples) -> batch``; the batch should have
            ``.to(device)`` (``PointBatch``/``PairBatch``) or be tensors in dicts/lists/tuples.
        model_config_cls: the ``model`` section dataclass (backbone widths ...).
        data_config_cls: the ``data`` section dataclass (voxel size, augmentation ...).
        description: one line for ``contrast3d pretrain --help``.
    """

    config_cls: type
    method_cls: type[PretrainMethod]
    build_dataset: Callable[[str, Any], Dataset]
    build_collate: Callable[[Any], Callable[[list], Any]]
    model_config_cls: type
    data_config_cls: type
    description: str = ""

    def build_method(self, method_cfg: Any, model_cfg: Any) -> PretrainMethod:
        """Instantiate the method and check it is a :class:`PretrainMethod`."""
        method = self.method_cls(method_cfg, model_cfg)
        if not isinstance(method, PretrainMethod):
            raise TypeError(f"{self.method_cls.__name__} must subclass PretrainMethod")
        return method
