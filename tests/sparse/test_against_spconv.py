"""Our ops against spconv 2.x's on CPU at one thread (spconv's CPU path is only right there).

Skipped when ``spconv.pytorch`` does not import. Indices are handed to spconv contiguous
(spconv misreads non-contiguous index tensors). spconv 2.3.8's CPU backward asks for a CUDA
stream; the test patches that look-up to return stream 0 when CUDA is absent.
"""
from __future__ import annotations

import pytest
import torch
from sparse_testlib import random_sites, record

import contrast3d.sparse as ours

spconv = pytest.importorskip("spconv.pytorch")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pair(kind):
    if kind == "subm3":
        return ours.SubMConv3d(4, 5, 3, indice_key="k"), spconv.SubMConv3d(4, 5, 3, indice_key="k")
    if kind == "subm5":
        return ours.SubMConv3d(4, 5, 5), spconv.SubMConv3d(4, 5, 5)
    if kind == "conv2s2":
        return ours.SparseConv3d(4, 5, 2, 2, indice_key="k"), spconv.SparseConv3d(4, 5, 2, 2, indice_key="k")
    return ours.SparseConv3d(4, 5, 3, 2, 1, indice_key="k"), spconv.SparseConv3d(4, 5, 3, 2, 1, indice_key="k")


@pytest.mark.parametrize("kind", ["subm3", "subm5", "conv2s2", "conv3s2p1"])
def test_matches_spconv(gen, one_thread, monkeypatch, kind):
    if not torch.cuda.is_available():
        import spconv.pytorch.ops as spconv_ops
        monkeypatch.setattr(spconv_ops, "get_current_stream", lambda: 0)
    shape = (9, 7, 8)
    idx = random_sites(2, shape, 0.25, gen).contiguous()
    feats = torch.randn(idx.shape[0], 4, generator=gen)
    fa, fb = feats.clone().requires_grad_(True), feats.clone().requires_grad_(True)
    a, b = _pair(kind)
    b.load_state_dict(a.state_dict())  # same names and layout
    ya = a(ours.SparseConvTensor(fa, idx, shape, 2))
    yb = b(spconv.SparseConvTensor(fb, idx, list(shape), 2))
    assert ya.spatial_shape == list(yb.spatial_shape)
    da, db = ya.dense(), yb.dense()
    record(f"vs-spconv {kind}", "forward_fp32", da, db, tol=1e-5)
    g = torch.randn(da.shape, generator=gen)
    (da * g).sum().backward()
    (db * g).sum().backward()
    record(f"vs-spconv {kind}", "grad_feat_fp32", fa.grad, fb.grad, tol=1e-5)
    record(f"vs-spconv {kind}", "grad_w_fp32", a.weight.grad, b.weight.grad, tol=1e-5)
    if kind.startswith("conv"):
        inv_a = ours.SparseInverseConv3d(5, 3, 2 if kind == "conv2s2" else 3, indice_key="k")
        inv_b = spconv.SparseInverseConv3d(5, 3, 2 if kind == "conv2s2" else 3, indice_key="k")
        inv_b.load_state_dict(inv_a.state_dict())
        za, zb = inv_a(ya.replace_feature(ya.features.detach())), inv_b(yb.replace_feature(yb.features.detach()))
        record(f"vs-spconv inverse-{kind}", "forward_fp32", za.dense(), zb.dense(), tol=1e-5)
