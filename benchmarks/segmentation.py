"""Benchmark of the Felzenszwalb-Huttenlocher over-segmentation (contrast3d.data.segmentation).

Measures (median of ``--repeats`` runs after a warm-up):

* a synthetic 100k-point room-like cloud (floor, walls, boxes, a sphere, 2 mm noise):
  ``segment_points`` with PCA normals included -- seconds, points/s, segments;
* the real scan mesh ``../shared/data/open3d_fragment_mesh/frag_115.ply`` when present:
  ``segment_mesh`` seconds, vertices, faces, segments (ScanNet defaults);
* with ``--scannet-bin PATH`` the ScanNet C++ segmentator on the same mesh: process wall time,
  the segmentation-only time when the binary prints ``SEGMENT_SECONDS <s>`` on stderr (a timed
  build), whether its ``segIndices`` equal ours, and the time ratios (ours / ScanNet).

``--json`` prints one JSON object as the last line.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contrast3d.data.segmentation import segment_mesh, segment_points  # noqa: E402

FRAG = REPO.parent / "shared" / "data" / "open3d_fragment_mesh" / "frag_115.ply"


def room_cloud(n: int = 100_000, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 points on a 6 x 5 x 3 m room with two boxes and a sphere, 2 mm noise."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, 2))
    part = rng.integers(0, 8, n)
    p = np.zeros((n, 3))
    sx, sy, sz = 6.0, 5.0, 3.0
    p[part == 0] = np.c_[u[part == 0] * (sx, sy), np.zeros((part == 0).sum())]            # floor
    p[part == 1] = np.c_[u[part == 1, 0] * sx, np.zeros((part == 1).sum()), u[part == 1, 1] * sz]
    p[part == 2] = np.c_[np.zeros((part == 2).sum()), u[part == 2, 0] * sy, u[part == 2, 1] * sz]
    p[part == 3] = np.c_[u[part == 3, 0] * sx, np.full((part == 3).sum(), sy), u[part == 3, 1] * sz]
    p[part == 4] = np.c_[u[part == 4] * (1.2, 0.8) + (1, 1), np.full((part == 4).sum(), 0.75)]  # table top
    box = part == 5  # a 1 m cube: pick a face per point
    face = rng.integers(0, 5, box.sum())
    q = np.c_[u[box], np.where(face % 2 == 0, 0.0, 1.0)]
    q = np.where((face // 2 == 0)[:, None], q[:, [0, 1, 2]],
                 np.where((face // 2 == 1)[:, None], q[:, [2, 0, 1]], q[:, [0, 2, 1]]))
    p[box] = q + (4.0, 3.0, 0.0)
    d = rng.standard_normal(((part >= 6).sum(), 3))
    p[part >= 6] = 0.5 * d / np.linalg.norm(d, axis=1, keepdims=True) + (2.0, 3.5, 1.0)     # sphere
    p += 0.002 * rng.standard_normal(p.shape)
    return p.astype(np.float32)


def median_time(fn, repeats: int) -> tuple[float, object, float]:
    """Median wall seconds, last output, median process CPU seconds (all threads) of ``fn()``."""
    out = fn()  # warm-up (numba compilation / cache load)
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(times)), out, float(np.median(cpu))


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from contrast3d.io.ply import read_ply_mesh
        mesh = read_ply_mesh(path)
        return mesh.vertices, mesh.faces
    except ImportError:
        from plyfile import PlyData
        ply = PlyData.read(str(path))
        return (np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float32),
                np.stack(ply["face"]["vertex_indices"]).astype(np.int64))


def run_scannet(binary: str, mesh_path: Path, repeats: int) -> dict:
    """Run ScanNet's segmentator on a copy of the mesh (it writes its JSON beside the input)."""
    with tempfile.TemporaryDirectory() as tmp:
        ply = Path(tmp) / mesh_path.name
        shutil.copy(mesh_path, ply)
        walls, segs = [], []
        for _ in range(repeats + 1):
            t = time.perf_counter()
            res = subprocess.run([binary, str(ply)], capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t)
            m = re.search(r"SEGMENT_SECONDS\s+([0-9.eE+-]+)", res.stderr)
            if m:
                segs.append(float(m.group(1)))
        out = json.loads(next(Path(tmp).glob("*.segs.json")).read_text())
    return {"wall_seconds": float(np.median(walls[1:])),
            "segment_seconds": float(np.median(segs[1:])) if segs else None,
            "seg_indices": np.asarray(out["segIndices"], dtype=np.int64)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mesh", type=Path, default=FRAG)
    ap.add_argument("--scannet-bin", default=None, help="ScanNet Segmentator binary (optional)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    cloud = room_cloud(args.points)
    secs, seg, cpu = median_time(lambda: segment_points(cloud), args.repeats)
    result: dict = {"points": {"n": len(cloud), "seconds": secs, "cpu_seconds": cpu,
                               "points_per_s": len(cloud) / secs, "segments": int(len(np.unique(seg)))},
                    "mesh": None, "scannet": None}
    if args.mesh.exists():
        v, f = read_mesh(args.mesh)
        secs, seg, cpu = median_time(lambda: segment_mesh(v, f), args.repeats)
        secs_stable, _, _ = median_time(lambda: segment_mesh(v, f, tie_order="stable"), args.repeats)
        result["mesh"] = {"path": str(args.mesh), "vertices": len(v), "faces": len(f), "seconds": secs,
                          "cpu_seconds": cpu, "seconds_stable_ties": secs_stable,
                          "segments": int(len(np.unique(seg)))}
        if args.scannet_bin:
            sc = run_scannet(args.scannet_bin, args.mesh, args.repeats)
            ref = sc.pop("seg_indices")
            pairs = len(np.unique(np.stack([seg, ref], 1), axis=0))
            sc.update(segments=int(len(np.unique(ref))), identical_seg_indices=bool(np.array_equal(seg, ref)),
                      identical_partition=bool(pairs == len(np.unique(seg)) == len(np.unique(ref))),
                      ratio_vs_wall=secs / sc["wall_seconds"],
                      ratio_vs_segment=secs / sc["segment_seconds"] if sc["segment_seconds"] else None)
            result["scannet"] = sc
    if not args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
