"""``contrast3d convert INPUT OUTPUT [--to ply|pointcept] [--ascii]``.

Reads anything :func:`contrast3d.io.read_any` understands and writes a PLY file (labels and
extras as scalar properties, faces for meshes) or a Pointcept scene folder (mesh vertices only;
semantic labels as ``segment.npy``, the name ``contrast3d simulate`` writes too).
Without ``--to`` the target is PLY when OUTPUT ends in ``.ply`` and a Pointcept folder when it has
no extension; any other extension is an error (``--to pointcept`` allows a dotted folder name,
but not a point-cloud or mesh file extension). Every error (unreadable input, an output with the
wrong extension or that cannot be written) is one line and exit code 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from contrast3d.commands._args import output_dir, output_file, plain_text
from contrast3d.errors import DataError
from contrast3d.structures import TriangleMesh

#: Extensions of point-cloud / mesh files: never the name of a Pointcept scene folder.
FILE_EXTENSIONS = (".ply", ".off", ".obj", ".bin", ".npz", ".npy", ".pcd", ".las", ".laz", ".xyz", ".pts", ".txt",
                   ".pth", ".label")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a scan / mesh / scene folder to PLY or a Pointcept scene folder",
                       description=plain_text(__doc__.split("\n\n", 1)[1].strip()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="file (.ply .off .obj .bin .npz) or scene folder")
    p.add_argument("output", metavar="OUTPUT", help="output .ply file or Pointcept scene folder (no extension)")
    p.add_argument("--to", choices=("ply", "pointcept"), default=None,
                   help="output format (default: from OUTPUT's extension: .ply or none)")
    p.add_argument("--ascii", action="store_true", help="write ascii PLY instead of binary")
    p.set_defaults(func=run)


def target_format(output: str, to: str | None) -> str:
    """``ply`` or ``pointcept`` for ``output`` given the ``--to`` choice; :class:`DataError` naming
    OUTPUT when its extension does not fit the format."""
    suffix = Path(output).suffix.lower()
    if to == "ply" or (to is None and suffix == ".ply"):
        if suffix != ".ply":
            raise DataError(output, f"--to ply writes a PLY file: OUTPUT must end in .ply, not '{suffix or output}'")
        return "ply"
    if to is None and suffix:
        raise DataError(output, f"unknown output extension '{suffix}': convert writes a .ply file or a Pointcept "
                                f"scene folder (a name without extension, or --to pointcept for a dotted folder name)")
    if suffix in FILE_EXTENSIONS:
        raise DataError(output, f"a Pointcept scene is a folder: its name must not end in the file extension "
                                f"'{suffix}' (use OUTPUT.ply for a PLY file)")
    return "pointcept"


def run(args: argparse.Namespace) -> int:
    from contrast3d.io import read_any, write_ply, write_pointcept_scene

    fmt = target_format(args.output, args.to)
    if args.ascii and fmt != "ply":
        raise DataError("--ascii", "only applies to PLY output")
    if fmt == "ply":
        output_file(args.output, "OUTPUT")
    else:
        output_dir(args.output, "OUTPUT")
    data = read_any(args.input)
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
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DataError(args.output, f"cannot write the output: {reason.replace(f'{args.output}: ', '')}") from None
    if isinstance(data, TriangleMesh):
        what = f"mesh with {data.num_vertices} vertices and {data.num_faces} faces"
        if fmt == "pointcept":
            what += " (vertices only)"
    else:
        fields = [k for k in data.point_arrays() if k != "coord"]
        what = f"{len(data)} points" + (f" with {', '.join(fields)}" if fields else "")
    print(f"wrote {fmt} {args.output}: {what}")
    return 0
