"""Method-agnostic training engine.

Modules (import them directly; this package imports nothing eagerly so that
:mod:`contrast3d.config` can use the config dataclasses without cycles):

* :mod:`~contrast3d.engine.trainer` — :class:`Trainer`, the step loop, :class:`NonFiniteLossError`,
  :class:`PeriodicCallback`.
* :mod:`~contrast3d.engine.run` — :func:`pretrain` (config + method spec -> trained run folder).
* :mod:`~contrast3d.engine.optim` — SGD/AdamW, cosine/poly/step schedules with warm-up.
* :mod:`~contrast3d.engine.ema` — EMA updates and :class:`EMATeacher` for momentum encoders.
* :mod:`~contrast3d.engine.checkpoint` — atomic, validated checkpoints.
* :mod:`~contrast3d.engine.export` — backbone safetensors + JSON sidecar.
* :mod:`~contrast3d.engine.distributed` — ``torchrun`` / DDP helpers.
* :mod:`~contrast3d.engine.logging` — TensorBoard, ``metrics.jsonl``, progress bar.
* :mod:`~contrast3d.engine.data` — seeded, resumable, rank-sharded data loading.
* :mod:`~contrast3d.engine.rng` — seeding and RNG state capture.
"""
