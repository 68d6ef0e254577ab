"""The built-in demo: what pre-training buys, shown on synthetic scenes within ~10 minutes on a laptop CPU.

1. simulate ScanNet-like scenes with RGB-D frames and split them by scene into training and
   validation scenes (:mod:`contrast3d.bench.data`: frame pairs of the training scenes only,
   labelled scenes with normals and superpoints);
2. pre-train PointContrast on the (unlabelled) frame pairs of the training scenes;
3. **probe frozen features**: linear and kNN probe mIoU of the pre-trained backbone and of a
   randomly initialised one of the same architecture, on the same probe data, for ``probe_seeds``
   probe seeds (voxel sampling and classifier seed); the gain is paired by probe seed, with a 95 %
   t interval (:mod:`contrast3d.bench.stats`);
4. fine-tune semantic segmentation once from scratch and once from the pre-trained backbone
   (same seed, same label split, same data order) under a small label budget;
5. print an aligned table with the uncertainty it has (probe mIoU mean ± std over probe seeds, the
   fine-tune's single seed said as such), a plain verdict, and write curves and a similarity map.

Why probes: a few hundred fine-tuning steps on one seed cannot separate "pre-training helps"
from seed noise or from "converges faster" (the PointContrast paper's §4.6); frozen-feature probes
measure what the features carry at this budget, for seconds of compute. The uncertainty shown is
the probe's (one pre-training run); ``contrast3d bench`` adds pre-training and fine-tuning seeds,
paired confidence intervals and a longer-training control. Each stage shows a tqdm progress bar
on stderr. Everything lands in one run folder; nothing is downloaded.
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
        train_scenes, val_scenes: simulated scenes of each split (pre-training sees training scenes only).
        frames: rendered RGB-D frames per scene (320 x 240).
        frame_skip: keep every n-th frame as a partial scan.
        pretrain_steps, finetune_steps: optimizer steps of each stage.
        probe_seeds: probe repetitions (seeds 0 .. n-1) of each backbone.
        probe_points: labelled training voxels the probes' classifiers learn from (the kNN probe's
            cost grows with it; ``contrast3d probe`` uses 20k).
        density: surface points per m² of the labelled scenes; resolution: (width, height) of the frames.
        labels: fine-tuning label budget (``"50pts"``: 50 labelled points per training scene).
        seed: seeds the scenes (``500 + seed``...), pre-training and fine-tuning.
        workers: processes for simulation/preparation and data-loader workers.
    """

    train_scenes: int = 4
    val_scenes: int = 2
    frames: int = 40
    frame_skip: int = 4
    pretrain_steps: int = 300
    finetune_steps: int = 120
    probe_seeds: int = 3
    probe_points: int = 8000
    density: float = 1500.0
    resolution: tuple[int, int] = (320, 240)
    labels: str = "50pts"
    seed: int = 0
    workers: int = 2


FAST = QuickstartConfig(train_scenes=2, val_scenes=1, frames=8, frame_skip=2, pretrain_steps=10, finetune_steps=15,
                        probe_seeds=2, probe_points=3000, density=400.0, resolution=(160, 120))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _capped_warmup(preset: str, kind: str, steps: int) -> str:
    """``schedule.warmup_steps=W``: the shipped ``preset``'s warm-up, capped at a tenth of the run's ``steps``
    (a warm-up as long as the short demo runs would keep the learning rate below its base value, and warn)."""
    from contrast3d.config import load_yaml, preset_file

    schedule = load_yaml(preset_file(preset, kind)).get("schedule") or {}
    return f"schedule.warmup_steps={min(int(schedule.get('warmup_steps', 0)), steps // 10)}"


def _pretrain(pairs: Path, out: Path, cfg: QuickstartConfig) -> Path:
    from contrast3d.engine.run import train
    from contrast3d.methods import METHODS, method_config

    spec = METHODS["pointcontrast"]
    train_cfg = method_config(
        "pointcontrast", files=["pointcontrast_cpu_small"],
        flags={"data_root": str(pairs), "steps": cfg.pretrain_steps, "device": "cpu", "progress": True,
               "seed": cfg.seed},
        overrides=[f"loader.num_workers={cfg.workers}", f"checkpoint_every={max(cfg.pretrain_steps, 1)}",
                   f"log_every={max(1, min(10, cfg.pretrain_steps // 5))}",
                   _capped_warmup("pointcontrast_cpu_small", "pretrain", cfg.pretrain_steps)])
    result = train(train_cfg, spec, out)
    if result.backbone_path is None:  # train() exports the backbone when it reaches cfg.steps
        raise RuntimeError(f"pre-training in {out} finished without exporting a backbone")
    return Path(result.backbone_path)


def _finetune(scenes: Path, init: str, out: Path, cfg: QuickstartConfig) -> dict[str, Any]:
    from contrast3d.evaluation.finetune import finetune_semseg

    return finetune_semseg(scenes, init, out, cfg.labels, config_files=["semseg_cpu_small"],
                           overrides=[f"loader.num_workers={cfg.workers}", "method.eval_every=0",
                                      _capped_warmup("semseg_cpu_small", "finetune", cfg.finetune_steps)],
                           steps=cfg.finetune_steps, seed=cfg.seed, device="cpu", progress=True)


def _probes(inits: dict[str, Path], scenes: Path, cfg: QuickstartConfig) -> dict[str, dict[int, dict[str, float]]]:
    """``{backbone: {probe seed: probe results}}`` (same probe data for every backbone at a seed)."""
    from tqdm import tqdm

    from contrast3d.evaluation.probe_data import build_probe
    from contrast3d.models.pretrained import load_pretrained

    nets = {name: load_pretrained(path) for name, path in inits.items()}
    out: dict[str, dict[int, dict[str, float]]] = {name: {} for name in inits}
    bar = tqdm(total=len(inits) * cfg.probe_seeds, desc="probes", unit="probe", file=sys.stderr)
    for s in range(cfg.probe_seeds):
        rec = next(iter(nets.values())).record  # every backbone here shares voxel size and input features
        probe = build_probe(scenes, rec.grid_size or 0.05, rec.feat_keys, seed=s, max_train_points=cfg.probe_points,
                            prefix="")
        for name, pre in nets.items():
            out[name][s] = {k: float(v) for k, v in probe.evaluate(pre.model).items() if isinstance(v, (int, float))}
            bar.update(1)
    bar.close()
    return out


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
    scene_dir = find_scene_dirs(scenes / "val", "coord.npy")[-1]
    cloud = read_pointcept_scene(scene_dir)
    coord, feats = cloud.coord, scene_features(model, cloud, info).numpy()
    query = int(np.argmin(np.linalg.norm(coord - np.median(coord, axis=0), axis=1)))
    png = run / "similarity_map.png"
    similarity_map(coord, feats, query, png, title=f"PointContrast features, {scene_dir.name}")
    written.append(str(png))
    return written


def _pm(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _gain(g: dict[str, Any]) -> str:
    if g["n"] < 2 or g["low"] is None:
        return f"{g['mean']:+.2f} (n={g['n']}, no CI)"
    return f"{g['mean']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]"


def format_table(result: dict[str, Any]) -> str:
    """The aligned results table (probe mIoU mean ± std over probe seeds; fine-tune mIoU, one seed)."""
    rows = result["table"]
    labels = result["config"]["labels"]
    n = result["config"]["probe_seeds"]
    head = ["init", "linear probe mIoU", "kNN probe mIoU", f"fine-tune mIoU ({labels})", "minutes"]
    body = [[r["init"], _pm(r["linear_miou"]), _pm(r["knn_miou"]), f"{100 * r['mIoU']:.2f}", f"{r['minutes']:.2f}"]
            for r in rows]
    g = result["gain"]
    body.append(["gain", _gain(g["linear_miou"]), _gain(g["knn_miou"]), f"{g['finetune']:+.2f} (1 seed)", ""])
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(x, widths)))
             for x in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"probes: frozen features (scratch = a randomly initialised backbone), mean ± std over {n} probe "
                 f"seed(s) of one pre-training run; gain: paired by probe seed, [95 % CI]")
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    """Plain sentences: what this short run shows, and what it cannot."""
    g = result["gain"]
    good = [k for k in ("linear_miou", "knn_miou") if g[k]["significant"] and g[k]["mean"] > 0]
    lines = []
    if good:
        what = " and ".join({"linear_miou": "linear", "knn_miou": "kNN"}[k] + f" probe {g[k]['mean']:+.2f} mIoU"
                            for k in good)
        lines.append(f"Pre-training helped the frozen features in this run: {what} over a random-init backbone "
                     f"(95 % CI excludes 0).")
    else:
        lines.append("No gain shown by this short run: the probe gains' confidence intervals include 0 (or there is "
                     "only one probe seed).")
    lines.append(f"Fine-tuning: {g['finetune']:+.2f} mIoU from one seed and {result['config']['finetune_steps']} "
                 f"steps — too little to tell a gain from noise. Measure it with seeds, paired confidence "
                 f"intervals and a longer-training control: contrast3d bench --methods scratch,pointcontrast")
    return "\n".join(lines)


def run_quickstart(out: str | Path, cfg: QuickstartConfig = QuickstartConfig()) -> dict[str, Any]:
    """Run the demo into ``out``; returns (and writes ``out/quickstart.json``) the results."""
    from contrast3d.bench.data import BenchDataConfig, build_builtin_data
    from contrast3d.bench.jobs import random_init_backbone
    from contrast3d.bench.runner import signature_of
    from contrast3d.bench.stats import paired_stats

    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    dcfg = BenchDataConfig(scene_seed=500 + cfg.seed, train_scenes=cfg.train_scenes, val_scenes=cfg.val_scenes,
                           frames=cfg.frames, frame_skip=cfg.frame_skip, density=cfg.density,
                           width=cfg.resolution[0], height=cfg.resolution[1])
    _say(f"[1/5] simulating {cfg.train_scenes} + {cfg.val_scenes} scenes with {cfg.frames} RGB-D frames each, "
         f"preparing frame pairs (training scenes only) and labelled scenes -> {run / 'data'}")
    data = build_builtin_data(run / "data", dcfg, workers=cfg.workers, quiet=True, progress=True)
    t_data = time.perf_counter()

    _say(f"[2/5] pre-training PointContrast for {cfg.pretrain_steps} steps -> {run / 'pretrain'}")
    backbone = _pretrain(data.folder("pairs"), run / "pretrain", cfg)
    t_pre = time.perf_counter()

    _say(f"[3/5] probing frozen features (random init vs pre-trained), {cfg.probe_seeds} probe seed(s) each")
    record = json.loads(backbone.with_suffix(".json").read_text())
    (run / "random_init").mkdir(exist_ok=True)
    random = random_init_backbone(run / "random_init", signature_of(record), cfg.seed)
    probes = _probes({"scratch": random, "pointcontrast": backbone}, data.scenes, cfg)
    t_probe = time.perf_counter()

    rows = []
    for name, init, stage in (("scratch", "scratch", "finetune_scratch"),
                              ("pointcontrast", str(backbone), "finetune_pretrained")):
        _say(f"[4/5] fine-tuning from {name} with labels={cfg.labels} for {cfg.finetune_steps} steps")
        t0 = time.perf_counter()
        res = _finetune(data.scenes, init, run / stage, cfg)
        pr = probes[name]
        rows.append({"init": name, "labels": cfg.labels, "mIoU": res["mIoU"], "mAcc": res["mAcc"],
                     "allAcc": res["allAcc"], "minutes": (time.perf_counter() - t0) / 60,
                     "linear_miou": [100 * pr[s]["linear_miou"] for s in sorted(pr)],
                     "knn_miou": [100 * pr[s]["knn_miou"] for s in sorted(pr)]})
    gain: dict[str, Any] = {"finetune": 100 * (rows[1]["mIoU"] - rows[0]["mIoU"])}
    for key in ("linear_miou", "knn_miou"):
        g = paired_stats({s: 100 * probes["pointcontrast"][s][key] for s in probes["pointcontrast"]},
                         {s: 100 * probes["scratch"][s][key] for s in probes["scratch"]})
        gain[key] = {**g.to_dict(), "verdict": g.verdict()}

    _say("[5/5] writing curves and a feature-similarity map")
    pngs = _visuals(run, data.scenes, backbone)
    result = {
        "config": asdict(cfg), "table": rows, "gain": gain, "probes": probes, "pngs": pngs, "backbone": str(backbone),
        "pairs": data.info.get("frame_pairs"), "frames": data.info.get("frames"),
        "minutes": {"data": (t_data - start) / 60, "pretrain": (t_pre - t_data) / 60, "probes": (t_probe - t_pre) / 60,
                    "total": (time.perf_counter() - start) / 60},
    }
    result["verdict"] = verdict(result)
    (run / "quickstart.json").write_text(json.dumps(result, indent=2, default=str))
    return result
