"""Image views with exact pixel correspondences, centre-crop intrinsics, bilinear feature sampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from contrast3d.data.image_aug import (
    ImageAugConfig,
    ImageAugmentation,
    PixelAffine,
    adjust_hue,
    augment_pair,
    color_jitter,
    crop_affine,
    gaussian_blur,
    pixel_correspondences,
    random_resized_crop_box,
    resize_center_crop_affine,
    resize_center_crop_intrinsics,
    resized_crop,
    sample_bilinear,
    to_grayscale,
)

SRC_H, SRC_W, OUT = 48, 64, 32
GEOMETRY_ONLY = ImageAugConfig(out_size=OUT, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def coordinate_image(h: int = SRC_H, w: int = SRC_W) -> torch.Tensor:
    """``(3, h, w)`` in [0, 1]: channel 0 = row / h, channel 1 = col / w, channel 2 a smooth wave."""
    r = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    c = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    return torch.stack([r / h, c / w, 0.5 + 0.2 * torch.sin(r / 7.0 + c / 11.0)]).float()


def decode(view: torch.Tensor, flat: np.ndarray, h: int = SRC_H, w: int = SRC_W) -> np.ndarray:
    """Source ``(row, col)`` encoded in the pixels ``flat`` of a coordinate-image view."""
    v = view.reshape(3, -1)[:, torch.as_tensor(flat)].double().numpy()
    return np.stack([v[0] * h, v[1] * w], axis=1)


def naive_matches(box1, flip1, box2, flip2, out: int) -> set[tuple[int, int]]:
    """Correspondences by explicit per-pixel formulas (crop box + resize + flip), float64 loops."""
    matches = set()
    t2, l2, h2, w2 = box2
    for r in range(out):
        for c in range(out):
            t1, l1, h1, w1 = box1
            cu = out - 1 - c if flip1 else c
            src_r = t1 + (r + 0.5) * h1 / out - 0.5
            src_c = l1 + (cu + 0.5) * w1 / out - 0.5
            r2 = (src_r - t2 + 0.5) * out / h2 - 0.5
            c2 = (src_c - l2 + 0.5) * out / w2 - 0.5
            if flip2:
                c2 = out - 1 - c2
            i2, j2 = int(np.floor(r2 + 0.5 + 1e-6)), int(np.floor(c2 + 0.5 + 1e-6))  # ties round up
            if 0 <= i2 < out and 0 <= j2 < out:
                matches.add((r * out + c, i2 * out + j2))
    return matches


def test_identity_maps_every_pixel_to_itself():
    t = PixelAffine.identity(5, 7)
    rc = np.stack(np.divmod(np.arange(35), 7), 1)
    np.testing.assert_array_equal(t.to_source(rc), rc)
    np.testing.assert_array_equal(t.from_source(rc), rc)
    m = pixel_correspondences(t, t, (5, 7), num=None, rng=np.random.default_rng(0))
    assert m.dtype == np.int64 and m.shape == (35, 2)
    np.testing.assert_array_equal(m[:, 0], m[:, 1])
    np.testing.assert_array_equal(np.sort(m[:, 0]), np.arange(35))


def test_crop_affine_hand_computed_and_inverse():
    # box 40 x 60 at (10, 20) -> 20 x 30: scale 2; pixel (0, 0) centre covers box pixels 0..1 -> 0.5
    t = crop_affine((10, 20, 40, 60), (20, 30), (100, 100))
    np.testing.assert_allclose(t.to_source([[0, 0], [19, 29]]), [[10.5, 20.5], [48.5, 78.5]])
    flipped = crop_affine((10, 20, 40, 60), (20, 30), (100, 100), flip=True)
    np.testing.assert_allclose(flipped.to_source([[0, 0], [0, 29]]), [[10.5, 78.5], [10.5, 20.5]])
    pts = np.random.default_rng(0).uniform(0, 30, (10, 2))
    np.testing.assert_allclose(flipped.from_source(flipped.to_source(pts)), pts, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_correspondences_equal_naive_formulas_and_content_agrees(seed):
    rng = np.random.default_rng(seed)
    image = coordinate_image()
    box1 = random_resized_crop_box(SRC_H, SRC_W, rng, scale=(0.3, 1.0))
    box2 = random_resized_crop_box(SRC_H, SRC_W, rng, scale=(0.3, 1.0))
    flip1, flip2 = bool(seed % 2), bool(seed // 2 % 2)
    view1, t1 = resized_crop(image, box1, OUT, flip1)
    view2, t2 = resized_crop(image, box2, OUT, flip2)
    m = pixel_correspondences(t1, t2, OUT, num=None, rng=rng, unique=False)
    assert {tuple(p) for p in m.tolist()} == naive_matches(box1, flip1, box2, flip2, OUT)
    assert len(m) > 0
    # the view-1 pixel shows the source point its transform says (bilinear: exact on ramps away from borders)
    rc1 = np.stack(np.divmod(m[:, 0], OUT), 1)
    src1 = t1.to_source(rc1)
    interior = ((rc1 >= 2) & (rc1 <= OUT - 3)).all(1)
    np.testing.assert_allclose(decode(view1, m[interior, 0]), src1[interior], atol=0.1)
    # matched pixels show the same content up to half a view-2 pixel (in source pixels) + interpolation
    half2 = 0.5 * np.abs(t2.matrix[:, :2]).sum(1)
    err = np.abs(decode(view1, m[:, 0]) - decode(view2, m[:, 1]))
    assert (err <= half2 + 0.6).all(), err.max(0)


def test_content_mismatch_is_detected_when_the_flip_is_ignored():
    """The content check above can fail: pretend view 2 was not flipped."""
    image = coordinate_image()
    view1, t1 = resized_crop(image, (4, 6, 40, 50), OUT, False)
    view2, _ = resized_crop(image, (2, 10, 44, 52), OUT, True)
    wrong = crop_affine((2, 10, 44, 52), OUT, (SRC_H, SRC_W), False)
    m = pixel_correspondences(t1, wrong, OUT, num=None)
    err = np.abs(decode(view1, m[:, 0]) - decode(view2, m[:, 1]))
    assert err[:, 1].max() > 10


@pytest.mark.parametrize("seed", range(4))
def test_augmentation_geometry_only_views_match(seed):
    image = coordinate_image()
    aug, rng = ImageAugmentation(GEOMETRY_ONLY), np.random.default_rng(100 + seed)
    view1, t1 = aug(image, rng)
    view2, t2 = aug(image, rng)
    m = pixel_correspondences(t1, t2, OUT, num=200, rng=rng)
    assert view1.shape == view2.shape == (3, OUT, OUT) and view1.dtype == torch.float32
    assert m.shape[1] == 2 and 0 < len(m) <= 200
    assert len(np.unique(m[:, 1])) == len(m)  # unique view-2 pixels by default
    half2 = 0.5 * np.abs(t2.matrix[:, :2]).sum(1)
    err = np.abs(decode(view1, m[:, 0]) - decode(view2, m[:, 1]))
    assert (err <= half2 + 0.6).all(), err.max(0)
    # augment_pair is the same recipe with the same random stream
    p1, p2, pm = augment_pair(image, np.random.default_rng(100 + seed), GEOMETRY_ONLY, num=200)
    assert torch.equal(p1, view1) and torch.equal(p2, view2)
    np.testing.assert_array_equal(pm, m)


def test_sampling_is_seeded_capped_and_a_subset():
    rng = np.random.default_rng(5)
    image = coordinate_image()
    _, t1 = resized_crop(image, (0, 0, 48, 48), OUT, False)
    _, t2 = resized_crop(image, (8, 16, 40, 48), OUT, True)
    full = pixel_correspondences(t1, t2, OUT, num=None, unique=False)
    full_set = {tuple(p) for p in full.tolist()}
    a = pixel_correspondences(t1, t2, OUT, num=50, rng=np.random.default_rng(1))
    b = pixel_correspondences(t1, t2, OUT, num=50, rng=np.random.default_rng(1))
    c = pixel_correspondences(t1, t2, OUT, num=50, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert len(a) == 50 and not np.array_equal(a, c)
    assert {tuple(p) for p in a.tolist()} <= full_set
    assert len(np.unique(a[:, 0])) == 50 and len(np.unique(a[:, 1])) == 50
    # non-overlapping views give no match
    _, far = resized_crop(image, (0, 48, 10, 16), OUT, False)
    _, near = resized_crop(image, (0, 0, 10, 16), OUT, False)
    assert pixel_correspondences(far, near, OUT, rng=rng).shape == (0, 2)
    with pytest.raises(ValueError):
        pixel_correspondences(t1, t2, (OUT, OUT + 1))


def test_downscaling_is_antialiased():
    """A 1-pixel checkerboard shrunk 3x becomes flat grey (plain bilinear would sample pure black/white)."""
    r, c = np.indices((48, 48))
    board = torch.from_numpy(((r + c) % 2).astype(np.float32)).expand(3, 48, 48)
    view, _ = resized_crop(board, (0, 0, 48, 48), 16)
    assert (view - 0.5).abs().max() < 0.1


def test_random_resized_crop_box_statistics_and_fallback():
    rng = np.random.default_rng(0)
    boxes = np.array([random_resized_crop_box(240, 320, rng, (0.2, 1.0), (3 / 4, 4 / 3)) for _ in range(300)])
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 240).all() and (left + w <= 320).all()
    area = h * w / (240 * 320)
    assert area.min() >= 0.19 and area.max() <= 1.0 and area.min() < 0.3
    aspect = w / h
    assert aspect.min() >= 0.74 and aspect.max() <= 1.35
    # an impossible aspect (wide crops of a tall image at full area) falls back to the centred clamp
    assert random_resized_crop_box(100, 40, rng, (1.0, 1.0), (2.0, 3.0)) == (40, 0, 20, 40)


def test_colour_operations():
    rng = np.random.default_rng(0)
    img = torch.rand(3, 9, 11)
    for _ in range(5):
        out = color_jitter(img, rng, 0.4, 0.4, 0.4, 0.1)
        assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(color_jitter(img, rng, 0, 0, 0, 0), img)
    gray = to_grayscale(img)
    assert torch.allclose(gray[0], 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2], atol=1e-6)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    green = torch.stack([torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2, 2)])
    assert torch.allclose(adjust_hue(red, 1 / 3), green, atol=1e-6, rtol=0)
    assert torch.allclose(adjust_hue(img, 0.0), img, atol=1e-6, rtol=0)


def test_gaussian_blur_matches_naive_reflect_convolution():
    rng = np.random.default_rng(0)
    img = rng.random((2, 7, 9))
    sigma, k = 1.3, 5
    x = np.arange(k) - k // 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    padded = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="reflect")
    ref = np.zeros_like(img)
    for ch in range(2):
        for i in range(7):
            for j in range(9):
                ref[ch, i, j] = sum(g[a] * g[b] * padded[ch, i + a, j + b] for a in range(k) for b in range(k))
    out = gaussian_blur(torch.from_numpy(img), sigma, k).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_full_augmentation_is_seeded_and_in_range():
    img = torch.rand(3, 40, 50)
    cfg = ImageAugConfig(out_size=24, jitter_p=1.0, grayscale_p=0.5, blur_p=1.0)
    v1, t1 = ImageAugmentation(cfg)(img, np.random.default_rng(3))
    v2, t2 = ImageAugmentation(cfg)(img, np.random.default_rng(3))
    assert torch.equal(v1, v2) and np.array_equal(t1.matrix, t2.matrix)
    assert v1.shape == (3, 24, 24) and v1.min() >= 0 and v1.max() <= 1
    v8, _ = ImageAugmentation(cfg)((img * 255).round().to(torch.uint8), np.random.default_rng(3))
    assert torch.allclose(v8, v1, atol=0.01, rtol=0)


def project(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Camera points -> ``(N, 2)`` image ``(row, col)``."""
    uvw = points @ k.T
    return np.stack([uvw[:, 1] / uvw[:, 2], uvw[:, 0] / uvw[:, 2]], 1)


@pytest.mark.parametrize("shape", [(60, 80), (90, 50)])
def test_intrinsics_round_trip_same_content(shape):
    h, w = shape
    k = np.array([[70.0, 0.0, w / 2 - 1.3], [0.0, 65.0, h / 2 + 0.7], [0.0, 0.0, 1.0]])
    image = coordinate_image(h, w)
    new_image, new_k = resize_center_crop_intrinsics(image, k, size=32)
    assert new_image.shape == (3, 32, 32) and isinstance(new_image, torch.Tensor)
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-0.5, 0.5, (400, 2)), rng.uniform(1.0, 3.0, (400, 1))], 1)
    pts[:, :2] *= pts[:, 2:]
    old_rc, new_rc = project(pts, k), project(pts, new_k)
    keep = ((new_rc >= 2) & (new_rc <= 29)).all(1)
    assert keep.sum() > 50
    zeros = torch.zeros(int(keep.sum()), dtype=torch.long)
    old = sample_bilinear(image[None].double(), zeros, torch.from_numpy(old_rc[keep, 0]),
                          torch.from_numpy(old_rc[keep, 1]))
    new = sample_bilinear(new_image[None].double(), zeros, torch.from_numpy(new_rc[keep, 0]),
                          torch.from_numpy(new_rc[keep, 1]))
    # channels 0/1 encode row / h and col / w: agreement to a small fraction of a source pixel
    np.testing.assert_allclose(new[:, 0] * h, old[:, 0] * h, atol=0.15)
    np.testing.assert_allclose(new[:, 1] * w, old[:, 1] * w, atol=0.15)
    np.testing.assert_allclose(new[:, 2], old[:, 2], atol=0.02)
    # the original intrinsics on the new image would be far off
    assert np.abs(project(pts[keep], k) - new_rc[keep]).max() > 5


def test_intrinsics_hand_computed_and_layouts():
    k = np.array([[100.0, 0.0, 50.0], [0.0, 90.0, 20.0], [0.0, 0.0, 1.0]])
    # height already equals the size: a pure centre crop shifts cx by the crop offset (80 - 32) / 2 = 24
    _, k1 = resize_center_crop_intrinsics(np.zeros((32, 80, 3), np.uint8), k, size=32)
    np.testing.assert_allclose(k1, [[100.0, 0.0, 26.0], [0.0, 90.0, 20.0], [0.0, 0.0, 1.0]])
    # halving 64 x 64 -> 32 x 32: f halves, c -> (c + 0.5) / 2 - 0.5
    _, k2 = resize_center_crop_intrinsics(torch.zeros(3, 64, 64), k, size=32)
    np.testing.assert_allclose(k2, [[50.0, 0.0, 24.75], [0.0, 45.0, 9.75], [0.0, 0.0, 1.0]])
    hwc = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    out_hwc, ka = resize_center_crop_intrinsics(hwc, k, size=16)
    out_chw, kb = resize_center_crop_intrinsics(torch.from_numpy(hwc).permute(2, 0, 1), k, size=16)
    assert out_hwc.shape == (16, 16, 3) and out_hwc.dtype == np.uint8 and out_chw.dtype == torch.uint8
    np.testing.assert_array_equal(out_hwc, out_chw.permute(1, 2, 0).numpy())
    np.testing.assert_allclose(ka, kb)
    t = resize_center_crop_affine(40, 52, 16)
    assert t.out_size == (16, 16) and t.src_size == (40, 52)


def naive_bilinear(fm: np.ndarray, b: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    _, ch, h, w = fm.shape
    out = np.zeros((len(b), ch))
    for i in range(len(b)):
        y, x = min(max(r[i], 0.0), h - 1.0), min(max(c[i], 0.0), w - 1.0)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        for yy in (y0, y0 + 1):
            for xx in (x0, x0 + 1):
                wt = (1 - abs(y - yy)) * (1 - abs(x - xx))
                if wt > 0:
                    out[i] += wt * fm[b[i], :, min(yy, h - 1), min(xx, w - 1)]
    return out


def test_sample_bilinear_against_naive_and_grid_sample():
    rng = np.random.default_rng(0)
    fm = torch.from_numpy(rng.normal(size=(2, 4, 5, 6)))
    m = 40
    b = torch.from_numpy(rng.integers(0, 2, m))
    r = torch.from_numpy(rng.uniform(-1.0, 5.5, m))
    c = torch.from_numpy(rng.uniform(-1.0, 6.5, m))
    r[:3] = torch.tensor([0.0, 4.0, 2.0])
    c[:3] = torch.tensor([0.0, 5.0, 3.0])
    out = sample_bilinear(fm, b, r, c)
    np.testing.assert_allclose(out.numpy(), naive_bilinear(fm.numpy(), b.numpy(), r.numpy(), c.numpy()),
                               atol=1e-12)
    np.testing.assert_allclose(out[:3].numpy(), fm[b[:3], :, [0, 4, 2], [0, 5, 3]].numpy(), atol=1e-12)
    grid = torch.stack([(c + 0.5) / 6 * 2 - 1, (r + 0.5) / 5 * 2 - 1], -1)
    ref = torch.cat([F.grid_sample(fm[b[i]:b[i] + 1], grid[i].view(1, 1, 1, 2), align_corners=False,
                                   padding_mode="border").view(1, 4) for i in range(m)])
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-12)


def test_sample_bilinear_gradient():
    """Autograd gradients vs central differences along random directions (float64)."""
    rng = np.random.default_rng(1)
    fm = torch.from_numpy(rng.normal(size=(2, 3, 4, 5))).requires_grad_(True)
    b = torch.tensor([0, 1, 1, 0])
    r = torch.tensor([0.3, 2.7, 1.5, 2.2], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([3.4, 0.2, 2.5, 1.1], dtype=torch.float64, requires_grad=True)
    weight = torch.from_numpy(rng.normal(size=(4, 3)))

    def f(x, rr, cc):
        return (sample_bilinear(x, b, rr, cc) * weight).sum()

    f(fm, r, c).backward()
    eps = 1e-6
    for _ in range(3):
        d = torch.from_numpy(rng.normal(size=fm.shape))
        dr, dc = torch.from_numpy(rng.normal(size=4)), torch.from_numpy(rng.normal(size=4))
        with torch.no_grad():
            plus, minus = f(fm + eps * d, r + eps * dr, c + eps * dc), f(fm - eps * d, r - eps * dr, c - eps * dc)
            num = (plus - minus) / (2 * eps)
        ana = (fm.grad * d).sum() + (r.grad * dr).sum() + (c.grad * dc).sum()
        assert abs(num.item() - ana.item()) < 1e-6
    with pytest.raises(ValueError):
        sample_bilinear(fm, b, r[:3], c)
