"""What pre-training buys: scratch vs PointContrast at two label budgets, several seeds.

A fixed simulated benchmark (scene seeds ``--scene-seed`` ...): ``--train-scenes`` scenes for
training and ``--val-scenes`` held-out scenes for validation. PointContrast is pre-trained once on
the RGB-D frame pairs of the TRAINING scenes only (no labels), then semantic segmentation is
fine-tuned from scratch and from the pre-trained backbone under each label budget (CSC "limited
annotations": N labelled points per training scene), for each seed; the table reports the mean
and standard deviation of validation mIoU over seeds, and the gain of pre-training.

Everything is measured in this run on this machine. ``--json`` prints one JSON object last.

    python benchmarks/label_efficiency.py --json            # about an hour on 2 CPU cores
    python benchmarks/label_efficiency.py --json --smoke    # a few minutes, tiny settings
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from contrast3d.data.prepare import run_prepare  # noqa: E402
from contrast3d.engine.run import train  # noqa: E402
from contrast3d.evaluation.finetune import finetune_semseg  # noqa: E402
from contrast3d.methods import METHODS, method_config  # noqa: E402
from contrast3d.simulate.batch import simulate_scenes  # noqa: E402


def build_data(work: Path, args: argparse.Namespace) -> tuple[Path, Path, list[Path]]:
    """Simulate scenes; return (Pointcept root with train/ and val/, simulation folder, train sequences)."""
    sim = work / "sim"
    n = args.train_scenes + args.val_scenes
    seeds = list(range(args.scene_seed, args.scene_seed + n))
    paths = simulate_scenes(seeds, sim, frames=args.frames, workers=2)
    scenes = work / "scenes"
    for split, chunk in (("train", paths[:args.train_scenes]), ("val", paths[args.train_scenes:])):
        (scenes / split).mkdir(parents=True, exist_ok=True)
        for p in chunk:
            link = scenes / split / p.name
            if not link.exists():
                link.symlink_to((sim / "pointcept" / p.name).resolve())
    return scenes, sim, paths[:args.train_scenes]


def finetune_job(job: tuple) -> dict:
    """One fine-tuning run (in a worker process when ``--jobs`` > 1: one torch thread, no loader
    workers, so parallel runs don't oversubscribe the cores). A finished run is reused."""
    budget, seed, init_name, init, scenes, out, steps, jobs = job
    overrides = []
    if jobs > 1:
        import torch

        torch.set_num_threads(1)
        overrides = ["loader.num_workers=0"]
    out = Path(out)
    res = finetune_semseg(scenes, init, out, budget, config_files=["semseg_cpu_small"],
                          overrides=overrides, steps=steps, seed=seed, device="cpu", progress=False, eval_every=0,
                          resume=(out / "checkpoints" / "last.pt").is_file())
    print(f"{budget:8s} seed {seed} {init_name:14s} mIoU {100 * res['mIoU']:.2f}", file=sys.stderr, flush=True)
    return {"budget": budget, "seed": seed, "init": init_name, "mIoU": res["mIoU"], "mAcc": res["mAcc"],
            "allAcc": res["allAcc"], "minutes": res.get("minutes")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default="runs/label_efficiency", help="work folder (kept for inspection)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings to check the script runs")
    parser.add_argument("--scene-seed", type=int, default=500)
    parser.add_argument("--train-scenes", type=int, default=10)
    parser.add_argument("--val-scenes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--frame-skip", type=int, default=3)
    parser.add_argument("--pretrain-steps", type=int, default=1200)
    parser.add_argument("--finetune-steps", type=int, default=150)
    parser.add_argument("--budgets", default="20pts,200pts")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2, help="fine-tuning runs in parallel (1 thread each)")
    args = parser.parse_args()
    if args.smoke:
        args.train_scenes, args.val_scenes, args.frames = 3, 1, 12
        args.pretrain_steps, args.finetune_steps, args.seeds = 10, 10, "0"
    start = time.perf_counter()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)

    scenes, sim, train_seqs = build_data(work, args)
    t_data = time.perf_counter()
    pairs = work / "pairs"
    prep = run_prepare("rgbd", [(p.name, p) for p in train_seqs], pairs,
                       {"frame_skip": args.frame_skip, "voxel_size": 0.025, "depth_trunc": 4.0,
                        "min_overlap": 0.3, "segments": False}, workers=2, quiet=True)

    spec = METHODS["pointcontrast"]
    cfg = method_config("pointcontrast", files=["pointcontrast_cpu_small"],
                            flags={"data_root": str(pairs), "steps": args.pretrain_steps, "device": "cpu",
                                   "progress": False},
                            overrides=[f"checkpoint_every={max(args.pretrain_steps // 4, 1)}"])
    pre_dir = work / "pretrain"
    backbone = Path(train(cfg, spec, pre_dir, resume=(pre_dir / "checkpoints" / "last.pt").is_file()).backbone_path)
    t_pre = time.perf_counter()

    jobs = [(budget, seed, init_name, init, str(scenes), str(work / "finetune" / f"{budget}_{init_name}_s{seed}"),
             args.finetune_steps, args.jobs)
            for budget in args.budgets.split(",") for seed in map(int, args.seeds.split(","))
            for init_name, init in (("scratch", "scratch"), ("pointcontrast", str(backbone)))]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            runs = list(pool.map(finetune_job, jobs))
    else:
        runs = [finetune_job(job) for job in jobs]

    table = {}
    for budget in args.budgets.split(","):
        row = {}
        for init_name in ("scratch", "pointcontrast"):
            vals = [100 * r["mIoU"] for r in runs if r["budget"] == budget and r["init"] == init_name]
            row[init_name] = {"mean": round(statistics.mean(vals), 2),
                              "std": round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0, "runs": vals}
        row["gain"] = round(row["pointcontrast"]["mean"] - row["scratch"]["mean"], 2)
        table[budget] = row
    pre_log = [json.loads(line) for line in (pre_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = {
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None, "parallel_finetune_jobs": args.jobs,
        "train_scenes": args.train_scenes, "val_scenes": args.val_scenes, "frames_per_scene": args.frames,
        "frame_pairs": prep.get("pairs"), "pretrain_steps": args.pretrain_steps,
        "pretrain_loss_first_last": [pre_log[0].get("loss"), pre_log[-1].get("loss")] if pre_log else None,
        "finetune_steps": args.finetune_steps, "seeds": args.seeds, "miou_percent": table, "runs": runs,
        "minutes": {"data": round((t_data - start) / 60, 2), "pretrain": round((t_pre - t_data) / 60, 2),
                    "finetune": round((time.perf_counter() - t_pre) / 60, 2),
                    "total": round((time.perf_counter() - start) / 60, 2)},
    }
    if not args.json:
        for budget, row in table.items():
            print(f"{budget:8s} scratch {row['scratch']['mean']:.2f} ± {row['scratch']['std']:.2f}   "
                  f"pointcontrast {row['pointcontrast']['mean']:.2f} ± {row['pointcontrast']['std']:.2f}   "
                  f"gain {row['gain']:+.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
