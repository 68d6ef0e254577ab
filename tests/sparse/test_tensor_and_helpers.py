"""SparseConvTensor, SparseSequential, state dicts, PointBatch conversion and backend choice."""
from __future__ import annotations

import torch
from sparse_testlib import random_sites

from contrast3d.models import SpUNet
from contrast3d.sparse import (
    SparseConv3d,
    SparseConvTensor,
    SparseSequential,
    SubMConv3d,
    SubMConv4d,
    backend_for,
)


def test_tensor_dense_roundtrip_and_replace_feature(gen):
    idx = random_sites(2, (3, 4, 5), 0.4, gen)
    feats = torch.randn(idx.shape[0], 3, generator=gen)
    x = SparseConvTensor(feats, idx.long(), [3, 4, 5], 2)
    assert x.indices.dtype == torch.int32 and x.indices.is_contiguous()
    dense = x.dense()
    assert dense.shape == (2, 3, 3, 4, 5)
    back = SparseConvTensor.from_dense(dense.movedim(1, -1))
    order = torch.argsort(back.indices[:, 0].long() * 60 + back.indices[:, 1] * 20 + back.indices[:, 2] * 5
                          + back.indices[:, 3])
    ref = torch.argsort(idx[:, 0].long() * 60 + idx[:, 1] * 20 + idx[:, 2] * 5 + idx[:, 3])
    assert torch.equal(back.features[order], feats[ref])
    y = x.replace_feature(feats * 2)
    assert y.indices is x.indices and y.indice_dict is x.indice_dict and y.spatial_shape == [3, 4, 5]


def test_sequential_applies_plain_modules_to_features(gen):
    idx = random_sites(1, (6, 6, 6), 0.3, gen)
    x = SparseConvTensor(torch.randn(idx.shape[0], 3, generator=gen), idx, (6, 6, 6), 1)
    net = SparseSequential(SubMConv3d(3, 8, 3, bias=False), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                           SparseConv3d(8, 4, 2, 2), torch.nn.Linear(4, 5))
    y = net(x)
    assert y.features.shape[1] == 5 and y.spatial_shape == [3, 3, 3]
    conv_out = net[0](x)
    bn = net[1]
    expected = torch.relu(bn(conv_out.features))
    assert torch.allclose(SparseSequential(net[0], net[1], net[2])(x).features, expected)


def test_state_dict_names_and_layout_match_spconv():
    mod = SubMConv3d(3, 8, 3, indice_key="a")
    assert set(mod.state_dict()) == {"weight", "bias"}
    assert mod.weight.shape == (8, 3, 3, 3, 3) and mod.bias.shape == (8,)
    assert SparseConv3d(3, 8, (2, 3, 1), 2, bias=False).weight.shape == (8, 2, 3, 1, 3)
    assert SubMConv4d(2, 4, 3).weight.shape == (4, 3, 3, 3, 3, 2)


def test_spunet_sparsify_pads_shape_to_divisor():
    grid = torch.tensor([[0, 0, 0], [12, 3, 7], [1, 2, 3], [5, 16, 0]])
    net = SpUNet(6, 0, base_channels=4, channels=(4, 4, 4, 4, 4, 4, 4, 4), layers=(1,) * 8)  # 4 levels: 16
    shape = net.spatial_shape(grid)
    assert shape == [16, 32, 16]
    x = net.sparsify(grid, torch.randn(4, 6), torch.tensor([0, 0, 1, 1]), shape, 2)
    assert x.batch_size == 2
    assert x.indices.tolist() == [[0, 0, 0, 0], [0, 12, 3, 7], [1, 1, 2, 3], [1, 5, 16, 0]]
    # Four stride-2 convs drop no voxel with a shape divisible by 16.
    for _ in range(4):
        x = SparseConv3d(x.features.shape[1], 2, 2, 2)(x)
    assert x.spatial_shape == [1, 2, 1] and x.features.shape[0] >= 1


def test_backend_never_spconv_on_cpu(monkeypatch):
    assert backend_for("cpu") == "torch"
    assert backend_for(torch.device("cpu")) == "torch"
    monkeypatch.setenv("CONTRAST3D_SPARSE_BACKEND", "spconv")
    assert backend_for("cpu") == "torch"
    monkeypatch.setenv("CONTRAST3D_SPARSE_BACKEND", "torch")
    assert backend_for("cuda") == "torch"
