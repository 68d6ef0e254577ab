"""GroupContrast (Wang et al., CVPR 2024): segment grouping with learnable prototypes and semantic-aware
contrastive learning, with an EMA teacher.

**Networks (§3.1).** Student: encoder ``f`` (SpUNet), projector ``g`` (grouping), projector ``h`` and
asymmetric predictor ``h'`` (contrast), ``n = 32`` learnable prototypes ``S`` (L2-normalised on every
use, :class:`~contrast3d.models.heads.Prototypes`). Teacher: an EMA copy of ``f, g, h, S`` (no ``h'``),
``theta_t <- m theta_t + (1 - m) theta_s``, moved **only** in :meth:`GroupContrast.after_step`.

**One step** on two MSC views of a scene (:class:`~contrast3d.data.msc_views.MSCViewDataset`; segment
ids = the graph-cut ``superpoint`` restricted to the overlap)::

    segments   s: ids present in the overlap of *both* views (common_segments); the same id is the
                  same segment in both views
    grouping   z = segment_mean(normalize(g(f(x))))            student z_q, teacher z_k   (P, D)
               Q = softmax(z_q S_s^T / tau_s),  K = softmax((z_k S_t^T - c) / tau_t)    (P, n)
               L_group = Eq. 4 (entropy-weighted CE(K, Q); Eq. 2 with informative=false)
    labels     Y = argmax_n K per segment -> per point (Eq. 5)
    contrast   2048 points sampled per scene in each view's overlap; v_q = h'(h(f(x))) (student),
               v_k = h_t(f_t(x)) (teacher); positives = cross-view pairs with equal Y; Eq. 8 with
               C_ij = K[s_i, k] K[s_j, k] and tau = 0.4
    loss       L = lambda_g L_group + lambda_c L_con   (1, 1)

The maths of the losses is in :mod:`contrast3d.losses.groupcontrast` (centring as a logit bias, the
global DDP mean of the centre, Eq. 8 read literally).

**Decisions where the paper is silent (all in :class:`GroupContrastConfig` / the data section):**

* *Symmetrisation* (``symmetric``, default on): the student sees view 1 and the teacher view 2, and
  vice versa; ``L_group`` and ``L_con`` are each the mean of the two directions. Off: view 1 -> student,
  view 2 -> teacher only (half the work: the teacher runs on view 2 only and the student on view 1).
* *Group labels of a direction* come from the teacher assignment ``K`` of the **teacher's** view, for the
  sampled points of both views (segments are shared, so ``K`` indexes points of either view); the
  confidence ``C_ij`` uses that same ``K``.
* *Centre* (``center_momentum`` lambda_c = 0.9, DINO's value): updated once per step in
  :meth:`~GroupContrast.after_step` from the uncentred teacher logits of **all** teacher views of the
  step (both views when symmetric), stashed during ``forward``; the mean is over the segments of all
  processes (``ctx.all_reduce`` sums the logit sums and the segment counts in one call; the engine's
  hook context sums in place across processes; ``forward`` has no hook context, hence the stash -- the
  alternative, :func:`~contrast3d.losses.groupcontrast.distributed_sum` inside ``forward``, would also
  update the centre on evaluation forwards). If ``forward`` runs twice before ``after_step`` only the
  last stash counts. Forward uses the centre of the previous step (DINO).
  The centre is a buffer: never touched by gradients, saved in checkpoints.
* *Teacher temperature* ``tau_t = 0.07``; optional linear warm-up from 0.04 over
  ``tau_t_warmup_steps`` (default 0: off). ``sharpening=false`` sets ``tau_t = tau_s`` (Table 1h).
* *Teacher momentum*: ``momentum_schedule: constant`` (``momentum`` 0.999, default) or ``cosine`` from
  ``momentum`` to ``momentum_final`` over the run (BYOL/DINO; the issue's option is ``momentum: 0.994``,
  ``momentum_final: 1.0``). The value logged as ``momentum`` is the one the coming ``after_step`` applies.
* *Teacher mode*: the teacher runs in the method's train/eval mode (BatchNorm on batch statistics while
  training, as MoCo/BYOL/DINO teachers); its BatchNorm buffers are copied from the student at every EMA
  step (:class:`~contrast3d.engine.ema.EMATeacher` ``buffers="copy"``).
* *Heads* (paper gives no sizes): ``g``, ``h``: 2-layer point MLPs ``C -> 256 -> 128`` with BatchNorm and
  ReLU (:class:`~contrast3d.models.heads.PointMLP`); ``h'``: ``128 -> 256 -> 128``. ``g`` runs on the
  points of the common segments only, ``h``/``h'`` on the sampled points only (BatchNorm statistics are
  those of the points the losses see; the rest would be wasted work).
* *Sampling*: ``num_samples`` (2048) points per scene and view, drawn independently in each view among
  the points whose segment is common to both views (``positives: grid`` -- all overlap points;
  ``matched`` -- ``num_samples`` matches per scene), with torch's global RNG (seeded and checkpointed by
  the engine). Positives and negatives only within a scene (``contrast_scope: scene``, the paper's
  per-scene sampling); ``batch`` lets points of different scenes with equal labels be positives.
* *Prototype gradient cancellation* (DINO's ``freeze_last_layer``): ``freeze_prototypes_steps`` (default 0
  = off, the paper does not mention it) drops the prototypes' gradient (``grad = None``: no SGD update,
  no momentum, no weight decay) in :meth:`~GroupContrast.before_optimizer_step` while fewer than that many
  optimizer steps are done.
* *Exported backbone*: the student encoder (``export_backbone: student``); ``teacher`` exports the EMA one.
* *Mixed precision*: only the encoders run under the engine's autocast; heads, pooling, prototype logits
  and losses run in float32 (autocast off), since fp16 cosines divided by ``tau_t = 0.07`` lose precision.

**Ablations (Table 1)** -- every switch removes what it turns off (no sub-module without a gradient):

==========================  ==========================================================================
Table 1 row                 settings
==========================  ==========================================================================
a: Matched Points           ``positives: matched, grouping: false, confidence: false`` (PointInfoNCE
                            on sampled matches with the teacher/predictor pipeline)
a: Spatial Grid             ``positives: grid, grouping: false, confidence: false``; cells of
                            ``grid_cell`` (1 m) x 1 m in the xy plane of the scene's original (world)
                            coordinates, so both views agree on the cells
a: Geometry Segment         ``positives: segment, grouping: false, confidence: false`` (same graph-cut
                            segment in both views)
a: Segment Grouping         ``positives: group`` (default)
b: prototypes n             ``num_prototypes``
c: sampled points           ``num_samples``
d: informative weight       ``informative``
e: teacher temperature      ``tau_t``
f: predictor                ``predictor`` (off: ``v_q = h(f(x))``, no ``h'`` created)
g: semantic / confidence    semantic-aware off: ``positives: matched`` (or ``segment``: the row's 74.8
                            equals 1a's Geometry Segment; the paper does not say) with grouping still
                            trained, ``confidence: false``; confidence off: ``confidence: false``
h: centering / sharpening   ``centering`` (off: no centre) / ``sharpening`` (off: ``tau_t = tau_s``)
==========================  ==========================================================================

``grouping: false`` builds no ``g``, no prototypes and no centre and drops ``L_group``; it requires
``confidence: false`` and ``positives`` other than ``group``. ``confidence`` needs group or matched
positives (with matched positives ``k`` is the anchor's group label and a key outside the common
segments gets confidence 0).

**Logged scalars**: ``loss_group``, ``loss_con``, ``used_prototypes`` (prototypes that are the argmax of
at least one teacher segment assignment), ``mean_assign_entropy`` (entropy of the mean teacher assignment,
nats: ``log n`` when prototypes are used evenly, 0 at collapse), ``segments`` (common segments per step),
``momentum``, ``tau_t``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from contrast3d.data.msc_views import MSCViewConfig, MSCViewDataset
from contrast3d.data.scene_dataset import pretraining_scene_dirs
from contrast3d.data.views import kept_index
from contrast3d.engine.ema import EMATeacher, cosine_momentum
from contrast3d.engine.objective import HookContext
from contrast3d.errors import DataError
from contrast3d.losses.groupcontrast import (
    TeacherCenter,
    common_segments,
    group_labels,
    grouping_loss,
    sample_per_scene,
    segment_index,
    segment_mean,
    semantic_contrast_loss,
    teacher_assignment,
    teacher_temperature,
)
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import SMOKE_VIEWS, BackboneConfig, build_backbone, smoke_scenes
from contrast3d.models.heads import PointMLP, Prototypes
from contrast3d.structures import MultiView, PointBatch, ViewBatch, collate_views

Positives = Literal["group", "matched", "grid", "segment"]


@dataclass
class GroupContrastConfig:
    """The ``method`` section (paper defaults unless the module docstring says otherwise).

    Attributes:
        num_prototypes: ``n`` (32).
        proj_hidden, proj_dim: hidden width and output ``D`` of ``g`` and ``h``; ``h'`` maps ``D -> D``.
        proj_layers, pred_layers: linear layers of the projectors / the predictor.
        tau_s, tau_t: student / teacher temperatures (0.1, 0.07).
        tau_t_warmup_from, tau_t_warmup_steps: optional linear teacher-temperature warm-up (off).
        center_momentum: ``lambda_c`` of the centre EMA.
        tau: contrastive temperature (0.4).
        num_samples: points sampled per scene and view for the contrast (2048).
        lambda_group, lambda_con: loss weights (1, 1).
        grouping: build ``g`` + prototypes + centre and train ``L_group``.
        positives: ``group`` (same group label), ``matched``, ``grid`` (same ``grid_cell`` cell in the
            world xy plane), ``segment`` (same graph-cut segment).
        grid_cell: spatial-grid cell edge, metres (1.0).
        informative, confidence, predictor, centering, sharpening: the Table 1 switches.
        symmetric: both directions (student on view 1 vs teacher on view 2 and vice versa).
        contrast_scope: ``scene`` (pairs within a scene) or ``batch``.
        momentum_schedule: ``constant`` (``momentum``) or ``cosine`` (``momentum`` -> ``momentum_final``).
        momentum, momentum_final: teacher EMA momentum.
        freeze_prototypes_steps: no prototype update during the first N optimizer steps (0 = off).
        export_backbone: which encoder is exported and probed: ``student`` or ``teacher``.
    """

    num_prototypes: int = 32
    proj_hidden: int = 256
    proj_dim: int = 128
    proj_layers: int = 2
    pred_layers: int = 2
    tau_s: float = 0.1
    tau_t: float = 0.07
    tau_t_warmup_from: float = 0.04
    tau_t_warmup_steps: int = 0
    center_momentum: float = 0.9
    tau: float = 0.4
    num_samples: int = 2048
    lambda_group: float = 1.0
    lambda_con: float = 1.0
    grouping: bool = True
    positives: Positives = "group"
    grid_cell: float = 1.0
    informative: bool = True
    confidence: bool = True
    predictor: bool = True
    centering: bool = True
    sharpening: bool = True
    symmetric: bool = True
    contrast_scope: Literal["scene", "batch"] = "scene"
    momentum_schedule: Literal["constant", "cosine"] = "constant"
    momentum: float = 0.999
    momentum_final: float = 1.0
    freeze_prototypes_steps: int = 0
    export_backbone: Literal["student", "teacher"] = "student"

    def __post_init__(self) -> None:
        if self.positives == "group" and not self.grouping:
            raise ValueError("method.positives=group needs method.grouping=true (group labels come from it)")
        if self.confidence and not self.grouping:
            raise ValueError("method.confidence=true needs method.grouping=true (C_ij comes from the teacher "
                             "assignment K); set confidence=false for the grouping-free ablations")
        if self.confidence and self.positives not in ("group", "matched"):
            raise ValueError(f"method.confidence=true is defined for group or matched positives, not "
                             f"'{self.positives}'")
        if self.num_prototypes < 2 or self.num_samples < 2 or self.proj_dim < 1:
            raise ValueError("method.num_prototypes and method.num_samples must be >= 2, proj_dim >= 1")
        for name in ("tau_s", "tau_t", "tau", "grid_cell"):
            if getattr(self, name) <= 0:
                raise ValueError(f"method.{name} must be > 0, got {getattr(self, name)}")
        for name in ("momentum", "momentum_final", "center_momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"method.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class GroupContrastDataConfig(MSCViewConfig):
    """The ``data`` section: the MSC view recipe (:class:`~contrast3d.data.msc_views.MSCViewConfig`,
    2 cm voxels, 60 % crops ...) plus the backbone input and error handling.

    Attributes:
        feat_keys: per-point arrays fed to the backbone (colour + normal = 6 channels).
        strict: stop at the first unreadable scene or scene without ``<segment_key>.npy`` (else skip it).
    """

    feat_keys: list[str] = field(default_factory=lambda: ["color", "normal"])
    strict: bool = False


class GroupContrastViews(MSCViewDataset):
    """:class:`MSCViewDataset` whose views also carry ``extra["world_coord"]`` ``(N, 3)`` float32: the
    original scene coordinates (metres) of every kept point (for the spatial-grid ablation)."""

    def get_sample(self, index: int, rng: np.random.Generator) -> MultiView:  # type: ignore[override]
        views = super().get_sample(index, rng)
        raw = self.raw(index)
        for view in views.views:
            view.extra["world_coord"] = raw.coord[kept_index(view, len(raw))].astype(np.float32)
        return views


def build_groupcontrast_dataset(root: str, cfg: GroupContrastDataConfig) -> Dataset:
    """MSC view pairs of the Pointcept scenes under ``root`` that have ``<segment_key>.npy``
    (``contrast3d prepare scenes`` writes ``superpoint.npy``)."""
    scenes = pretraining_scene_dirs(root)  # never val/ or test/ scenes of a Pointcept root
    if not scenes:
        raise DataError(Path(root), "no Pointcept scene folders (coord.npy) found; run 'contrast3d prepare "
                                    "scenes' (it also writes the superpoints GroupContrast needs)")
    if cfg.segment_key:
        missing = [d for d in scenes if not (d / f"{cfg.segment_key}.npy").is_file()]
        if missing and (cfg.strict or len(missing) == len(scenes)):
            raise DataError(missing[0], f"no {cfg.segment_key}.npy (graph-cut segments); run 'contrast3d prepare "
                                        f"scenes' with segments on this data")
        scenes = [d for d in scenes if d not in set(missing)]
    return GroupContrastViews(scenes, cfg, on_error="raise" if cfg.strict else "skip")


def groupcontrast_collate(cfg: GroupContrastDataConfig) -> Callable[[list[MultiView]], ViewBatch]:
    """``list[MultiView] -> ViewBatch`` with the configured input features (picklable)."""
    return functools.partial(collate_views, feat_keys=tuple(cfg.feat_keys))


class GroupContrastNet(nn.Module):
    """What the teacher copies: encoder ``f``, projector ``g``, prototypes ``S`` (both only with
    grouping) and projector ``h``. State-dict names: ``encoder.*``, ``group_proj.*``,
    ``prototypes.weight``, ``con_proj.*``."""

    def __init__(self, cfg: GroupContrastConfig, model: BackboneConfig):
        super().__init__()
        self.encoder = build_backbone(model)
        width = self.encoder.out_channels
        self.group_proj: PointMLP | None = None
        self.prototypes: Prototypes | None = None
        if cfg.grouping:
            self.group_proj = PointMLP(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)
            self.prototypes = Prototypes(cfg.num_prototypes, dim=cfg.proj_dim)
        self.con_proj = PointMLP(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)

    def group_logits(self, feats: torch.Tensor, segment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine prototype logits of every segment: ``feats (N, C)``, ``segment (N,)`` (-1 = none) ->
        ``(logits (P, n) float32, ids (P,))`` with ``P`` the sorted segment ids present."""
        assert self.group_proj is not None and self.prototypes is not None
        valid = segment >= 0
        if int(valid.sum()) < 2:  # no segment to group (and BatchNorm needs two rows): empty, still in the graph
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0 + feats.sum() * 0.0
            empty = feats.new_zeros((0, self.prototypes.num_prototypes), dtype=torch.float32)
            return empty + zero, segment.new_zeros(0)
        z, ids = segment_mean(self.group_proj(feats[valid]).float(), segment[valid])
        return self.prototypes(z), ids


class GroupContrast(PretrainMethod):
    """GroupContrast objective (module docstring): student, EMA teacher, centre, both losses."""

    schedule_state: torch.Tensor  # buffer, registered in __init__

    def __init__(self, cfg: GroupContrastConfig, model: BackboneConfig, data: GroupContrastDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        self.student = GroupContrastNet(cfg, model)
        self.predictor = PointMLP(cfg.proj_dim, cfg.proj_hidden, cfg.proj_dim, cfg.pred_layers) \
            if cfg.predictor else None
        self.teacher = EMATeacher(self.student)
        self.center = TeacherCenter(cfg.num_prototypes, cfg.center_momentum) \
            if cfg.grouping and cfg.centering else None
        # [optimizer steps done, run length]: drive tau_t warm-up and the momentum schedule; saved.
        self.register_buffer("schedule_state", torch.zeros(2, dtype=torch.long))
        self._pending_logits: torch.Tensor | None = None

    # ------------------------------------------------------------------ engine hooks
    def backbone(self) -> nn.Module:
        return self.teacher_net().encoder if self.cfg.export_backbone == "teacher" else self.student.encoder

    def teacher_net(self) -> GroupContrastNet:
        return self.teacher.module  # type: ignore[return-value]

    def current_tau_t(self) -> float:
        """Teacher temperature of the coming step (``tau_s`` without sharpening)."""
        c = self.cfg
        if not c.sharpening:
            return c.tau_s
        return teacher_temperature(int(self.schedule_state[0]), c.tau_t, c.tau_t_warmup_from, c.tau_t_warmup_steps)

    def momentum_at(self, step: int, max_steps: int) -> float:
        """EMA momentum applied after optimizer step ``step`` (1-based) of ``max_steps``."""
        c = self.cfg
        if c.momentum_schedule == "cosine" and max_steps > 0:
            return cosine_momentum(step, max_steps, c.momentum, c.momentum_final)
        return c.momentum

    def before_optimizer_step(self, ctx: HookContext) -> None:
        protos = self.student.prototypes
        if protos is not None and ctx.step < self.cfg.freeze_prototypes_steps:
            protos.weight.grad = None  # DINO's freeze_last_layer: no update at all this step

    @torch.no_grad()
    def after_step(self, ctx: HookContext) -> None:
        self.schedule_state.copy_(torch.tensor([ctx.step, ctx.max_steps]))
        self.teacher.update(self.student, self.momentum_at(ctx.step, ctx.max_steps))
        if self.center is not None and self._pending_logits is not None:
            self.center.update(self._pending_logits, all_reduce=ctx.all_reduce)
        self._pending_logits = None

    # ------------------------------------------------------------------ forward
    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        c = self.cfg
        views = (batch.view1, batch.view2)
        directions = [(0, 1), (1, 0)] if c.symmetric else [(0, 1)]
        s_views = sorted({a for a, _ in directions})
        t_views = sorted({b for _, b in directions})
        student = {i: self.student.encoder(views[i]) for i in s_views}
        with torch.no_grad():
            teacher = {i: self.teacher_net().encoder(views[i]) for i in t_views}
        device_type = student[s_views[0]].device.type
        with torch.autocast(device_type, enabled=False):  # heads and losses in float32 (cosines / 0.07)
            student = {i: f.float() for i, f in student.items()}
            teacher = {i: f.float() for i, f in teacher.items()}
            return self._objective(batch, views, student, teacher, directions)

    def _objective(self, batch: ViewBatch, views: tuple[PointBatch, PointBatch], student: dict[int, torch.Tensor],
                   teacher: dict[int, torch.Tensor], directions: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """Both losses and the logged scalars from the encoders' per-point features (float32)."""
        c = self.cfg
        matches = batch.matches
        overlap = [_mask(len(views[0]), matches[:, 0]), _mask(len(views[1]), matches[:, 1])]
        seg = self._segments(views, overlap)
        logs: dict[str, torch.Tensor] = {}
        loss = next(iter(student.values())).new_zeros(())
        assign: dict[int, torch.Tensor] = {}
        rows: list[torch.Tensor] | None = None  # row of each point's segment in K (grouping only)
        if c.grouping:
            assert seg is not None
            loss_group, assign, rows = self._grouping(student, teacher, seg, directions, logs)
            loss = loss + c.lambda_group * loss_group
        loss_con = self._contrast(batch, views, student, teacher, overlap, seg, rows, assign, directions)
        loss = loss + c.lambda_con * loss_con
        logs["loss_con"] = loss_con.detach()
        logs["momentum"] = loss.new_tensor(self.momentum_at(int(self.schedule_state[0]) + 1,
                                                            int(self.schedule_state[1])))
        return {"loss": loss, **logs}

    def _segments(self, views: tuple[PointBatch, PointBatch], overlap: list[torch.Tensor]
                  ) -> list[torch.Tensor] | None:
        """Segment ids of both views restricted to the segments seen in the overlap of both (-1 else)."""
        sp0, sp1 = views[0].superpoint, views[1].superpoint
        if sp0 is None or sp1 is None:
            if self.cfg.grouping or self.cfg.positives == "segment":
                raise DataError("<batch>", "the views carry no segment ids (superpoint); prepare the scenes with "
                                           "segments ('contrast3d prepare scenes') and keep data.segment_key")
            return None
        s1, s2 = (torch.where(o, sp.long(), -1) for sp, o in zip((sp0, sp1), overlap))
        return list(common_segments(s1, s2))

    def _grouping(self, student: dict[int, torch.Tensor], teacher: dict[int, torch.Tensor],
                  seg: list[torch.Tensor], directions: list[tuple[int, int]], logs: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[int, torch.Tensor], list[torch.Tensor]]:
        """``L_group`` (mean over directions), teacher assignments ``K`` per teacher view, point rows."""
        c = self.cfg
        tau_t = self.current_tau_t()
        center = self.center.center if self.center is not None else None
        s_logits = {i: self.student.group_logits(f, seg[i])[0] for i, f in student.items()}
        t_logits, assign, ids = {}, {}, None
        with torch.no_grad():
            for i, f in teacher.items():
                t_logits[i], ids = self.teacher_net().group_logits(f, seg[i])
                assign[i] = teacher_assignment(t_logits[i], center, tau_t)
        assert ids is not None
        rows = [segment_index(s, ids) for s in seg]
        terms = [grouping_loss(s_logits[a], assign[b], c.tau_s, c.informative) for a, b in directions]
        loss = sum(terms[1:], terms[0]) / len(directions)
        self._pending_logits = torch.cat([t_logits[i] for i in sorted(t_logits)]).detach()
        k_all = torch.cat([assign[i] for i in sorted(assign)])
        logs["loss_group"] = loss.detach()
        logs["segments"] = loss.new_tensor(float(ids.numel()))
        if k_all.shape[0]:
            mean = k_all.mean(0)
            logs["mean_assign_entropy"] = -torch.special.xlogy(mean, mean).sum()
            logs["used_prototypes"] = (torch.bincount(k_all.argmax(1), minlength=c.num_prototypes) > 0).sum().float()
        else:
            logs["mean_assign_entropy"] = loss.new_zeros(())
            logs["used_prototypes"] = loss.new_zeros(())
        logs["tau_t"] = loss.new_tensor(tau_t)
        return loss, assign, rows

    def _candidates(self, views: tuple[PointBatch, PointBatch], overlap: list[torch.Tensor],
                    seg: list[torch.Tensor] | None, rows: list[torch.Tensor] | None) -> list[torch.Tensor]:
        """Per view, the ``(K,)`` point indices the contrast may sample."""
        if self.cfg.positives == "grid" or seg is None:
            return [torch.nonzero(o).squeeze(1) for o in overlap]
        if self.cfg.positives == "segment" or rows is None:
            return [torch.nonzero(s >= 0).squeeze(1) for s in seg]
        return [torch.nonzero(r >= 0).squeeze(1) for r in rows]

    def _contrast(self, batch: ViewBatch, views: tuple[PointBatch, PointBatch], student: dict[int, torch.Tensor],
                  teacher: dict[int, torch.Tensor], overlap: list[torch.Tensor], seg: list[torch.Tensor] | None,
                  rows: list[torch.Tensor] | None, assign: dict[int, torch.Tensor],
                  directions: list[tuple[int, int]]) -> torch.Tensor:
        """``L_con`` (Eq. 8), mean over directions."""
        c = self.cfg
        if c.positives == "matched":
            pick = sample_per_scene(_scene_of(views[0])[batch.matches[:, 0]], c.num_samples)
            idx = [batch.matches[pick, 0], batch.matches[pick, 1]]
        else:
            cand = self._candidates(views, overlap, seg, rows)
            idx = [cand[i][sample_per_scene(_scene_of(views[i])[cand[i]], c.num_samples)] for i in (0, 1)]
        if min(len(i) for i in idx) < 2:  # nothing to contrast (BatchNorm needs two rows)
            heads = [self.student.con_proj] + ([self.predictor] if self.predictor is not None else [])
            zero = sum(p.sum() for h in heads for p in h.parameters()) * 0.0 + \
                sum(f.sum() for f in student.values()) * 0.0
            assert isinstance(zero, torch.Tensor)  # con_proj has parameters
            return zero
        query = {}
        for a in student:
            q = self.student.con_proj(student[a][idx[a]])
            query[a] = (self.predictor(q) if self.predictor is not None else q).float()
        with torch.no_grad():
            key = {b: self.teacher_net().con_proj(teacher[b][idx[b]]).float() for b in teacher}
        labels = self._labels(views, idx, seg, rows) if c.positives in ("grid", "segment") else None
        total = key[directions[0][1]].new_zeros(())
        for a, b in directions:
            kw: dict = {}
            if c.positives in ("group", "matched") and c.grouping:
                k_rows = [rows[i][idx[i]] for i in (0, 1)]  # type: ignore[index]
                ka = torch.cat([assign[b], assign[b].new_zeros(1, c.num_prototypes)])  # row -1 -> zeros
                qg, kg = group_labels(assign[b], k_rows[a]), group_labels(assign[b], k_rows[b])
                kw.update(query_assign=ka[k_rows[a]], key_assign=ka[k_rows[b]])
            elif labels is not None:
                qg, kg = labels[a], labels[b]
            else:  # matched positives without grouping: labels are unused
                qg = kg = torch.zeros(len(idx[0]), dtype=torch.long, device=key[b].device)
            if c.positives == "matched":
                kw["match"] = torch.arange(len(idx[0]), device=qg.device)
            if c.contrast_scope == "scene":
                kw.update(query_scene=_scene_of(views[a])[idx[a]], key_scene=_scene_of(views[b])[idx[b]])
            total = total + semantic_contrast_loss(
                query[a], key[b], qg, kg, tau=c.tau, confidence=c.confidence,
                positives="matched" if c.positives == "matched" else "group", **kw)
        return total / len(directions)

    def _labels(self, views: tuple[PointBatch, PointBatch], idx: list[torch.Tensor],
                seg: list[torch.Tensor] | None, rows: list[torch.Tensor] | None) -> list[torch.Tensor]:
        """Positive-defining labels of the sampled points for the ``grid`` / ``segment`` ablations."""
        if self.cfg.positives == "segment":
            assert seg is not None
            return [seg[i][idx[i]] for i in (0, 1)]
        keys = []
        for i in (0, 1):
            world = views[i].extra.get("world_coord")
            if world is None:
                raise DataError("<batch>", "positives=grid needs the views' extra['world_coord'] "
                                           "(GroupContrastViews adds it)")
            cell = torch.floor(world[idx[i], :2].double() / self.cfg.grid_cell).long()
            keys.append(torch.cat([_scene_of(views[i])[idx[i], None], cell], dim=1))
        _, inverse = torch.unique(torch.cat(keys), dim=0, return_inverse=True)
        return [inverse[: len(idx[0])], inverse[len(idx[0]):]]


def _scene_of(view: PointBatch) -> torch.Tensor:
    """``(N,)`` scene index of every point (``PointBatch.__post_init__`` always sets ``batch``)."""
    assert view.batch is not None
    return view.batch


def _mask(n: int, index: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.bool, device=index.device)
    out[index] = True
    return out


SPEC = MethodSpec(
    config_cls=GroupContrastConfig, method_cls=GroupContrast,
    build_dataset=build_groupcontrast_dataset, build_collate=groupcontrast_collate,
    model_config_cls=BackboneConfig, data_config_cls=GroupContrastDataConfig,
    description="GroupContrast: segment grouping with prototypes + semantic-aware contrast, EMA teacher",
    smoke={"model": {"preset": "spunet-tiny"},
           "data": SMOKE_VIEWS,
           "method": {"num_samples": 256, "proj_hidden": 32, "proj_dim": 16, "num_prototypes": 8}},
    smoke_data=smoke_scenes,
    data_kind="scenes",
)
