"""Input discovery and the per-scene conversions run by :mod:`contrast3d.data.prepare`.

Two kinds of scene job, each writing one output folder (the caller picks the folder; it is a
temporary one that is renamed into place when the job returns):

* ``"rgbd"``: an RGB-D sequence folder -> a prepared frame-pair scene
  (:func:`contrast3d.data.frame_dataset.prepare_scene`: frame clouds with colour, camera-facing
  normals and superpoints, ``pairs.txt``, ``scene.json``; frames stored at ``store_voxel``,
  which may be finer than the training ``voxel_size``);
* ``"scene"``: a mesh (PLY / OFF / OBJ) or point cloud (anything
  :func:`contrast3d.io.read_any` reads) -> a Pointcept scene folder with normals (mesh vertex
  normals, else the file's, else PCA) and ``superpoint.npy``; labels are carried through.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io.dispatch import FILE_FORMATS
from contrast3d.io.frames import detect_layout

#: File extensions taken as scene inputs (those :func:`contrast3d.io.read_any` reads).
SCENE_EXTENSIONS = FILE_FORMATS
_SAFE_EXTRA = re.compile(r"^[A-Za-z0-9_.\-]+$")

Found = tuple[list[tuple[str, Path]], list[dict[str, str]]]


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}-{k}", k + 1
    taken.add(out)
    return out


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    p, f = path.resolve(), folder.resolve()
    return p == f or f in p.parents


def find_sequences(root: str | Path, exclude: str | Path | None = None) -> Found:
    """RGB-D sequences under ``root``: ``root`` itself if it is one, else its sub-folders.

    Returns ``([(scene_name, folder)], ignored)``; ``ignored`` lists the sub-folders that are
    no RGB-D sequence (``{"source", "reason"}``). Raises :class:`DataError` if ``root`` is no
    folder or holds no sequence.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    if detect_layout(root):
        return [(root.resolve().name, root)], []
    found, ignored = [], []
    taken: set[str] = set()
    exclude_dir = Path(exclude) if exclude is not None else None
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _inside(child, exclude_dir):
            continue
        if detect_layout(child):
            found.append((_unique(child.name, taken), child))
        else:
            ignored.append({"source": str(child), "reason": "not an RGB-D sequence folder"})
    if not found:
        raise DataError(root, "no RGB-D sequence found (expected ScanNet export, 7-Scenes or Redwood/ICL-NUIM "
                              "folders, or such a folder itself)")
    return found, ignored


def _is_scene_folder(path: Path) -> bool:
    from contrast3d.io.pointcept import is_pointcept_scene
    from contrast3d.io.s3dis import is_s3dis_room
    from contrast3d.io.scannet import is_scannet_objects, is_scannet_scan

    return any(f(path) for f in (is_pointcept_scene, is_s3dis_room, is_scannet_scan, is_scannet_objects))


def find_scene_inputs(paths: list[str | Path], exclude: str | Path | None = None) -> Found:
    """Mesh / point-cloud inputs among ``paths`` (files, scene folders, or folders of those).

    Returns ``([(scene_name, path)], ignored)``. A path that does not exist is returned as an
    input too (its job fails with the reader's DataError, so it is reported like a bad file).
    """
    found: list[tuple[str, Path]] = []
    ignored: list[dict[str, str]] = []
    taken: set[str] = set()
    exclude_dir = Path(exclude) if exclude is not None else None

    def add(p: Path) -> None:
        found.append((_unique(p.stem if p.is_file() else p.resolve().name, taken), p))

    for p in map(Path, paths):
        if not p.is_dir() or _is_scene_folder(p):
            if p.is_file() and p.suffix.lower() not in SCENE_EXTENSIONS:
                ignored.append({"source": str(p), "reason": f"unsupported format '{p.suffix}'"})
            else:
                add(p)
            continue
        for child in sorted(p.iterdir()):
            if child.name.startswith(".") or _inside(child, exclude_dir):
                continue
            if (child.is_file() and child.suffix.lower() in SCENE_EXTENSIONS) or \
                    (child.is_dir() and _is_scene_folder(child)):
                add(child)
            else:
                ignored.append({"source": str(child), "reason": "not a mesh, point cloud or scene folder"})
    return found, ignored


def run_rgbd(source: Path, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Prepare one RGB-D sequence into ``out``; return ``{"frames", "pairs", "skipped_frames"}``.

    ``options``: ``frame_skip``, ``voxel_size`` (the training voxel), ``store_voxel`` (spacing the
    frames are stored at; absent or ``None``: ``voxel_size``; ``0``: every depth pixel),
    ``depth_trunc``, ``min_overlap``, ``segments``, ``strict`` (a bad frame raises instead of
    being skipped).
    """
    from contrast3d.data.frame_dataset import prepare_scene

    info = prepare_scene(source, out, voxel_size=options.get("voxel_size", 0.025),
                         store_voxel_size=options.get("store_voxel"),
                         min_overlap=options.get("min_overlap", 0.3), frame_skip=options.get("frame_skip", 25),
                         depth_trunc=options.get("depth_trunc"), name=options.get("name"),
                         depth_scale=options.get("depth_scale", 1000.0), normals=True,
                         segments=options.get("segments", True),
                         on_error="raise" if options.get("strict") else "skip")
    return {"frames": len(info["frames"]), "pairs": int(info["num_pairs"]), "skipped_frames": info["skipped_frames"]}


def _unit_normals(normal: np.ndarray) -> np.ndarray:
    """Rescale to unit length; zero-length rows (vertices in no face) become ``(0, 0, 1)``."""
    n = np.asarray(normal, np.float64)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 0.0, 1.0])
    return out.astype(np.float32)


def run_scene(source: Path, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Convert one mesh / point cloud into a Pointcept scene folder ``out``.

    Meshes: vertices become the points; normals are the file's vertex normals or
    :func:`~contrast3d.data.normals.mesh_vertex_normals`; superpoints from
    :func:`~contrast3d.data.segmentation.segment_mesh`. Point clouds: the file's normals or
    PCA normals (``k=16``) oriented toward the cloud's centroid (inward for a room scan);
    superpoints from :func:`~contrast3d.data.segmentation.segment_points` (sign-invariant
    weights) unless the input has them. ``options["segments"] = False`` skips superpoints.
    Semantic labels keep the input's file name (``segment20.npy`` stays ``segment20.npy``).
    Returns ``{"points", "kind", "fields"}``.
    """
    from contrast3d.data.normals import estimate_normals, mesh_vertex_normals
    from contrast3d.data.segmentation import segment_mesh, segment_points
    from contrast3d.io import read_any, write_pointcept_scene
    from contrast3d.structures import POINT_FIELDS, TriangleMesh

    data = read_any(source)
    segments = options.get("segments", True)
    if isinstance(data, TriangleMesh):
        kind = "mesh"
        cloud = data.to_point_cloud()
        given = cloud.normal if cloud.normal is not None else mesh_vertex_normals(data.vertices, data.faces)
        cloud.normal = _unit_normals(given)
        stored = cloud.extra.pop("superpoint", None)
        if segments:
            cloud.superpoint = segment_mesh(data.vertices, data.faces, compact=True)
        elif stored is not None:
            cloud.superpoint = np.asarray(stored).astype(np.int64)
    else:
        kind = "points"
        cloud = data
        if cloud.normal is None:
            cloud.normal = estimate_normals(cloud.coord, k=16, viewpoint=cloud.coord.mean(axis=0))
        else:
            cloud.normal = _unit_normals(cloud.normal)
        if segments and cloud.superpoint is None:
            cloud.superpoint = segment_points(cloud.coord, cloud.normal, compact=True, orientation_invariant=True)
    cloud.extra = {k: v for k, v in cloud.extra.items()
                   if _SAFE_EXTRA.match(k) and k not in POINT_FIELDS and k not in ("coord", "segment20")}
    cloud.validate(str(source))
    write_pointcept_scene(out, cloud, segment_name=cloud.meta.get("segment_file", "segment"))
    return {"points": len(cloud), "kind": kind, "fields": sorted(cloud.point_arrays())}
