"""Prepared RGB-D scenes (frame clouds + mined pairs) and the torch ``Dataset`` of view pairs.

Prepared scene folder layout (written by :func:`prepare_scene`)::

    <scene_dir>/
        scene.json          {"format": "contrast3d-frames", "version": 1, "name", "frames": [ids],
                             "voxel_size", "store_voxel_size", "overlap_voxel_size",
                             "overlap_radius", "min_overlap",
                             "source", "layout", "frame_skip", "depth_trunc", "num_pairs",
                             "normals", "segments", "skipped_frames"}
        frames/<id>.npz     coord (N, 3) float32 world metres; color (N, 3) float32 [0, 1]
                            (optional); normal (unit, facing the camera) / superpoint
                            (optional); pose (4, 4) float64
        pairs.txt           one kept pair per line: "<id_i> <id_j> <overlap>"

Pairs are stored once; views are built at load time (no per-pair copies).

Stored density (``store_voxel_size``): training rotates and scales each frame and only then
voxelises it at the training voxel (``voxel_size``, 2.5 cm). A frame stored at that same
spacing keeps one point per *axis-aligned* voxel; rotated and scaled, those points no longer
cover every voxel the surface passes through: on real 7-Scenes frames 27-48 % of the 2.5 cm
surface voxels go missing at scale 0.8-1.2 (numbers per spacing in
:mod:`contrast3d.commands.prepare`). Frames are therefore stored at a finer spacing (the
command's default: a quarter of the training voxel, 2.3-3.8 % missing, 9x the points of 2.5 cm
storage; ``0`` keeps every depth pixel, as the official PointContrast code does), while
normals and superpoints are still computed on the training-voxel cloud (one representative per
``voxel_size`` voxel, so neighbourhood sizes and segment statistics do not change with the
storage density) and given to every stored point of that voxel. When ``store_voxel_size``
divides ``voxel_size`` the representatives are the points a ``voxel_size``-only preparation
keeps (up to floating-point rounding at voxel borders), so their normals and superpoints match.
``store_voxel_size = None`` (the function's default) stores at ``voxel_size``, as before. Cost:
on 7-Scenes frames, 5.7 MB per frame instead of 0.6 MB at a quarter voxel, and the per-point
augmentation before voxelisation takes about 5x longer per pair.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from contrast3d.data.pairs import PAIRS_FILE, load_pairs, mine_pairs, save_pairs
from contrast3d.data.rgbd import frame_to_cloud, voxel_downsample_index
from contrast3d.data.views import make_view_pair
from contrast3d.data.voxelize import voxelize
from contrast3d.errors import DataError, read_or_skip, why_all_failed
from contrast3d.io._common import check_regular_file
from contrast3d.io.frames import FrameSequence, open_frame_folder
from contrast3d.structures import MultiView, PointCloud

SCENE_FILE = "scene.json"
FORMAT = "contrast3d-frames"
_OPTIONAL = ("color", "normal", "superpoint")

Transform = Callable[[PointCloud, np.random.Generator], PointCloud]


def save_frame_cloud(path: str | Path, cloud: PointCloud) -> None:
    """Write one frame cloud as ``.npz`` (coord, optional color/normal/superpoint, pose)."""
    arrays: dict[str, Any] = {"coord": np.asarray(cloud.coord, np.float32)}  # Any: savez's **kwds stub
    for key in _OPTIONAL:
        if cloud.get(key) is not None:
            arrays[key] = np.asarray(cloud.get(key))
    if cloud.meta.get("pose") is not None:
        arrays["pose"] = np.asarray(cloud.meta["pose"], np.float64)
    np.savez(path, **arrays)


def load_frame_cloud(path: str | Path, name: str = "") -> PointCloud:
    """Read a frame ``.npz`` into a validated :class:`PointCloud` (world coordinates)."""
    check_regular_file(path, "frame cloud")  # a FIFO would block np.load forever
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 -- PIL / zip readers raise many types
        raise DataError(path, f"unreadable frame cloud ({exc.__class__.__name__}: {exc})") from None
    if "coord" not in data:
        raise DataError(path, "frame cloud has no 'coord' array")
    optional: dict[str, Any] = {k: data.get(k) for k in _OPTIONAL}
    cloud = PointCloud(coord=data["coord"], **optional,
                       meta={"name": name or Path(path).stem, "path": str(path), "frame": name or Path(path).stem})
    if "pose" in data:
        cloud.meta["pose"] = data["pose"]
    return cloud.validate(str(path))


def frame_features(cloud: PointCloud, normals: bool = True, segments: bool = True,
                   normal_k: int = 16) -> PointCloud:
    """Add PCA normals (``normal_k`` neighbours, oriented toward the camera centre
    ``meta['pose'][:3, 3]``) and FH superpoints
    (:func:`contrast3d.data.segmentation.segment_points`, compact ids) to a world-frame cloud.
    One kNN query serves both."""
    from contrast3d.data.normals import knn, pca_normals
    from contrast3d.data.segmentation import segment_points

    if not (normals or segments) or len(cloud) == 0:
        return cloud
    pose = cloud.meta.get("pose")
    eye = None if pose is None else np.asarray(pose, np.float64)[:3, 3]
    idx = knn(cloud.coord, max(normal_k, 11))
    normal = pca_normals(cloud.coord, idx[:, :normal_k], eye)
    if segments:
        cloud.superpoint = segment_points(cloud.coord, normal, compact=True, neighbors=idx)
    if normals:
        cloud.normal = normal
    return cloud


def voxel_features(cloud: PointCloud, voxel_size: float, normals: bool = True, segments: bool = True,
                   normal_k: int = 16) -> PointCloud:
    """:func:`frame_features` computed on one representative point per ``voxel_size`` voxel
    (the lowest index) and copied to every point of that voxel.

    For a cloud stored denser than the training voxel: normals and superpoints then do not
    depend on the storage density. Returns ``cloud`` with ``normal`` / ``superpoint`` set.
    """
    if not (normals or segments) or len(cloud) == 0:
        return cloud
    _, first, inverse, _ = voxelize(cloud.coord, voxel_size)
    order = np.argsort(first)  # representatives in ascending point order (as voxel_downsample_index)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    coarse = frame_features(cloud.select(first[order]), normals, segments, normal_k)
    if normals:
        assert coarse.normal is not None  # frame_features sets it when normals=True
        cloud.normal = coarse.normal[rank[inverse]]
    if segments:
        assert coarse.superpoint is not None  # frame_features sets it when segments=True
        cloud.superpoint = coarse.superpoint[rank[inverse]]
    return cloud


def prepare_scene(frames: FrameSequence | str | Path, out_dir: str | Path, voxel_size: float = 0.025,
                  overlap_voxel_size: float = 0.05, radius_factor: float = 1.5, min_overlap: float = 0.3,
                  frame_skip: int = 1, depth_trunc: float | None = None, name: str | None = None,
                  normals: bool = True, segments: bool = True, on_error: str = "raise",
                  store_voxel_size: float | None = None, depth_scale: float = 1000.0) -> dict:
    """Convert an RGB-D folder into a prepared scene folder; return the scene.json dict.

    ``depth_scale``: depth-image units per metre (1000: millimetres, 7-Scenes / ScanNet; 5000: TUM-style
    ICL-NUIM); used when ``frames`` is a folder.

    Frames are stored voxel-downsampled at ``store_voxel_size`` (metres; ``None``: at
    ``voxel_size``; ``0``: every depth pixel) with colour, camera-facing PCA normals
    (``normals``) and superpoints (``segments``, see :func:`frame_features`), both computed at
    the training voxel ``voxel_size`` (:func:`voxel_features`, module docstring); pairs are
    mined on a further ``overlap_voxel_size`` downsample (see
    :func:`contrast3d.data.pairs.mine_pairs`). A frame whose reader raises
    :class:`DataError` (unreadable image, all-zero depth, bad / missing pose) stops the scene
    with ``on_error="raise"``; with ``"skip"`` it is left out and listed in the returned
    ``skipped_frames`` (``[{"frame", "source", "reason"}]``). A scene without usable frames
    raises :class:`DataError`.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    store = voxel_size if store_voxel_size is None else float(store_voxel_size)
    if not 0 <= store <= voxel_size:
        raise ValueError(f"store_voxel_size must be in [0, voxel_size={voxel_size}], got {store_voxel_size}")
    seq = open_frame_folder(frames, depth_scale=depth_scale) if not isinstance(frames, FrameSequence) else frames
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    ids, coarse, skipped = [], [], []
    for frame_id in seq.ids[::frame_skip]:
        try:
            cloud = frame_to_cloud(seq.read(frame_id), voxel_size=store or None, depth_trunc=depth_trunc)
        except DataError as err:
            if on_error == "raise":
                raise
            skipped.append({"frame": frame_id, "source": err.source, "reason": err.reason})
            continue
        if len(cloud) == 0:
            warnings.warn(f"{seq.root / frame_id}: no valid depth after truncation; frame skipped", stacklevel=2)
            skipped.append({"frame": frame_id, "source": str(seq.root / frame_id),
                            "reason": "no valid depth after truncation"})
            continue
        if store == voxel_size:
            cloud = frame_features(cloud, normals, segments)
        else:
            cloud = voxel_features(cloud, voxel_size, normals, segments)
        save_frame_cloud(out / "frames" / f"{frame_id}.npz", cloud)
        ids.append(frame_id)
        coarse.append(cloud.coord[voxel_downsample_index(cloud.coord, overlap_voxel_size)])
    if not ids:
        raise DataError(seq.root, f"no usable frames ({len(skipped)} skipped): {why_all_failed(skipped)}")
    pairs = mine_pairs(coarse, overlap_voxel_size, radius_factor, min_overlap)
    save_pairs(out / PAIRS_FILE, pairs, ids)
    info = {"format": FORMAT, "version": 1, "name": name or seq.root.name, "frames": ids,
            "voxel_size": voxel_size, "store_voxel_size": store, "overlap_voxel_size": overlap_voxel_size,
            "overlap_radius": radius_factor * overlap_voxel_size, "min_overlap": min_overlap,
            "source": str(seq.root), "layout": seq.layout, "frame_skip": frame_skip,
            "depth_trunc": depth_trunc, "depth_scale": seq.depth_scale if hasattr(seq, "depth_scale") else depth_scale,
            "num_pairs": len(pairs), "normals": normals, "segments": segments,
            "skipped_frames": skipped}
    (out / SCENE_FILE).write_text(json.dumps(info, indent=1))
    return info


def read_scene(scene_dir: str | Path) -> tuple[dict, list[tuple[str, str, float]]]:
    """Check a prepared scene folder; return its scene.json dict and pair rows."""
    scene_dir = Path(scene_dir)
    path = scene_dir / SCENE_FILE
    try:
        info = json.loads(path.read_text())
    except OSError:
        raise DataError(path, "missing scene.json (not a prepared scene folder)") from None
    except ValueError as exc:
        raise DataError(path, f"invalid json ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("frames"), list):
        raise DataError(path, f"not a '{FORMAT}' scene description")
    pairs = load_pairs(scene_dir)
    known = set(map(str, info["frames"]))
    for a, b, _ in pairs:
        for f in (a, b):
            if f not in known:
                raise DataError(scene_dir / PAIRS_FILE, f"pair refers to unknown frame '{f}'")
    missing = [f for f in known if not (scene_dir / "frames" / f"{f}.npz").exists()]  # (a FIFO: refused when read)
    if missing:
        raise DataError(scene_dir / "frames", f"{len(missing)} frame file(s) missing, e.g. '{missing[0]}.npz'")
    return info, pairs


class FramePairDataset(Dataset):
    """View pairs of prepared scenes: two-view :class:`~contrast3d.structures.MultiView` s.

    Each view gets ``transform(cloud, rng)`` (view1 first, same generator); matches (``(M, 2)``
    int64) are nearest neighbours within ``match_radius`` between the world (pre-augmentation)
    coordinates of the points each view kept (:func:`contrast3d.data.views.make_view_pair`). The
    generator is the engine's per-sample one (:meth:`get_sample`, seeded from the run seed, the
    epoch and the index); ``dataset[i]`` uses ``default_rng(i)``.

    Args:
        scene_dirs: prepared scene folders (see module docstring).
        transform: optional per-view transform.
        match_radius: metres (PointContrast: 1.5 x 2.5 cm).
        mutual: mutual nearest neighbours only.
        min_overlap: optionally drop pairs below this overlap.
        on_error: ``"raise"`` a DataError for a bad scene, or ``"skip"`` it (warned and
            recorded in ``self.skipped``).
    """

    def __init__(self, scene_dirs: Iterable[str | Path], transform: Transform | None = None,
                 match_radius: float = 0.0375, mutual: bool = False, min_overlap: float | None = None,
                 on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        self.transform, self.match_radius, self.mutual = transform, match_radius, mutual
        self.skipped: list[DataError] = []
        self.items: list[tuple[Path, str, str, float]] = []
        self.scenes: dict[Path, dict] = {}
        for d, (info, pairs) in read_or_skip(map(Path, scene_dirs), read_scene, on_error, self.skipped):
            self.scenes[d] = info
            self.items += [(d, a, b, ov) for a, b, ov in pairs if min_overlap is None or ov >= min_overlap]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MultiView:
        return self.get_sample(index, np.random.default_rng(index))

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:
        scene_dir, a, b, overlap = self.items[index]
        name = str(self.scenes[scene_dir].get("name", scene_dir.name))
        view1 = load_frame_cloud(scene_dir / "frames" / f"{a}.npz", a)
        view2 = load_frame_cloud(scene_dir / "frames" / f"{b}.npz", b)
        meta = {"name": name, "scene": str(scene_dir), "frames": (a, b), "overlap": overlap, "index": int(index)}
        pair = make_view_pair(view1, view2, self.transform, rng, self.match_radius, self.mutual, meta)
        return pair.validate(f"{scene_dir} ({a}, {b})")
