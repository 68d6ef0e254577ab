"""The method-agnostic, step-based training loop.

It trains any :class:`~contrast3d.engine.objective.TrainObjective` (the engine imports no method
and no task). Per step: next batch -> ``batch.to(device)`` -> ``objective(batch)`` (autocast on
CUDA) -> finiteness check of every returned scalar (all ranks agree before anyone calls backward)
-> backward (scaled on CUDA+AMP) -> optional gradient clipping -> ``before_optimizer_step`` hook ->
optimizer step -> scheduler step (skipped when AMP's GradScaler skipped the optimizer step) ->
``after_step`` hook -> logs -> periodic callbacks -> checkpoint when due. At the end every network
of ``objective.exports()`` is written as ``NAME.safetensors`` + ``NAME.json`` (a
:class:`~contrast3d.models.pretrained.PretrainedRecord`).

Parameters **and buffers** are checked for finiteness before every checkpoint and export: a run
that diverged stops with the last good checkpoint untouched and exports nothing.

Unreadable samples (a :class:`~contrast3d.errors.DataError` while loading, e.g. a garbled frame
file): skipped, warned about once per file and listed in ``skipped_samples.json`` (default), or the
run stops with that DataError (``data.strict: true``). A whole epoch without a readable sample stops.

``--resume`` with changed settings: applied from the resume step and recorded, or refused (see
:mod:`contrast3d.engine.config`); the optimizer's restored learning rates and hyper-parameters are
re-derived from the new config, so the change is real.

What a person sees (rank 0, :mod:`contrast3d.engine.logging`): a start summary (model and preset,
parameter count, samples, steps, batch, device, threads, a rough time estimate), warnings (warm-up
as long as the run, a GPU-scale config on a CPU -- :mod:`contrast3d.engine.estimate`), the measured
seconds per step after the first few steps, progress (a bar on a terminal, plain lines otherwise),
each periodic callback announced with its result, and the final result; all of it also goes to
``train.log``.

Run folder::

    config.yaml  run_info.json  train.log  metrics.jsonl  tb/  checkpoints/last.pt  [checkpoints/step_*.pt]
    backbone.safetensors  backbone.json  [other exports]  [skipped_samples.json]
"""
from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from contrast3d.config import config_digest, dump_yaml, to_dict
from contrast3d.engine import distributed as D
from contrast3d.engine.checkpoint import CheckpointError, CheckpointManager
from contrast3d.engine.config import TrainConfig, resume_changes
from contrast3d.engine.data import FailedSamples, ResumableBatchSampler, build_loader, usable_workers
from contrast3d.engine.estimate import estimate_step_seconds, format_duration, long_run_warning, voxels_per_step
from contrast3d.engine.logging import MetricLogger, write_run_info
from contrast3d.engine.objective import HookContext, TrainObjective, frozen_prefixes, module_prefix, tensor_digest
from contrast3d.engine.optim import build_optimizer, build_scheduler, schedule_warnings
from contrast3d.engine.rng import capture_rng, derive_seed, restore_rng, seed_all
from contrast3d.errors import DataError

SKIPPED_FILE = "skipped_samples.json"
#: Steps timed after the first one (which includes start-up) for the measured time estimate.
TIMED_STEPS = 3


class NonFiniteLossError(RuntimeError):
    """A step produced NaN/Inf (loss, gradient, weights or buffers); the run stopped without writing
    a checkpoint or an export for that step."""


@dataclass
class StepContext:
    """What a periodic callback sees (after the optimizer step ``step``)."""

    step: int
    max_steps: int
    method: TrainObjective
    device: torch.device
    run_dir: Path
    dist: D.DistContext


@dataclass
class PeriodicCallback:
    """``fn(ctx)`` every ``every`` steps on every rank (e.g. a probe); returned scalars are logged as ``name/key``."""

    every: int
    fn: Callable[[StepContext], dict[str, float] | None]
    name: str = "callback"


@dataclass
class TrainResult:
    step: int
    run_dir: Path
    backbone_path: Path | None
    scalars: dict[str, float] = field(default_factory=dict)
    exports: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` on ``device``: objects with ``.to`` (PointBatch, tensors), or dicts/lists/tuples of them."""
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(device, non_blocking=True)
    return batch


def _count(n: int) -> str:
    """``"1.21 M"``, ``"392"``: a parameter count for people."""
    return f"{n / 1e6:.3g} M" if n >= 1e6 else f"{n:,}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _batch_size(batch: Any) -> int:
    size = getattr(batch, "batch_size", None)
    if isinstance(size, int):
        return size
    if isinstance(batch, dict) and batch:
        batch = next(iter(batch.values()))
    return len(batch) if hasattr(batch, "__len__") else 1


class Trainer:
    """Trains ``method`` on ``dataset`` as configured by ``cfg`` into ``run_dir``.

    Args:
        cfg: the resolved run configuration (saved as ``config.yaml``).
        method: the (unwrapped, CPU or device) method; the trainer moves and DDP-wraps it.
        dataset: map-style dataset (see :mod:`contrast3d.engine.data` for per-sample seeding).
        collate: list of samples -> batch.
        run_dir: output folder.
        ctx: distributed context (default: from the ``torchrun`` environment).
        callbacks: periodic hooks (e.g. feature-quality probes).
    """

    def __init__(self, cfg: TrainConfig, method: TrainObjective, dataset: Any, collate: Callable[[list], Any],
                 run_dir: str | Path, *, ctx: D.DistContext | None = None,
                 callbacks: Sequence[PeriodicCallback] = ()):
        self.cfg = cfg
        self.ctx = ctx or D.init_distributed(cfg.device)
        self.device = self.ctx.device
        self.run_dir = Path(run_dir)
        if not isinstance(method, TrainObjective):
            raise TypeError(f"{type(method).__name__} must subclass TrainObjective")
        self.method = method.to(self.device)
        frozen = self.method.frozen_modules()
        for f in frozen.values():
            f.module.requires_grad_(False)
            f.module.eval()
        self.model = D.wrap_ddp(self.method, self.ctx, find_unused_parameters=cfg.find_unused_parameters,
                                sync_bn=cfg.sync_bn, exclude=[f.module for f in frozen.values()])
        unwrapped = D.unwrap(self.model)  # SyncBN conversion may have replaced modules
        assert isinstance(unwrapped, TrainObjective)  # (only submodules: the root is never a norm layer)
        self.method = unwrapped
        self.frozen_prefixes = frozen_prefixes(self.method)
        self.optimizer = build_optimizer(self.method, cfg.optim, self.method.param_groups())
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.steps)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        try:
            self.loader = build_loader(dataset, collate, cfg.loader, seed=cfg.seed, rank=self.ctx.rank,
                                       world_size=self.ctx.world_size, pin_memory=self.device.type == "cuda")
        except DataError as err:
            where = cfg.data_root or "dataset"
            raise DataError(where, err.reason if err.source == "dataset" else f"{err.source}: {err.reason}") from None
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", cfg.keep_every)
        self.callbacks = list(callbacks)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.saved_step: int | None = None
        self.skipped_samples: dict[str, str] = {}
        self.changes: dict[str, tuple] = {}
        self._empty_batches = 0
        self._unwarned: list[str] = []

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (RNG states of every rank included); collective under DDP."""
        prefixes = tuple(self.frozen_prefixes.values())
        model = {k: v for k, v in self.method.state_dict().items() if not (prefixes and k.startswith(prefixes))}
        return {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "model": model, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": D.gather_objects(capture_rng(), self.ctx), "world_size": self.ctx.world_size,
            "config": to_dict(self.cfg), "frozen": self._frozen_info(), "exports": self._export_entries(),
        }

    def _frozen_info(self) -> dict[str, dict[str, str]]:
        return {name: {"source": f.source, "digest": tensor_digest(f.module)}
                for name, f in self.method.frozen_modules().items()}

    def _records(self) -> dict[str, dict[str, Any]]:
        """Each export's full record (the objective's fields + method, step, digest, version)."""
        from contrast3d import __version__
        from contrast3d.models.pretrained import PretrainedRecord

        out = {}
        for name, exp in self.method.exports().items():
            record = PretrainedRecord(**{**exp.record, "method": self.cfg.method_name, "step": self.step,
                                         "config_digest": config_digest(self.cfg), "package_version": __version__})
            out[name] = record.to_dict()
        return out

    def _export_entries(self) -> dict[str, dict[str, Any]]:
        exports = self.method.exports()
        return {name: {"prefix": module_prefix(self.method, exports[name].module), "record": record}
                for name, record in self._records().items()}

    def _check_finite_state(self) -> None:
        """Stop (no checkpoint, no export) when a parameter or buffer holds NaN/Inf, or a value whose
        square overflows float32 (:data:`~contrast3d.models.pretrained.MAX_ABS_WEIGHT`: the next forward
        pass would be Inf; such a checkpoint would be no good one to resume from)."""
        from contrast3d.models.pretrained import MAX_ABS_WEIGHT, diverged_tensors

        bad = diverged_tensors(self.method.state_dict())
        if not D.all_true(not bad, self.ctx):
            last = (f"{self.checkpoints.last} (step {self.saved_step})" if self.saved_step is not None
                    else "none written yet")
            raise NonFiniteLossError(
                f"non-finite weights or buffers (NaN/Inf or |x| > {MAX_ABS_WEIGHT:g}) after step {self.step} "
                f"(rank {self.ctx.rank}): "
                f"{len(bad)} tensor(s), e.g. {', '.join(bad[:3]) or 'on another rank'}; stopped without saving "
                f"or exporting; last good checkpoint: {last}")

    def load_state_dict(self, ckpt: dict[str, Any], source: Path) -> None:
        if ckpt.get("world_size", 1) != self.ctx.world_size:
            raise CheckpointError(source, f"written by a {ckpt.get('world_size')}-process run; resume it with "
                                          f"the same number of processes (now {self.ctx.world_size})")
        saved = ckpt.get("config", {}).get("method_name")
        if saved and saved != self.cfg.method_name:
            raise CheckpointError(source, f"checkpoint is from method '{saved}', not '{self.cfg.method_name}'")
        try:
            changes = resume_changes(ckpt.get("config") or {}, to_dict(self.cfg),
                                     getattr(self.method, "resume_fixed_keys", ()))
        except ValueError as err:
            raise CheckpointError(source, str(err)) from None
        if self.cfg.steps < ckpt["step"]:
            raise CheckpointError(source, f"steps={self.cfg.steps} is below the checkpoint's step {ckpt['step']}")
        saved_frozen = ckpt.get("frozen") or {}
        for name, info in self._frozen_info().items():
            old = saved_frozen.get(name)
            if old is None or old.get("digest") != info["digest"]:
                was = f"{old.get('source')} (digest {old.get('digest')})" if old else "nothing recorded"
                raise CheckpointError(source, f"frozen module '{name}' differs from the one the run started with: "
                                              f"now {info['source']} (digest {info['digest']}), then {was}")
        try:
            result = self.method.load_state_dict(ckpt["model"], strict=False)
            prefixes = tuple(self.frozen_prefixes.values())
            missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
            if missing or result.unexpected_keys:
                raise RuntimeError(f"missing keys {missing[:3]}, unexpected keys {result.unexpected_keys[:3]}")
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(source, f"does not fit this model/optimizer: {str(err).splitlines()[0]}") from None
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt.get("scaler") or {})
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        restore_rng(ckpt["rng"][self.ctx.rank])
        self.saved_step = self.step
        self._apply_changes(changes)
        history = list((ckpt.get("config") or {}).get("resume_changes") or [])
        history += [{"step": self.step, "key": k, "from": a, "to": b} for k, (a, b) in changes.items()]
        self.cfg.resume_changes = history  # config.yaml and later checkpoints carry the whole history
        self.changes = changes

    def _apply_changes(self, changes: dict[str, tuple]) -> None:
        """Re-derive what the checkpoint restored from the old config: base learning rates (``optim.lr``
        scales every group's), optimizer hyper-parameters and the current learning rates (new ``steps``
        or schedule)."""
        opt, sched = self.optimizer, self.scheduler
        if "optim.lr" in changes:
            old, new = changes["optim.lr"]
            ratio = float(new) / float(old)
            sched.base_lrs = [b * ratio for b in sched.base_lrs]
            for g in opt.param_groups:
                if "initial_lr" in g:
                    g["initial_lr"] *= ratio
        for name in ("weight_decay", "momentum", "nesterov", "eps", "betas"):
            if f"optim.{name}" in changes:
                old, new = changes[f"optim.{name}"]
                for g in opt.param_groups:
                    have = list(g[name]) if isinstance(g.get(name), tuple) else g.get(name)
                    if name in g and have == old:  # groups with their own value (e.g. no decay) keep it
                        g[name] = tuple(new) if name == "betas" else new
        if any(k in ("optim.lr", "steps") or k.startswith("schedule.") for k in changes):
            for g, base, factor in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
                g["lr"] = base * factor(sched.last_epoch)
            sched._last_lr = [g["lr"] for g in opt.param_groups]

    def save_checkpoint(self) -> None:
        self._check_finite_state()
        state = self.state_dict()  # every rank takes part in gathering the RNG states
        if self.ctx.is_main:
            self.checkpoints.save(state)
        D.barrier(self.ctx)
        self.saved_step = self.step

    # ------------------------------------------------------------------ loop
    def _batches(self) -> Generator[Any, None, None]:
        sampler = self.loader.batch_sampler
        assert isinstance(sampler, ResumableBatchSampler)  # set by build_loader
        while True:
            sampler.set_epoch(self.epoch)
            sampler.set_start(self.batch_in_epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                if self.batch_in_epoch == len(sampler):
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                if isinstance(batch, FailedSamples):
                    batch = self._skip_failed(batch, len(sampler))
                    if batch is None:
                        continue
                elif self._unwarned:
                    self._warn_skipped()
                yield batch
            if self.batch_in_epoch:  # the loader ended early (cannot happen with a fixed sampler)
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _skip_failed(self, failed: FailedSamples, epoch_batches: int) -> Any:
        """The readable part of a batch with unreadable samples (``None``: nothing readable); with
        ``data.strict`` the first DataError stops the run."""
        first = failed.errors[0]
        if getattr(self.cfg.data, "strict", False):
            raise DataError(first.source, f"{first.reason} (data.strict: stopped at the first bad sample)")
        for err in failed.errors:
            if err.source not in self.skipped_samples:
                self.skipped_samples[err.source] = err.reason
                self._unwarned.append(err.source)
        self._empty_batches = self._empty_batches + 1 if failed.batch is None else 0
        if self._empty_batches > max(1, epoch_batches):
            raise DataError(self.cfg.data_root or "dataset", f"no readable sample in a whole epoch "
                                                             f"({len(self.skipped_samples)} bad file(s), e.g. "
                                                             f"{first.source}: {first.reason})")
        if failed.batch is not None:
            self._warn_skipped()
        return failed.batch

    def _warn_skipped(self) -> None:
        """One warning per skipped file, given once training goes on (a run that stops because
        nothing is readable says so in its one error line instead)."""
        for source in self._unwarned:
            warnings.warn(f"skipping unreadable sample {source}: {self.skipped_samples[source]}", stacklevel=3)
        self._unwarned = []

    def _write_skipped(self, logger: MetricLogger) -> None:
        """List the skipped files in ``skipped_samples.json`` (merged over resumed segments)."""
        path = self.run_dir / SKIPPED_FILE
        try:
            listed = {d["source"]: d["reason"] for d in json.loads(path.read_text())["skipped"]}
        except (OSError, ValueError, KeyError, TypeError):
            listed = {}
        listed.update(self.skipped_samples)
        path.write_text(json.dumps({"skipped": [{"source": k, "reason": v} for k, v in sorted(listed.items())]},
                                   indent=1) + "\n")
        logger.message(f"skipped {len(self.skipped_samples)} unreadable sample file(s); listed in {path}")

    def _forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.model(batch)
        if not isinstance(out, dict) or "loss" not in out:
            raise TypeError(f"{type(self.method).__name__}.forward must return a dict with 'loss'")
        keys = list(out)
        values = torch.stack([torch.as_tensor(out[k], dtype=torch.float32, device=self.device).detach().reshape(())
                              for k in keys]).tolist()  # one host sync for all scalars
        return out["loss"], dict(zip(keys, values))

    def _stop_non_finite(self, what: str, scalars: dict[str, float]) -> None:
        bad = {k: v for k, v in scalars.items() if not math.isfinite(v)}
        last = (f"{self.checkpoints.last} (step {self.saved_step})" if self.saved_step is not None
                else "none written yet")
        raise NonFiniteLossError(
            f"non-finite {what} at step {self.step + 1} (rank {self.ctx.rank}): "
            + (", ".join(f"{k}={v}" for k, v in bad.items()) or "on another rank")
            + f"; stopped without saving; last good checkpoint: {last}")

    def _train_step(self, batch: Any) -> dict[str, float]:
        loss, scalars = self._forward(move_to(batch, self.device))
        finite = all(math.isfinite(v) for v in scalars.values())
        if not D.all_true(finite, self.ctx):
            self._stop_non_finite("loss", scalars)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        clip = self.cfg.optim.clip_grad_norm
        if clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(self.method.parameters(), clip))
            scalars["grad_norm"] = norm
            if not self.use_amp and not math.isfinite(norm):  # with AMP the scaler skips such steps
                self._stop_non_finite("gradient norm", {"grad_norm": norm})
        self.method.before_optimizer_step(self._hook_context())
        scale = self.scaler.get_scale() if self.use_amp else 1.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        scalars["lr"] = self.optimizer.param_groups[0]["lr"]
        skipped = self.use_amp and self.scaler.get_scale() < scale  # inf/NaN gradients: no optimizer step
        if not skipped:
            self.scheduler.step()
        if self.use_amp:
            scalars["amp_skipped"] = float(skipped)
        self.step += 1
        self.method.after_step(self._hook_context())
        return scalars

    def _hook_context(self) -> HookContext:
        ctx = self.ctx

        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            return D.all_reduce_sum_(t, ctx)

        return HookContext(self.step, self.cfg.steps, self.optimizer, ctx.world_size, ctx.rank, self.device,
                           all_reduce)

    def fit(self, resume: bool = False, until: int | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (continuing from ``checkpoints/last.pt`` when ``resume``).

        ``until`` stops earlier, after that step's checkpoint (the schedule still spans
        ``cfg.steps``); the backbone is exported only when ``cfg.steps`` is reached.
        """
        cfg, ctx = self.cfg, self.ctx
        stop = cfg.steps if until is None else min(until, cfg.steps)
        if resume and self.checkpoints.exists():
            self.load_state_dict(self.checkpoints.load(), self.checkpoints.last)
        elif self.checkpoints.exists():
            raise CheckpointError(self.checkpoints.last, "the run folder already has a checkpoint; pass --resume "
                                                         "to continue it or choose another --out")
        else:
            seed_all(derive_seed(cfg.seed, 1, ctx.rank))
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_yaml(cfg, self.run_dir / "config.yaml")
            write_run_info(self.run_dir, method=cfg.method_name, device=str(self.device),
                           world_size=ctx.world_size, threads=torch.get_num_threads(), start_step=self.step,
                           steps=cfg.steps)
        logger = MetricLogger(self.run_dir, total_steps=cfg.steps, start_step=self.step, enabled=ctx.is_main,
                              progress=cfg.progress, label=cfg.method_name or "train")
        with logger, logger.capture_warnings():
            return self._fit(logger, stop)

    def _start(self, logger: MetricLogger, stop: int) -> bool:
        """Rank 0: the start summary and the warnings about the config; whether the time was warned about."""
        cfg = self.cfg
        if self.step:
            logger.message(f"resumed from {self.checkpoints.last} at step {self.step}")
        if self.changes:
            logger.message("changed on resume (applied from step {}; recorded in config.yaml): {}".format(
                self.step, "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in self.changes.items())))
        if not self.ctx.is_main:
            return False
        threads = torch.get_num_threads()
        trainable = sum(p.numel() for p in self.method.parameters() if p.requires_grad)
        prior = estimate_step_seconds(trainable, voxels_per_step(cfg), threads, self.device.type)
        logger.message("\n".join(self.summary_lines(prior, stop)))
        for line in schedule_warnings(self.optimizer, cfg.schedule, cfg.steps):
            warnings.warn(line, stacklevel=2)
        text = long_run_warning(self.device.type, stop - self.step, prior, method_name=cfg.method_name,
                                threads=threads)
        if text:
            warnings.warn(text, stacklevel=2)
        return text is not None

    def summary_lines(self, prior: float | None = None, stop: int | None = None) -> list[str]:
        """The start summary: what is trained, on what, for how long, where (one fact per line)."""
        cfg, ctx = self.cfg, self.ctx
        stop = cfg.steps if stop is None else stop
        params = sum(p.numel() for p in self.method.parameters())
        trainable = sum(p.numel() for p in self.method.parameters() if p.requires_grad)
        preset = getattr(cfg.model, "preset", None)
        model = type(self.method).__name__ + (f" ({preset})" if preset else "")
        dataset: Any = getattr(self.loader.dataset, "dataset", self.loader.dataset)  # inside the SeededDataset
        noun = "pairs" if "Pair" in type(dataset).__name__ else "samples"
        try:
            samples = f"{len(dataset)} {noun}"
        except TypeError:
            samples = noun
        scenes: Any = getattr(dataset, "scenes", None)
        if hasattr(scenes, "__len__") and not isinstance(scenes, str):
            samples += f" from {len(scenes)} scenes"
        sampler = self.loader.batch_sampler
        per_epoch = len(sampler) if isinstance(sampler, ResumableBatchSampler) else "?"
        batch = cfg.loader.batch_size * ctx.world_size
        per = f" ({cfg.loader.batch_size} per process x {ctx.world_size})" if ctx.world_size > 1 else ""
        sched = cfg.schedule
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        left = stop - self.step
        lines = [
            f"run       {cfg.method_name or 'train'} -> {self.run_dir}",
            f"model     {model}: {_count(params)} parameters ({_count(trainable)} trainable)",
            f"data      {samples} ({type(dataset).__name__}) from {cfg.data_root or '-'}; "
            f"{per_epoch} step(s) per epoch",
            f"steps     {left} to go ({self.step} -> {stop} of {cfg.steps}), batch {batch}{per}; {cfg.optim.name} "
            f"lr {cfg.optim.lr:g}, {sched.name} schedule, warm-up {sched.warmup_steps}",
            f"device    {device}, {_plural(torch.get_num_threads(), 'thread')}, "
            f"{_plural(usable_workers(cfg.loader.num_workers, warn=False), 'loader worker')}, "
            f"amp {'on' if self.use_amp else 'off'}",
        ]
        if prior is not None:
            lines.append(f"estimate  ~{prior:.3g} s/step, ~{format_duration(prior * left)} (rough, from model size "
                         f"and voxels; measured after {TIMED_STEPS + 1} steps)")
        else:
            lines.append(f"estimate  measured after {TIMED_STEPS + 1} steps")
        return lines

    def _timing(self, logger: MetricLogger, durations: list[float], stop: int, warned: bool) -> None:
        """Rank 0, once: the measured seconds per step and the time to go; warn when GPU-scale on a CPU."""
        sps = statistics.median(durations[1:])
        left = stop - self.step
        logger.message(f"timing    {sps:.3g} s/step (median of steps {self.step - TIMED_STEPS + 1}-{self.step}); "
                       f"{left} steps to go: ~{format_duration(sps * left)}")
        text = long_run_warning(self.device.type, stop - self.step + len(durations), sps,
                                method_name=self.cfg.method_name, measured=True, threads=torch.get_num_threads())
        if text and not warned:
            warnings.warn(text, stacklevel=3)

    def _fit(self, logger: MetricLogger, stop: int) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        warned = self._start(logger, stop)
        window: dict[str, float] = {}
        count = 0
        scalars: dict[str, float] = {}
        durations: list[float] = []
        started = time.perf_counter()
        self.method.train()
        batches = self._batches()
        try:
            while self.step < stop:
                t0 = time.perf_counter()
                batch = next(batches)
                samples = _batch_size(batch) * ctx.world_size
                scalars = self._train_step(batch)
                seconds = time.perf_counter() - t0
                logger.step(self.step, scalars["loss"], samples, seconds)
                if len(durations) <= TIMED_STEPS:
                    durations.append(seconds)
                    if len(durations) == TIMED_STEPS + 1 and self.step < stop and ctx.is_main:
                        self._timing(logger, durations, stop, warned)
                for k, v in scalars.items():
                    window[k] = window.get(k, 0.0) + v
                count += 1
                if self.step % cfg.log_every == 0 or self.step == stop:
                    means = D.all_reduce_mean({k: v / count for k, v in window.items()}, ctx)
                    means["lr"] = scalars["lr"]
                    logger.log(self.step, {**means, "samples_per_s": logger.samples_per_s})
                    window, count = {}, 0
                self._run_callbacks(logger)
                due = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
                if due or self.step == stop:
                    self.save_checkpoint()
            exported: dict[str, Path] = {}
            if self.skipped_samples and ctx.is_main:
                self._write_skipped(logger)
            if self.step == cfg.steps:
                self._check_finite_state()
                if ctx.is_main:
                    exported = self.export()
            D.barrier(ctx)
            took = format_duration(time.perf_counter() - started)
            if self.step == cfg.steps:
                logger.final(self.step, scalars, to_dict(cfg), label="training result (last step)")
                done = f"finished {self.step} steps in {took}"
                if exported:
                    done += "; exported " + ", ".join(str(p) for p in exported.values())
            else:
                done = f"stopped at step {self.step} of {cfg.steps} after {took} (checkpoint {self.checkpoints.last})"
            logger.message(done)
            return TrainResult(self.step, self.run_dir, exported.get("backbone"), scalars, exported,
                               dict(self.skipped_samples))
        except BaseException as err:
            what = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
            logger.write_log(f"stopped at step {self.step}: {' '.join(what.split())}")
            raise
        finally:
            batches.close()

    def export(self) -> dict[str, Path]:
        """Write every network of ``exports()`` as ``NAME.safetensors`` + ``NAME.json`` (+ ``NAME.pth``)."""
        from contrast3d.models.pretrained import PretrainedRecord, save_pointcept_pth, save_pretrained

        exports = self.method.exports()
        out = {}
        for name, record in self._records().items():
            exp = exports[name]
            out[name] = save_pretrained(exp.module, self.run_dir / f"{name}.safetensors",
                                        PretrainedRecord(**record))
            if exp.pointcept:
                save_pointcept_pth(exp.module, self.run_dir / f"{name}.pth")
        return out

    def _run_callbacks(self, logger: MetricLogger) -> None:
        for cb in self.callbacks:
            if cb.every > 0 and self.step % cb.every == 0:
                logger.message(f"{cb.name} at step {self.step} ...")
                t0 = time.perf_counter()
                out = cb.fn(StepContext(self.step, self.cfg.steps, self.method, self.device, self.run_dir, self.ctx))
                self.method.train()
                took = format_duration(time.perf_counter() - t0)
                if out:
                    values = {f"{cb.name}/{k}": float(v) for k, v in out.items()}
                    logger.log(self.step, values)
                    shown = "  ".join(f"{k} {v:.4g}" for k, v in out.items())
                    logger.message(f"{cb.name} at step {self.step}: {shown} ({took})")
                else:
                    logger.message(f"{cb.name} at step {self.step} done ({took})")
