"""``contrast3d bench``: pre-train, probe and fine-tune every method under every label budget and
seed, and report what each method buys over scratch (paired by seed, 95 % CI) and at what cost;
``--variant`` adds method variants (one setting switched) with their paired gain over the base method.
See :mod:`contrast3d.bench` and :mod:`contrast3d.bench.variants`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """Pre-train every method (per pre-training seed), probe its frozen features (linear and kNN), fine-tune
it under every label budget and fine-tuning seed, and compare it with scratch paired by seed (same label split,
data order and augmentation): mean gain and 95 % t confidence interval over seeds, a scratch run with 2.5x the
fine-tuning steps as a control, and the cost (minutes, steps, peak RSS).

Pre-training config: the method's shipped preset <method>_cpu_small when there is one, else its smoke settings
scaled up to 5 cm voxels; fine-tuning: the semseg_cpu_small preset with the backbone's preset, input features and
voxel size. --smoke: 2 + 1 tiny scenes, 6 steps per run, one seed unless --seeds is given.

--tasks semseg,insseg,det adds instance segmentation (AP50; insseg_cpu_small) and detection (mAP@0.25;
det_cpu_small) fine-tuning of the same backbones with the same label splits, seeds and steps, each with its
own report section, paired gains and figures. Every budget applies to every task; for insseg/det a points
budget limits the class labels only (instance masks and box geometry stay complete), as the report states.

--variant NAME=METHOD:KEY=VALUE[;KEY=VALUE...] (repeatable) measures one setting: a method row NAME, METHOD
pre-trained with the --set-style overrides layered last (its own runs and digest; METHOD's runs unchanged),
probed and fine-tuned like any method; the report's Variants table gives its gain over METHOD paired by
(pre-training seed, fine-tuning seed) with a 95 % CI. NAME=METHOD:@PRESET layers a shipped preset (e.g.
pointcontrast_official) over METHOD's cpu_small one, keeping the bench's pre-training steps; items mix, e.g.
pc-official=pointcontrast:@pointcontrast_official;model.preset=spunet-tiny. METHOD is added to --methods."""

LAYOUT = """data layout (--data DIR; 'builtin' builds the simulated benchmark in OUT/data):
  DIR/scenes/train/<scene>/  labelled Pointcept scenes (coord, color, normal, segment20, superpoint .npy;
                             instance.npy too for --tasks insseg/det; the built-in data has it)
  DIR/scenes/val/<scene>/    validation scenes: fine-tuning and probe scores; never pre-trained on
  DIR/pairs/<scene>/         'contrast3d prepare rgbd' output of the training scenes (data_kind: pairs)
  DIR/frames/<scene>/        raw RGB-D frame folders of the training scenes (data_kind: frames)
Methods with data_kind 'scenes' pre-train on DIR/scenes/train. Only the folders the chosen methods
need must exist.

writes into OUT: report.md, report.html (self-contained), results.json, fig_*.png, and one folder
per run (pretrain/, probe/, finetune/, splits/). Re-running reuses finished runs whose full config
digest matches; --resume continues runs that were killed."""


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="pre-train, probe and fine-tune methods; paired gains over scratch with 95%% "
                                     "CI, cost, report.md/.html",
                       description=DESCRIPTION, epilog=LAYOUT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", type=_names, default=["scratch", "pointcontrast"],
                   help="comma-separated: scratch and 'contrast3d pretrain --list' names "
                        "(default scratch,pointcontrast)")
    p.add_argument("--labels", type=_names, default=["20pts", "200pts"],
                   help="label budgets: 20pts, 200pts (points per scene), 1%%, 10%% (share of scenes), "
                        "20pts:kmeans ... (default 20pts,200pts)")
    p.add_argument("--tasks", type=_names, default=["semseg"],
                   help="downstream tasks, comma-separated: semseg, insseg, det (default semseg; semseg is "
                        "always run; scenes need instance.npy for insseg/det)")
    p.add_argument("--seeds", type=_ints, help="fine-tuning seeds (default 0,1,2; with --smoke 0)")
    p.add_argument("--pretrain-seeds", type=_ints, default=[0], help="pre-training seeds (default 0)")
    p.add_argument("--data", default="builtin", help="benchmark data folder (layout below) or 'builtin'")
    p.add_argument("--out", required=True, help="bench folder")
    p.add_argument("--smoke", action="store_true", help="tiny built-in data and a few steps (minutes on 2 cores)")
    p.add_argument("--resume", action="store_true", help="continue unfinished runs from their checkpoints")
    p.add_argument("--pretrain-steps", type=int, help="pre-training steps (default: the method preset's)")
    p.add_argument("--finetune-steps", type=int, help="fine-tuning steps (default: semseg_cpu_small's)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one process each (default 2)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores // jobs)")
    p.add_argument("--label-selection", choices=["random", "kmeans"], default="random",
                   help="how points budgets pick their labelled points (default random; kmeans: CSC's "
                        "one point per k-means cluster)")
    p.add_argument("--variant", dest="variants", action="append", default=[], metavar="NAME=METHOD:SETTINGS",
                   help="a method variant to measure against its method, repeatable: SETTINGS is "
                        "KEY=VALUE[;KEY=VALUE...] (as --set, e.g. pc-nohead=pointcontrast:method.head_dim=0) "
                        "and/or @PRESET (a pre-training preset over METHOD's cpu_small one); quote it in a "
                        "shell")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contrast3d.bench.runner import BenchConfig, run_bench

    if args.smoke and args.data not in ("builtin", ""):
        print("note: --smoke uses the tiny built-in data; --data is ignored", file=sys.stderr)
    seeds = args.seeds if args.seeds is not None else ([0] if args.smoke else [0, 1, 2])
    cfg = BenchConfig(methods=args.methods, labels=args.labels, tasks=args.tasks, seeds=seeds,
                      pretrain_seeds=args.pretrain_seeds,
                      data="builtin" if args.smoke else args.data, out=args.out, smoke=args.smoke,
                      resume=args.resume, pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps,
                      jobs=args.jobs, threads=args.threads, label_selection=args.label_selection, quiet=args.quiet,
                      variants=args.variants)
    summary = run_bench(cfg)
    print((Path(args.out) / "report.md").read_text())
    return 1 if summary["failed"] else 0
