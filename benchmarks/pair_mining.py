"""Benchmark frame-pair mining (contrast3d.data.pairs.mine_pairs) against the KD-tree reference.

Synthetic: 100 partial views of a furnished box room (surfaces sampled at 2.5 cm, cut by
camera frustum, range and back-face visibility, 5 cm voxel downsampled: a few thousand points
per frame) along an elliptic camera path. Real: the 60 frames of ../shared/data/
7scenes_chess_60frames when present. ``--json`` prints one JSON object as the last line.

    python benchmarks/pair_mining.py --json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contrast3d.data.pairs import mine_pairs, mine_pairs_reference  # noqa: E402
from contrast3d.data.rgbd import frame_to_cloud, voxel_downsample_index  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "7scenes_chess_60frames"


def _box_surfaces(lo: np.ndarray, hi: np.ndarray, step: float, rng: np.random.Generator,
                  inward: bool) -> tuple[np.ndarray, np.ndarray]:
    """Points and normals on the 6 faces of an axis box (normals inward for a room)."""
    pts, nrm = [], []
    for axis in range(3):
        a, b = [k for k in range(3) if k != axis]
        ua = np.arange(lo[a], hi[a], step)
        ub = np.arange(lo[b], hi[b], step)
        ga, gb = np.meshgrid(ua, ub, indexing="ij")
        for side, value in ((-1, lo[axis]), (1, hi[axis])):
            p = np.zeros((ga.size, 3))
            p[:, a] = ga.ravel() + rng.uniform(0, step, ga.size)
            p[:, b] = gb.ravel() + rng.uniform(0, step, ga.size)
            p[:, axis] = value
            n = np.zeros((ga.size, 3))
            n[:, axis] = -side if inward else side
            pts.append(p)
            nrm.append(n)
    return np.concatenate(pts), np.concatenate(nrm)


def synthetic_room_frames(n_frames: int = 100, seed: int = 0, voxel: float = 0.05) -> list[np.ndarray]:
    """``n_frames`` world-coordinate ``(N_f, 3)`` float32 partial views of a synthetic room."""
    rng = np.random.default_rng(seed)
    room, room_n = _box_surfaces(np.zeros(3), np.array([6.0, 5.0, 2.6]), 0.025, rng, inward=True)
    parts, normals = [room], [room_n]
    for lo, hi in (([0.3, 0.3, 0.0], [1.5, 1.0, 0.8]), ([4.2, 3.6, 0.0], [5.6, 4.7, 0.75]),
                   ([2.6, 0.2, 0.0], [3.4, 0.7, 1.9])):
        p, n = _box_surfaces(np.array(lo), np.array(hi), 0.025, rng, inward=False)
        parts.append(p)
        normals.append(n)
    pts, nrm = np.concatenate(parts), np.concatenate(normals)
    frames = []
    for t in np.linspace(0, 2 * np.pi, n_frames, endpoint=False):
        eye = np.array([3.0 + 1.6 * np.cos(t), 2.5 + 1.2 * np.sin(t), 1.4])
        yaw = t + np.pi / 2 + 0.6 * np.sin(3 * t)  # roughly along the path, swaying
        fwd = np.array([np.cos(yaw) * np.cos(-0.3), np.sin(yaw) * np.cos(-0.3), np.sin(-0.3)])
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        rel = pts - eye
        x, y, z = rel @ right, rel @ down, rel @ fwd
        vis = (z > 0.4) & (z < 4.0) & (np.abs(x) < 0.55 * z) & (np.abs(y) < 0.41 * z)
        vis &= np.einsum("ij,ij->i", nrm, -rel) > 0
        view = pts[vis] + rng.normal(0, 0.003, (int(vis.sum()), 3))
        frames.append(view[voxel_downsample_index(view, voxel)].astype(np.float32))
    return frames


def _median_time(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()``; also keeps the median process CPU seconds (all threads)."""
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    _median_time.cpu = statistics.median(cpu)  # type: ignore[attr-defined]
    return statistics.median(times)


def _case(coords: list[np.ndarray], repeats: int) -> dict:
    mine_pairs(coords)  # warm-up (numba compile / cache load)
    sec = _median_time(lambda: mine_pairs(coords), repeats)
    n = len(coords)
    cand = n * (n - 1) // 2
    kept = mine_pairs(coords)
    return {"frames": n, "candidate_pairs": cand, "points_per_frame_mean": float(np.mean([len(c) for c in coords])),
            "points_total": int(sum(len(c) for c in coords)), "seconds": round(sec, 4),
            "cpu_seconds": round(_median_time.cpu, 4),  # type: ignore[attr-defined]
            "pairs_per_s": round(cand / sec, 1), "kept": len(kept)}


def _reference(coords: list[np.ndarray], subset: int) -> dict:
    sub = coords[:subset]
    t0 = time.perf_counter()
    ref = mine_pairs_reference(sub)
    ref_sec = time.perf_counter() - t0
    fast_sec = _median_time(lambda: mine_pairs(sub), 3)
    fast = mine_pairs(sub)
    equal = fast.shape == ref.shape and np.array_equal(fast[:, :2], ref[:, :2])
    return {"subset_frames": len(sub), "subset_pairs": len(sub) * (len(sub) - 1) // 2,
            "reference_seconds": round(ref_sec, 3), "fast_seconds": round(fast_sec, 4),
            "speedup": round(ref_sec / fast_sec, 1), "decisions_equal": bool(equal),
            "max_overlap_diff": float(np.abs(fast[:, 2] - ref[:, 2]).max()) if equal and len(ref) else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-subset", type=int, default=30, help="frames for the slow reference")
    args = ap.parse_args()
    import os

    import numba
    result: dict = {"threads": numba.get_num_threads(), "loadavg_1min": os.getloadavg()[0], "voxel_size": 0.05,
                    "radius": 0.075, "min_overlap": 0.3}
    synth = synthetic_room_frames(100)
    result["synthetic"] = _case(synth, args.repeats)
    result["synthetic"]["reference"] = _reference(synth, args.ref_subset)
    if SHARED.is_dir():
        from contrast3d.io.frames import open_frame_folder
        seq = open_frame_folder(SHARED, load_color=False)
        real = [frame_to_cloud(f, voxel_size=0.05).coord for f in seq]
        result["7scenes_chess_60"] = _case(real, args.repeats)
        result["7scenes_chess_60"]["reference"] = _reference(real, args.ref_subset)
    else:
        result["7scenes_chess_60"] = None
    if not args.json:
        print(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
