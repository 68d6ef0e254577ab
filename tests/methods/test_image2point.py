"""Image-to-point contrast: the loss against naive loops, the frozen 2D net, both stages end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrast3d.data.frame_images import SMOKE_IMAGE_NET, smoke_frames
from contrast3d.engine.objective import tensor_digest
from contrast3d.engine.optim import OptimConfig, build_optimizer
from contrast3d.engine.run import train
from contrast3d.errors import DataError
from contrast3d.losses import point_info_nce
from contrast3d.methods import METHODS, method_config
from contrast3d.methods.image2point import SPEC, _chunked_lse, pixel_info_nce, sample_per_group
from contrast3d.models.pretrained import load_pretrained

SMOKE_3D = ["model.preset=spunet-tiny", "model.in_channels=3", "data.grid_size=0.1", "data.image_size=64",
            "data.frame_skip=1", "data.max_points=3000", "data.strict=true", "loader.batch_size=2",
            "loader.num_workers=0", "checkpoint_every=1", "log_every=1"]
SMOKE_2D = ["method.stage=2d", "method.image_preset=tiny", "data.image_size=48", "data.num_pixels=200",
            "data.frame_skip=1", "data.strict=true", "loader.batch_size=2", "loader.num_workers=0",
            "checkpoint_every=1", "log_every=1"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return smoke_frames(tmp_path_factory.mktemp("i2p_method"))


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(METHODS, "image2point", SPEC)


def config(root, overrides, steps=2, **flags):
    return method_config("image2point", flags={"data_root": str(root), "steps": steps, "device": "cpu",
                                                "progress": False, **flags}, overrides=overrides)


# ----------------------------------------------------------------------------------------- loss
def naive_info_nce(q, k, group, tau, negatives, reduction):
    """Float64 loop over queries: -log(exp(q_i.k_i / tau) / sum_j exp(q_i.k_j / tau)), j allowed keys."""
    q = [np.asarray(v, np.float64) / np.linalg.norm(v) for v in q.tolist()]
    k = [np.asarray(v, np.float64) / np.linalg.norm(v) for v in k.tolist()]
    g = group.tolist()
    losses: dict[int, list[float]] = {}
    for i in range(len(q)):
        denom = sum(math.exp(float(q[i] @ k[j]) / tau) for j in range(len(k)) if negatives == "batch" or g[j] == g[i])
        losses.setdefault(g[i], []).append(-(float(q[i] @ k[i]) / tau - math.log(denom)))
    if reduction == "mean":
        return sum(sum(v) for v in losses.values()) / len(q)
    return sum(sum(v) / len(v) for v in losses.values())


def test_loss_hand_example():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # orthogonal: logits 1/tau on the diagonal, 0 off it
    g = torch.tensor([0, 1])
    expected = 2 * math.log(1 + math.exp(-2.5))
    assert pixel_info_nce(q, q, g, 0.4, "batch", "sum").item() == pytest.approx(expected, rel=1e-5)
    assert pixel_info_nce(q, q, g, 0.4, "batch", "mean").item() == pytest.approx(expected / 2, rel=1e-5)
    assert pixel_info_nce(q, q, g, 0.4, "pair", "sum").item() == pytest.approx(0.0, abs=1e-6)  # no negatives


@pytest.mark.parametrize("negatives", ["batch", "pair"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("chunk", [1 << 20, 7])
def test_loss_matches_naive_loop_and_gradients(negatives, reduction, chunk):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(23, 5, generator=gen, dtype=torch.float64)
    k = torch.randn(23, 5, generator=gen, dtype=torch.float64)
    group = torch.tensor([2] * 4 + [0] * 11 + [1] * 8)  # unequal, unsorted pairs
    want = naive_info_nce(q, k, group, 0.4, negatives, reduction)
    qa, ka = q.float().requires_grad_(), k.float().requires_grad_()
    got = pixel_info_nce(qa, ka, group, 0.4, negatives, reduction, chunk_elements=chunk)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    # float64 reference gradients from a direct (unchunked) autograd formula
    qr, kr = q.clone().requires_grad_(), k.clone().requires_grad_()
    qn, kn = F.normalize(qr, dim=1), F.normalize(kr, dim=1)
    logits = qn @ kn.t() / 0.4
    if negatives == "pair":
        logits = logits.masked_fill(group[:, None] != group[None, :], float("-inf"))
    rows = torch.logsumexp(logits, 1) - logits.diagonal()
    ref = rows.mean() if reduction == "mean" else sum(rows[group == b].mean() for b in range(3))
    assert ref.item() == pytest.approx(want, rel=1e-9)
    ref.backward()
    np.testing.assert_allclose(qa.grad.double().numpy(), qr.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ka.grad.double().numpy(), kr.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("budget", [4, 1000])  # blocks recomputed in backward / exponentials kept
@pytest.mark.parametrize("grouped", [False, True])
def test_blocked_log_sum_exp_gradcheck(grouped, budget):
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    group = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2]) if grouped else None
    assert torch.autograd.gradcheck(lambda a, b: _chunked_lse(a, b, 0.4, group, budget), (q, k))
    full = torch.logsumexp(q @ k.t() / 0.4, 1) if not grouped else torch.cat(
        [torch.logsumexp(q[m] @ k[m].t() / 0.4, 1) for m in (group == g for g in range(3))])
    np.testing.assert_allclose(_chunked_lse(q, k, 0.4, group, budget).detach().numpy(), full.detach().numpy(),
                               rtol=1e-12)


def test_mean_reduction_is_point_info_nce_and_sum_scales_with_pairs():
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(12, 4, generator=gen), torch.randn(12, 4, generator=gen)
    group = torch.arange(3).repeat_interleave(4)
    ref = point_info_nce(q, k, 0.4).item()
    assert pixel_info_nce(q, k, group, 0.4, "batch", "mean", chunk_elements=5).item() == pytest.approx(ref, rel=1e-5)
    assert pixel_info_nce(q, k, group, 0.4, "batch", "sum", chunk_elements=5).item() == pytest.approx(3 * ref, rel=1e-5)
    assert pixel_info_nce(q, k, group, 0.4, "pair", "mean").item() == pytest.approx(
        point_info_nce(q, k, 0.4, group).item(), rel=1e-5)
    empty = torch.zeros(0, 4, requires_grad=True)
    assert pixel_info_nce(empty, empty, torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_sample_per_group_takes_at_most_num_per_group():
    group = torch.tensor([0] * 10 + [1] * 3 + [3] * 7)
    torch.manual_seed(0)
    a = sample_per_group(group, 5)
    torch.manual_seed(1)
    b = sample_per_group(group, 5)
    assert torch.bincount(group[a]).tolist() == [5, 3, 0, 5]  # fewer than num: all of them
    assert len(set(a.tolist())) == len(a) and bool((group[a][1:] >= group[a][:-1]).all())
    assert set(a.tolist()) != set(b.tolist())
    assert len(sample_per_group(group[:0], 5)) == 0


# ----------------------------------------------------------------------------------------- stage 3d
def _bilinear_reference(fmap, image, row, col):
    """``grid_sample`` (align_corners=False, border) at pixel-centre coordinates: an independent reference."""
    _, _, h, w = fmap.shape
    grid = torch.stack([(col + 0.5) / w * 2 - 1, (row + 0.5) / h * 2 - 1], -1).view(1, 1, -1, 2)
    out = F.grid_sample(fmap[image:image + 1], grid.to(fmap.dtype), align_corners=False, padding_mode="border")
    return out[0, :, 0].t()


def test_stage3d_loss_matches_naive_loop(root, registered):
    cfg = config(root, SMOKE_3D + [f"method.image_net={SMOKE_IMAGE_NET}", "method.num_matches=15"])
    method, ds, collate = SPEC.build(cfg)
    batch = collate([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])
    method.eval()
    torch.manual_seed(7)
    out = method(batch)
    torch.manual_seed(7)
    pick = sample_per_group(batch.pixel_index[:, 0], 15)
    assert out["matches"].item() == len(pick) == 30
    with torch.no_grad():
        points = method.head(method.net(batch.view1)).double()
        fmap = method.image_net(batch.images).double()
    rc = batch.view1.extra["pixel_rc"]
    keys, queries, groups = [], [], []
    for p in pick.tolist():  # one match at a time
        point, (image, _, _) = batch.pixel_point[p].item(), batch.pixel_index[p].tolist()
        keys.append(_bilinear_reference(fmap, image, rc[point, 0:1].double(), rc[point, 1:2].double())[0])
        queries.append(points[point])
        groups.append(image)
    want = naive_info_nce(torch.stack(queries), torch.stack(keys), torch.tensor(groups), 0.4, "batch", "sum")
    assert out["loss"].item() == pytest.approx(want, rel=1e-4)


def test_stage3d_handles_few_and_no_visible_points(root, registered):
    cfg = config(root, SMOKE_3D + [f"method.image_net={SMOKE_IMAGE_NET}", "method.num_matches=100000"])
    method, ds, collate = SPEC.build(cfg)
    batch = collate([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])
    out = method(batch)  # fewer seen points than num_matches: all of them are used
    assert out["matches"].item() == len(batch.pixel_point) and torch.isfinite(out["loss"])
    only_first = batch.pixel_index[:, 0] == 0  # the second frame sees nothing
    batch.pixel_point, batch.pixel_index = batch.pixel_point[only_first], batch.pixel_index[only_first]
    out = method(batch)
    assert out["matches"].item() == int(only_first.sum()) and torch.isfinite(out["loss"])
    batch.pixel_point, batch.pixel_index = batch.pixel_point[:0], batch.pixel_index[:0]  # nothing seen at all
    out = method(batch)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad


def test_frozen_image_net_weights_and_bn_statistics_unchanged(root, registered):
    cfg = config(root, SMOKE_3D + [f"method.image_net={SMOKE_IMAGE_NET}", "method.num_matches=64"])
    method, ds, collate = SPEC.build(cfg)
    assert set(method.frozen_modules()) == {"image_net"}
    before = {k: v.clone() for k, v in method.image_net.state_dict().items()}
    assert any("running_mean" in k for k in before)
    opt = build_optimizer(method, OptimConfig(lr=0.1), method.param_groups())
    method.train()
    method.image_net.train()  # even if someone switches it to train mode, the forward runs it in eval
    for step in range(2):
        batch = collate([ds.get_sample(i, np.random.default_rng([step, i])) for i in range(2)])
        out = method(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        assert not method.image_net.training
        assert all(p.grad is None and not p.requires_grad for p in method.image_net.parameters())
    after = method.image_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), [k for k in before if not torch.equal(before[k],
                                                                                                      after[k])][:3]
    # the check can fail: the authors' pattern (train mode under no_grad) moves the BN statistics
    method.image_net.train()
    with torch.no_grad():
        method.image_net(batch.images)
    assert not all(torch.equal(before[k], v) for k, v in method.image_net.state_dict().items())


def test_stage3d_config_errors(root, registered):
    with pytest.raises(DataError, match="stage-1 image network"):
        SPEC.build(config(root, SMOKE_3D))
    with pytest.raises(DataError, match="not found"):
        SPEC.build(config(root, SMOKE_3D + ["method.image_net=nope.safetensors"]))
    with pytest.raises(ValueError, match="contradicts"):
        SPEC.build(config(root, SMOKE_3D + [f"method.image_net={SMOKE_IMAGE_NET}", "data.stage=2d"]))
    with pytest.raises(ValueError, match="in_channels"):
        SPEC.build(config(root, SMOKE_3D + [f"method.image_net={SMOKE_IMAGE_NET}", "data.feat_keys=[ones]"]))


# ----------------------------------------------------------------------------------------- both stages
def test_stage2d_loss_matches_naive_loop(root, registered):
    cfg = config(root, SMOKE_2D + ["data.num_pixels=12"])
    method, ds, collate = SPEC.build(cfg)
    assert method.param_groups()[0]["lr_scale"] == pytest.approx(0.1)
    batch = collate([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])
    method.eval()
    out = method(batch)
    with torch.no_grad():
        f1, f2 = method.image_net(batch.images1).double(), method.image_net(batch.images2).double()
    s = batch.images1.shape[-1]
    q, k, g = [], [], []
    for (a, b), pair in zip(batch.matches.tolist(), batch.match_pair.tolist()):
        (ia, ra, ca), (ib, rb, cb) = (np.unravel_index(x, (2, s, s)) for x in (a, b))
        assert ia == ib == pair
        q.append(f1[ia, :, ra, ca])
        k.append(f2[ib, :, rb, cb])
        g.append(pair)
    want = naive_info_nce(torch.stack(q), torch.stack(k), torch.tensor(g), 0.4, "batch", "sum")
    assert out["loss"].item() == pytest.approx(want, rel=1e-4)


def test_both_stages_end_to_end(root, registered, tmp_path):
    stage1 = train(config(root, SMOKE_2D), SPEC, tmp_path / "stage1")
    assert stage1.step == 2 and set(stage1.exports) == {"image_net"} and stage1.backbone_path is None
    image = load_pretrained(tmp_path / "stage1" / "image_net.safetensors")
    rec = image.record
    assert (rec.kind, rec.preset, rec.in_channels, rec.out_channels, rec.method, rec.step) == \
        ("image_unet", "tiny", 3, 16, "image2point", 2)
    assert rec.extra["image_size"] == 48
    # stage 3d from the stage-1 export; geometry-only input as the variant under test
    path = str(tmp_path / "stage1" / "image_net.safetensors")
    cfg = config(root, SMOKE_3D + [f"method.image_net={path}", "method.num_matches=128", "data.feat_keys=[ones]",
                                   "model.in_channels=1", "method.negatives=pair"])
    stage2 = train(cfg, SPEC, tmp_path / "stage2")
    assert set(stage2.exports) == {"backbone"}
    backbone = load_pretrained(stage2.backbone_path)
    assert backbone.record.feat_keys == ["ones"] and backbone.record.in_channels == 1
    assert not any(k.startswith("head") for k in backbone.model.state_dict())
    ckpt = torch.load(tmp_path / "stage2" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("image_net.") for k in ckpt["model"])  # frozen: never in checkpoints
    assert any(k.startswith("head.") for k in ckpt["model"])
    # the frozen net after 2 engine steps is bit-identical (weights and BN statistics) to the stage-1 file
    assert ckpt["frozen"]["image_net"]["digest"] == tensor_digest(image.model)
    metrics = (tmp_path / "stage2" / "metrics.jsonl").read_text()
    assert "pos_cos" in metrics
