"""Loader workers are capped at the CPUs the process may use (more only add contention)."""
from __future__ import annotations

import pytest

from contrast3d.engine import data as D


def test_workers_capped_at_available_cpus(monkeypatch):
    monkeypatch.setattr(D, "available_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="num_workers=8 but only 2 CPU"):
        assert D.usable_workers(8) == 2
    assert D.usable_workers(8, warn=False) == 2
    assert D.usable_workers(2) == 2 and D.usable_workers(0) == 0


class _BlasThreads:
    """Each sample: the BLAS pool sizes the loading process sees."""

    def __len__(self):
        return 2

    def get_sample(self, index, rng):
        from threadpoolctl import threadpool_info

        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_loader_workers_run_one_blas_thread():
    """The workers' BLAS pools are capped at one thread (contrast3d.threads), whatever the parent's is."""
    from threadpoolctl import threadpool_info, threadpool_limits

    if not [p for p in threadpool_info() if p["user_api"] == "blas"]:
        pytest.skip("numpy links no BLAS that threadpoolctl controls")
    with threadpool_limits(limits=2, user_api="blas"):
        loader = D.build_loader(_BlasThreads(), lambda batch: batch, D.LoaderConfig(batch_size=1, num_workers=1),
                                seed=0)
        loader.batch_sampler.set_epoch(0)
        seen = [n for batch in loader for sample in batch for n in sample]
    assert seen and set(seen) == {1}


def test_limit_threads_caps_torch_numba_and_blas():
    import numba
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from contrast3d.threads import limit_threads

    before = (torch.get_num_threads(), numba.get_num_threads())
    with threadpool_limits(limits=None):  # restores the BLAS pools afterwards
        try:
            limit_threads(1)
            assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
        finally:
            torch.set_num_threads(before[0])
            numba.set_num_threads(before[1])
