"""A tiny pre-training method and dataset for engine tests (not part of the package).

The dataset's augmentation draws from every RNG a real pipeline might use (the per-sample
generator, numpy's and Python's global RNGs, torch's RNG); the method uses dropout and random
point sampling (main-process torch RNG), an EMA teacher (``after_step``) and can be told to
produce a NaN loss at a given step.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contrast3d.config import from_dict
from contrast3d.engine.config import TrainConfig
from contrast3d.engine.ema import EMATeacher, cosine_momentum
from contrast3d.engine.objective import Export, HookContext
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.structures import PointCloud, collate_points


@dataclass
class ToyDataConfig:
    num_samples: int = 10
    points: int = 12
    noise: float = 0.05


@dataclass
class ToyModelConfig:
    in_channels: int = 6
    hidden: int = 16
    out_channels: int = 8


@dataclass
class ToyConfig:
    dropout: float = 0.2
    sample_points: int = 8       # random subset of points in the loss (0 = all)
    ema_base: float = 0.9
    nan_at_step: int = 0         # make the loss NaN at this (1-based) step


class ToyDataset:
    def __init__(self, cfg: ToyDataConfig):
        self.cfg = cfg

    def __len__(self) -> int:
        return self.cfg.num_samples

    def get_sample(self, index: int, rng: np.random.Generator) -> PointCloud:
        base = np.random.default_rng(1000 + index)
        n = self.cfg.points
        coord = base.random((n, 3), dtype=np.float32)
        color = base.random((n, 3), dtype=np.float32)
        normal = base.standard_normal((n, 3)).astype(np.float32)
        # augmentation from four different random sources
        coord = coord + rng.normal(0, self.cfg.noise, (n, 3)).astype(np.float32)
        color = color * np.float32(np.random.uniform(0.8, 1.2))
        normal = normal * np.float32(random.uniform(0.9, 1.1)) + torch.rand(n, 3).numpy() * 0.01
        return PointCloud(coord=coord, color=color, normal=normal,
                          grid_coord=np.floor(np.clip(coord, 0, 1) * 10).astype(np.int64), meta={"name": f"s{index}"})


class ToyMethod(PretrainMethod):
    def __init__(self, cfg: ToyConfig, model: ToyModelConfig, data: ToyDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(model.in_channels, model.hidden), nn.ReLU(),
                                 nn.Dropout(cfg.dropout), nn.Linear(model.hidden, model.out_channels))
        self.teacher = EMATeacher(self.net)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def forward(self, batch):
        x = batch.feat
        if self.cfg.sample_points:
            x = x[torch.randperm(x.shape[0])[: self.cfg.sample_points * batch.batch_size]]
        s = self.net(x)
        t = self.teacher(x)
        loss = ((s - 0.5 * t - 1.0) ** 2).mean()
        if self.cfg.nan_at_step and int(self.steps_done) + 1 == self.cfg.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "feat_std": s.detach().std()}

    def after_step(self, ctx: HookContext) -> None:
        self.steps_done.fill_(ctx.step)
        self.teacher.update(self.net, cosine_momentum(ctx.step, ctx.max_steps, self.cfg.ema_base))

    def backbone(self) -> nn.Module:
        return self.net

    def exports(self) -> dict[str, Export]:
        return {"backbone": Export(self.net, {"preset": "toy-mlp", "in_channels": self.net[0].in_features})}


SPEC = MethodSpec(
    config_cls=ToyConfig, method_cls=ToyMethod,
    build_dataset=lambda root, cfg: ToyDataset(cfg),
    build_collate=lambda cfg: collate_points,
    model_config_cls=ToyModelConfig, data_config_cls=ToyDataConfig,
    description="toy MLP for engine tests",
)


def toy_config(**overrides) -> TrainConfig:
    """A small CPU config; ``overrides`` use dotted keys with ``__`` (``optim__lr=0.1``)."""
    data = {"method_name": "toy", "data_root": "unused", "steps": 6, "device": "cpu", "progress": False,
            "log_every": 1, "checkpoint_every": 3, "seed": 3,
            "loader": {"batch_size": 4, "num_workers": 0},
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "clip_grad_norm": 10.0},
            "schedule": {"name": "cosine", "warmup_steps": 2}}
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        d = data
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value
    return from_dict(TrainConfig, data, sections=SPEC.sections())


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The method's state dict in a run's last checkpoint."""
    return torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=True)["model"]
