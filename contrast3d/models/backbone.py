"""The ``model`` config section of every SpUNet-based objective, and the backbone it builds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from contrast3d.models.presets import SPUNET_PRESETS, create_spunet
from contrast3d.models.spunet import SpUNet
from contrast3d.sparse.backend import resolve_backend


@dataclass
class BackboneConfig:
    """The ``model`` section: which SpUNet and its input width.

    Attributes:
        preset: a key of :data:`contrast3d.models.SPUNET_PRESETS` (``spunet34`` = Pointcept
            SpUNetBase, ``spunet-tiny`` for CPU).
        in_channels: input feature width; must equal the width of ``data.feat_keys``
            (colour + normal = 6, ``[ones]`` = 1).
        backend: ``auto`` (spconv on CUDA when installed, else the pure-PyTorch convs), ``torch``
            or ``spconv``.
    """

    preset: str = "spunet34"
    in_channels: int = 6
    backend: Literal["auto", "torch", "spconv"] = "auto"

    def __post_init__(self) -> None:
        if self.preset not in SPUNET_PRESETS:
            raise ValueError(f"model.preset '{self.preset}' is not one of {', '.join(SPUNET_PRESETS)}")
        if self.in_channels < 1:
            raise ValueError(f"model.in_channels must be >= 1, got {self.in_channels}")


def build_backbone(cfg: BackboneConfig, num_classes: int = 0, ndim: int = 3) -> SpUNet:
    """The SpUNet of ``cfg`` (``num_classes=0``: per-point features for pre-training)."""
    return create_spunet(cfg.preset, cfg.in_channels, num_classes, ndim=ndim, backend=resolve_backend(cfg.backend))


def spunet_record(net: SpUNet, preset: str, feat_keys: list[str] | tuple[str, ...], grid_size: float | None,
                  **extra: Any) -> dict[str, Any]:
    """The record fields (:class:`~contrast3d.models.pretrained.PretrainedRecord`) of a SpUNet."""
    return {"kind": "spunet", "preset": preset, "ndim": net.ndim, "base_channels": net.base_channels,
            "channels": list(net.channels), "layers": list(net.layers), "in_channels": net.in_channels,
            "num_classes": net.num_classes, "out_channels": net.out_channels, "feat_keys": list(feat_keys),
            "grid_size": grid_size, **extra}
