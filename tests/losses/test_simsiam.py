"""SimSiam negative cosine: naive float64 reference, known values, stop-gradient placement, gradcheck."""
from __future__ import annotations

import math

import pytest
import torch

from contrast3d.losses.simsiam import SimSiamLoss, negative_cosine, simsiam_loss


def naive_d(p, z):
    total = 0.0
    for i in range(p.shape[0]):
        a = [float(v) for v in p[i]]
        b = [float(v) for v in z[i]]
        dot = sum(x * y for x, y in zip(a, b))
        total += -dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
    return total / p.shape[0]


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def test_matches_naive_loop():
    p1, z1, p2, z2 = (_rand(23, 7, seed=s) for s in range(4))
    assert negative_cosine(p1, z2).item() == pytest.approx(naive_d(p1, z2), rel=1e-12)
    expected = 0.5 * naive_d(p1, z2) + 0.5 * naive_d(p2, z1)
    assert simsiam_loss(p1, z1, p2, z2).item() == pytest.approx(expected, rel=1e-12)
    assert SimSiamLoss()(p1, z1, p2, z2).item() == pytest.approx(expected, rel=1e-12)


def test_known_values():
    x = _rand(5, 3)
    assert negative_cosine(x, x).item() == pytest.approx(-1.0, abs=1e-12)
    assert negative_cosine(x, -2.5 * x).item() == pytest.approx(1.0, abs=1e-12)  # scale invariant
    e = torch.eye(4, dtype=torch.float64)
    assert negative_cosine(e, e.roll(1, dims=0)).item() == pytest.approx(0.0, abs=1e-12)
    # one row aligned (-1), one opposite (+1), one orthogonal (0): mean 0; half-aligned 45 deg row -> -cos 45
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    assert negative_cosine(p, z).item() == pytest.approx(-math.sqrt(0.5) / 4, abs=1e-12)


def test_gradient_into_p_not_z():
    p1, z1, p2, z2 = (_rand(16, 8, seed=s).requires_grad_() for s in range(4))
    simsiam_loss(p1, z1, p2, z2).backward()
    for p in (p1, p2):
        assert p.grad is not None and p.grad.abs().sum() > 0
    for z in (z1, z2):
        assert z.grad is None


def test_stop_gradient_through_shared_encoder():
    # z and p computed from one leaf x (encoder -> projection z, predictor p = z @ W): the gradient on x must be
    # exactly the one obtained with z replaced by a constant copy, i.e. only the predictor path counts.
    x1, x2 = _rand(10, 6, seed=1).requires_grad_(), _rand(10, 6, seed=2).requires_grad_()
    w = _rand(6, 6, seed=3).requires_grad_()
    z1, z2 = torch.tanh(x1), torch.tanh(x2)
    simsiam_loss(z1 @ w, z1, z2 @ w, z2).backward()
    got = x1.grad.clone(), w.grad.clone()
    y1, y2 = x1.detach().clone().requires_grad_(), x2.detach().clone().requires_grad_()
    v = w.detach().clone().requires_grad_()
    c1, c2 = torch.tanh(y1).detach(), torch.tanh(y2).detach()
    ref = 0.5 * -torch.cosine_similarity(torch.tanh(y1) @ v, c2, dim=1).mean() \
        + 0.5 * -torch.cosine_similarity(torch.tanh(y2) @ v, c1, dim=1).mean()
    ref.backward()
    torch.testing.assert_close(got[0], y1.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], v.grad, rtol=1e-10, atol=1e-12)
    # and it differs from the no-stop-gradient gradient (the test can fail)
    y1.grad = None
    full = 0.5 * -torch.cosine_similarity(torch.tanh(y1) @ v, torch.tanh(y2), dim=1).mean() \
        + 0.5 * -torch.cosine_similarity(torch.tanh(y2) @ v, torch.tanh(y1), dim=1).mean()
    full.backward()
    assert (y1.grad - got[0]).abs().max() > 1e-6


def test_gradcheck_wrt_p():
    z = _rand(6, 4, seed=5)
    p = _rand(6, 4, seed=6).requires_grad_()
    assert torch.autograd.gradcheck(lambda q: negative_cosine(q, z), (p,))


def test_gradient_descent_reduces_loss():
    p, z = _rand(32, 8, seed=7).requires_grad_(), _rand(32, 8, seed=8)
    loss = negative_cosine(p, z)
    loss.backward()
    with torch.no_grad():
        assert negative_cosine(p - 0.5 * p.grad, z) < loss


def test_empty_zero_row_and_shape_errors():
    e = torch.zeros(0, 4, requires_grad=True)
    out = negative_cosine(e, torch.zeros(0, 4))
    assert out.item() == 0.0 and out.requires_grad
    zero = torch.zeros(2, 3, dtype=torch.float64)
    assert torch.isfinite(negative_cosine(zero, _rand(2, 3))).all()
    with pytest.raises(ValueError):
        negative_cosine(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        negative_cosine(torch.zeros(4), torch.zeros(4))
