"""The one exception type for malformed input data."""
from __future__ import annotations

import os


class DataError(ValueError):
    """Malformed or unusable input data.

    Always names the offending file (or source) and the reason, so a user can fix the
    input without reading a traceback. The CLI prints ``str(err)`` on one line and exits 2.

    >>> raise DataError("scene.ply", "truncated file: expected 1000 vertices, found 12")
    """

    def __init__(self, source: str | os.PathLike | None, reason: str):
        self.source = os.fspath(source) if source is not None else "<input>"
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


def read_or_skip(sources, read, on_error: str, skipped: list) -> list:
    """``[(source, read(source)), ...]`` for every source that reads without a :class:`DataError`.

    With ``on_error="raise"`` the first DataError propagates; with ``"skip"`` it is warned about,
    appended to ``skipped`` and the source is left out (a dataset with a few bad scenes still trains).
    """
    import warnings

    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    good = []
    for source in sources:
        try:
            good.append((source, read(source)))
        except DataError as err:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping scene: {err}", stacklevel=2)
            skipped.append(err)
    return good
