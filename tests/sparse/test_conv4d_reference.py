"""4-D ops (no dense conv4d in torch) against a slow, obvious per-site loop reference, float64, every path."""
from __future__ import annotations

import itertools

import pytest
import torch
from sparse_testlib import random_sites, record

from contrast3d.sparse import (
    SparseConv4d,
    SparseConvTensor,
    SparseInverseConv4d,
    SubMConv4d,
)

DT = torch.float64


def ref_subm(feats, weight, idx, k, d):
    sites = {tuple(r): i for i, r in enumerate(idx.tolist())}
    rows = []
    for r in idx.tolist():
        acc = feats.new_zeros(weight.shape[0])
        for off in itertools.product(range(k), repeat=4):
            nb = (r[0],) + tuple(c + (o - k // 2) * d for c, o in zip(r[1:], off))
            if nb in sites:
                acc = acc + weight[(slice(None),) + off] @ feats[sites[nb]]
        rows.append(acc)
    return torch.stack(rows)


def ref_conv(feats, weight, idx, shape, k, s, p):
    """Returns (out_sites sorted, out_features, pairs [(in_row, out_row, offset)])."""
    out_shape = [(n + 2 * p - k) // s + 1 for n in shape]
    contrib = []
    for i, r in enumerate(idx.tolist()):
        for off in itertools.product(range(k), repeat=4):
            num = [c + p - o for c, o in zip(r[1:], off)]
            if all(v % s == 0 and 0 <= v // s < m for v, m in zip(num, out_shape)):
                contrib.append((i, (r[0],) + tuple(v // s for v in num), off))
    out_sites = sorted({c[1] for c in contrib})
    where = {site: j for j, site in enumerate(out_sites)}
    acc = [feats.new_zeros(weight.shape[0]) for _ in out_sites]
    for i, site, off in contrib:
        acc[where[site]] = acc[where[site]] + weight[(slice(None),) + off] @ feats[i]
    pairs = [(i, where[site], off) for i, site, off in contrib]
    out = torch.stack(acc) if acc else feats.new_zeros((0, weight.shape[0]))
    return out_sites, out, out_shape, pairs


def ref_inverse(y_feats, weight, pairs, n_in):
    acc = [y_feats.new_zeros(weight.shape[0]) for _ in range(n_in)]
    for i, o, off in pairs:
        acc[i] = acc[i] + weight[(slice(None),) + off] @ y_feats[o]
    return torch.stack(acc)


def _compare(op, got, want, params, gen):
    record(op, "forward", got, want)
    g = torch.randn(got.shape, generator=gen, dtype=DT)
    a = torch.autograd.grad((got * g).sum(), params)
    b = torch.autograd.grad((want * g).sum(), params)
    record(op, "grad_features", a[0], b[0])
    record(op, "grad_weight", a[1], b[1])


@pytest.mark.parametrize("k,d", [(3, 1), (1, 1), (3, 2)])
def test_subm4d(gen, impl, k, d):
    shape = (4, 5, 3, 4)
    idx = random_sites(2, shape, 0.12, gen)
    feats = torch.randn(idx.shape[0], 2, generator=gen, dtype=DT, requires_grad=True)
    mod = SubMConv4d(2, 3, k, dilation=d, bias=False).double()
    with torch.no_grad():
        mod.weight.normal_(generator=gen)
    y = mod(SparseConvTensor(feats, idx, shape, 2))
    assert torch.equal(y.indices, idx)
    _compare(f"SubMConv4d k{k}d{d} {impl}", y.features, ref_subm(feats, mod.weight, idx, k, d), (feats, mod.weight),
             gen)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 0), (1, 1, 0)])
def test_conv4d_and_inverse(gen, impl, k, s, p):
    shape = (5, 4, 3, 5)
    idx = random_sites(2, shape, 0.1, gen)
    feats = torch.randn(idx.shape[0], 2, generator=gen, dtype=DT, requires_grad=True)
    down = SparseConv4d(2, 3, k, s, p, bias=False, indice_key="d").double()
    inv = SparseInverseConv4d(3, 2, k, indice_key="d", bias=False).double()
    with torch.no_grad():
        down.weight.normal_(generator=gen)
        inv.weight.normal_(generator=gen)
    y = down(SparseConvTensor(feats, idx, shape, 2))
    sites, want, out_shape, pairs = ref_conv(feats, down.weight, idx, shape, k, s, p)
    assert y.spatial_shape == out_shape
    assert [tuple(r) for r in y.indices.tolist()] == sites
    _compare(f"SparseConv4d k{k}s{s}p{p} {impl}", y.features, want, (feats, down.weight), gen)
    y_feats = torch.randn(y.features.shape, generator=gen, dtype=DT, requires_grad=True)
    z = inv(y.replace_feature(y_feats))
    assert torch.equal(z.indices, idx) and z.spatial_shape == list(shape)
    _compare(f"SparseInverseConv4d k{k}s{s}p{p} {impl}", z.features,
             ref_inverse(y_feats, inv.weight, pairs, idx.shape[0]), (y_feats, inv.weight), gen)
