"""The downstream tasks of ``contrast3d bench --tasks``: what each is scored by and how its label budgets apply.

* ``semseg`` — semantic segmentation (:func:`~contrast3d.evaluation.finetune.finetune_semseg`,
  preset ``semseg_cpu_small``): mIoU; always run (the probes, per-class IoU and cost tables are on it).
* ``insseg`` — instance segmentation (:func:`~contrast3d.evaluation.finetune_tasks.finetune_insseg`,
  preset ``insseg_cpu_small``): ScanNet AP50 (also AP, AP25).
* ``det`` — 3D detection (:func:`~contrast3d.evaluation.finetune_tasks.finetune_det`, preset
  ``det_cpu_small``): VoteNet mAP@0.25 (also mAP@0.5).

Label budgets (the decision for insseg and det). Every budget of ``--labels`` applies to every task,
with the same saved split per (budget, seed), so the three tasks stay paired:

* scene budgets (``1%``, ``50%`` ...): the same kept training scenes, fully labelled (semantic labels,
  instance masks and boxes);
* points budgets (``20pts`` ...): the same labelled points per scene limit the **semantic (class)
  labels only**, as :mod:`contrast3d.evaluation.insseg_model` defines it: instance masks (insseg
  offsets) and box geometry (det votes, objectness, centres) stay complete; a box's class is the
  majority of its labelled points, and a box without one gives geometry losses only. So a points
  budget is a weaker restriction for insseg/det than for semseg. The report shows this note in each
  task's section and ``results.json`` stores it as ``tasks.<task>.budget_note``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BenchTask:
    """One downstream task of the bench.

    Attributes:
        name: ``semseg`` | ``insseg`` | ``det``.
        title: for the report.
        metrics: result keys kept from a run, the headline (reported, compared, plotted) first; values in [0, 1].
        preset: the fine-tuning preset the runs start from.
        smoke: overrides of ``--smoke`` (over the preset, beside the shared tiny-data settings).
    """

    name: str
    title: str
    metrics: tuple[str, ...]
    preset: str
    smoke: dict[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The headline metric."""
        return self.metrics[0]

    def budget_note(self, budgets: list[str]) -> str:
        """How ``budgets`` apply to this task (module docstring), for the report."""
        if self.name == "semseg":
            return "Label budgets as given: scene budgets keep a share of the training scenes, points budgets " \
                   "label N points per training scene."
        from contrast3d.evaluation.splits import LabelBudget

        points = [b for b in budgets if LabelBudget.parse(b).kind == "points"]
        text = ("Label budgets: the same saved split per (budget, seed) as semantic segmentation. Scene budgets "
                "keep the same training scenes, fully labelled (classes, instance masks and boxes).")
        if points:
            geo = "instance masks" if self.name == "insseg" else "box geometry (votes, objectness, centres)"
            text += (f" Points budgets ({', '.join(points)}) limit the **class labels only**: the same labelled "
                     f"points per scene, while {geo} stay complete"
                     + (" and a box without a labelled point gets no class/size supervision" if self.name == "det"
                        else "") + "; a weaker restriction than for semantic segmentation.")
        return text


TASKS: dict[str, BenchTask] = {
    "semseg": BenchTask("semseg", "semantic segmentation", ("mIoU", "mAcc", "allAcc"), "semseg_cpu_small",
                        {"method": {"eval_fragments": 1}}),
    "insseg": BenchTask("insseg", "instance segmentation", ("AP50", "AP", "AP25"), "insseg_cpu_small",
                        {"method": {"eval_fragments": 1, "min_cluster_points": 5}}),
    "det": BenchTask("det", "3D object detection", ("mAP@0.25", "mAP@0.5"), "det_cpu_small",
                     {"model": {"num_seeds": 256, "num_proposals": 64}}),
}


def parse_tasks(names: list[str]) -> list[str]:
    """``semseg`` first (always run), then the other known tasks in the order given; ``ValueError`` on unknown."""
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    return ["semseg"] + [t for t in dict.fromkeys(names) if t != "semseg"]


__all__ = ["TASKS", "BenchTask", "parse_tasks"]
