"""Re-evaluate and apply a fine-tuned semantic-segmentation run (``contrast3d evaluate`` / ``predict``),
like Pointcept's tester.

A finished ``contrast3d finetune semseg`` run folder holds ``config.yaml``, ``scene_split.json`` and
the fine-tuned network with its classification layer, ``model.safetensors`` + ``model.json`` (the
``model`` export of :class:`~contrast3d.evaluation.semseg_model.SemsegModel`). :func:`load_finetuned`
rebuilds that network as fine-tuning built it (the run's ``model`` section) and loads the weights
strictly; a run without that export (a pre-training run, an older fine-tuning run) is a
:class:`DataError` naming ``model.safetensors``.

:func:`evaluate_run` scores scenes through the function fine-tuning's final evaluation calls,
:func:`~contrast3d.evaluation.semseg.evaluate_semseg` (every original point, the run's voxel size,
input features and ``method.eval_fragments``), so the run's validation scenes give back the mIoU of
its ``results.json``; it also collects the summed ``[target, pred]`` confusion matrix.
:func:`predict_inputs` yields every input point's class (original point order) through
:func:`~contrast3d.evaluation.semseg.predict_scene`, with or without labels.

Which scenes :func:`select_scenes` evaluates: ``split="val"`` / ``"train"`` on the run's own data are
the scenes recorded in ``RUN/scene_split.json``; on other data, that data's own split
(:func:`~contrast3d.evaluation.semseg_data.resolve_scene_split`); ``"all"`` is every scene folder.
Without a split: the run's validation scenes on its own data, else every scene of the data.

Files (:func:`write_evaluation`, :func:`write_prediction`)::

    OUT/results.json results.txt confusion.csv          (evaluate)
    OUT/<scene>_pred.npy <scene>_pred.ply               (predict: (N,) int64 classes; xyz + class colour)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contrast3d.data.scene_dataset import SceneDataset, find_scene_dirs
from contrast3d.engine.config import TrainConfig
from contrast3d.errors import DataError
from contrast3d.evaluation.finetune import load_finetune_config
from contrast3d.evaluation.metrics import SegmentationScores, confusion_matrix
from contrast3d.evaluation.semseg import default_class_names, evaluate_semseg, predict_scene, raw_scenes
from contrast3d.evaluation.semseg_data import resolve_scene_split
from contrast3d.evaluation.semseg_model import MODEL_EXPORT, MODEL_TASK, SemsegModel
from contrast3d.models.pretrained import MAX_ABS_WEIGHT, PretrainedRecord, check_keys, diverged_tensors, read_weights
from contrast3d.structures import PointCloud

SPLITS = ("val", "train", "all")


# ----------------------------------------------------------------------------- the model
@dataclass
class FinetunedRun:
    """A fine-tuned run's network (``eval()`` mode, on ``device``), its record and resolved config."""

    run_dir: Path
    weights: Path
    cfg: TrainConfig
    record: PretrainedRecord
    net: nn.Module
    device: torch.device

    @property
    def num_classes(self) -> int:
        return int(self.cfg.model.num_classes)

    @property
    def class_names(self) -> list[str]:
        """The configured names, else the record's, else the defaults (ScanNet-20 / ``class<i>``)."""
        names = self.cfg.data.class_names or self.record.extra.get("class_names") or None
        try:
            return default_class_names(self.num_classes, names)
        except ValueError:
            return default_class_names(self.num_classes)

    def eval_kwargs(self) -> dict[str, Any]:
        """The keyword arguments fine-tuning passes to ``evaluate_semseg`` for its final evaluation."""
        return {"num_classes": self.num_classes, "grid_size": self.cfg.data.grid_size,
                "feat_keys": self.cfg.data.feat_keys, "class_names": self.cfg.data.class_names,
                "max_fragments": self.cfg.method.eval_fragments, "device": self.device}


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        from contrast3d.engine.distributed import resolve_device

        return resolve_device("auto")
    return torch.device(device)


def _find_weights(run: Path) -> tuple[Path, Path]:
    """``(run folder, model.safetensors)`` of ``run`` (a run folder or its weights file)."""
    if not run.exists():
        raise DataError(run, "run folder not found (expected the --out folder of 'contrast3d finetune semseg')")
    if run.is_file():
        return run.parent, run
    weights = run / f"{MODEL_EXPORT}.safetensors"
    if not weights.is_file():
        method = _method_name(run / "config.yaml")
        if method and method != MODEL_TASK:
            why = (f"a '{method}' run; evaluate and predict take runs of 'contrast3d finetune semseg' "
                   f"(the fine-tuned model with its classification head)")
        elif (run / "backbone.safetensors").is_file():
            why = ("the run exported only a backbone, no model with its classification head (a pre-training run, "
                   "or a fine-tuning run older than this export); fine-tune again to evaluate or predict")
        else:
            why = "not a finished 'contrast3d finetune semseg' run folder (no fine-tuned model exported)"
        raise DataError(weights, f"missing: {why}")
    return run, weights


def _method_name(config: Path) -> str:
    """``method_name`` of a run's ``config.yaml`` (``""`` when absent or unreadable)."""
    from contrast3d.config import load_yaml

    try:
        return str(load_yaml(config).get("method_name") or "") if config.is_file() else ""
    except (DataError, AttributeError):
        return ""


def load_finetuned(run: str | Path, device: str | torch.device = "auto") -> FinetunedRun:
    """Rebuild and load the fine-tuned network of ``run`` (a run folder, or its ``model.safetensors``).

    Raises :class:`DataError` naming the file: no run folder, no ``model`` export, a record that is
    not a semantic-segmentation model, no ``config.yaml`` or one that disagrees with the record,
    diverged weights, or weights that do not fit the network exactly.
    """
    run_dir, weights = _find_weights(Path(run))
    state, record = read_weights(weights, MODEL_EXPORT)
    meta = weights.with_suffix(".json")
    if record.extra.get("task") != MODEL_TASK or record.num_classes < 1:
        raise DataError(meta, f"not a fine-tuned semantic-segmentation model (task {record.extra.get('task')!r}, "
                              f"num_classes {record.num_classes}); pass the run folder of 'contrast3d finetune semseg'")
    bad = diverged_tensors(state)
    if bad:
        raise DataError(weights, f"non-finite (or |x| > {MAX_ABS_WEIGHT:g}) weights in {len(bad)} tensor(s): "
                                 f"a diverged run?")
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise DataError(config, "missing: the run's config (voxel size, input features, evaluation fragments) "
                                "is needed next to the model")
    cfg = load_finetune_config(files=[config], presets=False)
    for key, have in (("num_classes", record.num_classes), ("in_channels", record.in_channels)):
        want = getattr(cfg.model, key)
        if want != have:
            raise DataError(config, f"model.{key}={want} but {meta.name} has {key}={have}: "
                                    f"the config and the model are of different runs")
    dev = _device(device)
    model_cfg = cfg.model
    if model_cfg.backend == "auto":  # the backend of the device used now (weights are backend-independent)
        from contrast3d.sparse.backend import backend_for

        model_cfg = dataclasses.replace(model_cfg, backend=backend_for(dev))
    net = SemsegModel(cfg.method, model_cfg, cfg.data).net
    check_keys(net, state, weights)
    return FinetunedRun(run_dir, weights, cfg, record, net.to(dev).eval(), dev)


# ----------------------------------------------------------------------------- which scenes
@dataclass
class SceneSelection:
    """Scene folders to evaluate and how they were chosen (``source``: a phrase for results.json)."""

    scenes: list[Path]
    split: str
    data: Path
    source: str


def _same_data(root: Path, run_root: str, recorded: Path) -> bool:
    """Whether ``root`` is the run's data folder ``run_root``: the same folder, or -- ``run_root`` being
    relative to another working directory -- a folder ending in ``run_root`` that holds every
    scene recorded in ``recorded`` (``scene_split.json``)."""
    try:
        if root.resolve() == Path(run_root).resolve():
            return True
        rel = Path(run_root)
        if rel.is_absolute() or root.resolve().parts[-len(rel.parts):] != rel.parts or not recorded.is_file():
            return False
        split = read_scene_split(recorded)
    except (OSError, DataError):
        return False
    return all(_rebase(p, run_root, root).is_dir() for p in split["train"] + split["val"])


def _rebase(path: str, old_root: str, new_root: Path) -> Path:
    """``path`` (recorded under ``old_root``) under ``new_root``; unchanged when it is not under ``old_root``."""
    try:
        return new_root / Path(path).relative_to(old_root)
    except ValueError:
        return Path(path)


def read_scene_split(path: Path) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...]}`` of a run's ``scene_split.json``; :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(path, "missing: the run's train/val scene lists are needed for --split val/train "
                              "(use --split all)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(path, f"unreadable scene split ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("train", "val")):
        raise DataError(path, "not a scene split (expected lists 'train' and 'val')")
    return {k: [str(p) for p in data[k]] for k in ("train", "val")}


def select_scenes(model: FinetunedRun, data: str | Path | None = None, split: str | None = None) -> SceneSelection:
    """The scene folders to evaluate (module docstring); ``data=None`` is the run's own data."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    run_root = model.cfg.data_root
    if data is None:
        if not run_root:
            raise DataError(model.run_dir / "config.yaml", "records no data_root; pass --data")
        data = run_root
    root = Path(data)
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist")
    recorded = model.run_dir / "scene_split.json"
    same = bool(run_root) and _same_data(root, str(run_root), recorded)
    split = split or ("val" if same else "all")
    if split == "all":
        scenes = find_scene_dirs(root, "coord.npy")
        if not scenes:
            raise DataError(root, "no Pointcept scene folders (coord.npy) found")
        return SceneSelection(scenes, split, root, f"every scene of {root}")
    if same:
        names = read_scene_split(recorded)[split]
        if not names:
            raise DataError(recorded, f"lists no {split} scenes")
        return SceneSelection([_rebase(p, str(run_root), root) for p in names], split, root,
                              f"{split} scenes of {recorded}")
    # evaluation trains nothing, so a split whose validation scenes are also training scenes is not a leak here
    parts = resolve_scene_split(root, model.cfg.data.val_fraction, allow_overlap=True, allow_flag=None)
    return SceneSelection(list(getattr(parts, split)), split, root, f"{split} scenes of {root} ({parts.mode} split)")


# ----------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Scores, the summed ``(C, C)`` int64 ``[target, pred]`` confusion matrix and the scenes evaluated."""

    scores: SegmentationScores
    confusion: np.ndarray
    scenes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def evaluate_run(model: FinetunedRun, scene_dirs: Iterable[str | Path],
                 on_prediction: Any = None) -> Evaluation:
    """Score ``model`` on every point of ``scene_dirs`` exactly as fine-tuning's final evaluation does.

    ``on_prediction(cloud, pred)`` (optional) sees each scene and its ``(N,)`` int64 predictions.
    Raises :class:`DataError` naming the scene for a scene without labels or with labels outside the
    model's classes (the first unreadable scene too, when the run's ``data.strict`` is set).
    """
    cfg = model.cfg
    dataset = SceneDataset(list(scene_dirs), None, on_error="raise" if cfg.data.strict else "skip", keep_raw=False)
    conf = np.zeros((model.num_classes, model.num_classes), np.int64)
    predictions: dict[str, np.ndarray] = {}
    names: list[str] = []

    def tap(scenes: Iterable[PointCloud]) -> Iterator[PointCloud]:
        """Each scene to ``evaluate_semseg``; once it is scored, its predictions into ``conf``."""
        for cloud in scenes:
            yield cloud
            pred = predictions.pop(cloud.name)
            assert cloud.segment is not None  # evaluate_semseg refuses a scene without labels
            conf[...] += confusion_matrix(pred, cloud.segment, model.num_classes)
            names.append(cloud.name)
            if on_prediction is not None:
                on_prediction(cloud, pred)

    scores = evaluate_semseg(model.net, tap(raw_scenes(dataset)), predictions=predictions, **model.eval_kwargs())
    if not names:  # pragma: no cover - SceneDataset refuses an empty list
        raise DataError(model.run_dir, "no scene evaluated")
    return Evaluation(scores, conf, names, [str(e) for e in dataset.skipped])


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/Inf floats replaced by ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_results(model: FinetunedRun) -> dict[str, Any] | None:
    """The run's own ``results.json`` (what fine-tuning reported), or ``None`` when absent/unreadable."""
    try:
        data = json.loads((model.run_dir / "results.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def evaluation_results(model: FinetunedRun, ev: Evaluation, selection: SceneSelection) -> dict[str, Any]:
    """``results.json``'s content: scores, per-class IoU/Acc by name, what was evaluated and how."""
    reported = run_results(model) or {}
    names = model.class_names
    return {
        **ev.scores.to_dict(),
        "class_names": names,
        "iou": [None if not math.isfinite(x) else float(x) for x in ev.scores.iou],
        "run": str(model.run_dir), "model": str(model.weights), "step": model.record.step,
        "run_mIoU": reported.get("mIoU"), "data": str(selection.data), "split": selection.split,
        "scenes_from": selection.source, "num_scenes": len(ev.scenes), "scenes": ev.scenes, "skipped": ev.skipped,
        "num_classes": model.num_classes, "grid_size": model.cfg.data.grid_size,
        "feat_keys": list(model.cfg.data.feat_keys), "eval_fragments": model.cfg.method.eval_fragments,
        "labelled_points": int(ev.confusion.sum()), "device": str(model.device),
        # a model trained with validation scenes in its training set carries that warning into every evaluation
        **{k: reported[k] for k in ("leak", "warning") if reported.get(k)},
    }


def write_confusion_csv(path: str | Path, confusion: np.ndarray, class_names: list[str]) -> Path:
    """``confusion`` as CSV: a header ``target\\pred,<names>``, then one row per target class."""
    path = Path(path)

    def cell(text: str) -> str:
        return f'"{text}"' if any(c in text for c in ',"\n') else text

    lines = [",".join(["target\\pred", *map(cell, class_names)])]
    lines += [",".join([cell(n), *map(str, row.tolist())]) for n, row in zip(class_names, confusion)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_evaluation(out: str | Path, results: dict[str, Any], ev: Evaluation, class_names: list[str]) -> list[Path]:
    """``OUT/results.json``, ``results.txt`` (per-class table) and ``confusion.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, json_path)
    txt = out / "results.txt"
    warning = f"WARNING: {results['warning']}\n" if results.get("warning") else ""
    txt.write_text(f"{warning}semantic segmentation, {results['num_scenes']} scenes ({results['scenes_from']}), "
                   f"model {results['model']}\n{ev.scores.table()}\n")
    return [json_path, txt, write_confusion_csv(out / "confusion.csv", ev.confusion, class_names)]


# ----------------------------------------------------------------------------- prediction
def find_inputs(source: str | Path) -> list[Path]:
    """Scene folders under ``source`` (a folder of Pointcept scenes), else ``[source]`` itself (one
    scene: a Pointcept scene folder, or any file / folder :func:`~contrast3d.io.dispatch.read_any` reads)."""
    from contrast3d.io.pointcept import is_pointcept_scene

    path = Path(source)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if path.is_dir() and not is_pointcept_scene(path):
        scenes = find_scene_dirs(path, "coord.npy")
        if scenes:
            return scenes
    return [path]


def read_input(path: str | Path) -> PointCloud:
    """The points of one input (a mesh's vertices); ``meta["name"]`` is the folder name or file stem."""
    from contrast3d.io.dispatch import read_any
    from contrast3d.structures import TriangleMesh

    path = Path(path)
    obj = read_any(path)
    cloud = obj.to_point_cloud() if isinstance(obj, TriangleMesh) else obj
    cloud.meta.setdefault("path", str(path))
    if not cloud.meta.get("name"):
        cloud.meta["name"] = path.name if path.is_dir() else path.stem
    return cloud


def predict_inputs(model: FinetunedRun, inputs: Iterable[str | Path]) -> Iterator[tuple[PointCloud, np.ndarray]]:
    """``(cloud, (N,) int64 class of every point, in the input's order)`` per input, one at a time."""
    kw = model.eval_kwargs()
    for path in inputs:
        cloud = read_input(path)
        pred = predict_scene(model.net, cloud, grid_size=kw["grid_size"], feat_keys=kw["feat_keys"],
                             max_fragments=kw["max_fragments"], device=model.device)
        yield cloud, pred


def labels_fit(cloud: PointCloud, num_classes: int) -> bool:
    """Whether ``cloud`` has labels, all in ``[0, num_classes)`` or ``-1``, at least one not ``-1``."""
    seg = cloud.segment
    return seg is not None and bool(((seg >= -1) & (seg < num_classes)).all()) and bool((seg >= 0).any())


def write_prediction(out: str | Path, cloud: PointCloud, pred: np.ndarray, colors: np.ndarray) -> list[Path]:
    """``OUT/<scene>_pred.npy`` (``(N,)`` int64) and ``<scene>_pred.ply`` (xyz, ``colors`` as uint8 RGB,
    ``pred`` and, when labelled, ``gt`` scalar fields)."""
    from contrast3d.io.ply_write import write_ply

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred = np.asarray(pred, np.int64)
    if pred.shape != (len(cloud),):
        raise ValueError(f"{len(pred)} predictions for {len(cloud)} points")
    npy = out / f"{cloud.name}_pred.npy"
    np.save(npy, pred)
    extra = {"pred": pred.astype(np.int32)}
    if cloud.segment is not None:
        extra["gt"] = np.asarray(cloud.segment).astype(np.int32)
    ply = out / f"{cloud.name}_pred.ply"
    write_ply(ply, PointCloud(coord=cloud.coord, color=np.asarray(colors, np.uint8), extra=extra))
    return [npy, ply]
