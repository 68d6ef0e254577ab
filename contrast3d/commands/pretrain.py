"""``contrast3d pretrain METHOD --data DIR --out RUN``: self-supervised pre-training.

Works under ``torchrun --nproc_per_node=N -m contrast3d pretrain ...`` (DDP; gloo on CPU).
The config is resolved from the presets (``configs/pretrain/base.yaml`` and
``configs/pretrain/<METHOD>.yaml``), ``--config`` files or shipped preset names, flags and
``--set`` overrides (:func:`contrast3d.engine.config.load_train_config`); with ``--resume`` the run
folder's own ``config.yaml`` is the starting point, so only what is given again changes.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from contrast3d.commands._args import output_dir, positive_int, train_device
from contrast3d.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pre-training of a backbone with one method",
                       description="Pre-train a backbone with METHOD; writes config.yaml, metrics.jsonl, tb/, "
                                   "checkpoints/, backbone.safetensors + backbone.json (and backbone.pth for "
                                   "Pointcept), run_info.json and train.log into --out. Without --config the "
                                   "method's paper-scale preset is used (SpUNet-34, tens of thousands of steps: "
                                   "meant for GPUs); on a CPU add --config METHOD_cpu_small (--list shows them).")
    p.add_argument("method", metavar="METHOD", nargs="?", help="pre-training method (see --list)")
    p.add_argument("--list", action="store_true", help="list the methods and shipped presets, then exit")
    p.add_argument("--data", help="dataset folder")
    p.add_argument("--out", help="run folder")
    p.add_argument("--config", action="append", default=[], metavar="FILE|PRESET",
                   help="YAML config applied over the presets, or a shipped preset name such as "
                        "pointcontrast_cpu_small (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one value, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.pt if present")
    p.add_argument("--steps", type=positive_int, help="total optimizer steps (>= 1)")
    p.add_argument("--device", type=train_device, help="training device: auto (default), cpu or cuda")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable scene or sample (= --set data.strict=true; default: skip "
                        "and list them in RUN/skipped_samples.json)")
    p.add_argument("--no-progress", action="store_true",
                   help="no console progress (bar on a terminal, plain lines otherwise); RUN/train.log keeps them")
    p.add_argument("--probe-data", metavar="DIR",
                   help="labelled Pointcept scenes: log linear/kNN probe mIoU and collapse statistics")
    p.add_argument("--probe-every", type=positive_int, default=500, metavar="K",
                   help="probe every K steps (default 500)")
    p.set_defaults(func=run)


def method_spec(name: str):
    """The :class:`~contrast3d.methods.base.MethodSpec` of ``name``; :class:`DataError` with a hint otherwise."""
    from contrast3d.methods import METHODS

    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(METHODS) or "none registered"
        raise DataError(name, f"unknown pre-training method; known: {known}{hint}")
    return METHODS[name]


def list_methods() -> str:
    """The methods and the shipped pre-training presets (with their headline settings)."""
    from contrast3d.commands.info import catalog_lines

    return "\n".join(catalog_lines(("pretrain",)))


def resolve_config(method: str, out: Path, args: argparse.Namespace, *, resume: bool = False):
    """The run's :class:`~contrast3d.engine.config.TrainConfig` from presets, files, flags, overrides."""
    from contrast3d.methods import method_config

    spec = method_spec(method)
    saved = out / "config.yaml"
    resumed_cfg = resume and saved.is_file()
    if resumed_cfg:
        from contrast3d.config import load_yaml

        started = load_yaml(saved).get("method_name")
        if started and started != method:
            raise DataError(out, f"the run was started with method '{started}', not '{method}'; resume it as "
                                 f"'contrast3d pretrain {started} --resume' or choose another --out")
    flags = {k: v for k, v in {"data_root": args.data, "steps": args.steps, "device": args.device}.items()
             if v is not None}
    if getattr(args, "no_progress", False):
        flags["progress"] = False
    files = ([saved] if resumed_cfg else []) + list(args.config)
    return spec, method_config(method, files=files, flags=flags, overrides=args.overrides, presets=not resumed_cfg)


def run(args: argparse.Namespace) -> int:
    from contrast3d.engine.run import train
    from contrast3d.engine.trainer import NonFiniteLossError

    if args.list:
        print(list_methods())
        return 0
    if not args.method:
        raise DataError("pretrain", "METHOD is required (contrast3d pretrain --list shows them)")
    if not args.out:
        raise DataError("pretrain", "--out RUN is required")
    out = output_dir(args.out)
    if not (args.resume and (out / "config.yaml").is_file()) and not args.data:
        raise DataError(out, "--data is required for a new run")
    if args.strict:
        args.overrides = [*args.overrides, "data.strict=true"]
    spec, cfg = resolve_config(args.method, out, args, resume=args.resume)
    callbacks = []
    if args.probe_data:
        from contrast3d.evaluation.probe_data import pretrain_probe_hook

        callbacks.append(pretrain_probe_hook(args.probe_data, args.probe_every, progress=cfg.progress))
    try:
        result = train(cfg, spec, out, resume=args.resume, callbacks=callbacks)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if result.backbone_path is not None:
        print(f"pre-trained {args.method} for {result.step} steps; backbone: {result.backbone_path}")
    return 0
