"""What pre-training buys: ``contrast3d bench`` on the fixed built-in benchmark, scratch vs PointContrast.

A thin wrapper: the protocol, data and report are ``contrast3d bench``'s (:mod:`contrast3d.bench`):
10 training + 3 validation simulated scenes (scene seeds 500..512); PointContrast pre-trained on the
training scenes' RGB-D frame pairs with 2 pre-training seeds; linear / kNN probes of frozen features;
semantic segmentation fine-tuned from scratch, from scratch with 2.5x the steps (control) and from each
pre-trained backbone at 20 and 200 labelled points per training scene with fine-tuning seeds 0, 1, 2;
paired gains over scratch with 95 % confidence intervals. The full report (report.md / report.html,
PNGs) is in ``--out``; finished runs are reused when re-run with the same settings, ``--resume``
continues killed ones.

Sized for about an hour on 2 CPU cores (2 single-thread worker processes): 2 x 800 pre-training
steps, 12 + 6 fine-tuning runs of 100 steps, 6 of 250 steps (scratch-long), the probes, plus about
5 minutes to build the data. Per-run wall times measured with 2 single-thread workers on an otherwise
idle 2-core machine (load ~2): a 100-step fine-tune 2.1 min, a 250-step one 5.0 min, a probe under
1 min, a 300-step PointContrast (PointInfoNCE) pre-training 3.7-4.9 min (~10-13 min for 800 steps). Added up, with
two runs at a time: ~13 min pre-training + ~36 min fine-tuning and probes + data, about 55 minutes.
That is a sum of measured runs; the script has not been timed end to end from an empty folder in one go.

``--json`` prints only the JSON object (one line, last); otherwise the report is printed
first.

    python benchmarks/label_efficiency.py --json            # about an hour on 2 CPU cores
    python benchmarks/label_efficiency.py --json --smoke    # a few minutes, tiny settings
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contrast3d.bench.runner import BenchConfig, run_bench  # noqa: E402

METHODS = ["scratch", "pointcontrast"]
BUDGETS = ["20pts", "200pts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--out", default="runs/label_efficiency", help="bench folder (kept for inspection)")
    parser.add_argument("--smoke", action="store_true", help="tiny data and steps, one seed: checks the script runs")
    parser.add_argument("--resume", action="store_true", help="continue killed runs")
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one single-thread process each)")
    args = parser.parse_args()
    cfg = BenchConfig(methods=METHODS, labels=BUDGETS, seeds=[0, 1, 2], pretrain_seeds=[0, 1], data="builtin",
                      out=args.out, resume=args.resume, pretrain_steps=args.pretrain_steps,
                      finetune_steps=args.finetune_steps, jobs=args.jobs, quiet=args.json)
    if args.smoke:
        cfg.smoke, cfg.seeds, cfg.pretrain_seeds = True, [0], [0]
        cfg.pretrain_steps = cfg.finetune_steps = None  # the bench's --smoke sizes
    s = run_bench(cfg)
    if not args.json:
        print((Path(args.out) / "report.md").read_text())
    smallest = next((g for g in s["gains"] if g["budget"] == BUDGETS[0]), None)
    result = {
        "benchmark": "contrast3d bench (built-in)", "smoke": args.smoke, "out": args.out,
        "threads_per_run": s["config"]["threads"], "parallel_runs": args.jobs,
        "train_scenes": len(s["data"].get("train", [])), "val_scenes": len(s["data"].get("val", [])),
        "frame_pairs": s["data"].get("frame_pairs"),
        "pretrain_steps": next((c["pretrain_steps"] for c in s["cost"] if c["pretrain_runs"]), None),
        "finetune_steps": s["finetune_steps"], "scratch_long_steps": s["long_steps"],
        "seeds": s["config"]["seeds"], "pretrain_seeds": s["config"]["pretrain_seeds"],
        "miou_percent": {lab: {b: {k: v[k] for k in ("mean", "std", "n")} for b, v in row.items()}
                         for lab, row in s["miou"].items()},
        "paired_gain": [{k: g[k] for k in ("method", "baseline", "budget", "mean", "low", "high", "n", "verdict")}
                        for g in s["gains"] + s["gains_vs_long"] + s["control"]],
        "probes": [{"method": p["method"], "linear_miou": p["linear_miou"]["mean"], "knn_miou": p["knn_miou"]["mean"],
                    "linear_gain": (p.get("linear_miou_gain") or {}).get("mean"),
                    "knn_gain": (p.get("knn_miou_gain") or {}).get("mean")} for p in s["probes"]],
        "target_smallest_budget_gain_ge_3_ci_excludes_0": (smallest is not None and smallest["mean"] is not None
                                                            and smallest["mean"] >= 3.0 and smallest["significant"]),
        "failed_runs": len(s["failed"]), "minutes": s["minutes"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
