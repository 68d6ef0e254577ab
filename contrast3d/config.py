"""Typed configuration: nested dataclasses loaded from YAML, with ``--set key=value`` overrides.

A configuration is a tree of dataclasses. :func:`from_dict` builds one from plain YAML data and
checks every value against the field's type annotation; a key that is not a field is rejected
with a message naming the key, listing the valid ones and suggesting the closest (difflib).
:func:`to_dict` / :func:`dump_yaml` write it back.

This module is the generic machinery only and imports nothing of the engine; the run
configuration of the engine (``TrainConfig`` and its layered loading) is
:mod:`contrast3d.engine.config`.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
    if path.exists() and not path.is_file():
        raise ConfigError(path, "config is not a regular file")
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "config is not a UTF-8 text file") from None
    except OSError as err:
        raise ConfigError(path, f"cannot read config ({err.strerror or err})") from None
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
    out: Any = value  # the leaf value, then a nested {part: ...} mapping
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


def preset_file(name_or_path: str | Path, kind: str) -> Path:
    """An existing YAML file, or the shipped preset ``configs/<kind>/<name>.yaml`` (``kind``:
    ``pretrain`` or ``finetune``); :class:`ConfigError` listing the shipped presets otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.exists():
        raise ConfigError(path, "config is not a regular file")
    folder = PRESET_DIR / kind
    preset = folder / f"{path.stem if path.suffix in ('.yaml', '.yml') else path.name}.yaml"
    if preset.is_file() and path.parent == Path("."):
        return preset
    known = ", ".join(preset_names(kind))
    raise ConfigError(path, f"config file not found (shipped {kind} presets: {known})")


def preset_names(kind: str) -> list[str]:
    """Names of the shipped presets of ``kind`` (``pretrain`` or ``finetune``)."""
    return sorted(p.stem for p in (PRESET_DIR / kind).glob("*.yaml") if p.stem != "base")


def config_digest(obj: Any) -> str:
    """sha256 (16 hex digits) of a config's canonical JSON (sorted keys): equal configs, equal digests."""
    import hashlib
    import json

    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
