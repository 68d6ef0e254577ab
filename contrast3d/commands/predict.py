"""``contrast3d predict --model RUN --data DIR_OR_SCENE --out DIR``: per-point predictions of a fine-tuned
semantic-segmentation run.

Loads RUN's fine-tuned network with its head (``RUN/model.safetensors``) and predicts the class of
every point of each scene (a Pointcept scene folder, a folder of them, or any file / folder
``contrast3d info`` reads), voting over the run's evaluation fragments as fine-tuning's evaluation
does (:mod:`contrast3d.evaluation.tester`). Labels are not needed. Per scene it writes
``<scene>_pred.npy`` (int64 class id per input point, in the input's order), ``<scene>_pred.ply``
(xyz coloured by class, ScanNet palette, with ``pred`` / ``gt`` scalar fields) and, for labelled
scenes when matplotlib is importable, ``<scene>_pred_vs_gt.png``.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from contrast3d.commands._args import output_dir, run_device
from contrast3d.errors import DataError

#: PLY colour (uint8 RGB) of points whose class is ``-1`` (unlabelled).
IGNORE_RGB = (60, 60, 60)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="per-point class predictions of a fine-tuned semseg run (.npy, .ply, .png)",
                       description="Predict the semantic class of every point of one or more scenes with the "
                                   "fine-tuned model of a 'contrast3d finetune semseg' run; writes <scene>_pred.npy, "
                                   "<scene>_pred.ply and, for labelled scenes with matplotlib, "
                                   "<scene>_pred_vs_gt.png into --out.")
    p.add_argument("--model", required=True, metavar="RUN",
                   help="run folder of 'contrast3d finetune semseg' (with model.safetensors, config.yaml)")
    p.add_argument("--data", required=True, metavar="DIR_OR_SCENE",
                   help="a scene (Pointcept folder, .ply, ...) or a folder of Pointcept scene folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", type=run_device, default="auto", help="torch device: auto (default), cpu, cuda[:N]")
    p.add_argument("--no-png", action="store_true", help="skip the prediction-vs-ground-truth PNGs")
    p.set_defaults(func=run)


def class_colors(ids: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 colour of each class id: the ScanNet-20 benchmark palette for ids 0..19, a
    golden-ratio hue walk beyond, grey for ``-1``."""
    import colorsys

    from contrast3d.simulate.classes import CLASS_COLORS

    ids = np.asarray(ids, np.int64)
    top = max(int(ids.max(initial=-1)) + 1, len(CLASS_COLORS))
    more = [tuple(round(255 * c) for c in colorsys.hsv_to_rgb((0.618034 * k) % 1.0, 0.65, 0.9))
            for k in range(len(CLASS_COLORS), top)]
    table = np.array([*CLASS_COLORS, *more, IGNORE_RGB], np.uint8)
    return table[np.where(ids < 0, len(table) - 1, ids)]


def _png(cloud, pred: np.ndarray, class_names: list[str], path: Path, title: str) -> tuple[Path | None, str]:
    """The prediction-vs-ground-truth PNG, or ``None`` and why (matplotlib or the plotting module missing)."""
    try:
        from contrast3d.viz.predictions import save_prediction_png
    except ImportError as err:
        return None, f"no PNGs: {err}"
    return save_prediction_png(cloud.coord, pred, cloud.segment, class_names, path, title=title), ""


def run(args: argparse.Namespace) -> int:
    from contrast3d.evaluation import tester
    from contrast3d.evaluation.metrics import confusion_matrix, segmentation_scores

    out = output_dir(args.out)
    model = tester.load_finetuned(args.model, args.device)
    inputs = tester.find_inputs(args.data)
    names = model.class_names
    seen: dict[str, str] = {}
    pngs, why = 0, ""
    for cloud, pred in tester.predict_inputs(model, inputs):
        source = str(cloud.meta.get("path", cloud.name))
        if cloud.name in seen:
            raise DataError(source, f"scene name '{cloud.name}' repeats {seen[cloud.name]}; its outputs would "
                                    f"overwrite each other (predict one folder at a time)")
        seen[cloud.name] = source
        tester.write_prediction(out, cloud, pred, class_colors(pred))
        line = f"{cloud.name}: {len(pred)} points"
        labelled = tester.labels_fit(cloud, model.num_classes)
        if cloud.segment is not None and not labelled:
            warnings.warn(f"{source}: labels outside [0, {model.num_classes}) besides -1: not compared with the "
                          f"predictions", stacklevel=1)
        if labelled and cloud.segment is not None:
            scores = segmentation_scores(confusion_matrix(pred, cloud.segment, model.num_classes), names)
            line += f", mIoU {100 * scores.miou:.2f}, allAcc {100 * scores.all_acc:.2f} (this scene)"
            if not args.no_png:
                title = f"{cloud.name}: prediction vs ground truth"
                png, why = _png(cloud, pred, names, out / f"{cloud.name}_pred_vs_gt.png", title)
                pngs += png is not None
        print(line, flush=True)
    print(f"{len(seen)} scene(s) predicted into {out}" + (f" ({pngs} PNG(s))" if pngs else f" ({why})" if why else ""))
    return 0
