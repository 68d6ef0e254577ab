"""Per-point heads: PointMLP layout and maths (float64 reference), Prototypes normalisation and logits."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrast3d.models.heads import PointMLP, Predictor, Projector, Prototypes

D64 = torch.float64


def layer_types(m: nn.Module) -> list[str]:
    return [type(x).__name__ for x in m]


def test_point_mlp_layouts():
    assert layer_types(PointMLP(8, 16, 4)) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert layer_types(PointMLP(8, 16, 4, num_layers=3, norm="none")) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert layer_types(PointMLP(8, 16, 4, last_norm=True)) == ["Linear", "BatchNorm1d", "ReLU", "Linear",
                                                               "BatchNorm1d"]
    assert layer_types(PointMLP(8, 16, 4, num_layers=1)) == ["Linear"]
    bn = PointMLP(8, 16, 4)
    assert bn[0].bias is None and bn[3].bias is not None  # a Linear feeding a BatchNorm has no bias
    assert PointMLP(8, 16, 4, norm="none")[0].bias is not None
    assert PointMLP(8, 16, 4, last_norm=True)[3].bias is None
    assert Projector is PointMLP and Predictor is PointMLP
    for bad in (dict(num_layers=0), dict(norm="ln"), dict(norm="none", last_norm=True)):
        with pytest.raises(ValueError):
            PointMLP(8, 16, 4, **bad)


def test_point_mlp_matches_manual_float64():
    torch.manual_seed(0)
    mlp = PointMLP(5, 7, 3).double()
    x = torch.randn(20, 5, dtype=D64)
    # training mode: BatchNorm normalises with the batch statistics (biased variance)
    h = x @ mlp[0].weight.t()
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + mlp[1].eps) * mlp[1].weight + mlp[1].bias
    expected = torch.clamp(h, min=0) @ mlp[3].weight.t() + mlp[3].bias
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)
    # eval mode without norm: a plain two-layer perceptron, point by point
    plain = PointMLP(5, 7, 3, norm="none").double().eval().requires_grad_(False)
    out = plain(x)
    w1, b1, w2, b2 = (t.tolist() for t in (plain[0].weight, plain[0].bias, plain[2].weight, plain[2].bias))
    xs = x.tolist()
    for p in range(3):
        hid = [max(0.0, b1[j] + sum(w1[j][i] * xs[p][i] for i in range(5))) for j in range(7)]
        for o in range(3):
            ref = b2[o] + sum(w2[o][j] * hid[j] for j in range(7))
            assert float(out[p, o]) == pytest.approx(ref, abs=1e-12)


def test_point_mlp_shapes_and_gradients():
    mlp = PointMLP(6, 12, 4, num_layers=3)
    x = torch.randn(9, 6, requires_grad=True)
    y = mlp(x)
    assert y.shape == (9, 4)
    y.square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in mlp.parameters())
    with pytest.raises(ValueError):
        mlp(torch.randn(9, 5))
    with pytest.raises(ValueError):
        mlp(torch.randn(2, 3, 6))


def test_prototypes_normalised_cosine_logits():
    torch.manual_seed(1)
    protos = Prototypes(dim=4).double()
    assert protos.num_prototypes == 32 and protos.dim == 4 and protos.weight.shape == (32, 4)
    torch.testing.assert_close(protos.normalized().norm(dim=1), torch.ones(32, dtype=D64))
    z = torch.randn(3, 4, dtype=D64)
    logits = protos(z).detach()
    assert logits.shape == (3, 32)
    for i in range(3):
        for j in range(0, 32, 7):
            w = protos.weight[j].detach()
            cos = float(z[i] @ w) / (float(z[i].norm()) * float(w.norm()))
            assert float(logits[i, j]) == pytest.approx(cos, abs=1e-12)
    # rescaling the raw weights (e.g. by an EMA) or the inputs leaves the logits unchanged
    with torch.no_grad():
        protos.weight.mul_(torch.linspace(0.1, 5.0, 32, dtype=D64)[:, None])
    torch.testing.assert_close(protos(3.0 * z), logits)
    # without normalising z the logits scale with |z|
    torch.testing.assert_close(protos(2.0 * z, normalize=False), 2.0 * protos(z, normalize=False))


def test_prototypes_gradient_and_errors():
    protos = Prototypes(5, dim=3)
    protos(torch.randn(4, 3)).sum().backward()
    assert protos.weight.grad is not None and protos.weight.grad.abs().sum() > 0
    # the gradient of normalised rows is orthogonal to each raw row (the norm carries no signal)
    radial = (protos.weight.grad * protos.weight.detach()).sum(1)
    assert radial.abs().max() < 1e-5 * max(1.0, protos.weight.grad.abs().max().item())
    with pytest.raises(ValueError):
        protos(torch.randn(4, 2))
    with pytest.raises(ValueError):
        Prototypes(0, dim=3)
    with pytest.raises(TypeError):
        Prototypes(5, 3)  # dim is keyword-only
    assert "num_prototypes=5" in repr(protos) and math.isclose(protos.normalized().norm(dim=1).max().item(), 1.0,
                                                               rel_tol=1e-6)
