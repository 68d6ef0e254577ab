"""4DContrast (Chen, Niessner, Dai, ECCV 2022): 3D features with 4D priors from moving-object sequences.

A sample is a scene-object sequence of ``t`` frames (:mod:`contrast3d.data.sequence_dataset`): ``t``
independently augmented 3D views plus one 4D (space-time) view of the whole sequence, with
exact 3D-3D matches ``(i, j)`` and 3D-4D matches ``(i, t)``. Networks (§3.4):

* 3D encoder ``Phi_3D`` = SpUNet (``model`` section) + projection; 3D predictor ``P_3D``;
* 4D encoder ``Phi_4D`` = the same SpUNet code with ``ndim=4`` (``grid_coord`` ``(x, y, z, frame)``)
  + projection; 4D predictor ``P_4D``.

With ``z = Phi(.)`` (projection output) and ``p = P(z)`` per point, and the SimSiam distance
``D(p, z) = -cos(p, SG(z))`` (:func:`contrast3d.losses.simsiam.negative_cosine`), the losses are
the symmetrised ``S(p_a, z_a; p_b, z_b) = D(p_a, z_b) / 2 + D(p_b, z_a) / 2`` over matched rows:

* Eq. 3-4, ``L3D``: for every frame pair ``i < j``, ``S`` between the 3D features of matched points;
* Eq. 5-6, ``L3D4D``: for every frame ``i``, ``S(p3, z3; p4, z4)`` between each 3D point of frame
  ``i`` and the 4D voxel holding the same point at time ``i``;
* Eq. 7-8, ``L4D``: for every frame pair ``i < j``, ``S`` between the 4D voxels at times ``i`` and
  ``j`` holding corresponding points (composed from the ``(i, j)``, ``(i, t)`` and ``(j, t)``
  matches, duplicates removed, so each pair of 4D voxels counts once);
* ``L = w3d L3D + w3d4d L3D4D + w4d L4D`` (Eq. 9; weights default 1, 1, 1: the paper gives no values).

Decisions the paper leaves open (its architecture details are in a supplement we do not have):

* **Stop-gradient in Eq. 5.** The paper writes ``D(SG(p^3D), z^4D)``: the stop-gradient on the
  predictor output, the inverse of SimSiam (and of its own Eq. 2, 3, 7). We read this as a
  notation slip and put the stop-gradient on ``z`` everywhere, as SimSiam, whose §4.1 shows that
  without it the outputs collapse; gradients of every term therefore reach the networks only
  through the predictor branches ``p``. Fixed, not an option (see :mod:`contrast3d.losses.simsiam`).
* **Heads.** Projection = one 1x1 layer (a per-point ``Linear`` with bias, ``out_channels ->
  proj_dim``; the paper's "1x1x1 sparse convolutional projection layer"); predictor = two 1x1
  layers ``Linear -> BatchNorm -> ReLU -> Linear`` (:class:`~contrast3d.models.heads.PointMLP`)
  with SimSiam's bottleneck (``pred_hidden = proj_dim / 4``); ``proj_dim`` 128 by default.
* **4D encoder size.** ``preset4d`` (default: the 3D preset). The paper's 4D network has 33 M
  parameters; SpUNet-34 in 4D has 116 M, SpUNet-14 in 4D 37 M, so the paper-scale preset uses
  ``spunet14`` for the 4D encoder.
* **Reductions.** Each term is the *mean* over the matched rows of the whole batch (the paper's
  sums over correspondences would scale with the point count); over frame pairs / frames the
  terms are averaged (``reduction: mean``, every loss in ``[-1, 1]``) or summed as Eq. 4, 6, 8
  (``reduction: sum``). Pairs without any match in the batch are left out.
* **Batching of the 3D frames.** The ``t`` 3D views of all samples go through the 3D encoder as one
  batch of ``t * B`` scenes (BatchNorm statistics over all frames), the 4D view as a second batch.
* **Disabled terms.** A loss with weight 0 is not computed; with ``w3d4d = w4d = 0`` the 4D encoder
  is not built (a 3D-only SimSiam ablation), so every parameter that exists gets a gradient. The 3D
  encoder must train: ``w3d + w3d4d > 0``.
* **Collapse monitor.** ``feat_std3d`` / ``feat_std4d``: the per-dimension std of the L2-normalised
  projections ``z`` over the batch's points, averaged over dimensions (SimSiam's monitor, as
  :func:`contrast3d.evaluation.collapse.feature_std`): about ``1 / sqrt(proj_dim)`` for spread
  features, 0 when collapsed.
* **Exports.** ``backbone`` (the 3D SpUNet, what fine-tuning uses; also as Pointcept ``.pth``) and
  ``backbone4d`` (the 4D SpUNet with its own record: ``ndim`` 4, ``grid_size`` = the 4D voxel).
  Heads are not exported.

Data-side decisions (details and options in :mod:`contrast3d.data.sequence_dataset` and
:mod:`contrast3d.data.fourd`, all in the ``data`` section): sequences are generated on the fly
(~5-20 ms each, no ``prepare`` step); objects are furniture instances cut from the *other* scenes
(``instance.npy``, ScanNet-20 cabinet/chair/sofa/table/desk/toilet/bathtub, the paper's ModelNet
classes) unless ``data.objects_dir`` names a folder of OFF/OBJ/PLY files; scenes are downsampled
to 2 cm first; 3D frames get an independent rotation about z, scale 0.8-1.2 and shift +-0.2 m
before 2 cm voxels, the 4D view none before its 5 cm space-time voxels; 3D-3D matches are the
same source point kept in both views; geometry-only input (``[ones]``), colour optional. The
paper's learning-rate decay (x0.99 every 1,000 of 50k steps) is the ``step`` schedule with 49
milestones at ``k / 50`` of the run (``configs/pretrain/fourdcontrast.yaml``).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.data.sequence_dataset import SequenceDataConfig, build_sequence_dataset
from contrast3d.engine.objective import Export
from contrast3d.losses.simsiam import simsiam_loss
from contrast3d.methods.base import MethodSpec, PretrainMethod
from contrast3d.methods.common import BackboneConfig, build_backbone, smoke_scenes
from contrast3d.models.backbone import spunet_record
from contrast3d.models.heads import PointMLP
from contrast3d.models.spunet import SpUNet
from contrast3d.structures import MultiView, PointBatch, ViewBatch, collate_views

FEAT_WIDTH = {"ones": 1, "color": 3}


@dataclass
class FourDContrastConfig:
    """The ``method`` section (module docstring for the decisions).

    Attributes:
        proj_dim: projection (and predictor output) width.
        pred_hidden: predictor bottleneck width.
        w3d, w3d4d, w4d: loss weights of Eq. 9.
        preset4d: SpUNet preset of the 4D encoder (``None``: the ``model.preset``).
        reduction: ``mean`` or ``sum`` of the per-pair / per-frame terms.
    """

    proj_dim: int = 128
    pred_hidden: int = 32
    w3d: float = 1.0
    w3d4d: float = 1.0
    w4d: float = 1.0
    preset4d: str | None = None
    reduction: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        if self.proj_dim < 1 or self.pred_hidden < 1:
            raise ValueError("method.proj_dim and method.pred_hidden must be >= 1")
        if min(self.w3d, self.w3d4d, self.w4d) < 0 or self.w3d + self.w3d4d <= 0:
            raise ValueError("loss weights must be >= 0 and w3d + w3d4d > 0 (the 3D backbone must train)")


@dataclass
class Encoded:
    """Per-point outputs of one batch.

    Attributes:
        z3, p3: per 3D view ``i``, ``(N_i, D)`` projections and predictions.
        z4, p4: ``(M, D)`` of the 4D view (``None`` without a 4D encoder).
    """

    z3: list[torch.Tensor]
    p3: list[torch.Tensor]
    z4: torch.Tensor | None = None
    p4: torch.Tensor | None = None


def concat_batches(views: Sequence[PointBatch]) -> PointBatch:
    """The views' scenes as one :class:`PointBatch` of ``sum(B_v)`` scenes (view-major order)."""
    counts = torch.cat([torch.diff(v.offset, prepend=v.offset.new_zeros(1)) for v in views])
    return PointBatch(coord=torch.cat([v.coord for v in views]), feat=torch.cat([v.feat for v in views]),
                      grid_coord=torch.cat([v.grid_coord for v in views]), offset=torch.cumsum(counts, 0))


def lookup_table(matches: torch.Tensor, size: int) -> torch.Tensor:
    """``(size,)`` int64: ``table[a] = b`` for each row ``(a, b)`` of ``matches`` ``(M, 2)``, else ``-1``."""
    table = torch.full((size,), -1, dtype=torch.long, device=matches.device)
    table[matches[:, 0]] = matches[:, 1]
    return table


def compose_4d_matches(m_ij: torch.Tensor, to4d_i: torch.Tensor, to4d_j: torch.Tensor, size4: int) -> torch.Tensor:
    """``(K, 2)`` distinct pairs of 4D rows ``(to4d_i[a], to4d_j[b])`` over the 3D matches ``(a, b)`` of ``m_ij``."""
    u, v = to4d_i[m_ij[:, 0]], to4d_j[m_ij[:, 1]]
    ok = (u >= 0) & (v >= 0)
    key = torch.unique(u[ok] * size4 + v[ok])
    return torch.stack([key // size4, key % size4], 1)


def sequence_losses(enc: Encoded, pair_matches: dict[tuple[int, int], torch.Tensor], weights: Sequence[float],
                    reduction: str = "mean") -> dict[str, torch.Tensor]:
    """The three losses of Eq. 4, 6 and 8 (terms with weight 0 are absent) and their match counts.

    Args:
        enc: per-point outputs; ``enc.z3``/``p3`` hold ``t`` views, the 4D view is index ``t`` of the matches.
        pair_matches: batch-global ``(M, 2)`` rows: ``(i, j)`` 3D-3D for ``i < j < t`` and ``(i, t)`` 3D-4D.
        weights: ``(w3d, w3d4d, w4d)``.
        reduction: ``mean`` or ``sum`` over the frame pairs / frames that have matches.

    Returns:
        ``{"loss3d", "loss3d4d", "loss4d"}`` (those with a non-zero weight) and ``"matches3d"``, ... counts.
    """
    t = len(enc.z3)
    pairs = [(i, j) for i in range(t) for j in range(i + 1, t)]
    out: dict[str, torch.Tensor] = {}

    def combine(name: str, terms: list[torch.Tensor], counts: list[int]) -> None:
        live = [term for term, c in zip(terms, counts) if c > 0]
        ref = enc.p3[0]
        total = torch.stack(live).sum() if live else ref.sum() * 0.0
        out[name] = total / len(live) if reduction == "mean" and live else total
        out[name.replace("loss", "matches")] = ref.new_tensor(float(sum(counts)))

    w3d, w3d4d, w4d = weights
    if w3d > 0:
        ms = [pair_matches[p] for p in pairs]
        combine("loss3d", [simsiam_loss(enc.p3[i][m[:, 0]], enc.z3[i][m[:, 0]], enc.p3[j][m[:, 1]], enc.z3[j][m[:, 1]])
                           for (i, j), m in zip(pairs, ms)], [len(m) for m in ms])
    if w3d4d > 0 or w4d > 0:
        if enc.z4 is None or enc.p4 is None:
            raise ValueError("3D-4D / 4D-4D losses need the 4D outputs")
        z4, p4 = enc.z4, enc.p4
        m34 = [pair_matches[(i, t)] for i in range(t)]
        if w3d4d > 0:
            combine("loss3d4d", [simsiam_loss(enc.p3[i][m[:, 0]], enc.z3[i][m[:, 0]], p4[m[:, 1]], z4[m[:, 1]])
                                 for i, m in enumerate(m34)], [len(m) for m in m34])
        if w4d > 0:
            tables = [lookup_table(m, len(z)) for m, z in zip(m34, enc.z3)]
            ms = [compose_4d_matches(pair_matches[(i, j)], tables[i], tables[j], len(z4)) for i, j in pairs]
            combine("loss4d", [simsiam_loss(p4[m[:, 0]], z4[m[:, 0]], p4[m[:, 1]], z4[m[:, 1]]) for m in ms],
                    [len(m) for m in ms])
    return out


def feature_spread(z: torch.Tensor) -> torch.Tensor:
    """Collapse monitor: mean over dimensions of the per-dimension std of the L2-normalised ``(N, D)`` rows."""
    if z.shape[0] < 2:
        return z.new_tensor(float("nan"))
    return F.normalize(z.detach().float(), dim=1).std(dim=0, unbiased=False).mean()


class FourDContrast(PretrainMethod):
    """3D and 4D encoders with predictors; SimSiam losses over 3D-3D, 3D-4D and 4D-4D matches."""

    net4d: SpUNet | None  # the 4D branch: all three or none (w3d4d = w4d = 0)
    proj4d: nn.Linear | None
    pred4d: PointMLP | None

    def __init__(self, cfg: FourDContrastConfig, model: BackboneConfig, data: SequenceDataConfig):
        super().__init__(model, data)
        self.cfg = cfg
        feat_keys = list(getattr(data, "feat_keys", []))
        width = sum(FEAT_WIDTH.get(k, 0) for k in feat_keys)
        if feat_keys and width != model.in_channels:
            raise ValueError(f"model.in_channels is {model.in_channels} but data.feat_keys {feat_keys} give {width}")
        self.net3d = build_backbone(model)
        self.proj3d = nn.Linear(self.net3d.out_channels, cfg.proj_dim)
        self.pred3d = PointMLP(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim, num_layers=2, norm="bn")
        self.preset4d = cfg.preset4d or model.preset
        self.net4d = self.proj4d = self.pred4d = None
        if cfg.w3d4d > 0 or cfg.w4d > 0:
            self.net4d = build_backbone(BackboneConfig(self.preset4d, model.in_channels, model.backend), ndim=4)
            self.proj4d = nn.Linear(self.net4d.out_channels, cfg.proj_dim)
            self.pred4d = PointMLP(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim, num_layers=2, norm="bn")

    def backbone(self) -> nn.Module:
        return self.net3d

    def encode(self, batch: ViewBatch) -> Encoded:
        """Projections ``z`` and predictions ``p`` of every 3D view (one joint pass) and of the 4D view."""
        views3 = batch.views[:-1]
        z3 = self.proj3d(self.net3d(concat_batches(views3)))
        p3 = self.pred3d(z3)
        sizes = [len(v) for v in views3]
        enc = Encoded(list(z3.split(sizes)), list(p3.split(sizes)))
        if self.net4d is not None:
            assert self.proj4d is not None and self.pred4d is not None  # built together with net4d
            enc.z4 = self.proj4d(self.net4d(batch.views[-1]))
            enc.p4 = self.pred4d(enc.z4)
        return enc

    def forward(self, batch: ViewBatch) -> dict[str, torch.Tensor]:
        enc = self.encode(batch)
        c = self.cfg
        terms = sequence_losses(enc, batch.pair_matches, (c.w3d, c.w3d4d, c.w4d), c.reduction)
        weights = {"loss3d": c.w3d, "loss3d4d": c.w3d4d, "loss4d": c.w4d}
        loss = sum(weights[k] * v for k, v in terms.items() if k in weights)
        assert isinstance(loss, torch.Tensor)  # w3d + w3d4d > 0 (config check): at least one term
        logs = {k: v.detach() for k, v in terms.items()}
        logs["feat_std3d"] = feature_spread(torch.cat(enc.z3))
        if enc.z4 is not None:
            logs["feat_std4d"] = feature_spread(enc.z4)
        return {"loss": loss, **logs}

    def exports(self) -> dict[str, Export]:
        out = super().exports()
        if self.net4d is not None:
            record = spunet_record(self.net4d, self.preset4d, list(getattr(self.data_cfg, "feat_keys", [])),
                                   getattr(self.data_cfg, "grid_size_4d", None),
                                   extra={"time_coordinate": "frame index, one voxel per frame"})
            out["backbone4d"] = Export(self.net4d, record, pointcept=False)
        return out


def sequence_collate(cfg: SequenceDataConfig) -> Callable[[list[MultiView]], ViewBatch]:
    """``list[MultiView] -> ViewBatch`` with the configured input features (picklable)."""
    return functools.partial(collate_views, feat_keys=tuple(cfg.feat_keys))


SPEC = MethodSpec(
    config_cls=FourDContrastConfig, method_cls=FourDContrast,
    build_dataset=build_sequence_dataset, build_collate=sequence_collate,
    model_config_cls=BackboneConfig, data_config_cls=SequenceDataConfig,
    description="4DContrast: SimSiam over 3D-3D, 3D-4D and 4D-4D matches of scene-object sequences",
    smoke={"model": {"preset": "spunet-tiny", "in_channels": 1},
           "data": {"grid_size": 0.15, "grid_size_4d": 0.3, "scene_grid_size": 0.1, "min_object_points": 10,
                    "max_points": 2000,
                    "sequence": {"num_frames": 2, "cell_size": 0.2, "object_points": 100}},
           "method": {"proj_dim": 16, "pred_hidden": 8, "preset4d": "spunet-tiny"}},
    smoke_data=smoke_scenes,
    data_kind="scenes",
)
