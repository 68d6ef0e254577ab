"""SpUNet forward behaviour on small surface-like scenes (pure-torch sparse backend)."""
from __future__ import annotations

import pytest
import torch

from contrast3d.models import SpUNet, create_spunet
from contrast3d.structures import PointBatch

ATOL = 1e-4


def _tiny(num_classes: int = 5, in_channels: int = 4, ndim: int = 3, seed: int = 0) -> SpUNet:
    torch.manual_seed(seed)
    return create_spunet("spunet-tiny", in_channels, num_classes, ndim=ndim)


def _randomise_bn(model: SpUNet, seed: int = 0) -> None:
    """Non-trivial running statistics so eval-mode tests exercise the BN affine maps."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def test_forward_shape_finite_and_gradient_reaches_every_parameter(scene_a, scene_b, make_batch) -> None:
    model = _tiny().train()
    batch = make_batch([scene_a, scene_b], 4)
    out = model(batch)
    assert out.shape == (len(batch), 5) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * weights).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_feature_backbone_returns_out_channels(scene_a, make_batch) -> None:
    model = _tiny(num_classes=0).eval()
    with torch.no_grad():
        out = model(make_batch([scene_a], 4))
    assert out.shape == (len(scene_a), model.out_channels) == (len(scene_a), 32)


def test_permuting_points_permutes_output(scene_a, scene_b, make_batch) -> None:
    model = _tiny().eval()
    _randomise_bn(model)
    batch = make_batch([scene_a, scene_b], 4)
    gen = torch.Generator().manual_seed(7)
    na = len(scene_a)
    perm = torch.cat([torch.randperm(na, generator=gen), na + torch.randperm(len(scene_b), generator=gen)])
    permuted = PointBatch(coord=batch.coord[perm], feat=batch.feat[perm], grid_coord=batch.grid_coord[perm],
                          offset=batch.offset)
    with torch.no_grad():
        ref, out = model(batch), model(permuted)
    torch.testing.assert_close(out, ref[perm], atol=ATOL, rtol=1e-4)


def test_batch_of_two_equals_each_scene_alone(scene_a, scene_b, make_batch) -> None:
    model = _tiny().eval()
    _randomise_bn(model)
    both = make_batch([scene_a, scene_b], 4)
    sl_a, sl_b = both.scene_slices()
    alone_a = PointBatch(coord=both.coord[sl_a], feat=both.feat[sl_a], grid_coord=both.grid_coord[sl_a],
                         offset=torch.tensor([len(scene_a)]))
    alone_b = PointBatch(coord=both.coord[sl_b], feat=both.feat[sl_b], grid_coord=both.grid_coord[sl_b],
                         offset=torch.tensor([len(scene_b)]))
    with torch.no_grad():
        out = model(both)
        torch.testing.assert_close(out[sl_a], model(alone_a), atol=ATOL, rtol=1e-4)
        torch.testing.assert_close(out[sl_b], model(alone_b), atol=ATOL, rtol=1e-4)


def test_spatial_shape_is_rounded_up_and_nothing_is_dropped(scene_b, make_batch) -> None:
    model = _tiny().eval()
    assert model.spatial_shape(torch.tensor([[16, 0, 31], [3, 4, 5]])) == [32, 16, 32]
    batch = make_batch([scene_b], 4)  # max coordinate 32 -> extent 33 -> shape 48
    assert model.spatial_shape(batch.grid_coord) == [48, 48, 48]
    with torch.no_grad():
        out = model(batch)
        roomy = model.sparsify(batch.grid_coord, batch.feat, batch.batch, [96, 96, 96], 1)
        ref = model.forward_sparse(roomy)
    assert ref.features.shape == out.shape
    torch.testing.assert_close(out, ref.features, atol=ATOL, rtol=1e-4)


def test_duplicate_voxels_are_merged(scene_a, make_batch) -> None:
    model = _tiny().eval()
    base = make_batch([scene_a], 4)
    dup = torch.arange(0, len(scene_a), 5)
    grid = torch.cat([base.grid_coord, base.grid_coord[dup]])
    feat = torch.cat([base.feat, base.feat[dup]])
    batch = PointBatch(coord=grid.float(), feat=feat, grid_coord=grid, offset=torch.tensor([len(grid)]))
    with torch.no_grad():
        ref, out = model(base), model(batch)
    assert out.shape == (len(grid), 5)
    torch.testing.assert_close(out[: len(scene_a)], ref, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(out[len(scene_a):], ref[dup], atol=ATOL, rtol=1e-4)


def test_4d_forward_and_backward(make_batch, surface_voxels) -> None:
    model = _tiny(num_classes=0, in_channels=3, ndim=4).train()
    grid = surface_voxels(1200, seed=5, size=24, ndim=4, frames=3)
    batch = make_batch([grid], 3)
    out = model(batch)
    assert out.shape == (len(grid), 32) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model(make_batch([surface_voxels(100, seed=1)], 3))


def test_bad_inputs_raise_clear_errors(scene_a, make_batch) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="feat must have shape"):
        model(make_batch([scene_a], 3))
    neg = make_batch([scene_a - 1], 4)
    with pytest.raises(ValueError, match="non-negative"):
        model(neg)
    empty = PointBatch(coord=torch.zeros(0, 3), feat=torch.zeros(0, 4), grid_coord=torch.zeros(0, 3, dtype=torch.long),
                       offset=torch.tensor([0]))
    assert model(empty).shape == (0, 5)


def test_matches_spconv_with_the_same_weights(scene_a, scene_b, make_batch) -> None:
    """Cross-check against spconv (only where it is installed): same weights, same outputs."""
    pytest.importorskip("spconv.pytorch")
    model = _tiny().eval()
    _randomise_bn(model)
    twin = create_spunet("spunet-tiny", 4, 5, backend="spconv").eval()
    twin.load_state_dict(model.state_dict())
    batch = make_batch([scene_a, scene_b], 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU kernels are not deterministic with several threads
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(batch), twin(batch), atol=ATOL, rtol=1e-3)
    finally:
        torch.set_num_threads(threads)
