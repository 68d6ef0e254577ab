"""Instance-segmentation and detection fine-tuning (``contrast3d finetune insseg`` / ``finetune det``).

Both follow :func:`~contrast3d.evaluation.finetune.finetune_semseg` step by step: resolve the config,
split the scenes into train/val (:func:`~contrast3d.evaluation.semseg_data.resolve_scene_split`), apply
the label budget (``--labels``; scenes or points, chosen by the seed, saved as ``label_split.json``),
build the objective (:class:`~contrast3d.evaluation.insseg_model.InsSegModel` /
:class:`~contrast3d.evaluation.det_model.DetModel`), optionally initialise its backbone from a
pre-trained export (every backbone key must match unless ``--lenient``; the heads stay fresh), train
it with the engine's :class:`~contrast3d.engine.trainer.Trainer` (checkpoints, resume, logging,
periodic ``val/AP50`` or ``val/mAP@0.25``), evaluate every original point of the validation scenes
and write::

    RUN/config.yaml metrics.jsonl tb/ checkpoints/last.pt scene_split.json label_split.json init.json
    RUN/backbone.safetensors + insseg_heads.safetensors (insseg) or det_head.safetensors (det)
    RUN/results.json results.txt

The final evaluation announces itself (``evaluating N validation scenes ...``, console and
``RUN/train.log``), shows its progress over the scenes when ``progress`` is on and records the
headline metrics as ``final/<metric>`` TensorBoard scalars plus an hparams entry, as for semseg.

Config layers (later wins): dataclass defaults < ``configs/pretrain/base.yaml`` <
``configs/finetune/<task>.yaml`` < ``--config FILE`` (a path or a shipped preset such as
``insseg_cpu_small``) < flags < ``--set key=value``; with ``resume`` the run folder's ``config.yaml``
replaces the presets.

Train/validation overlap is refused unless ``data.allow_overlap`` (``--allow-overlap``), and then
marked in the results, as for semseg (:mod:`~contrast3d.evaluation.finetune`); ``--labels`` may
name a published split file (:mod:`~contrast3d.evaluation.split_files`).

Label budgets: limited annotations mask the semantic labels only (see
:mod:`~contrast3d.evaluation.insseg_model` for how offsets and boxes use the unlabelled points). For
detection the per-class mean box sizes (size clusters) are computed from the kept training scenes
before training (one pass over them) and saved with the weights.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrast3d.config import PRESET_DIR, preset_file, to_dict
from contrast3d.data.scene_dataset import SceneDataset
from contrast3d.engine import distributed as D
from contrast3d.engine.checkpoint import CheckpointError
from contrast3d.engine.config import TrainConfig, load_train_config
from contrast3d.engine.logging import progress as show_progress
from contrast3d.engine.rng import derive_seed, seed_all
from contrast3d.engine.trainer import PeriodicCallback, StepContext, Trainer
from contrast3d.errors import DataError
from contrast3d.evaluation import det_model, insseg_model
from contrast3d.evaluation.clustering import ClusterConfig
from contrast3d.evaluation.det_model import DetModel, class_mean_sizes
from contrast3d.evaluation.detection import BoxSelection, detection_table, evaluate_det
from contrast3d.evaluation.finetune import (
    _budget,
    _check_inputs,
    _flags,
    _init_backbone,
    _label_split,
    _scene_split,
    add_leak,
    announce_evaluation,
    record_final,
    start_distributed,
)
from contrast3d.evaluation.insseg import evaluate_insseg
from contrast3d.evaluation.insseg_model import (
    InsSegModel,
    InstanceDataset,
    instance_collate,
    instance_train_transform,
)
from contrast3d.evaluation.instance_metrics import InstanceEvalConfig
from contrast3d.evaluation.semseg import _finite, raw_scenes
from contrast3d.evaluation.semseg_data import SceneSplit
from contrast3d.evaluation.splits import LabelSplit

FINETUNE_PRESETS = PRESET_DIR / "finetune"


@dataclass(frozen=True)
class _Task:
    """What differs between the two tasks."""

    name: str
    title: str
    sections: dict[str, type]
    build: Callable[[TrainConfig], Any]
    with_classes: bool
    evaluate: Callable[..., tuple[Any, dict[str, float]]]   # (net, scenes, cfg, final, device) -> (scores, headline)
    periodic_key: str


def load_task_config(task: str, *, files: Iterable[str | Path] = (), flags: dict[str, Any] | None = None,
                     overrides: Iterable[str] = (), presets: bool = True) -> TrainConfig:
    """Resolve the :class:`TrainConfig` of ``task`` (``insseg`` or ``det``; layers in the module docstring)."""
    spec = TASKS[task]
    layers = [PRESET_DIR / "pretrain" / "base.yaml", FINETUNE_PRESETS / f"{task}.yaml"] if presets else []
    return load_train_config(task, spec.sections, presets=layers, files=[preset_file(f, "finetune") for f in files],
                             flags=flags, overrides=overrides)


# ----------------------------------------------------------------------------- per-task evaluation
def cluster_config(cfg: TrainConfig) -> ClusterConfig:
    """Clustering settings of an insseg run (radius defaults to 1.5 voxels)."""
    m = cfg.method
    radius = m.cluster_radius if m.cluster_radius is not None else 1.5 * cfg.data.grid_size
    return ClusterConfig(radius=radius, min_points=m.min_cluster_points, ignore_classes=tuple(m.ignore_classes),
                         dual=m.dual)


def _eval_insseg(net, scenes, cfg: TrainConfig, final: bool, device) -> tuple[Any, dict[str, float]]:
    m = cfg.method
    eval_cfg = InstanceEvalConfig(num_classes=cfg.model.num_classes, ignore_classes=tuple(m.ignore_classes),
                                  min_region_size=m.min_region_size)
    scores = evaluate_insseg(net, scenes, num_classes=cfg.model.num_classes, grid_size=cfg.data.grid_size,
                             feat_keys=cfg.data.feat_keys, cluster=cluster_config(cfg), eval_cfg=eval_cfg,
                             max_fragments=m.eval_fragments if final else m.periodic_fragments,
                             class_names=cfg.data.class_names, device=device)
    return scores, {"AP": scores.ap.map, "AP50": scores.ap.map50, "AP25": scores.ap.map25,
                    "mIoU": scores.semantic.miou}


def box_selection(cfg: TrainConfig) -> BoxSelection:
    m = cfg.method
    return BoxSelection(nms_iou=m.nms_iou, conf_threshold=m.conf_threshold, per_class_proposal=m.per_class_proposal,
                        ignore_classes=tuple(m.ignore_classes))


def _eval_det(net, scenes, cfg: TrainConfig, final: bool, device) -> tuple[Any, dict[str, float]]:
    scores = evaluate_det(net, scenes, num_classes=cfg.model.num_classes, feat_keys=cfg.data.feat_keys,
                          grid_size=cfg.data.grid_size, selection=box_selection(cfg),
                          class_names=cfg.data.class_names, device=device)
    return scores, {"mAP@0.25": float(scores.map[0]), "mAP@0.5": float(scores.map[1])}


TASKS: dict[str, _Task] = {
    "insseg": _Task("insseg", "instance segmentation", insseg_model.SECTIONS,
                    lambda cfg: InsSegModel(cfg.method, cfg.model, cfg.data), False, _eval_insseg, "AP50"),
    "det": _Task("det", "3D object detection", det_model.SECTIONS,
                 lambda cfg: DetModel(cfg.method, cfg.model, cfg.data), True, _eval_det, "mAP@0.25"),
}


# ----------------------------------------------------------------------------- the run
def finetune_task(task: str, data_dir: str | Path | None, init: str | Path | None, out_dir: str | Path,
                  labels: str | None = None, *, config_files: Iterable[str | Path] = (),
                  overrides: Iterable[str] = (), steps: int | None = None, seed: int | None = None,
                  device: str | None = None, eval_every: int | None = None, progress: bool | None = None,
                  resume: bool = False, cfg: TrainConfig | None = None, lenient: bool = False) -> dict[str, Any]:
    """Fine-tune ``task`` (``insseg`` or ``det``) and evaluate it; the results dict (arguments as
    :func:`~contrast3d.evaluation.finetune.finetune_semseg`)."""
    spec = TASKS[task]
    start = time.perf_counter()
    out = Path(out_dir)
    saved = out / "config.yaml"
    if cfg is None:
        resumed = resume and saved.is_file()
        cfg = load_task_config(task, files=([saved] if resumed else []) + list(config_files),
                               flags=_flags(data_dir, init, labels, steps, seed, device, eval_every, progress),
                               overrides=overrides, presets=not resumed)
    if not cfg.data_root:
        raise DataError(out, "no dataset folder given (--data)")
    last = out / "checkpoints" / "last.pt"
    resuming = resume and last.is_file()
    if not resume and last.is_file():
        raise CheckpointError(last, "the run folder already has a checkpoint; pass --resume to continue it or "
                                    "choose another --out")
    budget = _budget(cfg, out, resume)
    seed_all(derive_seed(cfg.seed, 0))  # model initialisation: identical on every rank
    model = spec.build(cfg)
    init_info, report = _init_backbone(model.backbone(), cfg, out, resuming, lenient)

    scenes = _scene_split(cfg, out)
    on_error = "raise" if cfg.data.strict else "skip"
    train = InstanceDataset(scenes.train, None, on_error=on_error, keep_raw=cfg.data.cache_scenes,
                            num_classes=cfg.model.num_classes, ignore_classes=cfg.method.ignore_classes,
                            with_classes=spec.with_classes)
    split = _label_split(out, train, budget, cfg.seed, resume, [p.name for p in scenes.val])
    train.apply_split(split)
    train.transform = instance_train_transform(cfg.data, sparse_labels=bool(split.points))
    val = SceneDataset(scenes.val, None, on_error=on_error, keep_raw=cfg.data.cache_scenes)
    _check_inputs(cfg, val)
    first = val.raw(0)
    if first.instance is None or first.segment is None:
        raise DataError(scenes.val[0], "validation scene without segment20.npy/segment.npy and instance.npy")
    if isinstance(model, DetModel) and not resuming:
        model.set_mean_sizes(class_mean_sizes(train, cfg.model.num_classes))

    ctx = start_distributed(cfg, report, scenes, len(train), split.budget)

    def periodic(c: StepContext) -> dict[str, float]:
        shown = show_progress(raw_scenes(val), desc="val", unit="scenes", enabled=cfg.progress and c.dist.is_main)
        return spec.evaluate(c.method.model, shown, cfg, False, c.device)[1]

    try:
        if ctx.is_main and not resuming:
            (out / "init.json").write_text(json.dumps(init_info, indent=1) + "\n")
        callbacks = [PeriodicCallback(cfg.method.eval_every, periodic, "val")] if cfg.method.eval_every > 0 else []
        trainer = Trainer(cfg, model, train, instance_collate(cfg.data), out, ctx=ctx, callbacks=callbacks)
        result = trainer.fit(resume=resume)
        net = trainer.method.model
        announce_evaluation(out, len(val), cfg.method.eval_fragments if spec.name == "insseg" else None,
                            enabled=ctx.is_main)
        shown = show_progress(raw_scenes(val), desc="evaluating", unit="scenes",
                                    enabled=cfg.progress and ctx.is_main, run_dir=out if ctx.is_main else None)
        scores, headline = spec.evaluate(net, shown, cfg, True, trainer.device)
        results = _results(spec, cfg, scores, headline, result.step, split, scenes, len(train), len(val),
                           init_info, (time.perf_counter() - start) / 60.0, str(trainer.device))
        if ctx.is_main:
            table = scores.table() if hasattr(scores, "table") else detection_table(scores)
            write_task_results(out, results, table)
            record_final(out, cfg, result.step, headline)
        D.barrier(ctx)
        return results
    finally:
        D.shutdown(ctx)


def _results(spec: _Task, cfg: TrainConfig, scores: Any, headline: dict[str, float], step: int, split: LabelSplit,
             scenes: SceneSplit, n_train: int, n_val: int, init_info: dict[str, Any], minutes: float,
             device: str) -> dict[str, Any]:
    labelled: dict[str, Any] = {"scenes": len(split.scenes)}
    if split.points:
        labelled["points"] = int(sum(len(v) for v in split.points.values()))
    if split.source:
        labelled["file"] = split.source
    extra: dict[str, Any] = {}
    if spec.name == "insseg":
        c = cluster_config(cfg)
        extra = {"eval_fragments": cfg.method.eval_fragments,
                 "cluster": {"radius": c.radius, "min_points": c.min_points, "dual": c.dual}}
    return add_leak({
        "task": spec.name, **scores.to_dict(), **{k: v for k, v in headline.items() if k != "mIoU"},
        "label_budget": split.budget, "labelled": labelled, "seed": cfg.seed,
        "init": str(cfg.method.init), "init_loaded_tensors": init_info.get("num_loaded", 0),
        "steps": step, "minutes": round(minutes, 3), "train_scenes": n_train, "val_scenes": n_val,
        "scene_split": scenes.mode, "model": to_dict(cfg.model), "grid_size": cfg.data.grid_size, "device": device,
        **extra,
    }, scenes)


def write_task_results(run_dir: str | Path, results: dict[str, Any], table: str) -> tuple[Path, Path]:
    """``results.json`` (strict JSON, NaN -> null, written atomically) and ``results.txt`` (header + ``table``;
    a ``WARNING:`` first line when ``results`` has a ``warning``, e.g. a train/validation leak)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, txt_path = run_dir / "results.json", run_dir / "results.txt"
    tmp = json_path.with_name(".results.json.tmp")
    tmp.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, json_path)
    title = TASKS[results["task"]].title if results.get("task") in TASKS else "fine-tuning"
    header = (f"{title}, {results.get('val_scenes', '?')} validation scenes, init {results.get('init')}, "
              f"labels {results.get('label_budget')}, seed {results.get('seed')}, {results.get('steps')} steps")
    warning = f"WARNING: {results['warning']}\n" if results.get("warning") else ""
    txt_path.write_text(warning + header + "\n" + table + "\n")
    return json_path, txt_path


def finetune_insseg(data_dir: str | Path | None, init: str | Path | None, out_dir: str | Path,
                    labels: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Instance-segmentation fine-tuning + ScanNet AP (keywords as :func:`finetune_task`).

    Returns ``results.json``'s content: ``AP``, ``AP50``, ``AP25``, ``per_class``, ``semantic``
    (mIoU/mAcc/allAcc of the semantic head), ``label_budget``, ``seed``, ``init``, ``steps`` and more.
    """
    return finetune_task("insseg", data_dir, init, out_dir, labels, **kwargs)


def finetune_det(data_dir: str | Path | None, init: str | Path | None, out_dir: str | Path,
                 labels: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Detection fine-tuning + VoteNet mAP (keywords as :func:`finetune_task`).

    Returns ``results.json``'s content: ``mAP@0.25``, ``mAP@0.5``, ``per_class@0.25``,
    ``per_class@0.5``, ``label_budget``, ``seed``, ``init``, ``steps`` and more.
    """
    return finetune_task("det", data_dir, init, out_dir, labels, **kwargs)


__all__ = ["finetune_insseg", "finetune_det", "finetune_task", "load_task_config", "write_task_results",
           "cluster_config", "box_selection", "TASKS"]
