"""Named SpUNet sizes and the :func:`create_spunet` entry point.

Parameter counts (``in_channels=6, num_classes=20``, 3D):

=============  ===========  ======================================================
name           parameters   use
=============  ===========  ======================================================
spunet34       39,157,844   Pointcept ``SpUNet-v1m1`` default (MinkUNet34C widths)
spunet18       23,006,036   Same widths, two blocks per stage
spunet14       12,882,644   Same widths, one block per stage
spunet-tiny     1,213,620   16..64 channels, one block per stage: CPU tests, quickstart
=============  ===========  ======================================================

(``num_classes=0`` removes the ``final`` conv: minus ``96 * num_classes + num_classes``.)
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from contrast3d.models.spunet import DEFAULT_CHANNELS, DEFAULT_LAYERS, SpUNet


@dataclass(frozen=True)
class SpUNetPreset:
    """Widths and depths of one SpUNet size.

    Attributes:
        base_channels: stem width.
        channels: ``2 * S`` stage widths (encoder then decoder).
        layers: ``2 * S`` residual-block counts.
        description: one line for ``--help`` / docs.
    """

    base_channels: int
    channels: tuple[int, ...]
    layers: tuple[int, ...]
    description: str = ""


SPUNET_PRESETS: dict[str, SpUNetPreset] = {
    "spunet34": SpUNetPreset(32, DEFAULT_CHANNELS, DEFAULT_LAYERS,
                             "Pointcept SpUNet-v1m1 default, 39.2 M parameters"),
    "spunet18": SpUNetPreset(32, DEFAULT_CHANNELS, (2, 2, 2, 2, 2, 2, 2, 2),
                             "two blocks per stage, 23.0 M parameters"),
    "spunet14": SpUNetPreset(32, DEFAULT_CHANNELS, (1, 1, 1, 1, 1, 1, 1, 1),
                             "one block per stage, 12.9 M parameters"),
    "spunet-tiny": SpUNetPreset(16, (16, 32, 64, 64, 64, 32, 32, 32), (1, 1, 1, 1, 1, 1, 1, 1),
                                "narrow, for CPU tests and the quickstart, 1.2 M parameters"),
}


def create_spunet(name: str, in_channels: int, num_classes: int = 0, ndim: int = 3,
                  backend: str | ModuleType | None = None) -> SpUNet:
    """Build a preset SpUNet by name (see :data:`SPUNET_PRESETS`).

    ``num_classes=0`` gives a feature backbone (``out_channels = channels[-1]``).
    Raises ``KeyError`` listing the known names for an unknown ``name``.
    """
    try:
        preset = SPUNET_PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown SpUNet preset '{name}'; known: {', '.join(SPUNET_PRESETS)}") from None
    return SpUNet(in_channels, num_classes, base_channels=preset.base_channels,
                  channels=preset.channels, layers=preset.layers, ndim=ndim, backend=backend)
