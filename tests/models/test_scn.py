import pytest
import torch

from contrast3d.losses.fac import fea_loss, geo_loss, sample_region_pairs
from contrast3d.models.scn import SiameseCorrespondence, from_map, to_map


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_map_layout_padding_is_dropped():
    d = torch.arange(41 * 3, dtype=torch.float64).view(41, 3)       # N = 41 is not a multiple of m = 20
    e = to_map(d, 20)
    assert e.shape == (20, 3, 3)
    assert torch.equal(e[0, 1], d[1]) and torch.equal(e[13, 1], d[40])   # row-major, input order
    assert torch.equal(e.reshape(-1, 3)[41:], torch.zeros(19, 3, dtype=torch.float64))   # zero padding at the end
    assert torch.equal(from_map(e, 41), d)
    assert to_map(d[:40], 20).shape == (20, 2, 3) and torch.equal(from_map(to_map(d[:40], 20), 40), d[:40])


def naive_scn(module: SiameseCorrespondence, d: torch.Tensor, offset: list[int]) -> torch.Tensor:
    """Per scene: E = reshape(D), S = MLP(E) position by position, H = E * S, back to points."""
    lin1, lin2 = module.h[0], module.h[2]
    out, start = [], 0
    for end in offset:
        e = to_map(d[start:end], module.m)
        h = torch.zeros_like(e)
        for r in range(e.shape[0]):
            for c in range(e.shape[1]):
                s = lin2(torch.relu(lin1(e[r, c])))
                if module.activation == "sigmoid":
                    s = torch.sigmoid(s)
                h[r, c] = e[r, c] * s
        out.append(from_map(h, end - start))
        start = end
    return torch.cat(out)


@pytest.mark.parametrize("activation", ["none", "sigmoid"])
def test_forward_matches_per_scene_maps(activation):
    torch.manual_seed(0)
    scn = SiameseCorrespondence(channels=5, m=4, hidden=7, activation=activation).double()
    d = torch.randn(13 + 9 + 4, 5, generator=gen(1), dtype=torch.float64)
    offset = torch.tensor([13, 22, 26])
    got = scn(d, offset)
    assert got.shape == d.shape
    assert torch.allclose(got, naive_scn(scn, d, [13, 22, 26]), rtol=1e-12, atol=1e-14)
    # h is point-wise: the map layout changes no value, F_i = D_i * S(D_i); and one scene = offset None
    assert torch.allclose(got, d * scn.scores(d), rtol=1e-12, atol=1e-14)
    assert torch.allclose(scn(d[:13]), got[:13], rtol=1e-12, atol=1e-14)
    # the stacked layout of forward is the per-scene maps one after the other (16 + 12 + 4 slots)
    slot, padded = scn._layout(26, offset, d.device)
    assert padded.tolist() == [16, 12, 4]
    assert slot[13:16].tolist() == [16, 17, 18] and slot[22:].tolist() == [28, 29, 30, 31]
    maps = scn.maps(d, offset)
    assert [m[0].shape for m in maps] == [(4, 4, 5), (4, 3, 5), (4, 1, 5)]
    assert torch.allclose(from_map(maps[1][2], 9), got[13:22], rtol=1e-12)
    if activation == "sigmoid":
        assert ((maps[0][1] > 0) & (maps[0][1] < 1)).all()


def test_without_score_maps_is_identity():
    scn = SiameseCorrespondence(channels=4, score_maps=False)
    d = torch.randn(10, 4)
    assert scn(d) is d and scn.h is None and not list(scn.parameters())
    with pytest.raises(RuntimeError):
        scn.maps(d)


def test_score_maps_change_the_loss_and_train_h():
    g = gen(3)
    region = torch.randint(0, 6, (60,), generator=g)
    region[30:] += 6                                                   # two scenes, regions 0..5 and 6..11
    batch = torch.cat([torch.zeros(30, dtype=torch.long), torch.ones(30, dtype=torch.long)])
    d_a, d_b = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g)
    pairs = sample_region_pairs(region, batch, torch.tensor([0, 1, 2, 6, 7, 8]), k=4, generator=g)
    scn = SiameseCorrespondence(channels=8, m=20)
    offset = torch.tensor([30, 60])
    f_a, f_b = scn(d_a, offset), scn(d_b, offset)
    loss = fea_loss(f_a, f_b, region, batch, pairs) + geo_loss(f_a, f_b, region, pairs)
    plain = fea_loss(d_a, d_b, region, batch, pairs) + geo_loss(d_a, d_b, region, pairs)
    assert abs(loss.item() - plain.item()) > 1e-4
    loss.backward()
    for name, p in scn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_shape_and_offset_errors():
    scn = SiameseCorrespondence(channels=4, m=3)
    with pytest.raises(ValueError):
        scn(torch.randn(10, 5))
    with pytest.raises(ValueError):
        scn(torch.randn(10, 4), torch.tensor([4, 9]))
    with pytest.raises(ValueError):
        SiameseCorrespondence(channels=4, m=0)
    with pytest.raises(ValueError):
        SiameseCorrespondence(channels=4, activation="softmax")
    assert scn(torch.zeros(0, 4)).shape == (0, 4)
