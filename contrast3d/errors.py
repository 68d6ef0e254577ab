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
