"""``contrast3d convert INPUT OUTPUT [--to ply|pointcept] [--ascii]``.

Reads anything :func:`contrast3d.io.read_any` understands and writes a PLY file (labels and
extras as scalar properties, faces for meshes) or a Pointcept scene folder (mesh vertices only).
Without ``--to`` the target is PLY when OUTPUT ends in ``.ply``, a Pointcept folder otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contrast3d.errors import DataError
from contrast3d.structures import TriangleMesh


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a scan / mesh / scene folder to PLY or a Pointcept scene folder",
                       description=__doc__.split("\n\n", 1)[1].strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="file (.ply .off .obj .bin) or scene folder")
    p.add_argument("output", metavar="OUTPUT", help="output .ply file or Pointcept scene folder")
    p.add_argument("--to", choices=("ply", "pointcept"), default=None,
                   help="output format (default: from OUTPUT's extension)")
    p.add_argument("--ascii", action="store_true", help="write ascii PLY instead of binary")
    p.set_defaults(func=run)


def target_format(output: str, to: str | None) -> str:
    """``ply`` or ``pointcept`` for ``output`` given the ``--to`` choice."""
    if to is not None:
        return to
    return "ply" if Path(output).suffix.lower() == ".ply" else "pointcept"


def run(args: argparse.Namespace) -> int:
    from contrast3d.io import read_any, write_ply, write_pointcept_scene

    data = read_any(args.input)
    fmt = target_format(args.output, args.to)
    if args.ascii and fmt != "ply":
        print("error: --ascii only applies to PLY output", file=sys.stderr)
        return 1
    try:
        if fmt == "ply":
            write_ply(args.output, data, binary=not args.ascii)
        else:
            if isinstance(data, TriangleMesh):
                cloud = data.to_point_cloud()
                cloud.superpoint = cloud.extra.pop("superpoint", None)
            else:
                cloud = data
            write_pointcept_scene(args.output, cloud)
    except DataError:
        raise
    except (ValueError, OSError) as err:  # unwritable output, existing non-scene folder, ...
        print(f"error: {args.output}: {err}", file=sys.stderr)
        return 1
    if isinstance(data, TriangleMesh):
        what = f"mesh with {data.num_vertices} vertices and {data.num_faces} faces"
        if fmt == "pointcept":
            what += " (vertices only)"
    else:
        fields = [k for k in data.point_arrays() if k != "coord"]
        what = f"{len(data)} points" + (f" with {', '.join(fields)}" if fields else "")
    print(f"wrote {fmt} {args.output}: {what}")
    return 0
