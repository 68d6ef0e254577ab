"""The engine's run configuration: :class:`TrainConfig` and its layered loading.

A run's ``data``, ``model`` and ``method`` sections are typed by whoever builds the objective (a
pre-training method's spec, or a fine-tuning task): :func:`load_train_config` takes those section
classes. Layers, later wins::

    dataclass defaults < presets (e.g. configs/pretrain/base.yaml, configs/pretrain/<method>.yaml)
                       < --config FILE < command-line flags < --set key=value
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contrast3d.config import EmptyConfig, apply_overrides, from_dict, load_yaml, merge
from contrast3d.engine.data import LoaderConfig
from contrast3d.engine.optim import OptimConfig, ScheduleConfig


@dataclass
class TrainConfig:
    """One pre-training run: engine settings plus the method's ``data``/``model``/``method`` sections.

    Attributes:
        method_name: key of the method in :data:`contrast3d.methods.METHODS`.
        data_root: dataset folder (``--data``).
        steps: optimizer steps in total (``--steps``).
        seed: seeds model init, sampling order, augmentation and the per-rank RNGs.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        amp: mixed precision (autocast + GradScaler); only ever used on CUDA.
        deterministic: ``torch.use_deterministic_algorithms`` (slower, bit-reproducible on CPU).
        log_every: steps between metric log lines (TensorBoard + ``metrics.jsonl``).
        checkpoint_every: steps between checkpoints (``checkpoints/last.pt``); 0 = only at the end.
        keep_every: also keep ``checkpoints/step_XXXXXXXX.pt`` every N steps (0 = never).
        progress: show a progress bar on rank 0.
        find_unused_parameters: passed to DDP (methods whose forward skips some parameters).
        sync_bn: convert BatchNorm to SyncBatchNorm under multi-GPU DDP (never on CPU).
    """

    method_name: str = ""
    data_root: str = ""
    steps: int = 1000
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    deterministic: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    keep_every: int = 0
    progress: bool = True
    find_unused_parameters: bool = False
    sync_bn: bool = False
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: Any = field(default_factory=EmptyConfig)
    model: Any = field(default_factory=EmptyConfig)
    method: Any = field(default_factory=EmptyConfig)


def load_train_config(name: str, sections: dict[str, type], *, presets: Iterable[str | Path] = (),
                      files: Iterable[str | Path] = (), flags: dict[str, Any] | None = None,
                      overrides: Iterable[str] = ()) -> TrainConfig:
    """Resolve a :class:`TrainConfig` from presets, files, flags and ``--set`` overrides.

    Args:
        name: what is trained (the method or task name, stored as ``method_name``).
        sections: ``{"data": cls, "model": cls, "method": cls}`` typing the ``Any`` sections.
        presets: YAML files applied first (missing ones are skipped).
        files: YAML files applied next, in order (``--config``, or a resumed run's ``config.yaml``).
        flags: values from dedicated command-line flags (``{"steps": 10, "data_root": ...}``).
        overrides: ``key=value`` strings.

    Raises:
        ConfigError: naming the layer (file, ``command line`` or ``--set``) with the bad key/value.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    for preset in presets:
        if Path(preset).is_file():
            layers.append((str(preset), load_yaml(preset)))
    layers += [(str(f), load_yaml(f)) for f in files]
    layers.append(("command line", {"method_name": name, **(flags or {})}))
    data: dict[str, Any] = {}
    for source, layer in layers:
        from_dict(TrainConfig, layer, source=source, sections=sections)  # name the bad layer
        data = merge(data, layer)
    data = apply_overrides(TrainConfig, data, overrides, sections)
    return from_dict(TrainConfig, data, source="resolved config", sections=sections)
