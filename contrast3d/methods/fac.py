"""FAC, foreground-aware feature contrast (Liu et al., CVPR 2023, §3, §4.1).

Per step, for two views ``a``/``b`` of a sample (a mined RGB-D frame pair or two holistic crops of
a scene, :func:`~contrast3d.methods.common.build_pair_dataset`) with their ``(M, 2)`` matches:

1. ``D^a = G(X^a)`` (student, with gradient), ``D^b = G_ema(X^b)`` (momentum teacher, no gradient);
   ``(N, f_c)`` point features.
2. Regions ``s_i``: view ``a``'s ``superpoint`` ids, carried to view ``b`` through the matches;
   **regional sampling** keeps, per scene, the ``H`` regions closest in size to the median region.
3. ``L_Geo`` (Eq. 3): anchor ``D^a_m`` = mean feature of region ``m`` in view ``a``; ``k`` positives =
   view-``b`` points of the region, ``k`` negatives = view-``b`` points of other sampled regions.
4. SCN (§3.3): ``F = reshape^-1(E * h(E))``, ``E = reshape(D)``, the same projector ``h`` for both
   views; ``L_Fea`` (Eq. 5): anchor ``F^a_m``, positives the top-``k`` view-``b`` points by cosine
   similarity (Eq. 4), the same negatives as ``L_Geo``.
5. ``L = alpha L_Geo + beta L_Fea`` (Eq. 6); after the optimizer step the teacher moves by EMA,
   ``theta_t <- m theta_t + (1 - m) theta_s``, in :meth:`FAC.after_step` only.

Every decision the paper leaves open, in one place (``FACConfig`` field in brackets):

* **Regions** are view ``a``'s ``superpoint`` (Felzenszwalb over-segmentation, computed once per
  frame / scene by ``contrast3d prepare rgbd`` / ``prepare scenes``), kept through augmentation and
  voxelisation (per-point fields are indexed with the kept points) and shifted per sample by
  collation. View ``b``'s ids are view ``a``'s carried through the matches (``carry_regions``; a
  view-``b`` point matched to several regions takes the largest id; unmatched points have none);
  view ``b``'s own segmentation is not used (a frame pair's two frames are segmented separately).
* **Regional sampling** (``num_regions`` H = 20, ``min_region_size`` = 1 i.e. off,
  ``regional_sampling``): per scene, the *lower* median of all region sizes (the size of an actual
  region); the H regions with the smallest ``|n_i - s_med|``, ties broken by a random priority from
  the step's generator; ``min_region_size`` removes small regions after the median is taken.
  ``regional_sampling=False`` keeps every region (Table 5 ablation).
* **Anchors** (``geo_normalize`` = True): L2-normalised mean of L2-normalised point features, so
  ``anchor . key`` is a cosine (L_Fea anchors are always normalised: Eq. 4 is a cosine).
* **Pairs** (``num_pairs`` = 4096): ``k = max(1, num_pairs // A)`` keys per anchor for ``A``
  anchors; the budget is per process batch (``loader.batch_size`` scenes; on 8 GPUs set 512 for
  4096 over the global batch). Positives drawn without replacement (cycled when the region has fewer
  than ``k`` view-``b`` points), negatives uniformly with replacement from the other sampled regions
  of the *same scene*; anchors without a view-``b`` point or without another region are dropped
  (a batch left without anchors gives a zero loss that still back-propagates, ``num_anchors`` 0).
* **InfoNCE** (``tau`` = 0.1): Eq. 3/5's denominator of negatives only is read as standard InfoNCE
  with the positive in the denominator; mean over the ``A * k`` positive pairs.
* **Encoders**: the student ``G`` sees view ``a`` and the EMA teacher view ``b`` only (Fig. 2; not
  symmetrised). Teacher momentum ``m`` (``momentum`` = 0.999, ``momentum_schedule`` = ``constant``;
  ``cosine`` rises to ``momentum_final`` = 1 as ``1 - (1 - m)(cos(pi s / S) + 1) / 2`` with ``s`` the
  steps done before the update). Floating buffers (BatchNorm statistics) are copied from the student
  at every update; the teacher normalises with its batch statistics (``teacher_bn`` = ``batch``,
  train mode, as MoCo's key encoder) or with the copied running statistics (``running``).
* **f_c** (``proj_dim`` = None): the backbone output width (96 for SpUNet-34, 32 for spunet-tiny),
  so L_Geo acts on the features that are exported. The paper's ``f_c = 20`` read literally is
  ``proj_dim = 20``: a point-wise ``Linear(C_out, proj_dim)`` after the backbone, part of the student
  (and so of the EMA teacher), used by both losses and never exported.
* **SCN** (``scn_m`` = 20, ``scn_hidden`` = f_c, ``score_activation`` = ``none``, ``score_maps``):
  per scene, points in input order, row-major into ``m x ceil(N_s / m)`` maps, zero padding at the
  end; ``h`` = Linear -> ReLU -> Linear at every map position, shared by both views; ``S`` without a
  further activation (``sigmoid`` optional). It is applied to the teacher's ``D^b`` too, so ``h``
  gets gradient through both views while ``D^b`` stays a constant. ``score_maps=False`` uses
  ``F = D`` (no SCN parameters); the SCN is built only when L_Fea is on (no idle parameters) and it
  is never exported.
* **L_Fea positives** (``positives`` = ``topk``, ``sinkhorn_iters`` = 10, ``sinkhorn_eps`` = 0.05,
  ``exclude_positives`` = True): top-``k`` over *all* view-``b`` points of the anchor's scene
  (foreground and background), chosen without gradient; ``sinkhorn`` ranks by an entropic OT plan
  instead (anchors compete for points); a sampled negative that is also a positive of the anchor is
  left out of its denominator.
* **Randomness**: one ``torch.Generator`` per step seeded from torch's global RNG (which the engine
  checkpoints), so sampling is reproducible and a resumed run is bit-identical.
* **Precision**: losses and SCN run in float32 outside autocast (the backbones may run in AMP).
* **Logs**: ``loss_geo`` / ``loss_fea`` (only the enabled terms), ``num_anchors`` (anchors after
  sampling), ``pos_cos`` (mean cosine of L_Geo anchors to their positives, backbone features) and
  ``momentum`` (the EMA momentum applied after this step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.engine.ema import EMATeacher, cosine_momentum
from contrast3d.engine.objective import HookContext
from contrast3d.losses.fac import (
    carry_regions,
    fea_loss,
    geo_loss,
    region_means,
    regional_sampling,
    sample_region_pairs,
)
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import (
    SMOKE_VIEWS,
    BackboneConfig,
    PairDataConfig,
    build_backbone,
    build_pair_dataset,
    pair_collate,
    smoke_scenes,
)
from contrast3d.models.scn import SiameseCorrespondence
from contrast3d.models.spunet import SpUNet
from contrast3d.structures import PointBatch, ViewBatch


@dataclass
class FACConfig:
    """The ``method`` section (paper defaults; the module docstring explains every choice).

    Attributes:
        alpha, beta: weights of L_Geo and L_Fea (Eq. 6).
        tau: InfoNCE temperature of both losses.
        num_regions: H, regions kept per scene by regional sampling.
        min_region_size: regions with fewer view-``a`` points are never sampled (1 = off).
        regional_sampling: ``False`` uses every region (ablation).
        num_pairs: positive (and negative) pairs per process batch, split evenly over the anchors.
        use_geo, use_fea: enable L_Geo / L_Fea (ablations: at least one).
        score_maps: SCN score maps ``S``; ``False``: ``F = D`` (ablation).
        scn_m: m, rows of the SCN feature maps.
        scn_hidden: hidden width of the SCN projector ``h`` (``None``: f_c).
        score_activation: ``none`` (paper text) or ``sigmoid`` on ``S``.
        proj_dim: ``None``: f_c = backbone output width; else a linear projection to this width.
        positives: L_Fea positive selection, ``topk`` or ``sinkhorn``.
        sinkhorn_iters, sinkhorn_eps: Sinkhorn iterations and entropic regularisation.
        exclude_positives: drop negatives that are also the anchor's L_Fea positives.
        geo_normalize: L2-normalise features before the region means and keys in L_Geo.
        momentum: EMA momentum of the teacher (at step 0 for the cosine schedule).
        momentum_schedule: ``constant`` or ``cosine`` (to ``momentum_final`` at the last step).
        momentum_final: final momentum of the cosine schedule.
        teacher_bn: ``batch`` (teacher in train mode, batch statistics) or ``running`` (eval mode).
    """

    alpha: float = 1.0
    beta: float = 1.0
    tau: float = 0.1
    num_regions: int = 20
    min_region_size: int = 1
    regional_sampling: bool = True
    num_pairs: int = 4096
    use_geo: bool = True
    use_fea: bool = True
    score_maps: bool = True
    scn_m: int = 20
    scn_hidden: int | None = None
    score_activation: Literal["none", "sigmoid"] = "none"
    proj_dim: int | None = None
    positives: Literal["topk", "sinkhorn"] = "topk"
    sinkhorn_iters: int = 10
    sinkhorn_eps: float = 0.05
    exclude_positives: bool = True
    geo_normalize: bool = True
    momentum: float = 0.999
    momentum_schedule: Literal["constant", "cosine"] = "constant"
    momentum_final: float = 1.0
    teacher_bn: Literal["batch", "running"] = "batch"

    def __post_init__(self) -> None:
        if not (self.use_geo or self.use_fea):
            raise ValueError("method.use_geo and method.use_fea are both false: FAC needs at least one loss")
        if self.tau <= 0 or self.num_regions < 1 or self.num_pairs < 1 or self.scn_m < 1:
            raise ValueError("method.tau, num_regions, num_pairs and scn_m must be positive")
        if not (0.0 <= self.momentum <= 1.0 and 0.0 <= self.momentum_final <= 1.0):
            raise ValueError(f"method.momentum / momentum_final must be in [0, 1]; got {self.momentum}, "
                             f"{self.momentum_final}")
        if self.proj_dim is not None and self.proj_dim < 1:
            raise ValueError(f"method.proj_dim must be >= 1 or null; got {self.proj_dim}")


class FACEncoder(nn.Module):
    """``G``: the SpUNet, optionally followed by a point-wise linear projection to ``proj_dim``.

    ``(PointBatch) -> (N, f_c)`` features; the teacher is an EMA copy of this whole module.
    """

    def __init__(self, net: SpUNet, proj_dim: int | None = None):
        super().__init__()
        self.net = net
        self.proj = nn.Linear(net.out_channels, proj_dim) if proj_dim is not None else None
        self.out_channels = int(proj_dim if proj_dim is not None else net.out_channels)

    def forward(self, batch: PointBatch) -> torch.Tensor:
        feat = self.net(batch)
        return self.proj(feat) if self.proj is not None else feat


class FAC(PretrainMethod):
    """Student ``G`` on view ``a``, EMA teacher on view ``b``, ``alpha L_Geo + beta L_Fea``."""

    momentum_next: torch.Tensor  # buffer, registered in __init__

    def __init__(self, cfg: FACConfig, model: BackboneConfig, data: PairDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.student = FACEncoder(build_backbone(model), cfg.proj_dim)
        self.teacher = EMATeacher(self.student)
        self.scn = (SiameseCorrespondence(self.student.out_channels, cfg.scn_m, cfg.scn_hidden, True,
                                          cfg.score_activation) if cfg.use_fea and cfg.score_maps else None)
        # the momentum the next after_step applies (logged by forward; saved with the state)
        self.register_buffer("momentum_next", torch.tensor(self._momentum(0, 1), dtype=torch.float64))

    def backbone(self) -> nn.Module:
        return self.student.net

    def _momentum(self, step: int, max_steps: int) -> float:
        if self.cfg.momentum_schedule == "cosine":
            return cosine_momentum(step, max_steps, self.cfg.momentum, self.cfg.momentum_final)
        return self.cfg.momentum

    def enhance(self, feat: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """SCN-enhanced features ``F`` (``(N, f_c)``; ``feat`` itself without score maps)."""
        return self.scn(feat, offset) if self.scn is not None else feat

    def teacher_features(self, view: PointBatch) -> torch.Tensor:
        """``(N_b, f_c)`` teacher features (no gradient), in the configured BatchNorm mode."""
        was_training = self.teacher.training
        if self.cfg.teacher_bn == "running":
            self.teacher.eval()
        try:
            return self.teacher(view)
        finally:
            self.teacher.train(was_training)

    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        va, vb = batch.view1, batch.view2
        if va.superpoint is None:
            raise ValueError("FAC needs per-point region ids ('superpoint') in view a; prepare the data with "
                             "'contrast3d prepare rgbd' / 'prepare scenes' with segments on")
        scene_a, scene_b = va.batch, vb.batch
        assert scene_a is not None and scene_b is not None  # PointBatch.__post_init__ sets batch
        d_a = self.student(va)
        d_b = self.teacher_features(vb)
        dev = d_a.device
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())       # from torch's global (checkpointed) RNG
        gen = torch.Generator(device=dev).manual_seed(seed)
        with torch.autocast(dev.type, enabled=False):
            d_a, d_b = d_a.float(), d_b.float()
            region_a = va.superpoint.to(dev).long()
            region_b = carry_regions(region_a, batch.matches, d_b.shape[0])
            regions = regional_sampling(region_a, scene_a, cfg.num_regions, cfg.min_region_size, gen,
                                        all_regions=not cfg.regional_sampling)
            pairs = sample_region_pairs(region_b, scene_b, regions, cfg.num_pairs, generator=gen)
            loss = d_a.new_zeros(())
            logs: dict[str, torch.Tensor] = {}
            if cfg.use_geo:
                geo = geo_loss(d_a, d_b, region_a, pairs, cfg.tau, cfg.geo_normalize)
                loss = loss + cfg.alpha * geo
                logs["loss_geo"] = geo.detach()
            if cfg.use_fea:
                f_a, f_b = self.enhance(d_a, va.offset), self.enhance(d_b, vb.offset)
                fea = fea_loss(f_a, f_b, region_a, scene_b, pairs, cfg.tau, cfg.positives, cfg.sinkhorn_iters,
                               cfg.sinkhorn_eps, cfg.exclude_positives)
                loss = loss + cfg.beta * fea
                logs["loss_fea"] = fea.detach()
            with torch.no_grad():
                anchor = region_means(d_a.detach(), region_a, pairs.regions)
                cos = torch.einsum("ac,akc->ak", anchor, F.normalize(d_b[pairs.pos], dim=-1))
                logs["pos_cos"] = cos.mean() if cos.numel() else d_a.new_zeros(())
                logs["num_anchors"] = d_a.new_tensor(float(len(pairs)))
                logs["momentum"] = self.momentum_next.float()
        return {"loss": loss, **logs}

    @torch.no_grad()
    def after_step(self, ctx: HookContext) -> None:
        """EMA update of the teacher towards the student (the only way the teacher changes)."""
        momentum = self._momentum(ctx.step - 1, ctx.max_steps)
        self.teacher.update(self.student, momentum)
        self.momentum_next.fill_(self._momentum(ctx.step, ctx.max_steps))


SPEC = MethodSpec(
    config_cls=FACConfig, method_cls=FAC,
    build_dataset=build_pair_dataset, build_collate=pair_collate,
    model_config_cls=BackboneConfig, data_config_cls=PairDataConfig,
    description="FAC: regional sampling, region-anchor contrast (L_Geo) and SCN feature contrast (L_Fea), "
                "EMA teacher",
    smoke={"model": {"preset": "spunet-tiny"},
           "data": SMOKE_VIEWS,
           "method": {"num_pairs": 256}},
    smoke_data=smoke_scenes,
)
