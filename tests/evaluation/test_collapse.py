"""Feature-collapse monitors: collapsed vs isotropic features."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrast3d.evaluation.collapse import (
    collapse_stats,
    effective_rank,
    feature_std,
    mean_pairwise_cosine,
)


def test_collapsed_features():
    feats = np.tile(np.random.default_rng(0).standard_normal(16), (500, 1)) * 3.0
    assert feature_std(feats) == pytest.approx(0.0, abs=1e-9)
    assert effective_rank(feats) == pytest.approx(1.0, abs=1e-6)
    assert mean_pairwise_cosine(feats) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("c", [8, 32])
def test_isotropic_gaussian(c):
    feats = torch.randn(20000, c, generator=torch.Generator().manual_seed(0)) * 5 + 0.0
    assert feature_std(feats) == pytest.approx(1 / math.sqrt(c), rel=0.03)
    assert effective_rank(feats) > 0.95 * c
    assert abs(mean_pairwise_cosine(feats)) < 0.02


def test_low_rank_and_scale_invariance():
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((3000, 2)) @ rng.standard_normal((2, 24))
    assert effective_rank(feats) < 2.0 + 1e-6
    assert feature_std(feats * 100) == pytest.approx(feature_std(feats))


def test_collapse_stats_keys_and_subsampling_is_seeded():
    feats = torch.randn(5000, 8, generator=torch.Generator().manual_seed(2))
    a = collapse_stats(feats, prefix="x/")
    assert set(a) == {"x/feat_std", "x/feat_std_norm", "x/eff_rank", "x/eff_rank_ratio", "x/mean_cos"}
    assert a["x/feat_std_norm"] == pytest.approx(1.0, rel=0.05)
    assert effective_rank(feats, max_points=1000, seed=3) == effective_rank(feats, max_points=1000, seed=3)
    assert math.isnan(feature_std(feats[:1])) and math.isnan(mean_pairwise_cosine(feats[:1]))
    with pytest.raises(ValueError):
        feature_std(torch.zeros(3))
