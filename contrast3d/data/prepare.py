"""Dataset preparation runs: many scene jobs, worker processes, resumability and a summary.

A run turns every input scene (an RGB-D sequence, or a mesh / point cloud; see
:mod:`contrast3d.data.scene_jobs`) into ``<out>/<scene>/``:

* each job writes into ``<out>/.<scene>.tmp-<pid>`` (``pid`` of the run's main process), adds
  the completion marker ``prepare_done.json`` last and renames the folder into place, so an
  interrupted run never leaves a half-written ``<out>/<scene>``;
* a scene whose folder has the marker is skipped on re-run (``overwrite=True`` redoes it);
  temporary folders of runs that are no longer alive are removed at the start of a run;
* a bad input raises :class:`DataError` (or an ``OSError`` reading it) in its job: a bad *frame* is
  left out of its scene (listed in the summary), a scene that cannot be prepared is skipped with
  the reason (for a scene without one usable frame: the most common frame problem); ``strict=True``
  stops the run at the first one instead (the DataError is re-raised; the CLI exits with 2), and
  a run that prepared no scene at all is an error too (the CLI names the first failure, exit 2);
* ``workers > 1`` runs jobs in spawned processes, each limited to ``cpus // workers`` numba /
  torch / BLAS threads;
* the summary (scenes done / already done / failed, frames, pairs, points, seconds, skipped
  inputs with reasons) is returned and written to ``<out>/prepare_summary.json``.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrast3d.errors import DataError
from contrast3d.io._common import replace_dir

MARKER = "prepare_done.json"
SUMMARY_FILE = "prepare_summary.json"
_TEMP = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")
_THREAD_ENV = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class SceneJob:
    """One scene to prepare: ``kind`` ``"rgbd"`` or ``"scene"``, output ``out / name``."""

    kind: str
    name: str
    source: str
    out: str
    options: dict[str, Any] = field(default_factory=dict)
    run_pid: int = 0

    @property
    def final(self) -> Path:
        return Path(self.out) / self.name

    @property
    def temp(self) -> Path:
        return Path(self.out) / f".{self.name}.tmp-{self.run_pid or os.getpid()}"


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` is a finished scene (has the completion marker)."""
    return (Path(folder) / MARKER).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(out: str | Path) -> list[str]:
    """Remove ``<out>/.<name>.tmp-<pid>`` / ``.old-<pid>`` folders whose process is gone."""
    out = Path(out)
    removed: list[str] = []
    if not out.is_dir():
        return removed
    for p in sorted(out.iterdir()):
        m = _TEMP.match(p.name)
        if m and p.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(str(p))
    return removed


def run_job(job: SceneJob) -> dict[str, Any]:
    """Run one scene job (in any process); never raises :class:`DataError`.

    Returns ``{"name", "source", "output", "status": "done" | "failed", "seconds", "error"
    ({"source", "reason"} or None), ...}`` plus the job's counts (frames / pairs /
    skipped_frames for RGB-D, points / kind / fields for scenes).
    """
    from contrast3d.data.scene_jobs import run_rgbd, run_scene

    start = time.perf_counter()
    result: dict[str, Any] = {"name": job.name, "source": job.source, "output": str(job.final), "error": None}
    tmp = job.temp
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        runner = run_rgbd if job.kind == "rgbd" else run_scene
        result.update(runner(Path(job.source), tmp, dict(job.options, name=job.name)))
        result["status"] = "done"
        result["seconds"] = round(time.perf_counter() - start, 3)
        (tmp / MARKER).write_text(json.dumps(result, indent=1))
        replace_dir(tmp, job.final)
    except DataError as err:
        result.update(status="failed", error={"source": err.source, "reason": err.reason})
    except OSError as err:  # an input that vanished or cannot be read mid-job: skip the scene like a bad one
        result.update(status="failed", error={"source": str(err.filename or job.source),
                                              "reason": f"cannot read ({err.strerror or err})"})
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _init_worker(threads: int) -> None:
    """Pool initializer: cap the numba / torch / BLAS threads of a worker process."""
    from contrast3d.threads import limit_threads

    limit_threads(threads)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _results(jobs: list[SceneJob], workers: int) -> Generator[dict[str, Any], None, None]:
    """Yield job results as they finish (in-process for one worker, else a spawn pool)."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    workers = min(workers, len(jobs))
    threads = max(1, _cpus() // workers)
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update({k: str(threads) for k in _THREAD_ENV})  # inherited by the spawned workers
    try:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(threads,))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield from pool.imap_unordered(run_job, jobs)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="scene", desc="prepare", file=sys.stderr, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty())


def run_prepare(kind: str, inputs: list[tuple[str, Path]], out: str | Path, options: dict[str, Any] | None = None,
                workers: int = 1, strict: bool = False, overwrite: bool = False, quiet: bool = False,
                ignored: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Prepare ``inputs`` (``[(scene_name, path)]``) of ``kind`` into ``out``; return the summary.

    See the module docstring. With ``strict`` the first failing scene (or frame) raises its
    :class:`DataError` after the summary (with ``"stopped"``) has been written.
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    removed = clean_stale_temps(out)
    options = dict(options or {}, strict=strict)
    results: list[dict[str, Any]] = []
    jobs = []
    for name, path in inputs:
        job = SceneJob(kind, name, str(path), str(out), options, os.getpid())
        if job.final.exists() and not overwrite:
            if is_complete(job.final):
                try:
                    prev = json.loads((job.final / MARKER).read_text())
                except ValueError:
                    prev = {}
                results.append(dict(prev, name=name, source=str(path), output=str(job.final),
                                    status="already_done", seconds=0.0, error=None))
                continue
            results.append({"name": name, "source": str(path), "output": str(job.final), "status": "failed",
                            "seconds": 0.0, "error": {"source": str(job.final), "reason":
                                                      "output folder exists but is not a finished scene "
                                                      "(remove it or use --overwrite)"}})
            continue
        jobs.append(job)
    stopped = None
    bar = _progress(len(jobs), quiet)
    running = _results(jobs, workers)
    try:
        for result in running:
            results.append(result)
            bar.update(1)
            bar.set_postfix_str(result["name"], refresh=False)
            if strict and result["status"] == "failed":
                stopped = result["error"]
                break
    finally:
        running.close()  # stops the pool at once when --strict broke out (or on an exception)
        bar.close()
        for job in jobs:  # what terminated workers left behind
            shutil.rmtree(job.temp, ignore_errors=True)
    summary = summarize(kind, out, results, ignored or [], removed, workers, time.perf_counter() - start)
    summary["stopped"] = stopped
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    if stopped is not None:
        raise DataError(stopped["source"], stopped["reason"])
    return summary


def summarize(kind: str, out: Path, results: list[dict[str, Any]], ignored: list[dict[str, str]],
              removed: list[str], workers: int, seconds: float) -> dict[str, Any]:
    """The run summary: counts, totals and every skipped input with its reason."""
    def count(status: str) -> int:
        return sum(r["status"] == status for r in results)

    done = [r for r in results if r["status"] == "done"]
    complete = done + [r for r in results if r["status"] == "already_done"]
    skipped = [dict(r["error"], scene=r["name"], what="scene") for r in results if r["status"] == "failed"]
    for r in done:
        skipped += [dict(f, scene=r["name"], what="frame") for f in r.get("skipped_frames", [])]
    return {"command": kind, "out": str(out), "workers": workers, "seconds": round(seconds, 3),
            "scenes": {"total": len(results), "done": len(done), "already_done": count("already_done"),
                       "failed": count("failed")},
            "frames": sum(r.get("frames", 0) for r in done), "pairs": sum(r.get("pairs", 0) for r in done),
            "points": sum(r.get("points", 0) for r in done),
            "frames_total": sum(r.get("frames", 0) for r in complete),
            "pairs_total": sum(r.get("pairs", 0) for r in complete),
            "skipped_inputs": skipped, "ignored": ignored, "removed_temp": removed,
            "results": sorted(results, key=lambda r: r["name"])}


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines of a summary."""
    s = summary["scenes"]
    what = (f"{summary['frames']} frames, {summary['pairs']} pairs" if summary["command"] == "rgbd"
            else f"{summary['points']} points")
    head = (f"prepared {s['done']} scene(s) ({what}), {s['already_done']} already done, {s['failed']} skipped "
            f"in {summary['seconds']:.1f} s -> {Path(summary['out']) / SUMMARY_FILE}")
    lines = [head]
    for item in summary["skipped_inputs"]:
        lines.append(f"  skipped {item['what']} ({item['scene']}): {item['source']}: {item['reason']}")
    if summary["ignored"]:
        lines.append(f"  ignored {len(summary['ignored'])} path(s) that are no inputs (see the summary file)")
    if summary["removed_temp"]:
        lines.append(f"  removed {len(summary['removed_temp'])} leftover temporary folder(s)")
    if summary.get("stopped"):
        lines.append(f"  stopped (--strict): {summary['stopped']['source']}: {summary['stopped']['reason']}")
    return "\n".join(lines)
