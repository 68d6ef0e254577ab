"""The gather path's numba scatter against torch's ``index_add_`` (the slow, obvious reference).

Bit-identical in float64 (each element is summed in pair order), at one and two torch
threads, with repeated indices, odd channel counts and empty inputs; the gather path with the
numba scatter against the same path with ``index_add_`` on random maps; the fallbacks.
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sparse_testlib import random_sites

from contrast3d.sparse import SparseConvFunction, build_conv_map, build_subm_map
from contrast3d.sparse.scatter import ENV_VAR, scatter_add_rows


@pytest.fixture
def threads():
    """Restore torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(n=st.integers(1, 40), m=st.integers(0, 200), c=st.sampled_from([1, 3, 16, 17, 32, 40, 64]),
       n_threads=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2 ** 16))
def test_matches_index_add_bit_for_bit(n, m, c, n_threads, seed):
    before, mode = torch.get_num_threads(), os.environ.get(ENV_VAR)
    torch.set_num_threads(n_threads)
    os.environ[ENV_VAR] = "numba"  # the kernel at every thread count (auto uses it at one thread only)
    try:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (m,), generator=gen)  # repeats when m > n
        src = torch.randn(m, c, generator=gen, dtype=torch.float64)
        ref = torch.randn(n, c, generator=gen, dtype=torch.float64)
        got = ref.clone()
        ref.index_add_(0, idx, src)
        assert scatter_add_rows(got, idx, src) is got
        assert torch.equal(got, ref)
    finally:
        torch.set_num_threads(before)
        if mode is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = mode


def test_float32_and_thread_count_independent(threads, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "numba")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 500, (20000,), generator=gen)
    src = torch.randn(20000, 48, generator=gen)
    outs = []
    for t in (1, 2):
        torch.set_num_threads(t)
        outs.append(scatter_add_rows(torch.zeros(500, 48), idx, src))
    assert torch.equal(outs[0], outs[1])  # same summation order at any thread count
    ref = torch.zeros(500, 48, dtype=torch.float64).index_add_(0, idx, src.double())
    assert torch.allclose(outs[0].double(), ref, rtol=1e-5, atol=1e-4)


def test_fallbacks_give_index_add(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 10, (50,), generator=gen)
    src = torch.randn(8, 50, generator=gen).t()  # non-contiguous -> index_add_
    assert not src.is_contiguous()
    ref = torch.zeros(10, 8).index_add_(0, idx, src)
    assert torch.equal(scatter_add_rows(torch.zeros(10, 8), idx, src), ref)
    half = src.contiguous().to(torch.bfloat16)
    assert torch.equal(scatter_add_rows(torch.zeros(10, 8, dtype=torch.bfloat16), idx, half),
                       torch.zeros(10, 8, dtype=torch.bfloat16).index_add_(0, idx, half))
    monkeypatch.setenv(ENV_VAR, "torch")
    assert torch.equal(scatter_add_rows(torch.zeros(10, 8), idx, src.contiguous()), ref)
    monkeypatch.setenv(ENV_VAR, "cuda-please")
    with pytest.raises(ValueError, match=ENV_VAR):
        scatter_add_rows(torch.zeros(10, 8), idx, src.contiguous())


def test_auto_uses_the_kernel_at_one_thread_only(threads, monkeypatch):
    import contrast3d.sparse.scatter as scatter

    calls = []
    monkeypatch.setattr(scatter, "_scatter_serial", lambda d, i, s: calls.append(1))
    monkeypatch.setenv(ENV_VAR, "auto")
    for t in (1, 2):
        torch.set_num_threads(t)
        scatter_add_rows(torch.zeros(4, 16), torch.tensor([0, 1]), torch.ones(2, 16))
    assert calls == [1]
    monkeypatch.setenv(ENV_VAR, "numba")
    scatter_add_rows(torch.zeros(4, 16), torch.tensor([0, 1]), torch.ones(2, 16))
    assert calls == [1, 1]


def test_empty_and_out_of_range(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "numba")
    dst = torch.ones(3, 4)
    assert torch.equal(scatter_add_rows(dst, torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)), torch.ones(3, 4))
    with pytest.raises(IndexError):
        scatter_add_rows(torch.zeros(3, 4), torch.tensor([0, 3]), torch.ones(2, 4))
    with pytest.raises(IndexError):
        scatter_add_rows(torch.zeros(3, 4), torch.tensor([-1]), torch.ones(1, 4))


@pytest.mark.parametrize("kind", ["subm3", "conv2s2", "inv2s2"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_gather_path_same_with_either_scatter(kind, n_threads, monkeypatch, threads):
    torch.set_num_threads(n_threads)
    gen = torch.Generator().manual_seed(7)
    shape, batch = [10, 8, 8], 2
    idx = random_sites(batch, tuple(shape), 0.3, gen)
    if kind == "subm3":
        kmap = build_subm_map(idx, shape, batch, [3] * 3, [1] * 3)
    else:
        kmap, _, _ = build_conv_map(idx, shape, batch, [2] * 3, [2] * 3, [0] * 3, [1] * 3)
        kmap = kmap.transposed() if kind == "inv2s2" else kmap
    feats = torch.randn(kmap.n_in, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(33, kmap.kernel_volume, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(kmap.n_out, 33, generator=gen, dtype=torch.float64)
    results = []
    for mode in ("torch", "numba", "auto"):
        monkeypatch.setenv(ENV_VAR, mode)
        out = SparseConvFunction.apply(feats, weight, kmap)
        results.append((out, *torch.autograd.grad(out, (feats, weight), g)))
    for got in results[1:]:
        for new, old in zip(got, results[0]):
            assert torch.allclose(new, old, rtol=1e-10, atol=1e-10)


def test_concurrent_threads_get_the_same_sums(threads, monkeypatch):
    """Several Python threads scattering at once (the kernel releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    torch.set_num_threads(2)
    monkeypatch.setenv(ENV_VAR, "numba")
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 300, (30000,), generator=gen)
    src = torch.randn(30000, 64, generator=gen, dtype=torch.float64)
    ref = torch.zeros(300, 64, dtype=torch.float64).index_add_(0, idx, src)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: scatter_add_rows(torch.zeros(300, 64, dtype=torch.float64), idx, src),
                             range(16)))
    assert all(torch.equal(o, ref) for o in outs)
