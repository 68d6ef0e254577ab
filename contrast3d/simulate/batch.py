"""Simulate several scenes in parallel worker processes (used by the CLI, quickstart, benchmarks)."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def _one(job: tuple) -> tuple[int, str, float]:
    seed, out, frames, width, height, density = job
    from contrast3d.simulate.export import simulate_scene

    start = time.perf_counter()
    path = simulate_scene(seed, out, n_frames=frames, width=width, height=height, density=density)
    return seed, str(path), time.perf_counter() - start


def simulate_scenes(seeds: Sequence[int], out: str | os.PathLike, frames: int = 60, width: int = 320,
                    height: int = 240, density: float = 1500.0, workers: int = 1,
                    report: Callable[[int, int, str, float], None] | None = None) -> list[Path]:
    """Generate, render and export one scene per seed into ``out`` (see :func:`simulate_scene`).

    ``report(done, total, path, seconds)`` is called as scenes finish. Returns the scene folders
    in seed order.
    """
    jobs = [(int(s), str(out), frames, width, height, density) for s in seeds]
    paths: dict[int, str] = {}

    def finished(result: tuple[int, str, float]) -> None:
        seed, path, secs = result
        paths[seed] = path
        if report:
            report(len(paths), len(jobs), path, secs)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            finished(_one(job))
    else:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap_unordered(_one, jobs):
                finished(result)
    return [Path(paths[int(s)]) for s in seeds]
