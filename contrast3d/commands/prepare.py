"""``contrast3d prepare rgbd|scenes``: turn raw inputs into training-ready scene folders.

``prepare rgbd --frames DIR --out DIR``: every RGB-D sequence in DIR (ScanNet export
``color/ depth/ pose/ intrinsic/``, 7-Scenes, Redwood / ICL-NUIM; DIR may itself be one) becomes
a prepared frame-pair scene: every ``--frame-skip``-th frame as a voxel-downsampled world-frame
cloud with colour, camera-facing PCA normals and superpoints, mined overlapping pairs
(``pairs.txt``) and ``scene.json`` -- the input of the frame-pair dataset. ``--voxel-size`` is
the training voxel (normals and superpoints are computed at it); frames are stored denser, at
``--store-voxel`` (default a quarter of the training voxel; 0 = every depth pixel, as the
official PointContrast code), because training rotates and scales a frame before voxelising
it, and a frame stored at the training voxel then loses surface voxels. Measured on 10 real
7-Scenes frames (random rotation about x, y, z; 2.5 cm training voxel), the share of the
2.5 cm voxels of the full-resolution frame that are missing at scale 0.8 / 1.0 / 1.2:
2.5 cm storage 27 / 37 / 48 %, 1.25 cm 9 / 12 / 15 %, 6.25 mm (the default) 2.3 / 3.0 / 3.8 %,
5 mm 1.2 / 1.5 / 1.9 %; points stored per frame 14k / 48k / 129k / 168k of 274k pixels.
Depth PNGs hold ``--depth-scale`` units per metre (default 1000, millimetres: ScanNet, 7-Scenes,
Redwood; TUM-style sequences such as the TUM-format ICL-NUIM copies use 5000).

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

from contrast3d.commands._args import float_range, fraction, output_dir, plain_text, positive_float, positive_int
from contrast3d.errors import DataError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (one sub-folder per scene)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel processes (default 1)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input (exit code 2)")
    p.add_argument("--overwrite", action="store_true", help="redo scenes that are already finished")
    p.add_argument("--no-segments", action="store_true", help="do not compute superpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare RGB-D sequences or meshes / point clouds for pre-training",
                       description=plain_text(__doc__.split("\n\n", 1)[1].strip()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="prepare_kind", metavar="KIND", required=True)
    rgbd_doc, scenes_doc, both_doc = (plain_text(part.strip()) for part in __doc__.split("\n\n")[1:4])
    r = kinds.add_parser("rgbd", help="RGB-D sequences -> frame clouds + overlapping pairs",
                         description=f"{rgbd_doc}\n\n{both_doc}", formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--frames", required=True, help="folder of RGB-D sequences (or one sequence)")
    r.add_argument("--frame-skip", type=positive_int, default=25, help="use every n-th frame (default 25)")
    r.add_argument("--voxel-size", type=positive_float, default=0.025,
                   help="training voxel size in metres (default 0.025); normals and superpoints use it")
    r.add_argument("--store-voxel", type=float_range(0.0), default=None,
                   help="spacing the frames are stored at, metres (default: --voxel-size / 4; 0 = every pixel)")
    r.add_argument("--depth-trunc", type=float_range(0.0), default=4.0,
                   help="ignore depth beyond this, metres (default 4; 0 = keep all depth)")
    r.add_argument("--depth-scale", type=positive_float, default=1000.0,
                   help="depth PNG units per metre (default 1000 = millimetres: ScanNet, 7-Scenes, Redwood; "
                        "5000 for TUM-style ICL-NUIM)")
    r.add_argument("--min-overlap", type=fraction, default=0.3,
                   help="keep pairs with this overlap, a fraction in [0, 1] (default 0.3)")
    _common(r)
    r.set_defaults(func=run)
    s = kinds.add_parser("scenes", help="meshes / point clouds -> Pointcept scene folders",
                         description=f"{scenes_doc}\n\n{both_doc}",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--input", required=True, nargs="+", help="files, scene folders or folders of them")
    _common(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contrast3d.data.prepare import format_summary, run_prepare
    from contrast3d.data.scene_jobs import find_scene_inputs, find_sequences

    output_dir(args.out)
    if args.prepare_kind == "rgbd":
        store = args.voxel_size / 4 if args.store_voxel is None else args.store_voxel
        if not 0 <= store <= args.voxel_size:
            raise DataError("--store-voxel", f"must be between 0 and --voxel-size {args.voxel_size}, got {store}")
        inputs, ignored = find_sequences(args.frames, exclude=args.out)
        options = {"frame_skip": args.frame_skip, "voxel_size": args.voxel_size, "store_voxel": store,
                   "depth_trunc": args.depth_trunc if args.depth_trunc > 0 else None, "depth_scale": args.depth_scale,
                   "min_overlap": args.min_overlap, "segments": not args.no_segments}
    else:
        inputs, ignored = find_scene_inputs(args.input, exclude=args.out)
        options = {"segments": not args.no_segments}
    kind = "rgbd" if args.prepare_kind == "rgbd" else "scene"
    summary = run_prepare(kind, inputs, args.out, options, workers=args.workers, strict=args.strict,
                          overwrite=args.overwrite, quiet=args.quiet, ignored=ignored)
    print(json.dumps(summary) if args.json else format_summary(summary))
    complete = summary["scenes"]["done"] + summary["scenes"]["already_done"]
    if inputs and not complete:  # nothing usable came out: a user error, named on one line (exit 2)
        first = summary["skipped_inputs"][0] if summary["skipped_inputs"] else {"source": args.out, "reason": "?"}
        raise DataError(first["source"], f"{first['reason']} (no scene could be prepared: "
                                         f"{summary['scenes']['failed']} failed; see {args.out}/prepare_summary.json)")
    return 0
