"""SpUNet structure: state-dict names, shapes and counts identical to Pointcept's SpUNetBase."""
from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from contrast3d.models import SPUNET_PRESETS, SpUNet, create_spunet

REFERENCE = Path(__file__).parent / "data" / "spunet34_in6_cls20_state_dict.json"


@pytest.fixture(scope="module")
def spunet34() -> SpUNet:
    return SpUNet(6, 20)


def test_state_dict_matches_pointcept_exactly(spunet34: SpUNet) -> None:
    expected = [(name, tuple(shape)) for name, shape in json.loads(REFERENCE.read_text())["tensors"]]
    got = [(name, tuple(t.shape)) for name, t in spunet34.state_dict().items()]
    assert len(expected) == 356
    assert set(got) - set(expected) == set(), "unexpected tensors"
    assert set(expected) - set(got) == set(), "missing tensors"
    assert got == expected  # same order, too


def test_counts_and_spot_checks(spunet34: SpUNet) -> None:
    sd = spunet34.state_dict()
    assert len(sd) == 356
    assert sum(p.numel() for p in spunet34.parameters()) == 39_157_844
    # spconv weight layout [C_out, k, k, k, C_in]
    assert sd["conv_input.0.weight"].shape == (32, 5, 5, 5, 6)
    assert sd["down.0.0.weight"].shape == (32, 2, 2, 2, 32)
    assert sd["enc.3.block5.conv2.weight"].shape == (256, 3, 3, 3, 256)
    assert sd["up.3.0.weight"].shape == (256, 2, 2, 2, 256)
    assert sd["dec.0.block0.proj.0.weight"].shape == (96, 1, 1, 1, 128)
    assert sd["dec.0.block0.conv1.weight"].shape == (96, 3, 3, 3, 128)
    assert sd["final.weight"].shape == (20, 1, 1, 1, 96)
    assert sd["final.bias"].shape == (20,)
    assert "enc.0.block0.proj.0.weight" not in sd  # no projection when widths agree
    bn = spunet34.conv_input[1]
    assert isinstance(bn, nn.BatchNorm1d) and bn.eps == 1e-3 and bn.momentum == 0.01
    assert spunet34.out_channels == 20


def test_pointcept_initialisation(spunet34: SpUNet) -> None:
    w = spunet34.enc[0].block0.conv1.weight.detach()
    # timm/torch trunc_normal_(std=0.02) cuts at +-2 absolute, i.e. practically N(0, 0.02)
    assert 0.018 < w.std() < 0.022 and abs(float(w.mean())) < 0.002
    assert torch.all(spunet34.final.bias == 0)
    assert torch.all(spunet34.down[0][1].weight == 1) and torch.all(spunet34.down[0][1].bias == 0)


def test_feature_backbone_has_no_final_conv() -> None:
    model = SpUNet(6, 0)
    sd = model.state_dict()
    assert len(sd) == 354 and not any(k.startswith("final") for k in sd)
    assert isinstance(model.final, nn.Identity)
    assert model.out_channels == 96
    assert sum(p.numel() for p in model.parameters()) == 39_157_844 - 96 * 20 - 20


def test_pointcept_checkpoint_loads_strictly(spunet34: SpUNet) -> None:
    other = SpUNet(6, 20)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in spunet34.state_dict().items()}
    assert not other.load_state_dict(sd, strict=True).missing_keys
    assert torch.equal(other.state_dict()["enc.2.block3.conv1.weight"], sd["enc.2.block3.conv1.weight"])


@pytest.mark.parametrize("name,params", [("spunet34", 39_157_844), ("spunet18", 23_006_036),
                                         ("spunet14", 12_882_644), ("spunet-tiny", 1_213_620)])
def test_preset_parameter_counts(name: str, params: int) -> None:
    model = create_spunet(name, 6, 20)
    assert sum(p.numel() for p in model.parameters()) == params
    preset = SPUNET_PRESETS[name]
    assert model.channels == preset.channels and model.layers == preset.layers


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(KeyError, match="spunet34"):
        create_spunet("resnet50", 6, 20)


def test_invalid_configuration_rejected() -> None:
    with pytest.raises(ValueError, match="same even length"):
        SpUNet(6, 20, channels=(32, 64, 64), layers=(1, 1, 1))
    with pytest.raises(ValueError, match="ndim"):
        SpUNet(6, 20, ndim=2)


def test_4d_variant_same_names_with_time_kernel() -> None:
    model = create_spunet("spunet-tiny", 3, 5, ndim=4)
    sd3 = create_spunet("spunet-tiny", 3, 5).state_dict()
    sd4 = model.state_dict()
    assert list(sd4) == list(sd3)
    assert sd4["conv_input.0.weight"].shape == (16, 5, 5, 5, 5, 3)
    assert sd4["down.0.0.weight"].shape == (16, 2, 2, 2, 2, 16)
    assert sd4["enc.0.block0.conv1.weight"].shape == (16, 3, 3, 3, 3, 16)
    assert sd4["final.weight"].shape == (5, 1, 1, 1, 1, 32)


def test_model_deepcopies_and_pickles() -> None:
    model = create_spunet("spunet-tiny", 4, 0)
    twin = copy.deepcopy(model)  # EMA teachers copy the backbone
    assert list(twin.state_dict()) == list(model.state_dict())
    clone = pickle.loads(pickle.dumps(model))
    assert torch.equal(clone.conv_input[0].weight, model.conv_input[0].weight)


def test_pointwise_conv_uses_spconv_arithmetic() -> None:
    """spconv 2.x computes 1x1 convs as ``x @ weight.view(C_in, C_out)`` (not a transpose);
    Pointcept checkpoints depend on it, so ``final`` and ``proj.0`` must do the same."""
    from contrast3d.models.blocks import PointwiseConv

    torch.manual_seed(0)
    conv = PointwiseConv(4, 6, ndim=3, bias=True)
    nn.init.normal_(conv.bias)
    x = torch.randn(10, 4)
    expected = x @ conv.weight.detach().reshape(4, 6) + conv.bias.detach()
    torch.testing.assert_close(conv(x), expected)
    transposed = x @ conv.weight.detach().reshape(6, 4).T + conv.bias.detach()
    assert not torch.allclose(conv(x), transposed)
    model = create_spunet("spunet-tiny", 4, 3)
    assert isinstance(model.final, PointwiseConv) and isinstance(model.dec[0].block0.proj[0], PointwiseConv)
