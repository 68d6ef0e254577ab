"""Readers and writers of point clouds and meshes; every malformed input raises
:class:`~contrast3d.errors.DataError` naming the file and the reason.

* PLY (ascii / binary, points and meshes): :func:`read_ply`, :func:`read_ply_mesh`, :func:`write_ply`
* OFF / OBJ meshes: :func:`read_off`, :func:`read_obj`
* Pointcept scene folders: :func:`read_pointcept_scene`, :func:`write_pointcept_scene`
* ``.npz`` archives of per-point arrays (e.g. prepared frame clouds): :func:`read_npz_scene`
* ScanNet: :func:`read_scannet_scan` (raw scans), :func:`read_scannet_objects` (object export)
* S3DIS rooms: :func:`read_s3dis_room`; SemanticKITTI scans: :func:`read_semantickitti`
* :func:`read_any` dispatches on extension / folder layout; label tables in :mod:`contrast3d.io.labels`.
"""
from contrast3d.io.dispatch import read_any
from contrast3d.io.mesh_text import read_obj, read_off
from contrast3d.io.npz import read_npz_scene
from contrast3d.io.ply import read_ply, read_ply_auto, read_ply_mesh
from contrast3d.io.ply_write import write_ply
from contrast3d.io.pointcept import read_pointcept_scene, write_pointcept_scene
from contrast3d.io.s3dis import read_s3dis_room
from contrast3d.io.scannet import read_scannet_objects, read_scannet_scan
from contrast3d.io.semantickitti import read_semantickitti

__all__ = ["read_any", "read_ply", "read_ply_auto", "read_ply_mesh", "write_ply", "read_off", "read_obj",
           "read_pointcept_scene", "write_pointcept_scene", "read_npz_scene", "read_scannet_scan",
           "read_scannet_objects", "read_s3dis_room", "read_semantickitti"]
