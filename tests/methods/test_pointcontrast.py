import numpy as np
import pytest
import torch

from contrast3d.methods.common import BackboneConfig, PairDataConfig, build_pair_dataset, pair_collate
from contrast3d.methods.pointcontrast import PointContrast, PointContrastConfig

DATA = PairDataConfig(grid_size=0.1, match_radius=0.15, max_points=3000, strict=True)


@pytest.fixture(scope="module")
def batch(sim_scenes):
    ds = build_pair_dataset(str(sim_scenes), DATA)
    return pair_collate(DATA)([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)]), ds


def test_holistic_views_are_differently_augmented_and_matched_in_world(batch):
    pb, ds = batch
    pair = ds.get_sample(0, np.random.default_rng(5))
    raw = ds.raw(0)
    # every match is within the radius in world coordinates (pre-augmentation)
    w1 = raw.coord[pair.view1.meta["origin_index"]]
    w2 = raw.coord[pair.view2.meta["origin_index"]]
    d = np.linalg.norm(w1[pair.matches[:, 0]] - w2[pair.matches[:, 1]], axis=1)
    assert len(d) > 100 and d.max() <= DATA.match_radius + 1e-6
    # ... while the augmented coordinates differ (independent rigid transforms per view)
    a = pair.view1.coord[pair.matches[:, 0]]
    b = pair.view2.coord[pair.matches[:, 1]]
    assert np.median(np.linalg.norm(a - b, axis=1)) > 0.3


@pytest.mark.parametrize("loss,negatives", [("infonce", "batch"), ("infonce", "scene"),
                                            ("hardest", "batch"), ("hardest", "scene")])
def test_loss_variants_train(batch, loss, negatives):
    pb, _ = batch
    torch.manual_seed(0)
    method = PointContrast(PointContrastConfig(loss=loss, negatives=negatives, num_matches=512, num_negatives=256),
                           BackboneConfig(preset="spunet-tiny"), DATA)
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    method.train()
    losses = []
    for _ in range(6):
        torch.manual_seed(1)  # same match sample each step: the loss on it must go down
        out = method(pb)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


# ----------------------------------------------------------------------------- official-code fidelity
def _method(**kw):
    torch.manual_seed(0)
    return PointContrast(PointContrastConfig(num_matches=100000, **kw), BackboneConfig(preset="spunet-tiny"), DATA)


def test_signed_projection_head_is_trained_but_not_exported(batch):
    pb, _ = batch
    method = _method()
    assert isinstance(method.head, torch.nn.Linear) and method.head.out_features == 32
    f = method.embed(pb.view1)
    assert f.shape == (len(pb.view1.coord), 32)
    assert (method.net(pb.view1) >= 0).all() and (f < 0).any()  # decoder output ends in a ReLU; the head is signed
    method(pb)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.head.parameters())
    exported = method.exports()
    assert list(exported) == ["backbone"] and exported["backbone"].module is method.net
    assert not any(k.startswith("head") for k in exported["backbone"].module.state_dict())
    assert exported["backbone"].record["out_channels"] == method.net.out_channels
    # head_dim 0: no head parameters at all (every trainable parameter must get a gradient)
    bare = _method(head_dim=0)
    assert bare.head is None and bare.embed(pb.view1).shape[1] == bare.net.out_channels
    assert sum(p.numel() for p in bare.parameters()) == sum(p.numel() for p in bare.net.parameters())


@pytest.mark.parametrize("mask", [True, False])
def test_infonce_masks_repeated_keys_as_configured(batch, mask):
    from contrast3d.losses import point_info_nce

    pb, _ = batch
    method = _method(mask_repeated_keys=mask)
    method.eval()
    with torch.no_grad():
        out = method(pb)  # num_matches > matches: every match, in order
        f1, f2 = method.embed(pb.view1), method.embed(pb.view2)
    m = pb.matches
    assert out["repeated_keys"].item() == len(m) - len(torch.unique(m[:, 1])) > 0  # the data has repeats
    masked = point_info_nce(f1[m[:, 0]], f2[m[:, 1]], 0.4, key_id=m[:, 1])
    plain = point_info_nce(f1[m[:, 0]], f2[m[:, 1]], 0.4)
    assert abs(masked.item() - plain.item()) > 1e-4
    assert out["loss"].item() == pytest.approx((masked if mask else plain).item(), rel=1e-6)


def test_hardest_positive_term_switch(batch):
    from contrast3d.losses import hardest_contrastive
    from contrast3d.methods.pointcontrast import sample_rows

    pb, _ = batch
    for fcgf in (True, False):
        method = _method(loss="hardest", fcgf_positive=fcgf, num_negatives=64)
        method.eval()
        with torch.no_grad():
            torch.manual_seed(5)
            out = method(pb)
            torch.manual_seed(5)  # the same negative pools as inside forward (all matches: no draw)
            f1, f2 = method.embed(pb.view1), method.embed(pb.view2)
            pool1, pool2 = sample_rows(len(f1), 64, f1.device), sample_rows(len(f2), 64, f2.device)
            pos, neg = hardest_contrastive(f1, f2, pb.matches, neg_pool1=pool1, neg_pool2=pool2,
                                           fcgf_positive=fcgf)
        assert out["pos_loss"].item() == pytest.approx(pos.item(), rel=1e-6)
        assert out["neg_loss"].item() == pytest.approx(neg.item(), rel=1e-6)
    with pytest.raises(ValueError):
        PointContrastConfig(loss="hardest", gather_negatives=True)
    with pytest.raises(ValueError):
        PointContrastConfig(head_dim=-1)


def test_official_preset_resolves_and_trains_on_geometry_only(monkeypatch, sim_scenes):
    from contrast3d.methods import METHODS, method_config
    from contrast3d.methods.pointcontrast import SPEC

    monkeypatch.setitem(METHODS, "pointcontrast", SPEC)
    cfg = method_config("pointcontrast", files=["pointcontrast_official"])
    assert (cfg.optim.name, cfg.optim.momentum, cfg.optim.lr) == ("sgd", 0.8, 0.05)
    assert (cfg.schedule.name, cfg.schedule.gamma, cfg.schedule.step_size, cfg.schedule.staircase) == \
        ("exp", 0.99, 250, True)
    assert cfg.data.feat_keys == ["ones"] and cfg.model.in_channels == 1 and list(cfg.data.scale) == [1.0, 1.0]
    assert cfg.method.head_dim == 32 and cfg.method.fcgf_positive and not cfg.method.mask_repeated_keys
    assert not cfg.method.gather_negatives
    default = method_config("pointcontrast")
    assert default.schedule.name == "cosine" and default.method.head_dim == 32
    # One step of the official recipe (tiny backbone) on geometry-only input.
    data = PairDataConfig(grid_size=0.1, match_radius=0.15, max_points=3000, feat_keys=["ones"], scale=[1.0, 1.0],
                          color_aug=False)
    ds = build_pair_dataset(str(sim_scenes), data)
    pb = pair_collate(data)([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])
    assert pb.view1.feat.shape[1] == 1 and bool((pb.view1.feat == 1).all())
    torch.manual_seed(0)
    method = PointContrast(cfg.method, BackboneConfig(preset="spunet-tiny", in_channels=1), data)
    out = method(pb)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and method.net.conv_input[0].weight.grad.abs().sum() > 0
