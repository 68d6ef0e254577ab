"""MSC building blocks: k-NN matches vs brute force, InfoNCE, reconstruction terms and mask token."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrast3d.losses import point_info_nce
from contrast3d.losses.msc import (
    MaskToken,
    apply_mask_token,
    color_reconstruction_loss,
    knn_matches,
    msc_info_nce,
    normal_reconstruction_loss,
)


def _clouds(seed=0, n1=300, n2=280, size=0.3):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, size, (n1, 3)), rng.uniform(0, size, (n2, 3))


def _dist(c1, c2):
    return np.sqrt(((c1[:, None, :] - c2[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("max_k", [1, 3, 8, 1000])
def test_knn_matches_against_brute_force(max_k):
    c1, c2 = _clouds()
    d = _dist(c1, c2)
    order = np.argsort(d, axis=1, kind="stable")
    pairs = knn_matches(c1, c2, radius=0.03, max_pairs=None, rng=np.random.default_rng(0), max_k=max_k)
    assert pairs.dtype == np.int64 and pairs.shape[1] == 2
    # every pair within the radius and among the view-1 point's max_k nearest
    assert (d[pairs[:, 0], pairs[:, 1]] < 0.03).all()
    rank = np.argmax(order[pairs[:, 0]] == pairs[:, 1][:, None], axis=1)
    assert (rank < max_k).all()
    # exactly the view-1 points with a neighbour within the radius, each once, in order
    expected_rows = np.flatnonzero(d.min(axis=1) < 0.03)
    assert np.array_equal(pairs[:, 0], expected_rows)
    assert 50 < expected_rows.size < c1.shape[0]      # the example has matched and unmatched points
    if max_k == 1:
        assert np.array_equal(pairs[:, 1], d[pairs[:, 0]].argmin(axis=1))


def test_knn_matches_random_choice_and_cap():
    c1, c2 = _clouds(1, size=0.15)                   # dense: many candidates per point
    d = _dist(c1, c2)
    cand = (d < 0.03) & (np.argsort(np.argsort(d, axis=1), axis=1) < 8)
    i = int(np.argmax(cand.sum(1)))
    seen = {int(knn_matches(c1, c2, max_pairs=None, rng=np.random.default_rng(s))[i, 1]) for s in range(200)}
    assert seen == set(np.flatnonzero(cand[i]).tolist()) and len(seen) > 2
    full = knn_matches(c1, c2, max_pairs=None, rng=np.random.default_rng(3))
    capped = knn_matches(c1, c2, max_pairs=40, rng=np.random.default_rng(3))
    assert capped.shape == (40, 2) and np.unique(capped[:, 0]).size == 40
    assert (np.diff(capped[:, 0]) > 0).all() and (d[capped[:, 0], capped[:, 1]] < 0.03).all()
    assert full.shape[0] > 40
    a = knn_matches(c1, c2, max_pairs=40, rng=np.random.default_rng(8))
    b = knn_matches(c1, c2, max_pairs=40, rng=np.random.default_rng(8))
    assert np.array_equal(a, b)


def test_knn_matches_radius_is_strict_and_scenes_separate():
    zero = np.zeros((1, 3))
    assert knn_matches(zero, np.array([[0.03, 0.0, 0.0]]), rng=np.random.default_rng(0)).shape == (0, 2)
    assert knn_matches(zero, np.array([[0.0299, 0.0, 0.0]]), rng=np.random.default_rng(0)).tolist() == [[0, 0]]
    c1, c2 = _clouds(2, n1=150, n2=150)
    # two scenes with the same coordinates: pairs never cross scenes and match the per-scene result
    cc1, cc2 = np.concatenate([c1, c1]), np.concatenate([c2, c2])
    b1, b2 = np.repeat([0, 1], 150), np.repeat([0, 1], 150)
    pairs = knn_matches(cc1, cc2, max_pairs=None, rng=np.random.default_rng(0), max_k=1, batch1=b1, batch2=b2)
    assert (b1[pairs[:, 0]] == b2[pairs[:, 1]]).all()
    single = knn_matches(c1, c2, max_pairs=None, rng=np.random.default_rng(0), max_k=1)
    assert np.array_equal(pairs, np.concatenate([single, single + 150]))
    with pytest.raises(ValueError):
        knn_matches(cc1, cc2, rng=np.random.default_rng(0), batch1=b1)


def test_msc_info_nce_uses_all_matched_pairs():
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(20, 8, generator=g, dtype=torch.float64)
    f2 = torch.randn(25, 8, generator=g, dtype=torch.float64)
    matches = torch.tensor([[0, 3], [5, 7], [6, 1], [19, 24], [2, 2]])
    want = point_info_nce(f1[matches[:, 0]], f2[matches[:, 1]], tau=0.4)
    assert msc_info_nce(f1, f2, matches).item() == pytest.approx(want.item(), rel=1e-12)
    eye = torch.eye(4, dtype=torch.float64)
    pairs = torch.stack([torch.arange(4), torch.arange(4)], 1)
    expected = -math.log(math.exp(1 / 0.4) / (math.exp(1 / 0.4) + 3))
    assert msc_info_nce(eye, eye, pairs).item() == pytest.approx(expected, rel=1e-12)


def naive_color(pred, color, mask):
    terms = [sum((float(pred.detach()[i, c]) - float(color[i, c])) ** 2 for c in range(3))
             for i in range(pred.shape[0]) if mask[i]]
    return sum(terms) / len(terms)


def test_color_reconstruction_targets_and_masking():
    g = torch.Generator().manual_seed(1)
    n = 40
    color = torch.rand(n, 3, generator=g, dtype=torch.float64)          # input colour before masking
    mask = torch.rand(n, generator=g) < 0.4
    token = torch.full((3,), 0.5, dtype=torch.float64)
    pred = torch.rand(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
    loss = color_reconstruction_loss(pred, color, mask)
    assert loss.item() == pytest.approx(naive_color(pred, color, mask), rel=1e-12)
    # Unmasked points do not contribute: changing their prediction or target changes nothing ...
    other_pred = torch.where(mask.view(-1, 1), pred.detach(), torch.rand(n, 3, generator=g, dtype=torch.float64))
    other_color = torch.where(mask.view(-1, 1), color, torch.zeros_like(color))
    assert color_reconstruction_loss(other_pred, other_color, mask).item() == pytest.approx(loss.item(), rel=1e-12)
    # ... and receive no gradient.
    loss.backward()
    assert (pred.grad[~mask] == 0).all() and (pred.grad[mask] != 0).any()
    # The target is the unmasked input: predicting the original colour is perfect, echoing the masked
    # network input (the token) is not.
    masked_input = apply_mask_token(color, mask, token)
    assert color_reconstruction_loss(color, color, mask).item() == 0.0
    echo = color_reconstruction_loss(masked_input, color, mask).item()
    assert echo == pytest.approx(((token - color[mask]) ** 2).sum(1).mean().item(), rel=1e-12) and echo > 0
    # Hand value: one masked point off by (0.1, 0.2, 0.2) -> 0.09.
    one = color_reconstruction_loss(torch.tensor([[0.1, 0.2, 0.2], [9.0, 9, 9]]), torch.zeros(2, 3),
                                    torch.tensor([True, False]))
    assert one.item() == pytest.approx(0.09, rel=1e-6)
    empty = color_reconstruction_loss(pred, color, torch.zeros(n, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


def test_normal_reconstruction_decreases_when_aligned():
    g = torch.Generator().manual_seed(2)
    n = 30
    target = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)
    start = torch.randn(n, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(n, dtype=torch.bool)
    mask[::3] = False
    values = [normal_reconstruction_loss((1 - t) * start + t * target, target, mask).item()
              for t in np.linspace(0.0, 1.0, 11)]
    assert all(b < a for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.0, abs=1e-12)
    # naive float64 reference, length invariance, opposite / orthogonal normals
    naive = np.mean([1 - float(start[i] @ target[i]) / float(start[i].norm() * target[i].norm())
                     for i in range(n) if mask[i]])
    assert normal_reconstruction_loss(start, target, mask).item() == pytest.approx(naive, rel=1e-12)
    assert normal_reconstruction_loss(5 * start, target, mask).item() == pytest.approx(naive, rel=1e-12)
    assert normal_reconstruction_loss(-target, target, mask).item() == pytest.approx(2.0, rel=1e-12)
    assert normal_reconstruction_loss(-target, target, mask, unoriented=True).item() == pytest.approx(0.0, abs=1e-12)
    ortho = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    assert normal_reconstruction_loss(ortho, x, torch.tensor([True])).item() == pytest.approx(1.0, rel=1e-12)
    # a gradient step moves the prediction towards the target (the released code's sign would not)
    pred = start.clone().requires_grad_(True)
    loss = normal_reconstruction_loss(pred, target, mask)
    loss.backward()
    assert (pred.grad[~mask] == 0).all()
    with torch.no_grad():
        assert normal_reconstruction_loss(pred - 0.5 * pred.grad, target, mask) < loss


def test_apply_mask_token_values_and_gradients():
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(6, 4, generator=g, requires_grad=True)
    token = torch.randn(4, generator=g, requires_grad=True)
    mask = torch.tensor([True, False, True, False, False, True])
    out = apply_mask_token(feat, mask, token)
    assert torch.equal(out[mask], token.detach().expand(3, 4)) and torch.equal(out[~mask], feat.detach()[~mask])
    weight = torch.randn(6, 4, generator=g)
    (out * weight).sum().backward()
    assert torch.allclose(token.grad, weight[mask].sum(0))
    assert (feat.grad[mask] == 0).all() and torch.equal(feat.grad[~mask], weight[~mask])
    module = MaskToken(6)
    assert module.token.shape == (6,) and module.token.abs().max() < 0.2 and module.token.abs().sum() > 0
    assert module(torch.zeros(3, 6), torch.tensor([False, True, False]))[1].equal(module.token.detach())
    with pytest.raises(ValueError):
        apply_mask_token(feat, mask, torch.zeros(3))
    with pytest.raises(ValueError):
        apply_mask_token(feat, mask.long(), token)
