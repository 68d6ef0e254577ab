"""Row scatter-add ``dst[idx[p]] += src[p]``: the scatter of the gather path, without ``index_add_``'s cost on CPU.

The gather path of :mod:`contrast3d.sparse.functional` ends every kernel offset with a scatter of
``(M_k, C)`` products into the output rows (forward) or the input-gradient rows (backward).
torch's CPU ``index_add_`` runs that as one small strided add per index, serially: in a SpUNet-34
step it was ~17 % of the time at one thread and the part that did not get faster with a second
thread (Amdahl: 1 - 0.17 / 2 caps two threads at ~1.7x, the 1.6-1.7x measured in issue 18).

Here the same sum is a numba kernel over plain arrays:

* one thread: a loop over the pairs adding row ``src[p]`` to ``dst[idx[p]]``, in pair order --
  the order ``index_add_`` uses, so float64 results are bit-identical to it;
* ``T > 1`` threads (``torch.get_num_threads()``): the **channels** are split into ``T``
  contiguous blocks and each numba thread runs the whole pair loop on its block. Each output
  element is still summed by one thread in pair order, so the result does not depend on the
  thread count (bit-identical at 1, 2, ... threads) and duplicate indices -- possible in the input
  gradient when input coordinates repeat -- need no atomics or uniqueness check. Rows narrower
  than 16 channels per block (one 64-byte cache line of float32) use fewer blocks.

Measured (1 thread, process CPU time, 36k pairs into 60k rows, median of 7): ``index_add_`` 1.18
/ 1.73 / 2.25 / 2.85 ms vs this kernel 0.30 / 0.46 / 0.96 / 1.46 ms at 16 / 32 / 64 / 96 channels.

Used on CPU for float32 / float64 contiguous tensors; anything else (CUDA, half precision,
``$CONTRAST3D_SPARSE_SCATTER=torch``) goes to ``index_add_``. numba's threads are set to torch's
thread count on every call (so ``torchrun``'s one thread per process holds here too). numba's
``workqueue`` pool (the layer ``contrast3d`` selects) is not re-entrant, so a call made while
another Python thread is inside the parallel kernel runs the serial one instead.
"""
from __future__ import annotations

import os
import threading

import numba as nb
import numpy as np
import torch

__all__ = ["scatter_add_rows", "ENV_VAR"]

#: ``torch`` forces ``index_add_``; ``numba`` / ``auto`` (default) use the kernels below on CPU.
ENV_VAR = "CONTRAST3D_SPARSE_SCATTER"
#: Fewest channels one thread's block gets (16 float32 = one cache line).
MIN_BLOCK = 16
_POOL = threading.Lock()


@nb.njit(cache=True, nogil=True)
def _scatter_serial(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> None:  # pragma: no cover - numba
    c = src.shape[1]
    for p in range(idx.shape[0]):
        r = idx[p]
        for j in range(c):
            dst[r, j] += src[p, j]


@nb.njit(cache=True, nogil=True, parallel=True)
def _scatter_blocks(dst: np.ndarray, idx: np.ndarray, src: np.ndarray, blocks: int) -> None:  # pragma: no cover
    c = src.shape[1]
    for b in nb.prange(blocks):
        c0 = b * c // blocks
        c1 = (b + 1) * c // blocks
        for p in range(idx.shape[0]):
            r = idx[p]
            for j in range(c0, c1):
                dst[r, j] += src[p, j]


def _mode() -> str:
    name = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if name not in ("auto", "numba", "torch"):
        raise ValueError(f"{ENV_VAR} must be 'auto', 'numba' or 'torch', got {name!r}")
    return name


def _numba_ok(dst: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> bool:
    return (dst.device.type == "cpu" and src.device.type == "cpu" and idx.device.type == "cpu"
            and dst.dtype in (torch.float32, torch.float64) and src.dtype == dst.dtype
            and idx.dtype == torch.int64 and dst.dim() == 2 and src.dim() == 2
            and dst.is_contiguous() and src.is_contiguous() and idx.is_contiguous()
            and not dst.requires_grad and not src.requires_grad)


def scatter_add_rows(dst: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """In place ``dst[idx[p]] += src[p]`` for every ``p``; returns ``dst``.

    Args:
        dst: ``(N, C)`` accumulator.
        idx: ``(M,)`` int64 rows of ``dst`` in ``[0, N)`` (may repeat).
        src: ``(M, C)`` rows to add, same dtype and device as ``dst``.

    Same result as ``dst.index_add_(0, idx, src)`` (bit-identical in float64 on CPU; the sum per
    element runs in pair order at any thread count).
    """
    if idx.numel() == 0:
        return dst
    if _mode() == "torch" or not _numba_ok(dst, idx, src):
        return dst.index_add_(0, idx, src)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= dst.shape[0]):
        raise IndexError(f"scatter index out of range [0, {dst.shape[0]})")
    threads = max(1, min(torch.get_num_threads(), int(getattr(nb.config, "NUMBA_NUM_THREADS", 1))))
    blocks = min(threads, src.shape[1] // MIN_BLOCK)
    d, i, s = dst.numpy(), idx.numpy(), src.numpy()
    # numba's workqueue pool (contrast3d's default layer) must not be entered by two Python threads at
    # once: a second thread meanwhile runs the serial kernel (same result, the order is per element).
    if blocks > 1 and _POOL.acquire(blocking=False):
        try:
            nb.set_num_threads(blocks)
            _scatter_blocks(d, i, s, blocks)
        finally:
            _POOL.release()
    else:
        _scatter_serial(d, i, s)
    return dst
