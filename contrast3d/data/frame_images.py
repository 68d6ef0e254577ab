"""Datasets of image-to-point contrast (Janda et al. §III-B/C, §IV-C): single RGB-D frames, no poses.

Both datasets index the frames of raw RGB-D folders found under a root (:func:`find_frame_sequences`:
``contrast3d simulate`` output, ScanNet exports, 7-Scenes, Redwood / ICL-NUIM; or a ``contrast3d prepare
rgbd`` root, whose ``scene.json`` files name the raw folders they came from) and read them with the
readers of :mod:`contrast3d.io.frames` (depth in metres, colour at the depth resolution, intrinsics of
the depth image). Every ``frame_skip``-th frame of each sequence is a sample.

**Stage 1** (:class:`ImagePairDataset`): two SimCLR-style views of one colour image and their exact
pixel matches (:func:`contrast3d.data.image_aug.augment_pair`: random resized crop to ``image_size``,
flip, colour jitter, grayscale, blur; matches computed from the two known crop/flip transforms, at most
``num_pixels`` = 4,092 per pair, each view-2 pixel used once). A sample is an :class:`ImagePair`;
:func:`collate_image_pairs` stacks them into an :class:`ImagePairBatch` whose matches are *global*
flat indices ``b * H * W + row * W + col`` into the batch's images.

**Stage 2** (:class:`FrameImageDataset`): ONE frame per sample, as a one-view
:class:`~contrast3d.structures.MultiView`:

1. back-project the valid depth (every ``depth_stride``-th row and column) with the intrinsics in
   **camera** coordinates (:func:`contrast3d.data.rgbd.depth_to_points`; no pose is used, none is
   needed), colour per point;
2. resize the image's shorter side to ``image_size`` and centre-crop it to ``image_size`` squared,
   adjusting the intrinsics (``K' = S K``, :func:`contrast3d.data.image_aug.resize_center_crop_intrinsics`);
3. project every point with ``K'`` (:func:`contrast3d.data.projection.project_points`, identity pose):
   points landing inside the crop get their pixel ``(floor(v + 0.5), floor(u + 0.5))`` and their exact
   sub-pixel position ``(v, u)``, carried per point as ``extra["pixel"]`` (int) and
   ``extra["pixel_rc"]`` (float32 ``(N, 2)`` ``(row, col)``, ``-1`` when unseen) — points outside the
   crop stay in the cloud (3D context) but have no pixel;
4. only then the 3D augmentation ``transform(cloud, rng)`` (the method's: rotation, scale, flip, voxel
   sampling, point cap, colour): the per-point pixel arrays travel with the points, so rotating /
   scaling the points never changes which pixel a point belongs to;
5. ``MultiView(views=[cloud], image=(3, S, S), pixels=(P, 3) rows (point, row, col))``; the cloud keeps
   ``extra["pixel_rc"]`` so the method can sample 2D features bilinearly at the exact positions.

Decisions the paper leaves open (defaults in brackets):

* Voxel sampling comes *after* the rigid augmentation [as in the method's ``transform``], because the
  sparse network only sees ``grid_coord`` fixed at voxelisation: rotating afterwards would change nothing
  the network sees. Pixels are computed before, in camera coordinates, as described above.
* Points come from the frame's own depth, so every point is visible in its image: no occlusion test
  is needed (the test of :func:`~contrast3d.data.projection.project_points` is for points of another
  source). A prepared root is used only to find the raw folders: points are re-read from the depth.
* A frame that cannot be used (unreadable, all-zero depth — the readers raise — no colour image, or
  fewer than ``min_points`` valid depth pixels) is **skipped with a warning**: the sample is the next
  usable frame (index + 1, + 2, ... cyclically), never a crash, unless ``strict``. Every such check
  happens before any random draw, so a skip never changes the augmentation of the sample used instead.
  The readers also validate poses; a frame with an invalid pose is skipped as well although its pose is
  not used.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from contrast3d.data.image_aug import ImageAugConfig, augment_pair, resize_center_crop_intrinsics
from contrast3d.data.projection import project_points
from contrast3d.data.rgbd import depth_to_points
from contrast3d.data.views import kept_index
from contrast3d.errors import DataError
from contrast3d.io.frames import FrameSequence, RGBDFrame, detect_layout, open_frame_folder
from contrast3d.structures import MultiView, PointCloud

Transform = Callable[[PointCloud, np.random.Generator], PointCloud]

__all__ = ["find_frame_sequences", "ImagePair", "ImagePairBatch", "collate_image_pairs", "ImagePairDataset",
           "FrameImageDataset", "frame_pixels", "smoke_frames", "SMOKE_IMAGE_NET"]

#: File name of the untrained stage-1 network that :func:`smoke_frames` writes into the data root.
SMOKE_IMAGE_NET = "image_net.safetensors"


# ----------------------------------------------------------------------------------------- discovery
def find_frame_sequences(root: str | Path, strict: bool = False) -> list[tuple[str, FrameSequence]]:
    """The RGB-D sequences under ``root`` as ``[(name, sequence)]``.

    ``root`` may be a frame folder itself, a folder of frame folders
    (:func:`contrast3d.data.scene_jobs.find_sequences`), or a ``contrast3d prepare rgbd`` root: then each
    prepared scene's ``scene.json`` ``source`` names its raw folder. A folder whose reader fails is skipped
    with a warning (raised when ``strict``). Raises :class:`DataError` when nothing usable is found.
    """
    from contrast3d.data.frame_dataset import SCENE_FILE
    from contrast3d.data.scene_dataset import find_scene_dirs
    from contrast3d.data.scene_jobs import find_sequences

    root = Path(root)
    try:
        found, _ = find_sequences(root)
    except DataError as err:
        found = []
        for scene in (find_scene_dirs(root, SCENE_FILE) if root.is_dir() else []):
            try:
                source = Path(json.loads((scene / SCENE_FILE).read_text()).get("source", ""))
            except (OSError, ValueError):
                continue
            if detect_layout(source):
                found.append((scene.name, source))
        if not found:
            raise DataError(root, f"{err.reason}; image-to-point needs raw RGB-D frame folders (colour + depth), "
                                  f"or prepared scenes whose scene.json 'source' folder still exists") from None
    sequences = []
    for name, folder in found:
        try:
            sequences.append((name, open_frame_folder(folder)))
        except DataError as err:
            if strict:
                raise
            warnings.warn(f"skipping RGB-D folder: {err}", stacklevel=2)
    if not sequences:
        raise DataError(root, "no readable RGB-D frame folder")
    return sequences


class _FrameIndex(Dataset):
    """Every ``frame_skip``-th frame of every sequence under ``root``, with skip-on-error reading."""

    def __init__(self, root: str | Path, frame_skip: int = 1, strict: bool = False):
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        self.root, self.strict = Path(root), strict
        self.sequences = find_frame_sequences(root, strict)
        self.frames = [(s, fid) for s, (_, seq) in enumerate(self.sequences) for fid in seq.ids[::frame_skip]]
        if not self.frames:
            raise DataError(root, "the RGB-D folders hold no frames")
        self.skipped: dict[int, str] = {}  # frame index -> reason (this process only)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        return self.get_sample(index, np.random.default_rng(index))

    def get_sample(self, index: int, rng: np.random.Generator) -> Any:
        """Sample ``index`` drawn with ``rng`` (implemented by the subclasses)."""
        raise NotImplementedError

    def frame_name(self, index: int) -> str:
        s, fid = self.frames[index]
        return f"{self.sequences[s][0]}/{fid}"

    def read_frame(self, index: int) -> RGBDFrame:
        """The RGB-D frame of sample ``index`` (:class:`DataError` if unreadable or without colour)."""
        s, fid = self.frames[index]
        frame = self.sequences[s][1].read(fid)
        if frame.color is None:
            raise DataError(frame.path, "no colour image (image-to-point contrast needs RGB with the depth)")
        return frame

    def _first_usable(self, index: int, build: Callable[[int], Any]) -> Any:
        """``build(i)`` for the first ``i = index, index + 1, ...`` (cyclic) whose frame is usable."""
        n = len(self.frames)
        for k in range(n):
            i = (int(index) + k) % n
            if i in self.skipped:
                continue
            try:
                return build(i)
            except DataError as err:
                if self.strict:
                    raise
                self.skipped[i] = str(err)
                warnings.warn(f"skipping frame {self.frame_name(i)}: {err}", stacklevel=3)
        raise DataError(self.root, f"no usable frame among {n} (all skipped; e.g. {next(iter(self.skipped.values()))})")


# ----------------------------------------------------------------------------------------- stage 1
@dataclass
class ImagePair:
    """Two augmented views of one image and their matched pixels.

    Attributes:
        view1, view2: ``(3, S, S)`` float32 tensors in [0, 1].
        matches: ``(K, 2)`` int64 flat pixel indices ``row * S + col`` (view 1, view 2).
        meta: ``name``, ``frame``, ``index``.
    """

    view1: torch.Tensor
    view2: torch.Tensor
    matches: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImagePairBatch:
    """A batch of :class:`ImagePair` s.

    Attributes:
        images1, images2: ``(B, 3, H, W)`` float32.
        matches: ``(M, 2)`` int64 *global* flat indices ``b * H * W + row * W + col`` into the images of
            the batch (rows of ``features.permute(0, 2, 3, 1).reshape(-1, C)``), pair by pair.
        match_offset: ``(B,)`` int64 cumulative match counts per pair.
        meta: one dict per pair.
    """

    images1: torch.Tensor
    images2: torch.Tensor
    matches: torch.Tensor
    match_offset: torch.Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.images1.shape[0])

    @property
    def match_pair(self) -> torch.Tensor:
        """``(M,)`` int64 pair index of every match."""
        counts = torch.diff(self.match_offset, prepend=self.match_offset.new_zeros(1))
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImagePairBatch:
        moved = {f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)


def collate_image_pairs(samples: Sequence[ImagePair]) -> ImagePairBatch:
    """Stack :class:`ImagePair` s (one image size) and make their matches global flat indices."""
    if not samples:
        raise ValueError("collate_image_pairs needs at least one sample")
    shapes = {tuple(s.view1.shape) for s in samples} | {tuple(s.view2.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"image views of one batch must have one size, got {sorted(shapes)}")
    _, h, w = shapes.pop()
    parts = [np.asarray(s.matches, np.int64).reshape(-1, 2) + b * h * w for b, s in enumerate(samples)]
    return ImagePairBatch(
        images1=torch.stack([torch.as_tensor(s.view1, dtype=torch.float32) for s in samples]),
        images2=torch.stack([torch.as_tensor(s.view2, dtype=torch.float32) for s in samples]),
        matches=torch.from_numpy(np.concatenate(parts, axis=0)),
        match_offset=torch.from_numpy(np.cumsum([len(p) for p in parts]).astype(np.int64)),
        meta=[dict(s.meta) for s in samples])


class ImagePairDataset(_FrameIndex):
    """Stage-1 samples: two SimCLR views of one frame's colour image with exact pixel matches.

    Args:
        root: frame folders (see :func:`find_frame_sequences`).
        frame_skip: use every ``frame_skip``-th frame of each sequence.
        aug: the view recipe (:class:`~contrast3d.data.image_aug.ImageAugConfig`; ``out_size`` is the view side).
        num_pixels: matches sampled per pair (paper: 4,092); fewer when the views overlap less.
        strict: raise on an unusable frame instead of skipping it.
    """

    def __init__(self, root: str | Path, frame_skip: int = 1, aug: ImageAugConfig | None = None,
                 num_pixels: int = 4092, strict: bool = False):
        super().__init__(root, frame_skip, strict)
        self.aug, self.num_pixels = aug or ImageAugConfig(), int(num_pixels)

    def get_sample(self, index: int, rng: np.random.Generator) -> ImagePair:
        def build(i: int) -> ImagePair:
            frame = self.read_frame(i)
            assert frame.color is not None  # read_frame raises without colour
            image = torch.from_numpy(np.ascontiguousarray(frame.color.transpose(2, 0, 1)))
            view1, view2, matches = augment_pair(image, rng, self.aug, self.num_pixels)
            return ImagePair(view1, view2, matches, {"name": self.frame_name(i), "frame": frame.name, "index": i})

        return self._first_usable(index, build)


# ----------------------------------------------------------------------------------------- stage 2
def frame_pixels(coord: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of camera-frame points in an image of ``size = (H, W)`` with pinhole ``intrinsics``.

    Returns ``(index, pixel, pixel_rc)``: ``(K,)`` int64 indices of the points that land inside the
    image (``z > 0``), their ``(K, 2)`` int64 ``(row, col)`` pixels and ``(K, 2)`` float64 exact
    ``(v, u)`` positions (pixel centres at integers, ``pixel = floor(pixel_rc + 0.5)``).
    """
    index, row, col = project_points(coord, intrinsics, np.eye(4), size)
    k = np.asarray(intrinsics, np.float64)
    cam = np.asarray(coord, np.float64)[index]
    exact = np.stack([k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2], k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2]], 1)
    return index, np.stack([row, col], 1), exact


class FrameImageDataset(_FrameIndex):
    """Stage-2 samples: one RGB-D frame as points in camera coordinates + its centre-cropped image.

    Args:
        root: frame folders (see :func:`find_frame_sequences`).
        transform: the 3D augmentation ``(cloud, rng) -> cloud`` applied after the pixels are known
            (should end with voxel sampling, :class:`~contrast3d.data.voxelize.GridSample`); ``None``
            returns the raw back-projected points.
        frame_skip: use every ``frame_skip``-th frame of each sequence.
        image_size: side ``S`` of the square image the 2D network sees (paper: 224).
        depth_trunc: drop depths beyond this many metres (``None``: keep all).
        depth_stride: back-project every ``depth_stride``-th depth row and column (1: all pixels; 2 loads
            ~3x faster and, on a 640 x 480 7-Scenes frame at 5 cm, keeps ~92 % of the voxels).
        min_points: frames with fewer valid depth pixels are skipped.
        strict: raise on an unusable frame instead of skipping it.

    Samples (module docstring): ``MultiView(views=[cloud], image=(3, S, S), pixels=(P, 3))``; the cloud
    has ``coord`` (metres, camera frame then augmented), ``color``, ``extra["pixel_rc"]`` ``(N, 2)``
    float32 (``-1`` where unseen) and ``meta`` ``name``, ``frame``, ``origin_index`` (index among the
    frame's back-projected points) and ``depth_pixel`` ``(N,)`` int64 (flat index ``v * W + u`` of each
    point's pixel in the *depth* image, for mapping point features back onto the frame); the sample's
    meta holds ``name``, ``frame``, ``index`` and ``intrinsics`` (of the crop, float64 ``(3, 3)``).
    """

    def __init__(self, root: str | Path, transform: Transform | None = None, frame_skip: int = 1,
                 image_size: int = 224, depth_trunc: float | None = None, min_points: int = 10,
                 strict: bool = False, depth_stride: int = 1):
        super().__init__(root, frame_skip, strict)
        if depth_stride < 1:
            raise ValueError(f"depth_stride must be >= 1, got {depth_stride}")
        self.transform, self.image_size, self.depth_stride = transform, int(image_size), int(depth_stride)
        self.depth_trunc, self.min_points = depth_trunc, max(1, int(min_points))

    def raw_sample(self, index: int) -> tuple[PointCloud, np.ndarray, np.ndarray, RGBDFrame]:
        """Frame ``index`` before augmentation: ``(cloud, image (3, S, S), crop intrinsics, frame)``.

        The cloud carries ``extra["pixel"]`` (int64 ``(N, 2)``, ``-1`` unseen) and ``extra["pixel_rc"]``
        and ``meta["pixel_of_point"]``. Raises :class:`DataError` for an unusable frame.
        """
        frame = self.read_frame(index)
        assert frame.color is not None  # read_frame raises without colour
        coord, flat = depth_to_points(frame.depth, frame.intrinsics, None, depth_trunc=self.depth_trunc,
                                      stride=self.depth_stride, return_index=True)
        if len(coord) < self.min_points:
            raise DataError(frame.path, f"only {len(coord)} valid depth pixels (min_points {self.min_points})")
        image, k_crop = resize_center_crop_intrinsics(np.ascontiguousarray(frame.color.transpose(2, 0, 1)),
                                                      frame.intrinsics, self.image_size)
        seen, pixel, exact = frame_pixels(coord, k_crop, (self.image_size, self.image_size))
        pix = np.full((len(coord), 2), -1, np.int64)
        rc = np.full((len(coord), 2), -1.0, np.float32)
        pix[seen], rc[seen] = pixel, exact
        color = frame.color.reshape(-1, 3)[flat].astype(np.float32)
        cloud = PointCloud(coord=coord, color=color, extra={"pixel": pix, "pixel_rc": rc},
                           meta={"name": self.frame_name(index), "frame": frame.name, "pixel_of_point": flat})
        return cloud, image.astype(np.float32), k_crop, frame

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:
        def build(i: int) -> MultiView:
            cloud, image, k_crop, frame = self.raw_sample(i)
            flat = cloud.meta.pop("pixel_of_point")
            view = self.transform(cloud, rng) if self.transform is not None else cloud
            if not isinstance(view, PointCloud):
                raise TypeError("FrameImageDataset's transform must return one PointCloud")
            pix = view.extra.pop("pixel")
            seen = np.nonzero(pix[:, 0] >= 0)[0]
            view.meta.pop("inverse", None)
            view.meta["depth_pixel"] = flat[kept_index(view, len(flat))]
            meta = {"name": self.frame_name(i), "frame": frame.name, "index": i, "intrinsics": k_crop}
            return MultiView([view], image=image, pixels=np.column_stack([seen, pix[seen]]).astype(np.int64),
                             meta=meta).validate(frame.path)

        return self._first_usable(index, build)


# ----------------------------------------------------------------------------------------- smoke data
def smoke_frames(folder: str | Path) -> str:
    """Tiny smoke data of image-to-point contrast; returns the data root.

    One simulated scene with 4 RGB-D frames of 96 x 72 pixels (``<folder>/frames/sim000011``), plus
    ``<folder>/frames/image_net.safetensors`` (+ ``.json``): a freshly initialised, **untrained** ``tiny``
    :class:`~contrast3d.models.image_unet.ImageUNet` (16-d output) standing in for a stage-1 export, so
    the stage-3d smoke runs without pre-training anything. The smoke config names it by the relative path
    ``image_net.safetensors``, which the method resolves against the data root.
    """
    from contrast3d.models.image_unet import create_image_unet
    from contrast3d.models.pretrained import PretrainedRecord, save_pretrained
    from contrast3d.simulate.batch import simulate_scenes

    root = Path(folder) / "frames"
    simulate_scenes([11], root, frames=4, width=96, height=72, density=300.0)
    with torch.random.fork_rng():  # the same file whatever the caller's RNG state, which stays untouched
        torch.manual_seed(0)
        net = create_image_unet("tiny", out_channels=16)
    record = PretrainedRecord(kind="image_unet", preset="tiny", ndim=2, in_channels=3, out_channels=16,
                              method="smoke (untrained)", extra={"image_size": 224})
    save_pretrained(net, root / SMOKE_IMAGE_NET, record)
    return str(root)
