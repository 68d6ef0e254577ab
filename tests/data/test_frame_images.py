"""Datasets of image-to-point contrast: single RGB-D frames -> image pairs (stage 1) and points + image (stage 2)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from contrast3d.data import transforms as T
from contrast3d.data.frame_images import (
    SMOKE_IMAGE_NET,
    FrameImageDataset,
    ImagePairDataset,
    collate_image_pairs,
    find_frame_sequences,
    frame_pixels,
    smoke_frames,
)
from contrast3d.data.image_aug import ImageAugConfig, resize_center_crop_affine
from contrast3d.data.rgbd import depth_to_points
from contrast3d.data.voxelize import GridSample
from contrast3d.errors import DataError
from contrast3d.models.pretrained import load_pretrained

K = np.array([[60.0, 0.0, 20.0], [0.0, 55.0, 14.5], [0.0, 0.0, 1.0]])
H, W, S = 30, 40, 24
S_IMG = 64


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """The smoke data root: one simulated scene with 4 frames of 96 x 72 + an untrained tiny image net."""
    return smoke_frames(tmp_path_factory.mktemp("i2p_frames"))


def _depth() -> np.ndarray:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.15] = 0.0
    return depth


def test_projection_hand_example():
    k = np.array([[100.0, 0, 50.0], [0, 100.0, 40.0], [0, 0, 1]])
    pts = np.array([[0.5, -0.25, 2.0], [0.0, 0.0, -1.0], [3.0, 0.0, 1.0]])  # in front / behind / outside
    index, pixel, exact = frame_pixels(pts, k, (60, 80))
    # u = 100 * 0.5 / 2 + 50 = 75, v = 100 * -0.25 / 2 + 40 = 27.5 -> pixel (floor(28.0), floor(75.5)) = (28, 75)
    assert index.tolist() == [0] and pixel.tolist() == [[28, 75]]
    np.testing.assert_allclose(exact, [[27.5, 75.0]])


def test_projection_round_trip_original_and_cropped_intrinsics():
    depth = _depth()
    pts, flat = depth_to_points(depth, K, None, return_index=True)  # camera coordinates, no pose
    index, pixel, exact = frame_pixels(pts, K, (H, W))
    v, u = np.divmod(flat, W)
    assert index.tolist() == list(range(len(pts)))  # every back-projected point is seen ...
    np.testing.assert_array_equal(pixel, np.stack([v, u], 1))  # ... at the very pixel it came from
    np.testing.assert_allclose(exact, np.stack([v, u], 1), atol=2e-4)
    # through the resized + centre-cropped image: the crop intrinsics agree with the exact pixel map
    from contrast3d.data.image_aug import resize_center_crop_intrinsics

    _, k_crop = resize_center_crop_intrinsics(np.zeros((3, H, W), np.float32), K, S)
    index, pixel, exact = frame_pixels(pts, k_crop, (S, S))
    affine = resize_center_crop_affine(H, W, S)
    expected = affine.from_source(np.stack([v, u], 1).astype(np.float64))
    inside = np.nonzero(np.all((np.floor(expected + 0.5) >= 0) & (np.floor(expected + 0.5) < S), 1))[0]
    assert index.tolist() == inside.tolist() and 0 < len(inside) < len(pts)  # the crop cuts the sides
    np.testing.assert_allclose(exact, expected[inside], atol=2e-4)
    np.testing.assert_allclose(affine.to_source(exact), np.stack([v, u], 1)[inside], atol=2e-4)


def _colour_at(image: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Bilinear colour of a (3, S, S) image at (row, col) positions (border clamped), float64 reference."""
    out = []
    for r, c in rc:
        r, c = min(max(r, 0.0), S_IMG - 1), min(max(c, 0.0), S_IMG - 1)
        r0, c0 = int(np.floor(r)), int(np.floor(c))
        r1, c1 = min(r0 + 1, S_IMG - 1), min(c0 + 1, S_IMG - 1)
        fr, fc = r - r0, c - c0
        top = image[:, r0, c0] * (1 - fc) + image[:, r0, c1] * fc
        bottom = image[:, r1, c0] * (1 - fc) + image[:, r1, c1] * fc
        out.append(top * (1 - fr) + bottom * fr)
    return np.array(out)


@pytest.mark.parametrize("augment", [False, True])
def test_frame_sample_points_pixels_and_image_agree(frames, augment):
    steps = [T.RandomRotate(axis="xyz", p=1.0), T.RandomScale((0.8, 1.2)), T.RandomFlip(axes="x")] if augment else []
    stride = 2 if augment else 1
    ds = FrameImageDataset(frames, T.Compose(steps + [GridSample(0.05)]), image_size=S_IMG, strict=True,
                           depth_stride=stride)
    sample = ds.get_sample(1, np.random.default_rng(3))
    view = sample.views[0]
    seq = find_frame_sequences(frames)[0][1]
    frame = seq.read(seq.ids[1])
    assert sample.image.shape == (3, S_IMG, S_IMG) and sample.pixels.dtype == np.int64
    assert view.grid_coord is not None and "pixel" not in view.extra
    rc = view.extra["pixel_rc"]
    seen = sample.pixels[:, 0]
    assert len(seen) > 100 and np.all(rc[np.setdiff1d(np.arange(len(view)), seen)] == -1)
    assert np.abs(sample.pixels[:, 1:] - rc[seen]).max() <= 0.5 + 1e-4  # the nearest pixel (float32 ties aside)
    # exact geometry: each seen point's sub-pixel position maps back to the depth pixel it came from,
    # also after rotation / scale / flip (the pixels are computed before the 3D augmentation)
    v, u = np.divmod(view.meta["depth_pixel"], frame.depth.shape[1])
    assert np.all(v % stride == 0) and np.all(u % stride == 0)
    affine = resize_center_crop_affine(*frame.depth.shape, S_IMG)
    np.testing.assert_allclose(affine.to_source(rc[seen].astype(np.float64)), np.stack([v, u], 1)[seen], atol=1e-3)
    # content: the image at the point's pixel shows the point's colour (no colour augmentation here)
    diff = np.abs(_colour_at(sample.image.astype(np.float64), rc[seen]) - view.color[seen]).max(1)
    assert np.median(diff) < 0.06, np.median(diff)
    if not augment:  # camera coordinates: exactly the back-projected depth, no pose involved
        pts = depth_to_points(frame.depth, frame.intrinsics)
        np.testing.assert_array_equal(view.coord, pts[view.meta["origin_index"]])
    else:
        pts = depth_to_points(frame.depth, frame.intrinsics, stride=2)[view.meta["origin_index"]]
        assert np.abs(view.coord - pts).max() > 0.1


def test_frame_dataset_reads_real_7scenes_frame(shared_data):
    ds = FrameImageDataset(shared_data / "7scenes_chess_60frames", T.Compose([GridSample(0.05)]), frame_skip=59,
                           strict=True)
    assert len(ds) == 2
    sample = ds.get_sample(0, np.random.default_rng(0))
    view = sample.views[0]
    assert sample.image.shape == (3, 224, 224) and 1000 < len(sample.pixels) <= len(view)
    v, u = np.divmod(view.meta["depth_pixel"], 640)
    rc = view.extra["pixel_rc"][sample.pixels[:, 0]].astype(np.float64)
    np.testing.assert_allclose(resize_center_crop_affine(480, 640, 224).to_source(rc),
                               np.stack([v, u], 1)[sample.pixels[:, 0]], atol=2e-3)


def test_image_pair_dataset_matches_show_the_same_content(frames):
    aug = ImageAugConfig(out_size=32, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, scale=(0.5, 1.0))
    ds = ImagePairDataset(frames, aug=aug, num_pixels=50, strict=True)
    samples = [ds.get_sample(i, np.random.default_rng(i)) for i in range(2)]
    for s in samples:
        assert s.view1.shape == s.view2.shape == (3, 32, 32) and 0 < len(s.matches) <= 50
        a = s.view1.reshape(3, -1)[:, torch.as_tensor(s.matches[:, 0])]
        b = s.view2.reshape(3, -1)[:, torch.as_tensor(s.matches[:, 1])]
        assert float((a - b).abs().max(0).values.median()) < 0.08
    batch = collate_image_pairs(samples)
    assert batch.images1.shape == (2, 3, 32, 32) and batch.batch_size == 2
    assert batch.match_offset.tolist() == np.cumsum([len(s.matches) for s in samples]).tolist()
    flat1 = batch.images1.permute(0, 2, 3, 1).reshape(-1, 3)
    for b, s in enumerate(samples):  # global flat indices address the right image
        rows = batch.match_pair == b
        assert torch.equal(flat1[batch.matches[rows, 0]], s.view1.reshape(3, -1)[:, s.matches[:, 0]].t())
    # the run seed reaches the augmentation
    assert not torch.equal(ds.get_sample(0, np.random.default_rng(1)).view1, samples[0].view1)


def test_unusable_frame_is_skipped_with_a_warning(frames, tmp_path):
    scene = find_frame_sequences(frames)[0][1].root
    copy = tmp_path / "scene"
    shutil.copytree(scene, copy)
    Image.fromarray(np.zeros((72, 96), np.uint16)).save(copy / "depth" / "1.png")  # no valid depth
    ds = FrameImageDataset(copy, T.Compose([GridSample(0.1)]), image_size=32)
    with pytest.warns(UserWarning, match="skipping frame"):
        sample = ds.get_sample(1, np.random.default_rng(0))
    assert sample.meta["frame"] == "2" and 1 in ds.skipped
    pairs = ImagePairDataset(copy, aug=ImageAugConfig(out_size=32), num_pixels=10)
    with pytest.warns(UserWarning, match="skipping frame"):
        assert pairs.get_sample(1, np.random.default_rng(0)).meta["frame"] == "2"
    with pytest.raises(DataError, match="all zero"):
        FrameImageDataset(copy, image_size=32, strict=True).get_sample(1, np.random.default_rng(0))


def test_sequences_found_through_prepared_scenes_and_errors(frames, tmp_path):
    scene = find_frame_sequences(frames)[0][1].root
    prepared = tmp_path / "prepared" / "sceneA"
    prepared.mkdir(parents=True)
    (prepared / "scene.json").write_text(json.dumps({"format": "contrast3d-frames", "source": str(scene)}))
    found = find_frame_sequences(tmp_path / "prepared")
    assert [(name, seq.root) for name, seq in found] == [("sceneA", scene)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="raw RGB-D frame folders"):
        find_frame_sequences(tmp_path / "empty")


def test_smoke_frames_ships_an_untrained_image_net(frames):
    pre = load_pretrained(f"{frames}/{SMOKE_IMAGE_NET}")
    assert pre.record.kind == "image_unet" and pre.record.preset == "tiny" and pre.record.out_channels == 16
    assert len(FrameImageDataset(frames)) == 4
