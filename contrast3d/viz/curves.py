"""Loss and metric curves from runs' ``metrics.jsonl`` (one JSON object per logged step).

Every record needs ``"step"``; every other numeric key becomes a series (``"time"`` is left
out; booleans, strings such as ``"nan"`` and nested values are skipped). One subplot per key,
several runs overlaid in one colour each (legend: the run folder names or given labels):

* training series (``loss``, ``lr`` ...): the raw values faint, a smoothed line on top;
* evaluation series (keys ``val/...``, ``val_...``, ``eval/``, ``test/``, ``probe/``, and any series
  with fewer than :data:`FEW_POINTS` points): every logged point as a marker, the last value written
  next to it;
* the final result: when the run folder has a ``results.json`` (``contrast3d finetune``) whose key
  matches a ``val`` series (``val/mIoU`` or ``val_miou`` <-> ``mIoU``), a star at the last step with
  the value written next to it.
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
#: Key prefixes (before ``/`` or ``_``) of evaluation series, drawn as markers.
EVAL_PREFIXES = ("val", "eval", "test", "probe")
#: Key prefixes that a final ``results.json`` value may stand for (evaluation on the validation split).
FINAL_PREFIXES = ("val", "eval")
#: A series with fewer points than this is drawn as markers, not smoothed.
FEW_POINTS = 8


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


def _split_prefix(key: str) -> tuple[str, str]:
    """``("val", "mIoU")`` for ``val/mIoU`` or ``val_mIoU``; ``("", key)`` without a known prefix."""
    for sep in ("/", "_"):
        head, _, tail = key.partition(sep)
        if tail and head.lower() in EVAL_PREFIXES:
            return head.lower(), tail
    return "", key


def is_eval_key(key: str) -> bool:
    """Whether ``key`` is an evaluation series (``val/mIoU``, ``val_miou``, ``probe/knn_miou`` ...)."""
    return bool(_split_prefix(key)[0])


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def read_results(source: str | Path | Iterable[dict[str, Any]]) -> dict[str, float]:
    """Numeric top-level values of the run's ``results.json`` (``{}`` when there is none or it is unreadable).

    ``source`` is a run folder or its ``metrics.jsonl``; records (not a path) have no results.
    """
    if not isinstance(source, (str, Path)):
        return {}
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    try:
        data = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for k, v in data.items():
        num = _number(v)
        if num is not None:
            out[str(k)] = num
    return out


def final_value(key: str, results: dict[str, float]) -> float | None:
    """The ``results.json`` value a validation series stands for: ``val/mIoU`` and ``val_miou`` match
    ``mIoU`` (case and punctuation ignored); ``None`` for other series or no match."""
    prefix, name = _split_prefix(key)
    if prefix not in FINAL_PREFIXES:
        return None
    wanted = _norm(name)
    for k, v in results.items():
        if _norm(k) == wanted:
            return v
    return None


def run_labels(sources: Sequence[str | Path | Iterable[dict[str, Any]]]) -> list[str]:
    """Legend names: a run folder's name (a ``.jsonl`` file: its folder's name), ``run<i>`` for records;
    names that repeat get their parent folder prefixed (``a/seed0``, ``b/seed0``)."""
    paths: list[Path | None] = []
    for src in sources:
        if isinstance(src, (str, Path)):
            path = Path(src).absolute()
            paths.append(path.parent if path.suffix == ".jsonl" and path.parent.name else path)
        else:
            paths.append(None)
    names = [q.name if q is not None else f"run{i}" for i, q in enumerate(paths)]
    return [f"{q.parent.name}/{q.name}" if q is not None and names.count(name) > 1 else name
            for name, q in zip(names, paths)]


def _is_schedule(key: str) -> bool:
    """Whether ``key`` is an optimiser schedule (learning rate, momentum, weight decay): drawn unsmoothed."""
    last = _norm(key.rsplit("/", 1)[-1])
    return last in ("lr", "learningrate", "momentum", "wd", "weightdecay") or last.endswith("lr")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _annotate(ax: Any, items: list[tuple[float, float, str, Any]]) -> None:
    """Write ``(x, y, text, colour)`` labels right of their points, pushed apart vertically so that none overlap."""
    if not items:
        return
    dpi = ax.figure.dpi
    xy = ax.transData.transform(np.array([(x, y) for x, y, _, _ in items], np.float64))
    order = np.argsort(xy[:, 1], kind="stable")
    gap = 11.5 * dpi / 72  # one 8-pt text line, in pixels
    placed = xy[order, 1].copy()
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    top = ax.bbox.y1 - gap / 2
    if placed[-1] > top:  # keep the stack inside the axes, moving it down
        placed -= min(placed[-1] - top, max(placed[0] - ax.bbox.y0 - gap / 2, 0.0))
    for rank, i in enumerate(order):
        x, y, text, color = items[i]
        dy = (placed[rank] - xy[i, 1]) * 72 / dpi
        ax.annotate(text, (x, y), xytext=(7, dy), textcoords="offset points", ha="left", va="center", fontsize=8,
                    color=color, fontweight="bold", annotation_clip=False,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
                    arrowprops=({"arrowstyle": "-", "color": color, "linewidth": 0.6} if abs(dy) > 2 else None))


def curves_figure(runs: Sequence[tuple[str, Sequence[dict[str, Any]], dict[str, float]]],
                  keys: Sequence[str] | None = None, smoothing: float = 0.9, ncols: int = 3,
                  title: str | None = None) -> tuple[Any, list[str]]:
    """The curves figure of ``runs`` = ``[(label, records, results), ...]`` (not saved); returns ``(figure, keys)``.

    ``keys`` are the plotted series in first-seen order over the runs (``[]``: nothing to plot, no figure
    drawn -- the figure is then ``None``).
    """
    import matplotlib
    from matplotlib.lines import Line2D

    per_run = [metric_series(records, keys) for _, records, _ in runs]
    plotted: list[str] = []
    for series in per_run:
        plotted += [k for k in series if k not in plotted]
    if keys is not None:
        plotted = [k for k in keys if k in plotted]
    if not plotted:
        return None, []
    palette = matplotlib.colormaps["tab10"]
    colors = [palette(i % 10) for i in range(len(runs))]
    n = len(plotted)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig = new_figure(4.4 * ncols, 3.1 * nrows)
    used = {"raw": False, "points": False, "final": False}
    notes: list[tuple[Any, list[tuple[float, float, str, Any]]]] = []
    for i, key in enumerate(plotted):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        items: list[tuple[float, float, str, Any]] = []
        lows, highs = [], []
        for (_, records, results), series, color in zip(runs, per_run, colors):
            if key not in series:
                continue
            steps, values = series[key]
            lows.append(values.min())
            highs.append(values.max())
            final = final_value(key, results)
            if is_eval_key(key) or len(values) < FEW_POINTS:
                ax.plot(steps, values, color=color, linewidth=1.4, marker="o", markersize=4.5,
                        markeredgecolor="white", markeredgewidth=0.6)
                used["points"] = True
                if final is None:
                    items.append((steps[-1], values[-1], _fmt(values[-1]), color))
            elif _is_schedule(key):  # a schedule is not noisy: smoothing would only make it lag
                ax.plot(steps, values, color=color, linewidth=1.8)
            else:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
                weight = min(smoothing, max(0.0, 1 - 20 / len(values)))  # EMA window <= 1/20 of the curve
                ax.plot(steps, smooth(values, weight), color=color, linewidth=1.8)
                used["raw"] = True
            if final is not None:
                last = results.get("steps")
                x = float(last) if last is not None and last > 0 else max(float(r["step"]) for r in records)
                ax.plot([x], [final], marker="*", markersize=13, color=color, markeredgecolor="black",
                        markeredgewidth=0.8, linestyle="none", zorder=5)
                items.append((x, final, f"final {_fmt(final)}", color))
                lows.append(final)
                highs.append(final)
                used["final"] = True
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if key.startswith("loss") and min(lows) > 0 and max(highs) / min(lows) > 100:
            ax.set_yscale("log")
        if items:
            lo, hi = ax.get_xlim()
            ax.set_xlim(lo, hi + 0.22 * (hi - lo))  # room for the value labels right of the last points
        notes.append((ax, items))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for ax, items in notes:
        ax.set_ylim(*ax.get_ylim())  # freeze autoscaling before measuring pixel positions
        _annotate(ax, items)
    grey = "0.35"
    handles = [Line2D([], [], color=c, linewidth=2.2, label=label) for (label, _, _), c in zip(runs, colors)]
    if len(runs) == 1:
        handles = []
    if used["raw"]:
        handles += [Line2D([], [], color=grey, alpha=0.3, linewidth=1, label="raw"),
                    Line2D([], [], color=grey, linewidth=1.8, label=f"smoothed (EMA {smoothing:g})")]
    if used["points"]:
        handles.append(Line2D([], [], color=grey, linewidth=1.4, marker="o", markersize=4.5,
                              markeredgecolor="white", label="evaluation"))
    if used["final"]:
        handles.append(Line2D([], [], color=grey, marker="*", markersize=11, markeredgecolor="black",
                              linestyle="none", label="final result (results.json)"))
    if handles:
        width = fig.get_figwidth() * fig.dpi
        sizes = sorted((len(str(h.get_label())) * 6.5 + 55 for h in handles), reverse=True)  # pixels at 9 pt
        ncol = max(1, max(k for k in range(1, len(handles) + 1) if sum(sizes[:k]) <= width or k == 1))
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=9,
                   frameon=False)
    return fig, plotted


def plot_runs(sources: Sequence[str | Path | Iterable[dict[str, Any]]], out_png: str | Path,
              labels: Sequence[str] | None = None, keys: Sequence[str] | None = None, smoothing: float = 0.9,
              ncols: int = 3, title: str | None = None) -> list[str]:
    """Overlay the curves of several runs (run folders, ``.jsonl`` files or record lists); write a PNG.

    Args:
        labels: legend names, one per source (default :func:`run_labels`).
        keys: series to plot (default every numeric key of any run).
        smoothing: EMA weight of the training series (see :func:`smooth`).

    Returns:
        The keys plotted. Raises :class:`DataError` when no run has a numeric series to plot.
    """
    sources = list(sources)
    if not sources:
        raise ValueError("no runs to plot")
    names = list(labels) if labels is not None else run_labels(sources)
    if len(names) != len(sources):
        raise ValueError(f"{len(names)} labels for {len(sources)} runs")
    runs = [(name, read_metrics(src), read_results(src)) for name, src in zip(names, sources)]
    fig, plotted = curves_figure(runs, keys, smoothing, ncols, title)
    if fig is None:
        first = sources[0]
        raise DataError(str(first) if isinstance(first, (str, Path)) else "<records>",
                        "no numeric metrics to plot" + (f" for keys {list(keys)}" if keys else ""))
    save_figure(fig, out_png)
    return plotted


def plot_curves(source: str | Path | Iterable[dict[str, Any]], out_png: str | Path,
                keys: Sequence[str] | None = None, smoothing: float = 0.9, ncols: int = 3,
                title: str | None = None) -> list[str]:
    """One run's curves (see :func:`plot_runs`), written as PNG; returns the keys plotted.

    Raises :class:`DataError` when the log has no numeric series to plot.
    """
    return plot_runs([source], out_png, keys=keys, smoothing=smoothing, ncols=ncols, title=title)
