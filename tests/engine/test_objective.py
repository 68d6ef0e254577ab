"""The TrainObjective contract as the trainer honours it: hooks with their context, frozen modules
(eval mode, no gradient, no optimizer state, left out of checkpoints, checked on resume), parameter
groups with their own schedules, exports with records, a scheduler that does not step when AMP
skipped the optimizer step, and non-finite buffers that stop the run without a checkpoint or export."""
from __future__ import annotations

import json

import engine_toy as T
import numpy as np
import pytest
import torch
from torch import nn

from contrast3d.engine.checkpoint import CheckpointError, load_checkpoint
from contrast3d.engine.objective import Export, Frozen, HookContext
from contrast3d.engine.optim import ScheduleConfig
from contrast3d.engine.run import train
from contrast3d.engine.trainer import NonFiniteLossError, Trainer
from contrast3d.methods.base import MethodSpec


class Hooked(T.ToyMethod):
    """The toy method plus a frozen network, two parameter groups and recording hooks."""

    calls: list = []

    def __init__(self, cfg, model, data):
        super().__init__(cfg, model, data)
        self.frozen = nn.Sequential(nn.Linear(model.in_channels, model.in_channels), nn.BatchNorm1d(model.in_channels))
        self.head = nn.Linear(model.out_channels, 1)

    def forward(self, batch):
        out = super().forward(batch)
        assert not self.frozen.training  # kept in eval even though the trainer calls train()
        with torch.no_grad():
            guide = self.frozen(batch.feat)
        out["loss"] = out["loss"] + (self.head(self.net(batch.feat)).squeeze(1) - guide[:, 0]).pow(2).mean()
        return out

    def frozen_modules(self):
        return {"frozen": Frozen(self.frozen, source="made in the test")}

    def param_groups(self):
        return [{"params": list(self.net.parameters()), "name": "net"},
                {"params": list(self.head.parameters()), "name": "head", "lr_scale": 0.5,
                 "schedule": ScheduleConfig(name="constant")}]

    def before_optimizer_step(self, ctx: HookContext) -> None:
        Hooked.calls.append(("before", ctx.step, ctx.max_steps, [g["name"] for g in ctx.optimizer.param_groups],
                             ctx.world_size, float(ctx.all_reduce(torch.ones(())))))
        if ctx.step == 0:  # e.g. DINO's frozen last layer in the first iterations
            for p in self.head.parameters():
                p.grad = None

    def after_step(self, ctx: HookContext) -> None:
        super().after_step(ctx)
        Hooked.calls.append(("after", ctx.step))

    def exports(self):
        return {"backbone": Export(self.net, {"preset": "toy"}), "head": Export(self.head, {"preset": "toy-head"})}


SPEC = MethodSpec(config_cls=T.ToyConfig, method_cls=Hooked, build_dataset=T.SPEC.build_dataset,
                  build_collate=T.SPEC.build_collate, model_config_cls=T.ToyModelConfig,
                  data_config_cls=T.ToyDataConfig)


def test_hooks_frozen_modules_groups_and_exports(tmp_path):
    Hooked.calls = []
    cfg = T.toy_config(steps=3, checkpoint_every=2, loader__num_workers=0)
    torch.manual_seed(0)
    frozen_before = None
    run = tmp_path / "run"

    def grab(ctx):
        nonlocal frozen_before
        frozen_before = frozen_before or {k: v.clone() for k, v in ctx.method.frozen.state_dict().items()}

    from contrast3d.engine.trainer import PeriodicCallback
    result = train(cfg, SPEC, run, callbacks=[PeriodicCallback(1, grab, "grab")])
    befores = [c for c in Hooked.calls if c[0] == "before"]
    assert [c[1] for c in befores] == [0, 1, 2] and [c[1] for c in Hooked.calls if c[0] == "after"] == [1, 2, 3]
    assert befores[0][2] == 3 and befores[0][3] == ["net", "head"] and befores[0][4] == 1 and befores[0][5] == 1.0
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert not any(k.startswith("frozen.") for k in ckpt["model"])  # frozen weights are not checkpointed
    assert ckpt["frozen"]["frozen"]["source"] == "made in the test" and len(ckpt["frozen"]["frozen"]["digest"]) == 16
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["net", "head"] and groups[1]["schedule"]["name"] == "constant"
    # the head keeps lr 0.5 * 0.05 (constant schedule) while the net follows warm-up + cosine
    lrs = ckpt["scheduler"]["_last_lr"]
    assert lrs[1] == pytest.approx(0.025) and lrs[0] != pytest.approx(0.05)
    assert set(result.exports) == {"backbone", "head"}
    record = json.loads((run / "head.json").read_text())
    assert record["preset"] == "toy-head" and record["method"] == "toy" and record["step"] == 3


def test_frozen_module_is_unchanged_and_checked_on_resume(tmp_path):
    cfg = T.toy_config(steps=4, checkpoint_every=2, loader__num_workers=0)
    torch.manual_seed(0)
    method, dataset, collate = SPEC.build(cfg)
    before = {k: v.clone() for k, v in method.frozen.state_dict().items()}
    trainer = Trainer(cfg, method, dataset, collate, tmp_path / "run")
    trainer.fit(until=2)
    assert all(torch.equal(before[k], v) for k, v in method.frozen.state_dict().items())  # BN stats too
    assert all(p.grad is None and not p.requires_grad for p in method.frozen.parameters())
    opt_params = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in method.frozen.parameters()}
    # resuming with another frozen network is refused, naming it
    torch.manual_seed(1)
    other, dataset, collate = SPEC.build(cfg)
    with pytest.raises(CheckpointError, match="frozen module 'frozen' differs"):
        Trainer(cfg, other, dataset, collate, tmp_path / "run").fit(resume=True)
    # the same frozen weights resume fine
    torch.manual_seed(0)
    same, dataset, collate = SPEC.build(cfg)
    assert Trainer(cfg, same, dataset, collate, tmp_path / "run").fit(resume=True).step == 4


def test_scheduler_does_not_step_when_amp_skipped_the_step(tmp_path):
    cfg = T.toy_config(steps=2, loader__num_workers=0)
    method, dataset, collate = T.SPEC.build(cfg)
    trainer = Trainer(cfg, method, dataset, collate, tmp_path / "run")

    class SkippingScaler:  # what GradScaler does on an inf/NaN gradient: no step, a smaller scale
        factor = 2.0 ** 16

        def scale(self, loss):
            return loss

        def unscale_(self, opt):
            pass

        def get_scale(self):
            return self.factor

        def step(self, opt):
            pass

        def update(self):
            self.factor /= 2

    trainer.use_amp, trainer.scaler = True, SkippingScaler()
    batch = collate([dataset.get_sample(i, np.random.default_rng(i)) for i in range(4)])
    scalars = trainer._train_step(batch)
    assert scalars["amp_skipped"] == 1.0 and trainer.scheduler.last_epoch == 0 and trainer.step == 1


def test_non_finite_buffer_stops_without_checkpoint_or_export(tmp_path):
    cfg = T.toy_config(steps=4, checkpoint_every=2, loader__num_workers=0)
    method, dataset, collate = T.SPEC.build(cfg)
    trainer = Trainer(cfg, method, dataset, collate, tmp_path / "run")
    trainer.fit(until=2)
    good = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    method.register_buffer("stat", torch.tensor([float("inf")]))  # e.g. a BN running_var after lr=1e8
    with pytest.raises(NonFiniteLossError, match="non-finite weights or buffers.*stat"):
        trainer.save_checkpoint()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == good
    assert not (tmp_path / "run" / "backbone.safetensors").exists()
