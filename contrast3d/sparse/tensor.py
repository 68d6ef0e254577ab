"""``SparseConvTensor``: features on a sparse set of integer sites (spconv-compatible names)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class SparseConvTensor:
    """Sparse D-dimensional feature map.

    Attributes:
        features: ``(N, C)`` floating point, one row per active site.
        indices: ``(N, 1 + D)`` int32 ``(batch, c_1, ..., c_D)``, in voxels (made contiguous).
        spatial_shape: ``[S_1, ..., S_D]`` voxels; every site has ``0 <= c_j < S_j``.
        batch_size: number of batch elements ``B``; every site has ``0 <= batch < B``.
        indice_dict: kernel-map cache keyed by ``indice_key`` (values are
            :class:`~contrast3d.sparse.kernel_map.IndiceData`); each conv layer hands a shallow
            copy on to its output, so downstream tensors see every map built upstream (spconv's
            behaviour).
    """

    def __init__(self, features: torch.Tensor, indices: torch.Tensor, spatial_shape: Sequence[int],
                 batch_size: int, indice_dict: dict[str, Any] | None = None) -> None:
        if indices.ndim != 2:
            raise ValueError(f"indices must be 2-D (N, 1 + D), got shape {tuple(indices.shape)}")
        if features.ndim != 2 or features.shape[0] != indices.shape[0]:
            raise ValueError(f"features must be (N, C) with N = {indices.shape[0]}, got {tuple(features.shape)}")
        if indices.shape[1] != len(spatial_shape) + 1:
            raise ValueError(f"indices have {indices.shape[1] - 1} spatial dims, spatial_shape has "
                             f"{len(spatial_shape)}")
        if indices.dtype != torch.int32 or not indices.is_contiguous():
            indices = indices.to(torch.int32).contiguous()
        self._features = features
        self.indices = indices
        self.spatial_shape = [int(s) for s in spatial_shape]
        self.batch_size = int(batch_size)
        self.indice_dict: dict[str, Any] = {} if indice_dict is None else indice_dict

    @property
    def features(self) -> torch.Tensor:
        return self._features

    @features.setter
    def features(self, value: torch.Tensor) -> None:
        if value.shape[0] != self.indices.shape[0]:
            raise ValueError(f"features must have {self.indices.shape[0]} rows, got {value.shape[0]}")
        self._features = value

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions ``D``."""
        return len(self.spatial_shape)

    @property
    def spatial_size(self) -> int:
        n = 1
        for s in self.spatial_shape:
            n *= s
        return n

    def __repr__(self) -> str:
        return (f"SparseConvTensor(N={self.indices.shape[0]}, C={self._features.shape[1]}, "
                f"spatial_shape={self.spatial_shape}, batch_size={self.batch_size}, "
                f"keys={sorted(self.indice_dict)})")

    def replace_feature(self, features: torch.Tensor) -> SparseConvTensor:
        """Same sites and cache, new ``(N, C')`` features."""
        return SparseConvTensor(features, self.indices, self.spatial_shape, self.batch_size, self.indice_dict)

    def find_indice_pair(self, key: str | None) -> Any:
        """The cached :class:`IndiceData` for ``key``, or ``None``."""
        if key is None:
            return None
        return self.indice_dict.get(key)

    def dense(self, channels_first: bool = True) -> torch.Tensor:
        """Dense ``(B, C, S_1, ..., S_D)`` (or channels last ``(B, S_1, ..., S_D, C)``) tensor."""
        c = self._features.shape[1]
        out = self._features.new_zeros((self.batch_size, *self.spatial_shape, c))
        idx = self.indices.long()
        out[tuple(idx[:, j] for j in range(idx.shape[1]))] = self._features
        if channels_first:
            out = out.movedim(-1, 1).contiguous()
        return out

    @classmethod
    def from_dense(cls, x: torch.Tensor) -> SparseConvTensor:
        """From channels-last dense ``(B, S_1, ..., S_D, C)``; sites are the non-zero rows."""
        mask = (x != 0).any(-1)
        indices = mask.nonzero().to(torch.int32)
        return cls(x[mask], indices, list(x.shape[1:-1]), x.shape[0])
