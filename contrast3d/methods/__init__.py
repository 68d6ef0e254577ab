"""Pre-training methods: one module each, collected in :data:`METHODS` with plain imports.

To add a method ``foo``: write ``contrast3d/methods/foo.py`` with ``FooConfig``, ``Foo`` (a
:class:`~contrast3d.methods.base.PretrainMethod`) and ``SPEC = MethodSpec(...)``, then add::

    from contrast3d.methods import foo
    METHODS["foo"] = foo.SPEC

below, and optionally ``contrast3d/configs/pretrain/foo.yaml``. ``contrast3d pretrain foo``
then works without touching the engine, and the contract tests run it from its ``SPEC.smoke``.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contrast3d.methods.base import MethodSpec, PretrainMethod

#: Method name -> spec, in the order ``--list`` shows them.
METHODS: dict[str, MethodSpec] = {}

__all__ = ["METHODS", "MethodSpec", "PretrainMethod", "method_config"]

from contrast3d.methods import csc, fac, fourdcontrast, groupcontrast, image2point, msc, pointcontrast  # noqa: E402

METHODS["pointcontrast"] = pointcontrast.SPEC
METHODS["fac"] = fac.SPEC
METHODS["groupcontrast"] = groupcontrast.SPEC
METHODS["fourdcontrast"] = fourdcontrast.SPEC
METHODS["image2point"] = image2point.SPEC
METHODS["csc"] = csc.SPEC
METHODS["msc"] = msc.SPEC


def method_config(name: str, *, files: Iterable[str | Path] = (), flags: dict[str, Any] | None = None,
                  overrides: Iterable[str] = (), presets: bool = True):
    """A method's resolved :class:`~contrast3d.engine.config.TrainConfig`: ``configs/pretrain/base.yaml``
    and ``configs/pretrain/<name>.yaml`` (when ``presets``), then ``files`` (paths or shipped preset
    names), ``flags`` and ``--set``-style ``overrides``."""
    from contrast3d.config import PRESET_DIR, preset_file
    from contrast3d.engine.config import load_train_config

    layers = [PRESET_DIR / "pretrain" / "base.yaml", PRESET_DIR / "pretrain" / f"{name}.yaml"] if presets else []
    return load_train_config(name, METHODS[name].sections(), presets=layers,
                             files=[preset_file(f, "pretrain") for f in files], flags=flags, overrides=overrides)
