import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from contrast3d.losses import PointInfoNCE, point_info_nce
from contrast3d.losses.info_nce import gather_rows


def naive_info_nce(q, k, tau, group=None, key_id=None):
    """Float64 loop: query i against its positive and every key j that is allowed as a negative."""
    q = q / q.norm(dim=1, keepdim=True)
    k = k / k.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(q.shape[0]):
        num = math.exp(float(q[i] @ k[i]) / tau)
        den = 0.0
        for j in range(q.shape[0]):
            if group is not None and int(group[i]) != int(group[j]):
                continue
            if key_id is not None and j != i and int(key_id[j]) == int(key_id[i]):
                continue
            den += math.exp(float(q[i] @ k[j]) / tau)
        total += -math.log(num / den)
    return total / q.shape[0]


@pytest.mark.parametrize("use_group", [False, True])
@pytest.mark.parametrize("use_ids", [False, True])
def test_matches_naive_loop(use_group, use_ids):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(37, 8, generator=g, dtype=torch.float64)
    k = torch.randn(37, 8, generator=g, dtype=torch.float64)
    group = torch.randint(0, 3, (37,), generator=g) if use_group else None
    key_id = torch.randint(0, 20, (37,), generator=g) if use_ids else None  # many repeats
    got = point_info_nce(q, k, tau=0.4, group=group, key_id=key_id)
    assert got.item() == pytest.approx(naive_info_nce(q, k, 0.4, group, key_id), rel=1e-10)


def test_known_values():
    # Orthogonal perfect matches: q_i = k_i = e_i -> loss = -log(e^{1/t} / (e^{1/t} + (M-1)))
    m, tau = 6, 0.4
    eye = torch.eye(m, dtype=torch.float64)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (m - 1)))
    assert point_info_nce(eye, eye, tau).item() == pytest.approx(expected, rel=1e-12)
    # Identical features everywhere: every key is as likely -> log(M)
    same = torch.ones(m, 4, dtype=torch.float64)
    assert point_info_nce(same, same, tau).item() == pytest.approx(math.log(m), rel=1e-12)
    # Each scene its own group of one -> no negatives -> zero loss
    assert point_info_nce(same, same, tau, group=torch.arange(m)).item() == pytest.approx(0.0, abs=1e-12)


def test_repeated_key_is_not_a_negative():
    # Queries 0 and 1 both matched view-2 point 7 (same key feature); query 2 is orthogonal.
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    tau = 0.5
    e1, e0 = math.exp(1 / tau), 1.0
    # Unmasked: rows 0 and 1 see their own key twice -> -log(e1 / (2 e1 + e0)) > log 2.
    unmasked = (2 * -math.log(e1 / (2 * e1 + e0)) - math.log(e1 / (e1 + 2 * e0))) / 3
    assert point_info_nce(q, k, tau).item() == pytest.approx(unmasked, rel=1e-12)
    masked = (2 * -math.log(e1 / (e1 + e0)) - math.log(e1 / (e1 + 2 * e0))) / 3
    got = point_info_nce(q, k, tau, key_id=torch.tensor([7, 7, 3]))
    assert got.item() == pytest.approx(masked, rel=1e-12)
    # Distinct ids change nothing.
    assert point_info_nce(q, k, tau, key_id=torch.tensor([1, 2, 3])).item() == pytest.approx(unmasked, rel=1e-12)


def test_gradients_flow_and_improve():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(64, 16, generator=g, requires_grad=True)
    k = torch.randn(64, 16, generator=g, requires_grad=True)
    loss = PointInfoNCE(tau=0.4)(q, k)
    loss.backward()
    assert q.grad is not None and k.grad is not None and torch.isfinite(q.grad).all()
    with torch.no_grad():
        stepped = point_info_nce(q - 0.5 * q.grad, k - 0.5 * k.grad)
    assert stepped < loss


def test_empty_and_shape_errors():
    z = torch.zeros(0, 4, requires_grad=True)
    assert point_info_nce(z, z).item() == 0.0
    with pytest.raises(ValueError):
        point_info_nce(torch.zeros(3, 4), torch.zeros(2, 4))


def test_gather_without_process_group_is_the_local_loss():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 1, 1, 2, 3, 4, 4, 4, 5])
    assert point_info_nce(q, k, key_id=ids, gather=True).item() == pytest.approx(
        point_info_nce(q, k, key_id=ids).item(), rel=1e-12)
    assert gather_rows(q)[1:] == (0, [9])


# ----------------------------------------------------------------------------- two processes
SIZES = (5, 8)  # unequal on purpose: labels and the loss weighting must follow the real counts
C = 4


def _global_inputs():
    g = torch.Generator().manual_seed(3)
    n = sum(SIZES)
    q = torch.randn(n, C, generator=g, dtype=torch.float64)
    k = torch.randn(n, C, generator=g, dtype=torch.float64)
    group = torch.randint(0, 2, (n,), generator=g)
    key_id = torch.randint(0, 3, (n,), generator=g)  # repeats within each process
    return q, k, group, key_id


def _local_only_gather(x):
    """lightly-style gather: the other processes' rows without gradient, the local rows as they are."""
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([x.shape[0]]))
    sizes = [int(c) for c in counts]
    top = max(sizes)
    buf = torch.cat([x.detach(), x.new_zeros((top - x.shape[0], *x.shape[1:]))])
    out = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(out, buf)
    rank = dist.get_rank()
    parts = [o[:n] for o, n in zip(out, sizes)]
    parts[rank] = x
    return torch.cat(parts), sum(sizes[:rank]), sizes


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q, k, group, key_id = _global_inputs()
        lo, hi = sum(SIZES[:rank]), sum(SIZES[:rank + 1])
        ql, kl = q[lo:hi].clone().requires_grad_(), k[lo:hi].clone().requires_grad_()
        for variant, gather in (("ours", True), ("local", _local_only_gather)):
            results = {}
            for name, kwargs in (("plain", {}), ("masked", {"group": group[lo:hi], "key_id": key_id[lo:hi]})):
                ql.grad = kl.grad = None
                loss = point_info_nce(ql, kl, 0.4, gather=gather, **kwargs)
                loss.backward()
                results[name] = (loss.detach(), ql.grad.clone(), kl.grad.clone())
            torch.save(results, os.path.join(out_dir, f"{variant}{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two(tmp_path):
    # fork (Linux) avoids re-importing torch in the children; spawn elsewhere.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method=method)
    return _averaged(tmp_path, "ours"), _averaged(tmp_path, "local")


def _averaged(tmp_path, variant):
    per_rank = [torch.load(tmp_path / f"{variant}{r}.pt") for r in range(2)]
    # DDP averages over the processes: loss and gradients of the run are the means below.
    out = {}
    for name in ("plain", "masked"):
        loss = sum(p[name][0] for p in per_rank) / 2
        gq = torch.cat([p[name][1] for p in per_rank]) / 2
        gk = torch.cat([p[name][2] for p in per_rank]) / 2
        out[name] = (loss, gq, gk)
    return out


def _single_process(name):
    q, k, group, key_id = _global_inputs()
    q, k = q.clone().requires_grad_(), k.clone().requires_grad_()
    kwargs = {}
    if name == "masked":  # ids of different processes never match: shift rank 1's ids
        rank = torch.arange(2).repeat_interleave(torch.tensor(SIZES))
        kwargs = {"group": group + 100 * rank, "key_id": key_id + 100 * rank}
    loss = point_info_nce(q, k, 0.4, **kwargs)
    loss.backward()
    return loss.detach(), q.grad, k.grad


def test_gather_across_processes_equals_the_concatenated_batch(tmp_path):
    ddp, local = _run_two(tmp_path)
    for name in ("plain", "masked"):
        loss, gq, gk = _single_process(name)
        got_loss, got_q, got_k = ddp[name]
        assert got_loss.item() == pytest.approx(loss.item(), rel=1e-10)
        torch.testing.assert_close(got_q, gq, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_k, gk, rtol=1e-10, atol=1e-12)
    # Masking matters here (the test can fail): grouped + repeat-masked differs from plain.
    assert abs(ddp["masked"][0].item() - ddp["plain"][0].item()) > 1e-3
    # A gather that keeps only the local gradient (lightly) gives the same loss but not the same
    # key gradient: the other process's queries no longer push this process's keys.
    loss, _, gk = _single_process("plain")
    assert local["plain"][0].item() == pytest.approx(loss.item(), rel=1e-10)
    assert (local["plain"][2] - gk).abs().max() > 1e-3


def test_matched_rows_backward_is_bit_stable_at_two_threads():
    """Repeated matched rows: the same gradients every time at 2 threads (advanced indexing's backward
    was not: this test failed with ``feat[idx]`` in place of ``index_select``)."""
    from contrast3d.losses import matched_rows

    gen = torch.Generator().manual_seed(0)
    f1 = torch.randn(20000, 32, generator=gen, requires_grad=True)
    f2 = torch.randn(20000, 32, generator=gen, requires_grad=True)
    matches = torch.randint(0, 20000, (4096, 2), generator=gen)
    matches[:2000] %= 500  # many repeated rows on both sides
    weight = torch.randn(4096, 32, generator=gen)
    q, k = matched_rows(f1, f2, matches)
    assert torch.equal(q, f1[matches[:, 0]]) and torch.equal(k, f2[matches[:, 1]])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(30):
            f1.grad = f2.grad = None
            q, k = matched_rows(f1, f2, matches)
            ((q + k) * weight).sum().backward()
            grads.append(torch.cat([f1.grad, f2.grad]))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(grads[0], g) for g in grads[1:])
