"""Method-agnostic training engine (it imports no method and no task).

Modules (import them directly; this package imports nothing eagerly):

* :mod:`~contrast3d.engine.objective` — :class:`TrainObjective`, the contract every trained thing
  implements (hooks, frozen modules, parameter groups, exports).
* :mod:`~contrast3d.engine.config` — :class:`TrainConfig` and its layered loading.
* :mod:`~contrast3d.engine.trainer` — :class:`Trainer`, the step loop, :class:`NonFiniteLossError`,
  :class:`PeriodicCallback`.
* :mod:`~contrast3d.engine.run` — :func:`train` (config + builder -> trained run folder).
* :mod:`~contrast3d.engine.optim` — SGD/AdamW, cosine/poly/step schedules with warm-up, per group.
* :mod:`~contrast3d.engine.ema` — EMA updates and :class:`EMATeacher` for momentum encoders.
* :mod:`~contrast3d.engine.checkpoint` — atomic, validated checkpoints.
* :mod:`~contrast3d.engine.distributed` — ``torchrun`` / DDP helpers.
* :mod:`~contrast3d.engine.logging` — console progress (a bar on a terminal, plain lines otherwise),
  ``train.log``, ``metrics.jsonl``, TensorBoard (``final/*`` results + hparams), ``run_info.json``;
  ``announce``, ``progress`` and ``record_final_results`` for work after training (an evaluation).
* :mod:`~contrast3d.engine.estimate` — rough time per step and the long-CPU-run warning.
* :mod:`~contrast3d.engine.data` — seeded, resumable, rank-sharded data loading.
* :mod:`~contrast3d.engine.rng` — seeding and RNG state capture.
"""
