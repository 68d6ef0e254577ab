"""``read_any``: pick the reader from the file extension or the folder layout."""
from __future__ import annotations

from pathlib import Path

from contrast3d.errors import DataError
from contrast3d.io._common import PathLike
from contrast3d.io.mesh_text import read_obj, read_off
from contrast3d.io.npz import read_npz_scene
from contrast3d.io.ply import read_ply_auto
from contrast3d.io.pointcept import is_pointcept_scene, read_pointcept_scene
from contrast3d.io.s3dis import is_s3dis_room, read_s3dis_room
from contrast3d.io.scannet import is_scannet_objects, is_scannet_scan, read_scannet_objects, read_scannet_scan
from contrast3d.io.semantickitti import find_label_file, read_semantickitti
from contrast3d.structures import PointCloud, TriangleMesh

#: File extensions ``read_any`` understands.
FILE_FORMATS = (".ply", ".off", ".obj", ".bin", ".npz")
#: Folder layouts ``read_any`` understands.
FOLDER_FORMATS = ("Pointcept scene (coord.npy)", "S3DIS room (Annotations/)",
                  "ScanNet scan (*_vh_clean_2.ply)", "ScanNet object export (*_pc_result.ply)")


def read_any(path: PathLike) -> PointCloud | TriangleMesh:
    """Read any supported file or folder.

    Files: ``.ply`` (a :class:`TriangleMesh` when it has faces, else a :class:`PointCloud`),
    ``.off`` / ``.obj`` (meshes), ``.bin`` (SemanticKITTI scan, labels picked up from
    ``NNNNNN.label`` beside it or in ``../labels/``), ``.npz`` (named per-point arrays, e.g. the frame
    clouds of ``contrast3d prepare rgbd``: :func:`~contrast3d.io.npz.read_npz_scene`). Folders: see
    :data:`FOLDER_FORMATS`.
    Raises :class:`DataError` for a missing path or an unsupported format.
    """
    p = Path(path)
    if p.is_dir():
        if is_pointcept_scene(p):
            return read_pointcept_scene(p)
        if is_s3dis_room(p):
            return read_s3dis_room(p)
        if is_scannet_scan(p):
            return read_scannet_scan(p)
        if is_scannet_objects(p):
            return read_scannet_objects(p)
        raise DataError(p, "unsupported folder layout (expected one of: " + "; ".join(FOLDER_FORMATS) + ")")
    if not p.exists():
        raise DataError(p, "no such file or folder")
    ext = p.suffix.lower()
    if ext == ".ply":
        return read_ply_auto(p)
    if ext == ".off":
        return read_off(p)
    if ext == ".obj":
        return read_obj(p)
    if ext == ".bin":
        return read_semantickitti(p, find_label_file(p))
    if ext == ".npz":
        return read_npz_scene(p)
    raise DataError(p, f"unsupported format '{ext or p.name}' (expected {', '.join(FILE_FORMATS)} or a scene folder)")
