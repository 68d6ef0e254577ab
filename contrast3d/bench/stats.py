"""Paired statistics of a benchmark: differences matched by seed, mean and a t confidence interval.

Every method is fine-tuned with the same fine-tuning seeds as scratch, and a seed fixes the label
split, the data order, the augmentation and the initialisation of the new layers (see
:mod:`contrast3d.bench.runner`). So the comparison is *paired*: for each seed ``s``

    d_s = a_s - b_s        (e.g. a = the method's mIoU, b = scratch's mIoU with the same seed)

and the seeds' shared luck (an easy split, a lucky order) cancels. Over the ``n`` differences:

    mean  = (1/n) sum_s d_s
    sd    = sqrt( sum_s (d_s - mean)^2 / (n - 1) )          (sample standard deviation)
    CI    = mean -+ t_{1 - alpha/2, n - 1} * sd / sqrt(n)    (alpha = 1 - confidence; Student t)

``scipy.stats.t.ppf`` gives the quantile. With ``n = 1`` there is no interval (``nan`` bounds);
with ``sd = 0`` and ``n > 1`` the interval has width 0. A gain is *significant* when its interval
excludes 0 (both bounds above 0, or both below). The t interval assumes roughly normal differences;
with 3 seeds it is wide, which is the honest answer for 3 seeds.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class MeanCI:
    """Mean, sample standard deviation, count and the ``confidence`` t interval of some values."""

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float = 0.95

    @property
    def has_ci(self) -> bool:
        return self.n > 1 and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.has_ci and (self.low > 0 or self.high < 0)

    def verdict(self, what: str = "gain") -> str:
        """``"significant gain"``, ``"significant loss"``, ``"no significant gain (CI includes 0)"`` or
        ``"n = 1: no confidence interval"``."""
        if not self.has_ci:
            return f"n = {self.n}: no confidence interval"
        if self.low > 0:
            return f"significant {what}"
        if self.high < 0:
            return f"significant {'loss' if what == 'gain' else 'negative ' + what}"
        return f"no significant {what} (CI includes 0)"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["significant"] = self.significant
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """:class:`MeanCI` of ``values`` (float64; see the module docstring)."""
    from scipy import stats

    x = np.asarray(list(values), np.float64)
    n = int(x.size)
    if n == 0:
        nan = float("nan")
        return MeanCI(nan, nan, 0, nan, nan, confidence)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(mean, float("nan"), 1, float("nan"), float("nan"), confidence)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return MeanCI(mean, std, n, mean - half, mean + half, confidence)


def paired_differences(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict[Any, float]:
    """``{key: a[key] - b[key]}`` for the keys (e.g. seeds, or ``(budget, seed)``) present in both."""
    return {k: float(a[k]) - float(b[k]) for k in sorted(set(a) & set(b), key=repr)}


def paired_stats(a: Mapping[Any, float], b: Mapping[Any, float], confidence: float = 0.95) -> MeanCI:
    """:func:`mean_ci` of :func:`paired_differences` ``a - b``."""
    return mean_ci(paired_differences(a, b).values(), confidence)


__all__ = ["MeanCI", "mean_ci", "paired_differences", "paired_stats"]
