"""One pre-training run from a resolved config and a method spec (what ``contrast3d pretrain`` calls)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from contrast3d.config import TrainConfig
from contrast3d.engine import distributed as D
from contrast3d.engine.rng import derive_seed, seed_all
from contrast3d.engine.trainer import PeriodicCallback, Trainer, TrainResult
from contrast3d.methods.base import MethodSpec


def pretrain(cfg: TrainConfig, spec: MethodSpec, run_dir: str | Path, *, resume: bool = False,
             callbacks: Sequence[PeriodicCallback] = (), until: int | None = None) -> TrainResult:
    """Build the method (same initial weights on every rank), its dataset and collate, and train.

    Joins the ``torchrun`` process group if there is one and leaves it at the end. ``until`` stops
    after that step (see :meth:`Trainer.fit`).
    """
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    ctx = D.init_distributed(cfg.device)
    try:
        seed_all(derive_seed(cfg.seed, 0))  # model initialisation: identical on every rank
        method = spec.build_method(cfg.method, cfg.model)
        dataset = spec.build_dataset(cfg.data_root, cfg.data)
        collate = spec.build_collate(cfg.data)
        trainer = Trainer(cfg, method, dataset, collate, run_dir, ctx=ctx, callbacks=callbacks)
        return trainer.fit(resume=resume, until=until)
    finally:
        D.shutdown(ctx)
