"""Helpers of the sparse-conv tests: random sparse inputs, dense scatter, an error log.

Every comparison records its relative error (``max|a - b| / max|b|``) per (op, quantity); the
worst values are printed in pytest's terminal summary ("sparse conv float64 worst relative
errors").
"""
from __future__ import annotations

from collections import defaultdict

import torch

WORST: dict[tuple[str, str], float] = defaultdict(float)
#: Implementation names that may end an op label (aggregated separately).
PATHS = ("gather", "implicit", "auto")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` (absolute error when ``b`` is all zero)."""
    if a.shape != b.shape:
        raise AssertionError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    if b.numel() == 0:
        return 0.0
    a, b = a.detach(), b.detach()
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0)


def record(op: str, what: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> float:
    err = rel_err(a, b)
    words = op.split()
    family = words[0] + (f" [{words[-1]}]" if words[-1] in PATHS else "")  # per op and path
    WORST[(family, what)] = max(WORST[(family, what)], err)
    assert err <= tol, f"{op} {what}: relative error {err:.3e} > {tol:.0e}"
    return err


def random_sites(batch: int, shape: tuple[int, ...], density: float, gen: torch.Generator,
                 min_sites: int = 1) -> torch.Tensor:
    """``(N, 1 + D)`` int32 unique sites in random row order."""
    mask = torch.rand((batch, *shape), generator=gen) < density
    if int(mask.sum()) < min_sites:
        mask.view(-1)[torch.randperm(mask.numel(), generator=gen)[:min_sites]] = True
    idx = mask.nonzero()
    return idx[torch.randperm(idx.shape[0], generator=gen)].to(torch.int32)


def to_dense(features: torch.Tensor, indices: torch.Tensor, batch: int, shape) -> torch.Tensor:
    """``(B, C, *shape)`` dense tensor (differentiable wrt ``features``)."""
    out = features.new_zeros((batch, *shape, features.shape[1]))
    out = out.index_put((*indices.long().T,), features)
    return out.movedim(-1, 1)
