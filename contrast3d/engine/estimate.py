"""Rough run-time estimates and the warning for a GPU-scale run on a CPU (pure functions, no training).

Before the first step the trainer only has a *prior*: a CPU step of a sparse-conv network costs
roughly ``overhead + k * parameters * voxels_per_step / threads ** 0.75`` seconds
(:func:`estimate_step_seconds`; calibrated on SpUNet-34 at 8 x 80k voxels, 25.9 s/step on an
8-thread laptop, and SpUNet-tiny at 2 x 20k voxels, ~0.6 s/step on one thread). ``voxels_per_step``
comes from the config's ``data.max_points`` (voxel cap per sample) or, without a cap, from
``data.grid_size`` (:func:`voxels_per_step`). After the first few steps the measured seconds per step
replace the prior. :func:`long_run_warning` turns either into the one-line warning, naming the
method's ``<method>_cpu_small`` preset when one is shipped.
"""
from __future__ import annotations

import math
from typing import Any

#: A CPU run estimated to take longer than this (hours) is warned about.
LONG_RUN_HOURS = 6.0
#: Prior cost model of a CPU step (see the module docstring).
CPU_STEP_OVERHEAD_S = 0.3
CPU_SECONDS_PER_PARAM_VOXEL = 5e-12
#: Voxels of a typical indoor scan without a ``max_points`` cap: ``SCAN_AREA_M2 / grid_size ** 2``,
#: clipped to ``SCAN_VOXELS``.
SCAN_AREA_M2 = 40.0
SCAN_VOXELS = (5_000, 200_000)


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"25 min"``, ``"7.2 h"``, ``"430 h"`` (a human-sized duration)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 10 else f"{hours:.0f} h"


def voxels_per_step(cfg: Any) -> float | None:
    """Voxels one process feeds the network per step: ``loader.batch_size`` x the voxels of one sample
    (``data.max_points`` when > 0, else :data:`SCAN_AREA_M2` / ``data.grid_size``²); ``None`` when the
    data section has neither (not a voxel pipeline)."""
    data = getattr(cfg, "data", None)
    cap = getattr(data, "max_points", None)
    grid = getattr(data, "grid_size", None)
    per_sample: float | None = None
    if isinstance(cap, (int, float)) and cap > 0:
        per_sample = float(cap)
    elif isinstance(grid, (int, float)) and grid > 0:
        per_sample = float(min(max(SCAN_AREA_M2 / grid ** 2, SCAN_VOXELS[0]), SCAN_VOXELS[1]))
    if per_sample is None:
        return None
    return per_sample * max(1, int(cfg.loader.batch_size))


def estimate_step_seconds(params: int, voxels: float | None, threads: int, device_type: str) -> float | None:
    """Prior seconds per optimizer step on ``device_type`` (``None``: no prior, e.g. on CUDA or without
    a voxel count). ``params``: trainable parameters; ``voxels``: :func:`voxels_per_step`."""
    if device_type != "cpu" or voxels is None or params <= 0:
        return None
    speedup = max(1, min(int(threads), 64)) ** 0.75
    return CPU_STEP_OVERHEAD_S + CPU_SECONDS_PER_PARAM_VOXEL * params * voxels / speedup


def cpu_preset_hint(method_name: str) -> str | None:
    """The shipped ``<method>_cpu_small`` preset for ``method_name`` (pre-training or fine-tuning), if any."""
    from contrast3d.config import preset_names

    name = f"{method_name}_cpu_small"
    return name if name in preset_names("pretrain") + preset_names("finetune") else None


def long_run_warning(device_type: str, steps: int, seconds_per_step: float | None, *, method_name: str = "",
                     measured: bool = False, threads: int = 1, limit_hours: float = LONG_RUN_HOURS) -> str | None:
    """One line warning that ``steps`` steps at ``seconds_per_step`` on a CPU take longer than
    ``limit_hours`` (the config is GPU-scale); ``None`` when the run fits (or is not on a CPU)."""
    if device_type != "cpu" or seconds_per_step is None or steps <= 0:
        return None
    total = steps * seconds_per_step
    if total <= limit_hours * 3600:
        return None
    how = "measured" if measured else "rough estimate from model size and voxels"
    preset = cpu_preset_hint(method_name) if method_name else None
    hint = f"--config {preset}" if preset else "a smaller model (--set model.preset=spunet-tiny), coarser voxels"
    return (f"this run looks GPU-scale for a CPU: ~{seconds_per_step:.3g} s/step x {steps} steps = "
            f"~{format_duration(total)} on cpu with {threads} thread(s) ({how}); for a CPU use {hint} "
            f"or fewer --steps")
