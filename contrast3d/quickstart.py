"""The built-in demo: the whole loop on synthetic scenes, on a laptop CPU.

1. simulate ScanNet-like scenes with RGB-D frames (:mod:`contrast3d.simulate`);
2. prepare them: frame clouds with normals, superpoints and mined overlapping pairs;
3. pre-train PointContrast briefly on the (unlabelled) frame pairs;
4. fine-tune semantic segmentation from scratch and from the pre-trained backbone under one
   small label budget, and evaluate both on held-out scenes;
5. print a table (mIoU, mAcc, minutes) and write curves and a feature-similarity map.

Everything lands in one run folder; nothing is downloaded.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class QuickstartConfig:
    """Sizes of the demo. ``FAST`` is the smoke version used by the tests.

    Attributes:
        scenes: simulated scenes (the last ~20 % are the fine-tuning validation scenes).
        frames: rendered RGB-D frames per scene (320 x 240).
        frame_skip: keep every n-th frame as a partial scan.
        pretrain_steps, finetune_steps: optimizer steps of each stage.
        labels: fine-tuning label budget (``"50pts"``: 50 labelled points per training scene).
        seed: seeds simulation, splits and training.
        workers: processes for simulation/preparation and data-loader workers.
    """

    scenes: int = 6
    frames: int = 40
    frame_skip: int = 4
    pretrain_steps: int = 300
    finetune_steps: int = 120
    labels: str = "50pts"
    seed: int = 0
    workers: int = 2


FAST = QuickstartConfig(scenes=3, frames=12, frame_skip=3, pretrain_steps=10, finetune_steps=15)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pretrain(pairs: Path, out: Path, cfg: QuickstartConfig) -> Path:
    from contrast3d.engine.run import train
    from contrast3d.methods import METHODS, method_config

    spec = METHODS["pointcontrast"]
    train_cfg = method_config(
        "pointcontrast", files=["pointcontrast_cpu_small"],
        flags={"data_root": str(pairs), "steps": cfg.pretrain_steps, "device": "cpu", "progress": False,
               "seed": cfg.seed},
        overrides=[f"loader.num_workers={cfg.workers}", f"checkpoint_every={max(cfg.pretrain_steps, 1)}",
                   f"log_every={max(1, min(10, cfg.pretrain_steps // 5))}"])
    result = train(train_cfg, spec, out)
    if result.backbone_path is None:  # train() exports the backbone when it reaches cfg.steps
        raise RuntimeError(f"pre-training in {out} finished without exporting a backbone")
    return Path(result.backbone_path)


def _finetune(scenes: Path, init: str, out: Path, cfg: QuickstartConfig) -> dict[str, Any]:
    from contrast3d.evaluation.finetune import finetune_semseg

    return finetune_semseg(scenes, init, out, cfg.labels, config_files=["semseg_cpu_small"],
                           overrides=[f"loader.num_workers={cfg.workers}"], steps=cfg.finetune_steps,
                           seed=cfg.seed, device="cpu", progress=False)


def _visuals(run: Path, scenes: Path, backbone: Path) -> list[str]:
    """Loss curves of both stages and a similarity map of a validation scene (PNG paths)."""
    from contrast3d.data.scene_dataset import find_scene_dirs
    from contrast3d.io import read_pointcept_scene
    from contrast3d.viz import plot_curves, similarity_map
    from contrast3d.viz.backbone_io import load_backbone, scene_features

    written = []
    for stage in ("pretrain", "finetune_scratch", "finetune_pretrained"):
        log = run / stage / "metrics.jsonl"
        if log.is_file():
            png = run / f"curves_{stage}.png"
            plot_curves(log, png)
            written.append(str(png))
    model, info = load_backbone(backbone)
    scene_dir = find_scene_dirs(scenes, "coord.npy")[-1]
    cloud = read_pointcept_scene(scene_dir)
    coord, feats = cloud.coord, scene_features(model, cloud, info).numpy()
    query = int(np.argmin(np.linalg.norm(coord - np.median(coord, axis=0), axis=1)))
    png = run / "similarity_map.png"
    similarity_map(coord, feats, query, png, title=f"PointContrast features, {scene_dir.name}")
    written.append(str(png))
    return written


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'init':<12} {'labels':<8} {'mIoU':>7} {'mAcc':>7} {'allAcc':>7} {'minutes':>8}"]
    for r in rows:
        lines.append(f"{r['init']:<12} {r['labels']:<8} {100 * r['mIoU']:7.2f} {100 * r['mAcc']:7.2f} "
                     f"{100 * r['allAcc']:7.2f} {r['minutes']:8.2f}")
    return "\n".join(lines)


def run_quickstart(out: str | Path, cfg: QuickstartConfig = QuickstartConfig()) -> dict[str, Any]:
    """Run the demo into ``out``; returns (and writes ``out/quickstart.json``) the results."""
    from contrast3d.data.prepare import run_prepare
    from contrast3d.data.scene_jobs import find_sequences
    from contrast3d.simulate.batch import simulate_scenes

    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data, pairs = run / "data", run / "pairs"

    _say(f"[1/5] simulating {cfg.scenes} scenes with {cfg.frames} RGB-D frames each -> {data}")
    simulate_scenes(range(cfg.seed, cfg.seed + cfg.scenes), data, frames=cfg.frames, workers=cfg.workers)
    t_sim = time.perf_counter()

    _say(f"[2/5] preparing partial scans, normals, superpoints and overlapping pairs -> {pairs}")
    inputs, ignored = find_sequences(data, exclude=pairs)
    summary = run_prepare("rgbd", inputs, pairs, {"frame_skip": cfg.frame_skip, "voxel_size": 0.025,
                                                  "depth_trunc": 4.0, "min_overlap": 0.3, "segments": True},
                          workers=cfg.workers, quiet=True, ignored=ignored)
    t_prep = time.perf_counter()

    _say(f"[3/5] pre-training PointContrast for {cfg.pretrain_steps} steps -> {run / 'pretrain'}")
    backbone = _pretrain(pairs, run / "pretrain", cfg)
    t_pre = time.perf_counter()

    rows = []
    for name, init in (("scratch", "scratch"), ("pointcontrast", str(backbone))):
        _say(f"[4/5] fine-tuning semantic segmentation from {name} with labels={cfg.labels} "
             f"for {cfg.finetune_steps} steps")
        t0 = time.perf_counter()
        stage = "finetune_scratch" if name == "scratch" else "finetune_pretrained"
        res = _finetune(data / "pointcept", init, run / stage, cfg)
        rows.append({"init": name, "labels": cfg.labels, "mIoU": res["mIoU"], "mAcc": res["mAcc"],
                     "allAcc": res["allAcc"], "minutes": (time.perf_counter() - t0) / 60})

    _say("[5/5] writing curves and a feature-similarity map")
    pngs = _visuals(run, data / "pointcept", backbone)
    result = {
        "config": asdict(cfg), "table": rows, "pngs": pngs, "backbone": str(backbone),
        "pairs": summary.get("pairs"), "frames": summary.get("frames"),
        "minutes": {"simulate": (t_sim - start) / 60, "prepare": (t_prep - t_sim) / 60,
                    "pretrain": (t_pre - t_prep) / 60, "total": (time.perf_counter() - start) / 60},
    }
    (run / "quickstart.json").write_text(json.dumps(result, indent=2, default=str))
    return result
