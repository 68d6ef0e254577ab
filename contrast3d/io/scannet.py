"""ScanNet readers: raw scan folders and the VLA-3D/SpaceLM object-grouped export.

Raw scan folder ``<scene>/`` (ScanNet v2 release):

* ``<scene>_vh_clean_2.ply``: mesh vertices (x y z, red green blue [alpha]) -> coord, color
* ``<scene>_vh_clean_2.labels.ply``: vertex property ``label`` = NYU40 id -> ScanNet-20 segment
* ``<scene>_vh_clean_2.0.010000.segs.json``: ``segIndices`` per vertex -> superpoint
* ``<scene>.aggregation.json``: ``segGroups`` [{objectId, label, segments}] -> instance

Object-grouped export (``<scene>_pc_result.ply`` with points grouped by object,
``<scene>_object_split.npy`` rows [object_id, end_index], ``<scene>_object_result.csv`` with
per-object ``nyu40_id``) -> instance = object id, segment = ScanNet-20 of the NYU40 id.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.errors import DataError
from contrast3d.io._common import PathLike, load_npy, read_text
from contrast3d.io.labels import nyu40_to_scannet20
from contrast3d.io.ply import read_ply
from contrast3d.structures import PointCloud


def _scene_name(folder: Path, suffix: str) -> str:
    hits = sorted(folder.glob(f"*{suffix}"))
    if not hits:
        raise DataError(folder, f"no '*{suffix}' file: not a ScanNet scan folder")
    return hits[0].name[: -len(suffix)]


def _json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON ({err.msg} at line {err.lineno})") from None


def is_scannet_scan(path: PathLike) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("*_vh_clean_2.ply"))


def read_scannet_scan(path: PathLike) -> PointCloud:
    """Read a raw ScanNet scan folder as a validated :class:`PointCloud`.

    ``segment``: ScanNet-20 ids 0..19 from the NYU40 ids of ``labels.ply`` (other ids -1);
    ``instance``: ``objectId`` of the aggregation group containing the vertex's segment
    (-1 unassigned); ``superpoint``: ``segIndices``; ``extra['segment_nyu40']``: raw NYU40 ids.
    Label files that are absent (test scans) are simply skipped.
    """
    folder = Path(path)
    scene = _scene_name(folder, "_vh_clean_2.ply")
    cloud = read_ply(folder / f"{scene}_vh_clean_2.ply")
    cloud.extra.pop("alpha", None)
    cloud.meta.update(path=str(folder), name=scene)
    n = len(cloud)
    labels_file = folder / f"{scene}_vh_clean_2.labels.ply"
    if labels_file.exists():
        labelled = read_ply(labels_file)
        if len(labelled) != n:
            raise DataError(labels_file, f"length mismatch: {len(labelled)} vertices, mesh has {n}")
        if labelled.segment is None:
            raise DataError(labels_file, "no 'label' vertex property")
        cloud.extra["segment_nyu40"] = labelled.segment
        cloud.segment = nyu40_to_scannet20(labelled.segment)
    segs_file = folder / f"{scene}_vh_clean_2.0.010000.segs.json"
    if segs_file.exists():
        seg = _seg_indices(segs_file, n)
        cloud.superpoint = seg
        agg_file = folder / f"{scene}.aggregation.json"
        if agg_file.exists():
            cloud.instance = _instances(agg_file, seg)
    return cloud.validate(str(folder))


def _seg_indices(file: Path, n: int) -> np.ndarray:
    doc = _json(file)
    seg = doc.get("segIndices") if isinstance(doc, dict) else None
    if not isinstance(seg, list):
        raise DataError(file, "no 'segIndices' list")
    try:
        arr = np.array(seg, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise DataError(file, "'segIndices' must be a list of integers") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(file, f"length mismatch: {arr.size} segIndices for {n} vertices")
    if arr.size and arr.min() < 0:
        raise DataError(file, "negative segment index")
    return arr


def _instances(file: Path, seg: np.ndarray) -> np.ndarray:
    doc = _json(file)
    groups = doc.get("segGroups") if isinstance(doc, dict) else None
    if not isinstance(groups, list):
        raise DataError(file, "no 'segGroups' list")
    seg_to_obj = np.full(int(seg.max()) + 1 if seg.size else 0, -1, np.int64)
    for i, group in enumerate(groups):
        try:
            obj = int(group.get("objectId", group.get("id")))
            segments = np.array(group["segments"], dtype=np.int64).reshape(-1)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            raise DataError(file, f"segGroups[{i}] needs an integer 'objectId' and a 'segments' list") from None
        segments = segments[(segments >= 0) & (segments < seg_to_obj.shape[0])]
        seg_to_obj[segments] = obj
    return seg_to_obj[seg] if seg.size else np.zeros(0, np.int64)


def is_scannet_objects(path: PathLike) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("*_object_split.npy")) \
        and any(Path(path).glob("*_pc_result.ply"))


def read_scannet_objects(path: PathLike) -> PointCloud:
    """Read the object-grouped ScanNet export (VLA-3D / SpaceLM ``sample_data``).

    ``instance`` = object id, ``segment`` = ScanNet-20 id of the object's NYU40 id,
    ``extra['segment_nyu40']`` = the NYU40 id (int64). Points after the last split are
    unassigned (-1).
    """
    folder = Path(path)
    scene = _scene_name(folder, "_pc_result.ply")
    cloud = read_ply(folder / f"{scene}_pc_result.ply")
    cloud.meta.update(path=str(folder), name=scene)
    n = len(cloud)
    split_file = folder / f"{scene}_object_split.npy"
    split = load_npy(split_file)
    if split.ndim != 2 or split.shape[1] != 2 or split.dtype.kind not in "iu":
        raise DataError(split_file, f"expected (K, 2) integer rows [object_id, end], got {split.shape} {split.dtype}")
    ends = split[:, 1].astype(np.int64)
    if ends.size and (np.any(np.diff(ends) < 0) or ends[0] < 0 or ends[-1] > n):
        raise DataError(split_file, f"end indices must be non-decreasing and within [0, {n}]")
    counts = np.diff(np.concatenate([[0], ends]))
    tail = n - (int(ends[-1]) if ends.size else 0)
    obj_ids = split[:, 0].astype(np.int64)
    cloud.instance = np.concatenate([np.repeat(obj_ids, counts), np.full(tail, -1, np.int64)])
    nyu = _object_nyu40(folder / f"{scene}_object_result.csv")
    lut = np.array([nyu.get(int(o), -1) for o in obj_ids], np.int64)
    cloud.extra["segment_nyu40"] = np.concatenate([np.repeat(lut, counts), np.full(tail, -1, np.int64)])
    cloud.segment = nyu40_to_scannet20(cloud.extra["segment_nyu40"])
    return cloud.validate(str(folder))


def _object_nyu40(file: Path) -> dict[int, int]:
    rows = csv.DictReader(io.StringIO(read_text(file)))
    out: dict[int, int] = {}
    try:
        for row in rows:
            out[int(row["object_id"])] = int(row["nyu40_id"])
    except (KeyError, TypeError, ValueError, csv.Error):
        raise DataError(file, f"bad row {rows.line_num}: needs integer 'object_id' and 'nyu40_id' columns") from None
    return out
