"""Fixtures for the backbone tests: small surface-like voxel scenes and batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contrast3d.structures import PointBatch


def surface_voxels(n: int, seed: int, size: int = 40, ndim: int = 3, frames: int = 4) -> torch.Tensor:
    """About ``n`` unique int64 voxels on the faces of a box and a slab inside a ``size``^3 grid.

    ``ndim=4`` adds a time coordinate in ``[0, frames)``. Shape ``(M, ndim)``, ``M <= n``.
    """
    rng = np.random.default_rng(seed)
    uv = rng.uniform(0, size - 1, (n, 2))
    face = rng.integers(0, 7, n)
    axis = face % 3
    level = np.where(face < 3, 0.0, size - 1.0)
    level[face == 6] = size / 3.0
    pts = np.zeros((n, 3))
    for a in range(3):
        rows = axis == a
        others = [d for d in range(3) if d != a]
        pts[rows, a] = level[rows]
        pts[np.ix_(rows, others)] = uv[rows]
    vox = np.floor(pts).astype(np.int64)
    if ndim == 4:
        vox = np.concatenate([vox, rng.integers(0, frames, (n, 1))], axis=1)
    vox = np.unique(vox, axis=0)
    return torch.from_numpy(vox[rng.permutation(len(vox))])


def make_batch(coords: list[torch.Tensor], in_channels: int, seed: int = 0) -> PointBatch:
    """A :class:`PointBatch` of the given per-scene voxels with random ``(N, in_channels)`` features."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.cat(coords, dim=0)
    feat = torch.randn(len(grid), in_channels, generator=gen)
    offset = torch.cumsum(torch.tensor([len(c) for c in coords]), 0)
    return PointBatch(coord=grid[:, :3].float(), feat=feat, grid_coord=grid, offset=offset)


@pytest.fixture
def scene_a() -> torch.Tensor:
    return surface_voxels(1500, seed=1)


@pytest.fixture
def scene_b() -> torch.Tensor:
    return surface_voxels(1200, seed=2, size=33)


@pytest.fixture(name="surface_voxels")
def surface_voxels_fixture():
    """The :func:`surface_voxels` helper (test modules cannot import conftest under importlib mode)."""
    return surface_voxels


@pytest.fixture(name="make_batch")
def make_batch_fixture():
    """The :func:`make_batch` helper."""
    return make_batch
