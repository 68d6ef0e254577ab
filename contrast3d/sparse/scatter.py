"""Row scatter-add ``dst[idx[p]] += src[p]``: the scatter of the gather path, without ``index_add_``'s cost on CPU.

The gather path of :mod:`contrast3d.sparse.functional` ends every kernel offset with a scatter of
``(M_k, C)`` products into the output rows (forward) or the input-gradient rows (backward).
torch's CPU ``index_add_`` runs that as one small strided add per index: in a SpUNet-34 step it
was ~17 % of the time at one thread. Here the same sum is a numba loop over the pairs adding row
``src[p]`` to ``dst[idx[p]]``, in pair order -- the order ``index_add_`` uses, so float64 results
are bit-identical to it, duplicate indices are fine, and the kernel releases the GIL (so it is
safe to call from several Python threads).

Measured (1 thread, process CPU time, 36k pairs into 60k rows, median of 7): ``index_add_`` 1.18
/ 1.73 / 2.25 / 2.85 ms vs this kernel 0.30 / 0.46 / 0.96 / 1.46 ms at 16 / 32 / 64 / 96 channels.

When (``auto``, the default): **only when torch runs on one thread**, by measurement
(``benchmarks/sparse_conv.py``, SpUNet fwd+bwd on 2 x 50k voxels, 5 interleaved repeats, load
1.0-1.8 on 2 cores; the default conv path with this kernel over the original gather path with
``index_add_``): at 1 thread SpUNet-34 0.92, SpUNet-14 0.98; at 2 threads 1.07 and 1.06, where the
same comparison with ``index_add_`` in both gave 0.99 and 0.95 (on 2 x 20k voxels) -- at 2
threads the serial kernel is slower than ``index_add_``, which uses the second core.
A parallel kernel (channels split into blocks, one numba thread per
block) was measured and dropped: beside torch's OpenMP pool, whose threads keep spinning after each
GEMM, a numba pool on 2 cores made the 2-thread SpUNet-34 forward + backward 1.57x slower
(process CPU time 1.49x: the two pools' threads compete for the cores). One thread per process is
what ``contrast3d bench`` workers and ``torchrun`` processes run.

Used on CPU for float32 / float64 contiguous tensors; anything else (CUDA, half precision, more
than one torch thread under ``auto``, ``$CONTRAST3D_SPARSE_SCATTER=torch``) goes to ``index_add_``;
``$CONTRAST3D_SPARSE_SCATTER=numba`` uses the kernel at any thread count.
"""
from __future__ import annotations

import os

import numba as nb
import numpy as np
import torch

__all__ = ["scatter_add_rows", "ENV_VAR"]

#: ``torch`` forces ``index_add_``; ``numba`` the kernel below on CPU; ``auto`` (default) the kernel on CPU
#: at one torch thread only (measured: module docstring).
ENV_VAR = "CONTRAST3D_SPARSE_SCATTER"


@nb.njit(cache=True, nogil=True)
def _scatter_serial(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> None:  # pragma: no cover - numba
    c = src.shape[1]
    for p in range(idx.shape[0]):
        r = idx[p]
        for j in range(c):
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

    Same result as ``dst.index_add_(0, idx, src)`` (bit-identical in float64 on CPU: the sum per
    element runs in pair order).
    """
    if idx.numel() == 0:
        return dst
    mode = _mode()
    if mode == "torch" or (mode == "auto" and torch.get_num_threads() > 1) or not _numba_ok(dst, idx, src):
        return dst.index_add_(0, idx, src)
    lo, hi = torch.aminmax(idx)
    if int(lo) < 0 or int(hi) >= dst.shape[0]:
        raise IndexError(f"scatter index out of range [0, {dst.shape[0]})")
    _scatter_serial(dst.numpy(), idx.numpy(), src.numpy())
    return dst
