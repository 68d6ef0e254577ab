"""Throughput of the data-preparation pipeline on this machine.

Stages (median of ``--repeats`` runs after a warm-up that also compiles numba kernels):

* ``render``: simulated RGB-D frames/s (``contrast3d.simulate.Renderer``, noise included) at
  ``--width`` x ``--height``; ``{"skipped": reason}`` when the simulator is absent (frames then
  come from a plain ray-cast box room);
* ``backproject``: ``frame_to_cloud`` (depth + colour -> world cloud, ``--voxel-size``) frames/s;
* ``frame_features``: camera-facing PCA normals + superpoints of one voxelised frame cloud,
  frames/s (what ``prepare rgbd`` adds per frame);
* ``pair_mining``: ``mine_pairs`` on 100 frames (5 cm downsample, r = 7.5 cm): seconds,
  candidate pairs/s (100 * 99 / 2 / seconds), kept pairs;
* ``segmentation``: ``segment_points`` on a 100k-point cloud with given normals, points/s.

Plus threads (numba, torch), CPU count and load average. ``--json`` prints one JSON object as
the last line.

    python benchmarks/data_pipeline.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contrast3d.data.frame_dataset import frame_features  # noqa: E402
from contrast3d.data.pairs import mine_pairs  # noqa: E402
from contrast3d.data.rgbd import frame_to_cloud, voxel_downsample_index  # noqa: E402
from contrast3d.data.segmentation import segment_points  # noqa: E402
from contrast3d.io.frames import RGBDFrame  # noqa: E402


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call; also the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def box_room_frames(n: int, width: int, height: int) -> list[RGBDFrame]:
    """Fallback frames: a 6 x 5 x 3 m box room ray-cast from a camera walking a circle."""
    lo, hi = np.zeros(3), np.array([6.0, 5.0, 3.0])
    f = width / 2 / np.tan(np.deg2rad(33.0))
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    v, u = np.mgrid[0:height, 0:width]
    ray = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones((height, width))], -1)
    frames = []
    for i in range(n):
        a = 2 * np.pi * i / n
        z = np.array([np.cos(a + 1.2), np.sin(a + 1.2), -0.2])
        z /= np.linalg.norm(z)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        pose[:3, 3] = [3 + 1.5 * np.cos(a), 2.5 + 1.2 * np.sin(a), 1.5]
        d = ray @ pose[:3, :3].T
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.stack([(b - pose[:3, 3][k]) / d[..., k] for k in range(3) for b in (lo[k], hi[k])])
        depth = np.where(t > 0, t, np.inf).min(0).astype(np.float32)
        p = pose[:3, 3] + d * depth[..., None]
        color = ((np.floor(p / 0.4).sum(-1) % 2)[..., None] * [0.5, 0.4, 0.3] + 0.3).astype(np.float32)
        frames.append(RGBDFrame(depth, color, K, pose, name=str(i)))
    return frames


def sim_frames(n: int, width: int, height: int, repeats: int) -> tuple[dict, list[RGBDFrame], np.ndarray | None]:
    """Render ``n`` frames of simulated scene 0; returns (render stats, frames, 100k-point cloud)."""
    try:
        from contrast3d.simulate import (
            Renderer,
            camera_trajectory,
            generate_scene,
            sample_surface,
        )
    except ImportError as exc:
        return {"skipped": f"contrast3d.simulate not importable ({exc})"}, box_room_frames(n, width, height), None
    scene = generate_scene(0)
    poses = camera_trajectory(scene.plan, scene.objects, n, np.random.default_rng(1))
    renderer = Renderer(scene.mesh, scene.lights, width, height)
    rng = np.random.default_rng(2)
    secs, _ = timed(lambda: [renderer.render(p, rng) for p in poses[:10]], repeats)
    frames = []
    for i, p in enumerate(poses):
        fr = renderer.render(p, rng)
        frames.append(RGBDFrame(fr.depth, fr.color.astype(np.float32) / 255, fr.K, fr.pose, name=str(i)))
    mesh = scene.mesh
    area = 0.5 * np.linalg.norm(np.cross(*(mesh.vertices[mesh.faces[:, k]] - mesh.vertices[mesh.faces[:, 0]]
                                           for k in (1, 2))), axis=1).sum()
    cloud = sample_surface(mesh, 100_000 / area, np.random.default_rng(3))
    stats = {"frames_per_s": round(10 / secs, 2), "width": width, "height": height,
             "mesh_faces": int(mesh.num_faces)}
    return stats, frames, np.concatenate([cloud.coord, cloud.normal], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--voxel-size", type=float, default=0.025)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import numba
    import torch

    facts: dict = {"cpus": len(os.sched_getaffinity(0)), "numba_threads": numba.get_num_threads(),
                   "torch_threads": torch.get_num_threads(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                   "repeats": args.repeats}
    render, frames, points = sim_frames(100, args.width, args.height, args.repeats)
    facts["render"] = render

    secs, _ = timed(lambda: [frame_to_cloud(f, voxel_size=args.voxel_size, depth_trunc=4.0) for f in frames[:10]],
                    args.repeats)
    facts["backproject"] = {"frames_per_s": round(10 / secs, 2), "voxel_size": args.voxel_size}

    clouds = [frame_to_cloud(f, voxel_size=args.voxel_size, depth_trunc=4.0) for f in frames]
    sizes = [len(c) for c in clouds]
    secs, _ = timed(lambda: [frame_features(c.copy()) for c in clouds[:10]], args.repeats)
    facts["frame_features"] = {"frames_per_s": round(10 / secs, 2), "median_points": int(np.median(sizes))}

    coarse = [c.coord[voxel_downsample_index(c.coord, 0.05)] for c in clouds]
    secs, pairs = timed(lambda: mine_pairs(coarse, 0.05, 1.5, 0.3), args.repeats)
    n = len(coarse)
    facts["pair_mining"] = {"frames": n, "seconds": round(secs, 4),
                            "candidate_pairs_per_s": round(n * (n - 1) / 2 / secs),
                            "kept_pairs": len(pairs), "median_points": int(np.median([len(c) for c in coarse]))}

    if points is None:  # fallback: the box room frames fused
        points = np.concatenate([np.concatenate([c.coord, frame_features(c.copy(), segments=False).normal], 1)
                                 for c in clouds])[:100_000]
    coord, normal = points[:, :3].copy(), points[:, 3:].copy()
    secs, seg = timed(lambda: segment_points(coord, normal), args.repeats)
    facts["segmentation"] = {"points": len(coord), "seconds": round(secs, 4), "points_per_s": round(len(coord) / secs),
                             "segments": len(np.unique(seg))}
    facts["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(facts))
    else:
        for key, value in facts.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
