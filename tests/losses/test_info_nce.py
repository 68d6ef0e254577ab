import math

import pytest
import torch

from contrast3d.losses import PointInfoNCE, point_info_nce


def naive_info_nce(q, k, tau, group=None):
    q = q / q.norm(dim=1, keepdim=True)
    k = k / k.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(q.shape[0]):
        num = math.exp(float(q[i] @ k[i]) / tau)
        den = sum(math.exp(float(q[i] @ k[j]) / tau) for j in range(q.shape[0])
                  if group is None or int(group[i]) == int(group[j]))
        total += -math.log(num / den)
    return total / q.shape[0]


@pytest.mark.parametrize("use_group", [False, True])
def test_matches_naive_loop(use_group):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(37, 8, generator=g, dtype=torch.float64)
    k = torch.randn(37, 8, generator=g, dtype=torch.float64)
    group = torch.randint(0, 3, (37,), generator=g) if use_group else None
    got = point_info_nce(q, k, tau=0.4, group=group)
    assert got.item() == pytest.approx(naive_info_nce(q, k, 0.4, group), rel=1e-10)


def test_known_values():
    # Orthogonal perfect matches: q_i = k_i = e_i -> loss = -log(e^{1/t} / (e^{1/t} + (M-1)))
    m, tau = 6, 0.4
    eye = torch.eye(m, dtype=torch.float64)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (m - 1)))
    assert point_info_nce(eye, eye, tau).item() == pytest.approx(expected, rel=1e-12)
    # Identical features everywhere: every key is as likely -> log(M)
    same = torch.ones(m, 4, dtype=torch.float64)
    assert point_info_nce(same, same, tau).item() == pytest.approx(math.log(m), rel=1e-12)
    # Each scene its own group of one -> no negatives -> zero loss
    assert point_info_nce(same, same, tau, group=torch.arange(m)).item() == pytest.approx(0.0, abs=1e-12)


def test_gradients_flow_and_improve():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(64, 16, generator=g, requires_grad=True)
    k = torch.randn(64, 16, generator=g, requires_grad=True)
    loss = PointInfoNCE(tau=0.4)(q, k)
    loss.backward()
    assert q.grad is not None and k.grad is not None and torch.isfinite(q.grad).all()
    with torch.no_grad():
        stepped = point_info_nce(q - 0.5 * q.grad, k - 0.5 * k.grad)
    assert stepped < loss


def test_empty_and_shape_errors():
    z = torch.zeros(0, 4, requires_grad=True)
    assert point_info_nce(z, z).item() == 0.0
    with pytest.raises(ValueError):
        point_info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
