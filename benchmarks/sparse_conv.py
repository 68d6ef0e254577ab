"""Benchmark the SpUNet backbone on CPU: the torch sparse-conv paths against each other and spconv.

Workload: ``--scenes`` scenes of ``--voxels`` voxels each, cut from a synthetic room (floor,
four walls and a few boxes of a ~6 x 5 x 3 m room, surfaces sampled at half-voxel spacing with
scan-like noise, voxelised at 2 cm) by keeping the voxels nearest to a random centre, as
Pointcept's SphereCrop does; rows in random order. Six random input channels.

The torch backend has two convolution paths (:mod:`contrast3d.sparse.functional`): ``gather``
(per-offset gather-GEMM-scatter, the original code) and ``implicit`` (output-stationary neighbour
table GEMM); ``auto``, the default, picks one per layer. The gather path's scatter is numba
(:mod:`contrast3d.sparse.scatter`) or torch's ``index_add_``; a path is named ``IMPL[+SCATTER]``,
e.g. ``gather+torch`` (the code before issue 18) or ``auto`` (= ``auto+auto``, today's default).
``--old`` and ``--new`` (default ``gather+torch`` and ``auto``) are compared *inside one process,
interleaved step by step*, so both see the same machine load; the ratio ``new / old`` is the median
of the per-repeat ratios. On a shared machine wall time is inflated by other processes, so each
timing is also given as process CPU time (at one thread the better estimate of the unloaded time),
and every job records the 1-minute load average (``os.getloadavg``) before and after it.

Each job runs in its own subprocess so its peak RSS (``resource.getrusage``) is its own:

* ``train_<T>t`` (one per ``--threads`` entry): SpUNet-34 and the small preset in train mode,
  forward and forward+backward of a training step (``loss = mean(out^2)``), old and new path
  alternating; ``peak_rss_mb`` is the process peak over both paths.
* ``device`` (with ``--device``; ``auto`` = CUDA when available, else skipped): on that device the
  torch backend against an spconv twin (when spconv has kernels there), inference and training
  forward+backward interleaved, timed with device synchronisation, ``ratio_torch_over_spconv`` and
  peak device memory.
* ``infer_1t``: at one thread, kernel-map build time of one forward (``kernel_map_ms``; the
  neighbour tables of the implicit path separately, ``neighbour_table_ms``), and inference
  forward (eval, ``no_grad``) of the old path, the new path and, when spconv is installed, an
  spconv model with the same weights, run alternately; ``ratio_torch_over_spconv`` = new / spconv.

Usage: ``python benchmarks/sparse_conv.py --json [--repeats 5] [--voxels 50000] [--threads 1,2]``.
The last line printed with ``--json`` is one JSON object. Times are medians over ``--repeats``
runs after one warm-up, in milliseconds.
"""
from __future__ import annotations

import argparse
import contextlib
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
from contrast3d.sparse.functional import ENV_VAR as IMPL_ENV  # noqa: E402
from contrast3d.sparse.kernel_map import KernelMap  # noqa: E402
from contrast3d.sparse.scatter import ENV_VAR as SCATTER_ENV  # noqa: E402
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
def _load() -> float:
    """1-minute load average of the machine."""
    return round(os.getloadavg()[0], 2)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


@contextlib.contextmanager
def _impl(name: str):
    """Run the sparse convs on path ``name``: ``IMPL[+SCATTER]`` with IMPL ``gather``, ``implicit`` or
    ``auto`` and SCATTER (the gather path's scatter, :mod:`contrast3d.sparse.scatter`) ``torch``
    (``index_add_``), ``numba`` or ``auto`` (default)."""
    impl, _, scatter = name.partition("+")
    saved = {var: os.environ.get(var) for var in (IMPL_ENV, SCATTER_ENV)}
    os.environ[IMPL_ENV] = impl
    os.environ[SCATTER_ENV] = scatter or "auto"
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _model(name: str, backend: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_spunet(name, IN_CHANNELS, NUM_CLASSES, backend=backend)


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall_ms, cpu_ms)`` of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3


def _summary(runs: dict[str, dict[str, list[float]]], old: str, new: str) -> dict[str, Any]:
    """Medians per path and the median of the per-repeat ``new / old`` ratios."""
    res: dict[str, Any] = {}
    for path, series in runs.items():
        res[path] = {key: round(statistics.median(vals), 1) for key, vals in series.items()}
        res[path].update({f"{key}_min": round(min(vals), 1) for key, vals in series.items()})
    if old in runs and new in runs and old != new:
        res["ratio_new_over_old"] = {
            key: round(statistics.median(n / o for n, o in zip(runs[new][key], runs[old][key])), 3)
            for key in runs[old]}
    return res


def _train_compare(model: torch.nn.Module, batch: PointBatch, repeats: int, paths: list[str]) -> dict[str, Any]:
    """Training steps (forward, forward+backward) alternating between ``paths``; one warm-up each."""
    model.train()
    runs: dict[str, dict[str, list[float]]] = {p: {"fwd_wall_ms": [], "fwd_bwd_wall_ms": [], "fwd_cpu_ms": [],
                                                   "fwd_bwd_cpu_ms": []} for p in paths}
    for rep in range(repeats + 1):
        for path in paths:
            with _impl(path):
                model.zero_grad(set_to_none=True)
                w0, c0 = time.perf_counter(), time.process_time()
                out = model(batch)
                w1, c1 = time.perf_counter(), time.process_time()
                out.square().mean().backward()
                w2, c2 = time.perf_counter(), time.process_time()
            if rep:  # the first round is the warm-up
                r = runs[path]
                r["fwd_wall_ms"].append((w1 - w0) * 1e3)
                r["fwd_bwd_wall_ms"].append((w2 - w0) * 1e3)
                r["fwd_cpu_ms"].append((c1 - c0) * 1e3)
                r["fwd_bwd_cpu_ms"].append((c2 - c0) * 1e3)
    return _summary(runs, paths[0], paths[-1])


def _map_build_ms(model: torch.nn.Module, batch: PointBatch, path: str) -> dict[str, float]:
    """Time spent building kernel maps, and neighbour tables, in one inference forward on ``path``."""
    import contrast3d.sparse.modules as mods
    spent = {"kernel_map_ms": 0.0, "neighbour_table_ms": 0.0}
    originals = {name: getattr(mods, name) for name in ("build_subm_map", "build_conv_map")}
    table = KernelMap.neighbour_table

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    for name, fn in originals.items():
        setattr(mods, name, timed(fn, "kernel_map_ms"))
    KernelMap.neighbour_table = timed(table, "neighbour_table_ms")  # type: ignore[method-assign]
    try:
        model.eval()
        with torch.no_grad(), _impl(path):
            model(batch)
    finally:
        for name, fn in originals.items():
            setattr(mods, name, fn)
        KernelMap.neighbour_table = table  # type: ignore[method-assign]
    return {key: round(val * 1e3, 1) for key, val in spent.items()}


def _compare_1t(name: str, batch: PointBatch, repeats: int, with_spconv: bool, paths: list[str]) -> dict[str, Any]:
    """Inference forward of the torch paths and (optionally) an spconv twin with the same weights,
    interleaved run by run so that load on the machine hits all alike."""
    model = _model(name, "torch").eval()
    res: dict[str, Any] = {"map_build": _map_build_ms(model, batch, paths[-1])}
    models: dict[str, tuple[torch.nn.Module, str]] = {p: (model, p) for p in paths}
    if with_spconv:
        twin = _model(name, "spconv").eval()
        twin.load_state_dict(model.state_dict())
        models["spconv"] = (twin, paths[-1])
    runs: dict[str, dict[str, list[float]]] = {key: {"infer_wall_ms": [], "infer_cpu_ms": []} for key in models}
    outputs = {}
    with torch.no_grad():
        for key, (m, path) in models.items():  # warm-up
            with _impl(path):
                outputs[key] = m(batch)
        for _ in range(repeats):
            for key, (m, path) in models.items():
                with _impl(path):
                    wall, cpu = _timed(lambda m=m: m(batch))
                runs[key]["infer_wall_ms"].append(wall)
                runs[key]["infer_cpu_ms"].append(cpu)
    res.update(_summary({p: runs[p] for p in paths}, paths[0], paths[-1]))
    res["max_abs_diff_new_vs_old"] = float((outputs[paths[-1]] - outputs[paths[0]]).abs().max())
    if with_spconv:
        res["spconv"] = _summary({"spconv": runs["spconv"]}, "", "")["spconv"]
        pairs = zip(runs[paths[-1]]["infer_wall_ms"], runs["spconv"]["infer_wall_ms"])
        res["ratio_torch_over_spconv"] = round(statistics.median(t / s for t, s in pairs), 3)
        res["max_abs_diff_vs_spconv"] = float((outputs[paths[-1]] - outputs["spconv"]).abs().max())
        try:
            models["spconv"][0].train()
            models["spconv"][0](batch).square().mean().backward()
            res["spconv_backward"] = "ok"
        except Exception as err:  # spconv's CPU build has no backward kernels
            res["spconv_backward"] = f"unsupported: {_error_line(err)}"
    return res


def _error_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 120 characters of it)."""
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"


def _device_compare(name: str, batch: PointBatch, repeats: int, with_spconv: bool, device: str,
                    path: str) -> dict[str, Any]:
    """On ``device`` (CUDA when present): the torch backend (``path``) against an spconv twin with the same
    weights, inference and a training forward+backward, interleaved, timed with device synchronisation;
    peak device memory per model. spconv is skipped when absent or when its build has no kernels there."""
    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    batch = batch.to(dev)
    model = _model(name, "torch").to(dev)
    models: dict[str, torch.nn.Module] = {"torch": model}
    res: dict[str, Any] = {"device": str(dev), "path": path}
    if dev.type == "cuda":
        res["device_name"] = torch.cuda.get_device_name(dev)
    if with_spconv:
        try:
            twin = _model(name, "spconv").to(dev)
            twin.load_state_dict(model.state_dict())
            twin.train()(batch).square().mean().backward()  # a build without kernels here fails now
            twin.zero_grad(set_to_none=True)
            models["spconv"] = twin
        except Exception as err:  # e.g. spconv's CPU build on a CUDA device, or no backward kernels
            res["spconv_error"] = _error_line(err)
    runs: dict[str, dict[str, list[float]]] = {k: {"infer_ms": [], "fwd_bwd_ms": []} for k in models}
    peak: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    for rep in range(repeats + 1):
        for key, m in models.items():
            with _impl(path):
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                m.eval()
                sync()
                t0 = time.perf_counter()
                with torch.no_grad():
                    outputs[key] = m(batch)
                sync()
                t1 = time.perf_counter()
                m.train()
                m.zero_grad(set_to_none=True)
                sync()
                t2 = time.perf_counter()
                m(batch).square().mean().backward()
                sync()
                t3 = time.perf_counter()
                if dev.type == "cuda":
                    peak[key] = max(peak.get(key, 0.0), torch.cuda.max_memory_allocated(dev) / 2**20)
            if rep:  # the first round is the warm-up
                runs[key]["infer_ms"].append((t1 - t0) * 1e3)
                runs[key]["fwd_bwd_ms"].append((t3 - t2) * 1e3)
    for key in models:
        res[key] = {k: round(statistics.median(v), 1) for k, v in runs[key].items()}
        if key in peak:
            res[key]["peak_mem_mb"] = round(peak[key], 1)
    if "spconv" in models:
        res["ratio_torch_over_spconv"] = {
            k: round(statistics.median(t / s for t, s in zip(runs["torch"][k], runs["spconv"][k])), 3)
            for k in ("infer_ms", "fwd_bwd_ms")}
        res["max_abs_diff_vs_spconv"] = float((outputs["torch"] - outputs["spconv"]).abs().max())
    return res


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process: ``train`` (torch, ``threads``), ``compare_1t`` or ``device``."""
    torch.set_num_threads(job["threads"])
    batch = make_batch(job["scenes"], job["voxels"])
    res: dict[str, Any] = {"threads": torch.get_num_threads(), "voxels_total": len(batch), "load_before": _load()}
    paths = [job["old"], job["new"]] if job["old"] != job["new"] else [job["new"]]
    if job["kind"] == "train":
        res.update(_train_compare(_model(job["model"], "torch"), batch, job["repeats"], paths))
    elif job["kind"] == "device":
        res.update(_device_compare(job["model"], batch, job["repeats"], job["spconv"], job["device"], job["new"]))
    else:
        res.update(_compare_1t(job["model"], batch, job["repeats"], job["spconv"], paths))
    res["load_after"] = _load()
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
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--voxels", type=int, default=50_000, help="voxels per scene")
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts of the training runs")
    ap.add_argument("--small", default="spunet14", help="the small preset to measure besides spunet34")
    ap.add_argument("--models", default=None, help="comma list overriding 'spunet34,<small>'")
    ap.add_argument("--old", default="gather+torch",
                    help="reference path IMPL[+SCATTER]: IMPL gather, implicit or auto; SCATTER torch, numba or auto "
                         "(default gather+torch: the code before issue 18)")
    ap.add_argument("--new", default="auto", help="path compared with --old (default auto: auto+auto)")
    ap.add_argument("--no-infer", action="store_true", help="skip the 1-thread inference / spconv job")
    ap.add_argument("--device", default="auto",
                    help="device job (torch backend vs spconv, inference and fwd+bwd): auto = cuda when available "
                         "(else skipped), none, or a torch device such as cuda:1 or cpu")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        print(json.dumps(worker(json.loads(args._worker))))
        return {}
    models = args.models.split(",") if args.models else ["spunet34", args.small]
    threads = [int(t) for t in str(args.threads).split(",") if t]
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "none"
    base = {"scenes": args.scenes, "voxels": args.voxels, "repeats": args.repeats, "old": args.old, "new": args.new}
    sp_version = spconv_version()
    result: dict[str, Any] = {
        "workload": f"{args.scenes} scenes x {args.voxels} voxels, synthetic room crops, 2 cm voxels",
        "torch_version": torch.__version__, "threads": threads, "repeats": args.repeats,
        "old": args.old, "new": args.new, "cpus": os.cpu_count(), "load_start": _load(),
        "spconv": sp_version if sp_version else "absent (pip install spconv to compare)",
        "models": {}}
    for name in models:
        entry = {f"train_{t}t": _run_job({**base, "kind": "train", "model": name, "threads": t}) for t in threads}
        if len(set(threads)) > 1 and all("error" not in entry[f"train_{t}t"] for t in threads):
            # fwd+bwd wall time at the most threads over that at the fewest (separate processes).
            few, many = entry[f"train_{min(threads)}t"], entry[f"train_{max(threads)}t"]
            entry[f"wall_ratio_{max(threads)}t_over_{min(threads)}t"] = {
                path: round(many[path]["fwd_bwd_wall_ms"] / few[path]["fwd_bwd_wall_ms"], 3)
                for path in dict.fromkeys((args.old, args.new)) if path in few and path in many}
        if not args.no_infer:
            entry["infer_1t"] = _run_job({**base, "kind": "compare_1t", "model": name, "threads": 1,
                                          "spconv": bool(sp_version)})
        if device != "none":
            entry["device"] = _run_job({**base, "kind": "device", "model": name, "threads": max(threads),
                                        "spconv": bool(sp_version), "device": device})
        result["models"][name] = entry
        if not args.json:
            print(name, json.dumps(entry, indent=1), flush=True)
    result["load_end"] = _load()
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
