"""Benchmark one PointContrast pre-training step on a simulated pair batch, by part.

Measures (medians over ``--repeats``, all in one run on this machine):

* ``data_s``: building one batch in the main process (read, augment, voxelise, match, collate);
* ``matching_s``: the nearest-neighbour matching of one pair's kept points alone;
* ``backbone_fwd_bwd_s``: backbone forward + backward on both views (a plain feature loss);
* ``loss_s``: PointInfoNCE on the sampled matches, forward + backward, features given;
* ``step_s``: the full method step (forward, loss, backward, SGD step);
* ``step_over_backbone``: step_s / backbone_fwd_bwd_s (target <= 1.15);
* ``loader_batches_per_s`` with 2 workers (loader alone) vs ``steps_per_s``, and their ratio
  (target >= 2);
* ``spunet34_peak_rss_mb``: peak RSS of a separate process running one SpUNet-34 PointContrast
  step on 2 views x ~50k voxels at 2 cm (target <= 8192 MB).

``--json`` prints one JSON object as the last line.

    python benchmarks/train_step.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contrast3d.config import LoaderConfig  # noqa: E402
from contrast3d.data.pairs import find_matches  # noqa: E402
from contrast3d.data.views import augment_view  # noqa: E402
from contrast3d.engine.data import build_loader  # noqa: E402
from contrast3d.losses import point_info_nce  # noqa: E402
from contrast3d.methods.common import BackboneConfig, PairDataConfig, build_pair_dataset, pair_collate  # noqa: E402
from contrast3d.methods.pointcontrast import PointContrast, PointContrastConfig  # noqa: E402


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def simulate(out: Path, scenes: int) -> Path:
    from contrast3d.simulate import simulate_scene

    for seed in range(scenes):
        simulate_scene(100 + seed, out, n_frames=0, density=1500.0)
    return out


def measure(root: Path, args: argparse.Namespace) -> dict:
    data_cfg = PairDataConfig(grid_size=args.grid, match_radius=1.5 * args.grid, max_points=args.max_points,
                              rotation="z")
    ds = build_pair_dataset(str(root), data_cfg)
    collate = pair_collate(data_cfg)
    rng = np.random.default_rng(0)
    idx = [i % len(ds) for i in range(args.batch)]

    def load():
        return collate([ds.get_sample(i, rng) for i in idx])

    data_s = median_time(load, args.repeats)
    batch = load()

    raw = ds.raw(0)
    transform = ds.transform
    v1, w1 = augment_view(raw, transform, np.random.default_rng(1))
    v2, w2 = augment_view(raw, transform, np.random.default_rng(2))
    matching_s = median_time(lambda: find_matches(w1, w2, data_cfg.match_radius), args.repeats)

    torch.manual_seed(0)
    method = PointContrast(PointContrastConfig(num_matches=args.matches), BackboneConfig(preset=args.preset))
    method.train()
    opt = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    net = method.backbone()

    def backbone_fwd_bwd():
        opt.zero_grad(set_to_none=True)
        f1, f2 = net(batch.view1), net(batch.view2)
        (f1.square().mean() + f2.square().mean()).backward()

    def full_step():
        opt.zero_grad(set_to_none=True)
        method(batch)["loss"].backward()
        opt.step()

    with torch.no_grad():
        f1, f2 = net(batch.view1), net(batch.view2)
    f1, f2 = f1.detach().requires_grad_(), f2.detach().requires_grad_()

    def loss_only():
        pick = torch.randperm(batch.matches.shape[0])[: args.matches]
        m = batch.matches[pick]
        point_info_nce(f1[m[:, 0]], f2[m[:, 1]], 0.4).backward()

    # Interleave backbone-only and full steps so machine noise hits both alike.
    bb, st = [], []
    backbone_fwd_bwd(), full_step()
    for _ in range(args.repeats):
        for fn, bucket in ((backbone_fwd_bwd, bb), (full_step, st)):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
    backbone_s, step_s = statistics.median(bb), statistics.median(st)
    loss_s = median_time(loss_only, args.repeats)

    loader = build_loader(ds, collate, LoaderConfig(batch_size=args.batch, num_workers=2, shuffle=True,
                                                    drop_last=False, pin_memory=False, prefetch_factor=2), seed=0)
    it = iter(loader)
    next(it)  # workers started
    n, t0 = 0, time.perf_counter()
    while n < args.loader_batches:
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            continue
        n += 1
    loader_bps = n / (time.perf_counter() - t0)
    del it, loader

    return {
        "preset": args.preset, "grid_size": args.grid, "batch_pairs": args.batch, "num_matches": args.matches,
        "voxels_view1": int(batch.view1.coord.shape[0]), "voxels_view2": int(batch.view2.coord.shape[0]),
        "matches_in_batch": int(batch.matches.shape[0]),
        "data_s": round(data_s, 4), "matching_s": round(matching_s, 4),
        "backbone_fwd_bwd_s": round(backbone_s, 4), "loss_s": round(loss_s, 4), "step_s": round(step_s, 4),
        "step_over_backbone": round(step_s / backbone_s, 3),
        "loader_batches_per_s_2workers": round(loader_bps, 3), "steps_per_s": round(1.0 / step_s, 3),
        "loader_over_steps": round(loader_bps * step_s, 2),
    }


def rss_child(root: str, voxels: int) -> None:
    """One SpUNet-34 PointContrast step on 2 views x ~``voxels`` at 2 cm; prints peak RSS (MB)."""
    data_cfg = PairDataConfig(grid_size=0.02, match_radius=0.03, max_points=voxels, rotation="z",
                              holistic_crop=1.0)
    ds = build_pair_dataset(root, data_cfg)
    batch = pair_collate(data_cfg)([ds.get_sample(0, np.random.default_rng(0))])
    method = PointContrast(PointContrastConfig(), BackboneConfig(preset="spunet34"))
    opt = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    method(batch)["loss"].backward()
    opt.step()
    step_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"voxels": [int(batch.view1.coord.shape[0]), int(batch.view2.coord.shape[0])],
                      "peak_rss_mb": round(rss_mb, 1), "step_s": round(step_s, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--data", help="pair dataset root (default: simulate scenes into a temp folder)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--preset", default="spunet-tiny")
    parser.add_argument("--grid", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-points", type=int, default=20000)
    parser.add_argument("--matches", type=int, default=2048,
                        help="matches sampled (CPU-small preset: 2048; paper: 4096)")
    parser.add_argument("--loader-batches", type=int, default=12)
    parser.add_argument("--rss-voxels", type=int, default=50000, help="0 skips the SpUNet-34 RSS measurement")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.rss_voxels)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else simulate(Path(tmp), 3)
        result = {"threads": torch.get_num_threads(), "loadavg_1min": round(os.getloadavg()[0], 2),
                  **measure(root, args)}
        if args.rss_voxels:
            out = subprocess.run([sys.executable, __file__, "--rss-child", str(root), "--rss-voxels",
                                  str(args.rss_voxels)], capture_output=True, text=True, check=True)
            child = json.loads(out.stdout.strip().splitlines()[-1])
            result.update({"spunet34_voxels": child["voxels"], "spunet34_peak_rss_mb": child["peak_rss_mb"],
                           "spunet34_step_s": child["step_s"]})
    if not args.json:
        for k, v in result.items():
            print(f"{k:32s} {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
