"""Gather-GEMM-scatter sparse convolution with a memory-lean custom autograd function.

For a :class:`~contrast3d.sparse.kernel_map.KernelMap` with pairs ``(in_idx, out_idx)`` grouped
by kernel offset ``k``::

    out[out_idx[m]] += x[in_idx[m]] @ W[k].T          (W[k]: (C_out, C_in))

Each offset is gathered (``index_select``) into a buffer sized for the largest offset, multiplied
and scatter-added (``index_add_``); the Python loop runs over the kernel volume, never over sites. A SubM
centre offset is the identity map and is a plain matmul. The function saves only ``features``,
``weight`` and the map; gathered intermediates are rebuilt in backward.
"""
from __future__ import annotations

import torch

from contrast3d.sparse.kernel_map import KernelMap


def _weight_kxo(weight: torch.Tensor) -> torch.Tensor:
    """``[C_out, k_1, ..., k_D, C_in]`` -> ``(C_out, K, C_in)`` view (copy only if not viewable)."""
    return weight.reshape(weight.shape[0], -1, weight.shape[-1])


def _segment_bounds(counts: list[int]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for cnt in counts:
        bounds.append((start, start + cnt))
        start += cnt
    return bounds


def _apply(src: torch.Tensor, w: torch.Tensor, kmap: KernelMap, n_dst: int,
           src_idx: torch.Tensor, dst_idx: torch.Tensor, transpose_w: bool) -> torch.Tensor:
    """``dst[dst_idx] += src[src_idx] @ M_k`` with ``M_k = W[k].T`` (forward) or ``W[k]`` (input grad).

    ``w`` is ``(C_out, K, C_in)``; ``src`` is ``(N_src, C_src)`` contiguous; returns
    ``(n_dst, C_dst)``. One offset at a time through two buffers sized for the largest offset,
    so the gathered rows stay in cache and no map-sized temporaries are allocated.
    """
    c_dst = w.shape[0] if transpose_w else w.shape[2]

    def mat(k: int) -> torch.Tensor:
        return w[:, k, :].t() if transpose_w else w[:, k, :]

    if kmap.centre is not None:
        dst = torch.mm(src, mat(kmap.centre))
    else:
        dst = src.new_zeros((n_dst, c_dst))
    if kmap.counts:
        biggest = max(kmap.counts)
        gathered = src.new_empty((biggest, src.shape[1]))
        prod = src.new_empty((biggest, c_dst))
        for k, (a, b) in zip(kmap.offsets, _segment_bounds(kmap.counts)):
            rows = b - a
            torch.index_select(src, 0, src_idx[a:b], out=gathered[:rows])
            torch.mm(gathered[:rows], mat(k), out=prod[:rows])
            dst.index_add_(0, dst_idx[a:b], prod[:rows])
    return dst


class SparseConvFunction(torch.autograd.Function):
    """``features (N_in, C_in)``, ``weight [C_out, k..., C_in]``, map -> ``(N_out, C_out)``."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:  # type: ignore[override]
        features = features.contiguous()
        w = _weight_kxo(weight)
        out = _apply(features, w, kmap, kmap.n_out, kmap.in_idx, kmap.out_idx, transpose_w=True)
        ctx.save_for_backward(features, weight)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        features, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        grad_out = grad_out.contiguous()
        w = _weight_kxo(weight)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        c_out, kv, c_in = w.shape
        grad_x: torch.Tensor | None = None
        gw: torch.Tensor | None = None
        if need_x:
            grad_x = torch.mm(grad_out, w[:, kmap.centre, :]) if kmap.centre is not None \
                else grad_out.new_zeros((kmap.n_in, c_in))
        if need_w:
            gw = grad_out.new_zeros((kv, c_out, c_in))
            if kmap.centre is not None:
                torch.mm(grad_out.t(), features, out=gw[kmap.centre])
        if kmap.counts and (need_x or need_w):
            biggest = max(kmap.counts)
            g_buf = grad_out.new_empty((biggest, c_out))
            x_buf = features.new_empty((biggest, c_in))
            for k, (a, b) in zip(kmap.offsets, _segment_bounds(kmap.counts)):
                rows = b - a
                torch.index_select(grad_out, 0, kmap.out_idx[a:b], out=g_buf[:rows])
                if gw is not None:  # i.e. need_w
                    torch.index_select(features, 0, kmap.in_idx[a:b], out=x_buf[:rows])
                    torch.mm(g_buf[:rows].t(), x_buf[:rows], out=gw[k])
                if grad_x is not None:  # i.e. need_x
                    torch.mm(g_buf[:rows], w[:, k, :], out=x_buf[:rows])
                    grad_x.index_add_(0, kmap.in_idx[a:b], x_buf[:rows])
        grad_weight = gw.transpose(0, 1).reshape(weight.shape) if gw is not None else None
        return grad_x, grad_weight, None


def sparse_conv(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """Apply a kernel map: ``(N_in, C_in)`` features -> ``(N_out, C_out)``.

    Args:
        features: ``(N_in, C_in)`` floating point.
        weight: ``[C_out, k_1, ..., k_D, C_in]`` (spconv layout), same dtype/device.
        kmap: the rulebook (see :mod:`contrast3d.sparse.kernel_map`).
        bias: optional ``(C_out,)``.
    """
    if features.shape[0] != kmap.n_in:
        raise ValueError(f"features have {features.shape[0]} rows but the kernel map expects {kmap.n_in}")
    if features.shape[1] != weight.shape[-1]:
        raise ValueError(f"features have {features.shape[1]} channels, weight expects {weight.shape[-1]}")
    out = SparseConvFunction.apply(features, weight, kmap)
    if bias is not None:
        out = out + bias
    return out
