"""The benchmark data of ``contrast3d bench``: one folder, three views of the same training scenes.

Layout (the built-in data is built like this; a user's ``--data DIR`` must follow it)::

    DATA/
      scenes/train/<scene>/   Pointcept scene folders with coord, color, normal, segment20 (labels),
      scenes/val/<scene>/       instance, superpoint .npy (``contrast3d prepare scenes``): fine-tuning
                                trains on train/ and is scored on val/; the probes use both;
                                ``instance.npy`` is needed by ``--tasks insseg,det`` (the built-in
                                data has it: the simulator's object ids, kept by ``prepare scenes``)
      pairs/<scene>/          ``contrast3d prepare rgbd`` output of the TRAINING scenes' RGB-D frames
                                (frame clouds, normals, superpoints, mined pairs): ``data_kind: pairs``
      frames/<scene>/         raw RGB-D frame folders (ScanNet export layout) of the TRAINING scenes:
                                ``data_kind: frames``
      bench_data.json         what was built and with which settings (built-in data only)

A method pre-trains on the folder its :class:`~contrast3d.methods.base.MethodSpec` names
(``data_kind``: ``pairs``, ``scenes`` -> ``scenes/train`` only, ``frames``). **Validation scenes are
never pre-trained on**: ``pairs/`` and ``frames/`` hold only training scenes, and a ``scenes`` method
gets ``scenes/train``. Only the folders the chosen methods need must exist in a user's ``DATA``.

Built-in data (:data:`BUILTIN`, :data:`SMOKE`): ``train_scenes + val_scenes`` simulated scenes with
fixed seeds ``scene_seed, scene_seed + 1, ...`` (:mod:`contrast3d.simulate`); the first
``train_scenes`` are training scenes, the rest validation scenes (a split by scene, never by
point). ``scenes/`` is ``contrast3d prepare scenes`` of the simulator's Pointcept folders (its
surface samples with labels: the points fine-tuning is scored on) with superpoints added;
``pairs/`` is ``prepare rgbd`` of the training scenes' rendered frames (every ``frame_skip``-th
frame, stored at ``voxel_size`` = 2.5 cm, denser than the 5 cm training voxels of the CPU presets);
``frames/`` holds those rendered frame folders (moved out of the simulation folder ``sim/``, which
keeps the validation scenes' frames and the raw Pointcept folders).

Reuse: ``bench_data.json`` is written last; a folder whose file records the same settings is reused
as is, one with other settings is an error (choose another folder). The data digest that enters
every run's digest is the settings' digest for built-in data, and for a user folder a digest of
its path and the names and modification times of its scene folders.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrast3d.config import config_digest
from contrast3d.errors import DataError

MARKER = "bench_data.json"
#: ``MethodSpec.data_kind`` -> folder under DATA that the method pre-trains on.
KIND_FOLDERS = {"pairs": "pairs", "scenes": "scenes/train", "frames": "frames"}


@dataclass(frozen=True)
class BenchDataConfig:
    """Settings of the built-in benchmark data.

    Attributes:
        scene_seed: seed of the first simulated scene (the others follow).
        train_scenes, val_scenes: scenes in each split (training scenes first).
        frames: rendered RGB-D frames per scene; width, height: pixels.
        density: surface points per m² of the labelled Pointcept scenes.
        frame_skip: every n-th frame becomes a partial scan in ``pairs/``.
        voxel_size: metres; the voxel of the prepared frames' normals and superpoints, and their storage
            spacing unless ``store_voxel`` is given (2.5 cm: half the 5 cm training voxel of the CPU presets,
            so rotated and scaled frames still cover the training voxels).
        store_voxel: metres; finer storage spacing of the frame clouds (``None``: ``voxel_size``).
        depth_trunc: metres; depth beyond is dropped when back-projecting.
        min_overlap: pairs below this overlap are not kept.
    """

    scene_seed: int = 500
    train_scenes: int = 10
    val_scenes: int = 3
    frames: int = 40
    width: int = 320
    height: int = 240
    density: float = 1500.0
    frame_skip: int = 3
    voxel_size: float = 0.025
    store_voxel: float | None = None
    depth_trunc: float = 4.0
    min_overlap: float = 0.3

    @property
    def seeds(self) -> list[int]:
        return list(range(self.scene_seed, self.scene_seed + self.train_scenes + self.val_scenes))


#: The fixed built-in benchmark (the scenes of the former label-efficiency benchmark).
BUILTIN = BenchDataConfig()
#: Tiny data for ``--smoke``: 2 training + 1 validation scene, 6 small frames each (seconds to build).
SMOKE = BenchDataConfig(scene_seed=11, train_scenes=2, val_scenes=1, frames=6, width=96, height=72, density=300.0,
                        frame_skip=1, voxel_size=0.05, min_overlap=0.2)


@dataclass
class BenchData:
    """An opened benchmark data folder.

    Attributes:
        root: the DATA folder.
        digest: identifies the content (see the module docstring); part of every run's digest.
        builtin: built by :func:`build_builtin_data`.
        info: ``bench_data.json`` content (built-in data) or ``{}``.
    """

    root: Path
    digest: str
    builtin: bool = False
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def scenes(self) -> Path:
        """The fine-tuning / probe root (``train/`` + ``val/``)."""
        return self.root / "scenes"

    def folder(self, kind: str) -> Path:
        """The pre-training folder of a ``data_kind``; :class:`DataError` when absent or empty."""
        if kind not in KIND_FOLDERS:
            raise DataError(self.root, f"unknown data_kind '{kind}' (known: {', '.join(KIND_FOLDERS)})")
        path = self.root / KIND_FOLDERS[kind]
        if not path.is_dir() or not any(p.is_dir() for p in path.iterdir()):
            raise DataError(path, f"missing or empty: methods with data_kind '{kind}' pre-train on it "
                                  f"(see 'contrast3d bench --help' for the data layout)")
        return path


def _scene_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def open_data(root: str | Path) -> BenchData:
    """Open a benchmark data folder (built-in or a user's); checks ``scenes/train`` and ``scenes/val``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "benchmark data folder not found")
    for split in ("train", "val"):
        if not _scene_dirs(root / "scenes" / split):
            raise DataError(root / "scenes" / split, "no scene folders: the benchmark needs labelled Pointcept "
                                                     "scenes in DATA/scenes/train and DATA/scenes/val")
    marker = root / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        return BenchData(root, str(info["digest"]), True, info)
    h = hashlib.sha256(str(root.resolve()).encode())
    for sub in ("scenes/train", "scenes/val", "pairs", "frames"):
        for d in _scene_dirs(root / sub):
            h.update(f"{sub}/{d.name}:{d.stat().st_mtime_ns}\n".encode())
    return BenchData(root, h.hexdigest()[:16])


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def build_builtin_data(root: str | Path, cfg: BenchDataConfig = BUILTIN, workers: int = 2,
                       quiet: bool = False, progress: bool = False) -> BenchData:
    """Build (or reuse) the built-in benchmark data in ``root`` (layout in the module docstring).

    Interrupted builds are continued: simulation and preparation skip finished scenes. ``progress``
    shows a tqdm bar (stderr) per stage: simulation (scenes) and preparation (steps).
    """
    from tqdm import tqdm

    from contrast3d.data.prepare import run_prepare
    from contrast3d.simulate.batch import simulate_scenes

    root = Path(root)
    digest = config_digest(cfg)
    marker = root / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("digest") != digest:
            raise DataError(root, f"holds benchmark data built with other settings ({info.get('config')}); "
                                  "choose another folder or remove it")
        return open_data(root)
    root.mkdir(parents=True, exist_ok=True)
    sim, frames = root / "sim", root / "frames"
    seeds = cfg.seeds
    train_seeds = set(seeds[:cfg.train_scenes])
    names = [f"sim{s:06d}" for s in seeds]  # simulate_scene's folder name for a seed
    todo = [s for s, n in zip(seeds, names) if not (sim / "pointcept" / n / "coord.npy").is_file()
            or not ((sim / n).is_dir() or (frames / n).is_dir())]
    if todo:
        _say(quiet, f"bench data: simulating {len(todo)} scene(s) -> {sim}")
        with tqdm(total=len(todo), desc="simulate", unit="scene", file=sys.stderr, disable=not progress) as bar:
            simulate_scenes(todo, sim, frames=cfg.frames, width=cfg.width, height=cfg.height, density=cfg.density,
                            workers=workers, report=lambda *_: bar.update(1))
    frames.mkdir(exist_ok=True)
    for s, n in zip(seeds, names):
        if s in train_seeds and (sim / n).is_dir():
            if (frames / n).exists():
                shutil.rmtree(frames / n)
            os.replace(sim / n, frames / n)  # the training scenes' raw RGB-D frames
    train = [n for s, n in zip(seeds, names) if s in train_seeds]
    val = [n for s, n in zip(seeds, names) if s not in train_seeds]
    bar = tqdm(total=3, desc="prepare", unit="step", file=sys.stderr, disable=not progress)
    _say(quiet, f"bench data: preparing frame pairs of {len(train)} training scene(s) -> {root / 'pairs'}")
    rgbd = run_prepare("rgbd", [(n, frames / n) for n in train], root / "pairs",
                       {"frame_skip": cfg.frame_skip, "voxel_size": cfg.voxel_size, "store_voxel": cfg.store_voxel,
                        "depth_trunc": cfg.depth_trunc, "min_overlap": cfg.min_overlap, "segments": True},
                       workers=workers, quiet=True)  # a bad frame (e.g. all-zero depth) is skipped and listed
    _check_prepared(rgbd, root / "pairs", "frame pairs")
    bar.update(1)
    _say(quiet, f"bench data: preparing {len(train)} + {len(val)} labelled scenes (normals, superpoints) -> "
                f"{root / 'scenes'}")
    counts = {}
    for split, chosen in (("train", train), ("val", val)):
        summary = run_prepare("scenes", [(n, sim / "pointcept" / n) for n in chosen], root / "scenes" / split,
                              {"segments": True}, workers=workers, quiet=True)
        _check_prepared(summary, root / "scenes" / split, "labelled scenes")
        counts[split] = summary["points"]
        bar.update(1)
    bar.close()
    info = {"digest": digest, "config": dataclasses.asdict(cfg), "train": train, "val": val,
            "frame_pairs": rgbd.get("pairs_total"), "frames": rgbd.get("frames_total"), "points": counts}
    tmp = marker.with_name(MARKER + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, marker)
    return BenchData(root, digest, True, info)


def _check_prepared(summary: dict, out: Path, what: str) -> None:
    """Every scene prepared (bad frames inside a scene are skipped and listed in the summary), or one clear error."""
    failed = [s for s in summary.get("skipped_inputs", []) if s.get("what") == "scene"]
    if failed or summary["scenes"]["failed"]:
        first = failed[0] if failed else {"source": str(out), "reason": "preparation failed"}
        raise DataError(first.get("source", out), f"bench data: {what} could not be prepared: {first.get('reason')} "
                                                  f"(see {out / 'prepare_summary.json'})")


__all__ = ["BUILTIN", "SMOKE", "BenchData", "BenchDataConfig", "KIND_FOLDERS", "build_builtin_data", "open_data"]
