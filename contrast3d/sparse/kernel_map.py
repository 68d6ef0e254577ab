"""Voxel keys and kernel maps (rulebooks) for sparse convolution, in pure PyTorch.

A *kernel map* lists, for every kernel offset ``k``, the pairs ``(in_row, out_row)`` such that
input site ``in_row`` contributes ``W[k] @ x[in_row]`` to output site ``out_row``. Offsets are
numbered in row-major order over ``(k_1, ..., k_D)``, the order of the spconv weight layout
``[C_out, k_1, ..., k_D, C_in]`` and of the dense ``torch.nn.functional.conv3d`` weight.

Sites are integer indices ``(N, 1 + D)`` = ``(batch, c_1, ..., c_D)``. They are encoded into
int64 *keys* (mixed radix over ``(batch, c_1 + pad_1, ..., c_D + pad_D)``), sorted once, and
looked up with :func:`torch.searchsorted`. Everything is vectorised; the only Python loops run
over the ``D`` dimensions.

The output-stationary ("implicit GEMM") convolution of :mod:`contrast3d.sparse.functional` reads
the same map as a *neighbour table* (:meth:`KernelMap.neighbour_table`): ``(N_out, K')`` rows
holding, for each output site and each used offset, the input row or ``n_in`` (the row index of
an appended zero row) when the neighbour is absent. The table is scattered from the pairs (no
second hashing) and cached on the map object, so it lives exactly as long as the map cached under
its ``indice_key``. :meth:`KernelMap.transposed` is memoised the same way, so the inverse conv
registered under a strided conv's key and that conv's backward share one transposed map and its
table. Tables are built lazily, only for layers that run on the implicit path.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class KernelMap:
    """A rulebook: which input row feeds which output row through which kernel offset.

    Attributes:
        in_idx: ``(M,)`` int64 input rows, grouped by offset (segments in ``offsets`` order).
        out_idx: ``(M,)`` int64 output rows, aligned with ``in_idx``.
        offsets: flat kernel-offset ids of the non-empty segments, in storage order.
        counts: number of pairs of each segment (same length as ``offsets``; sums to ``M``).
        centre: flat id of an identity offset (SubM centre: ``out_row == in_row`` for every
            row, not stored in the pairs), or ``None``.
        n_in, n_out: number of input / output sites.
        kernel_volume: ``prod(kernel_size)``.
        mirrored: the pairs of offset ``k`` are those of offset ``K - 1 - k`` with inputs and outputs
            swapped, and ``n_in == n_out`` (true of SubM maps): the input gradient can then use the
            map's own neighbour table with the kernel flipped.
    """

    in_idx: torch.Tensor
    out_idx: torch.Tensor
    offsets: list[int]
    counts: list[int]
    centre: int | None
    n_in: int
    n_out: int
    kernel_volume: int
    mirrored: bool = False
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_pairs(self) -> int:
        """Number of ``(in, out, k)`` contributions, the identity centre (``n_out`` pairs) included."""
        return sum(self.counts) + (self.n_out if self.centre is not None else 0)

    @property
    def fill(self) -> float:
        """``num_pairs / (n_out * K')``: the fraction of neighbour-table slots that hold a site
        (``K'`` = number of used offsets); 1.0 for an empty map."""
        cols = len(self.used_offsets())
        return self.num_pairs / (self.n_out * cols) if self.n_out and cols else 1.0

    def used_offsets(self) -> list[int]:
        """Flat ids of the offsets with at least one pair (the centre included), ascending."""
        used = set(self.offsets)
        if self.centre is not None and self.n_out:
            used.add(self.centre)
        return sorted(used)

    def transposed(self) -> KernelMap:
        """The map with inputs and outputs swapped (what an inverse convolution uses).

        Memoised: repeated calls return the same object (and so share its cached neighbour
        table). The transposed map refers back to this one weakly (no reference cycle).
        """
        back = self._cache.get("transposed_of")
        if back is not None and back() is not None:
            return back()
        got = self._cache.get("transposed")
        if got is None:
            got = KernelMap(self.out_idx, self.in_idx, list(self.offsets), list(self.counts), self.centre,
                            self.n_out, self.n_in, self.kernel_volume, self.mirrored)
            got._cache["transposed_of"] = weakref.ref(self)
            self._cache["transposed"] = got
        return got

    def neighbour_table(self) -> tuple[torch.Tensor, list[int]]:
        """``(table, cols)``: the per-output neighbour table of the output-stationary conv (cached).

        Returns:
            table: ``(n_out, len(cols))`` int32 (int64 if ``n_in >= 2**31 - 1``); ``table[o, j]``
                is the input row feeding output ``o`` through offset ``cols[j]``, or ``n_in`` (an
                appended zero row) where there is none.
            cols: the used offsets (:meth:`used_offsets`), the order of the table's columns.

        Built from the pairs by one scatter: no second hash look-up. A valid map has at most one
        input per ``(output, offset)`` (the input site is ``o * s - p + d * k``), so the scatter has
        no collisions.
        """
        got = self._cache.get("table")
        if got is not None:
            return got
        device = self.in_idx.device
        cols = self.used_offsets()
        width = len(cols)
        dtype = torch.int32 if self.n_in < 2 ** 31 - 1 else torch.int64
        table = torch.full((self.n_out * width,), self.n_in, dtype=dtype, device=device)
        if self.counts:
            col_of = torch.full((self.kernel_volume,), -1, dtype=torch.int64, device=device)
            col_of[torch.tensor(cols, dtype=torch.int64, device=device)] = torch.arange(
                width, dtype=torch.int64, device=device)
            flat = torch.repeat_interleave(col_of[torch.tensor(self.offsets, dtype=torch.int64, device=device)],
                                           torch.tensor(self.counts, dtype=torch.int64, device=device))
            flat.add_(self.out_idx, alpha=width)  # out_row * width + column
            table.scatter_(0, flat, self.in_idx.to(dtype))  # (scatter_ is 2x faster than index_put_ here)
        table = table.view(self.n_out, width)
        if self.centre is not None and self.n_out:
            table[:, cols.index(self.centre)] = torch.arange(self.n_out, dtype=dtype, device=device)
        self._cache["table"] = (table, cols)
        return table, cols

    def __getstate__(self) -> dict[str, Any]:
        """Pickle / deep-copy without the derived cache (it holds a weak reference)."""
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state


@dataclass
class IndiceData:
    """What a strided/SubM layer stores under its ``indice_key`` (like spconv's ``IndiceData``).

    Attributes:
        in_indices: ``(N_in, 1 + D)`` int32 input sites of the layer that built the map.
        out_indices: ``(N_out, 1 + D)`` int32 output sites.
        in_spatial_shape, out_spatial_shape: spatial extents (voxels) before / after.
        kernel_size, stride, padding, dilation: the layer's geometry.
        subm: whether it is a submanifold map.
        kmap: the :class:`KernelMap`.
    """

    in_indices: torch.Tensor
    out_indices: torch.Tensor
    in_spatial_shape: list[int]
    out_spatial_shape: list[int]
    kernel_size: list[int]
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    subm: bool
    kmap: KernelMap
    extra: dict = field(default_factory=dict)


def conv_output_shape(spatial_shape: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int], dilation: Sequence[int]) -> list[int]:
    """Per-dimension ``floor((S + 2p - d (k - 1) - 1) / s) + 1`` (spconv / dense conv rule)."""
    out = [(s + 2 * p - d * (k - 1) - 1) // st + 1
           for s, k, st, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation)]
    if any(o <= 0 for o in out):
        raise ValueError(f"sparse conv output spatial shape {out} is not positive "
                         f"(input {list(spatial_shape)}, kernel {list(kernel_size)}, stride {list(stride)}, "
                         f"padding {list(padding)}, dilation {list(dilation)})")
    return out


def encode_keys(batch: torch.Tensor, coords: torch.Tensor, base: Sequence[int]) -> torch.Tensor:
    """Mixed-radix int64 keys of ``(batch, coords)``.

    Args:
        batch: ``(N,)`` int64 batch index.
        coords: ``(N, D)`` int64 coordinates with ``0 <= coords[:, j] < base[j]``.
        base: the radix of each spatial dimension.

    Returns:
        ``(N,)`` int64; the order of keys is the lexicographic order of ``(batch, c_1, ..., c_D)``.
    """
    key = batch.to(torch.int64)
    for j, b in enumerate(base):
        key = key * int(b) + coords[:, j]
    return key


def decode_keys(keys: torch.Tensor, base: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`encode_keys`: ``(N,)`` int64 -> ``(N, 1 + D)`` int64 ``(batch, coords)``."""
    cols = []
    rest = keys
    for b in reversed(list(base)):
        cols.append(rest % int(b))
        rest = rest // int(b)
    cols.append(rest)
    return torch.stack(cols[::-1], dim=1)


def _check_indices(indices: torch.Tensor, spatial_shape: Sequence[int], batch_size: int) -> None:
    if indices.ndim != 2 or indices.shape[1] != len(spatial_shape) + 1:
        raise ValueError(f"indices must have shape (N, {len(spatial_shape) + 1}), got {tuple(indices.shape)}")
    if indices.shape[0] == 0:
        return
    lo = indices.amin(0).tolist()
    hi = indices.amax(0).tolist()
    limits = [batch_size] + list(spatial_shape)
    if min(lo) < 0 or any(h >= lim for h, lim in zip(hi, limits)):
        raise ValueError(f"sparse indices out of range: min {lo}, max {hi}, limits "
                         f"(batch_size, spatial_shape) = {limits}")


def _sorted_keys(indices: torch.Tensor, pad: Sequence[int], spatial_shape: Sequence[int]):
    """Sorted keys of the sites padded by ``pad`` on each side, the row of each, and the radix."""
    idx = indices.to(torch.int64)
    base = [int(s) + 2 * int(p) for s, p in zip(spatial_shape, pad)]
    coords = idx[:, 1:] + torch.tensor(list(pad), dtype=torch.int64, device=idx.device)
    keys = encode_keys(idx[:, 0], coords, base)
    sorted_keys, order = torch.sort(keys)
    if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        raise ValueError("sparse indices contain duplicate sites")
    return sorted_keys, order, base


def _offset_grid(kernel_size: Sequence[int]) -> torch.Tensor:
    """``(K, D)`` int64 kernel positions ``(k_1, ..., k_D)`` in row-major (weight) order."""
    ranges = [torch.arange(int(k), dtype=torch.int64) for k in kernel_size]
    return torch.cartesian_prod(*ranges).reshape(-1, len(kernel_size))


def _segments(flat_k: torch.Tensor, kernel_volume: int) -> tuple[list[int], list[int]]:
    counts = torch.bincount(flat_k, minlength=kernel_volume).tolist()
    offsets = [k for k, c in enumerate(counts) if c > 0]
    return offsets, [counts[k] for k in offsets]


def _half_pairs_by_columns(sorted_keys: torch.Tensor, key_delta: torch.Tensor, k_last: int, centre: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs of the first ``centre`` offsets with one search per kernel *column*.

    The last dimension has stride 1 in the key, so the ``k_last`` neighbours along it occupy a
    key range ``[q0, q0 + k_last)`` whose present keys are consecutive in ``sorted_keys``: one
    ``searchsorted`` for ``q0`` and ``k_last`` look-ups after it find them all. The centre
    column's lower half needs no search (the previous ``r`` sorted keys). Needs dilation 1 along
    the last dimension and keys padded by the kernel radius (so ranges never cross columns).

    Returns ``(k, out_pos, in_pos)`` int64 in k-major order (positions in ``sorted_keys``).
    """
    n = sorted_keys.numel()
    device = sorted_keys.device
    r = k_last // 2
    n_cols = centre // k_last  # whole columns before the centre column
    table = torch.full((centre, n), -1, dtype=torch.int64, device=device)
    if n_cols:
        q0 = sorted_keys.unsqueeze(0) + key_delta[0:n_cols * k_last:k_last].unsqueeze(1)  # (C, N), dz = 0
        p0 = torch.searchsorted(sorted_keys, q0)
        for t in range(k_last):
            pos = p0 + t
            dz = sorted_keys[pos.clamp(max=n - 1)] - q0
            c_i, row = ((pos < n) & (dz >= 0) & (dz < k_last)).nonzero(as_tuple=True)
            table[c_i * k_last + dz[c_i, row], row] = pos[c_i, row]
    rows = torch.arange(n, device=device)
    for m in range(1, r + 1):  # centre column, neighbours below: sorted positions i - m
        prev = (rows - m).clamp(min=0)
        diff = sorted_keys - sorted_keys[prev]
        row = ((rows >= m) & (diff >= 1) & (diff <= r)).nonzero(as_tuple=True)[0]
        table[n_cols * k_last + r - diff[row], row] = prev[row]
    k_half, out_pos = (table >= 0).nonzero(as_tuple=True)
    return k_half, out_pos, table[k_half, out_pos]


def build_subm_map(indices: torch.Tensor, spatial_shape: Sequence[int], batch_size: int,
                   kernel_size: Sequence[int], dilation: Sequence[int]) -> KernelMap:
    """Submanifold map: outputs are the input sites; offset ``k`` links ``o + d (k - k//2)`` to ``o``.

    Args:
        indices: ``(N, 1 + D)`` integer sites (any integer dtype, any strides).
        spatial_shape, batch_size: the extent of the sites.
        kernel_size: odd sizes (like spconv, even SubM kernels are rejected).
        dilation: kernel dilation.

    The pairs of offset ``k`` are the pairs of the mirrored offset ``K - 1 - k`` swapped, so only
    half of the offsets are looked up. The centre offset is the identity and is not stored.
    """
    if any(int(k) % 2 == 0 for k in kernel_size):
        raise ValueError(f"SubM convolution needs odd kernel sizes (as in spconv), got {list(kernel_size)}")
    _check_indices(indices, spatial_shape, batch_size)
    n = int(indices.shape[0])
    kv = 1
    for k in kernel_size:
        kv *= int(k)
    centre = (kv - 1) // 2
    device = indices.device
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if kv == 1 or n == 0:
        return KernelMap(empty, empty, [], [], centre, n, n, kv, mirrored=True)
    radius = [int(d) * (int(k) // 2) for k, d in zip(kernel_size, dilation)]
    sorted_keys, order, base = _sorted_keys(indices, radius, spatial_shape)
    # Key step of one unit along each dimension, then the key delta of every offset.
    step = [1] * len(base)
    for j in range(len(base) - 2, -1, -1):
        step[j] = step[j + 1] * base[j + 1]
    grid = _offset_grid(kernel_size)[:centre].to(device)  # first half, flat ids 0 .. centre-1
    delta = (grid - torch.tensor([int(k) // 2 for k in kernel_size], device=device)) \
        * torch.tensor([int(d) for d in dilation], device=device)
    key_delta = delta @ torch.tensor(step, dtype=torch.int64, device=device)  # (H,)
    if int(dilation[-1]) == 1:
        k_half, out_pos, in_pos = _half_pairs_by_columns(sorted_keys, key_delta, int(kernel_size[-1]), centre)
    else:
        # Query in sorted-key order: consecutive queries follow nearby search paths.
        query = sorted_keys.unsqueeze(0) + key_delta.unsqueeze(1)  # (H, N)
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=n - 1)
        found = sorted_keys[pos] == query
        k_half, out_pos = found.nonzero(as_tuple=True)  # k-major order
        in_pos = pos[k_half, out_pos]
    if bool((order == torch.arange(n, device=device)).all()):
        in_row, out_row = in_pos, out_pos  # indices were already sorted
    else:
        in_row, out_row = order[in_pos], order[out_pos]
    # Mirror: offset kv-1-k has the same pairs with in/out swapped.
    in_idx = torch.cat([in_row, out_row])
    out_idx = torch.cat([out_row, in_row])
    # Stored order: half offsets ascending, then their mirrors (descending flat id).
    half_counts = torch.bincount(k_half, minlength=centre).tolist()
    used = [k for k in range(centre) if half_counts[k] > 0]
    seg_ids = used + [kv - 1 - k for k in used]
    seg_counts = [half_counts[k] for k in used] * 2
    return KernelMap(in_idx, out_idx, seg_ids, seg_counts, centre, n, n, kv, mirrored=True)


def build_conv_map(indices: torch.Tensor, spatial_shape: Sequence[int], batch_size: int,
                   kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                   dilation: Sequence[int]) -> tuple[KernelMap, torch.Tensor, list[int]]:
    """Map of a regular (strided) sparse convolution.

    Output site ``o`` exists when some input ``i`` has ``i = o * s - p + d * k`` for an offset
    ``k``; outputs outside the output spatial shape are dropped (as in spconv).

    Returns:
        ``(kmap, out_indices, out_spatial_shape)`` with ``out_indices`` ``(N_out, 1 + D)`` int32,
        sorted by ``(batch, c_1, ..., c_D)``.
    """
    _check_indices(indices, spatial_shape, batch_size)
    out_shape = conv_output_shape(spatial_shape, kernel_size, stride, padding, dilation)
    ndim = len(spatial_shape)
    device = indices.device
    kv = 1
    for k in kernel_size:
        kv *= int(k)
    n = int(indices.shape[0])
    idx = indices.to(torch.int64)
    # Per dimension j: candidate output coordinate for each kernel position (K_j, N) and validity.
    valid = None
    out_coord = []
    for j in range(ndim):
        kj = torch.arange(int(kernel_size[j]), dtype=torch.int64, device=device)
        num = idx[:, 1 + j].unsqueeze(0) + int(padding[j]) - int(dilation[j]) * kj.unsqueeze(1)
        o = torch.div(num, int(stride[j]), rounding_mode="floor")
        ok = (num - o * int(stride[j]) == 0) & (o >= 0) & (o < out_shape[j])
        out_coord.append(o)
        shape = [1] * ndim + [n]
        shape[j] = int(kernel_size[j])
        ok = ok.reshape(shape)
        valid = ok if valid is None else valid & ok
    assert valid is not None
    nz = valid.nonzero()  # (M, D + 1) rows (k_1, ..., k_D, in_row), k-major
    in_row = nz[:, ndim]
    cols = [out_coord[j][nz[:, j], in_row] for j in range(ndim)]
    flat_k = torch.zeros_like(in_row)
    for j in range(ndim):
        flat_k = flat_k * int(kernel_size[j]) + nz[:, j]
    out_keys = encode_keys(idx[in_row, 0], torch.stack(cols, 1) if cols else in_row[:, None], out_shape)
    uniq, out_row = torch.unique(out_keys, sorted=True, return_inverse=True)
    out_indices = decode_keys(uniq, out_shape).to(torch.int32)
    offsets, counts = _segments(flat_k, kv)
    kmap = KernelMap(in_row, out_row.reshape(-1), offsets, counts, None, n, int(uniq.numel()), kv)
    return kmap, out_indices, out_shape
