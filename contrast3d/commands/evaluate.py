"""``contrast3d evaluate --model RUN [--data DIR] [--split val|train|all] [--out DIR]``: re-evaluate a
fine-tuned semantic-segmentation run.

Loads RUN's fine-tuned network with its classification head (``RUN/model.safetensors``, written by
``contrast3d finetune semseg``) and scores every point of the scenes through the evaluation that
fine-tuning ran at its end (:mod:`contrast3d.evaluation.tester`): by default RUN's own validation
scenes (``RUN/scene_split.json``) when ``--data`` is RUN's data (or absent), else every scene of
``--data``. Writes ``results.json`` (mIoU, mAcc, allAcc, per-class IoU by name), ``results.txt``,
``confusion.csv`` and, when matplotlib is importable (and no ``--no-png``), ``confusion.png`` and
``class_iou.png`` into ``--out`` (default ``RUN/eval``); ``--save-pred`` adds ``<scene>_pred.npy`` per scene.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from contrast3d.commands._args import output_dir, run_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="re-evaluate a fine-tuned semseg run (mIoU, confusion matrix, plots)",
                       description="Evaluate the fine-tuned model of a 'contrast3d finetune semseg' run on every point "
                                   "of labelled scenes, exactly as fine-tuning's final evaluation; writes "
                                   "results.json, results.txt, confusion.csv (+ confusion.png, class_iou.png with "
                                   "matplotlib) into --out.")
    p.add_argument("--model", required=True, metavar="RUN",
                   help="run folder of 'contrast3d finetune semseg' (with model.safetensors, config.yaml)")
    p.add_argument("--data", help="folder of labelled Pointcept scenes (default: the run's data)")
    p.add_argument("--split", choices=["val", "train", "all"],
                   help="which scenes: val/train of the run's scene_split.json on its own data (of the data's own "
                        "split otherwise) or all; default: val on the run's data, all on other data")
    p.add_argument("--out", help="output folder (default RUN/eval)")
    p.add_argument("--device", type=run_device, default="auto", help="torch device: auto (default), cpu, cuda[:N]")
    p.add_argument("--save-pred", action="store_true", help="also write <scene>_pred.npy (int64 class per point)")
    p.add_argument("--no-png", action="store_true", help="skip confusion.png and class_iou.png")
    p.set_defaults(func=run)


def save_pngs(out: Path, results: dict, confusion, class_names: list[str]) -> tuple[list[Path], str]:
    """``confusion.png`` and ``class_iou.png``, and why not (``""`` when written): nothing is plotted
    when matplotlib (or the plotting module) cannot be imported."""
    import numpy as np

    try:
        from contrast3d.viz.predictions import save_class_iou_png, save_confusion_png
    except ImportError as err:
        return [], f"no PNGs: {err}"
    title = f"{Path(results['run']).name}: mIoU {100 * (results['mIoU'] or 0):.2f} ({results['num_scenes']} scene(s))"
    iou = np.array([np.nan if x is None else x for x in results["iou"]], np.float64)
    return [save_confusion_png(confusion, class_names, out / "confusion.png", title=title),
            save_class_iou_png(iou, class_names, out / "class_iou.png", title=title)], ""


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from contrast3d.evaluation import tester

    model = tester.load_finetuned(args.model, args.device)
    out = output_dir(args.out if args.out else model.run_dir / "eval")
    selection = tester.select_scenes(model, args.data, args.split)

    def save(cloud, pred) -> None:
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / f"{cloud.name}_pred.npy", pred)

    ev = tester.evaluate_run(model, selection.scenes, on_prediction=save if args.save_pred else None)
    results = tester.evaluation_results(model, ev, selection)
    names = model.class_names
    tester.write_evaluation(out, results, ev, names)
    why = "" if args.no_png else save_pngs(out, results, ev.confusion, names)[1]
    print((out / "results.txt").read_text(), end="")
    reported = results.get("run_mIoU")
    same = f" (run reported {100 * reported:.2f})" if isinstance(reported, (int, float)) else ""
    print(f"mIoU {100 * (results['mIoU'] or 0):.2f}{same}  mAcc {100 * (results['mAcc'] or 0):.2f}  "
          f"allAcc {100 * (results['allAcc'] or 0):.2f}  on {results['num_scenes']} scene(s), "
          f"{selection.source}; results: {out / 'results.json'}" + (f" ({why})" if why else ""))
    return 0
