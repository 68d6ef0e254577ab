"""``contrast3d finetune semseg --data DIR --init CKPT|scratch --out RUN``: supervised fine-tuning + evaluation.

Trains a SpUNet with a classification layer on ``DIR``'s training scenes (``DIR/train`` +
``DIR/val`` when both exist, else the sorted scene list with the last 20 % for validation),
optionally from a pre-trained ``backbone.safetensors``, under a label budget (``--labels 1%``,
``--labels 20pts``) or a published split file (``--labels scannetv2_train_1.txt``, ``--labels
data/scannet/tasks/points/points20``), then evaluates every point of the validation scenes and
writes ``RUN/results.json`` and ``RUN/results.txt`` (printed at the end). See
:mod:`contrast3d.evaluation.finetune` for the run folder and config layers.

Validation scenes that are also training scenes (a single scene, or one copied into both
``train/`` and ``val/``) are refused; ``--allow-overlap`` runs anyway as an overfitting check,
with a ``WARNING`` printed and written into ``results.json`` (``leak``, ``warning``) and
``results.txt``.

``contrast3d finetune insseg`` (PointGroup-style heads, ScanNet AP / AP50 / AP25) and ``contrast3d
finetune det`` (VoteNet-style head, mAP@0.25 / mAP@0.5) take the same flags and write the same run
folder plus their head weights; see :mod:`contrast3d.evaluation.finetune_tasks`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contrast3d.commands._args import label_budget, nonnegative_int, output_dir, positive_int, train_device
from contrast3d.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="supervised fine-tuning and evaluation of a (pre-trained) backbone",
                       description="Fine-tune a backbone on a labelled downstream task and evaluate it.")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    s = tasks.add_parser("semseg", help="semantic segmentation (mIoU / mAcc / allAcc on the validation scenes)",
                         description="Fine-tune SpUNet for semantic segmentation; writes config.yaml, metrics.jsonl, "
                                     "tb/, checkpoints/, scene_split.json, label_split.json, results.json and "
                                     "results.txt into --out.")
    _add_flags(s, "semseg_cpu_small")
    s.set_defaults(func=run_semseg)
    s = tasks.add_parser("insseg", help="instance segmentation, PointGroup-style (ScanNet AP / AP50 / AP25)",
                         description="Fine-tune SpUNet with PointGroup semantic + offset heads and evaluate ScanNet "
                                     "instance AP on every point of the validation scenes (needs instance.npy); "
                                     "writes the same run folder as semseg plus insseg_heads.safetensors.")
    _add_flags(s, "insseg_cpu_small")
    s.set_defaults(func=run_task, task="insseg")
    s = tasks.add_parser("det", help="3D object detection, VoteNet-style (mAP@0.25 / mAP@0.5)",
                         description="Fine-tune SpUNet with a VoteNet head on axis-aligned boxes of the instance "
                                     "labels (needs instance.npy) and evaluate VoteNet's mAP on the validation "
                                     "scenes; writes the same run folder as semseg plus det_head.safetensors.")
    _add_flags(s, "det_cpu_small")
    s.set_defaults(func=run_task, task="det")


def _add_flags(s: argparse.ArgumentParser, small: str) -> None:
    """The flags every fine-tuning task shares."""
    s.add_argument("--data", help="folder of Pointcept scene folders (with train/ and val/ or split 80/20)")
    s.add_argument("--init", help="'scratch', a backbone.safetensors exported by 'contrast3d pretrain', a training "
                                  "checkpoint or a Pointcept .pth")
    s.add_argument("--lenient", action="store_true",
                   help="load only the matching tensors of weights that partly fit (default: refuse a partial load)")
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--labels", type=label_budget,
                   help="label budget: all (default); 1%%, 5%% or tr1, tr5 (share of training scenes, seeded); "
                        "20pts, 200 or points20 (labelled points per scene, seeded); or a published split file: "
                        "a .txt of scene names (limited reconstructions) or a .pth/.pkl/.npz/.json mapping scene "
                        "names to labelled point indices (limited annotations; a file without suffix: give a "
                        "path, e.g. ./points20)")
    s.add_argument("--allow-overlap", action="store_true",
                   help="run even when validation scenes are also training scenes (e.g. one scene: an overfitting "
                        "check); the results are marked as leaked (= --set data.allow_overlap=true)")
    s.add_argument("--config", action="append", default=[], metavar="FILE",
                   help=f"YAML config over the presets, or a shipped preset name such as {small} (repeatable)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one value, e.g. --set optim.lr=0.05 (repeatable)")
    s.add_argument("--steps", type=positive_int, help="total optimizer steps (>= 1)")
    s.add_argument("--seed", type=int, help="seed of the label split, initialisation and augmentation")
    s.add_argument("--device", type=train_device, help="training device: auto (default), cpu or cuda")
    s.add_argument("--eval-every", type=nonnegative_int, metavar="K",
                   help="evaluate every K steps (logged as val/...; 0 = only at the end)")
    s.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.pt if present")
    s.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable or unlabelled scene (= --set data.strict=true; default: skip)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_new_run(args: argparse.Namespace) -> Path:
    out = output_dir(args.out)
    if args.strict:
        args.overrides = [*args.overrides, "data.strict=true"]
    if args.allow_overlap:
        args.overrides = [*args.overrides, "data.allow_overlap=true"]
    resumed = args.resume and (out / "config.yaml").is_file()
    if not resumed and not args.data:
        raise DataError(out, "--data is required for a new run")
    if not resumed and not args.init:
        raise DataError(out, "--init is required for a new run: a backbone.safetensors or 'scratch'")
    return out


def run_semseg(args: argparse.Namespace) -> int:
    from contrast3d.evaluation.finetune import finetune_semseg

    return _fit_and_report(args, finetune_semseg, ("mIoU", "mAcc", "allAcc"))


def _leak_tag(results: dict) -> str:
    """A tag for the headline (and the warning again, on stderr) when the results are leaked."""
    if not results.get("warning"):
        return ""
    print(f"WARNING: {results['warning']}", file=sys.stderr)
    return "  [LEAKED: validation scenes are training scenes, see results.json 'leak']"


def run_task(args: argparse.Namespace) -> int:
    """``finetune insseg`` / ``finetune det``: train, evaluate, print the table and the headline."""
    from contrast3d.evaluation.finetune_tasks import finetune_task

    keys = ("AP", "AP50", "AP25") if args.task == "insseg" else ("mAP@0.25", "mAP@0.5")
    return _fit_and_report(args, lambda *a, **kw: finetune_task(args.task, *a, **kw), keys)


def _fit_and_report(args: argparse.Namespace, fit, keys: tuple[str, ...]) -> int:
    """Run ``fit(data, init, out, labels, **flags)`` for a new or resumed run folder, print its
    results.txt and a one-line headline of ``keys`` (exit 3 on a non-finite loss)."""
    from contrast3d.engine.trainer import NonFiniteLossError

    out = _check_new_run(args)
    try:
        results = fit(args.data, args.init, out, args.labels, config_files=args.config, overrides=args.overrides,
                      steps=args.steps, seed=args.seed, device=args.device, eval_every=args.eval_every,
                      progress=False if args.no_progress else None, resume=args.resume, lenient=args.lenient)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print((out / "results.txt").read_text(), end="")
    head = "  ".join(f"{k} {100 * (results.get(k) or 0):.2f}" for k in keys)
    print(f"{head}  ({results['label_budget']} labels, init {results['init']}, {results['steps']} steps, "
          f"{results['minutes']:.1f} min); results: {out / 'results.json'}{_leak_tag(results)}")
    return 0
