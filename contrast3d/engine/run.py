"""One training run from a resolved config and something that builds its parts (what ``contrast3d
pretrain`` and the fine-tuning tasks call). The engine knows no method: ``builder.build(cfg)``
returns the objective, the dataset and the collate function."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from contrast3d.engine import distributed as D
from contrast3d.engine.config import TrainConfig
from contrast3d.engine.objective import TrainObjective
from contrast3d.engine.rng import derive_seed, seed_all
from contrast3d.engine.trainer import PeriodicCallback, Trainer, TrainResult


class RunBuilder(Protocol):
    """Builds what a run trains (e.g. :class:`contrast3d.methods.base.MethodSpec`)."""

    def build(self, cfg: TrainConfig) -> tuple[TrainObjective, Any, Callable[[list], Any]]:
        """``(objective, map-style dataset, collate)`` for ``cfg``."""
        ...


def train(cfg: TrainConfig, builder: RunBuilder, run_dir: str | Path, *, resume: bool = False,
          callbacks: Sequence[PeriodicCallback] = (), until: int | None = None) -> TrainResult:
    """Build the objective (same initial weights on every rank), its dataset and collate, and train.

    Joins the ``torchrun`` process group if there is one and leaves it at the end. ``until`` stops
    after that step (see :meth:`Trainer.fit`).
    """
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    ctx = D.init_distributed(cfg.device)
    try:
        seed_all(derive_seed(cfg.seed, 0))  # model initialisation: identical on every rank
        objective, dataset, collate = builder.build(cfg)
        trainer = Trainer(cfg, objective, dataset, collate, run_dir, ctx=ctx, callbacks=callbacks)
        return trainer.fit(resume=resume, until=until)
    finally:
        D.shutdown(ctx)
