"""Typed configuration: nested dataclasses loaded from YAML, with ``--set key=value`` overrides.

A configuration is a tree of dataclasses. :func:`from_dict` builds one from plain YAML data and
checks every value against the field's type annotation; a key that is not a field is rejected
with a message naming the key, listing the valid ones and suggesting the closest (difflib).
:func:`to_dict` / :func:`dump_yaml` write it back.

The pre-training run configuration is :class:`TrainConfig`; its ``data``, ``model`` and
``method`` sections are typed by the chosen method's :class:`~contrast3d.methods.base.MethodSpec`
(see :func:`train_sections`). Layers, later wins::

    dataclass defaults < configs/pretrain/base.yaml < configs/pretrain/<method>.yaml
                       < --config FILE < command-line flags < --set key=value
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Union

import yaml

from contrast3d.engine.data import LoaderConfig
from contrast3d.engine.optim import OptimConfig, ScheduleConfig
from contrast3d.errors import DataError

#: Folder of the YAML presets shipped inside the package.
PRESET_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(DataError):
    """An invalid configuration value or key; ``source`` is the file or ``--set`` it came from.

    A :class:`DataError` so the CLI prints it on one line and exits with code 2.
    """


@dataclass
class EmptyConfig:
    """A section with no settings (for methods without model or data options)."""


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


# ----------------------------------------------------------------------------- dict <-> dataclass
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str, source: str, sections: dict[str, type]) -> Any:
    """``value`` checked (and lightly converted: int -> float, list -> tuple) against ``tp``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, path, source, sections)
            except ConfigError:
                pass
        raise ConfigError(source, f"{path}: {value!r} does not match {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            hint = _suggest(str(value), [str(a) for a in args])
            raise ConfigError(source, f"{path}: {value!r} is not one of {list(args)}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_dict(value)
        if not isinstance(value, dict):
            raise ConfigError(source, f"{path}: expected a mapping for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, source=source, sections=sections, prefix=path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(source, f"{path}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]", source, sections) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}[{i}]", source, sections) for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, f"{path}: expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return {str(k): _convert(v, vt, f"{path}.{k}", source, sections) for k, v in value.items()}
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(source, f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def from_dict(cls: type, data: dict[str, Any], *, source: str = "<config>",
              sections: dict[str, type] | None = None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, type-checking every value.

    Args:
        cls: the dataclass.
        data: plain data (from YAML); missing keys keep the dataclass defaults.
        source: file or origin named in error messages.
        sections: dotted path -> dataclass for fields annotated ``Any`` (e.g. ``{"method": PointContrastConfig}``).
        prefix: dotted path of ``cls`` inside the whole config (for messages).

    Raises:
        ConfigError: an unknown key (with the valid keys and a suggestion) or a mistyped value.
    """
    sections = sections or {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            where = f"in section '{prefix}'" if prefix else "at the top level"
            raise ConfigError(source, f"unknown key '{path}' {where}; valid keys: {', '.join(names)}"
                                      f"{_suggest(str(key), names)}")
        tp = sections.get(path, hints[key])
        kwargs[key] = _convert(value, tp, path, source, sections)
    for key in names:  # sections typed at run time must be built even when absent from the data
        path = f"{prefix}.{key}" if prefix else key
        if key not in kwargs and path in sections:
            kwargs[key] = from_dict(sections[path], {}, source=source, sections=sections, prefix=path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(source, f"{prefix or cls.__name__}: {err}") from err


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-safe data (dicts, lists, scalars) from a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------- YAML and overrides
def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file as a mapping (empty file -> ``{}``); :class:`ConfigError` naming the file otherwise."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(path, f"invalid YAML: {err}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"top level must be a mapping, got {type(data).__name__}")
    return data


def dump_yaml(obj: Any, path: str | Path | None = None) -> str:
    """YAML text of a config (dataclass or dict); also written to ``path`` when given."""
    text = yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge of mappings; ``update`` wins; neither input is modified."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=0.05"`` -> ``{"optim": {"lr": 0.05}}`` (value typed by ``yaml.safe_load``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", f"expected KEY=VALUE with a dotted key (e.g. optim.lr=0.05), got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def apply_overrides(cls: type, data: dict[str, Any], overrides: Iterable[str],
                    sections: dict[str, type] | None = None) -> dict[str, Any]:
    """Merge ``--set`` overrides into ``data``, validating each against the schema of ``cls``."""
    for text in overrides:
        update = parse_override(text)
        from_dict(cls, update, source=f"--set {text}", sections=sections)  # key/type check
        data = merge(data, update)
    return data


# ----------------------------------------------------------------------------- pre-training config
def train_sections(spec: Any) -> dict[str, type]:
    """The ``data``/``model``/``method`` section classes of a method spec."""
    return {"data": spec.data_config_cls, "model": spec.model_config_cls, "method": spec.config_cls}


def load_train_config(method_name: str, spec: Any, *, files: Iterable[str | Path] = (),
                      flags: dict[str, Any] | None = None, overrides: Iterable[str] = (),
                      presets: bool = True) -> TrainConfig:
    """Resolve a :class:`TrainConfig` from presets, files, flags and ``--set`` overrides.

    Args:
        method_name: the METHODS key (also stored as ``method_name``).
        spec: the method's :class:`~contrast3d.methods.base.MethodSpec`.
        files: YAML files applied in order (``--config``, or a resumed run's ``config.yaml``).
        flags: values from dedicated command-line flags (``{"steps": 10, "data_root": ...}``).
        overrides: ``key=value`` strings.
        presets: start from ``configs/pretrain/base.yaml`` and ``configs/pretrain/<method>.yaml``.
    """
    sections = train_sections(spec)
    layers: list[tuple[str, dict[str, Any]]] = []
    if presets:
        for name in ("base", method_name):
            preset = PRESET_DIR / "pretrain" / f"{name}.yaml"
            if preset.is_file():
                layers.append((str(preset), load_yaml(preset)))
    layers += [(str(f), load_yaml(f)) for f in files]
    layers.append(("command line", {"method_name": method_name, **(flags or {})}))
    data: dict[str, Any] = {}
    for source, layer in layers:
        from_dict(TrainConfig, layer, source=source, sections=sections)  # name the bad layer
        data = merge(data, layer)
    data = apply_overrides(TrainConfig, data, overrides, sections)
    return from_dict(TrainConfig, data, source="resolved config", sections=sections)
