"""Backbone export: ``backbone.safetensors`` + ``backbone.json`` sidecar.

The safetensors keys are exactly the backbone's ``state_dict`` keys (Pointcept ``SpUNetBase``
names for the SpUNet family), values are contiguous CPU tensors. The JSON sidecar records the
method, step, parameter count and the resolved run configuration, so fine-tuning can rebuild
the backbone with the right widths.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from contrast3d.errors import DataError


def export_backbone(backbone: nn.Module, path: str | Path, *, config: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``backbone``'s state dict to ``path`` (safetensors) and ``path.with_suffix('.json')``.

    Both files are written to temporary names first and renamed into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in backbone.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "producer": "contrast3d"})
    os.replace(tmp, path)
    sidecar = {
        "weights": path.name,
        "backbone_class": type(backbone).__name__,
        "num_tensors": len(state),
        "num_parameters": int(sum(p.numel() for p in backbone.parameters())),
        **(extra or {}),
        "config": config or {},
    }
    meta_path = path.with_suffix(".json")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp")
    tmp_meta.write_text(json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
    os.replace(tmp_meta, meta_path)
    return path


def load_backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a ``backbone.safetensors`` file; :class:`DataError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "backbone weights not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(path, f"corrupt or not a safetensors file ({err})") from None
