"""``contrast3d quickstart``: the whole loop on built-in synthetic scenes (see :mod:`contrast3d.quickstart`)."""
from __future__ import annotations

import argparse
import dataclasses


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="simulate scenes, pre-train PointContrast, fine-tune scratch vs "
                                          "pre-trained under a small label budget, print a table",
                       description="The built-in demo (about 10 minutes on 2 CPU cores; --fast: about 2).")
    p.add_argument("--out", default="runs/quickstart", help="run folder (default runs/quickstart)")
    p.add_argument("--fast", action="store_true", help="smoke version: fewer scenes and steps")
    p.add_argument("--scenes", type=int, help="simulated scenes")
    p.add_argument("--pretrain-steps", type=int)
    p.add_argument("--finetune-steps", type=int)
    p.add_argument("--labels", help="fine-tuning label budget, e.g. 50pts or 20%%")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from contrast3d.quickstart import FAST, QuickstartConfig, format_table, run_quickstart

    cfg = FAST if args.fast else QuickstartConfig()
    changes = {k: v for k, v in {"scenes": args.scenes, "pretrain_steps": args.pretrain_steps,
                                 "finetune_steps": args.finetune_steps, "labels": args.labels,
                                 "seed": args.seed, "workers": args.workers}.items() if v is not None}
    cfg = dataclasses.replace(cfg, **changes)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    result = run_quickstart(args.out, cfg)
    print()
    print(format_table(result["table"]))
    m = result["minutes"]
    print(f"\ntotal {m['total']:.1f} min (simulate {m['simulate']:.1f}, prepare {m['prepare']:.1f}, "
          f"pre-train {m['pretrain']:.1f}); {result['pairs']} view pairs")
    print(f"run folder: {args.out}  (quickstart.json, curves_*.png, similarity_map.png)")
    return 0
