"""The output-stationary (implicit GEMM) path against the per-offset gather path, float64.

Property test over random sparse inputs (3-D and 4-D, SubM / strided / inverse maps, several
channel widths and chunk sizes) plus the edge cases: no sites, no outputs, one voxel, batch
boundaries, duplicate sites; the neighbour table against a per-site dictionary reference; the
``auto`` rule on a hand-computed map; a whole SpUNet forward + backward on every path.
"""
from __future__ import annotations

import copy
import itertools
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sparse_testlib import random_sites, record

import contrast3d.sparse.functional as sparse_functional
from contrast3d.models import create_spunet
from contrast3d.sparse import (
    ImplicitGemmFunction,
    KernelMap,
    SparseConv3d,
    SparseConvFunction,
    SparseConvTensor,
    SparseInverseConv3d,
    SubMConv3d,
    build_conv_map,
    build_subm_map,
    select_impl,
)
from contrast3d.structures import PointBatch

DT = torch.float64
TOL = 1e-10


def _both_paths(kmap: KernelMap, c_in: int, c_out: int, gen: torch.Generator, label: str,
                need_x: bool = True) -> None:
    """Forward and both gradients of the two paths on random data must agree to ``TOL``."""
    ks = kmap.kernel_volume
    feats = torch.randn(kmap.n_in, c_in, generator=gen, dtype=DT).requires_grad_(need_x)
    weight = torch.randn(c_out, ks, c_in, generator=gen, dtype=DT).requires_grad_(True)
    g = torch.randn(kmap.n_out, c_out, generator=gen, dtype=DT)
    params = (feats, weight) if need_x else (weight,)
    results = []
    for fn in (SparseConvFunction, ImplicitGemmFunction):
        out = fn.apply(feats, weight, kmap)
        assert out.shape == (kmap.n_out, c_out)
        results.append((out, *torch.autograd.grad(out, params, g, allow_unused=False)))
    names = ("forward", "grad_features", "grad_weight") if need_x else ("forward", "grad_weight")
    for name, new, old in zip(names, results[1], results[0]):
        record(f"{label} implicit-vs-gather", name, new, old, TOL)


MAP_KINDS = {  # name: (subm, kernel, stride, padding, dilation, inverse)
    "subm1": (True, 1, 1, 0, 1, False), "subm3": (True, 3, 1, 0, 1, False), "subm3d2": (True, 3, 1, 0, 2, False),
    "subm5": (True, 5, 1, 0, 1, False), "conv2s2": (False, 2, 2, 0, 1, False),
    "conv3s2p1": (False, 3, 2, 1, 1, False), "conv3s1": (False, 3, 1, 0, 1, False),
    "conv2s1p1": (False, 2, 1, 1, 1, False), "inv2s2": (False, 2, 2, 0, 1, True),
    "inv3s2p1": (False, 3, 2, 1, 1, True),
}


def _make_map(kind: str, idx: torch.Tensor, shape: list[int], batch: int) -> KernelMap:
    subm, k, s, p, d, inverse = MAP_KINDS[kind]
    ndim = len(shape)
    if subm:
        return build_subm_map(idx, shape, batch, [k] * ndim, [d] * ndim)
    kmap, _, _ = build_conv_map(idx, shape, batch, [k] * ndim, [s] * ndim, [p] * ndim, [d] * ndim)
    return kmap.transposed() if inverse else kmap


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(ndim=st.sampled_from([3, 4]), kind=st.sampled_from(sorted(MAP_KINDS)), batch=st.integers(1, 3),
       extent=st.lists(st.integers(2, 7), min_size=4, max_size=4), density=st.sampled_from([0.0, 0.05, 0.2, 0.5]),
       c_in=st.sampled_from([1, 2, 3, 8]), c_out=st.sampled_from([1, 4, 5]),
       chunk=st.sampled_from([1, 200, 4096, None]), need_x=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_random_maps_match_gather_path(ndim, kind, batch, extent, density, c_in, c_out, chunk, need_x, seed):
    if ndim == 4 and kind == "subm5":
        kind = "subm3"  # 625-offset 4-D kernels only slow the test down
    gen = torch.Generator().manual_seed(seed)
    shape = extent[:ndim]
    idx = random_sites(batch, tuple(shape), density, gen, min_sites=0)
    try:
        kmap = _make_map(kind, idx, shape, batch)
    except ValueError as err:  # kernel larger than the grid: no valid output shape
        assert "not positive" in str(err)
        return
    old_chunk = sparse_functional.CHUNK_BYTES
    if chunk is not None:  # 1 byte: one row per chunk, every chunk boundary exercised
        sparse_functional.CHUNK_BYTES = chunk
    try:
        _both_paths(kmap, c_in, c_out, gen, f"random{ndim}d", need_x)
    finally:
        sparse_functional.CHUNK_BYTES = old_chunk


def _naive_table(idx: torch.Tensor, out_sites: torch.Tensor, k: int, s: int, p: int, transposed: bool = False):
    """``{(out_row, flat_offset): in_row}`` by a per-site loop over kernel positions (3-D)."""
    where = {tuple(r): i for i, r in enumerate(idx.tolist())}
    table = {}
    for o, site in enumerate(out_sites.tolist()):
        for f, off in enumerate(itertools.product(range(k), repeat=3)):
            nb = (site[0],) + tuple(c * s - p + d for c, d in zip(site[1:], off))
            if nb in where:
                table[(o, f)] = where[nb]
    if transposed:
        return {(i, f): o for (o, f), i in table.items()}
    return table


def _table_dict(kmap: KernelMap) -> dict[tuple[int, int], int]:
    table, cols = kmap.neighbour_table()
    assert table.shape == (kmap.n_out, len(cols)) and cols == sorted(cols)
    got = {}
    for o, j in (table < kmap.n_in).nonzero().tolist():
        got[(o, cols[j])] = int(table[o, j])
    return got


def test_neighbour_table_matches_site_loop(gen):
    shape = (6, 5, 7)
    idx = random_sites(2, shape, 0.25, gen)
    subm = build_subm_map(idx, shape, 2, [3] * 3, [1] * 3)
    assert _table_dict(subm) == _naive_table(idx, idx, 3, 1, 1)
    conv, out_sites, _ = build_conv_map(idx, shape, 2, [3] * 3, [2] * 3, [1] * 3, [1] * 3)
    want = _naive_table(idx, out_sites, 3, 2, 1)
    assert _table_dict(conv) == want
    # The inverse conv's table: the same links seen from the fine sites (the transposed map).
    assert _table_dict(conv.transposed()) == {(i, f): o for (o, f), i in want.items()}
    # Missing neighbours point at the appended zero row.
    table, _ = conv.neighbour_table()
    assert int(table.max()) <= conv.n_in and table.dtype == torch.int32


def test_maps_cache_their_table_and_transpose(gen):
    idx = random_sites(1, (5, 5, 5), 0.3, gen)
    kmap, _, _ = build_conv_map(idx, (5, 5, 5), 1, [2] * 3, [2] * 3, [0] * 3, [1] * 3)
    assert kmap.neighbour_table()[0] is kmap.neighbour_table()[0]
    t = kmap.transposed()
    assert t is kmap.transposed() and t.transposed() is kmap
    assert t.neighbour_table()[0] is kmap.transposed().neighbour_table()[0]
    assert not kmap.mirrored and build_subm_map(idx, (5, 5, 5), 1, [3] * 3, [1] * 3).mirrored
    # Copies drop the derived cache (it holds a weak reference) and keep the pairs.
    for clone in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert torch.equal(clone.in_idx, t.in_idx) and clone._cache == {} and t._cache
        assert torch.equal(clone.neighbour_table()[0], t.neighbour_table()[0])


def test_no_sites_and_no_outputs(gen, impl):
    # No sites at all: every conv returns (0, C_out) and zero weight gradients.
    for conv in (SubMConv3d(2, 3, 3), SparseConv3d(2, 3, 2, 2)):
        feats = torch.zeros(0, 2, dtype=DT, requires_grad=True)
        y = conv.double()(SparseConvTensor(feats, torch.zeros(0, 4, dtype=torch.int32), (4, 4, 4), 1))
        y.features.sum().backward()
        assert y.features.shape == (0, 3) and float(conv.weight.grad.abs().sum()) == 0
    # Sites but no outputs: every site lies past the output shape (extent 7, k2 s2 -> 3).
    idx = torch.tensor([[0, 6, 0, 0], [1, 6, 6, 6]], dtype=torch.int32)
    feats = torch.randn(2, 2, generator=gen, dtype=DT, requires_grad=True)
    down = SparseConv3d(2, 3, 2, 2, bias=False, indice_key="d").double()
    y = down(SparseConvTensor(feats, idx, (7, 7, 7), 2))
    assert y.features.shape == (0, 3)
    up = SparseInverseConv3d(3, 2, 2, indice_key="d").double()
    z = up(y)  # back on the two sites, which receive nothing but the bias
    assert torch.equal(z.features, up.bias.detach().expand(2, 2))
    z.features.sum().backward()
    assert feats.grad is not None and float(feats.grad.abs().sum()) == 0
    _both_paths(y.indice_dict["d"].kmap, 2, 3, gen, "nooutput")
    _both_paths(y.indice_dict["d"].kmap.transposed(), 3, 2, gen, "nooutput")


def test_single_voxel_uses_only_the_centre(gen, impl):
    idx = torch.tensor([[0, 1, 2, 1]], dtype=torch.int32)
    feats = torch.randn(1, 3, generator=gen, dtype=DT)
    conv = SubMConv3d(3, 4, 5, bias=False).double()
    y = conv(SparseConvTensor(feats, idx, (4, 4, 4), 1))
    record(f"single-voxel {impl}", "forward", y.features, feats @ conv.weight[:, 2, 2, 2, :].T, 1e-14)
    kmap = build_subm_map(idx, (4, 4, 4), 1, [5] * 3, [1] * 3)
    assert kmap.neighbour_table()[1] == [62] and kmap.fill == 1.0
    _both_paths(kmap, 3, 4, gen, "single-voxel")


def test_batch_boundaries_do_not_leak(gen, impl):
    # The same and adjacent coordinates in two batch entries, on the first and last rows of the grid.
    idx = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 3, 3, 3], [0, 3, 3, 3], [1, 3, 3, 2]],
                       dtype=torch.int32)
    feats = torch.randn(6, 2, generator=gen, dtype=DT)
    conv = SubMConv3d(2, 3, 3).double()
    both = conv(SparseConvTensor(feats, idx, (4, 4, 4), 2)).features
    for b in (0, 1):
        mine = (idx[:, 0] == b).nonzero().flatten()
        alone_idx = idx[mine].clone()
        alone_idx[:, 0] = 0
        alone = conv(SparseConvTensor(feats[mine], alone_idx, (4, 4, 4), 1)).features
        record(f"batch-boundary {impl}", "forward", both[mine], alone, 1e-14)
    kmap = build_subm_map(idx, (4, 4, 4), 2, [3] * 3, [1] * 3)
    table, _ = kmap.neighbour_table()
    linked = table < kmap.n_in
    rows, cols = linked.nonzero(as_tuple=True)
    assert torch.equal(idx[rows, 0], idx[table[rows, cols].long(), 0])  # neighbours share the batch index
    _both_paths(kmap, 2, 3, gen, "batch-boundary")


def test_duplicate_sites_are_rejected_on_every_path(impl):
    dup = torch.tensor([[0, 1, 1, 1], [0, 2, 1, 1], [0, 1, 1, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="duplicate"):
        SubMConv3d(1, 1, 3)(SparseConvTensor(torch.randn(3, 1), dup, (4, 4, 4), 1))


@pytest.mark.parametrize("c_in,c_out", [(1, 1), (6, 32), (16, 16), (32, 48)])
def test_wider_channels_and_4d(gen, c_in, c_out):
    idx = random_sites(2, (6, 5, 6), 0.3, gen)
    _both_paths(build_subm_map(idx, (6, 5, 6), 2, [3] * 3, [1] * 3), c_in, c_out, gen, "widths")
    idx4 = random_sites(2, (4, 3, 4, 3), 0.2, gen)
    kmap4, _, _ = build_conv_map(idx4, (4, 3, 4, 3), 2, [3] * 4, [2] * 4, [1] * 4, [1] * 4)
    _both_paths(kmap4, c_in, c_out, gen, "widths4d")
    _both_paths(kmap4.transposed(), c_out, c_in, gen, "widths4d")


def test_auto_rule_on_a_hand_computed_map(monkeypatch):
    # Three sites on a line along the last axis, k = 3: 3 centre pairs + 2 pairs at each of the
    # two used z offsets -> 7 pairs in a 3 x 3 table, fill 7/9, waste (9/7 - 1) C_in C_out.
    idx = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 1, 2]], dtype=torch.int32)
    kmap = build_subm_map(idx, (3, 3, 3), 1, [3] * 3, [1] * 3)
    assert kmap.used_offsets() == [12, 13, 14] and kmap.num_pairs == 7
    assert kmap.fill == pytest.approx(7 / 9)
    assert select_impl(kmap, 59, 59, training=True) == "implicit"  # waste 994.6 <= 1000
    assert select_impl(kmap, 60, 60, training=True) == "gather"  # waste 1028.6
    assert select_impl(kmap, 60, 60, training=False) == "implicit"  # <= 1500 without autograd
    assert select_impl(kmap, 73, 73, training=False) == "gather"  # 1522.6
    conv, _, _ = build_conv_map(idx, (3, 3, 3), 1, [1] * 3, [1] * 3, [0] * 3, [1] * 3)
    assert conv.fill == 1.0 and select_impl(conv, 1, 1) == "gather"  # strided/inverse: always gather
    monkeypatch.setenv("CONTRAST3D_SPARSE_IMPL", "fastest")
    with pytest.raises(ValueError, match="CONTRAST3D_SPARSE_IMPL"):
        SubMConv3d(1, 1, 3)(SparseConvTensor(torch.randn(3, 1), idx, (3, 3, 3), 1))


def test_spunet_is_the_same_on_every_path(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    grids = [random_sites(1, (16, 14, 12), 0.08, gen)[:, 1:].long() for _ in range(2)]
    grid = torch.cat(grids)
    batch = PointBatch(coord=grid.double() * 0.02, feat=torch.randn(len(grid), 4, generator=gen, dtype=DT),
                       grid_coord=grid, offset=torch.cumsum(torch.tensor([len(g) for g in grids]), 0))
    torch.manual_seed(0)
    model = create_spunet("spunet-tiny", 4, 5).double().train()
    g = torch.randn(len(grid), 5, generator=gen, dtype=DT)
    results = {}
    for path in ("gather", "implicit", "auto"):
        monkeypatch.setenv("CONTRAST3D_SPARSE_IMPL", path)
        model.zero_grad(set_to_none=True)
        out = model(batch)
        (out * g).sum().backward()
        results[path] = [out.detach()] + [p.grad.clone() for p in model.parameters()]
    for path in ("implicit", "auto"):
        for i, (a, b) in enumerate(zip(results[path], results["gather"])):
            record(f"spunet-tiny {path}", "forward" if i == 0 else "grads", a, b, TOL)
