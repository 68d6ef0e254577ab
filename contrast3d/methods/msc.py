"""Masked Scene Contrast (Wu et al., CVPR 2023): contrast between cross-masked views plus reconstruction.

Per step, for a batch of scenes, each giving two MSC-augmented views (:class:`MSCPretrainDataset`
over :class:`~contrast3d.data.msc_views.MSCViewDataset`):

1. **Cross masks** (:func:`contrast3d.data.masking.cross_masks`): 10 cm patches of the union of
   both views' original coordinates, ``mask_ratio`` = 40 % of them masked in view 1 and another,
   disjoint 40 % in view 2. The *input* feature of every masked point is replaced by a learned
   mask token (:class:`~contrast3d.losses.msc.MaskToken`, ``(C_in,)``).
2. ``F^v = G(masked X^v)`` (one shared SpUNet); optional **view mixing** (below).
3. ``L_nce``: InfoNCE (``tau`` = 0.4) over at most ``max_pairs`` = 8192 matched pairs of the whole
   batch, every other pair of the batch a negative (:func:`~contrast3d.losses.msc.msc_info_nce`).
4. ``L_color``: a ``Linear(C_out, 3)`` head predicts the colour of every *masked* point of both
   views; squared error summed over channels, mean over the masked points of both views. The
   target is the point's input colour before masking (the feature columns the token replaced).
5. Optional ``L_normal``: a second ``Linear(C_out, 3)`` head, ``mean(1 - cos(pred, n))`` on the
   masked points' input normals (:func:`~contrast3d.losses.msc.normal_reconstruction_loss`).
6. ``L = contrast_weight L_nce + reconstruct_weight (L_color + L_normal)``.

Every decision the paper leaves open, in one place (``MSCConfig`` / ``MSCDataConfig`` field in brackets):

* **Original coordinates.** Masks and matches are computed on each view's coordinates before any
  augmentation (metres, the scene's frame). The platform's view generator matches on them but does
  not keep them, so :class:`MSCPretrainDataset` wraps its per-view transform in
  :class:`~contrast3d.methods.csc.KeepWorldCoord` (``extra["world_coord"]``, indexed with the kept
  points by the crop and the voxeliser) and computes matches and masks per sample in the loader.
* **Matches** (``data.matching`` = ``knn``): MSC's rule (:func:`~contrast3d.losses.msc.knn_matches`),
  one neighbour drawn at random among the ``match_max_k`` = 8 nearest view-2 points closer than
  ``match_radius`` = 3 cm, for every view-1 point that has one; they replace the generator's
  nearest-neighbour matches (``nearest`` keeps those: deterministic nearest point, same radius). The
  cap of ``max_pairs`` is applied over the whole batch in :meth:`MSC.forward` (a uniform subset drawn
  from torch's checkpointed RNG), which is the released code's batch-level cap; computing the
  matches per sample keeps the randomness a function of the run seed and the sample.
* **Masks per sample** (``data.mask_grid_size`` = 0.1 m, ``data.mask_ratio`` = 0.4): the released
  code draws one permutation over the patches of the whole batch; we draw one per scene, so each
  scene gets exactly ``floor(0.4 x its patches)`` patches per view (same expectation). They are
  drawn from the sample's generator after the views and matches.
* **Reconstruction targets** are the columns of ``color`` / ``normal`` in the unmasked input
  features (``data.feat_keys`` must contain them: the released code reconstructs its own input
  colour; normals are in the view's rotated frame). Heads exist only for the enabled terms, so every
  parameter gets a gradient (``reconstruct_color`` = True, ``reconstruct_normal`` = False as MSC's
  ScanNet preset).
* **Normal term sign.** The released code adds ``+mean(cos)`` (it pushes the head towards the
  *opposite* normal); we minimise ``1 - cos``, ``1 - |cos|`` with ``normal_unoriented``.
* **View mixing** (``view1_mix_prob`` = 0.8, ``view2_mix_prob`` = 0, as MSC's ScanNet preset): with
  that probability per step, the backbone sees the samples of the view's batch merged in pairs
  (0, 1), (2, 3), ...: the released code passes ``offset[1:-1:2] + [offset[-1]]`` to the backbone,
  so two scenes' views occupy one sparse tensor in one shared voxel frame (both start at voxel 0),
  a Mix3D-style scene mix that removes the easy "which scene" context. Here the points keep their
  order and only ``batch`` / ``offset`` change (:func:`mix_views`); an odd last sample stays alone;
  voxels occupied by both scenes are merged by the SpUNet (features averaged, each point gets its
  voxel's output), as for any duplicate voxel. Matches, masks and losses still refer to the
  unmixed points. Mixing happens in training mode only; the draw uses torch's global RNG.
* **Schedule**: MSC uses one-cycle (1 % warm-up from ``lr/10``, cosine annealing to ``lr/1e5``);
  the engine's ``cosine`` with ``warmup_steps`` = 1 % of the steps, ``warmup_start_factor`` = 0.1
  and ``min_factor`` = 1e-5 is the same curve except that the warm-up is linear, not cosine.
* **Precision**: losses and heads run in float32 outside autocast.
* **Logs**: ``loss_nce``, ``loss_color`` / ``loss_normal`` (enabled terms only), ``pos_cos`` (mean
  cosine of the used pairs), ``matches`` (pairs used), ``masked`` (fraction of masked points over
  both views) and ``mixed`` (1 when view 1 was mixed this step).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.data.masking import cross_masks
from contrast3d.data.msc_views import MSCViewConfig, MSCViewDataset
from contrast3d.data.scene_dataset import pretraining_scene_dirs
from contrast3d.errors import DataError
from contrast3d.losses.msc import (
    MaskToken,
    color_reconstruction_loss,
    knn_matches,
    msc_info_nce,
    normal_reconstruction_loss,
)
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import SMOKE_VIEWS, BackboneConfig, build_backbone, pair_collate, smoke_scenes
from contrast3d.methods.csc import WORLD_KEY, KeepWorldCoord
from contrast3d.methods.pointcontrast import sample_rows
from contrast3d.structures import MultiView, PointBatch, ViewBatch, batch_to_offset

#: ``extra`` key of the per-point cross mask (bool, True = input replaced by the mask token).
MASK_KEY = "msc_mask"
#: Input widths of the feature keys whose width is known without data.
_WIDTHS = {"ones": 1, "color": 3, "normal": 3, "coord": 3}


@dataclass
class MSCDataConfig(MSCViewConfig):
    """The ``data`` section: the MSC view recipe (:class:`MSCViewConfig`) plus inputs, matches and masks.

    Attributes:
        feat_keys: per-point arrays concatenated into the backbone input.
        matching: ``knn`` (MSC's random neighbour among ``match_max_k`` within ``match_radius``) or
            ``nearest`` (the view generator's nearest neighbour within ``match_radius``).
        match_max_k: neighbours searched per view-1 point by ``knn``.
        mask_grid_size: patch edge of the cross masks, metres.
        mask_ratio: fraction of patches masked per view (``<= 0.5``).
        segment_key: per-point ids restricted to the overlap by the generator (unused by MSC: off).
        strict: stop at the first unreadable scene instead of skipping it.
    """

    feat_keys: list[str] = field(default_factory=lambda: ["color", "normal"])
    matching: Literal["knn", "nearest"] = "knn"
    match_max_k: int = 8
    mask_grid_size: float = 0.1
    mask_ratio: float = 0.4
    segment_key: str = ""
    strict: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio <= 0.5:
            raise ValueError(f"data.mask_ratio must be in [0, 0.5] (disjoint masks); got {self.mask_ratio}")
        if self.mask_grid_size <= 0 or self.match_radius <= 0 or self.match_max_k < 1:
            raise ValueError("data.mask_grid_size, match_radius and match_max_k must be positive")


class MSCPretrainDataset(MSCViewDataset):
    """Two MSC views per scene with ``extra["world_coord"]``, ``extra["msc_mask"]`` and MSC matches.

    ``get_sample(index, rng)``: the generator's views (:class:`MSCViewDataset`), then, from the same
    generator, the k-NN matches (``matching = knn``, all of them: the cap is per batch) and the cross
    masks of the two views' original coordinates.
    """

    def __init__(self, scene_dirs, cfg: MSCDataConfig, on_error: str = "skip", keep_raw: bool = True):
        super().__init__(scene_dirs, cfg, on_error, keep_raw)
        self.transform = KeepWorldCoord(self.transform)

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:  # type: ignore[override]
        cfg: MSCDataConfig = self.cfg  # type: ignore[assignment]
        views = super().get_sample(index, rng)
        w1, w2 = views.view1.extra[WORLD_KEY], views.view2.extra[WORLD_KEY]
        if cfg.matching == "knn":
            views.pair_matches[(0, 1)] = knn_matches(w1, w2, cfg.match_radius, None, rng=rng, max_k=cfg.match_max_k)
        m1, m2 = cross_masks(w1, w2, rng=rng, grid_size=cfg.mask_grid_size, mask_ratio=cfg.mask_ratio)
        views.view1.extra[MASK_KEY], views.view2.extra[MASK_KEY] = m1, m2
        return views


def build_msc_dataset(root: str, cfg: MSCDataConfig) -> MSCPretrainDataset:
    """:class:`MSCPretrainDataset` over the Pointcept scene folders under ``root``."""
    scenes = pretraining_scene_dirs(root)  # never val/ or test/ scenes of a Pointcept root
    if not scenes:
        raise DataError(Path(root), "no Pointcept scene folders (coord.npy) found; run 'contrast3d prepare scenes' "
                                    "or 'contrast3d simulate' first")
    return MSCPretrainDataset(scenes, cfg, on_error="raise" if cfg.strict else "skip")


def feature_columns(feat_keys: list[str] | tuple[str, ...], key: str) -> slice | None:
    """Columns of ``key`` in the input features built from ``feat_keys`` (``None`` if absent).

    Raises ``ValueError`` when a key of unknown width comes before it.
    """
    start = 0
    for k in feat_keys:
        if k == key:
            return slice(start, start + _WIDTHS[k])
        if k not in _WIDTHS:
            raise ValueError(f"cannot locate '{key}' in data.feat_keys {list(feat_keys)}: the width of '{k}' is "
                             f"unknown; list '{key}' before it")
        start += _WIDTHS[k]
    return None


def mix_views(view: PointBatch) -> PointBatch:
    """MSC view mixing: samples ``(0, 1), (2, 3), ...`` of a view batch become one sample each.

    Points keep their rows; ``batch`` becomes ``batch // 2`` and ``offset`` the released code's
    ``offset[1:-1:2] + [offset[-1]]`` (an odd last sample stays alone).
    """
    assert view.batch is not None  # PointBatch.__post_init__ sets batch
    batch = view.batch // 2
    return replace(view, batch=batch, offset=batch_to_offset(batch, (view.batch_size + 1) // 2),
                   meta=view.meta[::2])


@dataclass
class MSCConfig:
    """The ``method`` section (defaults: MSC's ScanNet preset; module docstring for the choices).

    Attributes:
        tau: InfoNCE temperature.
        max_pairs: matched pairs used per step (uniform subset over the batch).
        contrast_weight, reconstruct_weight: weights of ``L_nce`` and of the reconstruction terms.
        reconstruct_color: colour reconstruction of masked points (head ``Linear(C_out, 3)``).
        reconstruct_normal: normal reconstruction of masked points (second head).
        normal_unoriented: ``1 - |cos|`` for normals of arbitrary sign.
        view1_mix_prob, view2_mix_prob: probability of view mixing per step and view.
    """

    tau: float = 0.4
    max_pairs: int = 8192
    contrast_weight: float = 1.0
    reconstruct_weight: float = 1.0
    reconstruct_color: bool = True
    reconstruct_normal: bool = False
    normal_unoriented: bool = False
    view1_mix_prob: float = 0.8
    view2_mix_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.max_pairs < 1:
            raise ValueError(f"method.tau and method.max_pairs must be positive; got {self.tau}, {self.max_pairs}")
        if not (0.0 <= self.view1_mix_prob <= 1.0 and 0.0 <= self.view2_mix_prob <= 1.0):
            raise ValueError("method.view1_mix_prob / view2_mix_prob must be in [0, 1]")


class MSC(PretrainMethod):
    """Mask token on cross-masked inputs, shared backbone, InfoNCE + masked colour (/ normal) reconstruction."""

    def __init__(self, cfg: MSCConfig, model: BackboneConfig, data: MSCDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.net = build_backbone(model)
        self.mask_token = MaskToken(model.in_channels)
        keys = list(data.feat_keys)
        self.color_cols = feature_columns(keys, "color") if cfg.reconstruct_color else None
        self.normal_cols = feature_columns(keys, "normal") if cfg.reconstruct_normal else None
        for on, cols, key in ((cfg.reconstruct_color, self.color_cols, "color"),
                              (cfg.reconstruct_normal, self.normal_cols, "normal")):
            if on and cols is None:
                raise ValueError(f"{key} reconstruction needs '{key}' in data.feat_keys (the target is the "
                                 f"masked points' input {key}); got {keys}")
        out = self.net.out_channels
        self.color_head = nn.Linear(out, 3) if cfg.reconstruct_color else None
        self.normal_head = nn.Linear(out, 3) if cfg.reconstruct_normal else None

    def backbone(self) -> nn.Module:
        return self.net

    @staticmethod
    def masks(batch: ViewBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N1,)``, ``(N2,)`` bool cross masks of the two views (True = masked input)."""
        out = []
        for view in (batch.view1, batch.view2):
            mask = view.extra.get(MASK_KEY)
            if mask is None:
                raise ValueError(f"the batch has no per-point '{MASK_KEY}': build it with "
                                 "contrast3d.methods.msc.build_msc_dataset")
            out.append(mask.to(torch.bool))
        return out[0], out[1]

    def masked_input(self, view: PointBatch, mask: torch.Tensor) -> PointBatch:
        """The view with the mask token as the input feature of its masked points."""
        return replace(view, feat=self.mask_token(view.feat, mask))

    def targets(self, view: PointBatch, key: str) -> torch.Tensor:
        """``(N, 3)`` reconstruction target: the ``key`` columns of the view's *unmasked* input features."""
        cols = self.color_cols if key == "color" else self.normal_cols
        if cols is None:
            raise ValueError(f"{key} reconstruction is off")
        return view.feat[:, cols].float()

    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        v1, v2 = batch.view1, batch.view2
        m1, m2 = self.masks(batch)
        draw = torch.rand(2)                       # torch's global RNG (checkpointed by the engine)
        mix1 = self.training and bool(draw[0] < cfg.view1_mix_prob) and v1.batch_size > 1
        mix2 = self.training and bool(draw[1] < cfg.view2_mix_prob) and v2.batch_size > 1
        x1, x2 = self.masked_input(v1, m1), self.masked_input(v2, m2)
        f1 = self.net(mix_views(x1) if mix1 else x1)
        f2 = self.net(mix_views(x2) if mix2 else x2)
        dev = f1.device
        with torch.autocast(dev.type, enabled=False):
            f1, f2 = f1.float(), f2.float()
            matches = batch.matches[sample_rows(batch.matches.shape[0], cfg.max_pairs, dev)]
            nce = msc_info_nce(f1, f2, matches, cfg.tau)
            loss = cfg.contrast_weight * nce
            logs = {"loss_nce": nce.detach()}
            masked = torch.cat([m1, m2])
            feats = torch.cat([f1, f2])[masked]
            everything = torch.ones(feats.shape[0], dtype=torch.bool, device=dev)
            if self.color_head is not None:
                target = torch.cat([self.targets(v1, "color"), self.targets(v2, "color")])[masked]
                color = color_reconstruction_loss(self.color_head(feats), target, everything)
                loss = loss + cfg.reconstruct_weight * color
                logs["loss_color"] = color.detach()
            if self.normal_head is not None:
                target = torch.cat([self.targets(v1, "normal"), self.targets(v2, "normal")])[masked]
                normal = normal_reconstruction_loss(self.normal_head(feats), target, everything,
                                                    unoriented=cfg.normal_unoriented)
                loss = loss + cfg.reconstruct_weight * normal
                logs["loss_normal"] = normal.detach()
            with torch.no_grad():
                q, k = F.normalize(f1[matches[:, 0]], dim=1), F.normalize(f2[matches[:, 1]], dim=1)
                logs["pos_cos"] = (q * k).sum(1).mean() if len(q) else f1.new_zeros(())
                logs["matches"] = f1.new_tensor(float(matches.shape[0]))
                logs["masked"] = masked.float().mean() if masked.numel() else f1.new_zeros(())
                logs["mixed"] = f1.new_tensor(float(mix1))
        return {"loss": loss, **logs}


SPEC = MethodSpec(
    config_cls=MSCConfig, method_cls=MSC,
    build_dataset=build_msc_dataset, build_collate=pair_collate,
    model_config_cls=BackboneConfig, data_config_cls=MSCDataConfig,
    description="MSC: cross-masked MSC views, InfoNCE on k-NN matches, masked colour (/ normal) reconstruction",
    smoke={"model": {"preset": "spunet-tiny"},
           "data": {**SMOKE_VIEWS, "mask_grid_size": 0.2},
           "method": {"max_pairs": 512, "reconstruct_normal": True}},
    smoke_data=smoke_scenes,
    data_kind="scenes",
)
