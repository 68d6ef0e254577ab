"""Schedules vs their closed form, resume of scheduler state, optimizer groups."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrast3d.engine.optim import OptimConfig, ScheduleConfig, build_optimizer, build_scheduler

BASE = 0.2
TOTAL = 100
W = 10


def lrs(cfg: ScheduleConfig, steps: int = TOTAL + 5) -> list[float]:
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(lr=BASE))
    sched = build_scheduler(opt, cfg, TOTAL)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def warm(s: int, start: float = 0.001) -> float:
    return BASE * (start + (1 - start) * s / W)


def test_cosine_with_warmup():
    got = lrs(ScheduleConfig(name="cosine", warmup_steps=W, min_factor=0.1))
    for s in (0, 1, 5, 9):
        assert got[s] == pytest.approx(warm(s))
    for s in (10, 32, 55, 99, 100, 104):
        t = min(1.0, (s - W) / (TOTAL - W))
        assert got[s] == pytest.approx(BASE * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))))
    assert got[W] == pytest.approx(BASE) and got[TOTAL] == pytest.approx(0.1 * BASE)


def test_poly_with_warmup():
    got = lrs(ScheduleConfig(name="poly", warmup_steps=W, power=0.9, warmup_start_factor=0.0))
    assert got[0] == 0.0 and got[5] == pytest.approx(BASE * 0.5)
    for s in (10, 40, 77, 100):
        assert got[s] == pytest.approx(BASE * (1 - (s - W) / (TOTAL - W)) ** 0.9)


def test_step_with_warmup():
    got = lrs(ScheduleConfig(name="step", warmup_steps=W, milestones=(0.5, 0.8), gamma=0.1))
    assert got[3] == pytest.approx(warm(3))
    assert got[49] == pytest.approx(BASE) and got[50] == pytest.approx(0.1 * BASE)
    assert got[79] == pytest.approx(0.1 * BASE) and got[80] == pytest.approx(0.01 * BASE)


def test_exp_staircase_and_smooth():
    # Official PointContrast: x0.99 every 250 steps -> here x0.5 every 7 steps after a warm-up.
    got = lrs(ScheduleConfig(name="exp", warmup_steps=W, gamma=0.5, step_size=7))
    assert got[3] == pytest.approx(warm(3))
    for s in range(W, TOTAL + 5):
        assert got[s] == pytest.approx(BASE * 0.5 ** ((s - W) // 7)), s
    assert got[W + 6] == pytest.approx(BASE) and got[W + 7] == pytest.approx(0.5 * BASE)
    smooth = lrs(ScheduleConfig(name="exp", gamma=0.99, step_size=250, staircase=False), 40)
    assert smooth == pytest.approx([BASE * 0.99 ** (s / 250) for s in range(40)], rel=1e-12)
    # Independent of the run length (unlike step milestones, which are fractions of it).
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(lr=BASE))
    sched = build_scheduler(opt, ScheduleConfig(name="exp", gamma=0.99, step_size=250), 60000)
    assert sched.lr_lambdas[0](60000) == pytest.approx(0.99 ** 240)
    assert sched.lr_lambdas[0](249) == 1.0 and sched.lr_lambdas[0](250) == pytest.approx(0.99)
    with pytest.raises(ValueError):
        ScheduleConfig(name="exp", step_size=0)


def test_existing_schedules_unchanged_by_the_exp_fields():
    # The new fields must not move any other schedule (exact float equality with the formulas).
    for cfg in (ScheduleConfig(name="cosine", warmup_steps=W, min_factor=0.1),
                ScheduleConfig(name="step", milestones=(0.5,)), ScheduleConfig(name="poly")):
        moved = ScheduleConfig(**{**cfg.__dict__, "step_size": 3, "staircase": False})
        assert lrs(cfg, 30) == lrs(moved, 30)


def test_constant_and_no_warmup():
    assert lrs(ScheduleConfig(name="constant"), 20) == [BASE] * 20
    assert lrs(ScheduleConfig(name="cosine"), 1) == [BASE]


def test_scheduler_state_survives_resume():
    cfg = ScheduleConfig(name="cosine", warmup_steps=W)
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, OptimConfig(lr=BASE))
    sched = build_scheduler(opt, cfg, TOTAL)
    for _ in range(37):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None]          # plain data only
    opt2 = build_optimizer(model, OptimConfig(lr=BASE))
    opt2.load_state_dict(opt.state_dict())
    sched2 = build_scheduler(opt2, cfg, TOTAL)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for _ in range(5):
        sched.step()
        sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert lrs(cfg, 43)[-1] == opt.param_groups[0]["lr"]


def test_optimizer_groups():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05, no_decay_norm_bias=True))
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert len(decay["params"]) == 2 and decay["weight_decay"] == 0.05
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0
    opt = build_optimizer(model, OptimConfig(lr=0.1), [{"params": list(model[0].parameters()), "lr_scale": 0.1},
                                                        {"params": list(model[2].parameters())}])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
