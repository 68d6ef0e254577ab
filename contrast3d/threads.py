"""Thread pools of a process: torch's, numba's and the BLAS library numpy links (OpenBLAS / MKL).

Why the BLAS pool matters: the augmentations multiply ``(N, 3)`` coordinate and normal arrays by
``(3, 3)`` matrices (:func:`contrast3d.data.transforms.apply_affine`). numpy hands that product to
its BLAS, whose default pool has one thread per core. In a data-loader worker that pool competes
with the other workers and the training threads on the same cores, and its busy-waiting threads
made one 360k-point product ~125 ms instead of ~5 ms (measured on 2 cores next to a 2-process
job; a semantic-segmentation training sample took 0.77 s instead of 0.36 s). Loader workers are
single-threaded by design (torch sets one thread in each), so their BLAS pool is too.
"""
from __future__ import annotations


def limit_blas(threads: int) -> None:
    """Cap the BLAS pool(s) loaded in this process at ``threads`` (for the rest of the process).

    (:mod:`threadpoolctl`; setting ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` only works before numpy is imported.)
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, int(threads)), user_api="blas")


def limit_threads(threads: int) -> None:
    """One process, ``threads`` threads: torch's intra-op pool, numba's pool (at most its
    ``NUMBA_NUM_THREADS``) and the BLAS pool."""
    import numba
    import torch

    threads = max(1, int(threads))
    # NUMBA_NUM_THREADS is set on numba.config at import time, invisibly to a type checker.
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    torch.set_num_threads(threads)
    limit_blas(threads)
