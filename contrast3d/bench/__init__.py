"""``contrast3d bench``: what each pre-training method buys, measured so that a reviewer would believe it.

Pre-train every method (several pre-training seeds), probe its frozen features (linear and kNN),
fine-tune it under each label budget with several fine-tuning seeds, and compare it with scratch
*paired by seed* (same label split, same data order and augmentation), with a 95 % t confidence
interval over seeds, a scratch run with 2.5x the fine-tuning steps as a control, and the cost
(minutes, steps, peak memory). Writes ``report.md``, a self-contained ``report.html``,
``results.json`` and PNGs.

* :mod:`contrast3d.bench.data` — the benchmark data layout and the built-in simulated benchmark;
* :mod:`contrast3d.bench.runner` — the protocol: configs, label splits, the plan of runs;
* :mod:`contrast3d.bench.tasks` — the downstream tasks of ``--tasks`` (semseg, insseg, det): metrics, presets,
  how label budgets apply;
* :mod:`contrast3d.bench.jobs` — running them in worker processes, reuse by config digest, resume;
* :mod:`contrast3d.bench.stats` — paired differences, mean, t interval;
* :mod:`contrast3d.bench.variants` — ``--variant``: a method with settings switched, paired with its base method;
* :mod:`contrast3d.bench.report` and :mod:`contrast3d.bench.figures` — summaries, Markdown / HTML, PNGs.

New methods appear without code changes: everything a method needs is in its
:class:`~contrast3d.methods.base.MethodSpec` (``data_kind``, ``smoke``, presets).
"""
from __future__ import annotations

from contrast3d.bench.data import BUILTIN, SMOKE, BenchData, BenchDataConfig, build_builtin_data, open_data
from contrast3d.bench.runner import BenchConfig, run_bench
from contrast3d.bench.stats import MeanCI, mean_ci, paired_stats

__all__ = ["BUILTIN", "SMOKE", "BenchConfig", "BenchData", "BenchDataConfig", "MeanCI", "build_builtin_data",
           "mean_ci", "open_data", "paired_stats", "run_bench"]
