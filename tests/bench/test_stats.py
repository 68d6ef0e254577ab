"""Paired statistics of contrast3d bench against hand-computed float64 values."""
from __future__ import annotations

import math

import pytest

from contrast3d.bench.stats import mean_ci, paired_differences, paired_stats


def test_mean_ci_hand_computed():
    # values 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.2909944487358056, se = sd / 2,
    # t_{0.975, 3} = 3.182446305284263 -> half width 2.0542551...
    s = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4 and s.mean == 2.5
    assert s.std == pytest.approx(1.2909944487358056, rel=1e-14)
    half = 3.182446305284263 * 1.2909944487358056 / 2.0
    assert s.low == pytest.approx(2.5 - half, rel=1e-12) and s.high == pytest.approx(2.5 + half, rel=1e-12)
    assert s.significant and s.verdict() == "significant gain"
    # 90 %: t_{0.95, 3} = 2.353363434801823
    s90 = mean_ci([1.0, 2.0, 3.0, 4.0], confidence=0.90)
    assert s90.high - s90.mean == pytest.approx(2.353363434801823 * 1.2909944487358056 / 2.0, rel=1e-12)


def test_mean_ci_matches_naive_loop():
    vals = [0.3, -1.7, 2.2, 0.9, 1.4]
    n = len(vals)
    mean = 0.0
    for v in vals:
        mean += v / n
    var = 0.0
    for v in vals:
        var += (v - mean) ** 2 / (n - 1)
    t_975_4 = 2.7764451051977987  # scipy.stats.t.ppf(0.975, 4), also in printed t tables (2.776)
    s = mean_ci(vals)
    assert s.mean == pytest.approx(mean, rel=1e-14) and s.std == pytest.approx(math.sqrt(var), rel=1e-14)
    assert s.low == pytest.approx(mean - t_975_4 * math.sqrt(var / n), rel=1e-12)
    assert not s.significant and "includes 0" in s.verdict()


def test_paired_by_key_and_degenerate_cases():
    a = {0: 0.50, 1: 0.40, 2: 0.45, 3: 0.9}
    b = {0: 0.45, 1: 0.38, 2: 0.41}
    d = paired_differences(a, b)
    assert list(d) == [0, 1, 2] and d[0] == pytest.approx(0.05) and d[2] == pytest.approx(0.04)
    s = paired_stats(a, b)
    assert s.n == 3 and s.mean == pytest.approx((0.05 + 0.02 + 0.04) / 3)
    one = mean_ci([0.7])
    assert one.n == 1 and math.isnan(one.low) and not one.significant and "no confidence" in one.verdict()
    assert one.to_dict()["low"] is None
    flat = mean_ci([-0.1, -0.1, -0.1])
    assert flat.low == pytest.approx(-0.1) and flat.high == pytest.approx(-0.1) and flat.verdict() == "significant loss"
    assert mean_ci([]).n == 0
