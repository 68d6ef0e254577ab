"""What a pre-training method is: a :class:`PretrainMethod` and the :class:`MethodSpec` naming it.

A method is one module in :mod:`contrast3d.methods` holding

* a typed config dataclass (loss and head hyper-parameters, e.g. ``PointContrastConfig``) whose
  fields all have defaults,
* a :class:`PretrainMethod` subclass built as ``MethodClass(method_cfg, model_cfg, data_cfg)``,
* ``SPEC = MethodSpec(...)`` naming those, the ``model`` and ``data`` config classes, how to build
  the dataset and its collate function, and its own tiny smoke settings and smoke data,

and one line in ``contrast3d/methods/__init__.py`` (``METHODS["name"] = module.SPEC``) plus an
optional preset ``contrast3d/configs/pretrain/<name>.yaml``. The engine never changes: it trains
any :class:`~contrast3d.engine.objective.TrainObjective` (hooks, frozen modules, parameter groups,
exports are described there).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from contrast3d.engine.objective import Export, TrainObjective
from contrast3d.models.backbone import spunet_record
from contrast3d.models.spunet import SpUNet


class PretrainMethod(TrainObjective):
    """Base class of the pre-training methods: a :class:`TrainObjective` that remembers its
    ``model`` and ``data`` sections, so the default :meth:`exports` writes the 3D backbone with a
    complete record (preset, widths, ``feat_keys``, ``grid_size``).

    Subclasses call ``super().__init__(model_cfg, data_cfg)`` and implement ``forward`` and
    ``backbone``.
    """

    def __init__(self, model_cfg: Any, data_cfg: Any):
        super().__init__()
        self.model_cfg, self.data_cfg = model_cfg, data_cfg

    def backbone_record(self) -> dict[str, Any]:
        """Record fields of the exported 3D backbone."""
        net = self.backbone()
        if not isinstance(net, SpUNet):
            raise TypeError(f"{type(self).__name__}.backbone() is a {type(net).__name__}, not a SpUNet: "
                            "override backbone_record")
        return spunet_record(net, getattr(self.model_cfg, "preset", "custom"),
                             list(getattr(self.data_cfg, "feat_keys", [])), getattr(self.data_cfg, "grid_size", None))

    def exports(self) -> dict[str, Export]:
        return {"backbone": Export(self.backbone(), self.backbone_record(), pointcept=True)}


@dataclass(frozen=True)
class MethodSpec:
    """Everything needed to run one method (and to smoke-test it).

    Attributes:
        config_cls: the ``method`` section dataclass (losses, heads, momentum ...).
        method_cls: the :class:`PretrainMethod` subclass, called as
            ``method_cls(method_cfg, model_cfg, data_cfg)``.
        build_dataset: ``(root, data_cfg) -> Dataset`` of training samples; it should define
            ``get_sample(index, rng: numpy.random.Generator)`` so augmentation follows the run seed
            (:mod:`contrast3d.engine.data`).
        build_collate: ``data_cfg -> callable(list of samples) -> batch`` (picklable); the batch
            has ``.to(device)`` or is tensors in dicts/lists/tuples.
        model_config_cls, data_config_cls: the ``model`` and ``data`` section dataclasses.
        description: one line for ``contrast3d pretrain --list``.
        smoke: nested config values for a seconds-long CPU run (``{"model": {...}, "data": {...}}``),
            used by the contract tests and ``--smoke`` runs.
        smoke_data: ``folder -> data root``: writes tiny data the method trains on (default: two
            simulated scenes prepared as RGB-D frame pairs).
        data_kind: what ``--data`` must hold, so tools such as ``contrast3d bench`` can hand every
            method the right folder: ``pairs`` (``contrast3d prepare rgbd`` output; holistic crops of
            Pointcept scenes also work), ``scenes`` (Pointcept scene folders with normals and
            superpoints, ``contrast3d prepare scenes``) or ``frames`` (raw RGB-D frame folders).
    """

    config_cls: type
    method_cls: type[PretrainMethod]
    build_dataset: Callable[[str, Any], Dataset]
    build_collate: Callable[[Any], Callable[[list], Any]]
    model_config_cls: type
    data_config_cls: type
    description: str = ""
    smoke: dict[str, Any] = field(default_factory=dict)
    smoke_data: Callable[[Path], str] | None = None
    data_kind: Literal["pairs", "scenes", "frames"] = "pairs"

    def sections(self) -> dict[str, type]:
        """The section classes typing a run config's ``data``/``model``/``method``."""
        return {"data": self.data_config_cls, "model": self.model_config_cls, "method": self.config_cls}

    def build_method(self, method_cfg: Any, model_cfg: Any, data_cfg: Any) -> PretrainMethod:
        """Instantiate the method and check it is a :class:`PretrainMethod`."""
        factory: Callable[..., Any] = self.method_cls  # subclasses take (method_cfg, model_cfg, data_cfg)
        method = factory(method_cfg, model_cfg, data_cfg)
        if not isinstance(method, PretrainMethod):
            raise TypeError(f"{self.method_cls.__name__} must subclass PretrainMethod")
        return method

    def build(self, cfg: Any) -> tuple[PretrainMethod, Dataset, Callable[[list], Any]]:
        """``(method, dataset, collate)`` of a resolved run config (the engine's run builder)."""
        method = self.build_method(cfg.method, cfg.model, cfg.data)
        return method, self.build_dataset(cfg.data_root, cfg.data), self.build_collate(cfg.data)
