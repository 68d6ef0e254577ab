"""GroupContrast method: the wiring of student, EMA teacher, centre and both losses against float64
references built from the method's own modules, the hooks (EMA only in ``after_step``, one centre update
per step, prototype freezing), every ablation switch, the presets and a 2-step engine run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrast3d.engine.objective import HookContext
from contrast3d.engine.run import train
from contrast3d.methods import METHODS, method_config
from contrast3d.methods.common import BackboneConfig, smoke_scenes
from contrast3d.methods.groupcontrast import (
    SPEC,
    GroupContrast,
    GroupContrastConfig,
    GroupContrastDataConfig,
    build_groupcontrast_dataset,
    groupcontrast_collate,
)
from contrast3d.structures import ViewBatch

DATA = GroupContrastDataConfig(grid_size=0.1, match_radius=0.15, max_points=1500, strict=True)
SMALL = {"num_samples": 256, "proj_hidden": 32, "proj_dim": 16, "num_prototypes": 8}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return smoke_scenes(tmp_path_factory.mktemp("gc_scenes"))


@pytest.fixture(scope="module")
def dataset(root):
    return build_groupcontrast_dataset(root, DATA)


@pytest.fixture(scope="module")
def batch(dataset) -> ViewBatch:
    return groupcontrast_collate(DATA)([dataset.get_sample(i, np.random.default_rng(i)) for i in range(2)])


def make(**kw) -> GroupContrast:
    torch.manual_seed(0)
    method = GroupContrast(GroupContrastConfig(**{**SMALL, **kw}), BackboneConfig(preset="spunet-tiny"), DATA)
    return method.train()


def hook(step: int, max_steps: int = 10, all_reduce=None) -> HookContext:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return HookContext(step, max_steps, opt, all_reduce=all_reduce or (lambda t: t))


def trainable(method):
    return [(n, p) for n, p in method.named_parameters() if p.requires_grad]


def assert_full_gradients(method):
    missing = [n for n, p in trainable(method) if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]
    dead = [n for n, p in trainable(method) if p.grad.abs().sum() == 0]
    assert not dead, dead[:5]


# ----------------------------------------------------------------------------- float64 reference


def reference(method: GroupContrast, batch: ViewBatch):
    """Student on view 1, teacher on view 2 (``symmetric=False``), every candidate point sampled:
    ``(L_group, L_con, uncentred teacher logits)`` computed with loops over segments and anchors."""
    c = method.cfg
    v1, v2 = batch.view1, batch.view2
    m = batch.matches.numpy()
    with torch.no_grad():
        fs, ft = method.student.encoder(v1), method.teacher_net().encoder(v2)
    sp1, sp2 = v1.superpoint.numpy(), v2.superpoint.numpy()
    in1, in2 = np.zeros(len(sp1), bool), np.zeros(len(sp2), bool)
    in1[m[:, 0]], in2[m[:, 1]] = True, True
    common = sorted(set(sp1[in1 & (sp1 >= 0)].tolist()) & set(sp2[in2 & (sp2 >= 0)].tolist()))
    ok1, ok2 = in1 & np.isin(sp1, common), in2 & np.isin(sp2, common)
    idx1, idx2 = np.flatnonzero(ok1), np.flatnonzero(ok2)
    with torch.no_grad():
        gs = F.normalize(method.student.group_proj(fs[idx1]).double(), dim=1)
        gt = F.normalize(method.teacher_net().group_proj(ft[idx2]).double(), dim=1)
    zs = torch.stack([gs[torch.from_numpy(sp1[idx1] == s)].mean(0) for s in common])
    zt = torch.stack([gt[torch.from_numpy(sp2[idx2] == s)].mean(0) for s in common])
    ps = F.normalize(method.student.prototypes.weight.detach().double(), dim=1)
    pt = F.normalize(method.teacher_net().prototypes.weight.double(), dim=1)
    ls, lt = F.normalize(zs, dim=1) @ ps.T, F.normalize(zt, dim=1) @ pt.T
    K = torch.softmax((lt - method.center.center.double()) / c.tau_t, dim=1)
    logq = torch.log_softmax(ls / c.tau_s, dim=1)
    H = -(K * K.log()).sum(1)
    l_group = float((H * -(K * logq).sum(1)).sum() / H.sum())
    # contrast: anchors = all candidates of view 1, keys = all of view 2, labels from K of the teacher view
    with torch.no_grad():
        q = method.predictor(method.student.con_proj(fs[idx1]))
        k = method.teacher_net().con_proj(ft[idx2])
    q, k = F.normalize(q.double(), dim=1), F.normalize(k.double(), dim=1)
    row1 = np.searchsorted(common, sp1[idx1])
    row2 = np.searchsorted(common, sp2[idx2])
    Kn = K.numpy()
    lab = Kn.argmax(1)
    y1, y2 = lab[row1], lab[row2]
    b1, b2 = v1.batch.numpy()[idx1], v2.batch.numpy()[idx2]
    total, count = 0.0, 0
    for i in range(len(idx1)):  # one anchor at a time: its positives, each with the anchor's negatives
        s = (k @ q[i]).numpy() / c.tau
        same = b2 == b1[i]
        pos = np.flatnonzero(same & (y2 == y1[i]))
        neg_sum = np.exp(s[same & (y2 != y1[i])]).sum()
        conf = Kn[row1[i], y1[i]] * Kn[row2[pos], y1[i]]  # C_ij = K[s_i, k] K[s_j, k]
        total += float(-(conf * np.log(np.exp(s[pos]) / (np.exp(s[pos]) + neg_sum))).sum())
        count += len(pos)
    return l_group, total / count, lt


def test_losses_and_centre_match_a_float64_reference(batch):
    method = make(symmetric=False, num_samples=10**6, center_momentum=0.8)
    method.center.center.copy_(torch.linspace(-0.2, 0.3, 8))  # a non-zero centre must bias the teacher logits
    out = method(batch)
    l_group, l_con, teacher_logits = reference(method, batch)
    assert out["loss_group"].item() == pytest.approx(l_group, rel=1e-4)
    assert out["loss_con"].item() == pytest.approx(l_con, rel=1e-4)
    assert out["loss"].item() == pytest.approx(l_group + l_con, rel=1e-4)
    # the centre moves only in after_step, once, by the EMA of the mean uncentred teacher logits (Eq. 3)
    old = method.center.center.clone()
    out["loss"].backward()
    assert torch.equal(method.center.center, old) and not method.center.center.requires_grad
    calls = []
    method.after_step(hook(1, all_reduce=lambda t: calls.append(t.clone()) or t))
    expected = 0.8 * old.double() + 0.2 * teacher_logits.mean(0)
    torch.testing.assert_close(method.center.center.double(), expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1 and calls[0][-1] == teacher_logits.shape[0]  # [logit sums, segment count] reduced once
    method.after_step(hook(2))  # no forward since: the centre stays
    torch.testing.assert_close(method.center.center.double(), expected, rtol=1e-5, atol=1e-6)


def test_centre_mean_is_global_with_all_reduce(batch):
    """Two identical processes (sum doubles logits and count) give the one-process centre."""
    a, b = make(), make()
    a(batch), b(batch)
    a.after_step(hook(1))
    b.after_step(hook(1, all_reduce=lambda t: t.mul_(2)))
    torch.testing.assert_close(a.center.center, b.center.center)
    assert a.center.center.abs().sum() > 0


def test_symmetric_loss_is_the_mean_of_both_directions(batch):
    swapped = ViewBatch([batch.view2, batch.view1], {(0, 1): batch.matches[:, [1, 0]]},
                        {(0, 1): batch.match_offset}, meta=batch.meta)
    kw = {"num_samples": 10**6}
    sym = make(**kw)(batch)
    one, other = make(symmetric=False, **kw)(batch), make(symmetric=False, **kw)(swapped)
    for key in ("loss_group", "loss_con"):
        assert sym[key].item() == pytest.approx((one[key].item() + other[key].item()) / 2, rel=1e-4)


# ----------------------------------------------------------------------------- teacher and hooks


def test_teacher_gets_no_gradient_and_moves_only_by_ema_in_after_step(batch):
    method = make(momentum=0.9)
    for (n, s), (_, t) in zip(method.student.state_dict().items(), method.teacher_net().state_dict().items()):
        assert torch.equal(s, t), n  # the teacher starts as a copy
    assert not hasattr(method.teacher_net(), "predictor") and method.predictor is not None
    out = method(batch)
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in method.teacher.parameters())
    assert_full_gradients(method)
    before = {n: p.detach().clone() for n, p in method.teacher_net().named_parameters()}
    opt = torch.optim.SGD([p for _, p in trainable(method)], lr=0.5)
    opt.step()
    for n, p in method.teacher_net().named_parameters():
        assert torch.equal(p, before[n]), f"{n} moved outside after_step"
    method.after_step(hook(1))
    student = dict(method.student.named_parameters())
    moved = 0
    for n, p in method.teacher_net().named_parameters():
        torch.testing.assert_close(p, 0.9 * before[n] + 0.1 * student[n].detach())
        moved += int(not torch.equal(p, before[n]))
    assert moved > 0
    bn = [n for n, _ in method.student.named_buffers() if n.endswith("running_mean")][0]
    assert torch.equal(method.teacher_net().get_buffer(bn), method.student.get_buffer(bn))


def test_momentum_schedules_and_logged_values(batch):
    constant = make()
    assert constant.momentum_at(5, 100) == 0.999
    cosine = make(momentum_schedule="cosine", momentum=0.994, momentum_final=1.0)
    assert cosine.momentum_at(0, 100) == pytest.approx(0.994)
    assert cosine.momentum_at(50, 100) == pytest.approx(0.997)
    assert cosine.momentum_at(100, 100) == pytest.approx(1.0)
    cosine.after_step(hook(50, 100))  # the next step (51 of 100) logs the momentum its after_step applies
    out = cosine(batch)
    assert out["momentum"].item() == pytest.approx(1 - 0.003 * (1 + math.cos(math.pi * 0.51)), rel=1e-6)
    warm = make(tau_t_warmup_steps=10)
    assert warm(batch)["tau_t"].item() == pytest.approx(0.04)
    warm.after_step(hook(5, 100))
    assert warm(batch)["tau_t"].item() == pytest.approx(0.055)


def test_prototype_gradient_cancelled_in_the_first_steps(batch):
    method = make(freeze_prototypes_steps=2)
    method(batch)["loss"].backward()
    method.before_optimizer_step(hook(1))  # the step about to be taken is the 2nd: still frozen
    assert method.student.prototypes.weight.grad is None
    assert method.student.group_proj[0].weight.grad is not None
    method(batch)["loss"].backward()
    method.before_optimizer_step(hook(2))
    assert method.student.prototypes.weight.grad is not None


def test_collapse_monitor_values(batch):
    out = make()(batch)
    n = SMALL["num_prototypes"]
    assert 1 <= out["used_prototypes"].item() <= n
    assert 0.0 <= out["mean_assign_entropy"].item() <= math.log(n) + 1e-6
    assert out["segments"].item() > 5


# ----------------------------------------------------------------------------- ablations


ABLATIONS = {
    "matched_points": {"positives": "matched", "grouping": False, "confidence": False},
    "spatial_grid": {"positives": "grid", "grouping": False, "confidence": False},
    "geometry_segment": {"positives": "segment", "grouping": False, "confidence": False},
    "matched_with_grouping": {"positives": "matched"},
    "no_informative": {"informative": False},
    "no_confidence": {"confidence": False},
    "no_predictor": {"predictor": False},
    "no_centering": {"centering": False},
    "no_sharpening": {"sharpening": False},
    "one_direction_batch_scope": {"symmetric": False, "contrast_scope": "batch"},
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_ablation_trains_every_parameter_it_creates(name, batch):
    kw = ABLATIONS[name]
    method = make(**kw)
    out = method(batch)
    assert all(torch.isfinite(v) for v in out.values()), out
    out["loss"].backward()
    assert_full_gradients(method)
    grouping = kw.get("grouping", True)
    assert (method.student.group_proj is not None) == grouping
    assert (method.student.prototypes is not None) == grouping
    assert (method.center is not None) == (grouping and kw.get("centering", True))
    assert (method.predictor is not None) == kw.get("predictor", True)
    assert ("loss_group" in out) == grouping
    if name == "no_sharpening":
        assert out["tau_t"].item() == pytest.approx(0.1)
    method.after_step(hook(1))


def test_invalid_ablation_combinations_are_refused():
    with pytest.raises(ValueError, match="grouping"):
        GroupContrastConfig(grouping=False)
    with pytest.raises(ValueError, match="confidence"):
        GroupContrastConfig(positives="grid")
    with pytest.raises(ValueError, match="confidence"):
        GroupContrastConfig(positives="matched", grouping=False)


def test_grid_labels_are_world_cells_shared_by_both_views(batch, dataset):
    method = make(positives="grid", grouping=False, confidence=False, grid_cell=0.5)
    views = (batch.view1, batch.view2)
    idx = [torch.unique(batch.matches[:, 0]), torch.unique(batch.matches[:, 1])]
    labels = method._labels(views, idx, None, None)
    keys = [np.column_stack([v.batch[i].numpy(), np.floor(v.extra["world_coord"][i].numpy()[:, :2] / 0.5)])
            for v, i in zip(views, idx)]
    allk, alll = np.concatenate(keys), torch.cat(labels).numpy()
    for lab in np.unique(alll):  # one label <-> one (scene, cell x, cell y)
        assert len(np.unique(allk[alll == lab], axis=0)) == 1
    assert len(np.unique(alll)) == len(np.unique(allk, axis=0)) > 1
    sample = dataset.get_sample(0, np.random.default_rng(0))  # world_coord = original scene coordinates
    raw = dataset.raw(0)
    np.testing.assert_array_equal(sample.view1.extra["world_coord"], raw.coord[sample.view1.meta["origin_index"]])


# ----------------------------------------------------------------------------- presets and the engine


def test_presets(monkeypatch):
    monkeypatch.setitem(METHODS, "groupcontrast", SPEC)
    paper = method_config("groupcontrast")
    assert paper.model.preset == "spunet34" and paper.data.grid_size == 0.02
    assert (paper.optim.lr, paper.optim.momentum, paper.optim.weight_decay, paper.optim.nesterov) == (0.1, 0.8, 1e-4,
                                                                                                     True)
    assert paper.loader.batch_size * 8 == 32 and paper.schedule.name == "cosine"
    assert paper.schedule.warmup_steps == paper.steps // 100
    assert paper.method == GroupContrastConfig()  # the paper's defaults, spelled out in the preset
    small = method_config("groupcontrast", files=["groupcontrast_cpu_small"])
    assert small.model.preset == "spunet-tiny" and small.method.momentum_schedule == "cosine"


def test_two_engine_steps(monkeypatch, root, tmp_path):
    monkeypatch.setitem(METHODS, "groupcontrast", SPEC)
    overrides = [f"method.{k}={v}" for k, v in SMALL.items()] + [
        "model.preset=spunet-tiny", "data.grid_size=0.1", "data.match_radius=0.15", "data.max_points=1500",
        "loader.batch_size=2", "loader.num_workers=0", "log_every=1"]
    cfg = method_config("groupcontrast", flags={"data_root": root, "steps": 2, "device": "cpu", "progress": False},
                        overrides=overrides)
    result = train(cfg, SPEC, tmp_path)
    assert result.step == 2 and (tmp_path / "backbone.safetensors").is_file()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in rows for k in r}
    assert {"loss_group", "loss_con", "used_prototypes", "mean_assign_entropy", "momentum", "tau_t"} <= logged
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert {"center.center", "schedule_state", "teacher.module.prototypes.weight", "predictor.0.weight"} <= set(state)
    assert state["schedule_state"].tolist() == [2, 2]
    assert state["center.center"].abs().sum() > 0
    assert not any(k.startswith("teacher.module.predictor") for k in state)
