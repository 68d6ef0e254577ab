"""The 2D ResNet U-Net of image-to-point contrast: shapes, gradients, torchvision key layout and loading."""
from __future__ import annotations

import pytest
import torch

from contrast3d.errors import DataError
from contrast3d.models.image_unet import IMAGE_UNET_PRESETS, ImageUNet, create_image_unet, load_imagenet_resnet34


def torchvision_resnet_keys(layers: tuple[int, ...]) -> list[str]:
    """The torchvision ResNet (BasicBlock) state-dict keys without ``fc``, written out independently."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{s}" for s in bn]
    for i, n in enumerate(layers):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            keys += [f"{p}.conv1.weight"] + [f"{p}.bn1.{s}" for s in bn]
            keys += [f"{p}.conv2.weight"] + [f"{p}.bn2.{s}" for s in bn]
            if i > 0 and j == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{s}" for s in bn]
    return keys


def torchvision_state(model: ImageUNet) -> dict[str, torch.Tensor]:
    """The model's encoder renamed to torchvision keys, plus an ImageNet ``fc`` head."""
    state = {k[len("encoder."):]: v.clone() for k, v in model.state_dict().items() if k.startswith("encoder.")}
    width = model.config.widths[-1]
    state["fc.weight"] = torch.randn(1000, width)
    state["fc.bias"] = torch.randn(1000)
    return state


@pytest.mark.parametrize("size", [(37, 53), (33, 65), (7, 9), (64, 32)])
def test_output_shape_any_size(size):
    torch.manual_seed(0)
    model = create_image_unet("tiny").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 16, *size)
    assert torch.isfinite(out).all()


def test_out_channels_and_bad_input():
    model = create_image_unet("tiny", out_channels=5)
    assert model.out_channels == 5 and model.head.out_channels == 5
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 20, 21)).shape == (1, 5, 20, 21)
    with pytest.raises(ValueError):
        model(torch.rand(1, 4, 20, 20))
    with pytest.raises(ValueError):
        create_image_unet("resnet50")


def test_gradient_reaches_every_parameter():
    torch.manual_seed(1)
    model = create_image_unet("tiny").train()
    out = model(torch.rand(2, 3, 41, 35))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_normalisation_is_inside_the_model_and_not_in_the_state_dict():
    torch.manual_seed(2)
    model = create_image_unet("tiny").eval()
    raw = create_image_unet("tiny", normalize_input=False).eval()
    raw.load_state_dict(model.state_dict())
    assert not any(k in ("mean", "std") for k in model.state_dict())
    x = torch.rand(1, 3, 24, 30)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), raw((x - mean) / std), atol=1e-5)
        assert not torch.allclose(model(x), raw(x))


@pytest.mark.parametrize("name", ["resnet34", "resnet18"])
def test_encoder_has_the_torchvision_key_layout(name):
    model = create_image_unet(name)
    layers = IMAGE_UNET_PRESETS[name].layers
    assert list(model.encoder.state_dict()) == torchvision_resnet_keys(layers)
    assert all(k.startswith(("encoder.", "decoder.", "head.")) for k in model.state_dict())
    shapes = {k: tuple(v.shape) for k, v in model.encoder.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["layer4.0.conv1.weight"] == (512, 256, 3, 3)
    if name == "resnet34":
        assert len(shapes) + 2 == 218  # torchvision resnet34 state dict has 218 entries with fc
        assert shapes["layer3.5.conv2.weight"] == (256, 256, 3, 3)
        # torchvision resnet34 has 21,797,672 parameters, 513,000 of them in fc
        assert sum(p.numel() for p in model.encoder.parameters()) == 21_797_672 - 513_000


def test_loader_accepts_a_torchvision_layout_file(tmp_path):
    torch.manual_seed(3)
    # resnet18 keeps the test fast; resnet34's keys are checked against torchvision's list above
    source, target = create_image_unet("resnet18"), create_image_unet("resnet18")
    for m in source.encoder.modules():  # make BN buffers distinguishable from the target's defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(7)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_state(source), path)
    decoder_before = {k: v.clone() for k, v in target.state_dict().items() if not k.startswith("encoder.")}
    loaded = load_imagenet_resnet34(target, path)
    assert loaded == torchvision_resnet_keys((2, 2, 2, 2))
    for k, v in source.encoder.state_dict().items():
        assert torch.equal(target.encoder.state_dict()[k], v), k
    for k, v in decoder_before.items():
        assert torch.equal(target.state_dict()[k], v), k


def test_loader_tolerates_missing_num_batches_tracked(tmp_path):
    source, target = create_image_unet("tiny"), create_image_unet("tiny")
    state = {k: v for k, v in torchvision_state(source).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    load_imagenet_resnet34(target, tmp_path / "old.pth")
    assert torch.equal(target.encoder.layer1[0].conv1.weight, source.encoder.layer1[0].conv1.weight)


@pytest.mark.parametrize("edit, key", [
    ("drop", "layer1.0.conv1.weight"),
    ("extra", "layer5.0.conv1.weight"),
    ("shape", "layer2.0.downsample.0.weight"),
    ("rename", "bn1.weight"),
])
def test_loader_rejects_mismatches_naming_the_key(tmp_path, edit, key):
    torch.manual_seed(4)
    model = create_image_unet("tiny")
    state = torchvision_state(create_image_unet("tiny"))
    if edit == "drop":
        del state[key]
    elif edit == "extra":
        state[key] = torch.zeros(3)
    elif edit == "shape":
        state[key] = torch.zeros(1, 2, 3, 3)
    else:
        state["encoder." + key] = state.pop(key)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError) as info:
        load_imagenet_resnet34(model, path)
    assert key in str(info.value) and str(path) in str(info.value)
    for k, v in model.state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k]), k


def test_loader_rejects_wrong_architecture_and_garbage(tmp_path):
    state = torchvision_state(create_image_unet("tiny"))  # one block per layer: a deeper model misses keys
    torch.save(state, tmp_path / "shallow.pth")
    with pytest.raises(DataError, match="missing keys: layer3.1.conv1.weight"):
        load_imagenet_resnet34(create_image_unet("tiny", layers=(1, 1, 2, 1)), tmp_path / "shallow.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read"):
        load_imagenet_resnet34(create_image_unet("tiny"), tmp_path / "junk.pth")
    torch.save({"conv1.weight": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(DataError):
        load_imagenet_resnet34(create_image_unet("tiny"), tmp_path / "list.pth")
    with pytest.raises(DataError):
        load_imagenet_resnet34(create_image_unet("tiny"), tmp_path / "absent.pth")
