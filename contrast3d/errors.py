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
    When *every* source fails, that is no dataset: a DataError naming the first one and the most
    common reason is raised instead of the warnings.
    """
    import warnings

    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    good = []
    failed: list[DataError] = []
    for source in sources:
        try:
            good.append((source, read(source)))
        except DataError as err:
            if on_error == "raise":
                raise
            failed.append(err)
    skipped.extend(failed)
    if failed and not good:
        why = why_all_failed([{"source": e.source, "reason": e.reason} for e in failed])
        raise DataError(failed[0].source, f"{failed[0].reason} (every input is unusable: {why})")
    for bad in failed:
        warnings.warn(f"skipping scene: {bad}", stacklevel=2)
    return good


def why_all_failed(skipped: list[dict]) -> str:
    """One phrase saying why every item of ``skipped`` (``[{"source", "reason"}, ...]``) failed:
    the most common reason with one file that had it, e.g. ``"3 of 3: depth/0.png: all zero"``."""
    if not skipped:
        return "nothing to read"
    from collections import Counter

    reasons = Counter(str(s.get("reason", "?")) for s in skipped)
    reason, count = reasons.most_common(1)[0]
    source = next(s.get("source", "?") for s in skipped if str(s.get("reason", "?")) == reason)
    others = f"; {len(reasons) - 1} other reason(s)" if len(reasons) > 1 else ""
    return f"{count} of {len(skipped)}: {source}: {reason}{others}"
