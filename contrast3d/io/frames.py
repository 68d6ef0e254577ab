"""RGB-D frame readers: ScanNet export, Microsoft 7-Scenes, Redwood / ICL-NUIM (``.log``).

Every reader yields :class:`RGBDFrame` s with the same conventions:

* ``depth``: ``(H, W)`` float32 metres, ``0`` = invalid (sensor holes, 7-Scenes' 65535).
* ``color``: ``(H, W, 3)`` float32 in [0, 1] at the *depth* resolution, or ``None``.
* ``intrinsics``: ``(3, 3)`` float64 pinhole matrix of the depth image, pixel centres at
  integer coordinates (``u = fx * x / z + cx``; column ``u``, row ``v``).
* ``pose``: ``(4, 4)`` float64 camera-to-world, rigid (checked), camera looks along ``+z``,
  ``+y`` points down the image (OpenCV convention).

Bad input raises :class:`~contrast3d.errors.DataError` naming the file: unreadable images,
an all-zero depth map, an 8-bit depth image (it cannot hold millimetres: a careless export, read
as metres it would give clouds a twentieth of their size), a missing / non-finite (ScanNet has
``-inf`` poses) / singular / non-rigid pose, colour/depth/intrinsics size mismatches (except
ScanNet colour, which is resized to the depth resolution as the export is known to differ), and
intrinsics that do not fit the depth image: a principal point outside the image, or farther
than :data:`MAX_CENTRE_OFFSET` of the image size from its centre (intrinsics of another
resolution, e.g. of the colour camera or of a depth image twice the size). Paths that are not
regular files (FIFOs ...) are refused before they are opened.

:func:`open_frame_folder` detects the layout of a folder and returns the matching sequence.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contrast3d.errors import DataError
from contrast3d.io._common import check_regular_file, read_bytes

#: Open3D's ``PrimeSenseDefault`` intrinsics (640x480), used when a Redwood folder has no json.
PRIMESENSE_DEFAULT = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
#: Largest distance of the principal point from the image centre, as a fraction of the image width /
#: height (real RGB-D cameras: a few percent; intrinsics of another resolution: 25 % and more).
MAX_CENTRE_OFFSET = 0.2


@dataclass
class RGBDFrame:
    """One registered RGB-D frame (see module docstring for units and conventions)."""

    depth: np.ndarray
    color: np.ndarray | None
    intrinsics: np.ndarray
    pose: np.ndarray
    name: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the depth image."""
        return int(self.depth.shape[0]), int(self.depth.shape[1])


# ----------------------------------------------------------------------------- primitives
def read_depth_png(path: str | Path, scale: float = 1000.0, invalid: int | None = None) -> np.ndarray:
    """A 16-bit depth PNG as ``(H, W)`` float32 metres (``raw / scale``), 0 = invalid.

    ``invalid``: a raw value that also means "no measurement" (7-Scenes: 65535).
    Raises DataError if unreadable, not a single-channel integer image of at least 16 bits, or all
    zero / invalid.
    """
    check_regular_file(path, "depth image")
    try:
        with Image.open(path) as im:
            raw = np.array(im)
    except Exception as exc:  # noqa: BLE001 -- PIL raises many exception types
        raise DataError(path, f"unreadable depth image ({exc.__class__.__name__}: {exc})") from None
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise DataError(path, f"depth must be a single-channel integer image, got shape {raw.shape} "
                              f"dtype {raw.dtype}")
    if raw.dtype.itemsize < 2:
        raise DataError(path, f"8-bit depth image ({raw.dtype}): depth must be 16-bit millimetres (uint16 PNG); "
                              f"an 8-bit export cannot hold metric depth")
    bad = raw <= 0
    if invalid is not None:
        bad |= raw == invalid
    depth = raw.astype(np.float32) / np.float32(scale)
    depth[bad] = 0.0
    if not depth.any():
        raise DataError(path, "depth image is all zero / invalid")
    return depth


def read_color(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An 8-bit colour image as ``(H, W, 3)`` float32 in [0, 1].

    ``size``: ``(H, W)`` to resize to (bilinear), or ``None`` to keep the file's size.
    """
    check_regular_file(path, "colour image")
    try:
        with Image.open(path) as src:
            im = src.convert("RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                # Image.BILINEAR is set on the module by setattr, so Pillow's inline types miss it;
                # Image.Resampling would need Pillow >= 9.1 (pyproject allows 9.0).
                im = im.resize((int(size[1]), int(size[0])), Image.BILINEAR)  # type: ignore[attr-defined]
            rgb = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 -- PIL / zip readers raise many types
        raise DataError(path, f"unreadable colour image ({exc.__class__.__name__}: {exc})") from None
    return rgb.astype(np.float32) / np.float32(255.0)


def check_pose(pose: np.ndarray, source: str | Path, tol: float = 1e-3) -> np.ndarray:
    """Validate a camera-to-world matrix; return it as ``(4, 4)`` float64.

    Checks: shape, finiteness, last row ``[0, 0, 0, 1]``, ``R^T R = I`` and ``det R = +1``
    within ``tol``.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise DataError(source, f"pose must be 4x4, got shape {pose.shape}")
    if not np.isfinite(pose).all():
        raise DataError(source, "pose has NaN/Inf entries (invalid tracking)")
    if np.abs(pose[3] - [0, 0, 0, 1]).max() > tol:
        raise DataError(source, f"pose last row is {pose[3].tolist()}, expected [0, 0, 0, 1]")
    rot = pose[:3, :3]
    det = float(np.linalg.det(rot))
    if abs(det) < 1e-6:
        raise DataError(source, "pose rotation is singular")
    err = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if err > tol or det < 0:
        raise DataError(source, f"pose is not rigid (|R^T R - I| = {err:.2e}, det R = {det:.3f})")
    return pose


def _read_matrix_txt(path: Path, what: str) -> np.ndarray:
    """A whitespace-separated matrix text file -> 2-D float64; DataError if missing or unparsable."""
    if not path.exists():
        raise DataError(path, f"missing {what} file")
    check_regular_file(path, f"{what} file")
    try:
        return np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(path, f"unparsable {what} file ({exc})") from None


def _depth_frame_ids(depth_dir: Path) -> list[str]:
    """Frame ids (file stems) of ``depth_dir/*.png`` in numeric order; DataError if there are none."""
    files = sorted(depth_dir.glob("*.png"), key=_numeric_stem)
    if not files:
        raise DataError(depth_dir, "no depth frames (*.png)")
    return [p.stem for p in files]


def read_pose_txt(path: str | Path) -> np.ndarray:
    """A whitespace-separated 4x4 camera-to-world matrix file -> ``(4, 4)`` float64 (checked)."""
    path = Path(path)
    return check_pose(_read_matrix_txt(path, "pose"), path)


def read_intrinsics_txt(path: str | Path) -> np.ndarray:
    """A 3x3 or 4x4 intrinsics text file -> ``(3, 3)`` float64."""
    path = Path(path)
    mat = _read_matrix_txt(path, "intrinsics")
    if mat.shape not in ((3, 3), (4, 4)):
        raise DataError(path, f"intrinsics must be 3x3 or 4x4, got {mat.shape}")
    return _check_intrinsics(mat[:3, :3], path)


def read_open3d_intrinsics(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """An Open3D ``PinholeCameraIntrinsic`` json -> (``(3, 3)`` float64 K, ``(H, W)``).

    Open3D stores ``intrinsic_matrix`` as 9 numbers in column-major order.
    """
    try:
        data = json.loads(read_bytes(path).decode("utf-8"))
        k = np.asarray(data["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T
        size = (int(data["height"]), int(data["width"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"unreadable Open3D intrinsics json ({exc.__class__.__name__}: {exc})") from None
    return _check_intrinsics(k, path), size


def read_log_trajectory(path: str | Path) -> list[np.ndarray]:
    """An Open3D / Redwood ``.log`` trajectory -> list of ``(4, 4)`` camera-to-world poses.

    Format: per entry one metadata line ``i j n`` then four matrix rows. Entry ``k`` of the
    list is the ``k``-th block of the file. Poses are validated lazily by the reader; here
    only the structure is checked.
    """
    try:
        rows = [ln.split() for ln in read_bytes(path).decode("utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError as exc:
        raise DataError(path, f"trajectory is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(rows) % 5:
        raise DataError(path, f"{len(rows)} non-empty lines is not a multiple of 5 (1 header + 4 rows)")
    poses = []
    for k in range(0, len(rows), 5):
        if len(rows[k]) != 3 or any(len(r) != 4 for r in rows[k + 1:k + 5]):
            raise DataError(path, f"malformed entry at non-empty line {k + 1}")
        try:
            poses.append(np.array(rows[k + 1:k + 5], dtype=np.float64))
        except ValueError:
            raise DataError(path, f"non-numeric pose at non-empty line {k + 2}") from None
    return poses


def check_intrinsics_fit(k: np.ndarray, shape: tuple[int, int], source: str | Path) -> None:
    """Raise :class:`DataError` naming ``source`` (the intrinsics) when the principal point of ``k``
    lies outside the ``(H, W)`` depth image or farther than :data:`MAX_CENTRE_OFFSET` from its centre."""
    h, w = int(shape[0]), int(shape[1])
    cx, cy = float(k[0, 2]), float(k[1, 2])
    if not (-0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5):
        raise DataError(source, f"principal point ({cx:g}, {cy:g}) lies outside the {w}x{h} depth image")
    off_x, off_y = abs(cx - (w - 1) / 2) / w, abs(cy - (h - 1) / 2) / h
    if max(off_x, off_y) > MAX_CENTRE_OFFSET:
        raise DataError(source, f"principal point ({cx:g}, {cy:g}) is far from the centre of the {w}x{h} depth "
                                f"image: intrinsics of another image size (e.g. of a larger depth image)?")


def _check_intrinsics(k: np.ndarray, source: str | Path) -> np.ndarray:
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise DataError(source, f"invalid intrinsics (fx, fy must be finite and > 0): {k.tolist()}")
    return np.ascontiguousarray(k, dtype=np.float64)


def _numeric_stem(p: Path, pattern: str = r"(\d+)") -> int:
    m = re.search(pattern, p.name)
    return int(m.group(1)) if m else -1


# ----------------------------------------------------------------------------- sequences
class FrameSequence(Sequence[RGBDFrame]):
    """A lazily read, indexable sequence of :class:`RGBDFrame` s of one folder.

    Subclasses fill ``ids`` (frame names, sorted by frame number) and implement ``read``.
    """

    layout = "generic"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "not a directory")
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> RGBDFrame:  # type: ignore[override]
        return self.read(self.ids[index])

    def __iter__(self) -> Iterator[RGBDFrame]:
        for frame_id in self.ids:
            yield self.read(frame_id)

    def read(self, frame_id: str) -> RGBDFrame:
        raise NotImplementedError

    @staticmethod
    def _check_sizes(depth: np.ndarray, color: np.ndarray | None, source: Path,
                     expected: tuple[int, int] | None = None) -> None:
        if color is not None and color.shape[:2] != depth.shape:
            raise DataError(source, f"colour size {color.shape[:2]} differs from depth size {depth.shape}")
        if expected is not None and tuple(expected) != depth.shape:
            raise DataError(source, f"depth size {depth.shape} differs from the intrinsics' {tuple(expected)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} frames)"


class ScanNetFrames(FrameSequence):
    """ScanNet ``SensReader`` export: ``color/N.jpg``, ``depth/N.png`` (uint16 mm),
    ``pose/N.txt`` (4x4), ``intrinsic/intrinsic_depth.txt`` (4x4).

    Colour is resized to the depth resolution (1296x968 -> 640x480 in ScanNet v2).
    """

    layout = "scannet"

    def __init__(self, root: str | Path, depth_scale: float = 1000.0, load_color: bool = True):
        super().__init__(root)
        self.depth_scale = depth_scale
        self.load_color = load_color
        self.intrinsics = read_intrinsics_txt(self.root / "intrinsic" / "intrinsic_depth.txt")
        color_k = self.root / "intrinsic" / "intrinsic_color.txt"
        self.color_intrinsics = read_intrinsics_txt(color_k) if color_k.is_file() else None
        self.ids = _depth_frame_ids(self.root / "depth")

    def read(self, frame_id: str) -> RGBDFrame:
        dpath = self.root / "depth" / f"{frame_id}.png"
        depth = read_depth_png(dpath, self.depth_scale)
        check_intrinsics_fit(self.intrinsics, depth.shape, self.root / "intrinsic" / "intrinsic_depth.txt")
        pose = read_pose_txt(self.root / "pose" / f"{frame_id}.txt")
        color = None
        if self.load_color:
            cpath = self.root / "color" / f"{frame_id}.jpg"
            color = read_color(cpath, size=depth.shape)
        return RGBDFrame(depth, color, self.intrinsics.copy(), pose, name=frame_id, path=str(dpath),
                         meta={"layout": self.layout})


class SevenScenesFrames(FrameSequence):
    """Microsoft 7-Scenes: ``frame-XXXXXX.{color.jpg,depth.png,pose.txt}`` and
    ``camera-intrinsics.txt`` (3x3; default fx = fy = 585, cx = 320, cy = 240 if absent).
    Depth is uint16 mm; 0 and 65535 are invalid.
    """

    layout = "7scenes"
    DEFAULT_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])

    def __init__(self, root: str | Path, depth_scale: float = 1000.0, load_color: bool = True):
        super().__init__(root)
        self.depth_scale = depth_scale
        self.load_color = load_color
        kfile = self.root / "camera-intrinsics.txt"
        self.intrinsics = read_intrinsics_txt(kfile) if kfile.exists() else self.DEFAULT_K.copy()
        self.intrinsics_source = kfile if kfile.exists() else self.root
        files = sorted(self.root.glob("frame-*.depth.png"), key=_numeric_stem)
        if not files:
            raise DataError(self.root, "no frame-*.depth.png files")
        self.ids = [p.name[: -len(".depth.png")] for p in files]

    def read(self, frame_id: str) -> RGBDFrame:
        dpath = self.root / f"{frame_id}.depth.png"
        depth = read_depth_png(dpath, self.depth_scale, invalid=65535)
        check_intrinsics_fit(self.intrinsics, depth.shape, self.intrinsics_source)
        pose = read_pose_txt(self.root / f"{frame_id}.pose.txt")
        color = read_color(self.root / f"{frame_id}.color.jpg") if self.load_color else None
        self._check_sizes(depth, color, dpath)
        return RGBDFrame(depth, color, self.intrinsics.copy(), pose, name=frame_id, path=str(dpath),
                         meta={"layout": self.layout})


class LogTrajectoryFrames(FrameSequence):
    """Redwood / ICL-NUIM (Open3D layout): ``image/NNNNN.jpg`` (or ``color/``, ``rgb/``),
    ``depth/NNNNN.png`` (uint16 mm), one ``*.log`` trajectory (frame number ``k`` = entry
    ``k``), intrinsics from an Open3D json (``camera_primesense.json`` or any json with an
    ``intrinsic_matrix``; Open3D's PrimeSense default if none).

    The ``.log`` poses of Open3D's ICL-NUIM copies are already in the OpenCV convention
    (verified on ``icl_nuim_livingroom1``: no y-flip needed; see tests/data/test_rgbd.py).
    """

    layout = "log"

    def __init__(self, root: str | Path, depth_scale: float = 1000.0, load_color: bool = True,
                 trajectory: str | Path | None = None):
        super().__init__(root)
        self.depth_scale = depth_scale
        self.load_color = load_color
        logs = [Path(trajectory)] if trajectory else sorted(self.root.glob("*.log"))
        if not logs:
            raise DataError(self.root, "no .log trajectory file")
        self.trajectory_path = logs[0]
        self.poses = read_log_trajectory(self.trajectory_path)
        jsons = [p for p in sorted(self.root.glob("*.json")) if b"intrinsic_matrix" in read_bytes(p)]
        preferred = [p for p in jsons if p.name == "camera_primesense.json"]
        if preferred or jsons:
            self.intrinsics_source: Path = (preferred or jsons)[0]
            self.intrinsics, self.size = read_open3d_intrinsics(self.intrinsics_source)
        else:
            self.intrinsics, self.size = PRIMESENSE_DEFAULT.copy(), (480, 640)
            self.intrinsics_source = self.root
        self.color_dir = next((self.root / d for d in ("image", "color", "rgb") if (self.root / d).is_dir()), None)
        self.ids = _depth_frame_ids(self.root / "depth")

    def read(self, frame_id: str) -> RGBDFrame:
        dpath = self.root / "depth" / f"{frame_id}.png"
        entry = _numeric_stem(dpath)
        if not 0 <= entry < len(self.poses):
            raise DataError(self.trajectory_path, f"missing pose: no entry {entry} for frame {dpath.name} "
                                                  f"({len(self.poses)} entries)")
        pose = check_pose(self.poses[entry], f"{self.trajectory_path} (entry {entry})")
        depth = read_depth_png(dpath, self.depth_scale)
        self._check_sizes(depth, None, dpath, self.size)
        check_intrinsics_fit(self.intrinsics, depth.shape, self.intrinsics_source)
        color = None
        if self.load_color and self.color_dir is not None:
            cands = [self.color_dir / f"{frame_id}{ext}" for ext in (".jpg", ".png")]
            cpath = next((c for c in cands if c.is_file()), cands[0])
            color = read_color(cpath)
        self._check_sizes(depth, color, dpath, self.size)
        return RGBDFrame(depth, color, self.intrinsics.copy(), pose, name=frame_id, path=str(dpath),
                         meta={"layout": self.layout})


def detect_layout(path: str | Path) -> str | None:
    """The RGB-D layout of a folder (``"scannet"``, ``"7scenes"``, ``"log"``) or ``None``.

    ScanNet: ``intrinsic/`` + ``depth/`` + ``pose/``; 7-Scenes: ``frame-*.depth.png``;
    Redwood / ICL-NUIM: a ``*.log`` + ``depth/``. Only names are checked, nothing is read.
    """
    root = Path(path)
    if not root.is_dir():
        return None
    if (root / "intrinsic").is_dir() and (root / "depth").is_dir() and (root / "pose").is_dir():
        return ScanNetFrames.layout
    if next(root.glob("frame-*.depth.png"), None) is not None:
        return SevenScenesFrames.layout
    if next(root.glob("*.log"), None) is not None and (root / "depth").is_dir():
        return LogTrajectoryFrames.layout
    return None


def open_frame_folder(path: str | Path, **kwargs: Any) -> FrameSequence:
    """Detect the layout of an RGB-D folder (:func:`detect_layout`) and return its frame sequence.

    ``kwargs`` go to the reader.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    readers = {cls.layout: cls for cls in (ScanNetFrames, SevenScenesFrames, LogTrajectoryFrames)}
    layout = detect_layout(root)
    if layout is None:
        raise DataError(root, "unknown RGB-D layout (expected ScanNet export, 7-Scenes or Redwood/ICL-NUIM .log)")
    return readers[layout](root, **kwargs)
