"""Build a :class:`SparseConvTensor` from a :class:`~contrast3d.structures.PointBatch`."""
from __future__ import annotations

import torch

from contrast3d.sparse.tensor import SparseConvTensor
from contrast3d.structures import PointBatch


def padded_spatial_shape(grid_coord: torch.Tensor, divisor: int = 1) -> list[int]:
    """Per-dimension ``max + 1`` of ``(N, D)`` voxel coordinates, rounded up to a multiple of
    ``divisor`` (at least ``divisor``), so ``log2(divisor)`` stride-2 convs drop no voxel."""
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    ndim = grid_coord.shape[1]
    if grid_coord.shape[0] == 0:
        return [divisor] * ndim
    extent = (grid_coord.amax(0) + 1).tolist()
    return [max(1, -(-int(e) // divisor)) * divisor for e in extent]


def point_batch_to_sparse(batch: PointBatch, divisor: int = 1, features: torch.Tensor | None = None
                          ) -> SparseConvTensor:
    """Sparse tensor with indices ``(batch, grid_coord)`` (int32) and ``batch.feat`` features.

    Args:
        batch: voxelised points (one row per voxel; ``grid_coord`` non-negative, unique per scene).
        divisor: the spatial shape is rounded up to a multiple of this (``2 ** levels`` for a
            U-Net with ``levels`` stride-2 downsamplings).
        features: ``(N, C)`` features to use instead of ``batch.feat``.
    """
    grid = batch.grid_coord
    if grid.shape[0] and int(grid.min()) < 0:
        raise ValueError("grid_coord must be non-negative")
    assert batch.batch is not None
    indices = torch.cat([batch.batch.reshape(-1, 1), grid], dim=1).to(torch.int32).contiguous()
    feats = batch.feat if features is None else features
    return SparseConvTensor(feats, indices, padded_spatial_shape(grid, divisor), batch.batch_size)
