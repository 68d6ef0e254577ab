import pytest
import torch

from contrast3d.losses import HardestContrastiveLoss, hardest_contrastive


def naive_hardest(f1, f2, matches, mp, mn, pool1, pool2, b1=None, b2=None, fcgf=False):
    f1 = f1 / f1.norm(dim=1, keepdim=True)
    f2 = f2 / f2.norm(dim=1, keepdim=True)
    positives = {(int(a), int(b)) for a, b in matches}
    pos, neg12, neg21 = [], [], []
    for a, b in matches.tolist():
        d = float((f1[a] - f2[b]).norm())
        pos.append(max(d * d - mp, 0.0) if fcgf else max(d - mp, 0.0) ** 2)
        cands = [float((f1[a] - f2[k]).norm()) for k in pool2.tolist()
                 if (b1 is None or b1[a] == b2[k]) and (a, k) not in positives]
        if cands:
            neg12.append(max(mn - min(cands), 0.0) ** 2)
        cands = [float((f2[b] - f1[k]).norm()) for k in pool1.tolist()
                 if (b1 is None or b2[b] == b1[k]) and (k, b) not in positives]
        if cands:
            neg21.append(max(mn - min(cands), 0.0) ** 2)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    return mean(pos), 0.5 * mean(neg12) + 0.5 * mean(neg21)


@pytest.mark.parametrize("per_scene", [False, True])
def test_matches_naive_loop(per_scene):
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(40, 6, generator=g, dtype=torch.float64)
    f2 = torch.randn(35, 6, generator=g, dtype=torch.float64)
    matches = torch.stack([torch.randperm(40, generator=g)[:20], torch.randperm(35, generator=g)[:20]], 1)
    pool1 = torch.randperm(40, generator=g)[:15]
    pool2 = torch.randperm(35, generator=g)[:15]
    b1 = torch.randint(0, 2, (40,), generator=g) if per_scene else None
    b2 = torch.randint(0, 2, (35,), generator=g) if per_scene else None
    pos, neg = hardest_contrastive(f1, f2, matches, 0.1, 1.4, pool1, pool2, b1, b2)
    ref_pos, ref_neg = naive_hardest(f1, f2, matches, 0.1, 1.4, pool1, pool2, b1, b2)
    assert pos.item() == pytest.approx(ref_pos, rel=1e-10)
    assert neg.item() == pytest.approx(ref_neg, rel=1e-10)


@pytest.mark.parametrize("margin", [0.1, 1.0])
def test_fcgf_positive_matches_naive_loop(margin):
    # [d^2 - m_p]_+ (FCGF / official PointContrast code) vs the paper's [d - m_p]_+^2; a margin
    # of 1.0 puts some pairs inside and some outside the hinge.
    g = torch.Generator().manual_seed(4)
    f1 = torch.randn(30, 5, generator=g, dtype=torch.float64)
    f2 = f1 + 0.6 * torch.randn(30, 5, generator=g, dtype=torch.float64)
    matches = torch.stack([torch.arange(30), torch.arange(30)], 1)
    pool = torch.arange(30)
    pos, neg = hardest_contrastive(f1, f2, matches, margin, 1.4, pool, pool, fcgf_positive=True)
    ref_pos, ref_neg = naive_hardest(f1, f2, matches, margin, 1.4, pool, pool, fcgf=True)
    assert pos.item() == pytest.approx(ref_pos, rel=1e-10) and neg.item() == pytest.approx(ref_neg, rel=1e-10)
    paper, _ = hardest_contrastive(f1, f2, matches, margin, 1.4, pool, pool)
    assert abs(paper.item() - pos.item()) > 1e-3


def test_fcgf_positive_known_value():
    # Unit features at 90 degrees: d^2 = 2 -> [2 - 0.1]_+ = 1.9 (paper form: (sqrt 2 - 0.1)^2).
    f1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    f2 = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    m = torch.tensor([[0, 0]])
    assert hardest_contrastive(f1, f2, m, fcgf_positive=True)[0].item() == pytest.approx(1.9, rel=1e-12)
    assert hardest_contrastive(f1, f2, m)[0].item() == pytest.approx((2 ** 0.5 - 0.1) ** 2, rel=1e-12)
    # Module form passes the switch through.
    both = HardestContrastiveLoss(fcgf_positive=True)(f1, f2, m)
    assert both.item() == pytest.approx(1.9, rel=1e-12)  # single pair: no negative candidate left


def test_false_negatives_excluded():
    # Two view-2 points share view-1 point 0's feature; both are positives of it -> the hardest
    # negative of anchor 0 is a positive and must not be pushed away.
    f1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    f2 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    matches = torch.tensor([[0, 0], [0, 1], [1, 2]])
    pos, neg = hardest_contrastive(f1, f2, matches)
    # Without the exclusion anchor 0's hardest negative (view-2 point 1, distance 0) would give
    # 1.4^2; with it the remaining negatives are orthogonal (distance sqrt 2 > 1.4) -> 0.
    assert pos.item() == pytest.approx(0.0)
    assert neg.item() == pytest.approx(0.0)


def test_known_values_orthogonal():
    # Perfect matches on orthonormal features: positive term 0; every negative is at distance
    # sqrt(2) > m_n = 1.4 -> negative term 0. With m_n = 2, each term is (2 - sqrt 2)^2.
    eye = torch.eye(4, dtype=torch.float64)
    matches = torch.stack([torch.arange(4), torch.arange(4)], 1)
    pos, neg = hardest_contrastive(eye, eye, matches)
    assert pos.item() == pytest.approx(0.0) and neg.item() == pytest.approx(0.0)
    _, neg = hardest_contrastive(eye, eye, matches, neg_margin=2.0)
    assert neg.item() == pytest.approx((2 - 2 ** 0.5) ** 2, rel=1e-12)
    # Identical inputs everywhere collapse: positive 0, negatives at distance 0 -> 1.4^2
    ones = torch.ones(4, 3, dtype=torch.float64)
    matches = torch.tensor([[0, 0]])
    pos, neg = hardest_contrastive(ones, ones, matches)
    assert pos.item() == 0.0 and neg.item() == pytest.approx(1.4 ** 2, abs=1e-5)


def test_module_gradients():
    g = torch.Generator().manual_seed(3)
    f1 = torch.randn(30, 8, generator=g, requires_grad=True)
    f2 = torch.randn(30, 8, generator=g, requires_grad=True)
    matches = torch.stack([torch.arange(30), torch.arange(30)], 1)
    loss = HardestContrastiveLoss()(f1, f2, matches)
    loss.backward()
    assert torch.isfinite(loss) and f1.grad.abs().sum() > 0 and f2.grad.abs().sum() > 0
