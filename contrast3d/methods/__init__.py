"""Pre-training methods: one module each, collected in :data:`METHODS` with plain imports.

To add a method ``foo``: write ``contrast3d/methods/foo.py`` with ``FooConfig``, ``Foo`` (a
:class:`~contrast3d.methods.base.PretrainMethod`) and ``SPEC = MethodSpec(...)``, then add::

    from contrast3d.methods import foo
    METHODS["foo"] = foo.SPEC

below, and optionally ``contrast3d/configs/pretrain/foo.yaml``. ``contrast3d pretrain foo``
then works without touching the engine.
"""
from __future__ import annotations

from contrast3d.methods.base import MethodSpec, PretrainMethod

#: Method name -> spec, in the order ``--help`` lists them.
METHODS: dict[str, MethodSpec] = {}

__all__ = ["METHODS", "MethodSpec", "PretrainMethod"]

from contrast3d.methods import pointcontrast  # noqa: E402

METHODS["pointcontrast"] = pointcontrast.SPEC
