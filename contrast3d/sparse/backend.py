"""Which sparse-conv implementation runs on a device.

``"torch"`` (this package's gather-GEMM-scatter) everywhere, ``"spconv"`` only on CUDA when
``spconv.pytorch`` imports. spconv is never used on CPU: spconv 2.3.8's CPU path gives wrong
results with more than one thread. ``CONTRAST3D_SPARSE_BACKEND=torch`` forces torch everywhere.
"""
from __future__ import annotations

import functools
import importlib
import os

import torch

ENV_VAR = "CONTRAST3D_SPARSE_BACKEND"


@functools.lru_cache(maxsize=1)
def spconv_available() -> bool:
    """Whether ``spconv.pytorch`` imports (cached)."""
    try:
        importlib.import_module("spconv.pytorch")
    except Exception:  # noqa: BLE001 - any failure (missing, broken CUDA libs) means unusable
        return False
    return True


def backend_for(device: torch.device | str) -> str:
    """``"spconv"`` if ``device`` is CUDA, spconv imports and the env var does not force torch;
    else ``"torch"``."""
    device = torch.device(device)
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced and forced not in ("torch", "spconv", "auto"):
        raise ValueError(f"{ENV_VAR} must be 'torch', 'spconv' or 'auto', got {forced!r}")
    if forced == "torch" or device.type != "cuda":
        return "torch"
    return "spconv" if spconv_available() else "torch"


def resolve_backend(name: str) -> str:
    """A configured backend name made concrete: ``auto`` -> :func:`backend_for` of CUDA when CUDA
    is available (so ``spconv`` only with CUDA and spconv importable), else ``torch``; ``torch`` and
    ``spconv`` are returned unchanged."""
    if name not in ("auto", "torch", "spconv"):
        raise ValueError(f"sparse backend must be 'auto', 'torch' or 'spconv', got {name!r}")
    if name != "auto":
        return name
    return backend_for(torch.device("cuda")) if torch.cuda.is_available() else "torch"
