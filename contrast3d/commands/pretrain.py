"""``contrast3d pretrain METHOD --data DIR --out RUN``: self-supervised pre-training.

Works under ``torchrun --nproc_per_node=N -m contrast3d pretrain ...`` (DDP; gloo on CPU).
The config is resolved from the presets, ``--config`` files, flags and ``--set`` overrides
(:func:`contrast3d.config.load_train_config`); with ``--resume`` the run folder's own
``config.yaml`` is the starting point, so only what is given again on the command line changes.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from contrast3d.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pre-training of a backbone with one method",
                       description="Pre-train a backbone with METHOD; writes config.yaml, metrics.jsonl, tb/, "
                                   "checkpoints/ and backbone.safetensors into --out.")
    p.add_argument("method", metavar="METHOD", help="pre-training method (see --list)")
    p.add_argument("--data", help="dataset folder")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="YAML config applied over the presets (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one value, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.pt if present")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="training device (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--probe-data", metavar="DIR",
                   help="labelled Pointcept scenes: log linear/kNN probe mIoU and collapse statistics")
    p.add_argument("--probe-every", type=int, default=500, metavar="K", help="probe every K steps (default 500)")
    p.set_defaults(func=run)


def _spec(name: str):
    from contrast3d.methods import METHODS

    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(METHODS) or "none registered"
        raise DataError(name, f"unknown pre-training method; known: {known}{hint}")
    return METHODS[name]


def run(args: argparse.Namespace) -> int:
    from contrast3d.config import load_train_config
    from contrast3d.engine.run import pretrain
    from contrast3d.engine.trainer import NonFiniteLossError

    spec = _spec(args.method)
    out = Path(args.out)
    saved = out / "config.yaml"
    resumed_cfg = args.resume and saved.is_file()
    flags = {k: v for k, v in {"data_root": args.data, "steps": args.steps, "device": args.device}.items()
             if v is not None}
    if args.no_progress:
        flags["progress"] = False
    if not resumed_cfg and not args.data:
        raise DataError(out, "--data is required for a new run")
    cfg = load_train_config(args.method, spec, files=([saved] if resumed_cfg else []) + args.config,
                            flags=flags, overrides=args.overrides, presets=not resumed_cfg)
    callbacks = []
    if args.probe_data:
        from contrast3d.evaluation.probe_data import pretrain_probe_hook

        data = cfg.data
        callbacks.append(pretrain_probe_hook(args.probe_data, args.probe_every, getattr(data, "grid_size", 0.05),
                                             getattr(data, "feat_keys", ["color", "normal"])))
    try:
        result = pretrain(cfg, spec, out, resume=args.resume, callbacks=callbacks)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if result.backbone_path is not None:
        print(f"pre-trained {args.method} for {result.step} steps; backbone: {result.backbone_path}")
    return 0
