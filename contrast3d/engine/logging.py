"""Run logging on rank 0: TensorBoard events, ``metrics.jsonl`` and a tqdm progress bar.

``metrics.jsonl`` has one JSON object per logged step (``{"step": 10, "time": ..., "loss": ...,
"lr": ..., "samples_per_s": ...}``). On resume, lines past the resumed step are dropped and the
TensorBoard writer purges later events, so the logs read as one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


class MetricLogger:
    """Writes scalars to TensorBoard and JSONL and drives the progress bar (no-op off rank 0)."""

    def __init__(self, run_dir: str | Path, *, total_steps: int, start_step: int = 0,
                 enabled: bool = True, progress: bool = True, tensorboard: bool = True, label: str = "train"):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self._rate: float | None = None
        self._writer = None
        self._bar = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.run_dir / "metrics.jsonl"
        _truncate_jsonl(self.jsonl, start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        if progress:
            self._bar = tqdm(total=total_steps, initial=start_step, desc=label, unit="step",
                             dynamic_ncols=True, smoothing=0.1)

    def step(self, step: int, loss: float, samples: int, seconds: float) -> None:
        """Advance the progress bar by one step (loss, samples/s; tqdm shows the ETA)."""
        if not self.enabled:
            return
        rate = samples / max(seconds, 1e-9)
        self._rate = rate if self._rate is None else 0.9 * self._rate + 0.1 * rate
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{self._rate:.1f}", refresh=False)
            self._bar.update(1)

    @property
    def samples_per_s(self) -> float:
        return self._rate or 0.0

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record scalars at ``step`` (TensorBoard tag ``train/<name>`` and a JSONL line)."""
        if not self.enabled:
            return
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(f"train/{key}", value, step)
        record: dict[str, float | str] = {"step": step, "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()})
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")

    def message(self, text: str) -> None:
        """Print a line without breaking the progress bar."""
        if self.enabled:
            tqdm.write(text) if self._bar is not None else print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop lines logged after ``last_step`` (a killed run logged past its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= last_step:
                keep.append(line)
        except (ValueError, AttributeError):
            continue  # a line cut by the kill
    path.write_text("".join(f"{line}\n" for line in keep))
