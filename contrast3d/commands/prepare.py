"""``contrast3d prepare rgbd|scenes``: turn raw inputs into training-ready scene folders.

``prepare rgbd --frames DIR --out DIR``: every RGB-D sequence in DIR (ScanNet export
``color/ depth/ pose/ intrinsic/``, 7-Scenes, Redwood / ICL-NUIM; DIR may itself be one) becomes
a prepared frame-pair scene: every ``--frame-skip``-th frame as a voxel-downsampled world-frame
cloud with colour, camera-facing PCA normals and superpoints, mined overlapping pairs
(``pairs.txt``) and ``scene.json`` -- the input of the frame-pair dataset.

``prepare scenes --input PATH [PATH ...] --out DIR``: meshes (PLY / OFF / OBJ) and point clouds
become Pointcept scene folders with normals and ``superpoint.npy`` (labels carried through).

Both: ``--workers`` processes, a progress bar on a terminal, resumable (finished scenes are
skipped; interrupted ones leave only temporary folders, removed by the next run), bad inputs
reported and skipped (``--strict``: stop at the first, exit code 2), and a summary printed and
written to ``<out>/prepare_summary.json``.
"""
from __future__ import annotations

import argparse
import json


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (one sub-folder per scene)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input (exit code 2)")
    p.add_argument("--overwrite", action="store_true", help="redo scenes that are already finished")
    p.add_argument("--no-segments", action="store_true", help="do not compute superpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare RGB-D sequences or meshes / point clouds for pre-training",
                       description=__doc__.split("\n\n", 1)[1].strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="prepare_kind", metavar="KIND", required=True)
    r = kinds.add_parser("rgbd", help="RGB-D sequences -> frame clouds + overlapping pairs")
    r.add_argument("--frames", required=True, help="folder of RGB-D sequences (or one sequence)")
    r.add_argument("--frame-skip", type=int, default=25, help="use every n-th frame (default 25)")
    r.add_argument("--voxel-size", type=float, default=0.025, help="frame voxel size in metres (default 0.025)")
    r.add_argument("--depth-trunc", type=float, default=4.0, help="ignore depth beyond this, metres (default 4)")
    r.add_argument("--min-overlap", type=float, default=0.3, help="keep pairs with this overlap (default 0.3)")
    _common(r)
    r.set_defaults(func=run)
    s = kinds.add_parser("scenes", help="meshes / point clouds -> Pointcept scene folders")
    s.add_argument("--input", required=True, nargs="+", help="files, scene folders or folders of them")
    _common(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contrast3d.data.prepare import format_summary, run_prepare
    from contrast3d.data.scene_jobs import find_scene_inputs, find_sequences

    if args.workers < 1:
        raise SystemExit("error: --workers must be >= 1")
    if args.prepare_kind == "rgbd":
        if args.frame_skip < 1 or args.voxel_size <= 0:
            raise SystemExit("error: --frame-skip must be >= 1 and --voxel-size > 0")
        inputs, ignored = find_sequences(args.frames, exclude=args.out)
        options = {"frame_skip": args.frame_skip, "voxel_size": args.voxel_size,
                   "depth_trunc": args.depth_trunc if args.depth_trunc > 0 else None,
                   "min_overlap": args.min_overlap, "segments": not args.no_segments}
    else:
        inputs, ignored = find_scene_inputs(args.input, exclude=args.out)
        options = {"segments": not args.no_segments}
    kind = "rgbd" if args.prepare_kind == "rgbd" else "scene"
    summary = run_prepare(kind, inputs, args.out, options, workers=args.workers, strict=args.strict,
                          overwrite=args.overwrite, quiet=args.quiet, ignored=ignored)
    print(json.dumps(summary) if args.json else format_summary(summary))
    complete = summary["scenes"]["done"] + summary["scenes"]["already_done"]
    return 0 if complete or not inputs else 1
