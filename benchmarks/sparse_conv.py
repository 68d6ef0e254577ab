"""Benchmark the SpUNet backbone on CPU: pure-torch sparse backend vs spconv (when installed).

Workload: ``--scenes`` scenes of ``--voxels`` voxels each, cut from a synthetic room (floor,
four walls and a few boxes of a ~6 x 5 x 3 m room, surfaces sampled at half-voxel spacing with
scan-like noise, voxelised at 2 cm) by keeping the voxels nearest to a random centre, as
Pointcept's SphereCrop does. Six random input channels.

Each measurement runs in its own subprocess so its peak RSS (``resource.getrusage``) is its own:

* ``train``: SpUNet-34 and a small preset on the torch backend, train mode, forward and
  forward+backward of a training step (``loss = mean(out^2)``) at ``--threads`` threads; its
  ``peak_rss_mb`` is the training-step peak.
* ``infer_1t``: at one thread, kernel-map build time of one forward, and inference forward
  (eval, ``no_grad``) of the torch model and, when spconv is installed, of an spconv model with
  the same weights, run alternately; ``ratio_torch_over_spconv`` = torch ms / spconv ms, plus the
  largest output difference and whether spconv can run backward on this machine.

Usage: ``python benchmarks/sparse_conv.py --json [--repeats 3] [--voxels 50000]``. The last
line printed with ``--json`` is one JSON object. Times are medians over ``--repeats`` runs after
one warm-up, in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrast3d.models import create_spunet  # noqa: E402
from contrast3d.structures import PointBatch  # noqa: E402

IN_CHANNELS = 6
NUM_CLASSES = 20


# ------------------------------------------------------------------------ workload
def _rectangles(rng: np.random.Generator, room: tuple[float, float, float]) -> list[tuple[np.ndarray, ...]]:
    """``(origin, u, v)`` rectangles (metres): floor, 4 walls, 5 faces of each of 4 boxes."""
    lx, ly, lz = room
    e = np.eye(3)
    rects = [(np.zeros(3), lx * e[0], ly * e[1]),
             (np.zeros(3), lx * e[0], lz * e[2]), (np.array([0, ly, 0.]), lx * e[0], lz * e[2]),
             (np.zeros(3), ly * e[1], lz * e[2]), (np.array([lx, 0, 0.]), ly * e[1], lz * e[2])]
    for _ in range(4):
        w, d, h = rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.2)
        o = np.array([rng.uniform(0.1, lx - w - 0.1), rng.uniform(0.1, ly - d - 0.1), 0.0])
        rects += [(o + [0, 0, h], w * e[0], d * e[1]),
                  (o, w * e[0], h * e[2]), (o + [0, d, 0], w * e[0], h * e[2]),
                  (o, d * e[1], h * e[2]), (o + [w, 0, 0], d * e[1], h * e[2])]
    return rects


def room_voxels(n_voxels: int, seed: int, voxel: float = 0.02,
                room: tuple[float, float, float] = (6.0, 5.0, 3.0)) -> np.ndarray:
    """``(n_voxels, 3)`` int64 unique voxels of a synthetic room crop, shifted to start at 0."""
    rng = np.random.default_rng(seed)
    step = voxel / 2
    pts = []
    for origin, u, v in _rectangles(rng, room):
        nu, nv = int(np.linalg.norm(u) / step) + 1, int(np.linalg.norm(v) / step) + 1
        a, b = np.meshgrid(np.linspace(0, 1, nu), np.linspace(0, 1, nv), indexing="ij")
        pts.append(origin + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v)
    p = np.concatenate(pts)
    p += rng.normal(0, 0.3 * voxel, p.shape)
    vox = np.unique(np.floor(p / voxel).astype(np.int64), axis=0)
    if n_voxels < len(vox):
        centre = vox[rng.integers(len(vox))]
        d2 = ((vox - centre) ** 2).sum(1)
        vox = vox[np.argpartition(d2, n_voxels)[:n_voxels]]
    vox = vox - vox.min(0)
    return vox[rng.permutation(len(vox))]


def make_batch(scenes: int, voxels: int) -> PointBatch:
    grids = [torch.from_numpy(room_voxels(voxels, seed=100 + i)) for i in range(scenes)]
    grid = torch.cat(grids)
    feat = torch.randn(len(grid), IN_CHANNELS, generator=torch.Generator().manual_seed(0))
    offset = torch.cumsum(torch.tensor([len(g) for g in grids]), 0)
    return PointBatch(coord=grid.float() * 0.02, feat=feat, grid_coord=grid, offset=offset)


# ------------------------------------------------------------------------ timing
def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 1)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _model(name: str, backend: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_spunet(name, IN_CHANNELS, NUM_CLASSES, backend=backend)


def _train_step_times(model: torch.nn.Module, batch: PointBatch, repeats: int) -> dict[str, float]:
    model.train()
    fwd, total = [], []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = model(batch)
        t1 = time.perf_counter()
        out.square().mean().backward()
        t2 = time.perf_counter()
        if i:  # first is warm-up
            fwd.append((t1 - t0) * 1e3)
            total.append((t2 - t0) * 1e3)
    return {"forward_ms": round(statistics.median(fwd), 1), "fwd_bwd_ms": round(statistics.median(total), 1)}


def _kernel_map_ms(model: torch.nn.Module, batch: PointBatch) -> float:
    """Time spent building kernel maps in one forward (torch backend only)."""
    import contrast3d.sparse.modules as mods
    spent = [0.0]
    originals = {name: getattr(mods, name) for name in ("build_subm_map", "build_conv_map")}

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0
        return wrapper

    for name, fn in originals.items():
        setattr(mods, name, timed(fn))
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        for name, fn in originals.items():
            setattr(mods, name, fn)
    return round(spent[0] * 1e3, 1)


def _compare_1t(name: str, batch: PointBatch, repeats: int, with_spconv: bool) -> dict[str, Any]:
    """Inference forward of the torch model and (optionally) an spconv twin with the same weights,
    interleaved run by run so that load on the machine hits both alike."""
    model = _model(name, "torch").eval()
    res: dict[str, Any] = {"kernel_map_ms": _kernel_map_ms(model, batch)}
    runs: dict[str, list[float]] = {"torch": []}
    models = {"torch": model}
    if with_spconv:
        twin = _model(name, "spconv").eval()
        twin.load_state_dict(model.state_dict())
        models["spconv"], runs["spconv"] = twin, []
    outputs = {}
    with torch.no_grad():
        for key, m in models.items():  # warm-up
            outputs[key] = m(batch)
        for _ in range(repeats):
            for key, m in models.items():
                t0 = time.perf_counter()
                m(batch)
                runs[key].append((time.perf_counter() - t0) * 1e3)
    res["torch_infer_ms"] = round(statistics.median(runs["torch"]), 1)
    if with_spconv:
        res["spconv_infer_ms"] = round(statistics.median(runs["spconv"]), 1)
        res["ratio_torch_over_spconv"] = round(res["torch_infer_ms"] / res["spconv_infer_ms"], 3)
        res["max_abs_diff_vs_spconv"] = float((outputs["torch"] - outputs["spconv"]).abs().max())
        try:
            _train_step_times(models["spconv"], batch, 0)
            res["spconv_backward"] = "ok"
        except Exception as err:  # spconv's CPU build has no backward kernels
            res["spconv_backward"] = f"unsupported: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return res


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process: ``train`` (torch, ``threads``) or ``compare_1t``."""
    torch.set_num_threads(job["threads"])
    batch = make_batch(job["scenes"], job["voxels"])
    res: dict[str, Any] = {"threads": torch.get_num_threads(), "voxels_total": len(batch)}
    if job["kind"] == "train":
        model = _model(job["model"], "torch")
        res.update(_train_step_times(model, batch, job["repeats"]))
    else:
        res.update(_compare_1t(job["model"], batch, job["repeats"], job["spconv"]))
    res["peak_rss_mb"] = _peak_rss_mb()
    return res


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--_worker", json.dumps(job)],
                          capture_output=True, text=True, env=dict(os.environ))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def spconv_version() -> str | None:
    try:
        import spconv
        import spconv.pytorch  # noqa: F401
    except Exception:
        return None
    return str(getattr(spconv, "__version__", "unknown"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--voxels", type=int, default=50_000, help="voxels per scene")
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads of the torch runs")
    ap.add_argument("--small", default="spunet14", help="the small preset to measure besides spunet34")
    ap.add_argument("--models", default=None, help="comma list overriding 'spunet34,<small>'")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        print(json.dumps(worker(json.loads(args._worker))))
        return {}
    models = args.models.split(",") if args.models else ["spunet34", args.small]
    base = {"scenes": args.scenes, "voxels": args.voxels, "repeats": args.repeats}
    sp_version = spconv_version()
    result: dict[str, Any] = {
        "workload": f"{args.scenes} scenes x {args.voxels} voxels, synthetic room crops, 2 cm voxels",
        "torch_version": torch.__version__, "torch_threads": args.threads, "repeats": args.repeats,
        "spconv": sp_version if sp_version else "absent (pip install spconv to compare)",
        "models": {}}
    for name in models:
        entry = {"train": _run_job({**base, "kind": "train", "model": name, "threads": args.threads}),
                 "infer_1t": _run_job({**base, "kind": "compare_1t", "model": name, "threads": 1,
                                       "spconv": bool(sp_version)})}
        result["models"][name] = entry
        if not args.json:
            print(name, json.dumps(entry, indent=1), flush=True)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
