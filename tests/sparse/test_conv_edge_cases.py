"""gradcheck, empty / single-voxel inputs, index dtypes and layouts, indice_key reuse, errors."""
from __future__ import annotations

import pytest
import torch
from sparse_testlib import random_sites, rel_err

import contrast3d.sparse.modules as sparse_modules
from contrast3d.sparse import (
    ImplicitGemmFunction,
    SparseConv3d,
    SparseConvFunction,
    SparseConvTensor,
    SparseInverseConv3d,
    SparseSequential,
    SubMConv3d,
    build_conv_map,
    build_subm_map,
)

DT = torch.float64


FUNCTIONS = {"gather": SparseConvFunction, "implicit": ImplicitGemmFunction}


@pytest.mark.parametrize("path", sorted(FUNCTIONS))
@pytest.mark.parametrize("kind", ["subm3", "subm5", "conv2s2", "conv3s2p1", "inverse3s2p1"])
def test_gradcheck(gen, kind, path):
    shape = (4, 3, 5)
    idx = random_sites(2, shape, 0.3, gen)
    if kind.startswith("subm"):
        k = int(kind[-1])
        kmap = build_subm_map(idx, shape, 2, [k] * 3, [1] * 3)
    elif kind == "conv2s2":
        k = 2
        kmap, _, _ = build_conv_map(idx, shape, 2, [2] * 3, [2] * 3, [0] * 3, [1] * 3)
    else:
        k = 3
        kmap, _, _ = build_conv_map(idx, shape, 2, [3] * 3, [2] * 3, [1] * 3, [1] * 3)
        if kind.startswith("inverse"):
            kmap = kmap.transposed()
    feats = torch.randn(kmap.n_in, 2, generator=gen, dtype=DT, requires_grad=True)
    weight = torch.randn(3, k, k, k, 2, generator=gen, dtype=DT, requires_grad=True)
    fn = FUNCTIONS[path]
    assert torch.autograd.gradcheck(lambda f, w: fn.apply(f, w, kmap), (feats, weight), fast_mode=True)


@pytest.mark.parametrize("make", [
    lambda: SubMConv3d(3, 4, 3), lambda: SparseConv3d(3, 4, 2, 2), lambda: SparseConv3d(3, 4, 3, 2, 1),
])
def test_empty_input(impl, make):
    mod = make()
    feats = torch.zeros(0, 3, requires_grad=True)
    y = mod(SparseConvTensor(feats, torch.zeros(0, 4, dtype=torch.int32), (6, 6, 6), 2))
    assert y.features.shape == (0, 4) and y.indices.shape == (0, 4)
    y.features.sum().backward()
    assert feats.grad.shape == (0, 3) and mod.weight.grad is not None and float(mod.weight.grad.abs().sum()) == 0


def test_empty_input_through_unet_block(impl):
    net = SparseSequential(SubMConv3d(3, 4, 3, indice_key="s"), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                           SparseConv3d(4, 8, 2, 2, indice_key="d"), SparseInverseConv3d(8, 4, 2, indice_key="d"))
    y = net(SparseConvTensor(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.int32), (4, 4, 4), 1))
    assert y.features.shape == (0, 4)
    assert torch.isfinite(net[1].running_mean).all()


def test_single_voxel(gen, impl):
    idx = torch.tensor([[0, 2, 3, 1]], dtype=torch.int32)
    feats = torch.randn(1, 3, generator=gen, dtype=DT)
    subm = SubMConv3d(3, 2, 3, bias=False).double()
    y = subm(SparseConvTensor(feats, idx, (5, 5, 5), 1))
    centre = subm.weight[:, 1, 1, 1, :]
    assert rel_err(y.features, feats @ centre.T) < 1e-14
    down = SparseConv3d(3, 2, 3, 2, 1, bias=False, indice_key="d").double()
    z = down(SparseConvTensor(feats, idx, (5, 5, 5), 1))
    # Input (2, 3, 1) reaches outputs o with 2*o - 1 + k = c: o in {1} x {1, 2} x {0, 1}.
    assert z.indices.tolist() == [[0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 2, 0], [0, 1, 2, 1]]


def test_index_dtype_and_layout_do_not_matter(gen, impl):
    shape = (6, 5, 7)
    idx = random_sites(3, shape, 0.3, gen)
    feats = torch.randn(idx.shape[0], 3, generator=gen)
    torch.manual_seed(0)
    net = SparseSequential(SubMConv3d(3, 4, 3), SparseConv3d(4, 4, 3, 2, 1))
    ref = net(SparseConvTensor(feats, idx, shape, 3))
    # int64, and a non-contiguous int32 view (every other column of a wider buffer).
    wide = torch.zeros(idx.shape[0], 2 * idx.shape[1], dtype=torch.int32)
    wide[:, ::2] = idx
    for other in (idx.long(), wide[:, ::2], idx.T.contiguous().T):
        assert other.dtype == torch.int64 or not other.is_contiguous() or other is not idx
        out = net(SparseConvTensor(feats, other, shape, 3))
        assert out.indices.dtype == torch.int32
        assert torch.equal(out.indices, ref.indices) and torch.equal(out.features, ref.features)


def test_indice_key_reuse_builds_each_map_once(monkeypatch, gen, impl):
    calls = {"subm": 0, "conv": 0}
    real_subm, real_conv = sparse_modules.build_subm_map, sparse_modules.build_conv_map

    def count_subm(*a, **k):
        calls["subm"] += 1
        return real_subm(*a, **k)

    def count_conv(*a, **k):
        calls["conv"] += 1
        return real_conv(*a, **k)

    monkeypatch.setattr(sparse_modules, "build_subm_map", count_subm)
    monkeypatch.setattr(sparse_modules, "build_conv_map", count_conv)
    net = SparseSequential(
        SubMConv3d(3, 4, 3, indice_key="s0"), torch.nn.ReLU(), SubMConv3d(4, 4, 3, indice_key="s0"),
        SparseConv3d(4, 8, 2, 2, indice_key="d0"),
        SubMConv3d(8, 8, 3, indice_key="s1"), SubMConv3d(8, 8, 3, indice_key="s1"),
        SparseInverseConv3d(8, 4, 2, indice_key="d0"),
        SubMConv3d(4, 4, 3, indice_key="s0"),
    )
    idx = random_sites(2, (8, 8, 8), 0.2, gen)
    x = SparseConvTensor(torch.randn(idx.shape[0], 3, generator=gen), idx, (8, 8, 8), 2)
    y = net(x)
    assert calls == {"subm": 2, "conv": 1}
    assert torch.equal(y.indices, idx)
    assert set(y.indice_dict) == {"s0", "d0", "s1"}
    assert x.indice_dict == {}  # upstream tensors are not mutated (spconv copies the dict)
    y.features.sum().backward()
    # A key reused by SubM gives the same result as a fresh map.
    fresh = SubMConv3d(4, 4, 3)
    fresh.load_state_dict(net[7].state_dict())
    again = net[7](y.replace_feature(y.features.detach()))
    assert torch.allclose(fresh(SparseConvTensor(y.features.detach(), idx, (8, 8, 8), 2)).features,
                          again.features)


def test_errors(gen):
    idx = random_sites(1, (4, 4, 4), 0.5, gen)
    x = SparseConvTensor(torch.randn(idx.shape[0], 3), idx, (4, 4, 4), 1)
    with pytest.raises(ValueError, match="odd"):
        SubMConv3d(3, 3, 2)
    with pytest.raises(KeyError):
        SparseInverseConv3d(3, 3, 2, indice_key="missing")(x)
    with pytest.raises(ValueError, match="channels"):
        SubMConv3d(5, 3, 3)(x)
    with pytest.raises(ValueError, match="out of range"):
        SubMConv3d(3, 3, 3)(SparseConvTensor(torch.randn(1, 3), torch.tensor([[0, 4, 0, 0]]), (4, 4, 4), 1))
    dup = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]])
    with pytest.raises(ValueError, match="duplicate"):
        SubMConv3d(3, 3, 3)(SparseConvTensor(torch.randn(2, 3), dup, (4, 4, 4), 1))
    with pytest.raises(ValueError, match="not positive"):
        SparseConv3d(3, 3, 5)(x)
