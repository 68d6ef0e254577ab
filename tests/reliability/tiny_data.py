"""Tiny, fast inputs for the reliability tests (built once per session, well under a second each).

* :func:`pointcept_scenes` -- labelled Pointcept scene folders of a box room (floor, walls, a box);
* :func:`prepared_pairs` -- prepared RGB-D frame-pair scenes (``scene.json``, ``frames/*.npz``,
  ``pairs.txt``) cut from the same room, the input of ``contrast3d pretrain``;
* :func:`rgbd_sequence` -- a ScanNet-export-layout RGB-D sequence rendered from the room
  (16-bit millimetre depth PNGs, the input of ``contrast3d prepare rgbd``);
* :func:`backbone` -- an exported ``spunet-tiny`` (``backbone.safetensors`` + ``.json``).

The room is ``[0, 4] x [0, 3] x [0, 2.5]`` metres; labels: floor 0, walls 1, box 2.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOM = np.array([[0.0, 0.0, 0.0], [4.0, 3.0, 2.5]])
BOX = np.array([[1.5, 1.0, 0.0], [2.3, 1.8, 0.8]])
TINY_PRETRAIN = ["--device", "cpu", "--no-progress", "--set", "model.preset=spunet-tiny",
                 "--set", "data.grid_size=0.15", "--set", "data.max_points=800", "--set", "data.match_radius=0.2",
                 "--set", "loader.batch_size=1", "--set", "loader.num_workers=0", "--set", "method.num_matches=64",
                 "--set", "log_every=1", "--set", "data.rotation=none",
                 "--set", "schedule.warmup_steps=0"]  # the presets' warm-up outlasts a 2-step run: no warning


_SESSION: dict[str, Path] = {}


def session_paths() -> dict[str, Path]:
    """Where this test process keeps its tiny inputs (one temporary folder, made on first call):
    ``root``, ``scenes``, ``pairs``, ``seq``, ``backbone``, ``poisoned``, ``run`` (the test module and
    the conftest import this module under one name, so they agree on the paths)."""
    if not _SESSION:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="contrast3d-reliability-"))
        _SESSION.update(root=root, scenes=root / "scenes", pairs=root / "pairs", seq=root / "seq",
                        backbone=root / "bb" / "backbone.safetensors", poisoned=root / "bad" / "backbone.safetensors",
                        run=root / "run")
    return dict(_SESSION)


def room_points(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on the room's floor / walls and on a box: coord (n, 3) float32, label (n,) int64."""
    lo, hi = ROOM
    face = rng.integers(0, 6, n)
    p = rng.uniform(lo, hi, (n, 3))
    axis, side = face // 2, face % 2
    p[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    label = np.where((axis == 2) & (side == 0), 0, 1)
    on_box = rng.random(n) < 0.2
    q = rng.uniform(BOX[0], BOX[1], (n, 3))
    q[np.arange(n), rng.integers(0, 2, n)] = np.where(rng.random(n) < 0.5, BOX[0, 0], BOX[1, 1])
    p[on_box], label[on_box] = q[on_box], 2
    return p.astype(np.float32), label.astype(np.int64)


def _normals(coord: np.ndarray) -> np.ndarray:
    n = np.zeros_like(coord)
    n[:, 2] = 1.0
    return n


def pointcept_scenes(root: Path, count: int = 4, points: int = 1200, seed: int = 0) -> Path:
    """``count`` labelled Pointcept scene folders ``root/scene{i}`` (coord, color, normal, segment20)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        d = root / f"scene{i}"
        d.mkdir(parents=True)
        coord, label = room_points(points, rng)
        np.save(d / "coord.npy", coord)
        np.save(d / "color.npy", rng.integers(0, 256, (points, 3)).astype(np.uint8))
        np.save(d / "normal.npy", _normals(coord).astype(np.float32))
        np.save(d / "segment20.npy", label.astype(np.int32))
    return root


def prepared_pairs(root: Path, scenes: int = 2, frames: int = 3, points: int = 900, seed: int = 1) -> Path:
    """``scenes`` prepared frame-pair scenes under ``root``; frame k keeps the points with x in a
    2.5 m slab shifted by 0.5 m per frame, so consecutive frames overlap."""
    rng = np.random.default_rng(seed)
    for s in range(scenes):
        d = root / f"scene{s}"
        (d / "frames").mkdir(parents=True)
        coord, _ = room_points(4 * points, rng)
        ids = [f"{k:06d}" for k in range(frames)]
        for k, fid in enumerate(ids):
            keep = np.flatnonzero((coord[:, 0] >= 0.5 * k) & (coord[:, 0] <= 0.5 * k + 2.5))[:points]
            pose = np.eye(4)
            pose[:3, 3] = [0.5 * k + 1.0, 1.5, 1.3]
            c = coord[keep]
            np.savez(d / "frames" / f"{fid}.npz", coord=c, color=rng.random((len(c), 3)).astype(np.float32),
                     normal=_normals(c).astype(np.float32), superpoint=(c[:, 0] // 0.5).astype(np.int64), pose=pose)
        rows = [f"{ids[k]} {ids[k + 1]} 0.600000\n" for k in range(frames - 1)]
        (d / "pairs.txt").write_text("".join(rows))
        info = {"format": "contrast3d-frames", "version": 1, "name": d.name, "frames": ids, "voxel_size": 0.05,
                "overlap_voxel_size": 0.05, "overlap_radius": 0.075, "min_overlap": 0.3, "source": "tiny",
                "layout": "tiny", "frame_skip": 1, "depth_trunc": None, "num_pairs": len(rows), "normals": True,
                "segments": True, "skipped_frames": []}
        (d / "scene.json").write_text(json.dumps(info))
    return root


K = np.array([[28.0, 0.0, 23.5], [0.0, 28.0, 17.5], [0.0, 0.0, 1.0]])
H, W = 36, 48


def camera_pose(yaw: float, eye=(2.0, 1.5, 1.3)) -> np.ndarray:
    """Camera-to-world (OpenCV axes: +z forward, +y down) looking horizontally along ``yaw``."""
    z = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    y = np.array([0.0, 0.0, -1.0])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([np.cross(y, z), y, z], axis=1)
    pose[:3, 3] = eye
    return pose


def render_depth(pose: np.ndarray, k: np.ndarray = K, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """``(H, W)`` depth in metres of the empty box room seen from ``pose`` (ray / plane intersection)."""
    h, w = size
    v, u = np.mgrid[0:h, 0:w]
    ray = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones((h, w))], -1) @ pose[:3, :3].T
    origin = pose[:3, 3]
    best = np.full((h, w), np.inf)
    for axis in range(3):
        for side in range(2):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (ROOM[side, axis] - origin[axis]) / ray[..., axis]
            best = np.where((t > 0) & (t < best), t, best)
    return best  # the camera ray has z = 1, so t is the depth


def rgbd_sequence(root: Path, frames: int = 3, step: float = 0.3, k: np.ndarray = K,
                  size: tuple[int, int] = (H, W), depth_bits: int = 16) -> Path:
    """A ScanNet-export-layout sequence: ``color/N.jpg depth/N.png pose/N.txt intrinsic/``."""
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    k4 = np.eye(4)
    k4[:3, :3] = k
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", k4)
    for i in range(frames):
        pose = camera_pose(0.3 + step * i)
        depth_mm = np.round(render_depth(pose, k, size) * 1000.0)
        if depth_bits == 16:
            Image.fromarray(depth_mm.astype(np.uint16)).save(root / "depth" / f"{i}.png")
        else:  # an 8-bit PNG: what a careless export writes (depth in some unknown unit, clipped)
            Image.fromarray(np.clip(depth_mm / 20.0, 1, 255).astype(np.uint8)).save(root / "depth" / f"{i}.png")
        shade = (np.indices(size).sum(0) % 2 * 80 + 100).astype(np.uint8)
        Image.fromarray(np.stack([shade] * 3, -1)).save(root / "color" / f"{i}.jpg")
        np.savetxt(root / "pose" / f"{i}.txt", pose)
    return root


def backbone(path: Path, feat_keys=("color", "normal"), grid_size: float = 0.15, poison: bool = False) -> Path:
    """An exported ``spunet-tiny`` (``path`` = ``.../backbone.safetensors``); ``poison`` writes one
    BatchNorm ``running_var`` as +inf (what a diverged run held) with the raw writer."""
    import torch

    from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
    from contrast3d.models.pretrained import PretrainedRecord, save_pretrained, write_safetensors

    torch.manual_seed(0)
    width = sum(1 if k == "ones" else 3 for k in feat_keys)
    net = build_backbone(BackboneConfig("spunet-tiny", in_channels=width, backend="torch"))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_pretrained(net, path, PretrainedRecord(**spunet_record(net, "spunet-tiny", list(feat_keys), grid_size)))
    if poison:
        state = {k: v.clone() for k, v in net.state_dict().items()}
        key = next(k for k in state if k.endswith("running_var"))
        state[key][0] = float("inf")
        write_safetensors(state, path, {"format": "pt", "producer": "contrast3d"})
    return path
