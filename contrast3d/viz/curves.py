"""Loss and metric curves from a run's ``metrics.jsonl`` (one JSON object per logged step).

Every record needs ``"step"``; every other numeric key becomes a series (``"time"`` is left
out; booleans, strings such as ``"nan"`` and nested values are skipped). One subplot per key:
the raw values faint, a smoothed line on top.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.errors import DataError
from contrast3d.viz.render import new_figure, save_figure

#: Keys never plotted as curves.
SKIP_KEYS = ("step", "time", "epoch")


def read_metrics(source: str | Path | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records from a run folder (its ``metrics.jsonl``), a JSONL file, or a list of dicts.

    Lines that are not JSON objects with an integer-like ``"step"`` (e.g. cut by a kill) are skipped.
    Raises :class:`DataError` when the file is missing, not a regular file or not UTF-8 text.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / "metrics.jsonl"
        if path.exists() and not path.is_file():
            raise DataError(path, "metrics log is not a regular file")
        if not path.is_file():
            raise DataError(path, "metrics log not found")
        try:
            lines: Iterable[Any] = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise DataError(path, "metrics log is not UTF-8 text (expected one JSON object per line)") from None
        except OSError as err:
            raise DataError(path, f"cannot read the metrics log ({err.strerror or err})") from None
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    else:
        records = list(source)
    out = []
    for r in records:
        if isinstance(r, dict) and _number(r.get("step")) is not None:
            out.append(r)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def metric_series(records: Sequence[dict[str, Any]], keys: Sequence[str] | None = None
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{key: (steps (T,), values (T,))}`` sorted by step, for ``keys`` or every numeric key.

    Keys are in first-seen order; a requested key with no numeric value is left out.
    """
    wanted = list(keys) if keys is not None else []
    if keys is None:
        for r in records:
            for k, v in r.items():
                if k not in SKIP_KEYS and k not in wanted and _number(v) is not None:
                    wanted.append(k)
    out = {}
    for k in wanted:
        pts = [(float(r["step"]), _number(r.get(k))) for r in records]
        pts = sorted((s, v) for s, v in pts if v is not None)
        if pts:
            arr = np.asarray(pts, dtype=np.float64)
            out[k] = (arr[:, 0], arr[:, 1])
    return out


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average of ``(T,)`` values."""
    from scipy.signal import lfilter

    values = np.asarray(values, dtype=np.float64)
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    acc = lfilter([1 - weight], [1, -weight], values)  # acc_t = w acc_{t-1} + (1 - w) v_t
    return acc / (1 - weight ** np.arange(1, len(values) + 1))


def plot_curves(source: str | Path | Iterable[dict[str, Any]], out_png: str | Path,
                keys: Sequence[str] | None = None, smoothing: float = 0.9, ncols: int = 3,
                title: str | None = None) -> list[str]:
    """One subplot per metric (raw faint + smoothed), written as PNG; returns the keys plotted.

    Raises :class:`DataError` when the log has no numeric series to plot.
    """
    series = metric_series(read_metrics(source), keys)
    if not series:
        raise DataError(str(source) if isinstance(source, (str, Path)) else "<records>",
                        "no numeric metrics to plot" + (f" for keys {list(keys)}" if keys else ""))
    n = len(series)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig = new_figure(4.2 * ncols, 3.0 * nrows)
    for i, (key, (steps, values)) in enumerate(series.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=1)
        weight = min(smoothing, max(0.0, 1 - 20 / len(values)))  # EMA window <= 1/20 of the curve
        ax.plot(steps, smooth(values, weight), color="tab:blue", linewidth=1.8)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if key.startswith("loss") and values.min() > 0 and values.max() / values.min() > 100:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out_png)
    return list(series)
