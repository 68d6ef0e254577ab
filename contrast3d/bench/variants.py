"""Method variants of ``contrast3d bench --variant``: one setting switched, measured against its base method.

``--variant NAME=METHOD:ITEM[;ITEM...]`` adds a method row ``NAME``: ``METHOD``'s pre-training with the
items layered on top, where an item is

* ``KEY=VALUE`` — a ``--set``-style override (:func:`contrast3d.config.parse_override`), layered last,
  after the bench's own flags, e.g. ``pc-nohead=pointcontrast:method.head_dim=0`` or
  ``pc-optim=pointcontrast:optim.momentum=0.8;schedule.name=exp``;
* ``@PRESET`` — a shipped pre-training preset (or a YAML file) layered over ``<method>_cpu_small`` (under
  the bench's flags), e.g. ``pc-official=pointcontrast:@pointcontrast_official``; the bench's pre-training
  steps are kept (``steps=N`` changes them).

The overrides enter the pre-training run's config and so its digest: the variant's runs live in
``OUT/pretrain/NAME/`` and are reused or re-run like any method's; the base method's runs are unchanged.
A method's ``pre_stages`` are not re-run: the variant starts from the base method's stages.
A variant is fine-tuned and probed exactly like a method (its own row: gain over scratch), and besides
that :func:`variant_gains` pairs it with its base method run by run: for each (pre-training seed,
fine-tuning seed) the variant's score minus the base's (the same pre-training seed, label split, data
order and augmentation), then mean and 95 % t interval over the pairs (:mod:`contrast3d.bench.stats`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contrast3d.bench.stats import paired_stats
from contrast3d.config import parse_override
from contrast3d.errors import DataError

#: A variant name: a safe folder name, not a method's and not scratch's.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
FLAG = "--variant"


@dataclass(frozen=True)
class Variant:
    """One ``--variant``: ``name`` (its row and folder), ``method`` (the base method), ``presets`` (``@PRESET``
    items, layered over ``<method>_cpu_small``) and ``overrides`` (``KEY=VALUE`` items, layered last)."""

    name: str
    method: str
    presets: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()

    @property
    def describe(self) -> str:
        """The items as given, ``;``-separated (``@pointcontrast_official; method.head_dim=0``)."""
        return "; ".join([f"@{p}" for p in self.presets] + list(self.overrides))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.method, "presets": list(self.presets),
                "overrides": list(self.overrides), "describe": self.describe}


def _bad(text: str, why: str) -> DataError:
    return DataError(FLAG, f"'{text}': {why}")


def parse_variant(text: str, known: list[str]) -> Variant:
    """``NAME=METHOD:ITEM[;ITEM...]`` -> :class:`Variant` (syntax only; ``known``: method names).

    Raises:
        DataError: naming ``--variant`` and the string, on one line.
    """
    name, sep, rest = text.partition("=")
    method, colon, items_text = rest.partition(":")
    name, method = name.strip(), method.strip()
    if not sep or not colon or not name or not method:
        raise _bad(text, "expected NAME=METHOD:KEY=VALUE[;KEY=VALUE...] or NAME=METHOD:@PRESET")
    if not NAME_RE.fullmatch(name):
        raise _bad(text, f"name '{name}' must be 1-64 letters, digits, '.', '_' or '-' (a folder name)")
    if name.startswith("scratch") or name in known:
        raise _bad(text, f"name '{name}' is taken by a method or scratch; choose a new one")
    if method not in known:
        raise _bad(text, f"unknown method '{method}'; known: {', '.join(known)}")
    presets: list[str] = []
    overrides: list[str] = []
    for item in (x.strip() for x in items_text.split(";")):
        if not item:
            continue
        if item.startswith("@"):
            if not item[1:].strip():
                raise _bad(text, "'@' needs a preset name (e.g. @pointcontrast_official)")
            presets.append(item[1:].strip())
            continue
        try:
            parse_override(item)
        except DataError as err:
            raise _bad(text, err.reason) from None
        overrides.append(item)
    if not presets and not overrides:
        raise _bad(text, "no setting given after ':' (KEY=VALUE or @PRESET)")
    return Variant(name, method, tuple(presets), tuple(overrides))


def parse_variants(texts: list[str], methods: list[str]) -> list[Variant]:
    """Every ``--variant`` of ``texts``, with distinct names that are not in ``methods`` (or scratch)."""
    from contrast3d.methods import METHODS

    known = list(METHODS)
    out: list[Variant] = []
    for text in texts:
        v = parse_variant(text, known)
        if v.name in methods or any(v.name == o.name for o in out):
            raise _bad(text, f"name '{v.name}' is used twice")
        out.append(v)
    return out


def variant_gains(records: list[dict[str, Any]], variants: list[dict[str, Any]], budgets: list[str],
                  measures: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Paired gain of each variant over its base method (percent points), per measure and budget.

    Args:
        records: the bench's run records (``kind``, ``method``, ``pretrain_seed``, ``seed``, ``budget``,
            ``task`` and metric values in [0, 1]).
        variants: :meth:`Variant.to_dict` of each variant.
        budgets: label budgets, in report order.
        measures: ``(task, kind, metric)``: ``("semseg", "finetune", "mIoU")``, ``("probe", "probe",
            "linear_miou")`` ... (probes have no budget: their rows say ``all labels``).

    Returns:
        rows ``{"variant", "base", "describe", "task", "metric", "budget", mean, std, n, low, high,
        significant, "verdict", "pairs": [[pretrain seed, fine-tuning seed], ...]}``; a pair is a
        (pre-training seed, fine-tuning seed) both the variant and its base have a finite score for.
    """
    import math

    def scores(method: str, kind: str, task: str, metric: str, budget: str | None) -> dict[tuple[int, int], float]:
        out: dict[tuple[int, int], float] = {}
        for r in records:
            if r["kind"] != kind or r["method"] != method or (kind == "finetune" and (
                    str(r.get("task", "semseg")) != task or r.get("budget") != budget)):
                continue
            v = r.get(metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[(int(r["pretrain_seed"]), int(r["seed"]))] = 100.0 * float(v)
        return out

    rows = []
    for v in variants:
        for task, kind, metric in measures:
            for budget in (budgets if kind == "finetune" else [None]):
                a = scores(v["name"], kind, task, metric, budget)
                b = scores(v["base"], kind, task, metric, budget)
                stats = paired_stats(a, b)
                rows.append({"variant": v["name"], "base": v["base"], "describe": v["describe"], "task": task,
                             "metric": metric, "budget": budget if budget is not None else "all labels",
                             **stats.to_dict(), "verdict": stats.verdict(),
                             "pairs": [list(k) for k in sorted(set(a) & set(b))]})
    return rows


__all__ = ["Variant", "parse_variant", "parse_variants", "variant_gains"]
