"""``contrast3d probe --init CKPT --data DIR``: linear / kNN probe mIoU of a frozen backbone."""
from __future__ import annotations

import argparse
import json

from contrast3d.commands._args import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear and kNN probe mIoU + collapse statistics of a frozen backbone")
    p.add_argument("--init", required=True, help="backbone .safetensors (with its .json record), a training "
                                                 "checkpoint or a Pointcept .pth")
    p.add_argument("--lenient", action="store_true", help="load only the matching tensors of a partial state dict")
    p.add_argument("--data", required=True, help="labelled Pointcept scenes (train/ + val/ or a seeded split)")
    p.add_argument("--num-classes", type=positive_int, default=20,
                   help="semantic classes; every label must be below it (default 20)")
    p.add_argument("--max-scenes", type=positive_int, default=8, help="scenes per split used by the probes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contrast3d.evaluation.probe_data import probe_backbone

    result = probe_backbone(args.init, args.data, args.num_classes, args.max_scenes, seed=args.seed,
                            lenient=args.lenient)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    return 0
