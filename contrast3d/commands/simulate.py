"""``contrast3d simulate``: synthetic ScanNet-like scenes (labelled meshes, RGB-D frames,
Pointcept point clouds) in the ScanNet export layout.

Scene ``i`` (seed ``--seed + i``) is a furnished floor plan (one or more rooms) labelled with the ScanNet-20
classes (-1: ceiling and other unlabelled surfaces). ``OUT/<scene>/`` holds the RGB-D frames in the
ScanNet export layout (``color/*.jpg``, ``depth/*.png`` in millimetres, ``pose/*.txt``,
``intrinsic/``), the labelled mesh ``<scene>_mesh.ply`` and ``meta.json``; ``OUT/pointcept/<scene>/``
holds points sampled on the mesh surface (``coord``, ``color``, ``normal``, ``segment``,
``instance`` ``.npy``). The frames go to ``contrast3d prepare rgbd``, the Pointcept folders to
``contrast3d finetune`` / ``probe`` / ``prepare scenes``. The same seed gives the same scene.
"""
from __future__ import annotations

import argparse
import sys
import time

from contrast3d.commands._args import int_range, nonnegative_int, output_dir, plain_text, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="generate synthetic indoor scenes with RGB-D frames in the ScanNet layout",
                       description=plain_text(__doc__.split("\n\n", 1)[1].strip()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=positive_int, default=4, help="number of scenes (default 4)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per scene, plus pointcept/)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first scene; scene i uses seed+i (default 0)")
    p.add_argument("--frames", type=nonnegative_int, default=60, help="RGB-D frames per scene (default 60)")
    p.add_argument("--width", type=int_range(8), default=320, help="frame width in pixels (default 320)")
    p.add_argument("--height", type=int_range(8), default=240, help="frame height in pixels (default 240)")
    p.add_argument("--density", type=positive_float, default=1500.0,
                   help="surface points per square metre of the Pointcept clouds (default 1500)")
    p.add_argument("--no-frames", action="store_true", help="only meshes and point clouds, no RGB-D frames")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output_dir(args.out)
    frames = 0 if args.no_frames else args.frames
    from contrast3d.simulate.batch import simulate_scenes

    start = time.perf_counter()

    def report(done: int, total: int, path: str, secs: float) -> None:
        print(f"\r[{done}/{total}] {path} ({secs:.1f} s)", end="\n" if done == total else "", flush=True,
              file=sys.stderr)

    simulate_scenes(range(args.seed, args.seed + args.scenes), args.out, frames, args.width, args.height,
                    args.density, args.workers, report)
    jobs = range(args.scenes)
    print(f"wrote {len(jobs)} scene(s) to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
