"""The engine's run configuration: :class:`TrainConfig` and its layered loading.

A run's ``data``, ``model`` and ``method`` sections are typed by whoever builds the objective (a
pre-training method's spec, or a fine-tuning task): :func:`load_train_config` takes those section
classes. Layers, later wins::

    dataclass defaults < presets (e.g. configs/pretrain/base.yaml, configs/pretrain/<method>.yaml)
                       < --config FILE < command-line flags < --set key=value

Changing settings on ``--resume`` (:func:`resume_changes`): the run folder's ``config.yaml`` is the
starting point, and what differs from the checkpoint's config is either *applied from the resume
step on* -- ``steps``, the schedule, ``optim.lr`` / ``weight_decay`` / ``momentum`` / ``nesterov`` /
``betas`` / ``eps`` (re-applied to the restored optimizer), ``optim.clip_grad_norm``, logging and
checkpoint cadence, ``data_root``, ``device``, loader workers, and ``data.*`` / ``method.*`` values the
objective is rebuilt with -- and recorded as ``{"step", "key", "from", "to"}`` in the config's
``resume_changes`` (so ``config.yaml`` and the checkpoints tell the whole history; ``metrics.jsonl``
keeps one line per logged step and shows the new values from that step on); or it is *refused*
(:data:`RESUME_FIXED`: the architecture, the optimizer type and its parameter groups, the seed and
batching that define the sample order, mixed precision), because the run would no longer continue
the checkpoint. An objective may refuse more keys through a
``resume_fixed_keys`` attribute (e.g. fine-tuning's ``method.init`` and ``method.labels``, which a
resumed run takes from its run folder).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
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
        progress: console progress on rank 0: a bar when stderr is a terminal, else plain lines
            ``step N/T  loss L  S s/step  ETA ...`` (``train.log`` gets the lines either way).
        find_unused_parameters: passed to DDP (methods whose forward skips some parameters).
        sync_bn: convert BatchNorm to SyncBatchNorm under multi-GPU DDP (never on CPU).
        resume_changes: settings changed on ``--resume`` (written by the trainer, see the module
            docstring): ``[{"step": s, "key": "optim.lr", "from": 0.1, "to": 0.01}, ...]``.
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
    resume_changes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("log_every", 1), ("checkpoint_every", 0), ("keep_every", 0)):
            value = getattr(self, name)
            if isinstance(value, int) and value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")


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


#: Keys (or ``prefix.`` for a whole section) that cannot change on ``--resume`` (module docstring).
RESUME_FIXED = ("method_name", "model.", "optim.name", "optim.no_decay_norm_bias", "seed", "loader.batch_size",
                "loader.shuffle", "loader.drop_last", "amp", "sync_bn")
#: Keys that may change although they match :data:`RESUME_FIXED` (the backend does not change the weights).
RESUME_FREE = ("model.backend",)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_changes(saved: dict[str, Any], now: dict[str, Any], fixed: Sequence[str] = ()) -> dict[str, tuple]:
    """``{dotted key: (saved value, new value)}`` of the settings that differ between a checkpoint's
    config and the resumed run's (both plain dicts, :func:`~contrast3d.config.to_dict`).

    Keys present on one side only (a newer or older config schema) and ``resume_changes`` itself
    are not compared. Raises :class:`ValueError` naming the first key that may not change
    (:data:`RESUME_FIXED` plus ``fixed``).
    """
    old, new = _flatten(saved), _flatten(now)
    changes = {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys())
               if k != "resume_changes" and old[k] != new[k]}
    rules = tuple(RESUME_FIXED) + tuple(fixed)
    for key, (a, b) in changes.items():
        if key in RESUME_FREE:
            continue
        if any(key == r or (r.endswith(".") and key.startswith(r)) for r in rules):
            raise ValueError(f"{key} cannot change on --resume (the checkpoint has {a!r}, now {b!r}): the run "
                             f"would no longer continue the checkpoint; start a new run (another --out) instead")
    return changes
