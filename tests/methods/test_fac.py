"""FAC method (contrast3d.methods.fac): teacher and EMA, score maps, ablations, inputs, end to end.

The losses and samplers themselves are checked against naive references in
tests/losses/test_fac.py and tests/models/test_scn.py; here the method's wiring is checked.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from contrast3d.engine.objective import HookContext
from contrast3d.engine.run import train
from contrast3d.losses.fac import carry_regions
from contrast3d.methods import METHODS, method_config
from contrast3d.methods.common import BackboneConfig, PairDataConfig, build_pair_dataset, pair_collate, smoke_scenes
from contrast3d.methods.fac import FAC, SPEC, FACConfig

DATA = PairDataConfig(grid_size=0.1, match_radius=0.15, max_points=3000, strict=True)
MODEL = BackboneConfig(preset="spunet-tiny")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return smoke_scenes(tmp_path_factory.mktemp("fac_scenes"))


@pytest.fixture(scope="module")
def batch(root):
    ds = build_pair_dataset(root, DATA)
    return pair_collate(DATA)([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])


def make(**kw) -> FAC:
    torch.manual_seed(0)
    method = FAC(FACConfig(num_pairs=256, **kw), MODEL, DATA)
    method.train()
    return method


def run(method: FAC, batch, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # the samplers' generator is seeded from torch's global RNG
    return method(batch)


def test_superpoints_survive_augmentation_and_are_carried_consistently(batch):
    va, vb = batch.view1, batch.view2
    assert va.superpoint is not None and vb.superpoint is not None
    for view in (va, vb):  # collation makes ids unique per sample: no id in two scenes
        ids, scene = view.superpoint[view.superpoint >= 0], view.batch[view.superpoint >= 0]
        lo = torch.full((int(ids.max()) + 1,), 99).scatter_reduce(0, ids, scene, "amin")
        hi = torch.full((int(ids.max()) + 1,), -1).scatter_reduce(0, ids, scene, "amax")
        used = torch.unique(ids)
        assert torch.equal(lo[used], hi[used])
    carried = carry_regions(va.superpoint, batch.matches, len(vb))
    hit = carried >= 0
    assert hit.sum() > 100
    # holistic crops of one scene: view b's own segmentation agrees with the carried ids almost everywhere
    assert (carried[hit] == vb.superpoint[hit]).float().mean() > 0.8


def test_teacher_gets_no_gradient_and_moves_exactly_by_ema(batch):
    method = make(momentum=0.9)
    teacher = dict(method.teacher.module.named_parameters())
    assert teacher and not any(p.requires_grad for p in teacher.values())
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert not {id(p) for p in trainable} & {id(p) for p in teacher.values()}
    opt = torch.optim.SGD(trainable, lr=0.5)
    before = {k: p.detach().clone() for k, p in teacher.items()}
    out = run(method, batch)
    opt.zero_grad()
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.values())
    opt.step()
    assert all(torch.equal(p, before[k]) for k, p in teacher.items())  # the optimizer never moves it
    student = dict(method.student.named_parameters())
    method.after_step(HookContext(step=1, max_steps=10, optimizer=opt))
    moved = 0
    for k, p in teacher.items():
        expect = before[k].double() + 0.1 * (student[k].detach().double() - before[k].double())
        assert torch.allclose(p.double(), expect, rtol=1e-6, atol=1e-7), k
        moved += int(not torch.equal(p, before[k]))
    assert moved > len(teacher) // 2
    s_bufs = dict(method.student.named_buffers())
    for k, b in method.teacher.module.named_buffers():  # BatchNorm statistics copied from the student
        assert torch.equal(b, s_bufs[k]), k


def test_cosine_momentum_schedule_is_logged_and_applied(batch):
    method = make(momentum=0.9, momentum_schedule="cosine")
    assert run(method, batch)["momentum"].item() == pytest.approx(0.9)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    method.after_step(HookContext(step=1, max_steps=2, optimizer=opt))   # applied 0.9, next: halfway
    assert run(method, batch)["momentum"].item() == pytest.approx(0.95)
    with torch.no_grad():  # move the student so that the second update is visible
        for p in method.student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    before = [p.clone() for p in method.teacher.parameters()]
    method.after_step(HookContext(step=2, max_steps=2, optimizer=opt))   # applies 0.95, next: 1.0
    assert run(method, batch)["momentum"].item() == pytest.approx(1.0)
    s = list(method.student.parameters())
    for t0, t1, p in zip(before, method.teacher.parameters(), s):
        assert torch.allclose(t1, 0.95 * t0 + 0.05 * p.detach(), rtol=1e-5, atol=1e-7)


def test_score_maps_change_the_loss_and_h_gets_gradient(batch):
    with_s, without = make(), make(score_maps=False)
    assert without.scn is None and not any("scn" in n for n, _ in without.named_parameters())
    without.load_state_dict({k: v for k, v in with_s.state_dict().items() if not k.startswith("scn.")})
    a, b = run(with_s, batch), run(without, batch)
    assert a["loss_geo"].item() == pytest.approx(b["loss_geo"].item(), rel=1e-6)   # same sampling
    assert abs(a["loss_fea"].item() - b["loss_fea"].item()) > 1e-3
    a["loss"].backward()
    grads = [p.grad for p in with_s.scn.h.parameters()]
    assert len(grads) == 4 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_loss_is_the_weighted_sum_and_sampling_follows_the_torch_seed(batch):
    method = make(alpha=2.0, beta=0.5)
    out = run(method, batch, seed=3)
    assert out["loss"].item() == pytest.approx(2.0 * out["loss_geo"].item() + 0.5 * out["loss_fea"].item(), rel=1e-6)
    again, other = run(method, batch, seed=3), run(method, batch, seed=4)
    assert again["loss"].item() == out["loss"].item()
    assert other["loss"].item() != out["loss"].item()
    assert out["num_anchors"].item() > 4 and -1.0 <= out["pos_cos"].item() <= 1.0


@pytest.mark.parametrize("kw,logged", [
    ({"use_fea": False}, {"loss_geo"}),
    ({"use_geo": False}, {"loss_fea"}),
    ({"regional_sampling": False}, {"loss_geo", "loss_fea"}),
    ({"score_maps": False}, {"loss_geo", "loss_fea"}),
    ({"positives": "sinkhorn", "proj_dim": 20, "teacher_bn": "running", "score_activation": "sigmoid"},
     {"loss_geo", "loss_fea"}),
])
def test_ablations_run_with_gradients_on_every_trainable_parameter(batch, kw, logged):
    method = make(**kw)
    out = run(method, batch)
    assert {"loss_geo", "loss_fea"} & set(out) == logged
    assert {"num_anchors", "pos_cos", "momentum"} <= set(out)
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    dead = [n for n, p in method.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not dead, dead[:5]
    assert (method.scn is None) == (not kw.get("use_fea", True) or not kw.get("score_maps", True))
    if "proj_dim" in kw:
        assert method.student.out_channels == 20 and method.scn.channels == 20


def test_all_regions_give_more_anchors_than_regional_sampling(batch):
    sampled = run(make(), batch)["num_anchors"].item()          # H = 20 per scene, 2 scenes
    every = run(make(regional_sampling=False), batch)["num_anchors"].item()
    assert 0 < sampled <= 40 < every


def test_missing_or_empty_superpoints_and_bad_config(batch):
    from dataclasses import replace
    with pytest.raises(ValueError, match="superpoint"):
        make()(replace(batch, views=[replace(batch.view1, superpoint=None), batch.view2]))
    out = make()(replace(batch, views=[replace(batch.view1, superpoint=torch.full_like(batch.view1.superpoint, -1)),
                                       batch.view2]))
    assert out["num_anchors"].item() == 0 and out["loss"].item() == 0.0
    out["loss"].backward()  # no anchors: a zero loss that still has a graph
    with pytest.raises(ValueError, match="at least one loss"):
        FACConfig(use_geo=False, use_fea=False)


def test_train_end_to_end_writes_the_backbone(root, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "fac", SPEC)
    paper = method_config("fac", flags={"data_root": root})
    assert (paper.model.preset, paper.data.grid_size, paper.optim.lr, paper.steps) == ("spunet34", 0.025, 0.1, 60000)
    assert (paper.loader.batch_size, paper.method.tau, paper.method.num_regions) == (4, 0.1, 20)
    cfg = method_config("fac", files=["fac_cpu_small"],
                        flags={"data_root": root, "steps": 2, "device": "cpu", "progress": False},
                        overrides=["data.grid_size=0.1", "data.match_radius=0.15", "data.max_points=3000",
                                   "method.num_pairs=256", "loader.batch_size=2", "loader.num_workers=0",
                                   "log_every=1"])
    assert cfg.model.preset == "spunet-tiny" and cfg.method.momentum == 0.99
    result = train(cfg, SPEC, tmp_path / "run")
    assert result.step == 2 and (tmp_path / "run" / "backbone.safetensors").is_file()
    assert not list((tmp_path / "run").glob("scn*"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*(r.keys() for r in rows))
    assert {"loss_geo", "loss_fea", "num_anchors", "pos_cos", "momentum"} <= {k.split("/")[-1] for k in logged}
