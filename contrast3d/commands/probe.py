"""``contrast3d probe --init CKPT|scratch --data DIR [--out DIR]``: linear / kNN probe mIoU of a frozen backbone.

The backbone is frozen; its features of the labelled scenes (one seeded point per voxel, at most
``--max-scenes`` scenes of the training and of the validation split) train a linear classifier and
a kNN classifier on the training scenes, scored (mIoU) on the validation scenes, plus statistics
that reveal collapsed features. ``--init scratch`` probes a randomly initialised backbone instead
(seeded by ``--seed``; the architecture, input features and voxel size of ``--like WEIGHTS``, by
default those of the ``semseg_cpu_small`` fine-tuning preset): the baseline a pre-trained
backbone's probe scores are compared with. ``--out DIR`` writes ``DIR/results.json`` (and, for
``scratch``, the random backbone ``DIR/random_init.safetensors``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from contrast3d.commands._args import output_dir, plain_text, positive_float, positive_int

#: The fine-tuning preset whose backbone ``--init scratch`` builds when no ``--like`` is given.
SCRATCH_PRESET = "semseg_cpu_small"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear and kNN probe mIoU + collapse statistics of a frozen backbone",
                       description=plain_text(__doc__.split("\n\n", 1)[1].strip()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="backbone .safetensors (with its .json record), a training "
                                                 "checkpoint, a Pointcept .pth, or 'scratch' (random weights)")
    p.add_argument("--like", help="with --init scratch: weights whose architecture, input features and voxel size "
                                  f"the random backbone copies (default: the {SCRATCH_PRESET} preset's)")
    p.add_argument("--lenient", action="store_true", help="load only the matching tensors of a partial state dict")
    p.add_argument("--data", required=True, help="labelled Pointcept scenes (train/ + val/ or a seeded split)")
    p.add_argument("--num-classes", type=positive_int, default=20,
                   help="semantic classes; every label must be below it (default 20)")
    p.add_argument("--max-scenes", type=positive_int, default=8,
                   help="scenes per split used by the probes (default 8)")
    p.add_argument("--grid-size", type=positive_float,
                   help="voxel size in metres (default: the weights' record)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the voxel sampling, the classifiers and the scratch weights (default 0)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="score even when validation scenes are also training scenes (a leak: the result says so)")
    p.add_argument("--out", help="folder to write results.json to (created if needed)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def scratch_backbone(path: Path, seed: int, like: str | None = None) -> Path:
    """A randomly initialised 3D SpUNet (weights seeded by ``seed``) exported to ``path`` with its record.

    Architecture, ``feat_keys`` and ``grid_size``: those of the weights ``like`` (any file
    :func:`~contrast3d.models.pretrained.load_pretrained` reads), else those of the
    :data:`SCRATCH_PRESET` fine-tuning preset. The seed is derived as the bench's scratch probe does
    (``derive_seed(seed, 0)``), so ``--seed P`` gives the weights of the bench's pre-training seed P.
    """
    import torch

    from contrast3d.engine.rng import derive_seed
    from contrast3d.errors import DataError
    from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
    from contrast3d.models.pretrained import PretrainedRecord, build_from_record, read_weights, save_pretrained

    torch.manual_seed(derive_seed(seed, 0))
    if like is not None:
        _, record = read_weights(like)
        if record.kind != "spunet" or record.ndim != 3:
            raise DataError(like, f"--like needs a 3D SpUNet backbone, this is a {record.ndim}D {record.kind}")
        net = build_from_record(record)
        fields: dict[str, Any] = {k: getattr(record, k) for k in ("kind", "preset", "ndim", "base_channels",
                                                                  "channels", "layers", "in_channels",
                                                                  "num_classes", "out_channels", "feat_keys",
                                                                  "grid_size")}
        new = PretrainedRecord(**fields, method="random-init")
    else:
        from contrast3d.evaluation.finetune import load_finetune_config

        cfg = load_finetune_config(files=[SCRATCH_PRESET])
        net = build_backbone(BackboneConfig(preset=cfg.model.preset, in_channels=cfg.model.in_channels,
                                            backend="torch"))
        new = PretrainedRecord(**spunet_record(net, cfg.model.preset, list(cfg.data.feat_keys), cfg.data.grid_size),
                               method="random-init")
    return save_pretrained(net, path, new)


def run(args: argparse.Namespace) -> int:
    from contrast3d.errors import DataError
    from contrast3d.evaluation.probe_data import probe_backbone

    scratch = args.init == "scratch"
    if args.like and not scratch:
        raise DataError("--like", "only applies to --init scratch")
    out = output_dir(args.out) if args.out else None
    with tempfile.TemporaryDirectory(prefix="contrast3d-probe-") as tmp:
        init: str | Path = args.init
        if scratch:
            folder = out if out is not None else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            init = scratch_backbone(folder / "random_init.safetensors", args.seed, args.like)
        result = probe_backbone(init, args.data, args.num_classes, args.max_scenes, grid_size=args.grid_size,
                                seed=args.seed, lenient=args.lenient, allow_overlap=args.allow_overlap,
                                progress=not args.json)
    result = {**result, "init": args.init}
    if scratch:
        result["scratch_like"] = args.like or SCRATCH_PRESET
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        settings = {"data": str(args.data), "num_classes": args.num_classes, "max_scenes": args.max_scenes,
                    "grid_size": args.grid_size, "seed": args.seed, "lenient": args.lenient}
        (out / "results.json").write_text(json.dumps({**result, "settings": settings}, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
        if out is not None:
            print(f"wrote {out / 'results.json'}")
    return 0
