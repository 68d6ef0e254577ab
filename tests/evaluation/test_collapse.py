import math

import pytest
import torch

from contrast3d.evaluation.collapse import collapse_stats, effective_rank, feature_std, mean_pairwise_cosine


def test_collapsed_features():
    feats = torch.ones(500, 32)
    assert feature_std(feats) == pytest.approx(0.0, abs=1e-6)
    assert effective_rank(feats) == pytest.approx(1.0, abs=1e-3)
    assert mean_pairwise_cosine(feats) == pytest.approx(1.0, abs=1e-6)


def test_isotropic_features():
    feats = torch.randn(20000, 32, generator=torch.Generator().manual_seed(0))
    assert feature_std(feats) == pytest.approx(1 / math.sqrt(32), rel=0.05)
    assert effective_rank(feats) > 30
    assert abs(mean_pairwise_cosine(feats)) < 0.02
    stats = collapse_stats(feats, prefix="x/")
    assert set(stats) >= {"x/feat_std", "x/eff_rank"}


def test_rank_two_features():
    g = torch.Generator().manual_seed(1)
    basis = torch.randn(2, 16, generator=g)
    feats = torch.randn(5000, 2, generator=g) @ basis
    assert 1.5 < effective_rank(feats) < 2.05
