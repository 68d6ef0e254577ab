"""Image-to-point contrast (Janda et al., §III-IV): pixel-level 2D pre-training, then 3D against frozen 2D.

One method name, two stages chosen by ``method.stage``; it needs single RGB-D frames only (no poses, no
registered second view):

* **Stage ``2d``** trains the 2D network (:class:`~contrast3d.models.image_unet.ImageUNet`, ResNet-34
  encoder + U-Net decoder, 16-d per pixel; ImageNet encoder weights from ``method.imagenet_weights``, a
  torchvision ``resnet34`` state-dict file, when given) on two SimCLR views of one image
  (:class:`~contrast3d.data.frame_images.ImagePairDataset`). Both views go through the net as one batch
  of ``2B`` images; the features of the ``<= 4,092`` matched pixels of each pair enter InfoNCE (τ 0.4):
  pixel ``i`` of view 1 against its match in view 2 (positive) and the other sampled view-2 pixels.
* **Stage ``3d``** loads the stage-1 network from ``method.image_net``
  (:func:`~contrast3d.models.pretrained.load_pretrained`: ``image_net.safetensors`` + ``.json`` or a
  stage-1 ``checkpoints/last.pt``), **frozen** (:meth:`frozen_modules`: the engine keeps it in
  ``eval()``, without gradients, out of checkpoints, its digest checked on resume; the forward also
  runs it in ``eval()`` under ``no_grad`` whatever mode it is asked to be in, so BatchNorm statistics
  never drift — the authors' code ran it in train mode under ``no_grad`` and its BN statistics moved).
  The 3D model is the SpUNet plus a 1x1 head (a per-point ``Linear``) to the 2D width (16); per frame
  (:class:`~contrast3d.data.frame_images.FrameImageDataset`) up to ``num_matches`` = 2,000 points seen
  in the image are sampled (all of them when fewer), the 2D features are sampled **bilinearly** at the
  points' exact projected positions (``extra["pixel_rc"]``; the integer pixels when a batch lacks it),
  and InfoNCE (τ 0.4) contrasts each point's 3D feature (query) with its pixel's 2D feature (positive)
  and the 2D features of the other sampled points (negatives).

Loss. Features are L2-normalised; per query ``i`` the loss is ``-log softmax_j(q_i·k_j / τ)`` at ``j = i``
over the allowed keys ``j``. ``negatives``: ``batch`` = all sampled pixels/points of the batch (paper:
"including those from other images in a batch"), ``pair`` = the same image pair / frame only (the authors'
code). ``reduction``: ``sum`` = sum over the pairs (frames) of each one's mean loss (paper: "the total loss
for each training iteration is the sum of the loss for each image pair"), ``mean`` = mean over all queries
(PointContrast's PointInfoNCE, :func:`~contrast3d.losses.point_info_nce`; the tests check the two agree).
At paper scale (64 pairs x 4,092 pixels) batch-wide negatives are a 262k x 262k logit matrix: :func:`pixel_info_nce`
computes the log-sum-exp in row blocks of at most ``chunk_elements`` logits and recomputes each block in
the backward pass instead of keeping it, so memory stays bounded; below that size the exponentials are
kept, and a hand-written backward makes the loss ~3x cheaper than autograd's ``logsumexp``.

Exports (what each stage writes next to the run):

* stage ``2d``: ``image_net.safetensors`` + ``.json`` (record ``kind: image_unet``, the preset,
  ``in_channels`` 3, ``out_channels`` 16, ``extra.image_size``) — the input of stage ``3d``. There is
  **no** ``backbone`` file: no 3D network exists in this stage. :meth:`backbone` returns the image net
  so the engine has a network to report (do not attach 3D probes to a stage-2d run).
* stage ``3d``: ``backbone.safetensors`` / ``.json`` / ``.pth`` (the SpUNet with its full record); the
  1x1 head is not exported (the paper re-initialises it), the frozen 2D net is not re-exported (it is the
  stage-1 file, named in the checkpoint's ``frozen`` entry).

Configuration. The dataset and collate builders only receive the ``data`` section, so it has a ``stage``
field too; leave it ``auto``: :class:`Image2PointSpec` (the method's ``SPEC``) copies ``method.stage`` into
it when it builds a run (an explicit, different ``data.stage`` is an error). It also resolves a relative
``method.image_net``: against the current directory when the file exists there, else against the run's
data root (how the smoke data ships its untrained stand-in, :func:`~contrast3d.data.frame_images.smoke_frames`).

Paper vs the authors' code (the paper is the default everywhere): negatives batch-wide (code: per pair,
``negatives: pair``); weight decay 0.004 (code: 1e-4; an ``optim`` setting, in the presets); 20k steps per
stage (code: 40k; ``steps``); 2D net frozen in eval mode (code: train mode under ``no_grad``, BN drift —
deliberately not offered). The paper's SGD dampening 0.1 and exponential decay 0.99 have no engine
counterpart (the presets use cosine). Open points decided here: the loss is summed over pairs in both
stages (the 3D stage's "hyper-parameters are the same"; ``reduction: mean`` gives the PointContrast-style
mean); the stage-2d learning rate is ``optim.lr x image_lr_scale`` (0.1 x 0.1 = the paper's 0.01, so one
preset serves both stages, whose 3D learning rate is 0.1); the two views of a pair share one forward pass
(BN statistics over all ``2B`` views); the 3D input is colour by default (paper; ``data.feat_keys: [ones]``
with ``model.in_channels: 1`` feeds geometry only — colour is then only seen through the 2D target, which
removes the colour-to-colour shortcut); the negatives of stage 3d are the 2D features of the other sampled
points ("the feature vector of any other point"); the per-frame match sample uses the global torch RNG,
which the engine seeds and checkpoints.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.data import transforms as T
from contrast3d.data.frame_images import (
    SMOKE_IMAGE_NET,
    FrameImageDataset,
    ImagePair,
    ImagePairBatch,
    ImagePairDataset,
    collate_image_pairs,
    smoke_frames,
)
from contrast3d.data.image_aug import ImageAugConfig, sample_bilinear
from contrast3d.data.voxelize import GridSample
from contrast3d.engine.objective import Export, Frozen
from contrast3d.errors import DataError
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import BackboneConfig, build_backbone
from contrast3d.structures import ViewBatch, collate_views

if TYPE_CHECKING:
    from contrast3d.models.image_unet import ImageUNet

#: Input widths of the per-point features a single RGB-D frame provides.
FEAT_WIDTHS = {"color": 3, "ones": 1, "coord": 3}


@dataclass
class Image2PointDataConfig:
    """The ``data`` section of both stages.

    Attributes:
        stage: ``auto`` (take ``method.stage``; :class:`Image2PointSpec` fills it in), ``2d`` or ``3d``.
        frame_skip: every ``frame_skip``-th frame of each sequence is a sample.
        image_size: side of the square image the 2D network sees (224).
        strict: stop at the first unusable frame instead of skipping it with a warning.
        num_pixels: stage 2d: matched pixels sampled per image pair (4,092).
        crop_scale: stage 2d: area range of the random resized crop (SimCLR 0.08; 0.2 here so the two
            views overlap, see :mod:`contrast3d.data.image_aug`).
        grid_size: stage 3d: voxel edge in metres (5 cm).
        feat_keys: stage 3d: 3D input features, ``[color]`` (paper) or ``[ones]`` (geometry only).
        depth_trunc: stage 3d: ignore depth beyond this many metres (``null``: keep all).
        depth_stride: stage 3d: back-project every n-th depth row and column (1 = all; 2 loads ~3x faster
            and keeps ~92 % of the 5 cm voxels of a 640 x 480 7-Scenes frame).
        min_points: stage 3d: skip frames with fewer valid depth pixels.
        rotation: stage 3d: ``so3`` (random rotation about x, y, z: camera frames have no known up
            axis) or ``none``.
        scale: stage 3d: uniform scale range.
        flip: stage 3d: probability of mirroring x (with so3 rotations every reflection is reachable).
        color_aug: stage 3d: chromatic auto-contrast, translation and jitter of the 3D input colour
            (the image the 2D net sees is never altered).
        max_points: stage 3d: cap on voxels per frame (random sphere crop; 0 = no cap).
    """

    stage: Literal["auto", "2d", "3d"] = "auto"
    frame_skip: int = 1
    image_size: int = 224
    strict: bool = False
    num_pixels: int = 4092
    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    grid_size: float = 0.05
    feat_keys: list[str] = field(default_factory=lambda: ["color"])
    depth_trunc: float | None = None
    depth_stride: int = 1
    min_points: int = 10
    rotation: Literal["so3", "none"] = "so3"
    scale: list[float] = field(default_factory=lambda: [0.8, 1.2])
    flip: float = 0.5
    color_aug: bool = True
    max_points: int = 0

    def __post_init__(self) -> None:
        unknown = [k for k in self.feat_keys if k not in FEAT_WIDTHS]
        if unknown or not self.feat_keys:
            raise ValueError(f"data.feat_keys {list(self.feat_keys)}: single RGB-D frames provide only "
                             f"{', '.join(FEAT_WIDTHS)}")
        if (self.image_size < 8 or self.num_pixels < 1 or self.frame_skip < 1 or self.depth_stride < 1
                or self.grid_size <= 0):
            raise ValueError("data.image_size >= 8, num_pixels >= 1, frame_skip >= 1, depth_stride >= 1 and "
                             "grid_size > 0 required")
        if len(self.crop_scale) != 2 or len(self.scale) != 2:
            raise ValueError("data.crop_scale and data.scale are [low, high] ranges")


@dataclass
class Image2PointConfig:
    """The ``method`` section (paper defaults).

    Attributes:
        stage: ``2d`` (train the image network) or ``3d`` (train the SpUNet against the frozen one).
        tau: InfoNCE temperature (0.4 both stages).
        negatives: ``batch`` (all sampled pixels / points of the batch, paper) or ``pair`` (same image
            pair / frame only, authors' code).
        reduction: ``sum`` over pairs of each pair's mean loss (paper) or ``mean`` over all queries.
        chunk_elements: largest logit block computed at once (memory bound of batch-wide negatives).
        image_preset: stage 2d: :data:`~contrast3d.models.image_unet.IMAGE_UNET_PRESETS` key.
        feature_dim: stage 2d: per-pixel feature width (16).
        imagenet_weights: stage 2d: torchvision ResNet state-dict file for the encoder ("": random init;
            the paper starts from ImageNet weights).
        image_lr_scale: stage 2d: learning rate = ``optim.lr x image_lr_scale`` (paper 0.01 = 0.1 x 0.1).
        image_net: stage 3d: the stage-1 export (module docstring for how a relative path resolves).
        num_matches: stage 3d: point-pixel matches sampled per frame (2,000).
    """

    stage: Literal["2d", "3d"] = "3d"
    tau: float = 0.4
    negatives: Literal["batch", "pair"] = "batch"
    reduction: Literal["sum", "mean"] = "sum"
    chunk_elements: int = 1 << 26
    image_preset: str = "resnet34"
    feature_dim: int = 16
    imagenet_weights: str = ""
    image_lr_scale: float = 0.1
    image_net: str = ""
    num_matches: int = 2000

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.chunk_elements < 1 or self.num_matches < 1 or self.feature_dim < 1:
            raise ValueError("method.tau > 0, chunk_elements >= 1, num_matches >= 1 and feature_dim >= 1 required")


# ----------------------------------------------------------------------------------------- loss
def _exp_block(q: torch.Tensor, k: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``l = q @ k.T / tau``: ``(exp(l - rowmax), row sums of it, row log-sum-exp of l)``, in place."""
    ex = torch.mm(q, k.t()).div_(tau)
    top = ex.amax(1, keepdim=True)
    total = ex.sub_(top).exp_().sum(1)
    return ex, total, total.log() + top[:, 0]


class _BlockedLSE(torch.autograd.Function):
    """Row log-sum-exp of ``l = q @ k.T / tau`` over key ranges, block by block, with a hand-written backward.

    ``blocks``: ``(s, e, a, b)`` = rows ``s:e`` against keys ``a:b``, rows in order. With the softmax
    ``p_ij = exp(l_ij - lse_i)``: ``dq_i = sum_j g_i p_ij k_j / tau`` and ``dk_j = sum_i g_i p_ij q_i / tau``.
    ``keep``: keep each block's exponentials for backward (about 3x faster than autograd's log-sum-exp,
    which makes several passes over the logits), else recompute them block by block (memory: one block).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, tau: float, blocks: list, keep: bool) -> torch.Tensor:
        lse, kept = [], []
        for s, e, a, b in blocks:
            ex, total, row_lse = _exp_block(q[s:e], k[a:b], tau)
            lse.append(row_lse)
            kept.append((ex, total) if keep else None)
        out = torch.cat(lse)
        ctx.save_for_backward(q, k, out)
        ctx.tau, ctx.blocks, ctx.kept = tau, blocks, kept
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, k, lse = ctx.saved_tensors
        want_q, want_k = ctx.needs_input_grad[:2]
        dq = torch.zeros_like(q) if want_q else None
        dk = torch.zeros_like(k) if want_k else None
        for (s, e, a, b), kept in zip(ctx.blocks, ctx.kept):
            if kept is not None:
                ex, total = kept
                p = ex * (grad[s:e] / (total * ctx.tau))[:, None]
            else:
                p = torch.mm(q[s:e], k[a:b].t()).div_(ctx.tau).sub_(lse[s:e, None]).exp_()
                p.mul_((grad[s:e] / ctx.tau)[:, None])
            if dq is not None:  # (want_q)
                dq[s:e] += p @ k[a:b]
            if dk is not None:  # (want_k)
                dk[a:b] += p.t() @ q[s:e]
        return dq, dk, None, None, None


def _chunked_lse(q: torch.Tensor, k: torch.Tensor, tau: float, group: torch.Tensor | None,
                 budget: int) -> torch.Tensor:
    """Per-row log-sum-exp of ``q @ k.T / tau`` over all keys (``group`` None) or over the keys of the
    row's group (``group`` sorted ascending: one diagonal block per group, nothing masked), in blocks of
    at most ~``budget`` logits; when all logits together exceed ``budget`` the blocks are recomputed in
    backward instead of kept (:class:`_BlockedLSE`)."""
    m = q.shape[0]
    if group is None:
        spans = [(0, m)]
    else:
        cuts = (torch.nonzero(group[1:] != group[:-1]).flatten() + 1).tolist()
        spans = list(zip([0] + cuts, cuts + [m]))
    blocks = [(s, min(b, s + max(1, budget // (b - a))), a, b) for a, b in spans
              for s in range(a, b, max(1, budget // (b - a)))]
    keep = sum((e - s) * (b - a) for s, e, a, b in blocks) <= budget
    return _BlockedLSE.apply(q, k, tau, blocks, keep)


def pixel_info_nce(query: torch.Tensor, key: torch.Tensor, group: torch.Tensor, tau: float = 0.4,
                   negatives: str = "batch", reduction: str = "sum", chunk_elements: int = 1 << 26) -> torch.Tensor:
    """InfoNCE of matched features with per-pair groups (module docstring for the options).

    Args:
        query: ``(M, C)`` view-1 pixel features (stage 2d) or 3D point features (stage 3d).
        key: ``(M, C)`` their positives (row ``i`` matches row ``i``): view-2 / 2D pixel features.
        group: ``(M,)`` int pair (frame) index of each match.
        tau: temperature.
        negatives: ``batch`` (every other key) or ``pair`` (keys of the same group only).
        reduction: ``sum`` (over groups of the group's mean) or ``mean`` (over all queries).
        chunk_elements: largest logit block computed at once.

    Returns:
        Scalar (float32); ``0`` with a graph when ``M == 0``.
    """
    if query.shape != key.shape or query.dim() != 2 or group.shape != query.shape[:1]:
        raise ValueError(f"query/key must be (M, C) and group (M,); got {tuple(query.shape)}, "
                         f"{tuple(key.shape)}, {tuple(group.shape)}")
    if negatives not in ("batch", "pair") or reduction not in ("sum", "mean"):
        raise ValueError(f"negatives must be batch|pair and reduction sum|mean, got {negatives}, {reduction}")
    m = query.shape[0]
    if m == 0:
        return (query.sum() + key.sum()).float() * 0.0
    with torch.autocast(query.device.type, enabled=False):  # float32 logits even under AMP
        return _pixel_info_nce(query.float(), key.float(), group.long(), tau, negatives == "pair", reduction,
                               chunk_elements)


def _pixel_info_nce(query: torch.Tensor, key: torch.Tensor, group: torch.Tensor, tau: float, pair: bool,
                    reduction: str, chunk_elements: int) -> torch.Tensor:
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    if pair and bool((group[1:] < group[:-1]).any()):
        order = torch.argsort(group, stable=True)
        q, k, group = q[order], k[order], group[order]
    rows = _chunked_lse(q, k, tau, group if pair else None, chunk_elements) - (q * k).sum(1) / tau
    if reduction == "mean":
        return rows.mean()
    _, inverse = torch.unique(group, return_inverse=True)
    sums = rows.new_zeros(int(inverse.max()) + 1).index_add_(0, inverse, rows)
    return (sums / torch.bincount(inverse).to(rows.dtype)).sum()


def sample_per_group(group: torch.Tensor, num: int) -> torch.Tensor:
    """Indices of up to ``num`` random rows per group (all rows of a smaller group), sorted by group.

    ``group``: ``(P,)`` non-negative int. Uses the global torch RNG (the engine seeds and restores it).
    """
    n = group.shape[0]
    if n == 0:
        return group.new_zeros(0, dtype=torch.long)
    perm = torch.randperm(n, device=group.device)
    order = perm[torch.argsort(group[perm], stable=True)]
    g = group[order].long()
    counts = torch.bincount(g)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=group.device) - starts[g]
    return order[rank < num]


# ----------------------------------------------------------------------------------------- data
def frame_transform(cfg: Image2PointDataConfig) -> T.Compose:
    """Stage-3d augmentation of a frame's camera-frame points: rotation (about the camera centre) -> scale
    -> flip -> voxel sampling -> cap -> colour. Voxels come after the rigid part, so it reaches the
    network's ``grid_coord``; the per-point colour operations come last, on the few kept points."""
    steps: list = []
    if cfg.rotation == "so3":
        steps.append(T.RandomRotate(angle=(-math.pi, math.pi), axis="xyz", center=(0.0, 0.0, 0.0), p=1.0))
    steps.append(T.RandomScale(tuple(cfg.scale)))
    if cfg.flip > 0:
        steps.append(T.RandomFlip(p=cfg.flip, axes="x"))
    steps.append(GridSample(cfg.grid_size, mode="train"))
    if cfg.max_points > 0:
        steps.append(T.SphereCrop(point_max=cfg.max_points, mode="random"))
    if cfg.color_aug:
        steps += [T.ChromaticAutoContrast(), T.ChromaticTranslation(), T.ChromaticJitter()]
    return T.Compose(steps)


def build_image2point_dataset(root: str, cfg: Image2PointDataConfig):
    """Stage 2d: :class:`ImagePairDataset`; stage 3d: :class:`FrameImageDataset` (``cfg.stage`` resolved)."""
    if cfg.stage == "2d":
        aug = ImageAugConfig(out_size=cfg.image_size, scale=(float(cfg.crop_scale[0]), float(cfg.crop_scale[1])))
        return ImagePairDataset(root, cfg.frame_skip, aug, cfg.num_pixels, cfg.strict)
    if cfg.stage == "3d":
        return FrameImageDataset(root, frame_transform(cfg), cfg.frame_skip, cfg.image_size, cfg.depth_trunc,
                                 cfg.min_points, cfg.strict, cfg.depth_stride)
    raise ValueError("data.stage is 'auto': build the run through image2point's SPEC (which copies method.stage) "
                     "or set data.stage to 2d or 3d")


def collate_image2point(samples: list, feat_keys: tuple[str, ...]) -> ImagePairBatch | ViewBatch:
    """Image pairs -> :class:`ImagePairBatch`; frames (``MultiView``) -> :class:`ViewBatch`."""
    if samples and isinstance(samples[0], ImagePair):
        return collate_image_pairs(samples)
    return collate_views(samples, feat_keys)


def image2point_collate(cfg: Image2PointDataConfig) -> Callable[[list], Any]:
    """The collate of both stages (it dispatches on the sample type; picklable)."""
    return functools.partial(collate_image2point, feat_keys=tuple(cfg.feat_keys))


# ----------------------------------------------------------------------------------------- method
class Image2Point(PretrainMethod):
    """Both stages of image-to-point contrast (module docstring)."""

    def __init__(self, cfg: Image2PointConfig, model: BackboneConfig, data: Image2PointDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.image_net_source = ""
        if cfg.stage == "2d":
            from contrast3d.models.image_unet import create_image_unet, load_imagenet_resnet34

            self.image_net = create_image_unet(cfg.image_preset, out_channels=cfg.feature_dim)
            if cfg.imagenet_weights:
                load_imagenet_resnet34(self.image_net, cfg.imagenet_weights)
            return
        width = sum(FEAT_WIDTHS.get(k, 0) for k in data.feat_keys)
        if width != model.in_channels:
            raise ValueError(f"data.feat_keys {list(data.feat_keys)} give {width} input channels but "
                             f"model.in_channels is {model.in_channels}")
        self.image_net, self.image_net_source = load_image_net(cfg.image_net)
        self.net = build_backbone(model)
        self.head = nn.Linear(self.net.out_channels, self.image_net.out_channels)

    def backbone(self) -> nn.Module:
        return self.image_net if self.cfg.stage == "2d" else self.net

    def image_record(self) -> dict[str, Any]:
        """Record fields of the exported 2D network."""
        return {"kind": "image_unet", "preset": self.cfg.image_preset, "ndim": 2, "in_channels": 3,
                "out_channels": self.image_net.out_channels,
                "extra": {"image_size": self.data_cfg.image_size, "imagenet_init": bool(self.cfg.imagenet_weights)}}

    def exports(self) -> dict[str, Export]:
        if self.cfg.stage == "2d":
            return {"image_net": Export(self.image_net, self.image_record())}
        return super().exports()

    def frozen_modules(self) -> dict[str, Frozen]:
        return {"image_net": Frozen(self.image_net, self.image_net_source)} if self.cfg.stage == "3d" else {}

    def param_groups(self) -> list[dict[str, Any]] | None:
        if self.cfg.stage == "2d" and self.cfg.image_lr_scale != 1.0:
            return [{"params": list(self.image_net.parameters()), "name": "image_net",
                     "lr_scale": self.cfg.image_lr_scale}]
        return None

    def loss(self, query: torch.Tensor, key: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        return pixel_info_nce(query, key, group, c.tau, c.negatives, c.reduction, c.chunk_elements)

    def forward(self, batch: ImagePairBatch | ViewBatch) -> dict[str, torch.Tensor]:
        if self.cfg.stage == "2d":
            if not isinstance(batch, ImagePairBatch):
                raise TypeError("stage 2d trains on ImagePairBatch (image pairs); check data.stage")
            return self._forward_2d(batch)
        if not isinstance(batch, ViewBatch) or batch.images is None:
            raise TypeError("stage 3d trains on ViewBatch with images and pixels (single frames); check data.stage")
        return self._forward_3d(batch)

    def _forward_2d(self, batch: ImagePairBatch) -> dict[str, torch.Tensor]:
        feats = self.image_net(torch.cat([batch.images1, batch.images2]))
        feats = feats.permute(0, 2, 3, 1).reshape(2, -1, feats.shape[1])
        query, key = feats[0][batch.matches[:, 0]], feats[1][batch.matches[:, 1]]
        return {"loss": self.loss(query, key, batch.match_pair), **_logs(query, key)}

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` features of the frozen 2D net: always ``eval()`` mode, never a gradient."""
        if self.image_net.training:
            self.image_net.eval()
        with torch.no_grad():
            return self.image_net(images).float()

    def _forward_3d(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        view = batch.view1
        points = self.head(self.net(view))
        images, pixel_point, pixel_index = batch.images, batch.pixel_point, batch.pixel_index
        # forward() checked images; collate_views sets the pixel tensors together with them
        assert images is not None and pixel_point is not None and pixel_index is not None
        fmap = self.image_features(images)
        pick = sample_per_group(pixel_index[:, 0], self.cfg.num_matches)
        point, pixel = pixel_point[pick], pixel_index[pick]
        exact = view.extra.get("pixel_rc")
        row, col = (exact[point, 0], exact[point, 1]) if exact is not None else (pixel[:, 1], pixel[:, 2])
        key = sample_bilinear(fmap, pixel[:, 0], row, col)
        query = points[point]
        loss = self.loss(query, key, pixel[:, 0]) if len(point) else points.sum() * 0.0
        return {"loss": loss, **_logs(query, key)}


def _logs(query: torch.Tensor, key: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        cos = (F.normalize(query.float(), dim=1) * F.normalize(key.float(), dim=1)).sum(1)
        return {"pos_cos": cos.mean() if len(cos) else cos.new_zeros(()), "matches": cos.new_tensor(float(len(cos)))}


def load_image_net(path: str) -> tuple[ImageUNet, str]:
    """The frozen stage-1 network at ``path`` (``requires_grad`` off, ``eval()``) and its resolved path."""
    if not path:
        raise DataError("method.image_net", "stage 3d needs the stage-1 image network: train 'image2point' "
                                            "with method.stage=2d first and pass its image_net.safetensors")
    from contrast3d.models.image_unet import ImageUNet
    from contrast3d.models.pretrained import load_pretrained

    pre = load_pretrained(path, name="image_net")
    if pre.record.kind != "image_unet":
        raise DataError(path, f"is a '{pre.record.kind}' network, not an image network (the image_net export "
                              f"of an image2point stage-2d run)")
    model = pre.model
    assert isinstance(model, ImageUNet)  # load_pretrained builds an ImageUNet for kind image_unet
    return model.requires_grad_(False).eval(), str(Path(path).resolve())


def resolve_image_net(path: str, data_root: str | Path) -> str:
    """``path`` as given if absolute or empty; a relative one against the current directory if the
    file exists there, else against ``data_root`` (:class:`DataError` when neither exists)."""
    if not path or Path(path).is_absolute() or Path(path).exists():
        return path
    candidate = Path(data_root) / path
    if candidate.exists():
        return str(candidate)
    raise DataError(path, f"image network not found (looked in the current directory and in the data root "
                          f"{data_root})")


def resolve_run_config(method: Image2PointConfig, data: Image2PointDataConfig,
                       data_root: str | Path) -> tuple[Image2PointConfig, Image2PointDataConfig]:
    """Copy ``method.stage`` into ``data.stage`` (``auto``) and resolve a relative ``method.image_net``."""
    if data.stage not in ("auto", method.stage):
        raise ValueError(f"data.stage={data.stage} contradicts method.stage={method.stage}; leave data.stage auto")
    data = replace(data, stage=method.stage)
    if method.stage == "3d":
        method = replace(method, image_net=resolve_image_net(method.image_net, data_root))
    return method, data


@dataclass(frozen=True)
class Image2PointSpec(MethodSpec):
    """:class:`MethodSpec` whose :meth:`build` applies :func:`resolve_run_config` first.

    ``pre_stages``: tools that run the whole method (``contrast3d bench``) first train stage 2d and
    hand its ``image_net`` export to the stage-3d run's ``method.image_net``.
    """

    pre_stages = ({"name": "2d", "overrides": ["method.stage=2d"], "export": "image_net", "into": "method.image_net"},)

    def build(self, cfg: Any) -> tuple[PretrainMethod, Any, Callable[[list], Any]]:
        method_cfg, data_cfg = resolve_run_config(cfg.method, cfg.data, cfg.data_root)
        method = self.build_method(method_cfg, cfg.model, data_cfg)
        return method, self.build_dataset(cfg.data_root, data_cfg), self.build_collate(data_cfg)


SPEC = Image2PointSpec(
    config_cls=Image2PointConfig, method_cls=Image2Point,
    build_dataset=build_image2point_dataset, build_collate=image2point_collate,
    model_config_cls=BackboneConfig, data_config_cls=Image2PointDataConfig,
    description="image-to-point contrast: pixel InfoNCE on images (stage 2d), then points vs frozen 2D features (3d)",
    smoke={"model": {"preset": "spunet-tiny", "in_channels": 3},
           "data": {"grid_size": 0.1, "image_size": 64, "frame_skip": 1, "max_points": 3000, "strict": True},
           "method": {"stage": "3d", "image_net": SMOKE_IMAGE_NET, "num_matches": 256}},
    smoke_data=smoke_frames,
    data_kind="frames",
)

__all__ = ["Image2PointConfig", "Image2PointDataConfig", "Image2Point", "Image2PointSpec", "SPEC", "pixel_info_nce",
           "sample_per_group", "frame_transform", "build_image2point_dataset", "image2point_collate",
           "collate_image2point", "load_image_net", "resolve_image_net", "resolve_run_config"]
