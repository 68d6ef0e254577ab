"""Sparse residual U-Net (SpUNet), state-dict compatible with Pointcept's ``SpUNetBase``.

Structure (``S = len(layers) // 2`` stages, default 4):

* ``conv_input``: SubM conv k=5 (``in_channels -> base_channels``), BN, ReLU.
* ``down[s]``: sparse conv k=2 stride 2 (``enc_c -> channels[s]``), BN, ReLU.
* ``enc[s]``: ``layers[s]`` :class:`BasicBlock` s named ``block0 ...`` at ``channels[s]``.
* ``up[s]``: inverse conv k=2 of ``down[s]`` (``channels[-s-2] -> dec_c``), BN, ReLU.
* ``dec[s]``: ``layers[-s-1]`` blocks; the first takes ``dec_c + skip_c`` (concatenated skip).
* ``final``: SubM conv k=1 with bias to ``num_classes``, or ``nn.Identity`` when it is 0.

The kernel-1 convs (``final``, ``proj.0``) compute ``features @ weight.view(C_in, C_out)``
exactly as spconv 2.x does (see :class:`~contrast3d.models.blocks.PointwiseConv`), so a
Pointcept checkpoint gives Pointcept's outputs here.

Weights use the spconv layout ``[C_out, k, ..., k, C_in]`` so checkpoints move between this
project, Pointcept and spconv unchanged. With ``ndim=4`` the same code builds the space-time
variant (``grid_coord`` ``(N, 4)`` = x, y, z, t) used by 4DContrast.
"""
from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
from torch import nn

from contrast3d.models.blocks import (
    BasicBlock,
    block_sequence,
    get_sparse_ops,
    init_weights,
    make_norm,
    pointwise_conv,
    sparse_input_is_valid,
)
from contrast3d.structures import PointBatch

DEFAULT_CHANNELS = (32, 64, 128, 256, 256, 128, 96, 96)
DEFAULT_LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)


class SpUNet(nn.Module):
    """Sparse-conv U-Net backbone.

    Args:
        in_channels: input feature width ``C_in`` (e.g. 6 for colour + normal).
        num_classes: output width; 0 returns the last decoder features (``channels[-1]`` wide),
            the usual setting for pre-training. ``self.out_channels`` holds the output width.
        base_channels: width of the stem.
        channels: ``2 * S`` widths, encoder stages then decoder stages.
        layers: ``2 * S`` block counts matching ``channels``.
        ndim: 3 for (x, y, z) voxels, 4 for (x, y, z, t).
        backend: sparse-conv backend, ``"torch"`` (default, :mod:`contrast3d.sparse`),
            ``"spconv"`` or a module with the spconv names.
        merge_duplicates: in :meth:`forward`, average the features of points that share a voxel
            and give each point its voxel's output (sparse convs need unique voxels). Costs one
            sort of ``N`` keys; inputs that are already unique run unchanged.
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 32,
                 channels: Sequence[int] = DEFAULT_CHANNELS, layers: Sequence[int] = DEFAULT_LAYERS,
                 ndim: int = 3, backend: str | ModuleType | None = None,
                 merge_duplicates: bool = True) -> None:
        super().__init__()
        channels, layers = tuple(int(c) for c in channels), tuple(int(n) for n in layers)
        if len(layers) != len(channels) or len(layers) % 2 or not layers:
            raise ValueError(f"channels and layers must have the same even length, got "
                             f"{len(channels)} and {len(layers)}")
        if in_channels <= 0 or num_classes < 0:
            raise ValueError(f"need in_channels > 0 and num_classes >= 0, got {in_channels}, {num_classes}")
        self.in_channels, self.num_classes, self.base_channels = in_channels, num_classes, base_channels
        self.channels, self.layers, self.ndim = channels, layers, ndim
        self.num_stages = len(layers) // 2
        self.merge_duplicates = merge_duplicates
        self.out_channels = num_classes if num_classes > 0 else channels[-1]
        ops = get_sparse_ops(backend, ndim)
        self._ops = ops

        self.conv_input = ops.sequential(
            ops.subm(in_channels, base_channels, kernel_size=5, padding=1, bias=False, indice_key="stem"),
            make_norm(base_channels), nn.ReLU())
        # Registration order down, up, enc, dec as in Pointcept, so state-dict order matches too.
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        self.enc, self.dec = nn.ModuleList(), nn.ModuleList()
        n = len(channels)
        enc_c, dec_c = base_channels, channels[-1]
        for s in range(self.num_stages):
            self.down.append(ops.sequential(
                ops.conv(enc_c, channels[s], kernel_size=2, stride=2, bias=False, indice_key=f"spconv{s + 1}"),
                make_norm(channels[s]), nn.ReLU()))
            self.enc.append(block_sequence([
                (f"block{i}", BasicBlock(channels[s], channels[s], ops, indice_key=f"subm{s + 1}"))
                for i in range(layers[s])]))
            self.up.append(ops.sequential(
                ops.inverse(channels[n - s - 2], dec_c, kernel_size=2, bias=False, indice_key=f"spconv{s + 1}"),
                make_norm(dec_c), nn.ReLU()))
            self.dec.append(block_sequence([
                (f"block{i}", BasicBlock(dec_c + enc_c if i == 0 else dec_c, dec_c, ops, indice_key=f"subm{s}"))
                for i in range(layers[n - s - 1])]))
            enc_c, dec_c = channels[s], channels[n - s - 2]
        self.final: nn.Module = (pointwise_conv(ops, channels[-1], num_classes, bias=True)
                                 if num_classes > 0 else nn.Identity())
        self.apply(lambda m: init_weights(m, ops))

    # ------------------------------------------------------------------ forward
    def forward_sparse(self, x: Any) -> Any:
        """Run the U-Net on a ``SparseConvTensor`` with ``(N, in_channels)`` features.

        Returns a ``SparseConvTensor`` on the same indices (same row order) with
        ``(N, out_channels)`` features. ``x.spatial_shape`` must be a multiple of
        ``2 ** num_stages`` in every dimension, or voxels past it are dropped by the strided convs.
        """
        x = self.conv_input(x)
        skips = [x]
        for s in range(self.num_stages):
            x = self.enc[s](self.down[s](x))
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(self.num_stages)):
            x = self.up[s](x)
            skip = skips.pop()
            x = x.replace_feature(torch.cat((x.features, skip.features), dim=1))
            x = self.dec[s](x)
        return self.final(x)

    def forward(self, batch: PointBatch) -> torch.Tensor:
        """Per-point features ``(N, out_channels)`` float32 for a :class:`PointBatch`.

        Uses ``batch.grid_coord`` (``(N, ndim)`` int64 voxels, non-negative), ``batch.feat``
        (``(N, in_channels)`` float32) and ``batch.batch`` (``(N,)`` scene index).
        """
        coord, feat = batch.grid_coord, batch.feat
        scene = batch.batch if batch.batch is not None else torch.zeros(len(coord), dtype=torch.long,
                                                                        device=coord.device)
        if coord.ndim != 2 or coord.shape[1] != self.ndim:
            raise ValueError(f"grid_coord must have shape (N, {self.ndim}), got {tuple(coord.shape)}")
        if feat.ndim != 2 or feat.shape != (coord.shape[0], self.in_channels):
            raise ValueError(f"feat must have shape ({coord.shape[0]}, {self.in_channels}), "
                             f"got {tuple(feat.shape)}")
        if coord.shape[0] == 0:
            return feat.new_zeros((0, self.out_channels))
        if bool((coord < 0).any()):
            raise ValueError("grid_coord must be non-negative (shift each scene by its minimum)")
        shape = self.spatial_shape(coord)
        inverse = None
        if self.merge_duplicates:
            coord, feat, scene, inverse = _merge_duplicate_voxels(coord, feat, scene, shape)
        x = self.sparsify(coord, feat, scene, shape, batch.batch_size)
        out = self.forward_sparse(x).features
        return out if inverse is None else out[inverse]

    def spatial_shape(self, grid_coord: torch.Tensor) -> list[int]:
        """``max(grid_coord) + 1`` per dimension, rounded up to a multiple of ``2 ** num_stages``."""
        step = 2 ** self.num_stages
        extent = grid_coord.max(dim=0).values + 1
        return (((extent + step - 1) // step) * step).tolist()

    def sparsify(self, grid_coord: torch.Tensor, feat: torch.Tensor, scene: torch.Tensor,
                 spatial_shape: Sequence[int], batch_size: int) -> Any:
        """Build the backend's ``SparseConvTensor`` (indices int32 ``(N, 1 + ndim)`` = batch, coords)."""
        indices = torch.cat([scene.view(-1, 1), grid_coord], dim=1).to(torch.int32).contiguous()
        sparse_input_is_valid(feat, indices, self.ndim)
        return self._ops.tensor(feat, indices, list(spatial_shape), int(batch_size))


def _merge_duplicate_voxels(coord: torch.Tensor, feat: torch.Tensor, scene: torch.Tensor,
                            shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                           torch.Tensor | None]:
    """Average ``feat`` over points sharing a (scene, voxel); ``inverse`` maps points to voxels.

    Returns the inputs unchanged and ``inverse=None`` when every voxel is already unique.
    """
    key = scene.to(torch.int64)
    for dim, size in enumerate(shape):
        key = key * int(size) + coord[:, dim].to(torch.int64)
    uniq, inverse = torch.unique(key, return_inverse=True)
    if uniq.numel() == key.numel():
        return coord, feat, scene, None
    m = uniq.numel()
    counts = torch.bincount(inverse, minlength=m).clamp_min(1).to(feat.dtype)
    pooled = feat.new_zeros((m, feat.shape[1])).index_add_(0, inverse, feat) / counts[:, None]
    first = torch.full((m,), key.numel(), dtype=torch.int64, device=key.device).scatter_reduce_(
        0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin")
    return coord[first], pooled, scene[first], inverse
