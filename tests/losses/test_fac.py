import math

import pytest
import torch

from contrast3d.losses.fac import (
    FeaLoss,
    GeoLoss,
    RegionPairs,
    carry_regions,
    fea_loss,
    geo_loss,
    region_info_nce,
    region_means,
    regional_sampling,
    sample_region_pairs,
    select_positives,
    sinkhorn_plan,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points_of(sizes: dict[int, int], scene: int, extra_ignored: int = 0) -> tuple[list[int], list[int]]:
    region = [rid for rid, n in sizes.items() for _ in range(n)] + [-1] * extra_ignored
    return region, [scene] * len(region)


# Scene 0: regions 20..26 of sizes 1, 3, 4, 5, 7, 12, 40 -> median (7 regions) 5; distances 4, 2, 1, 0, 2, 7, 35.
SCENE0 = {20: 1, 21: 3, 22: 4, 23: 5, 24: 7, 25: 12, 26: 40}
# Scene 1: regions 3..6 of sizes 2, 2, 6, 9 -> lower median 2; distances 0, 0, 4, 7.
SCENE1 = {3: 2, 4: 2, 5: 6, 6: 9}


def two_scenes(shuffle_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r0, b0 = points_of(SCENE0, 0, extra_ignored=30)
    r1, b1 = points_of(SCENE1, 1, extra_ignored=50)
    region, batch = torch.tensor(r0 + r1), torch.tensor(b0 + b1)
    perm = torch.randperm(len(region), generator=gen(shuffle_seed))   # point order must not matter
    return region[perm], batch[perm]


def test_regional_sampling_hand_example():
    region, batch = two_scenes()
    seen = set()
    for seed in range(40):
        got = regional_sampling(region, batch, num_regions=3, generator=gen(seed)).tolist()
        # scene 0: 23 (d 0), 22 (d 1), then one of the tie 21 / 24 (d 2); scene 1: 3, 4 (d 0), 5 (d 4)
        assert got[:3] in ([21, 22, 23], [22, 23, 24]) and got[3:] == [3, 4, 5]
        seen.add(tuple(got))
        assert regional_sampling(region, batch, num_regions=3, generator=gen(seed)).tolist() == got
    assert seen == {(21, 22, 23, 3, 4, 5), (22, 23, 24, 3, 4, 5)}   # the tie is broken both ways
    # one region per scene: the median region itself
    assert {tuple(regional_sampling(region, batch, num_regions=1, generator=gen(s)).tolist())
            for s in range(20)} == {(23, 3), (23, 4)}


def test_regional_sampling_min_size_all_regions_and_overflow():
    region, batch = two_scenes(1)
    # min_size 3 removes 20 (1 pt), 3 and 4 (2 pts); the medians stay 5 and 2
    got = regional_sampling(region, batch, num_regions=2, min_size=3, generator=gen(0)).tolist()
    assert got == [22, 23, 5, 6]
    got = regional_sampling(region, batch, num_regions=4, min_size=6, generator=gen(0)).tolist()
    assert got == [24, 25, 26, 5, 6]            # scene 0: d 2, 7, 35 are all that is eligible
    assert regional_sampling(region, batch, num_regions=100).tolist() == [20, 21, 22, 23, 24, 25, 26, 3, 4, 5, 6]
    assert regional_sampling(region, batch, num_regions=1, min_size=5, all_regions=True).tolist() == \
        [23, 24, 25, 26, 5, 6]
    assert regional_sampling(torch.full((5,), -1), torch.zeros(5, dtype=torch.long)).numel() == 0


def test_regional_sampling_errors():
    with pytest.raises(ValueError, match="two scenes"):
        regional_sampling(torch.tensor([1, 1, 2]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError):
        regional_sampling(torch.tensor([1, 1, 2]), torch.tensor([0, 1]))


def test_regional_sampling_property_random():
    """Kept regions are never farther from the median than an eligible region left out (naive check)."""
    g = gen(3)
    region = torch.cat([torch.randint(0, 30, (400,), generator=g), torch.randint(30, 45, (200,), generator=g)])
    region[torch.rand(600, generator=g) < 0.1] = -1
    batch = torch.cat([torch.zeros(400, dtype=torch.long), torch.ones(200, dtype=torch.long)])
    kept = set(regional_sampling(region, batch, num_regions=6, min_size=8, generator=g).tolist())
    for s in (0, 1):
        sizes = {}
        for r, b in zip(region.tolist(), batch.tolist()):
            if r >= 0 and b == s:
                sizes[r] = sizes.get(r, 0) + 1
        ordered = sorted(sizes.values())
        med = ordered[(len(ordered) - 1) // 2]
        elig = {r for r, n in sizes.items() if n >= 8}
        mine = kept & set(sizes)
        assert len(mine) == min(6, len(elig)) and mine <= elig
        if elig - mine:
            assert max(abs(sizes[r] - med) for r in mine) <= min(abs(sizes[r] - med) for r in elig - mine)


def test_carry_regions():
    region_a = torch.tensor([4, 4, 7, -1, 9])
    matches = torch.tensor([[0, 2], [2, 0], [3, 1], [4, 0], [1, 5]])
    assert carry_regions(region_a, matches, 7).tolist() == [9, -1, 4, -1, -1, 4, -1]
    assert carry_regions(region_a, matches[:0], 3).tolist() == [-1, -1, -1]


def make_views(seed: int = 0, n_regions=(5, 4), pts=(60, 50), c: int = 6):
    """Two scenes; view b carries view a's region ids (about 80 % of points matched, rest -1)."""
    g = gen(seed)
    region_a, batch_a, base = [], [], 0
    for s, (nr, n) in enumerate(zip(n_regions, pts)):
        region_a.append(torch.randint(0, nr, (n,), generator=g) + base)
        batch_a.append(torch.full((n,), s))
        base += nr
    region_a, batch_a = torch.cat(region_a), torch.cat(batch_a)
    region_b = region_a.clone()
    region_b[torch.rand(len(region_b), generator=g) < 0.2] = -1
    feat_a = torch.randn(len(region_a), c, generator=g, dtype=torch.float64)
    feat_b = torch.randn(len(region_b), c, generator=g, dtype=torch.float64)
    return region_a, batch_a, region_b, batch_a.clone(), feat_a, feat_b


def test_sample_region_pairs_properties():
    region_a, batch_a, region_b, batch_b, _, _ = make_views()
    regions = torch.tensor([0, 1, 2, 5, 6, 7])
    pairs = sample_region_pairs(region_b, batch_b, regions, num_pairs=60, generator=gen(1))
    assert pairs.regions.tolist() == regions.tolist() and pairs.k == 10 and pairs.neg.shape == (6, 10)
    assert pairs.scene.tolist() == [0, 0, 0, 1, 1, 1]
    for a, r in enumerate(pairs.regions.tolist()):
        members = set((region_b == r).nonzero().squeeze(1).tolist())
        pos = pairs.pos[a].tolist()
        assert set(pos) <= members and len(set(pos)) == min(10, len(members))   # distinct when possible
        others = {i for i in range(len(region_b)) if int(region_b[i]) in regions.tolist()
                  and int(region_b[i]) != r and int(batch_b[i]) == int(pairs.scene[a])}
        assert set(pairs.neg[a].tolist()) <= others
    again = sample_region_pairs(region_b, batch_b, regions, num_pairs=60, generator=gen(1))
    assert torch.equal(again.pos, pairs.pos) and torch.equal(again.neg, pairs.neg)
    other = sample_region_pairs(region_b, batch_b, regions, num_pairs=60, generator=gen(2))
    assert not torch.equal(other.neg, pairs.neg)


def test_sample_region_pairs_cycles_drops_and_is_uniform():
    # region 0: 3 view-b points; region 1: 5; region 2 (scene 1) alone in its scene -> dropped; 9 not present
    region_b = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, -1, 2, 2])
    batch_b = torch.tensor([0] * 9 + [1] * 2)
    pairs = sample_region_pairs(region_b, batch_b, torch.tensor([1, 0, 2, 9]), k=3000, generator=gen(0))
    assert pairs.regions.tolist() == [1, 0] and pairs.pos.shape == (2, 3000)
    pos0 = pairs.pos[1].tolist()
    assert sorted(pos0[:3]) == [0, 1, 2] and pos0[3:6] == pos0[:3]               # cycled, all points used
    counts = torch.bincount(pairs.neg[1], minlength=11)[3:8].double()           # anchor 0's negatives: region 1
    assert counts.sum() == 3000 and (counts - 600).abs().max() < 100             # uniform, 5 candidates
    assert torch.bincount(pairs.neg[0], minlength=11)[:3].min() > 850              # anchor 1's: region 0
    assert sample_region_pairs(region_b, batch_b, torch.tensor([2])).pos.shape == (0, 4096)


def naive_loss(anchors, pos_lists, neg_lists, tau):
    total, count = 0.0, 0
    for q, ps, ns in zip(anchors, pos_lists, neg_lists):
        for p in ps:
            num = math.exp(float(q @ p) / tau)
            den = num + sum(math.exp(float(q @ n) / tau) for n in ns)
            total += -math.log(num / den)
            count += 1
    return total / count


def naive_anchor(feat, region, r):
    rows = [feat[i] / feat[i].norm() for i in range(len(region)) if int(region[i]) == r]
    mean = sum(rows) / len(rows)
    return mean / mean.norm()


def test_geo_loss_matches_naive_loop():
    region_a, batch_a, region_b, batch_b, feat_a, feat_b = make_views(4)
    regions = regional_sampling(region_a, batch_a, num_regions=3, generator=gen(0))
    pairs = sample_region_pairs(region_b, batch_b, regions, num_pairs=24, generator=gen(5))
    got = geo_loss(feat_a, feat_b, region_a, pairs, tau=0.1)
    unit = feat_b / feat_b.norm(dim=1, keepdim=True)
    anchors = [naive_anchor(feat_a, region_a, int(r)) for r in pairs.regions]
    expected = naive_loss(anchors, [[unit[int(i)] for i in row] for row in pairs.pos],
                          [[unit[int(i)] for i in row] for row in pairs.neg], 0.1)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert GeoLoss()(feat_a, feat_b, region_a, pairs).item() == pytest.approx(expected, rel=1e-10)


def test_region_info_nce_known_value_and_gradcheck():
    # anchor e1, positives e1, negatives orthogonal: loss = -log(e^{1/t} / (e^{1/t} + k))
    k, tau = 4, 0.1
    anchor = torch.tensor([[1.0, 0, 0]], dtype=torch.float64)
    pos = anchor.expand(k, 3)[None]
    neg = torch.tensor([[0, 1.0, 0]], dtype=torch.float64).expand(k, 3)[None]
    assert region_info_nce(anchor, pos, neg, tau).item() == pytest.approx(
        -math.log(math.exp(10) / (math.exp(10) + k)), rel=1e-12)
    mask = torch.tensor([[True, False, False, False]])
    assert region_info_nce(anchor, pos, neg, tau, mask).item() == pytest.approx(
        -math.log(math.exp(10) / (math.exp(10) + 1)), rel=1e-12)
    region_a, batch_a, region_b, batch_b, feat_a, feat_b = make_views(6, n_regions=(3, 3), pts=(12, 12), c=3)
    pairs = sample_region_pairs(region_b, batch_b, torch.tensor([0, 1, 3, 4]), k=3, generator=gen(0))
    feat_a.requires_grad_(True)
    feat_b.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: geo_loss(a, b, region_a, pairs), (feat_a, feat_b))
    assert torch.autograd.gradcheck(lambda a, b: fea_loss(a, b, region_a, batch_b, pairs), (feat_a, feat_b))


def test_select_positives_are_the_k_most_similar():
    region_a, batch_a, region_b, batch_b, feat_a, feat_b = make_views(7)
    regions = torch.tensor([0, 2, 4, 5, 8])
    pairs = sample_region_pairs(region_b, batch_b, regions, k=6, generator=gen(0))
    anchor = region_means(feat_a, region_a, pairs.regions)
    got = select_positives(anchor, feat_b, batch_b, pairs.scene, 6)
    for a in range(len(pairs)):
        q = naive_anchor(feat_a, region_a, int(pairs.regions[a]))
        cand = [i for i in range(len(batch_b)) if int(batch_b[i]) == int(pairs.scene[a])]
        sims = {i: float(q @ feat_b[i]) / float(feat_b[i].norm()) for i in cand}
        assert got[a].tolist() == sorted(cand, key=lambda i: -sims[i])[:6]
    # a planted best match is found
    feat_b2 = feat_b.clone()
    feat_b2[55] = anchor[0] * 3.0
    assert int(select_positives(anchor, feat_b2, batch_b, pairs.scene, 6)[0, 0]) == 55
    # scene smaller than k: the ranking repeats
    tiny = select_positives(anchor[:1], feat_b[:2], torch.zeros(2, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                            5)
    assert tiny[0, :2].tolist() == tiny[0, 2:4].tolist() and sorted(tiny[0, :2].tolist()) == [0, 1]


def test_fea_loss_matches_naive_loop():
    region_a, batch_a, region_b, batch_b, feat_a, feat_b = make_views(8)
    regions = torch.tensor([0, 1, 3, 5, 6, 7, 8])
    pairs = sample_region_pairs(region_b, batch_b, regions, num_pairs=35, generator=gen(9))
    unit = feat_b / feat_b.norm(dim=1, keepdim=True)
    anchors, pos_lists, neg_lists = [], [], []
    n_masked = 0
    for a, r in enumerate(pairs.regions.tolist()):
        q = naive_anchor(feat_a, region_a, r)
        cand = [i for i in range(len(batch_b)) if int(batch_b[i]) == int(pairs.scene[a])]
        top = sorted(cand, key=lambda i: -float(q @ unit[i]))[:pairs.k]
        negs = [int(i) for i in pairs.neg[a] if int(i) not in top]
        n_masked += pairs.k - len(negs)
        anchors.append(q)
        pos_lists.append([unit[i] for i in top])
        neg_lists.append([unit[i] for i in negs])
    assert n_masked > 0          # the example exercises the exclusion of positives from the negatives
    got = fea_loss(feat_a, feat_b, region_a, batch_b, pairs, tau=0.1)
    assert got.item() == pytest.approx(naive_loss(anchors, pos_lists, neg_lists, 0.1), rel=1e-10)
    assert FeaLoss()(feat_a, feat_b, region_a, batch_b, pairs).item() == pytest.approx(got.item(), rel=1e-12)
    kept_all = fea_loss(feat_a, feat_b, region_a, batch_b, pairs, exclude_positives=False)
    assert kept_all.item() > got.item()


def naive_sinkhorn(sim, k, iters, eps):
    n_a, n = sim.shape
    rest = n - n_a * k
    kern = [[math.exp(-(1 - float(sim[a, j])) / eps) for j in range(n)] for a in range(n_a)]
    mass = [float(k)] * n_a if rest > 0 else [n / n_a] * n_a
    if rest > 0:
        kern.append([1.0] * n)
        mass.append(float(rest))
    v = [1.0] * n
    for _ in range(iters):
        u = [mass[a] / sum(kern[a][j] * v[j] for j in range(n)) for a in range(len(kern))]
        v = [1.0 / sum(kern[a][j] * u[a] for a in range(len(kern))) for j in range(n)]
    return torch.tensor([[u[a] * kern[a][j] * v[j] for j in range(n)] for a in range(n_a)], dtype=torch.float64)


@pytest.mark.parametrize("n", [12, 5])
def test_sinkhorn_plan_matches_naive_and_marginals(n):
    sim = torch.rand(3, n, generator=gen(n), dtype=torch.float64) * 2 - 1
    plan = sinkhorn_plan(sim, k=2, iters=7, eps=0.3)
    assert torch.allclose(plan, naive_sinkhorn(sim, 2, 7, 0.3), rtol=1e-10, atol=1e-14)
    converged = sinkhorn_plan(sim, k=2, iters=500, eps=0.3)
    row = 2.0 if n > 6 else n / 3
    assert torch.allclose(converged.sum(1), torch.full((3,), row, dtype=torch.float64), atol=1e-8)
    assert (converged.sum(0) <= 1 + 1e-9).all()


def test_sinkhorn_positives_one_anchor_equal_topk_and_split_competition():
    g = gen(11)
    feat_b = torch.randn(40, 5, generator=g, dtype=torch.float64)
    anchor = torch.randn(1, 5, generator=g, dtype=torch.float64)
    zeros = torch.zeros(40, dtype=torch.long)
    top = select_positives(anchor, feat_b, zeros, torch.zeros(1, dtype=torch.long), 4)
    sk = select_positives(anchor, feat_b, zeros, torch.zeros(1, dtype=torch.long), 4, method="sinkhorn")
    assert sorted(top[0].tolist()) == sorted(sk[0].tolist())
    # Two anchors want the same point p0; OT gives p0 to anchor 1 and p1 to anchor 2, top-k gives p0 to both.
    deg = torch.tensor([0.0, 30.0, 10.0, 55.0, 180.0]) * math.pi / 180
    unit = torch.stack([deg.cos(), deg.sin()], 1).double()
    anchors, points = unit[:2], unit[2:]
    scene = torch.zeros(2, dtype=torch.long)
    batch = torch.zeros(3, dtype=torch.long)
    assert select_positives(anchors, points, batch, scene, 1)[:, 0].tolist() == [0, 0]
    assert select_positives(anchors, points, batch, scene, 1, "sinkhorn", 200, 0.02)[:, 0].tolist() == [0, 1]
    with pytest.raises(ValueError):
        select_positives(anchors, points, batch, scene, 1, "hungarian")


def test_empty_anchors_and_gradients_flow():
    feat = torch.randn(6, 4, requires_grad=True)
    empty = RegionPairs(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                        torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long))
    region = torch.zeros(6, dtype=torch.long)
    assert geo_loss(feat, feat, region, empty).item() == 0.0
    loss = fea_loss(feat, feat, region, torch.zeros(6, dtype=torch.long), empty)
    loss.backward()
    assert loss.item() == 0.0 and feat.grad is not None
    region_a, batch_a, region_b, batch_b, feat_a, feat_b = make_views(12)
    feat_a, feat_b = feat_a.float().requires_grad_(True), feat_b.float().requires_grad_(True)
    pairs = sample_region_pairs(region_b, batch_b, regional_sampling(region_a, batch_a, 3, generator=gen(0)), 64,
                                generator=gen(1))
    total = geo_loss(feat_a, feat_b, region_a, pairs) + fea_loss(feat_a, feat_b, region_a, batch_b, pairs,
                                                                 positives="sinkhorn")
    total.backward()
    assert torch.isfinite(feat_a.grad).all() and feat_a.grad.abs().sum() > 0 and feat_b.grad.abs().sum() > 0
