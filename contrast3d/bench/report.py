"""The bench's results: ``results.json`` (every run and every summary), ``report.md``, a self-contained
``report.html`` (PNGs embedded as base64) and the PNGs themselves.

Summaries (all mIoU / IoU in percent):

* fine-tuning mIoU per (method, budget): mean, sample standard deviation and count over every run
  (pre-training seeds x fine-tuning seeds);
* paired gain of a method over its scratch baseline per budget: for each fine-tuning seed, the
  method's mIoU averaged over its pre-training seeds minus scratch's with that seed, then mean and
  95 % t interval over seeds (:mod:`contrast3d.bench.stats`); the same against ``scratch-long`` (2.5x
  the fine-tuning steps), and ``scratch-long - scratch`` as the control that shows how much longer
  training alone buys;
* probes: linear / kNN probe mIoU of frozen features, and the paired gain over a random-init backbone
  by probe seed;
* per-class IoU per (method, budget), averaged over runs (classes absent from the validation scenes
  are left out);
* cost per method: minutes and steps per pre-training / fine-tuning run and the peak RSS of their
  worker processes;
* per downstream task (``tasks`` in ``results.json``, :mod:`contrast3d.bench.tasks`; semseg included):
  the headline metric (mIoU, AP50, mAP@0.25; percent) per (method, budget) as mean / std / n, the
  secondary metrics' means, the paired gains over scratch and scratch-long and the control, computed
  exactly as the semseg ones above (:func:`task_summary`), the fine-tuning cost and how the label
  budgets apply to the task (``budget_note``). The top-level ``miou`` / ``gains`` / ``gains_vs_long`` /
  ``control`` are semseg's;
* variants (``--variant``, :mod:`contrast3d.bench.variants`): rows of their own in every table above, and
  ``variant_gains``: each variant minus its base method, paired by (pre-training seed, fine-tuning seed),
  per task headline metric and budget and for the linear / kNN probes (by (pre-training seed, probe seed)),
  mean and 95 % t interval over the pairs.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.bench.figures import PLOTS, TASK_PLOTS, class_order, fmt
from contrast3d.bench.stats import MeanCI, mean_ci, paired_stats
from contrast3d.bench.tasks import TASKS
from contrast3d.bench.variants import variant_gains

Block = tuple  # ("h1"|"h2"|"h3"|"p", text) | ("table", header, rows) | ("img", file, caption) | ("ul", items)


# ----------------------------------------------------------------------------- summaries
def _labels(records: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """Row order: scratch, scratch-long, their matched versions, then the methods (and variants) in the order
    given."""
    seen = list(dict.fromkeys(r["method"] for r in records if r["kind"] in ("finetune", "probe")))
    scratch = sorted((m for m in seen if m.startswith("scratch")), key=lambda m: (len(m.split("[")[0]), m))
    return scratch + [m for m in methods if m in seen and not m.startswith("scratch")]


def _by_seed(runs: list[dict[str, Any]], key: str, scale: float = 100.0) -> dict[int, float]:
    """``{seed: mean over pre-training seeds of run[key]}``."""
    out: dict[int, list[float]] = {}
    for r in runs:
        if _number(r.get(key)):
            out.setdefault(int(r["seed"]), []).append(scale * float(r[key]))
    return {s: float(np.mean(v)) for s, v in out.items()}


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ci(stats: MeanCI) -> dict[str, Any]:
    return {**stats.to_dict(), "verdict": stats.verdict()}


def _task_of(record: dict[str, Any]) -> str:
    return str(record.get("task", "semseg"))


def task_summary(ft: list[dict[str, Any]], labels: list[str], budgets: list[str], metric: str) -> dict[str, Any]:
    """One task's fine-tuning runs ``ft`` summarised by ``metric`` (a value in [0, 1], reported in percent):

    ``values[label][budget]`` (mean, std, n, t interval over all runs), ``gains`` (each method minus its
    scratch baseline, paired by fine-tuning seed after averaging over pre-training seeds), ``gains_vs_long``
    (the same against scratch-long) and ``control`` (scratch-long minus scratch); rows as :func:`summarize`.
    """
    def runs(label: str, budget: str) -> list[dict[str, Any]]:
        return [r for r in ft if r["method"] == label and r["budget"] == budget]

    values = {lab: {b: _ci(mean_ci(100 * r[metric] for r in runs(lab, b) if _number(r.get(metric))))
                    for b in budgets} for lab in labels}
    gains, vs_long, control = [], [], []
    for lab in labels:
        base = next((r["baseline"] for r in ft if r["method"] == lab), lab)
        long = base.replace("scratch", "scratch-long", 1)
        for b in budgets:
            if lab.startswith("scratch-long"):
                continue
            if lab.startswith("scratch"):
                s = paired_stats(_by_seed(runs(long, b), metric), _by_seed(runs(lab, b), metric))
                control.append({"method": long, "baseline": lab, "budget": b, **_ci(s)})
                continue
            s = paired_stats(_by_seed(runs(lab, b), metric), _by_seed(runs(base, b), metric))
            gains.append({"method": lab, "baseline": base, "budget": b, **_ci(s)})
            s = paired_stats(_by_seed(runs(lab, b), metric), _by_seed(runs(long, b), metric))
            vs_long.append({"method": lab, "baseline": long, "budget": b, **_ci(s)})
    return {"metric": metric, "values": values, "gains": gains, "gains_vs_long": vs_long, "control": control}


def _task_block(name: str, ft: list[dict[str, Any]], labels: list[str], budgets: list[str]) -> dict[str, Any]:
    """``results.json``'s ``tasks[name]``: :func:`task_summary` + secondary metrics, cost and the budget note."""
    spec = TASKS[name]
    out = {"title": spec.title, "metrics": list(spec.metrics), **task_summary(ft, labels, budgets, spec.metric)}
    out["secondary"] = {m: {lab: {b: _mean(100 * r[m] for r in ft if r["method"] == lab and r["budget"] == b
                                           and _number(r.get(m))) for b in budgets} for lab in labels}
                        for m in spec.metrics[1:]}
    out["cost"] = []
    for lab in labels:
        mine = [r for r in ft if r["method"] == lab]
        out["cost"].append({"method": lab, "finetune_runs": len(mine),
                            "finetune_minutes": _mean(r.get("minutes") for r in mine),
                            "finetune_steps": _mean(r.get("steps") for r in mine),
                            "finetune_peak_rss_mb": _max(r.get("peak_rss_mb") for r in mine)})
    out["budget_note"] = spec.budget_note(budgets)
    return out


def summarize(records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """``results.json``: ``meta`` plus the summaries of the module docstring and every run record."""
    cfg = meta["config"]
    variants = meta.get("variants") or []
    budgets, labels = cfg["labels"], _labels(records, cfg["methods"] + [v["name"] for v in variants])
    ft_all = [r for r in records if r["kind"] == "finetune"]
    ft = [r for r in ft_all if _task_of(r) == "semseg"]
    tasks = {t: _task_block(t, [r for r in ft_all if _task_of(r) == t], labels, budgets)
             for t in cfg.get("tasks", ["semseg"])}
    probes = [r for r in records if r["kind"] == "probe"]
    pre = [r for r in records if r["kind"] == "pretrain"]

    def runs(label: str, budget: str | None = None) -> list[dict[str, Any]]:
        return [r for r in ft if r["method"] == label and (budget is None or r["budget"] == budget)]

    sem = tasks["semseg"] if "semseg" in tasks else task_summary(ft, labels, budgets, "mIoU")
    miou, gains, vs_long, control = sem["values"], sem["gains"], sem["gains_vs_long"], sem["control"]
    probe_rows = []
    for lab in labels:
        mine = [r for r in probes if r["method"] == lab]
        if not mine:
            continue
        base = mine[0]["baseline"]
        ref = [r for r in probes if r["method"] == base]
        row: dict[str, Any] = {"method": lab, "baseline": base}
        for key in ("linear_miou", "knn_miou"):
            row[key] = _ci(mean_ci(100 * r[key] for r in mine if key in r))
            if lab != base:
                row[f"{key}_gain"] = _ci(paired_stats(_by_seed(mine, key), _by_seed(ref, key)))
        probe_rows.append(row)
    per_class: dict[str, dict[str, dict[str, float]]] = {}
    for lab in labels:
        for b in budgets:
            acc: dict[str, list[float]] = {}
            for r in runs(lab, b):
                for cls, v in (r.get("per_class") or {}).items():
                    if v and v.get("IoU") is not None and v.get("Acc") is not None:  # Acc None: not in the val GT
                        acc.setdefault(cls, []).append(100 * v["IoU"])
            per_class.setdefault(lab, {})[b] = {c: float(np.mean(v)) for c, v in acc.items()}
    cost = []
    for lab in labels:
        mine_pre = [r for r in pre if r["method"] == lab]
        mine_ft = runs(lab)
        mine_probe = [r for r in probes if r["method"] == lab]
        cost.append({
            "method": lab, "pretrain_runs": len(mine_pre),
            "pretrain_minutes": _mean(r.get("minutes") for r in mine_pre),
            "pretrain_steps": _mean(r.get("steps") for r in mine_pre),
            "pretrain_peak_rss_mb": _max(r.get("peak_rss_mb") for r in mine_pre),
            "finetune_runs": len(mine_ft), "finetune_minutes": _mean(r.get("minutes") for r in mine_ft),
            "finetune_steps": _mean(r.get("steps") for r in mine_ft),
            "finetune_peak_rss_mb": _max(r.get("peak_rss_mb") for r in mine_ft),
            "probe_minutes": _mean(r.get("minutes") for r in mine_probe),
            "probe_peak_rss_mb": _max(r.get("peak_rss_mb") for r in mine_probe)})
    shas: dict[tuple[str, int], set[str]] = {}
    for r in ft_all:  # every task's runs: the tasks are paired too
        shas.setdefault((r["budget"], int(r["seed"])), set()).add(r.get("split_sha", ""))
    pairing = {"same_split_per_budget_and_seed": all(len(v) == 1 for v in shas.values()),
               "splits": {f"{b} seed {s}": sorted(v) for (b, s), v in sorted(shas.items())}}
    measures = [(t, "finetune", TASKS[t].metric) for t in tasks]
    measures += [("probe", "probe", "linear_miou"), ("probe", "probe", "knn_miou")]
    return {**meta, "labels": labels, "miou": miou, "gains": gains, "gains_vs_long": vs_long, "control": control,
            "probes": probe_rows, "per_class": per_class, "cost": cost, "pairing": pairing, "tasks": tasks,
            "variant_gains": variant_gains(records, variants, budgets, measures), "runs": records}


def _max(values: Any) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float))]
    return max(v) if v else None


def _mean(values: Any) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float))]
    return round(float(np.mean(v)), 3) if v else None


# ----------------------------------------------------------------------------- report text
def _pm(d: dict[str, Any]) -> str:
    if d.get("mean") is None:
        return "–"
    return f"{d['mean']:.2f} ± {fmt(d.get('std'))} (n={d['n']})"


def _gain_cells(r: dict[str, Any]) -> list[str]:
    ci = f"{fmt(r['low'], sign=True)} … {fmt(r['high'], sign=True)}" if r.get("low") is not None else "–"
    return [fmt(r["mean"], sign=True), ci, str(r["n"]), r["verdict"]]


def _extra_tasks(s: dict[str, Any]) -> list[str]:
    return [t for t in s.get("tasks", {}) if t != "semseg"]


def _verdict_lines(rows: list[dict[str, Any]], metric: str, what: str = "") -> list[str]:
    lines = []
    for r in rows:
        ci = (f"95 % CI {fmt(r['low'], sign=True)} … {fmt(r['high'], sign=True)}" if r.get("low") is not None
              else "no CI")
        lines.append(f"{r['method']} at {r['budget']}: {fmt(r['mean'], sign=True)} {metric}{what} over "
                     f"{r['baseline']} (paired over {r['n']} seed(s), {ci}): **{r['verdict']}**.")
    return lines


def task_blocks(s: dict[str, Any], name: str, figures: dict[str, str]) -> list[Block]:
    """The section of one extra task (insseg, det): the same tables as semseg's, its budget note and cost."""
    t, budgets, labels = s["tasks"][name], s["config"]["labels"], s["labels"]
    metric, steps = t["metric"], s["finetune_steps"]
    blocks: list[Block] = [("h2", f"{t['title'][0].upper() + t['title'][1:]} ({name}): {metric}")]
    blocks.append(("p", t["budget_note"]))
    blocks.append(("h3", f"Fine-tuning {metric} (%) on the validation scenes"))
    blocks.append(("table", ["method"] + budgets, [[lab] + [_pm(t["values"][lab][b]) for b in budgets]
                                                   for lab in labels]))
    secondary = t.get("secondary") or {}
    if secondary:
        blocks.append(("table", ["method (mean %)"] + budgets,
                       [[lab] + [", ".join(f"{m} {fmt(secondary[m][lab][b])}" for m in secondary) for b in budgets]
                        for lab in labels]))
    blocks.append(("p", f"mean ± sample standard deviation over all runs (pre-training seeds x fine-tuning seeds); "
                        f"the second table: means of the other metrics. The same backbones, label splits, seeds "
                        f"and {steps} fine-tuning steps (scratch-long {s['long_steps']}) as semantic segmentation; "
                        f"preset {TASKS[name].preset}."))
    blocks.append(("img", figures.get(f"{name}_metric"), f"{metric} vs label budget per method, error bars ± 1 std "
                                                          "over runs."))
    blocks.append(("h3", f"Paired gain over scratch ({metric} points)"))
    header = ["method", "vs", "budget", "mean", "95 % CI", "n", "verdict"]
    blocks.append(("table", header, [[r["method"], r["baseline"], r["budget"]] + _gain_cells(r)
                                     for r in t["gains"] + t["gains_vs_long"] + t["control"]]))
    blocks.append(("p", f"Paired by fine-tuning seed as for mIoU: the method's {metric} (averaged over its "
                        "pre-training seeds) minus the baseline's with the same seed and label split; mean and 95 % "
                        "t confidence interval over seeds."))
    blocks.append(("img", figures.get(f"{name}_gain"), f"paired {metric} gain over scratch with 95 % CI (green: CI "
                                                        "excludes 0; gray: scratch-long − scratch)."))
    crow = [[r["method"], str(r["finetune_runs"]), fmt(r["finetune_minutes"]), fmt(r["finetune_steps"], 0),
             fmt(r["finetune_peak_rss_mb"], 0)] for r in t["cost"]]
    blocks.append(("h3", "Cost"))
    blocks.append(("table", ["method", "fine-tune runs", "min / run", "steps", "peak RSS MiB"], crow))
    return blocks


_MEASURE = {"linear_miou": "linear probe mIoU", "knn_miou": "kNN probe mIoU"}


def variant_blocks(s: dict[str, Any]) -> list[Block]:
    """The Variants section: each variant's paired gain over its base method (none without ``--variant``)."""
    info = {v["name"]: v for v in s.get("variants") or []}
    if not info:
        return []
    rows = []
    for r in s.get("variant_gains") or []:
        same = " (same config as base)" if info.get(r["variant"], {}).get("same_config_as_base") else ""
        measure = _MEASURE.get(r["metric"], f"{r['metric']} ({r['task']})")
        ci = f" [{fmt(r['low'], sign=True)}, {fmt(r['high'], sign=True)}]" if r.get("low") is not None else ""
        rows.append([r["variant"], r["base"], f"`{r['describe']}`{same}", measure, r["budget"],
                     (fmt(r["mean"], sign=True) + ci) if r.get("mean") is not None else "–", str(r["n"]),
                     r["verdict"]])
    return [("h2", "Variants"),
            ("table", ["variant", "base", "overrides", "measure", "budget", "gain vs base [95 % CI]", "n", "verdict"],
             rows),
            ("p", "A variant is its base method pre-trained with the settings shown (`@PRESET` layered over the "
                  "method's cpu_small preset, KEY=VALUE last); its gain over scratch is in the tables above. Here: "
                  "the variant's score minus its base method's for each (pre-training seed, fine-tuning seed) — "
                  "the same pre-training seed, label split, data order and augmentation (probes: the same probe "
                  "seed) — in points; mean and 95 % t confidence interval over the n pairs.")]


def build_blocks(s: dict[str, Any], figures: dict[str, str]) -> list[Block]:
    """The report as blocks, rendered to Markdown and HTML alike."""
    cfg, budgets = s["config"], s["config"]["labels"]
    data = s["data"]
    extra = _extra_tasks(s)
    sem = "Semantic segmentation (semseg): " if extra else ""
    blocks: list[Block] = [("h1", "contrast3d bench")]
    blocks.append(("p", f"Methods {', '.join(cfg['methods'])}; label budgets {', '.join(budgets)}; fine-tuning "
                        f"seeds {', '.join(map(str, cfg['seeds']))}; pre-training seeds "
                        f"{', '.join(map(str, cfg['pretrain_seeds']))}; tasks "
                        f"{', '.join(s.get('tasks') or ['semseg'])}; {s['finetune_steps']} fine-tuning steps "
                        f"(scratch-long {s['long_steps']}); data `{data['root']}`"
                        f"{' (built-in' + (', smoke' if cfg['smoke'] else '') + ')' if data['builtin'] else ''}; "
                        f"{cfg['jobs']} worker process(es) x {cfg['threads']} thread(s); "
                        f"{s['minutes']['total']:.1f} min in total ({s['reused_runs']} finished run(s) reused)."))
    blocks.append(("h2", "Verdict"))
    lines = _verdict_lines(s["gains"], "mIoU", " (semseg)" if extra else "")
    for t in extra:
        lines += _verdict_lines(s["tasks"][t]["gains"], s["tasks"][t]["metric"], f" ({t})")
    for r in s.get("variant_gains") or []:
        if r["task"] == "semseg":
            ci = f"95 % CI {fmt(r['low'], sign=True)} … {fmt(r['high'], sign=True)}" if r.get("low") is not None \
                else "no CI"
            lines.append(f"variant {r['variant']} (`{r['describe']}`) at {r['budget']}: {fmt(r['mean'], sign=True)} "
                         f"mIoU over {r['base']} (paired over {r['n']} run(s), {ci}): **{r['verdict']}**.")
    for r in s["control"]:
        lines.append(f"control {r['method']} − {r['baseline']} at {r['budget']}: {fmt(r['mean'], sign=True)} "
                     f"mIoU ({r['verdict']}).")
    blocks.append(("ul", lines or ["no pre-training method finished: nothing to compare"]))
    blocks.append(("h2", f"{sem}Fine-tuning mIoU (%) on the validation scenes"))
    blocks.append(("table", ["method"] + budgets, [[lab] + [_pm(s["miou"][lab][b]) for b in budgets]
                                                   for lab in s["labels"]]))
    blocks.append(("p", "mean ± sample standard deviation over all runs (pre-training seeds x fine-tuning seeds)."))
    blocks.append(("img", figures.get("miou"), "mIoU vs label budget per method, error bars ± 1 std over runs."))
    blocks.append(("h2", f"{sem}Paired gain over scratch (mIoU points)"))
    header = ["method", "vs", "budget", "mean", "95 % CI", "n", "verdict"]
    rows = [[r["method"], r["baseline"], r["budget"]] + _gain_cells(r) for r in s["gains"] + s["gains_vs_long"]
            + s["control"]]
    blocks.append(("table", header, rows))
    blocks.append(("p", "For each fine-tuning seed: the method's mIoU (averaged over its pre-training seeds) minus "
                        "the baseline's with the same seed; mean and 95 % t confidence interval over seeds. A gain "
                        "whose interval includes 0 is not significant. The scratch-long rows are the control: "
                        f"scratch with {s['long_steps']} instead of {s['finetune_steps']} steps, the same splits."))
    blocks.append(("img", figures.get("gain"), "paired gain over scratch with 95 % CI (green: CI excludes 0; "
                                                "gray: scratch-long − scratch)."))
    for t in extra:
        blocks += task_blocks(s, t, figures)
    blocks += variant_blocks(s)
    blocks.append(("h2", "Frozen-feature probes (mIoU %)"))
    prow = []
    for r in s["probes"]:
        name = r["method"] + (" (random init)" if r["method"] == r["baseline"] else "")
        lg, kg = r.get("linear_miou_gain"), r.get("knn_miou_gain")
        prow.append([name, _pm(r["linear_miou"]), _pm(r["knn_miou"]),
                     "–" if lg is None else f"{fmt(lg['mean'], sign=True)} ({lg['verdict']})",
                     "–" if kg is None else f"{fmt(kg['mean'], sign=True)} ({kg['verdict']})"])
    blocks.append(("table", ["backbone", "linear probe", "kNN probe", "linear gain", "kNN gain"], prow))
    blocks.append(("p", "Linear (softmax regression) and kNN classifiers on frozen per-voxel features of the "
                        "training scenes (all their labels), scored on the validation scenes; gains are paired by "
                        "probe seed against a randomly initialised backbone of the same architecture."))
    blocks.append(("img", figures.get("probes"), "probe mIoU per backbone."))
    blocks.append(("h2", f"{sem}Per-class IoU (%)"))
    classes = class_order(s)
    for b in budgets:
        present = [c for c in classes if any(c in s["per_class"][lab][b] for lab in s["labels"])]
        blocks.append(("table", [f"class ({b})"] + s["labels"],
                       [[c] + [fmt(s["per_class"][lab][b].get(c), 1) for lab in s["labels"]] for c in present]))
    blocks.append(("img", figures.get("per_class"), "per-class IoU bars per budget (classes absent from the "
                                                     "validation scenes left out)."))
    blocks.append(("h2", "Cost"))
    crow = [[r["method"], str(r["pretrain_runs"]), fmt(r["pretrain_minutes"]), fmt(r["pretrain_steps"], 0),
             fmt(r["pretrain_peak_rss_mb"], 0), str(r["finetune_runs"]), fmt(r["finetune_minutes"]),
             fmt(r["finetune_steps"], 0), fmt(r["finetune_peak_rss_mb"], 0), fmt(r["probe_minutes"]),
             fmt(r["probe_peak_rss_mb"], 0)] for r in s["cost"]]
    blocks.append(("table", ["method", "pre-train runs", "min / run", "steps", "peak RSS MiB", "fine-tune runs",
                             "min / run", "steps", "peak RSS MiB", "probe min / run", "probe peak RSS MiB"], crow))
    m = s["minutes"]
    blocks.append(("p", f"Wall minutes of one worker process each (one run per process); peak RSS = the largest "
                        f"`getrusage` maximum resident set among the stage's worker processes, in MiB (a process "
                        f"that imported torch starts near 300 MiB). Stages: data and setup "
                        f"{m['data_and_setup']:.1f} min, pre-training {m['pretrain']:.1f} min, probes and "
                        f"fine-tuning {m['probe_and_finetune']:.1f} min. A run continued with --resume counts "
                        "only its last segment."))
    blocks.append(("img", figures.get("cost"), "cost per method."))
    blocks.append(("h2", "Protocol"))
    ok = s["pairing"]["same_split_per_budget_and_seed"]
    proto = [
        "Pairing: every method is fine-tuned with the same seeds; one label split per (budget, seed) is saved in "
        "`splits/` and copied into each run folder as `label_split.json` (for % budgets: the kept scene list). "
        "finetune_semseg's data order (a permutation seeded by seed + epoch over the kept scenes), per-sample "
        "augmentation (seeded by seed, epoch, index) and new-layer initialisation depend only on the fine-tuning "
        "seed and the data, so paired runs differ only in their initial backbone weights. Verified in this run: "
        + ("every run of a (budget, seed) used the identical split file." if ok else
           "**runs of one (budget, seed) used DIFFERENT split files — the pairing is broken**."),
        "Pre-training uses only the training scenes (`pairs/`, `frames/`, `scenes/train`); the validation scenes "
        "are used only to score fine-tuning and probes.",
        "Fine-tuning: semseg_cpu_small preset; the network takes the pre-trained backbone's preset, input features "
        "and voxel size; a method whose backbone differs from scratch's gets matched scratch runs (`scratch[...]`).",
        "Confidence intervals: Student t over fine-tuning seeds (n − 1 degrees of freedom); with one seed there is "
        "no interval.",
    ]
    if extra:
        proto.insert(3, f"Other tasks ({', '.join(extra)}): finetune_task with the "
                        f"{', '.join(TASKS[t].preset for t in extra)} preset(s), the same backbone signature, "
                        "pre-trained backbones, split files (checked above over every task's runs), seeds, steps and "
                        "engine trainer as semantic segmentation; only the heads and losses differ. How the label "
                        "budgets apply is stated in each task's section.")
    blocks.append(("ul", proto))
    if s["skipped"] or s["failed"]:
        blocks.append(("h2", "Skipped and failed runs"))
        blocks.append(("ul", list(s["skipped"]) + [f"{f['kind']} {f['key']}: {f['error']}" for f in s["failed"]]))
    return blocks


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h1":
            out.append(f"# {b[1]}")
        elif b[0] == "h2":
            out.append(f"## {b[1]}")
        elif b[0] == "h3":
            out.append(f"### {b[1]}")
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]))
        elif b[0] == "table":
            out.append(_md_table(b[1], b[2]))
        elif b[0] == "img" and b[1]:
            out.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def to_html(blocks: list[Block], folder: Path) -> str:
    """A self-contained page: images inlined as ``data:image/png;base64``."""
    body = []
    for b in blocks:
        if b[0] in ("h1", "h2", "h3"):
            body.append(f"<{b[0]}>{_inline(b[1])}</{b[0]}>")
        elif b[0] == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif b[0] == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
        elif b[0] == "table":
            head = "".join(f"<th>{_inline(str(c))}</th>" for c in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "img" and b[1]:
            data = base64.b64encode((folder / b[1]).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline(b[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             "figcaption{font-size:90%;color:#555}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>contrast3d bench</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(out: str | Path, summary: dict[str, Any]) -> dict[str, Path]:
    """Write ``results.json``, the PNGs, ``report.md`` and ``report.html`` into ``out``; their paths."""
    out = Path(out)
    figures: dict[str, str] = {}
    for name, plot in PLOTS.items():
        has_data = {"gain": summary["gains"] or summary["control"], "probes": summary["probes"]}.get(name, True)
        if summary["labels"] and has_data:
            figures[name] = plot(summary, out / f"fig_{name}.png").name
    for task in _extra_tasks(summary):
        t = summary["tasks"][task]
        for kind, plot in TASK_PLOTS.items():
            if summary["labels"] and (kind != "gain" or t["gains"] or t["control"]):
                figures[f"{task}_{kind}"] = plot(summary, out / f"fig_{task}_{kind}.png", task).name
    blocks = build_blocks(summary, figures)
    paths = {"results": out / "results.json", "md": out / "report.md", "html": out / "report.html"}
    paths["results"].write_text(json.dumps(_finite(summary), indent=1, default=str) + "\n")
    paths["md"].write_text(to_markdown(blocks))
    paths["html"].write_text(to_html(blocks, out))
    return {**paths, **{k: out / v for k, v in figures.items()}}


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = ["build_blocks", "summarize", "to_html", "to_markdown", "variant_blocks", "write_report"]
