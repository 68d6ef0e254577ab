"""3-D sparse ops against dense ``conv3d`` / ``conv_transpose3d`` in float64 (forward + grads), every path."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sparse_testlib import random_sites, record, to_dense

from contrast3d.sparse import (
    SparseConv3d,
    SparseConvTensor,
    SparseInverseConv3d,
    SubMConv3d,
)

DT = torch.float64


def _inputs(gen, batch, shape, density, c_in, min_sites=1):
    idx = random_sites(batch, shape, density, gen, min_sites)
    feats = torch.randn(idx.shape[0], c_in, generator=gen, dtype=DT).requires_grad_(True)
    return idx, feats


def _randomise(mod, gen):
    with torch.no_grad():
        mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen, dtype=DT))
        if mod.bias is not None:
            mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen, dtype=DT))
    return mod


def _check_against_dense(op, mod, x_idx, feats, y, dense_out, gen, batch, shape):
    """Compare values at ``y``'s sites and grads of a random linear loss with the dense version."""
    out_idx = y.indices.long()
    ref = dense_out.movedim(1, -1)[tuple(out_idx.T)]
    record(op, "forward", y.features, ref)
    g = torch.randn(y.features.shape, generator=gen, dtype=DT)
    params = [feats, mod.weight] + ([mod.bias] if mod.bias is not None else [])
    got = torch.autograd.grad((y.features * g).sum(), params, allow_unused=True)
    want = torch.autograd.grad((ref * g).sum(), params, allow_unused=True)
    record(op, "grad_features", got[0], want[0])
    record(op, "grad_weight", got[1], want[1])
    if mod.bias is not None:
        record(op, "grad_bias", got[2], want[2])


def _active_outputs(x_idx, batch, shape, k, s, p, d=1):
    """Dense mask of output sites: any input site inside the receptive field."""
    occ = torch.zeros((batch, 1, *shape), dtype=DT)
    occ[(x_idx[:, 0].long(), 0, *x_idx[:, 1:].long().T)] = 1.0
    ones = torch.ones((1, 1, k, k, k), dtype=DT)
    return F.conv3d(occ, ones, stride=s, padding=p, dilation=d)[:, 0] > 0


@pytest.mark.parametrize("k,shape,batch,density,dilation", [
    (1, (5, 4, 3), 2, 0.4, 1), (3, (7, 6, 5), 3, 0.3, 1), (3, (9, 5, 7), 1, 0.15, 2),
    (5, (8, 7, 9), 2, 0.25, 1), (3, (1, 1, 1), 1, 1.0, 1),
])
def test_subm_matches_dense(gen, impl, k, shape, batch, density, dilation):
    idx, feats = _inputs(gen, batch, shape, density, 3)
    mod = _randomise(SubMConv3d(3, 4, k, dilation=dilation, bias=True).double(), gen)
    y = mod(SparseConvTensor(feats, idx, shape, batch))
    assert torch.equal(y.indices, idx)  # SubM keeps the input sites, same order
    dense = to_dense(feats, idx, batch, shape)
    w = mod.weight.permute(0, 4, 1, 2, 3)
    ref = F.conv3d(dense, w, mod.bias, padding=dilation * (k // 2), dilation=dilation)
    _check_against_dense(f"SubMConv3d k{k} {impl}", mod, idx, feats, y, ref, gen, batch, shape)


CONV_CASES = [  # kernel, stride, padding, dilation, shape, batch, density
    (2, 2, 0, 1, (8, 6, 4), 2, 0.3), (2, 2, 0, 1, (7, 5, 9), 3, 0.2),
    (3, 2, 1, 1, (9, 7, 6), 2, 0.2), (3, 2, 1, 1, (4, 4, 4), 1, 0.5),
    (3, 1, 0, 1, (6, 5, 7), 2, 0.2), (1, 1, 0, 1, (5, 6, 7), 2, 0.3),
    (1, 2, 0, 1, (7, 6, 5), 2, 0.3), (5, 2, 2, 1, (9, 8, 7), 2, 0.1),
    (5, 3, 1, 1, (11, 9, 10), 1, 0.1), (2, 1, 1, 1, (5, 4, 6), 2, 0.2),
    (3, 2, 2, 2, (10, 9, 8), 2, 0.1), (3, 3, 0, 1, (10, 7, 8), 2, 0.2),
]


@pytest.mark.parametrize("k,s,p,d,shape,batch,density", CONV_CASES)
def test_sparse_conv_and_inverse_match_dense(gen, impl, k, s, p, d, shape, batch, density):
    idx, feats = _inputs(gen, batch, shape, density, 3)
    down = _randomise(SparseConv3d(3, 5, k, s, p, dilation=d, indice_key="down").double(), gen)
    y = down(SparseConvTensor(feats, idx, shape, batch))
    dense = to_dense(feats, idx, batch, shape)
    ref = F.conv3d(dense, down.weight.permute(0, 4, 1, 2, 3), down.bias, stride=s, padding=p, dilation=d)
    assert y.spatial_shape == list(ref.shape[2:])
    # Output sites: exactly the positions that see an input (sorted by batch, x, y, z).
    active = _active_outputs(idx, batch, shape, k, s, p, d)
    assert torch.equal(y.indices.long(), active.nonzero())
    _check_against_dense(f"SparseConv3d k{k}s{s}p{p}d{d} {impl}", down, idx, feats, y, ref, gen, batch, shape)

    if d != 1:
        return  # inverse convs take no dilation (as in spconv)
    inv = _randomise(SparseInverseConv3d(5, 2, k, indice_key="down").double(), gen)
    y_feats = torch.randn(y.features.shape, generator=gen, dtype=DT).requires_grad_(True)
    z = inv(y.replace_feature(y_feats))
    assert torch.equal(z.indices, idx) and z.spatial_shape == list(shape)
    y_dense = to_dense(y_feats, y.indices, batch, y.spatial_shape)
    out_pad = [shape[i] - ((y.spatial_shape[i] - 1) * s - 2 * p + k) for i in range(3)]
    ref_t = F.conv_transpose3d(y_dense, inv.weight.permute(4, 0, 1, 2, 3), inv.bias, stride=s, padding=p,
                               output_padding=out_pad)
    _check_against_dense(f"SparseInverseConv3d k{k}s{s}p{p} {impl}", inv, y.indices, y_feats, z, ref_t, gen,
                         batch, shape)


def test_points_past_output_shape_are_dropped(gen, impl):
    # Input extent 7 with k2 s2: output extent 3; sites at coordinate 6 have no output.
    idx = torch.tensor([[0, 6, 6, 6], [0, 5, 0, 0], [0, 0, 6, 1]], dtype=torch.int32)
    feats = torch.randn(3, 2, generator=gen, dtype=DT)
    conv = SparseConv3d(2, 2, 2, 2, bias=False).double()
    y = conv(SparseConvTensor(feats, idx, (7, 7, 7), 1))
    assert y.spatial_shape == [3, 3, 3]
    assert y.indices.tolist() == [[0, 2, 0, 0]]
