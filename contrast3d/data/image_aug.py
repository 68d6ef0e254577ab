"""Image views with exact pixel correspondences (image-to-point contrast, Janda et al. §III-B and §IV).

Stage 1 contrasts the per-pixel features of two SimCLR-augmented views of one image; "pixels that map
back to the same coordinates in the original image are positives". Stage 2 centre-crops each image to
224 x 224 and projects 3D points into it through the (adjusted) intrinsics.

**Pixel convention** (the same as :mod:`contrast3d.data.projection`): pixel ``(i, j)`` of an image has
its centre at the continuous coordinate ``(row, col) = (i, j)`` and covers ``[i - 0.5, i + 0.5)``; a
continuous point belongs to pixel ``floor(coord + 0.5)``. Intrinsics map a camera point to
``(u, v) = (col, row)``.

**Geometry as an affine map.** Every geometric augmentation returns a :class:`PixelAffine` ``T`` with
``source = A @ (row, col) + b`` from output-pixel to source-pixel coordinates (float64). A random resized
crop takes the integer box ``(top, left, h, w)`` and resizes it to ``(H_o, W_o)`` with
``F.interpolate(bilinear, align_corners=False, antialias=True)``, whose output pixel ``r`` is centred on
box coordinate ``(r + 0.5) h / H_o - 0.5``; hence ``row_src = s_y r + top + s_y / 2 - 1/2`` with
``s_y = h / H_o`` (likewise for columns). A horizontal flip replaces ``c`` by ``W_o - 1 - c``. Colour
operations do not move pixels. Because the map is exact, correspondences are computed, never searched:
:func:`pixel_correspondences` maps every pixel centre of view 1 to the source (``T1``), into view 2
(``T2^-1``), rounds to the nearest pixel centre and keeps those inside view 2.

**Augmentation recipe** (:class:`ImageAugConfig`, SimCLR's list as the paper says, "roughly"): random
resized crop to 224 (area scale ``(0.2, 1.0)`` — SimCLR uses 0.08, but pixel contrast needs the two views
to overlap, so we take MoCo-v2's 0.2 — aspect ratio ``(3/4, 4/3)``, torchvision's 10-try sampling with a
centre-crop fallback), horizontal flip p 0.5, colour jitter (brightness, contrast, saturation 0.4, hue 0.1,
applied in random order as torchvision does) with p 0.8, grayscale p 0.2, Gaussian blur p 0.5 (sigma
uniform in ``[0.1, 2.0]``, kernel 10 % of the output side rounded up to odd, reflect padding, SimCLR's
values). Randomness comes only from the ``numpy.random.Generator`` passed in.

Decisions the paper leaves open: correspondences are sampled among the view-1 pixels that land in view 2
(so ``num`` matches are returned whenever the overlap allows), and by default each view-2 pixel is used at
most once (``unique=True``) so that no key appears twice and acts as a false negative in InfoNCE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from contrast3d.data.color_transforms import hsv_to_rgb, rgb_to_hsv

_LUMA = (0.2989, 0.587, 0.114)
_TIE_EPS = 1e-6  # exact half-pixel ties (frequent with equal crop scales) round up despite float round-off


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, float, np.integer, np.floating)):  # one number: a square
        return (int(size), int(size))
    return (int(size[0]), int(size[1]))


@dataclass
class PixelAffine:
    """Affine map from output pixel ``(row, col)`` to source pixel ``(row, col)`` coordinates.

    Attributes:
        matrix: ``(2, 3)`` float64 ``[A | b]``: ``source = A @ (row, col) + b``.
        out_size: ``(H, W)`` of the output image.
        src_size: ``(H, W)`` of the source image.
    """

    matrix: np.ndarray
    out_size: tuple[int, int]
    src_size: tuple[int, int]

    def __post_init__(self):
        self.matrix = np.asarray(self.matrix, np.float64).reshape(2, 3)
        self.out_size, self.src_size = _size2(self.out_size), _size2(self.src_size)

    @classmethod
    def identity(cls, height: int, width: int) -> PixelAffine:
        return cls(np.eye(2, 3), (height, width), (height, width))

    def to_source(self, rc: np.ndarray) -> np.ndarray:
        """``(N, 2)`` output ``(row, col)`` -> ``(N, 2)`` float64 source ``(row, col)``."""
        return np.asarray(rc, np.float64) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse_matrix(self) -> np.ndarray:
        """``(2, 3)`` ``[A^-1 | -A^-1 b]``: source ``(row, col)`` -> output ``(row, col)``."""
        inv = np.linalg.inv(self.matrix[:, :2])
        return np.concatenate([inv, -(inv @ self.matrix[:, 2])[:, None]], axis=1)

    def from_source(self, rc: np.ndarray) -> np.ndarray:
        """``(N, 2)`` source ``(row, col)`` -> ``(N, 2)`` float64 output ``(row, col)``."""
        inv = self.inverse_matrix()
        return np.asarray(rc, np.float64) @ inv[:, :2].T + inv[:, 2]


# ----------------------------------------------------------------------------------------------- geometry


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.2, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop`` box ``(top, left, h, w)`` (integers, inside the image).

    Area fraction uniform in ``scale``, aspect ``w / h`` log-uniform in ``ratio``; 10 tries, then the
    largest centred box with the aspect clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def crop_affine(box: tuple[int, int, int, int], out_size: int | tuple[int, int], src_size: tuple[int, int],
                flip: bool = False) -> PixelAffine:
    """The :class:`PixelAffine` of "crop ``box = (top, left, h, w)``, resize to ``out_size``, maybe h-flip"."""
    top, left, h, w = box
    oh, ow = _size2(out_size)
    sy, sx = h / oh, w / ow
    col = [0.0, sx, left + 0.5 * sx - 0.5]
    if flip:  # c -> ow - 1 - c before the resize map
        col = [0.0, -sx, left + sx * (ow - 0.5) - 0.5]
    return PixelAffine(np.array([[sy, 0.0, top + 0.5 * sy - 0.5], col]), (oh, ow), src_size)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` float -> ``(C, *size)``: bilinear, ``align_corners=False``, antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def resized_crop(image: torch.Tensor, box: tuple[int, int, int, int], out_size: int | tuple[int, int],
                 flip: bool = False) -> tuple[torch.Tensor, PixelAffine]:
    """Crop ``box = (top, left, h, w)`` of a ``(C, H, W)`` image, resize to ``out_size``, optionally flip.

    Returns the ``(C, H_o, W_o)`` view and its :class:`PixelAffine`.
    """
    top, left, h, w = (int(v) for v in box)
    size = _size2(out_size)
    view = _resize(image[:, top:top + h, left:left + w], size)
    if flip:
        view = torch.flip(view, dims=[-1])
    return view, crop_affine((top, left, h, w), size, (int(image.shape[-2]), int(image.shape[-1])), flip)


# ----------------------------------------------------------------------------------------------- colour


def _gray(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` -> ``(1, H, W)`` ITU-R 601 luminance."""
    w = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * w).sum(0, keepdim=True)


def to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` -> ``(3, H, W)`` luminance replicated to three channels."""
    return _gray(image).expand(3, -1, -1).clone()


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    return (image * factor).clamp(0.0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the mean luminance (a scalar), as torchvision."""
    return (factor * image + (1.0 - factor) * _gray(image).mean()).clamp(0.0, 1.0)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the per-pixel luminance."""
    return (factor * image + (1.0 - factor) * _gray(image)).clamp(0.0, 1.0)


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (``[-0.5, 0.5]``) in HSV space."""
    hsv = rgb_to_hsv(image.permute(1, 2, 0).detach().cpu().double().numpy())
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    rgb = torch.from_numpy(np.ascontiguousarray(hsv_to_rgb(hsv))).permute(2, 0, 1)
    return rgb.to(image.dtype).to(image.device).clamp(0.0, 1.0)


def color_jitter(image: torch.Tensor, rng: np.random.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, hue: float = 0.1) -> torch.Tensor:
    """torchvision ``ColorJitter``: factors uniform in ``[max(0, 1 - s), 1 + s]`` (hue shift in ``[-h, h]``),
    the four operations applied in a random order."""
    factors = [rng.uniform(max(0.0, 1.0 - s), 1.0 + s) for s in (brightness, contrast, saturation)]
    shift = rng.uniform(-hue, hue)
    ops = [lambda x: adjust_brightness(x, factors[0]), lambda x: adjust_contrast(x, factors[1]),
           lambda x: adjust_saturation(x, factors[2]), lambda x: adjust_hue(x, shift)]
    active = [brightness > 0, contrast > 0, saturation > 0, hue > 0]
    for k in rng.permutation(4):
        if active[k]:
            image = ops[k](image)
    return image


def gaussian_blur(image: torch.Tensor, sigma: float, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur of a ``(C, H, W)`` image; odd ``kernel_size``, reflect padding."""
    half = kernel_size // 2
    x = torch.arange(-half, half + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = image.shape[0]
    pad_h, pad_w = min(half, image.shape[-2] - 1), min(half, image.shape[-1] - 1)
    out = F.pad(image[None], (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    out = F.conv2d(out, k[half - pad_h:half + pad_h + 1].view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    out = F.conv2d(out, k[half - pad_w:half + pad_w + 1].view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return out[0]


# ----------------------------------------------------------------------------------------------- pipeline


@dataclass
class ImageAugConfig:
    """SimCLR-style view recipe (module docstring); set the ``*_p`` to 0 for geometry-only views."""

    out_size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1


def _as_chw_float(image) -> torch.Tensor:
    image = torch.as_tensor(image)
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(image.shape)}")
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()


class ImageAugmentation:
    """``aug(image, rng) -> (view, PixelAffine)`` for a ``(3, H, W)`` float image in [0, 1] (uint8 accepted)."""

    def __init__(self, config: ImageAugConfig | None = None):
        self.config = config or ImageAugConfig()

    def __call__(self, image, rng: np.random.Generator) -> tuple[torch.Tensor, PixelAffine]:
        cfg = self.config
        image = _as_chw_float(image)
        box = random_resized_crop_box(image.shape[-2], image.shape[-1], rng, cfg.scale, cfg.ratio)
        view, transform = resized_crop(image, box, cfg.out_size, flip=bool(rng.random() < cfg.flip_p))
        if rng.random() < cfg.jitter_p:
            view = color_jitter(view, rng, *cfg.jitter)
        if rng.random() < cfg.grayscale_p:
            view = to_grayscale(view)
        if rng.random() < cfg.blur_p:
            kernel = max(3, int(math.ceil(cfg.blur_kernel_frac * cfg.out_size)) | 1)
            view = gaussian_blur(view, float(rng.uniform(*cfg.blur_sigma)), kernel)
        return view.contiguous(), transform


def pixel_correspondences(t1: PixelAffine, t2: PixelAffine, out_size: int | tuple[int, int] | None = None,
                          num: int | None = 4092, rng: np.random.Generator | None = None,
                          unique: bool = True) -> np.ndarray:
    """Matched pixels of two views of one source image, exactly from their transforms.

    Every pixel centre of view 1 is mapped to the source by ``t1`` and into view 2 by ``t2``'s inverse,
    then to view 2's nearest pixel centre (``floor(x + 0.5)``; exact half-pixel ties, common when both
    views have the same scale, round up, with a 1e-6 px allowance for float round-off); those inside
    view 2 are candidates.

    Args:
        t1, t2: transforms of view 1 and view 2 (same source image size).
        out_size: ``(H, W)`` (or one int) of view 1; ``None`` takes ``t1.out_size`` (checked when given).
        num: at most this many matches, sampled uniformly without replacement; ``None`` keeps all.
        rng: sampling generator (``None``: ``default_rng(0)``, deterministic).
        unique: keep at most one match per view-2 pixel (several view-1 pixels can round to it when
            view 2 is zoomed out).

    Returns:
        ``(K, 2)`` int64 flat pixel indices ``row * W + col``: column 0 in view 1, column 1 in view 2.
        Rows are in random order; ``K = 0`` when the views do not overlap.
    """
    h1, w1 = t1.out_size if out_size is None else _size2(out_size)
    if (h1, w1) != t1.out_size:
        raise ValueError(f"out_size {(h1, w1)} differs from view 1's size {t1.out_size}")
    if t1.src_size != t2.src_size:
        raise ValueError(f"views come from different source sizes {t1.src_size} and {t2.src_size}")
    h2, w2 = t2.out_size
    rows, cols = np.divmod(np.arange(h1 * w1, dtype=np.int64), w1)
    p2 = np.floor(t2.from_source(t1.to_source(np.stack([rows, cols], 1))) + 0.5 + _TIE_EPS).astype(np.int64)
    inside = np.nonzero((p2[:, 0] >= 0) & (p2[:, 0] < h2) & (p2[:, 1] >= 0) & (p2[:, 1] < w2))[0]
    idx1, idx2 = inside, p2[inside, 0] * w2 + p2[inside, 1]
    rng = np.random.default_rng(0) if rng is None else rng
    order = rng.permutation(len(idx1))
    if unique:
        _, first = np.unique(idx2[order], return_index=True)
        order = order[np.sort(first)]
    if num is not None:
        order = order[:num]
    return np.stack([idx1[order], idx2[order]], axis=1).astype(np.int64)


def augment_pair(image, rng: np.random.Generator, config: ImageAugConfig | None = None,
                 num: int = 4092) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Two views of ``image`` and their ``(K, 2)`` flat-index matches (:func:`pixel_correspondences`)."""
    aug = ImageAugmentation(config)
    view1, t1 = aug(image, rng)
    view2, t2 = aug(image, rng)
    return view1, view2, pixel_correspondences(t1, t2, None, num, rng)


# ----------------------------------------------------------------------------------------------- stage 2


def _resize_center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Resized image size ``(nh, nw)`` (shorter side ``size``, longer side rounded) and crop ``(top, left)``."""
    if height <= width:
        nh, nw = size, max(size, int(round(width * size / height)))
    else:
        nh, nw = max(size, int(round(height * size / width))), size
    return nh, nw, int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))


def resize_center_crop_affine(height: int, width: int, size: int = 224) -> PixelAffine:
    """:class:`PixelAffine` of "resize the shorter side to ``size`` (longer side rounded), centre-crop
    ``size x size``" (torchvision ``Resize(size)`` + ``CenterCrop(size)``)."""
    nh, nw, top, left = _resize_center_crop_box(height, width, size)
    sy, sx = height / nh, width / nw
    return PixelAffine(np.array([[sy, 0.0, sy * (top + 0.5) - 0.5], [0.0, sx, sx * (left + 0.5) - 0.5]]),
                       (size, size), (height, width))


def transform_intrinsics(intrinsics, transform: PixelAffine) -> np.ndarray:
    """``(3, 3)`` pinhole matrix of the transformed image: ``K' = S K`` with ``S`` the source -> output
    pixel map written in ``(u, v) = (col, row)`` order. Returns float64."""
    inv = transform.inverse_matrix()  # rows/cols in (row, col) order
    s = np.array([[inv[1, 1], inv[1, 0], inv[1, 2]], [inv[0, 1], inv[0, 0], inv[0, 2]], [0.0, 0.0, 1.0]])
    return s @ np.asarray(intrinsics, np.float64).reshape(3, 3)


def resize_center_crop_intrinsics(image, intrinsics, size: int = 224):
    """Resize the shorter side to ``size``, centre-crop to ``size x size`` and adjust the intrinsics.

    Args:
        image: ``(3, H, W)`` or ``(H, W, 3)`` (``(3, H, W)`` wins when both fit), numpy or torch, float or
            uint8.
        intrinsics: ``(3, 3)`` pinhole matrix of ``image`` (pixels).
        size: output side.

    Returns:
        ``(image', K')``: the image in the input's layout, type and dtype (uint8 rounded), and ``(3, 3)``
        float64 numpy ``K'`` such that a camera point projected with ``K'`` lands on the same content in
        ``image'`` as with ``K`` in ``image``.
    """
    is_numpy = isinstance(image, np.ndarray)
    tensor = torch.as_tensor(image)
    if tensor.dim() != 3 or 3 not in (tensor.shape[0], tensor.shape[-1]):
        raise ValueError(f"expected a (3, H, W) or (H, W, 3) image, got {tuple(tensor.shape)}")
    chw = tensor.shape[0] == 3
    x = (tensor if chw else tensor.permute(2, 0, 1)).double()
    nh, nw, top, left = _resize_center_crop_box(x.shape[-2], x.shape[-1], size)
    out = _resize(x, (nh, nw))[:, top:top + size, left:left + size]
    out = out if chw else out.permute(1, 2, 0)
    if tensor.dtype == torch.uint8:
        out = out.round().clamp(0, 255)
    out = out.to(tensor.dtype).contiguous()
    transform = resize_center_crop_affine(x.shape[-2], x.shape[-1], size)
    return (out.numpy() if is_numpy else out), transform_intrinsics(intrinsics, transform)


def sample_bilinear(feature_map: torch.Tensor, image_index: torch.Tensor, row: torch.Tensor,
                    col: torch.Tensor) -> torch.Tensor:
    """Bilinear features at float pixel positions (pixel centres at integers; positions clamped to the
    centres' range, i.e. border padding). Same as ``grid_sample(align_corners=False, padding_mode="border")``.

    Args:
        feature_map: ``(B, C, H, W)``.
        image_index: ``(M,)`` int, which image of the batch.
        row, col: ``(M,)`` float (or int) pixel coordinates.

    Returns:
        ``(M, C)`` features, differentiable w.r.t. ``feature_map`` (and ``row``/``col`` inside the image).
    """
    if feature_map.dim() != 4:
        raise ValueError(f"feature_map must be (B, C, H, W), got {tuple(feature_map.shape)}")
    b, c, h, w = feature_map.shape
    image_index = image_index.long().reshape(-1)
    row = row.to(feature_map.dtype).reshape(-1).clamp(0, h - 1)
    col = col.to(feature_map.dtype).reshape(-1).clamp(0, w - 1)
    if not image_index.shape == row.shape == col.shape:
        raise ValueError("image_index, row and col must have the same length")
    r0, c0 = row.detach().floor().long(), col.detach().floor().long()
    r1, c1 = (r0 + 1).clamp(max=h - 1), (c0 + 1).clamp(max=w - 1)
    fr, fc = (row - r0).unsqueeze(1), (col - c0).unsqueeze(1)
    flat = feature_map.permute(0, 2, 3, 1).reshape(b * h * w, c)
    base = image_index * h

    def at(r: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
        return flat[(base + r) * w + cc]

    top = at(r0, c0) * (1 - fc) + at(r0, c1) * fc
    bottom = at(r1, c0) * (1 - fc) + at(r1, c1) * fc
    return top * (1 - fr) + bottom * fr
