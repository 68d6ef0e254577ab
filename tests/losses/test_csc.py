"""CSC partitions and partitioned InfoNCE against hand-computed values and a naive float64 loop."""
from __future__ import annotations

import math

import pytest
import torch

from contrast3d.losses.csc import CSCInfoNCE, csc_info_nce, num_partitions, partition_ids

ORIGIN = torch.zeros(1, 3, dtype=torch.float64)


def _parts(keys, anchor=ORIGIN, **kw):
    return partition_ids(anchor, torch.tensor(keys, dtype=torch.float64), **kw)[0].tolist()


def test_partition_ids_hand_example_xy():
    keys = [[1.0, 0.0, 0.0],      # d = 1 < r1 -> excluded
            [3.0, 1.0, 0.0],      # near, quadrant x+y+ -> 0
            [-3.0, 1.0, 2.0],     # near, x-y+ -> 1
            [-3.0, -1.0, -4.0],   # near, x-y- -> 2
            [3.0, -1.0, 5.0],     # near, x+y- -> 3
            [30.0, 1.0, 0.0],     # far (d > 20), x+y+ -> 4 + 0
            [-1.0, 25.0, 0.0],    # far, x-y+ -> 4 + 1
            [-25.0, -1.0, 3.0],   # far, x-y- -> 4 + 2
            [20.0, -0.5, 0.0],    # far (d = 20.006), x+y- -> 4 + 3
            [0.0, 0.0, 2.0],      # d == r1 is inside the near bin; straight up -> sector 0
            [0.0, 0.0, -20.0],    # d == r2 is in the far bin
            [0.0, 0.0, 0.0]]      # the anchor itself -> excluded
    assert _parts(keys) == [-1, 0, 1, 2, 3, 4, 5, 6, 7, 0, 4, -1]
    # Translation invariance: the same relative layout around another anchor.
    shift = torch.tensor([[10.0, -5.0, 7.0]], dtype=torch.float64)
    moved = (torch.tensor(keys, dtype=torch.float64) + shift).tolist()
    assert _parts(moved, anchor=shift) == [-1, 0, 1, 2, 3, 4, 5, 6, 7, 0, 4, -1]
    # Other radii move the distance bins: r1 = 0.5 admits the first key (d = 1, sector 0); with r2 = 4
    # keys 1, 2 (d = 3.2, 3.7) stay near and keys 3, 4 (d = 5.1, 5.9) become far.
    assert _parts(keys[:5], r1=0.5, r2=4.0) == [0, 0, 1, 6, 7]


def test_partition_ids_hand_example_csc_code():
    # The official code's 4 "angle" bins depend on sign(y) and sign(y * z) only (x is irrelevant).
    keys = [[3.0, 3.0, 3.0], [3.0, 3.0, -3.0], [3.0, -3.0, -3.0], [3.0, -3.0, 3.0],
            [-3.0, 3.0, 3.0], [-3.0, -3.0, -3.0], [30.0, -30.0, 30.0], [0.5, 0.5, 0.5]]
    assert _parts(keys, angle_mode="csc_code") == [0, 1, 2, 3, 0, 2, 7, -1]


def test_xy_sectors_rotate_with_the_scene():
    g = torch.Generator().manual_seed(3)
    keys = torch.rand(200, 3, generator=g, dtype=torch.float64) * 60 - 30
    base = partition_ids(ORIGIN, keys)[0]
    rot = keys[:, [1, 0, 2]] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # +90 deg about z
    turned = partition_ids(ORIGIN, rot)[0]
    keep = base >= 0
    assert torch.equal(turned >= 0, keep)
    expected = (base[keep] // 4) * 4 + (base[keep] % 4 + 1) % 4
    assert torch.equal(turned[keep], expected)


def test_batch_excludes_cross_scene_pairs():
    coord = torch.tensor([[0.0, 0, 0], [5.0, 1, 0], [0.0, 0, 0], [5.0, 1, 0]])
    part = partition_ids(coord, batch=torch.tensor([0, 0, 1, 1]))
    assert part[0, 1] == 0 and part[2, 3] == 0
    assert (part[:2, 2:] == -1).all() and (part[2:, :2] == -1).all()


# ----------------------------------------------------------------------------- naive reference

def naive_partition(a, b, r1, r2, num_angles, mode):
    dx, dy, dz = (float(b[t] - a[t]) for t in range(3))
    d = math.sqrt(dx * dx + dy * dy + dz * dz)
    if d < r1:
        return -1
    dist_bin = 0 if d < r2 else 1
    if mode == "xy":
        theta = math.atan2(dy, dx) % (2 * math.pi)
        angle_bin = min(int(theta / (2 * math.pi / num_angles)), num_angles - 1)
    else:  # sign form of the official code (no coordinate is exactly 0 in the random tests)
        angle_bin = (0 if dy > 0 else 1) * 2 + (0 if dy * dz > 0 else 1)
    return dist_bin * num_angles + angle_bin


def naive_csc(q, k, coord, tau, r1, r2, num_angles, mode, reduction, batch=None):
    q = q / q.norm(dim=1, keepdim=True)
    k = k / k.norm(dim=1, keepdim=True)
    m, n_part = q.shape[0], 2 * num_angles
    scene = [0] * m if batch is None else [int(b) for b in batch]
    cells = {}
    for i in range(m):
        for p in range(n_part):
            negs = [j for j in range(m) if j != i and scene[j] == scene[i]
                    and naive_partition(coord[i], coord[j], r1, r2, num_angles, mode) == p]
            logits = [float(q[i] @ k[i]) / tau] + [float(q[i] @ k[j]) / tau for j in negs]
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            cells[(i, p)] = (lse - logits[0], len(negs))
    if reduction == "valid":
        vals = [ce for ce, n in cells.values() if n > 0]
        return sum(vals) / len(vals)
    scenes = sorted(set(scene))
    total = 0.0
    for s in scenes:
        members = [i for i in range(m) if scene[i] == s]
        total += sum(cells[(i, p)][0] for i in members for p in range(n_part)) / (n_part * len(members))
    return total / len(scenes)


@pytest.mark.parametrize("mode", ["xy", "csc_code"])
@pytest.mark.parametrize("reduction", ["valid", "csc"])
@pytest.mark.parametrize("use_batch", [False, True])
def test_loss_matches_naive_loop(mode, reduction, use_batch):
    g = torch.Generator().manual_seed(7)
    m = 24
    q = torch.randn(m, 6, generator=g, dtype=torch.float64)
    k = q + 0.8 * torch.randn(m, 6, generator=g, dtype=torch.float64)
    coord = torch.rand(m, 3, generator=g, dtype=torch.float64) * 50 - 25   # grid units: spans all bins
    batch = torch.randint(0, 2, (m,), generator=g) if use_batch else None
    got = csc_info_nce(q, k, coord, tau=0.4, angle_mode=mode, reduction=reduction, batch=batch)
    want = naive_csc(q, k, coord, 0.4, 2.0, 20.0, 4, mode, reduction, batch)
    assert got.item() == pytest.approx(want, rel=1e-10)
    part = partition_ids(coord, angle_mode=mode, batch=batch)
    assert (part >= 0).any() and (part == -1).any() and (part >= 4).any()   # the example exercises every case


def test_known_value_identical_features():
    # q = k = constant: every valid cell is -log(1 / (1 + n_ip)) = log(1 + n_ip).
    coord = torch.tensor([[0.0, 0, 0], [3.0, 1, 0], [4.0, 2, 0], [-3.0, 1, 0], [30.0, 1, 0]], dtype=torch.float64)
    same = torch.ones(5, 4, dtype=torch.float64)
    part = partition_ids(coord)
    counts = {}
    for i in range(5):
        for j in range(5):
            if i != j and part[i, j] >= 0:
                counts[(i, int(part[i, j]))] = counts.get((i, int(part[i, j])), 0) + 1
    want = sum(math.log(1 + n) for n in counts.values()) / len(counts)
    assert csc_info_nce(same, same, coord).item() == pytest.approx(want, rel=1e-12)
    want_csc = sum(math.log(1 + n) for n in counts.values()) / (num_partitions(4) * 5)
    assert csc_info_nce(same, same, coord, reduction="csc").item() == pytest.approx(want_csc, rel=1e-12)
    # Anchor 0 sees anchors 1 and 2 in its near x+y+ quadrant: its cell (0, 0) has 2 negatives.
    assert counts[(0, 0)] == 2


def test_stable_for_large_logits():
    g = torch.Generator().manual_seed(11)
    m = 16
    q = torch.randn(m, 5, generator=g, dtype=torch.float64) * 30
    k = torch.randn(m, 5, generator=g, dtype=torch.float64) * 30
    coord = torch.rand(m, 3, generator=g, dtype=torch.float64) * 40
    got = csc_info_nce(q, k, coord, tau=0.05, normalize=False)
    assert torch.isfinite(got)
    # float64 reference with torch.logsumexp per (anchor, partition) cell, raw (unnormalised) logits.
    logits = q @ k.t() / 0.05
    part = partition_ids(coord)
    vals = []
    for i in range(m):
        for p in range(8):
            negs = [j for j in range(m) if j != i and int(part[i, j]) == p]
            if negs:
                row = torch.cat([logits[i, i:i + 1], logits[i, negs]])
                vals.append(float(torch.logsumexp(row, 0) - logits[i, i]))
    assert got.item() == pytest.approx(sum(vals) / len(vals), rel=1e-10)


def test_gradcheck_and_module():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    coord = torch.rand(8, 3, generator=g, dtype=torch.float64) * 30
    part = partition_ids(coord)
    assert (part >= 0).sum() > 8
    for reduction in ("valid", "csc"):
        assert torch.autograd.gradcheck(
            lambda a, b, red=reduction: csc_info_nce(a, b, partitions=part, reduction=red), (q, k))
    loss = CSCInfoNCE()(q, k, coord)
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = csc_info_nce(q - 0.5 * q.grad, k - 0.5 * k.grad, coord)
    assert stepped < loss


def test_precomputed_partitions_key_coord_and_edge_cases():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(12, 4, generator=g)
    k = torch.randn(12, 4, generator=g)
    coord = torch.rand(12, 3, generator=g) * 30
    direct = csc_info_nce(q, k, coord)
    assert torch.allclose(csc_info_nce(q, k, partitions=partition_ids(coord)), direct)
    # key_coord equal to anchor_coord is the default; a different one changes the partitions.
    assert torch.allclose(csc_info_nce(q, k, coord, key_coord=coord.clone()), direct)
    assert not torch.allclose(csc_info_nce(q, k, coord, key_coord=coord.flip(0)), direct)
    # No negatives anywhere (all pairs closer than r1) -> 0 with grad.
    qq = q.clone().requires_grad_(True)
    out = csc_info_nce(qq, k, torch.zeros(12, 3))
    assert out.item() == 0.0 and out.requires_grad
    empty = torch.zeros(0, 4, requires_grad=True)
    assert csc_info_nce(empty, empty, torch.zeros(0, 3)).item() == 0.0
    with pytest.raises(ValueError):
        csc_info_nce(q, k[:5], coord)
    with pytest.raises(ValueError):
        partition_ids(coord, angle_mode="csc_code", num_angles=6)
    with pytest.raises(ValueError):
        csc_info_nce(q, k, partitions=partition_ids(coord, num_angles=6), num_angles=4)
