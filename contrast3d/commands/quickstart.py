"""``contrast3d quickstart``: what pre-training buys, on built-in synthetic scenes (:mod:`contrast3d.quickstart`)."""
from __future__ import annotations

import argparse
import dataclasses

from contrast3d.commands._args import label_budget, output_dir, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="simulate scenes, pre-train PointContrast, probe frozen features and "
                                          "fine-tune scratch vs pre-trained, print a table with its uncertainty",
                       description="The built-in demo (about 10 minutes on 2 CPU cores; --fast: about 1). For "
                                   "seeds, paired confidence intervals and a longer-training control use "
                                   "'contrast3d bench'.")
    p.add_argument("--out", default="runs/quickstart", help="run folder (default runs/quickstart)")
    p.add_argument("--fast", action="store_true", help="smoke version: fewer scenes and steps")
    p.add_argument("--scenes", type=int, help="simulated scenes in total (a third of them, at least 1, validate)")
    p.add_argument("--pretrain-steps", type=positive_int)
    p.add_argument("--finetune-steps", type=positive_int)
    p.add_argument("--probe-seeds", type=positive_int, help="probe repetitions per backbone (default 3)")
    p.add_argument("--labels", type=label_budget, help="fine-tuning label budget, e.g. 50pts or 20%%")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=positive_int)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from contrast3d.errors import DataError
    from contrast3d.quickstart import FAST, QuickstartConfig, format_table, run_quickstart, verdict
    from contrast3d.threads import limit_threads

    output_dir(args.out)
    cfg = FAST if args.fast else QuickstartConfig()
    changes = {k: v for k, v in {"pretrain_steps": args.pretrain_steps, "finetune_steps": args.finetune_steps,
                                 "probe_seeds": args.probe_seeds, "labels": args.labels, "seed": args.seed,
                                 "workers": args.workers}.items() if v is not None}
    if args.scenes is not None:
        if args.scenes < 2:
            raise DataError("--scenes", "needs at least 2 scenes (training and validation)")
        val = max(1, round(args.scenes / 3))
        changes.update(train_scenes=args.scenes - val, val_scenes=val)
    cfg = dataclasses.replace(cfg, **changes)
    limit_threads(max(1, min(torch.get_num_threads(), 2)))
    result = run_quickstart(args.out, cfg)
    print()
    print(format_table(result))
    print()
    print(verdict(result))
    m = result["minutes"]
    print(f"\ntotal {m['total']:.1f} min (data {m['data']:.1f}, pre-train {m['pretrain']:.1f}, probes "
          f"{m['probes']:.1f}); {result['pairs']} view pairs")
    print(f"run folder: {args.out}  (quickstart.json, curves_*.png, similarity_map.png)")
    return 0
