"""Sparse convolution in pure PyTorch: two exact paths and a per-layer rule choosing between them.

For a :class:`~contrast3d.sparse.kernel_map.KernelMap` with pairs ``(i, o, k)`` (input row ``i``
feeds output row ``o`` through kernel offset ``k``; ``W[k]`` is ``(C_out, C_in)``)::

    out[o] = sum over pairs (i, o, k) of W[k] @ x[i]

**gather** (:class:`SparseConvFunction`, the original path): offset by offset, the pairs'
inputs are gathered (``index_select``) into a buffer sized for the largest offset, multiplied by
``W[k].T`` and scatter-added into the outputs (:func:`~contrast3d.sparse.scatter.scatter_add_rows`:
a numba loop on CPU at one torch thread, ``index_add_`` otherwise); a SubM centre offset is the
identity and is one plain matmul. Backward: per offset, ``grad_W[k] = g[o]^T x[i]`` and
``grad_x[i] += g[o] W[k]`` (gather, GEMM, scatter). Work is proportional to the real pairs ``M``.

**implicit** (:class:`ImplicitGemmFunction`, output-stationary "implicit GEMM" / im2col): the
map's neighbour table ``T`` (``(N_out, K')``, :meth:`KernelMap.neighbour_table`, missing
neighbours pointing at an appended zero row) turns the sum into one matrix product per chunk of
output rows::

    out[rows] = [x_pad[T[rows, 0]], ..., x_pad[T[rows, K'-1]]]  @  W.reshape(C_out, K' C_in).T
                 (rows, K' C_in) gathered block                    (K' C_in, C_out), a view

with no scatter (every output row is written once). Backward: ``grad_W = sum over chunks of
g[rows]^T @ gathered block`` (one GEMM per chunk); ``grad_x`` is the same gather-GEMM over the
transposed map's table -- for a SubM (mirrored) map that is the map's own table with the kernel
flipped, ``grad_x[j] = sum_k g_pad[T[j, k]] @ W[K - 1 - k]``, so no second table; for strided and
inverse maps it is the table of :meth:`KernelMap.transposed` (memoised, so cached alongside).
Work is proportional to ``N_out * K'`` slots, i.e. ``1 / fill`` times the real pairs
(``fill = M / (N_out K')``, :attr:`KernelMap.fill`; surface scans at 2 cm: 0.58-0.62 for 3^3
SubM, 0.35 for the 5^3 stem, 0.37-0.44 at coarse levels, 0.125 for inverse k=2 s=2 maps).

Memory: the implicit path holds the table (``N_out K'`` int32), a zero-padded copy of its source
and one gathered chunk of ``CHUNK_BYTES``; nothing of ``(N_out, K' C)`` size is ever
materialised. Both paths save only ``features``, ``weight`` and the map for backward.

**Chunk size** (decision by measurement, fwd+bwd CPU ms at 1 thread, chunk budget 1 / 2 / 4 / 8 /
16 / 64 MB): stem 6->32 k5 on 40k sites 155 / 162 / 167 / 180 / 218 / 336; 32->32 on 10.5k sites
21 / 23 / 26 / 33 / 40 / 43; 96->96 on 40k sites 557 / 550 / 563 / 618 / 636 / 754. Blocks that
stay in the 2 MB L2 win; ``CHUNK_BYTES = 2 MB`` (a 64 MB budget is up to 2x slower).

**Which path** (``auto``, the default; ``$CONTRAST3D_SPARSE_IMPL=gather|implicit|auto`` or the
``impl`` argument of :func:`sparse_conv` force one). Both run their GEMMs at the same rate
(~130 GFLOP/s on one core of the Xeon measured), so the implicit path wins only where the
gather path's per-pair memory traffic (random gather + ``index_add_`` scatter, ~35 % of its
time) costs more than the implicit path's wasted products. The waste per real pair is
``(1 / fill - 1) * C_in * C_out`` multiply-adds, and the rule is::

    implicit  iff  the map is SubM (mirrored)  and  (1 / fill - 1) * C_in * C_out <= 1000
                   (<= 1500 when autograd is off: no backward, where the implicit path is best)
    gather    otherwise: strided convs (implicit fwd+bwd 1.6-2.0x slower: the input gradient
                   needs the transposed table) and inverse convs (table 1/8 full: 3-4x slower).

Measured (process CPU time, 1 thread, min of 3, load average 4-6 on 2 cores; synthetic room crops
of ``benchmarks/sparse_conv.py``, 2 x 10k voxels; ratio = implicit / gather, fwd+bwd with input
gradient, forward only in brackets)::

    level / kernel / sites   fill   4->16      16->16     16->32     32->32     48->48     64->64     96->96
    0 / 3^3 / 20000          0.58   0.60(.29)  0.65(.54)  0.67(.49)  0.75(.59)  0.94(.91)  1.04(.97)  1.19(1.09)
    1 / 3^3 / 5772           0.64   0.62(.38)  0.69(.54)  0.69(.51)  0.83(.44)  0.99(.86)  1.01(.94)  1.16(1.06)
    2 / 3^3 / 883            0.40   0.41(.22)  0.64(.42)  0.65(.45)  1.04(.91)  1.24(.93)  1.44(1.24) 1.86(1.60)
    0 / 5^3 / 20000          0.35   0.75(.38)  0.86(.73)  0.97(.72)  1.31(1.13)
    1 / 5^3 / 5772           0.39   0.70(.39)  0.83(.65)  0.97(.70)  1.28(1.08)
    2 / 5^3 / 883            0.26   0.37(.22)  0.41(.32)  0.52(.42)  0.82(.65)

The rule's waste limits separate these with errors only where the two paths are within ~10 %,
except on small layers (< 1000 sites), where the gather path's fixed per-offset overhead lets the
implicit path win up to waste ~3000 (the missed gain there is < 1 ms per layer).

Per layer in SpUNet-34 (2 x 20k voxels, 1 thread, CPU time, fwd+bwd): the stem (6->32, 5^3,
fill 0.35) goes from 152 to 76 ms and each 32->32 SubM layer of level 1 (fill 0.62) from 27 to
23 ms; every layer with >= 64 channels stays on the gather path; all conv layers together go
from 3297 to 3203 ms. At two threads the implicit path scales better on such narrow layers (2 x
50k, wall, min of 7: stem 404 -> 199 ms at 1 thread but 308 -> 107 ms at 2; level-1 32->32
65 -> 48 and 46 -> 26 ms), while on wide layers the implicit / gather ratio is the same at 1 and
2 threads (1.34-1.38 at 96-128 channels), so the rule ignores the thread count. The neighbour
tables (built once per map, only for implicit layers) cost 20 ms for the stem on 40k sites and
~100 ms on 100k sites, included in the whole-network numbers: ``benchmarks/sparse_conv.py`` on 2 x
20k voxels, 7 interleaved repeats, load average 1.3-1.8 on 2 cores, fwd+bwd auto / gather =
0.966 (1 thread) and 0.990 (2 threads) for SpUNet-34, 0.997 and 0.952 for SpUNet-14.

So the implicit path is no road to the 2x the issue asked for on CPU: both paths run their GEMMs
at the same rate, GEMMs are already ~55 % of the gather path's time (profile of a SpUNet-34 step:
``mm`` 47 %, ``index_select`` 18 %, ``index_add_`` 17 %), and the implicit path multiplies the
FLOPs by ``1 / fill``. On CUDA the same rule is
used (unmeasured there; spconv is the CUDA default).
"""
from __future__ import annotations

import os

import torch

from contrast3d.sparse.kernel_map import KernelMap
from contrast3d.sparse.scatter import scatter_add_rows


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
            scatter_add_rows(dst, dst_idx[a:b], prod[:rows])
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
                    scatter_add_rows(grad_x, kmap.in_idx[a:b], x_buf[:rows])
        grad_weight = gw.transpose(0, 1).reshape(weight.shape) if gw is not None else None
        return grad_x, grad_weight, None


#: Bytes of one gathered chunk of the implicit path (2 MB: measured, see the module docstring).
CHUNK_BYTES = 2 << 20


def _chunk_rows(width: int, channels: int, itemsize: int, budget: int | None = None) -> int:
    """Rows per chunk so that a gathered ``(rows, width * channels)`` block fits ``budget`` bytes."""
    budget = CHUNK_BYTES if budget is None else budget
    return max(1, budget // max(1, width * channels * itemsize))


def _pad_zero_row(src: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` -> ``(N + 1, C)`` contiguous copy whose last row is zero (the "missing" row)."""
    out = src.new_empty((src.shape[0] + 1, src.shape[1]))
    out[:-1] = src
    out[-1] = 0
    return out


def _gather_mm(src_padded: torch.Tensor, table: torch.Tensor, wmat: torch.Tensor) -> torch.Tensor:
    """``dst[o] = concat_j src_padded[table[o, j]] @ wmat``: chunked gather, one GEMM per chunk.

    Args:
        src_padded: ``(N_src + 1, C)`` with a zero last row.
        table: ``(N_dst, W)`` rows of ``src_padded``.
        wmat: ``(W * C, C_dst)``.

    Returns:
        ``(N_dst, C_dst)``; no scatter: every output row is written once.
    """
    n, width = table.shape
    c = src_padded.shape[1]
    dst = src_padded.new_empty((n, wmat.shape[1]))
    if n == 0:
        return dst
    if width == 0 or c == 0:
        return dst.zero_()
    rows = min(n, _chunk_rows(width, c, src_padded.element_size()))
    buf = src_padded.new_empty((rows * width, c))
    for a in range(0, n, rows):
        b = min(n, a + rows)
        got = torch.index_select(src_padded, 0, table[a:b].reshape(-1), out=buf[:(b - a) * width])
        torch.mm(got.view(b - a, width * c), wmat, out=dst[a:b])
    return dst


def _select_offsets(w: torch.Tensor, cols: list[int]) -> torch.Tensor:
    """``(C_out, K, C_in)`` -> ``(C_out, len(cols), C_in)`` (a view when all offsets are used)."""
    if cols == list(range(w.shape[1])):
        return w
    return w.index_select(1, torch.tensor(cols, dtype=torch.int64, device=w.device))


class ImplicitGemmFunction(torch.autograd.Function):
    """Output-stationary sparse conv: ``features (N_in, C_in)``, ``weight [C_out, k..., C_in]``,
    map -> ``(N_out, C_out)`` through the map's neighbour table (see the module docstring)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:  # type: ignore[override]
        table, cols = kmap.neighbour_table()
        w = _select_offsets(_weight_kxo(weight), cols)
        wmat = w.reshape(w.shape[0], -1).t()  # (W * C_in, C_out)
        out = _gather_mm(_pad_zero_row(features), table, wmat)
        ctx.save_for_backward(features, weight)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        features, weight = ctx.saved_tensors
        kmap: KernelMap = ctx.kmap
        w = _weight_kxo(weight)
        c_out, kv, c_in = w.shape
        grad_x: torch.Tensor | None = None
        grad_weight: torch.Tensor | None = None
        if ctx.needs_input_grad[0]:
            # grad_x[i] = sum over pairs (i, o, k) of g[o] @ W[k]: the same gather-GEMM over the
            # transposed map's table, whose column for offset k multiplies W[k] (C_out -> C_in).
            if kmap.mirrored:  # the transposed table is this one with columns k -> K - 1 - k
                table_x, cols = kmap.neighbour_table()
                cols_w = [kv - 1 - k for k in cols]
            else:
                table_x, cols = kmap.transposed().neighbour_table()
                cols_w = cols
            wx = _select_offsets(w, cols_w).permute(1, 0, 2).reshape(len(cols_w) * c_out, c_in)
            grad_x = _gather_mm(_pad_zero_row(grad_out), table_x, wx)
        if ctx.needs_input_grad[1]:
            table, cols = kmap.neighbour_table()
            width = len(cols)
            gw = grad_out.new_zeros((c_out, width * c_in))
            n = table.shape[0]
            if n and width and c_in:
                g = grad_out.contiguous()
                x_pad = _pad_zero_row(features)
                rows = min(n, _chunk_rows(width, c_in, features.element_size()))
                buf = features.new_empty((rows * width, c_in))
                for a in range(0, n, rows):
                    b = min(n, a + rows)
                    got = torch.index_select(x_pad, 0, table[a:b].reshape(-1), out=buf[:(b - a) * width])
                    gw.addmm_(g[a:b].t(), got.view(b - a, width * c_in))
            full = gw.view(c_out, width, c_in)
            if width != kv:
                full = grad_out.new_zeros((c_out, kv, c_in)).index_copy_(
                    1, torch.tensor(cols, dtype=torch.int64, device=gw.device), full)
            grad_weight = full.reshape(weight.shape)
        return grad_x, grad_weight, None


IMPLS = ("gather", "implicit")
ENV_VAR = "CONTRAST3D_SPARSE_IMPL"
#: ``auto`` picks the implicit path for a SubM layer when its wasted multiply-adds per real pair,
#: ``(1 / fill - 1) * C_in * C_out``, are at most this (training, i.e. a backward will follow) ...
WASTE_LIMIT_TRAIN = 1000.0
#: ... or at most this without autograd (inference). Both measured: see the module docstring.
WASTE_LIMIT_INFER = 1500.0


def select_impl(kmap: KernelMap, c_in: int, c_out: int, training: bool = True) -> str:
    """The path the ``auto`` rule picks for one layer (the rule and its numbers: module docstring).

    Args:
        kmap: the layer's map (its ``mirrored`` flag and :attr:`KernelMap.fill` are used).
        c_in, c_out: feature widths.
        training: whether a backward pass will follow (autograd records this call).

    Returns:
        ``"implicit"`` or ``"gather"``.
    """
    if not kmap.mirrored or kmap.n_out == 0:
        return "gather"
    fill = kmap.fill
    waste = (1.0 / fill - 1.0) * c_in * c_out if fill > 0 else float("inf")
    return "implicit" if waste <= (WASTE_LIMIT_TRAIN if training else WASTE_LIMIT_INFER) else "gather"


def resolve_impl(kmap: KernelMap, c_in: int, c_out: int, impl: str | None = None, training: bool = True) -> str:
    """``impl`` (or ``$CONTRAST3D_SPARSE_IMPL``, default ``auto``) made concrete for one layer."""
    name = (impl if impl is not None else os.environ.get(ENV_VAR, "auto")).strip().lower() or "auto"
    if name == "auto":
        return select_impl(kmap, c_in, c_out, training)
    if name not in IMPLS:
        source = "the impl argument" if impl is not None else ENV_VAR
        raise ValueError(f"sparse conv implementation must be 'auto', 'gather' or 'implicit', got {name!r} "
                         f"(from {source})")
    return name


def sparse_conv(features: torch.Tensor, weight: torch.Tensor, kmap: KernelMap,
                bias: torch.Tensor | None = None, impl: str | None = None) -> torch.Tensor:
    """Apply a kernel map: ``(N_in, C_in)`` features -> ``(N_out, C_out)``.

    Args:
        features: ``(N_in, C_in)`` floating point.
        weight: ``[C_out, k_1, ..., k_D, C_in]`` (spconv layout), same dtype/device.
        kmap: the rulebook (see :mod:`contrast3d.sparse.kernel_map`).
        bias: optional ``(C_out,)``.
        impl: ``"gather"``, ``"implicit"`` or ``"auto"``; ``None`` reads ``$CONTRAST3D_SPARSE_IMPL``
            (default ``auto``: :func:`select_impl`).
    """
    if features.shape[0] != kmap.n_in:
        raise ValueError(f"features have {features.shape[0]} rows but the kernel map expects {kmap.n_in}")
    if features.shape[1] != weight.shape[-1]:
        raise ValueError(f"features have {features.shape[1]} channels, weight expects {weight.shape[-1]}")
    training = torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad)
    path = resolve_impl(kmap, features.shape[1], weight.shape[0], impl, training)
    fn = ImplicitGemmFunction if path == "implicit" else SparseConvFunction
    out = fn.apply(features.contiguous(), weight, kmap)
    if bias is not None:
        out = out + bias
    return out
