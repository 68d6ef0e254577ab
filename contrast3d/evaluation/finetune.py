"""Semantic-segmentation fine-tuning and evaluation (what ``contrast3d finetune semseg`` runs).

:func:`finetune_semseg` resolves the config, splits the scenes into train/val
(:func:`~contrast3d.evaluation.semseg_data.resolve_scene_split`), applies the label budget
(``--labels``, chosen by the seed, :mod:`contrast3d.evaluation.splits`), builds a
:class:`~contrast3d.evaluation.semseg_model.SemsegModel` (optionally initialised from a
pre-trained backbone), trains it with the engine's :class:`~contrast3d.engine.trainer.Trainer`
(checkpoints, resume, logging, schedules, periodic ``val/mIoU``), evaluates it on the validation
scenes (every original point, :func:`~contrast3d.evaluation.semseg.evaluate_semseg`) and writes::

    RUN/config.yaml metrics.jsonl tb/ checkpoints/last.pt backbone.safetensors (the fine-tuned net)
    RUN/scene_split.json label_split.json init.json results.json results.txt

The final evaluation announces itself (``evaluating N validation scenes ...`` on the console and in
``RUN/train.log``), shows its progress over the scenes when ``progress`` is on, and records its
metrics as ``final/<metric>`` TensorBoard scalars plus an hparams entry and a ``train.log`` line
(:func:`~contrast3d.engine.logging.record_final_results`).

A validation set that overlaps the training set (one scene, or a scene in both ``train/`` and
``val/``) is refused unless ``data.allow_overlap`` (``--allow-overlap``); then the run prints a
``WARNING`` and marks its results: ``leak`` and ``warning`` in ``results.json``, a ``WARNING``
first line in ``results.txt`` (see :mod:`~contrast3d.evaluation.semseg_data`). ``--labels`` may
name a published split file (:mod:`~contrast3d.evaluation.split_files`), checked before any scene
is read; the split used is saved as ``label_split.json`` either way.

Config layers (later wins): dataclass defaults < ``configs/pretrain/base.yaml`` (engine defaults)
< ``configs/finetune/semseg.yaml`` < ``--config FILE`` (a path, or the name of a shipped preset
such as ``semseg_cpu_small``) < flags (``--steps``, ``--init`` ...) < ``--set key=value``. With
``resume`` the run folder's ``config.yaml`` replaces the presets.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from contrast3d.config import PRESET_DIR, ConfigError, preset_file, to_dict
from contrast3d.data.scene_dataset import SceneDataset
from contrast3d.engine import distributed as D
from contrast3d.engine.checkpoint import CheckpointError
from contrast3d.engine.config import TrainConfig, load_train_config
from contrast3d.engine.logging import announce, record_final_results
from contrast3d.engine.rng import derive_seed, seed_all
from contrast3d.engine.trainer import PeriodicCallback, StepContext, Trainer
from contrast3d.errors import DataError
from contrast3d.evaluation.metrics import SegmentationScores
from contrast3d.evaluation.semseg import evaluate_semseg, raw_scenes, write_results
from contrast3d.evaluation.semseg_data import SceneSplit, SemsegDataset, resolve_scene_split, train_transform
from contrast3d.evaluation.semseg_model import SECTIONS, SemsegModel, load_backbone_init, semseg_collate
from contrast3d.evaluation.split_files import read_split_file
from contrast3d.evaluation.splits import LabelBudget, LabelSplit
from contrast3d.models.pretrained import LoadReport
from contrast3d.structures import build_feat

TASK = "semseg"
FINETUNE_PRESETS = PRESET_DIR / "finetune"


def load_finetune_config(*, files: Iterable[str | Path] = (), flags: dict[str, Any] | None = None,
                         overrides: Iterable[str] = (), presets: bool = True) -> TrainConfig:
    """Resolve the fine-tuning :class:`TrainConfig` (layers in the module docstring).

    ``flags`` may hold ``method.*`` values nested (``{"method": {"init": ...}}``).
    """
    layers = [PRESET_DIR / "pretrain" / "base.yaml", FINETUNE_PRESETS / f"{TASK}.yaml"] if presets else []
    return load_train_config(TASK, SECTIONS, presets=layers, files=[preset_file(f, "finetune") for f in files],
                             flags=flags, overrides=overrides)


def _flags(data_dir, init, labels, steps, seed, device, eval_every, progress) -> dict[str, Any]:
    flags: dict[str, Any] = {k: v for k, v in {"data_root": None if data_dir is None else str(data_dir),
                                               "steps": steps, "seed": seed, "device": device,
                                               "progress": progress}.items() if v is not None}
    method = {k: v for k, v in {"init": None if init is None else str(init), "labels": labels,
                                "eval_every": eval_every}.items() if v is not None}
    if method:
        flags["method"] = method
    return flags


def _budget(cfg: TrainConfig, out: Path, resume: bool) -> LabelBudget:
    """The run's label budget; a split file is read now (a missing or malformed one fails before any
    scene is read), unless a resumed run has its ``label_split.json``."""
    try:
        budget = LabelBudget.parse(cfg.method.labels)
    except ValueError as err:
        raise ConfigError("method.labels", str(err)) from None
    if budget.kind == "file" and not (resume and (out / "label_split.json").is_file()):
        read_split_file(budget.path)
    return budget


def _label_split(out: Path, dataset: SemsegDataset, budget: LabelBudget, seed: int, resume: bool,
                 val_names: Iterable[str] = ()) -> LabelSplit:
    path = out / "label_split.json"
    if resume and path.is_file():
        return LabelSplit.load(path)
    split = dataset.make_label_split(budget, seed, val_names)
    split.save(path)
    return split


def _scene_split(cfg: TrainConfig, out: Path) -> SceneSplit:
    """Train/val scenes (overlap refused unless ``data.allow_overlap``), saved as ``scene_split.json``."""
    assert cfg.data_root is not None
    scenes = resolve_scene_split(cfg.data_root, cfg.data.val_fraction, allow_overlap=cfg.data.allow_overlap)
    scenes.save(out / "scene_split.json")
    return scenes


def warn_leak(scenes: SceneSplit) -> None:
    """Print the loud train/validation overlap warning (stderr) when there is one."""
    leak = scenes.leak()
    if leak:
        print(f"WARNING: train/validation leak: {leak['warning']}", file=sys.stderr, flush=True)


def add_leak(results: dict[str, Any], scenes: SceneSplit) -> dict[str, Any]:
    """``results`` with ``leak`` and ``warning`` when the validation scenes overlap the training scenes."""
    leak = scenes.leak()
    if leak:
        results["leak"] = leak
        results["warning"] = f"train/validation leak: {leak['warning']}"
    return results


def mark_results_txt(path: Path, results: dict[str, Any]) -> None:
    """Put the results' ``warning`` (if any) as a ``WARNING:`` first line of ``results.txt``."""
    if results.get("warning"):
        path.write_text(f"WARNING: {results['warning']}\n" + path.read_text())


def _check_inputs(cfg: TrainConfig, val: SceneDataset) -> None:
    cloud = val.raw(0)
    width = build_feat(cloud, cfg.data.feat_keys).shape[1]
    if width != cfg.model.in_channels:
        raise ConfigError("model.in_channels", f"data.feat_keys {cfg.data.feat_keys} give {width} channels "
                                               f"but model.in_channels is {cfg.model.in_channels}")


def start_distributed(cfg: TrainConfig, report: Any, scenes: Any, num_train: int, budget: str) -> Any:
    """Shared start of every fine-tuning task: determinism, the process group, the resolved-config
    summary and the leak warning (rank 0), and a batch size no larger than each rank's share of the
    ``num_train`` kept training scenes (e.g. 1 % of a small dataset). Returns the distributed context."""
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    ctx = D.init_distributed(cfg.device)
    if report is not None and ctx.is_main:
        print(report.summary(), flush=True)
    if ctx.is_main:
        warn_leak(scenes)
    per_rank = -(-num_train // ctx.world_size)
    if cfg.loader.drop_last and per_rank < cfg.loader.batch_size:
        if ctx.is_main:
            print(f"note: loader.batch_size lowered from {cfg.loader.batch_size} to {max(1, per_rank)}: only "
                  f"{num_train} training scene(s) under labels={budget}", flush=True)
        cfg.loader.batch_size = max(1, per_rank)
    return ctx


def finetune_semseg(data_dir: str | Path | None, init: str | Path | None, out_dir: str | Path,
                    labels: str | None = None,
                    *, config_files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                    steps: int | None = None, seed: int | None = None, device: str | None = None,
                    eval_every: int | None = None, progress: bool | None = None, resume: bool = False,
                    cfg: TrainConfig | None = None, lenient: bool = False) -> dict[str, Any]:
    """Fine-tune on ``data_dir``'s training scenes, evaluate on its validation scenes; the results dict.

    Args:
        data_dir: folder of Pointcept scenes (``train/`` + ``val/`` or a deterministic split).
        init: ``"scratch"`` or a pre-trained ``backbone.safetensors``.
        out_dir: run folder.
        labels: label budget (``"all"``, ``"1%"``, ``"20pts"`` ...).
        config_files, overrides, steps, seed, device, eval_every, progress: config layers
            (see the module docstring); ``cfg`` skips resolution and is used as is.
        resume: continue ``out_dir/checkpoints/last.pt`` (config from ``out_dir/config.yaml``).
        lenient: load the matching keys of weights that only partly fit (else a partial load is an error).

    Returns:
        ``results.json``'s content: ``mIoU``, ``mAcc``, ``allAcc``, ``per_class``, ``label_budget``,
        ``seed``, ``init``, ``steps``, ``minutes`` and more.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    saved = out / "config.yaml"
    if cfg is None:
        resumed = resume and saved.is_file()
        cfg = load_finetune_config(files=([saved] if resumed else []) + list(config_files),
                                   flags=_flags(data_dir, init, labels, steps, seed, device, eval_every, progress),
                                   overrides=overrides, presets=not resumed)
    if not cfg.data_root:
        raise DataError(out, "no dataset folder given (--data)")
    resuming = resume and (out / "checkpoints" / "last.pt").is_file()
    if not resume and (out / "checkpoints" / "last.pt").is_file():
        raise CheckpointError(out / "checkpoints" / "last.pt", "the run folder already has a checkpoint; pass "
                                                                "--resume to continue it or choose another --out")
    budget = _budget(cfg, out, resume)
    # The model first (a bad --init fails before any scene is read); data loading draws no global randomness.
    seed_all(derive_seed(cfg.seed, 0))  # model initialisation: identical on every rank
    model = SemsegModel(cfg.method, cfg.model, cfg.data)
    init_info, report = _init_backbone(model.net, cfg, out, resuming, lenient)

    scenes = _scene_split(cfg, out)
    on_error = "raise" if cfg.data.strict else "skip"
    train = SemsegDataset(scenes.train, None, on_error=on_error, keep_raw=cfg.data.cache_scenes)
    split = _label_split(out, train, budget, cfg.seed, resume, [p.name for p in scenes.val])
    train.apply_split(split)
    train.transform = train_transform(cfg.data, sparse_labels=bool(split.points))
    val = SceneDataset(scenes.val, None, on_error=on_error, keep_raw=cfg.data.cache_scenes)
    _check_inputs(cfg, val)

    ctx = start_distributed(cfg, report, scenes, len(train), split.budget)
    eval_kw: dict[str, Any] = {"num_classes": cfg.model.num_classes, "grid_size": cfg.data.grid_size,
                               "feat_keys": cfg.data.feat_keys, "class_names": cfg.data.class_names}

    def periodic(c: StepContext) -> dict[str, float]:
        s = evaluate_semseg(c.method.backbone(), raw_scenes(val), max_fragments=cfg.method.periodic_fragments,
                            device=c.device, progress=cfg.progress and c.dist.is_main, desc="val", **eval_kw)
        return {"mIoU": s.miou, "mAcc": s.macc, "allAcc": s.all_acc}

    try:
        if ctx.is_main and not resuming:
            (out / "init.json").write_text(json.dumps(init_info, indent=1) + "\n")
        callbacks = ([PeriodicCallback(cfg.method.eval_every, periodic, "val")]
                     if cfg.method.eval_every > 0 else [])
        trainer = Trainer(cfg, model, train, semseg_collate(cfg.data), out, ctx=ctx, callbacks=callbacks)
        result = trainer.fit(resume=resume)
        announce_evaluation(out, len(val), cfg.method.eval_fragments, enabled=ctx.is_main)
        scores = evaluate_semseg(trainer.method.backbone(), raw_scenes(val), max_fragments=cfg.method.eval_fragments,
                                 device=trainer.device, progress=cfg.progress and ctx.is_main,
                                 run_dir=out if ctx.is_main else None, **eval_kw)
        results = _results(cfg, scores, result.step, split, scenes, len(train), len(val), init_info,
                           (time.perf_counter() - start) / 60.0, str(trainer.device))
        if ctx.is_main:
            write_results(out, results, scores)
            mark_results_txt(out / "results.txt", results)
            record_final(out, cfg, result.step, {k: results[k] for k in ("mIoU", "mAcc", "allAcc")})
        D.barrier(ctx)
        return results
    finally:
        D.shutdown(ctx)


def announce_evaluation(out: Path, scenes: int, fragments: int | None = None, *, enabled: bool = True) -> None:
    """Say (console + ``out/train.log``) that the final evaluation of ``scenes`` validation scenes starts
    (``fragments``: voxel fragments voted per scene, 0 = all; ``None``: not said)."""
    noun = "scene" if scenes == 1 else "scenes"
    detail = ""
    if fragments is not None:
        detail = ", all fragments" if fragments <= 0 else f", {fragments} fragment{'' if fragments == 1 else 's'}"
    announce(f"evaluating {scenes} validation {noun} (every original point{detail}) ...", out, enabled=enabled)


def record_final(out: Path, cfg: TrainConfig, step: int, metrics: dict[str, float]) -> None:
    """The final evaluation's ``metrics`` as ``final/<key>`` TensorBoard scalars at ``step`` (the config
    as hparams) and a ``final evaluation: mIoU ...`` line in ``out/train.log`` (call it on rank 0)."""
    record_final_results(out, metrics, step=step, hparams=to_dict(cfg), label="final evaluation")


def _init_backbone(net: torch.nn.Module, cfg: TrainConfig, out: Path, resuming: bool,
                   lenient: bool) -> tuple[dict[str, Any], LoadReport | None]:
    """Load ``cfg.method.init`` into ``net`` (unless scratch or resuming: then the weights come from the
    checkpoint); returns the ``init.json`` content and the load report. Creates ``out``."""
    init_info: dict[str, Any] = {"path": "scratch"}
    report = None
    if resuming:
        init_info = _read_json(out / "init.json", {"path": str(cfg.method.init)})
    elif str(cfg.method.init).lower() != "scratch":
        report = load_backbone_init(net, cfg.method.init, cfg.model, lenient=lenient)
        init_info = report.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    return init_info, report


def _read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _results(cfg: TrainConfig, scores: SegmentationScores, step: int, split: LabelSplit, scenes: SceneSplit,
             n_train: int, n_val: int, init_info: dict[str, Any], minutes: float, device: str) -> dict[str, Any]:
    labelled: dict[str, Any] = {"scenes": len(split.scenes)}
    if split.points:
        labelled["points"] = int(sum(len(v) for v in split.points.values()))
    if split.source:
        labelled["file"] = split.source
    return add_leak({
        **scores.to_dict(),
        "label_budget": split.budget, "labelled": labelled, "seed": cfg.seed,
        "init": str(cfg.method.init), "init_loaded_tensors": init_info.get("num_loaded", 0),
        "steps": step, "minutes": round(minutes, 3), "train_scenes": n_train, "val_scenes": n_val,
        "scene_split": scenes.mode, "model": to_dict(cfg.model), "grid_size": cfg.data.grid_size,
        "eval_fragments": cfg.method.eval_fragments, "device": device,
    }, scenes)


__all__ = ["evaluate_semseg", "finetune_semseg", "load_backbone_init", "load_finetune_config"]
