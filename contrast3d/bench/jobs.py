"""Jobs of ``contrast3d bench`` and how they run: one fresh worker process per job, reuse by digest.

A :class:`Job` (pre-training, probe or fine-tuning run of any task) carries its folder, the digest of its full
resolved config and what the worker needs. :class:`JobRunner` runs a list of jobs ``jobs`` at a time
in fresh worker processes (``forkserver`` with torch and contrast3d preloaded, one job per process,
``threads`` torch threads, so ``resource.getrusage`` gives each job's own peak RSS; a worker dies
with the bench on Linux). Each job folder holds ``bench_job.json`` (digest, status ``running`` /
``done``, result). Before running, a folder is checked: done with the same digest -> the stored
result is reused; another digest -> stale, deleted and re-run; unfinished with the same digest ->
continued from its checkpoint with ``resume`` (the engine's exact resume), restarted otherwise.
A job's prints go to ``bench_job.log`` in its folder. A failing job is reported and the others go on.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

JOB_FILE = "bench_job.json"
# torch._dynamo: the optimisers import it lazily on construction (~3-5 s in every fresh worker otherwise)
_PRELOAD = ["torch", "torch._dynamo", "contrast3d.methods", "contrast3d.engine.run", "contrast3d.evaluation.finetune",
            "contrast3d.evaluation.probe_data", "contrast3d.evaluation.finetune_tasks", "contrast3d.bench.jobs"]


@dataclass
class Job:
    """One unit of work, run by :func:`execute` in a worker process."""

    kind: Literal["pretrain", "probe", "finetune"]
    key: tuple
    folder: Path
    digest: str
    payload: dict[str, Any]


# ----------------------------------------------------------------------------- job execution (worker side)
def _peak_rss_mb() -> float:
    import resource

    kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return round(kib / 1024.0, 1)  # Linux reports KiB


def _init_worker(threads: int) -> None:
    """Die with the parent (Linux), and use ``threads`` torch / numba / BLAS threads."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    from contrast3d.threads import limit_threads  # numpy may already be imported: the env alone is too late

    limit_threads(threads)


def _write_state(folder: Path, digest: str, status: str, result: dict[str, Any] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{JOB_FILE}.tmp"
    tmp.write_text(json.dumps({"digest": digest, "status": status, "result": result}, indent=1) + "\n")
    os.replace(tmp, folder / JOB_FILE)


def _losses(run: Path) -> tuple[float | None, float | None]:
    try:
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    except (OSError, ValueError):
        return None, None
    vals = [r["loss"] for r in recs if isinstance(r.get("loss"), (int, float))]
    return (vals[0], vals[-1]) if vals else (None, None)


def _exec_pretrain(job: Job) -> dict[str, Any]:
    from contrast3d.engine.run import train

    p = job.payload
    result = train(p["cfg"], p["spec"], job.folder, resume=True)
    exports = {k: Path(v).name for k, v in result.exports.items()}  # file names in the run folder
    out: dict[str, Any] = {"steps": result.step, "exports": exports}
    if "backbone" in exports:
        record = json.loads((job.folder / exports["backbone"]).with_suffix(".json").read_text())
        out["record"] = {k: record.get(k) for k in ("kind", "ndim", "preset", "in_channels", "feat_keys", "grid_size")}
    out["loss_first"], out["loss_last"] = _losses(job.folder)
    return out


def random_init_backbone(folder: Path, sig: dict[str, Any], seed: int) -> Path:
    """A randomly initialised backbone of ``sig``'s architecture, exported with its record."""
    import torch

    from contrast3d.engine.rng import derive_seed
    from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
    from contrast3d.models.pretrained import PretrainedRecord, save_pretrained

    torch.manual_seed(derive_seed(seed, 0))
    net = build_backbone(BackboneConfig(preset=sig["preset"], in_channels=sig["in_channels"], backend="torch"))
    record = PretrainedRecord(**spunet_record(net, sig["preset"], sig["feat_keys"], sig["grid_size"]),
                              method="random-init")
    return save_pretrained(net, folder / "random_init.safetensors", record)


def _exec_probe(job: Job) -> dict[str, Any]:
    from contrast3d.evaluation.probe_data import probe_backbone

    p = job.payload
    init = p.get("init") or random_init_backbone(job.folder, p["random"], p["init_seed"])
    res = probe_backbone(init, p["scenes"], p["num_classes"], p["max_scenes"], seed=p["seed"])
    return {k.removeprefix("probe/"): v for k, v in res.items() if isinstance(v, (int, float))}


def _exec_finetune(job: Job) -> dict[str, Any]:
    """Fine-tune ``payload["task"]`` (default semseg) on the bench's label split; keeps the task's metrics."""
    from contrast3d.bench.tasks import TASKS

    p = job.payload
    task = p.get("task", "semseg")
    split = job.folder / "label_split.json"
    if not split.is_file():
        shutil.copyfile(p["split"], split)
    # resume=True: our label split is loaded; a checkpoint (if any) is continued, else a fresh start
    if task == "semseg":
        from contrast3d.evaluation.finetune import finetune_semseg

        res = finetune_semseg(None, None, job.folder, cfg=p["cfg"], resume=True)
        keep: tuple[str, ...] = ("mIoU", "mAcc", "allAcc", "per_class")
    else:
        from contrast3d.evaluation.finetune_tasks import finetune_task

        res = finetune_task(task, None, None, job.folder, cfg=p["cfg"], resume=True)
        keep = TASKS[task].metrics
    keep += ("steps", "labelled", "train_scenes", "val_scenes")
    return {k: res[k] for k in keep if k in res}


def execute(job: Job) -> dict[str, Any]:
    """Run one job (in a worker process; its prints go to ``bench_job.log``); writes and returns its result
    with minutes and peak RSS."""
    import contextlib

    start = time.perf_counter()
    run = {"pretrain": _exec_pretrain, "probe": _exec_probe, "finetune": _exec_finetune}[job.kind]
    with open(job.folder / "bench_job.log", "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        out = run(job)
    out["minutes"] = round((time.perf_counter() - start) / 60.0, 3)
    out["peak_rss_mb"] = _peak_rss_mb()
    _write_state(job.folder, job.digest, "done", out)
    return out


# ----------------------------------------------------------------------------- job execution (bench side)
class JobRunner:
    """Runs jobs in fresh worker processes, reusing finished ones (see the module docstring)."""

    def __init__(self, jobs: int, threads: int, resume: bool, quiet: bool):
        self.jobs, self.threads, self.resume, self.quiet = max(1, jobs), max(1, threads), resume, quiet
        self.failed: list[dict[str, Any]] = []
        self.reused = 0

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def _prepare(self, job: Job) -> dict[str, Any] | None:
        """The stored result of a finished job with this digest, else ``None`` (folder made ready)."""
        state_file = job.folder / JOB_FILE
        state = None
        if state_file.is_file():
            try:
                state = json.loads(state_file.read_text())
            except ValueError:
                state = None
        if state and state.get("digest") == job.digest:
            if state.get("status") == "done" and state.get("result") is not None:
                return state["result"]
            if self.resume:
                return None  # continue it
        if job.folder.exists():
            why = "settings changed" if state and state.get("digest") != job.digest else "unfinished"
            self._say(f"bench: {why}, re-running {job.folder}")
            shutil.rmtree(job.folder)
        _write_state(job.folder, job.digest, "running")
        return None

    def run(self, jobs: list[Job], desc: str) -> dict[tuple, dict[str, Any]]:
        """``{job.key: result}`` for the jobs that finished (failures are kept in :attr:`failed`)."""
        from tqdm import tqdm

        results: dict[tuple, dict[str, Any]] = {}
        todo = []
        for job in jobs:
            stored = self._prepare(job)
            if stored is not None:
                results[job.key] = stored
                self.reused += 1
            else:
                todo.append(job)
        if not todo:
            return results
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        bar = tqdm(total=len(todo), desc=desc, unit="run", file=sys.stderr, disable=self.quiet, dynamic_ncols=True)
        pool = ProcessPoolExecutor(min(self.jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.threads,), max_tasks_per_child=1)
        try:
            pending: dict[Future, Job] = {pool.submit(execute, job): job for job in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    try:
                        results[job.key] = fut.result()
                    except Exception as err:  # a failed run is reported, the others go on
                        self.failed.append({"kind": job.kind, "key": list(job.key), "folder": str(job.folder),
                                            "error": f"{type(err).__name__}: {err}"})
                        bar.write(f"bench: FAILED {job.kind} {job.key}: {type(err).__name__}: {err}")
                    bar.update(1)
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)
        return results


__all__ = ["JOB_FILE", "Job", "JobRunner", "execute", "random_init_backbone"]
