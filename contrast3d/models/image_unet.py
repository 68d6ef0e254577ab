"""The 2D network of image-to-point contrast (Janda et al. §III-B): a ResNet encoder with a U-Net decoder.

The paper uses "the ResUNet architecture from Godard et al." (Monodepth2) with ImageNet weights in the
encoder and a decoder modified to output a 16-d feature per pixel. This module builds that network from
plain torch layers (no torchvision):

* **Encoder** — a torchvision-layout ResNet with BasicBlocks: stem ``conv1`` 7x7/2 + ``bn1`` + ReLU +
  3x3/2 max-pool, then ``layer1..layer4`` (``(3, 4, 6, 3)`` blocks, widths 64/128/256/512 for ResNet-34),
  the first block of layers 2-4 striding by 2 with a ``downsample`` (1x1/2 conv + BN) shortcut. Module
  names equal torchvision's (``encoder.conv1.weight``, ``encoder.layer2.0.downsample.0.weight``, ...),
  so :func:`load_imagenet_resnet34` loads a torchvision ``resnet34`` state dict (``fc.*`` ignored).
  Initialisation is torchvision's (Kaiming-normal fan-out convs, BN weight 1 / bias 0).
* **Decoder** — Monodepth2's: five stages from the 1/32 map up to full resolution; stage ``i`` applies
  conv-BN-ReLU (3x3) to width ``decoder_channels[i]``, upsamples (bilinear, ``align_corners=False``) to
  the size of the next-finer skip (the stem output at 1/2, ``layer1..3``) and concatenates it, then a
  second conv-BN-ReLU. The last stage has no skip and is resized to the input ``(H, W)``. Resizing to the
  skip's *exact* size (not a fixed x2) makes any ``H, W`` work, odd or not a multiple of 32.
* **Head** — a 3x3 conv with bias to ``out_channels`` (16), no activation: the contrastive loss
  L2-normalises the features itself.

Decisions the paper leaves open (defaults in brackets): Monodepth2 uses ELU, reflection padding and
nearest upsampling with no BN; the brief asks for conv-BN-ReLU blocks, so we use [zero-padded conv + BN +
ReLU, bilinear upsampling]; decoder widths are Monodepth2's [(16, 32, 64, 128, 256)], finest first.

**Input convention.** Images are ``(B, 3, H, W)`` float RGB in ``[0, 1]``; the model subtracts the ImageNet
mean ``(0.485, 0.456, 0.406)`` and divides by the std ``(0.229, 0.224, 0.225)`` itself (non-persistent
buffers ``mean``/``std``, so they are not part of the state dict), as the ImageNet weights expect. Set
``normalize_input=False`` to feed already-normalised images. Output: ``(B, out_channels, H, W)``.

Presets (:data:`IMAGE_UNET_PRESETS`): ``resnet34`` (the paper), ``resnet18`` (loads torchvision resnet18
weights the same way), ``tiny`` (1 block per layer, widths 8..64, for CPU tests).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageUNetConfig:
    """Architecture of :class:`ImageUNet`.

    Attributes:
        layers: BasicBlocks per encoder stage (``(3, 4, 6, 3)`` = ResNet-34).
        widths: channels of ``layer1..layer4`` (the stem has ``widths[0]``).
        decoder_channels: decoder widths, finest (full resolution) first, 5 entries.
        out_channels: per-pixel feature dimension (16 in the paper).
        normalize_input: apply the ImageNet mean/std normalisation inside ``forward``.
    """

    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    decoder_channels: tuple[int, int, int, int, int] = (16, 32, 64, 128, 256)
    out_channels: int = 16
    normalize_input: bool = True

    def __post_init__(self):
        self.layers, self.widths = tuple(self.layers), tuple(self.widths)
        self.decoder_channels = tuple(self.decoder_channels)
        if len(self.layers) != 4 or len(self.widths) != 4 or len(self.decoder_channels) != 5:
            raise ValueError("layers and widths need 4 entries, decoder_channels 5")
        if min(self.layers) < 1 or min(self.widths) < 1 or min(self.decoder_channels) < 1 or self.out_channels < 1:
            raise ValueError("layers, widths, decoder_channels and out_channels must be positive")


IMAGE_UNET_PRESETS: dict[str, ImageUNetConfig] = {
    "resnet34": ImageUNetConfig(),
    "resnet18": ImageUNetConfig(layers=(2, 2, 2, 2)),
    "tiny": ImageUNetConfig(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), decoder_channels=(8, 8, 16, 16, 32)),
}


class ResNetBasicBlock(nn.Module):
    """torchvision ``BasicBlock``: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNetEncoder(nn.Module):
    """torchvision-layout ResNet trunk (no ``avgpool``/``fc``) returning the five U-Net skip maps."""

    # registered with add_module (torchvision names) in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [ResNetBasicBlock(in_ch, w, 1 if i == 0 else 2)] + [ResNetBasicBlock(w, w) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = w
        self.channels = (widths[0], *widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` normalised image -> maps at strides 2, 4, 8, 16, 32 (channels ``self.channels``)."""
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f0, f1, f2, f3, self.layer4(f3)]


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class UNetDecoderStage(nn.Module):
    """conv-BN-ReLU, upsample to the skip's size, concatenate the skip, conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.reduce = _conv_bn_relu(in_channels, out_channels)
        self.fuse = _conv_bn_relu(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.fuse(x)


class ImageUNet(nn.Module):
    """ResNet encoder + U-Net decoder producing ``out_channels`` features per pixel (module docstring)."""

    # non-persistent buffers registered in __init__: ImageNet mean / std, (1, 3, 1, 1)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: ImageUNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or ImageUNetConfig()
        self.encoder = ResNetEncoder(cfg.layers, cfg.widths)
        enc = self.encoder.channels  # (stem, layer1, layer2, layer3, layer4)
        dec = cfg.decoder_channels
        stages = []
        for i in range(4, -1, -1):  # stage i outputs at the resolution of skip i - 1 (input size for i = 0)
            in_ch = enc[4] if i == 4 else dec[i + 1]
            stages.append(UNetDecoderStage(in_ch, enc[i - 1] if i > 0 else 0, dec[i]))
        self.decoder = nn.ModuleList(stages)
        self.head = nn.Conv2d(dec[0], cfg.out_channels, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, out_channels, H, W)`` per-pixel features."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) image batch, got {tuple(image.shape)}")
        x = (image - self.mean) / self.std if self.config.normalize_input else image
        feats = self.encoder(x)
        x = feats[4]
        for stage, i in zip(self.decoder, range(4, -1, -1)):
            skip = feats[i - 1] if i > 0 else None
            x = stage(x, tuple(skip.shape[-2:]) if skip is not None else tuple(image.shape[-2:]), skip)
        return self.head(x)


def create_image_unet(name: str = "resnet34", out_channels: int = 16, **overrides) -> ImageUNet:
    """Build a preset of :data:`IMAGE_UNET_PRESETS`; ``overrides`` replace :class:`ImageUNetConfig` fields."""
    if name not in IMAGE_UNET_PRESETS:
        raise ValueError(f"unknown image U-Net preset {name!r}; choose from {sorted(IMAGE_UNET_PRESETS)}")
    return ImageUNet(replace(IMAGE_UNET_PRESETS[name], out_channels=out_channels, **overrides))


def _first(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_imagenet_resnet34(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a torchvision ResNet state dict file (ImageNet weights) into ``model``'s encoder.

    Args:
        model: an :class:`ImageUNet` (or a bare :class:`ResNetEncoder`). Despite the name any torchvision
            BasicBlock ResNet whose layout matches the encoder loads (``resnet18`` into the ``resnet18`` preset).
        path: ``.pth`` file holding the state dict of ``torchvision.models.resnet34`` (read with
            ``torch.load(weights_only=True)``; a dict wrapped under ``"state_dict"`` is unwrapped). ``fc.*``
            keys are ignored; BN ``num_batches_tracked`` entries may be absent (old torchvision files lack
            them) and then keep the model's values.

    Returns:
        The encoder keys loaded (torchvision names, without the ``encoder.`` prefix).

    Raises:
        DataError: unreadable file, not a mapping of tensors, or a key/shape mismatch (naming the first
            missing, unexpected or wrongly shaped keys). The model is left unchanged then.
    """
    encoder: nn.Module = getattr(model, "encoder", model)
    try:
        state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as err:  # any read failure is a problem of this file
        raise DataError(path, f"cannot read a state dict: {type(err).__name__}: {err}") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "not a state dict (expected a mapping of parameter names to tensors)")
    state = {str(k): v for k, v in state.items() if not str(k).startswith("fc.")}
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    bad_shape = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in state.items()
                 if k in expected and v.shape != expected[k].shape]
    problems = [f"{what} keys: {_first(keys)}" for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", bad_shape)) if keys]
    if problems:
        raise DataError(path, "does not match the torchvision ResNet layout of the encoder; " + "; ".join(problems))
    merged = {k: state[k].to(v.dtype) if k in state else v for k, v in expected.items()}
    encoder.load_state_dict(merged, strict=True)
    return [k for k in expected if k in state]
