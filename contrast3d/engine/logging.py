"""Run logging on rank 0: console progress, ``train.log``, ``metrics.jsonl``, TensorBoard, ``run_info.json``.

* Console: a tqdm bar when stderr is a terminal; otherwise (a pipe, a file, a job log) plain lines
  ``step 200/1000  loss 3.21  1.9 s/step  ETA 25 min`` every ~:data:`LINE_EVERY_S` seconds or
  ~1/:data:`LINES_PER_RUN` of the run -- never a carriage return.
* ``train.log`` (:data:`RUN_LOG`): time-stamped text a person can follow -- the start summary, the
  periodic lines, messages, warnings raised during the run and the final result (appended to on
  resume).
* ``metrics.jsonl`` has one JSON object per logged step (``{"step": 10, "time": ..., "loss": ...,
  "lr": ..., "samples_per_s": ...}``, callbacks' values as ``"val/mIoU"``, ``"probe/..."``). On
  resume, lines past the resumed step are dropped and the TensorBoard writer purges later events, so
  the logs read as one uninterrupted run.
* TensorBoard (``tb/``): a key with a ``/`` keeps its name as the tag (``val/mIoU``,
  ``probe/linear_miou``), any other key is ``train/<key>``; final results are ``final/<key>``
  scalars plus an hparams entry (``tb/hparams``).
* ``run_info.json`` (:func:`write_run_info`): package version, command line, git commit of the
  source tree (``None`` when it is no git checkout), Python/torch versions, host, start time.

For code that runs outside :meth:`Trainer.fit <contrast3d.engine.trainer.Trainer.fit>` (e.g. a
final evaluation): :func:`announce` (print + ``train.log``), :func:`progress` (bar on a terminal,
plain lines otherwise) and :func:`record_final_results`.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from contrast3d.engine.estimate import format_duration

RUN_LOG = "train.log"
RUN_INFO = "run_info.json"
#: Plain progress lines: at most one per this many seconds, and about this many per run.
LINE_EVERY_S = 30.0
LINES_PER_RUN = 10

T = TypeVar("T")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where progress bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def append_log(run_dir: str | Path, text: str) -> None:
    """Append ``text`` (one or more lines) to ``run_dir/train.log``, each line time-stamped."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    path = Path(run_dir) / RUN_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.writelines(f"[{stamp}] {line}\n" for line in str(text).splitlines() or [""])


def announce(text: str, run_dir: str | Path | None = None, *, enabled: bool = True) -> None:
    """Print ``text`` (stdout, without breaking a tqdm bar) and append it to ``run_dir/train.log``;
    e.g. ``announce(f"evaluating {n} validation scenes ...", out, enabled=ctx.is_main)``."""
    if not enabled:
        return
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()
    if run_dir is not None:
        append_log(run_dir, text)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", *,
             enabled: bool = True, run_dir: str | Path | None = None,
             every_s: float = LINE_EVERY_S) -> Iterator[T]:
    """Iterate ``items`` showing progress: a tqdm bar when stderr is a terminal, else plain lines
    ``desc: 2/3 scenes  14 s`` (the first item, then at most every ``every_s`` seconds, and the end;
    also appended to ``train.log`` when ``run_dir`` is given). Silent when not ``enabled``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled:
        yield from items
        return
    if is_terminal():
        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
        return
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if done == 1 or now - last >= every_s or done == total:
            of = f"/{total}" if total else ""
            line = f"{desc}: {done}{of} {unit}  {format_duration(now - start)}"
            print(line, flush=True)
            if run_dir is not None:
                append_log(run_dir, line)
            last = now


@functools.lru_cache(maxsize=4)
def git_commit(path: str | None = None, timeout: float = 2.0) -> str | None:
    """``git rev-parse HEAD`` of the tree holding ``path`` (default: this package's source), or ``None``
    (no git checkout, no git, or no answer within ``timeout`` seconds)."""
    folder = path or str(Path(__file__).resolve().parents[1])
    try:
        proc = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and len(commit) >= 7 else None


def run_info(**extra: Any) -> dict[str, Any]:
    """What produced a run: package version, ``sys.argv``, git commit, Python, torch, host, start time."""
    import torch

    from contrast3d import __version__

    return {"package_version": __version__, "argv": list(sys.argv), "git_commit": git_commit(),
            "python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def write_run_info(run_dir: str | Path, **extra: Any) -> dict[str, Any]:
    """Write ``run_dir/run_info.json`` (:func:`run_info` + ``extra``); a resumed run's earlier entries
    are kept under ``"previous"``. Returns the new entry."""
    path = Path(run_dir) / RUN_INFO
    info = run_info(**extra)
    previous: list[Any] = []
    try:
        old = json.loads(path.read_text())
        previous = [*old.pop("previous", []), old]
    except (OSError, ValueError, AttributeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**info, "previous": previous} if previous else info, indent=1, default=str) + "\n")
    return info


def tensorboard_tag(key: str) -> str:
    """``val/mIoU`` stays ``val/mIoU``; a plain ``loss`` becomes ``train/loss``."""
    return key if "/" in key else f"train/{key}"


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, default=str)


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """A config dict (:func:`~contrast3d.config.to_dict`) flattened to TensorBoard hparams
    (``{"optim.lr": 0.1, "data.feat_keys": '["color", "normal"]', ...}``)."""
    out: dict[str, int | float | str | bool] = {}
    for key, value in config.items():
        if key == "resume_changes":
            continue
        if isinstance(value, dict) and value:
            out.update(flat_hparams(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = _hparam_value(value)
    return out


def _numbers(results: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("final/"): float(v) for k, v in results.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def _write_final(writer: Any, scalars: dict[str, float], step: int, hparams: dict[str, Any] | None,
                 run_name: str = "hparams") -> None:
    """``final/<key>`` scalars and one hparams session in ``tb/<run_name>`` (TensorBoard keeps the first
    session's metric list per folder, so the training summary and the final evaluation use two folders)."""
    for key, value in scalars.items():
        writer.add_scalar(f"final/{key}", value, step)
    if hparams is not None and scalars:
        writer.add_hparams(flat_hparams(hparams), {f"final/{k}": v for k, v in scalars.items()},
                           run_name=run_name, global_step=step)
    writer.flush()


_TB_WARNED = False


def summary_writer(log_dir: str | Path, **kwargs: Any) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``log_dir``, or ``None`` (one warning per process) when
    tensorboard is not installed (it is the optional ``[tb]`` extra; ``metrics.jsonl`` is written anyway)."""
    global _TB_WARNED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        from contrast3d.extras import missing_extra

        missing = missing_extra(err, "tensorboard")
        if missing is None:
            raise
        if not _TB_WARNED:
            _TB_WARNED = True
            warnings.warn(f"{missing}; no TensorBoard events (metrics.jsonl is still written)", stacklevel=2)
        return None
    return SummaryWriter(str(log_dir), **kwargs)


def record_final_results(run_dir: str | Path, results: dict[str, Any], *, step: int = 0,
                         hparams: dict[str, Any] | None = None, label: str = "result",
                         tensorboard: bool = True) -> None:
    """Write a run's final numbers: ``final/<key>`` TensorBoard scalars at ``step`` plus an hparams
    entry (``hparams``: a config dict, flattened; ``tb/hparams_final``), and one ``train.log`` line
    ``<label>: mIoU 0.41  mAcc 0.52 ...``. Non-numeric values are left out. Call it on rank 0 after
    the final evaluation, e.g. ``record_final_results(out, results, step=steps, hparams=to_dict(cfg))``."""
    scalars = _numbers(results)
    append_log(run_dir, f"{label}: " + ("  ".join(f"{k} {v:.4g}" for k, v in scalars.items()) or "(no numbers)"))
    writer = summary_writer(Path(run_dir) / "tb") if tensorboard else None
    if writer is None:
        return
    with writer:
        _write_final(writer, scalars, step, hparams, run_name="hparams_final")


class MetricLogger:
    """Console progress, ``train.log``, TensorBoard and ``metrics.jsonl`` of one run (no-op off rank 0).

    Args:
        run_dir: the run folder.
        total_steps: the run's last step (for ``step N/total`` and the ETA).
        start_step: the step a resumed run starts from.
        enabled: ``False`` on ranks other than 0.
        progress: console progress (bar or plain lines); ``train.log`` gets its lines either way.
        tensorboard: write ``tb/``.
        label: the bar's description.
        tty: show a tqdm bar (default: whether stderr is a terminal); else plain lines.
        line_every_s: seconds between plain progress lines (at most one per this interval, unless
            :data:`LINES_PER_RUN` spacing in steps comes first).
    """

    def __init__(self, run_dir: str | Path, *, total_steps: int, start_step: int = 0,
                 enabled: bool = True, progress: bool = True, tensorboard: bool = True, label: str = "train",
                 tty: bool | None = None, line_every_s: float = LINE_EVERY_S):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self.start_step = start_step
        self.progress = progress
        self.line_every_s = line_every_s
        self.line_every_steps = max(1, (total_steps - start_step) // LINES_PER_RUN)
        self._rate: float | None = None
        self._writer: Any = None
        self._bar: Any = None
        self._t_first: float | None = None  # wall clock after the first step of this session
        self._first_step = start_step
        self._last_step = start_step
        self._last_line = time.perf_counter()
        self._window_loss = 0.0
        self._window_n = 0
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.run_dir / "metrics.jsonl"
        _truncate_jsonl(self.jsonl, start_step)
        if tensorboard:
            self._writer = summary_writer(self.run_dir / "tb", purge_step=start_step + 1 if start_step else None)
        if progress and (is_terminal() if tty is None else tty):
            self._bar = tqdm(total=total_steps, initial=start_step, desc=label, unit="step",
                             dynamic_ncols=True, smoothing=0.1)

    # ------------------------------------------------------------------ progress
    def seconds_per_step(self, now: float | None = None) -> float | None:
        """Wall-clock seconds per step since the first step of this session ended (``None`` until a
        second step ended)."""
        if self._t_first is None or self._last_step <= self._first_step:
            return None
        now = time.perf_counter() if now is None else now
        return (now - self._t_first) / (self._last_step - self._first_step)

    def step(self, step: int, loss: float, samples: int, seconds: float) -> None:
        """Account for one finished step (its loss, samples and duration); advances the bar or prints a
        plain line when one is due."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._t_first is None:
            self._t_first, self._first_step = now, step
        self._last_step = step
        rate = samples / max(seconds, 1e-9)
        self._rate = rate if self._rate is None else 0.9 * self._rate + 0.1 * rate
        if math.isfinite(loss):
            self._window_loss += loss
            self._window_n += 1
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{self._rate:.1f}", refresh=False)
            self._bar.update(1)
        due = (step == self.total_steps or step == self._first_step or now - self._last_line >= self.line_every_s
               or (step - self.start_step) % self.line_every_steps == 0)
        if due:
            self._progress_line(step, seconds, now)

    def _progress_line(self, step: int, seconds: float, now: float) -> None:
        sps = self.seconds_per_step(now) or seconds
        loss = self._window_loss / self._window_n if self._window_n else float("nan")
        line = f"step {step}/{self.total_steps}  loss {loss:.4g}  {sps:.3g} s/step"
        if step < self.total_steps:
            line += f"  ETA {format_duration((self.total_steps - step) * sps)}"
        self._window_loss, self._window_n, self._last_line = 0.0, 0, now
        self.write_log(line)
        if self.progress and self._bar is None:
            print(line, flush=True)

    @property
    def samples_per_s(self) -> float:
        return self._rate or 0.0

    # ------------------------------------------------------------------ records
    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record scalars at ``step`` (TensorBoard :func:`tensorboard_tag` and a JSONL line)."""
        if not self.enabled:
            return
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(tensorboard_tag(key), value, step)
        record: dict[str, float | str] = {"step": step, "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()})
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")

    def write_log(self, text: str) -> None:
        """Append ``text`` to ``train.log`` only."""
        if self.enabled:
            append_log(self.run_dir, text)

    def message(self, text: str) -> None:
        """Print a line (without breaking the progress bar) and append it to ``train.log``."""
        if self.enabled:
            announce(text, self.run_dir)

    def final(self, step: int, results: dict[str, Any], hparams: dict[str, Any] | None = None,
              label: str = "result") -> None:
        """Like :func:`record_final_results`, through this logger's TensorBoard writer."""
        if not self.enabled:
            return
        scalars = _numbers(results)
        self.write_log(f"{label}: " + ("  ".join(f"{k} {v:.4g}" for k, v in scalars.items()) or "(no numbers)"))
        if self._writer is not None:
            _write_final(self._writer, scalars, step, hparams)

    @contextlib.contextmanager
    def capture_warnings(self) -> Generator[None, None, None]:
        """Copy every warning shown while the block runs into ``train.log`` (still shown as usual)."""
        if not self.enabled:
            yield
            return
        shown = warnings.showwarning

        def tee(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            with contextlib.suppress(OSError):
                self.write_log(f"warning: {' '.join(str(message).split())}")
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = tee
        try:
            yield
        finally:
            warnings.showwarning = shown

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
