"""The PNGs of ``contrast3d bench`` (headless matplotlib through :mod:`contrast3d.viz.render`), drawn from the
summary dict of :func:`contrast3d.bench.report.summarize`: mIoU vs label budget per method (± 1 std over
runs), paired gain over scratch with its 95 % interval, per-class IoU bars per budget, probe mIoU, cost; and per
extra downstream task (``--tasks``) its headline metric vs label budget and its paired gains (:data:`TASK_PLOTS`:
the same drawing functions, parameterised by the task and its metric name)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def fmt(x: Any, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _err(d: dict[str, Any]) -> float:
    return d["std"] if d.get("std") is not None else 0.0


def _task(s: dict[str, Any], task: str) -> dict[str, Any]:
    """``s["tasks"][task]`` (values, gains, control, metric); semseg's top-level keys for older summaries."""
    got = (s.get("tasks") or {}).get(task)
    if got is not None:
        return got
    return {"metric": "mIoU", "values": s["miou"], "gains": s["gains"], "control": s["control"]}


def plot_miou(s: dict[str, Any], path: Path, task: str = "semseg") -> Path:
    """The task's headline metric (semseg: mIoU) vs label budget per method, ± 1 std over runs."""
    from contrast3d.viz.render import new_figure, save_figure

    t = _task(s, task)
    metric, values = t["metric"], t["values"]
    budgets = s["config"]["labels"]
    fig = new_figure(1.6 + 1.6 * len(budgets), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(budgets), dtype=float)
    width = 0.8 / max(1, len(s["labels"]))
    for i, lab in enumerate(s["labels"]):
        m = [values[lab][b]["mean"] for b in budgets]
        e = [_err(values[lab][b]) for b in budgets]
        ax.errorbar(x + (i - (len(s["labels"]) - 1) / 2) * width * 0.5, [np.nan if v is None else v for v in m],
                    yerr=e, marker="o", capsize=3, label=lab)
    ax.set_xticks(x, budgets)
    ax.set_xlabel("label budget")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.set_title(f"{'' if task == 'semseg' else task + ': '}fine-tuning {metric} vs label budget "
                 "(mean ± std over runs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _tick(name: str) -> str:
    """A method label for an x tick: a matched-scratch suffix (``scratch[in_channels=1;feat_keys=ones]``)
    goes on lines of its own, so neighbouring labels do not overlap."""
    base, bracket, rest = name.partition("[")
    return base + ("\n[" + rest.replace(";", ";\n") if bracket else "")


def plot_gain(s: dict[str, Any], path: Path, task: str = "semseg") -> Path:
    """The task's paired gains over scratch (and the scratch-long control) with their 95 % intervals."""
    from contrast3d.viz.render import new_figure, save_figure

    t = _task(s, task)
    rows = t["gains"] + t["control"]
    fig = new_figure(max(5.0, 0.9 * len(rows) + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(rows):
        mean = r["mean"] if r["mean"] is not None else np.nan
        lo = r["low"] if r["low"] is not None else mean
        hi = r["high"] if r["high"] is not None else mean
        color = "tab:gray" if r in t["control"] else ("tab:green" if r["significant"] else "tab:blue")
        ax.errorbar([i], [mean], yerr=[[mean - lo], [hi - mean]], marker="o", capsize=4, color=color)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(range(len(rows)), [f"{_tick(r['method'])}\n{r['budget']}" for r in rows], fontsize=7)
    ax.set_ylabel(f"paired {t['metric']} difference (points)")
    ax.set_title(f"{'' if task == 'semseg' else task + ': '}paired gain over scratch, 95 % CI over seeds "
                 "(gray: scratch-long − scratch)")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def plot_per_class(s: dict[str, Any], path: Path) -> Path:
    from contrast3d.viz.render import new_figure, save_figure

    budgets, labels = s["config"]["labels"], s["labels"]
    classes = sorted({c for lab in labels for b in budgets for c in s["per_class"][lab][b]},
                     key=lambda c: next((i for i, r in enumerate(class_order(s)) if r == c), 99))
    fig = new_figure(max(6.0, 0.45 * len(classes) * max(1, len(labels)) / 2 + 2), 2.6 * len(budgets) + 0.6)
    width = 0.8 / max(1, len(labels))
    for k, b in enumerate(budgets):
        ax = fig.add_subplot(len(budgets), 1, k + 1)
        x = np.arange(len(classes), dtype=float)
        for i, lab in enumerate(labels):
            vals = [s["per_class"][lab][b].get(c, np.nan) for c in classes]
            ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals, width, label=lab)
        ax.set_xticks(x, classes, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel(f"IoU (%) — {b}")
        ax.grid(alpha=0.3, axis="y")
        if k == 0:
            ax.legend(fontsize=7, ncol=min(4, len(labels)))
            ax.set_title("per-class IoU on the validation scenes (mean over runs)")
    fig.subplots_adjust(hspace=0.6)
    return save_figure(fig, path)


def class_order(s: dict[str, Any]) -> list[str]:
    for r in s["runs"]:
        if r["kind"] == "finetune" and r.get("per_class"):
            return list(r["per_class"])
    return []


def plot_probes(s: dict[str, Any], path: Path) -> Path:
    from contrast3d.viz.render import new_figure, save_figure

    rows = s["probes"]
    fig = new_figure(max(5.0, 1.2 * len(rows) + 2), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows), dtype=float)
    for j, (key, name) in enumerate((("linear_miou", "linear probe"), ("knn_miou", "kNN probe"))):
        m = [r[key]["mean"] if r[key]["mean"] is not None else np.nan for r in rows]
        ax.bar(x + (j - 0.5) * 0.38, m, 0.38, yerr=[_err(r[key]) for r in rows], capsize=3, label=name)
    ax.set_xticks(x, [_tick(r["method"]) + ("\n(random init)" if r["method"].startswith("scratch") else "")
                      for r in rows], fontsize=7)
    ax.set_ylabel("probe mIoU (%)")
    ax.set_title("frozen-feature probes (mean ± std over pre-training x probe seeds)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_cost(s: dict[str, Any], path: Path) -> Path:
    from contrast3d.viz.render import new_figure, save_figure

    rows = s["cost"]
    fig = new_figure(max(8.0, 1.4 * len(rows) + 4), 3.6)
    names = [r["method"] for r in rows]
    panels = (("minutes / run", ("pretrain_minutes", "finetune_minutes", "probe_minutes")),
              ("peak RSS (MiB)", ("pretrain_peak_rss_mb", "finetune_peak_rss_mb", "probe_peak_rss_mb")))
    x = np.arange(len(rows), dtype=float)
    for k, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        for j, (key, stage) in enumerate(zip(keys, ("pre-training", "fine-tuning", "probe"))):
            ax.bar(x + (j - 1) * 0.27, [r[key] or 0.0 for r in rows], 0.27, label=stage)
        ax.set_xticks(x, names, rotation=40, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


#: Figure name -> drawing function ``(summary, path) -> path``.
PLOTS = {"miou": plot_miou, "gain": plot_gain, "per_class": plot_per_class, "probes": plot_probes, "cost": plot_cost}
#: Per extra task: figure kind -> ``(summary, path, task) -> path`` (``fig_<task>_<kind>.png``).
TASK_PLOTS = {"metric": plot_miou, "gain": plot_gain}
