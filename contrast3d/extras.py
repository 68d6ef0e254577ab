"""Optional dependencies: which ``pip install`` extra brings each, and the one-line error when one is missing.

The core (data, models, methods, training, evaluation) needs none of them. ``[viz]``: matplotlib
(every PNG: ``contrast3d viz``, the quickstart and bench figures, ``--cmap``) and scikit-learn
(``viz tsne`` only); ``[tb]``: tensorboard (TensorBoard event files next to ``metrics.jsonl``);
``[all]``: both. Modules import them lazily, inside the function that needs them, through
:func:`require` or by catching the ``ImportError`` with :func:`missing_extra`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from contrast3d.errors import DataError

#: Top-level module -> (distribution name, the extra that installs it).
OPTIONAL: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "viz"),
    "sklearn": ("scikit-learn", "viz"),
    "tensorboard": ("tensorboard", "tb"),
}


class MissingExtra(DataError, ImportError):
    """An optional dependency is not installed. ``str(err)``:
    ``matplotlib: not installed; pip install "contrast3d[viz]"`` (the CLI prints it as one ``error:`` line,
    exit 2, like every :class:`DataError`); also an ``ImportError``, for callers that catch that."""

    def __init__(self, module: str):
        package, extra = OPTIONAL[module]
        self.module, self.package, self.extra = module, package, extra
        super().__init__(package, f'not installed; pip install "contrast3d[{extra}]" (or pip install {package})')


def missing_extra(err: BaseException, module: str | None = None) -> MissingExtra | None:
    """The :class:`MissingExtra` for an ``ImportError`` of an optional module, else ``None``.

    ``module`` names the optional module when the error does not (``torch.utils.tensorboard``
    raises a plain ``ImportError`` without ``name`` when tensorboard is missing).
    """
    if isinstance(err, MissingExtra):
        return err
    if not isinstance(err, ImportError):
        return None
    name = (getattr(err, "name", None) or module or "").split(".")[0]
    return MissingExtra(name) if name in OPTIONAL else None


def require(module: str) -> ModuleType:
    """``importlib.import_module(module)``; a missing optional dependency raises :class:`MissingExtra`.

    >>> colors = require("matplotlib.colors")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = missing_extra(err, module)
        if missing is None:
            raise
        raise missing from None
