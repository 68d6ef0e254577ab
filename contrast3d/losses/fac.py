"""FAC losses (Liu et al., CVPR 2023, §3.2-3.3): regional sampling, L_Geo and L_Fea.

Regions ``s_i`` come from an over-segmentation of view ``a`` (ids unique across the batch,
``-1`` = no region). Their ids are carried to view ``b`` through the matches
(:func:`carry_regions`), so the view-``b`` points of a region are the points whose carried id equals it.

* **Regional sampling** (§3.2). Per scene, ``n_i`` = number of points of region ``i``;
  ``s_med`` = the median region size, taken over *all* regions of the scene as the paper
  ranks all of them (the *lower* median for an even count, so ``s_med`` is the size of an
  actual region, "the region having the median number of points"). The ``H`` regions with the
  smallest ``|n_i - s_med|`` are kept (the median region itself included); ``min_size`` is an
  extra filter (default 1 = off): regions smaller than it are never kept but still count for the
  median. Ties in ``|n_i - s_med|`` are broken by a uniformly random priority drawn from
  ``generator`` (one ``randperm`` over the batch's regions in id order), so a seeded generator
  gives the same regions for the same input. ``all_regions=True`` keeps every region of at least
  ``min_size`` points (the "no sampling" ablation of Table 5).
* **Anchors** (Eq. 2): ``D_m = normalize(mean_{j in s_m} normalize(d_j))`` over the region's
  view-``a`` points; features are L2-normalised before the mean (every point weighs the same in
  a cosine space) and the mean is normalised again, so ``D_m . d`` is a cosine similarity.
* **Pairs** (Eq. 3). For ``A`` anchors, ``k = max(1, num_pairs // A)`` with ``num_pairs`` = 4096,
  the paper's total of positive/negative pairs per batch, split evenly across anchors. The ``k``
  positives of anchor ``m`` are view-``b`` points of region ``m``, drawn without replacement (cycled
  when the region has fewer than ``k`` view-``b`` points); the ``k`` negatives are view-``b`` points of
  the *other sampled* regions of the same scene, drawn uniformly with replacement. Anchors with no
  view-``b`` point, or no other sampled region with view-``b`` points in their scene, are dropped.
* **InfoNCE** (Eqs. 3 and 5). Eq. 3 writes the denominator over the negatives only; it is read
  as standard InfoNCE with the positive in the denominator (as Eq. 1 / PointContrast do): for
  anchor ``q``, positive ``p_i`` (``i = 1..k``) and negatives ``n_1..n_k``

      ``l_i = -log( exp(q.p_i / tau) / (exp(q.p_i / tau) + sum_j exp(q.n_j / tau)) )``

  and the loss is the mean of ``l_i`` over all ``A * k`` positive pairs; ``tau`` = 0.1.
* **L_Fea** (§3.3) uses the enhanced features ``F`` of the Siamese correspondence network
  (:mod:`contrast3d.models.scn`): anchor ``F_m`` as above over view ``a``; ``S_{m,j} = cos(F_m, f^b_j)``
  against every view-``b`` point ``j`` of the anchor's scene (Eq. 4); positives = the ``k`` points with
  the largest ``S_{m,j}`` (``positives="topk"``, default). The selection is made without gradient;
  gradients flow through the similarities of the chosen pairs. ``positives="sinkhorn"`` follows the
  paper's remark that top-k can be posed as optimal transport: an entropic OT plan between the
  ``A_s`` anchors of a scene (mass ``k`` each), one dummy target (mass ``N_s - A_s k``, cost 0; a
  constant dummy cost does not change the plan) and the ``N_s`` view-``b`` points (mass 1 each) with
  cost ``1 - S``, ``sinkhorn_iters`` (10) log-domain Sinkhorn iterations at ``sinkhorn_eps`` (0.05); the ``k``
  points with the largest plan mass are each anchor's positives. With one anchor this equals plain
  top-k; with several, anchors compete for points (a point cannot be everyone's positive). If
  ``N_s < A_s k`` the anchors share the ``N_s`` points equally and there is no dummy. The negatives
  are the same sampled points of other regions as for L_Geo (``RegionPairs.neg``); a negative
  that is also one of the anchor's top-k positives is left out of that anchor's denominator
  (``exclude_positives=True``), since a pair cannot be both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _lexsort(keys: list[torch.Tensor]) -> torch.Tensor:
    """Permutation sorting by ``keys[0]``, then ``keys[1]``, ... (stable sorts, no key overflow)."""
    idx = torch.arange(keys[0].shape[0], device=keys[0].device)
    for key in reversed(keys):
        idx = idx[torch.sort(key[idx], stable=True).indices]
    return idx


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform ``[0, 1)`` float64 numbers drawn on the generator's device, moved to ``device``."""
    gdev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gdev, dtype=torch.float64).to(device)


def _scene_of(ids: torch.Tensor, batch: torch.Tensor, num: int) -> torch.Tensor:
    """``(num,)`` scene of every group ``ids`` (``-1`` if empty); raises if a group spans scenes."""
    lo = torch.full((num,), -1, dtype=torch.long, device=batch.device).scatter_reduce(
        0, ids, batch, "amin", include_self=False)
    hi = torch.full((num,), -1, dtype=torch.long, device=batch.device).scatter_reduce(
        0, ids, batch, "amax", include_self=False)
    if bool((lo != hi).any()):
        raise ValueError("region ids must be unique across the batch: a region has points in two scenes")
    return lo


def _lookup(region: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points whose id is in ``regions``: ``(point_index (P,), position in regions (P,))``."""
    if regions.numel() == 0:
        empty = region.new_zeros(0)
        return empty, empty
    sorted_ids, order = torch.sort(regions)
    if bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
        raise ValueError("regions must not contain duplicate ids")
    pos = torch.searchsorted(sorted_ids, region).clamp_max(regions.numel() - 1)
    hit = (region >= 0) & (sorted_ids[pos] == region)
    points = hit.nonzero().squeeze(1)
    return points, order[pos[points]]


def carry_regions(region_a: torch.Tensor, matches: torch.Tensor, num_b: int) -> torch.Tensor:
    """``(num_b,)`` region id of every view-``b`` point through the matches (``-1`` = unmatched).

    Args:
        region_a: ``(N_a,)`` int64 region ids of view ``a``.
        matches: ``(M, 2)`` int64 ``(view-a index, view-b index)`` pairs (e.g. ``PairBatch.matches``).
        num_b: number of view-``b`` points. A view-``b`` point matched to several regions takes the largest id
            (deterministic).
    """
    out = torch.full((num_b,), -1, dtype=torch.long, device=region_a.device)
    return out.scatter_reduce(0, matches[:, 1], region_a[matches[:, 0]].long(), "amax")


def regional_sampling(region: torch.Tensor, batch: torch.Tensor, num_regions: int = 20, min_size: int = 1,
                      generator: torch.Generator | None = None, all_regions: bool = False) -> torch.Tensor:
    """Region ids kept by FAC's regional sampling (the ``num_regions`` closest to the median size).

    Args:
        region: ``(N,)`` int64 region id of every point, unique across the batch; ``-1`` = none.
        batch: ``(N,)`` int64 scene index of every point.
        num_regions: ``H``, regions kept per scene (paper: 20); all eligible if fewer.
        min_size: regions with fewer points are never kept (they still count for the median).
        generator: source of the random tie-break priority (see module docstring).
        all_regions: keep every region with at least ``min_size`` points (ablation).

    Returns:
        ``(R,)`` int64 kept region ids, sorted by scene, then by id.
    """
    if region.dim() != 1 or region.shape != batch.shape:
        raise ValueError(f"region and batch must both be (N,); got {tuple(region.shape)} and {tuple(batch.shape)}")
    valid = region >= 0
    ids, inverse, counts = torch.unique(region[valid], return_inverse=True, return_counts=True)
    if ids.numel() == 0:
        return region.new_zeros(0)
    scene = _scene_of(inverse, batch[valid].long(), ids.numel())
    num_scenes = int(scene.max()) + 1
    eligible = counts >= min_size
    if all_regions:
        keep = eligible
    else:
        order = _lexsort([scene, counts])                       # regions by scene, then size
        per_scene = torch.bincount(scene, minlength=num_scenes)
        start = torch.cumsum(per_scene, 0) - per_scene
        median = torch.zeros_like(per_scene)
        has = per_scene > 0
        median[has] = counts[order[start[has] + (per_scene[has] - 1) // 2]]   # lower median
        dist = (counts - median[scene]).abs()
        gdev = generator.device if generator is not None else ids.device
        priority = torch.randperm(ids.numel(), generator=generator, device=gdev).to(ids.device)
        cand = eligible.nonzero().squeeze(1)
        ranked = cand[_lexsort([scene[cand], dist[cand], priority[cand]])]
        n_el = torch.bincount(scene[ranked], minlength=num_scenes)
        rank = torch.arange(ranked.numel(), device=ids.device) - (torch.cumsum(n_el, 0) - n_el)[scene[ranked]]
        keep = torch.zeros_like(eligible)
        keep[ranked[rank < num_regions]] = True
    kept, kept_scene = ids[keep], scene[keep]
    return kept[torch.sort(kept_scene, stable=True).indices]   # ids are ascending within each scene


@dataclass
class RegionPairs:
    """Anchors and their sampled keys (indices into view ``b``'s points).

    Attributes:
        regions: ``(A,)`` int64 region id of each anchor (a subset of the sampled regions, in their order).
        scene: ``(A,)`` int64 scene index of each anchor.
        pos: ``(A, k)`` int64 view-``b`` points of the anchor's region (L_Geo positives).
        neg: ``(A, k)`` int64 view-``b`` points of other sampled regions of the same scene.
    """

    regions: torch.Tensor
    scene: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.pos.shape[1])

    def __len__(self) -> int:
        return int(self.regions.shape[0])


def sample_region_pairs(region_b: torch.Tensor, batch_b: torch.Tensor, regions: torch.Tensor,
                        num_pairs: int = 4096, k: int | None = None,
                        generator: torch.Generator | None = None) -> RegionPairs:
    """Draw ``k`` positive and ``k`` negative view-``b`` points per sampled region (vectorised).

    Args:
        region_b: ``(N_b,)`` int64 region id carried to each view-``b`` point (``-1`` = none).
        batch_b: ``(N_b,)`` int64 scene index of each view-``b`` point.
        regions: ``(R,)`` int64 sampled region ids (from :func:`regional_sampling`), no duplicates.
        num_pairs: total positive (and negative) pairs per batch; ``k = max(1, num_pairs // A)``.
        k: keys per anchor, overriding ``num_pairs``.
        generator: random source (positives' order, negatives).
    """
    dev = region_b.device
    num = regions.numel()
    points, anchor = _lookup(region_b, regions)
    scene_pt = batch_b[points].long()
    count = torch.bincount(anchor, minlength=num)
    scene_r = _scene_of(anchor, scene_pt, num)
    num_scenes = int(batch_b.max()) + 1 if batch_b.numel() else 1
    perm = _lexsort([scene_pt, anchor, _rand((points.numel(),), generator, dev)])
    pool, pool_anchor, pool_scene = points[perm], anchor[perm], scene_pt[perm]
    block = torch.zeros(num, dtype=torch.long, device=dev).scatter_reduce(
        0, pool_anchor, torch.arange(pool.numel(), device=dev), "amin", include_self=False)
    n_scene = torch.bincount(pool_scene, minlength=num_scenes)
    s_start = torch.cumsum(n_scene, 0) - n_scene
    n_neg = n_scene[scene_r.clamp_min(0)] - count
    a = ((count > 0) & (n_neg > 0)).nonzero().squeeze(1)
    if k is None:
        k = max(1, num_pairs // max(1, a.numel()))
    i = torch.arange(k, device=dev)
    pos = pool[block[a, None] + i[None] % count[a, None]]
    u = (_rand((a.numel(), k), generator, dev) * n_neg[a, None]).long().clamp_max(n_neg[a, None] - 1)
    own = block[a] - s_start[scene_r[a]]               # where the anchor's own block starts in its scene pool
    u = u + (u >= own[:, None]).long() * count[a, None]
    neg = pool[s_start[scene_r[a]][:, None] + u]
    return RegionPairs(regions=regions[a], scene=scene_r[a], pos=pos, neg=neg)


def region_means(feat: torch.Tensor, region: torch.Tensor, regions: torch.Tensor,
                 normalize: bool = True) -> torch.Tensor:
    """``(A, C)`` mean feature of the points of each region in ``regions`` (Eq. 2).

    With ``normalize`` the point features are L2-normalised first and the mean again after.
    A region without points gives a zero row.
    """
    points, anchor = _lookup(region, regions)
    rows = F.normalize(feat[points], dim=1) if normalize else feat[points]   # only the regions' points
    sums = feat.new_zeros(regions.numel(), feat.shape[1]).index_add(0, anchor, rows)
    mean = sums / torch.bincount(anchor, minlength=regions.numel()).clamp_min(1).to(feat.dtype)[:, None]
    return F.normalize(mean, dim=1) if normalize else mean


def region_info_nce(anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, tau: float = 0.1,
                    neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE with ``k`` positives and ``q`` negatives per anchor (positive in the denominator).

    Args:
        anchor: ``(A, C)``; pos: ``(A, k, C)``; neg: ``(A, q, C)`` (normalise them for cosines).
        neg_mask: optional ``(A, q)`` bool, ``False`` = leave that negative out.

    Returns:
        Scalar mean over the ``A * k`` positive pairs; ``0`` (with grad) when there are none.
    """
    if pos.numel() == 0:
        return (anchor.sum() + pos.sum() + neg.sum()) * 0.0
    s_pos = torch.einsum("ac,akc->ak", anchor, pos) / tau
    s_neg = torch.einsum("ac,aqc->aq", anchor, neg) / tau
    if neg_mask is not None:
        s_neg = s_neg.masked_fill(~neg_mask, float("-inf"))
    neg_lse = torch.logsumexp(s_neg, dim=1, keepdim=True) if s_neg.shape[1] else torch.full_like(
        s_pos[:, :1], float("-inf"))
    return (torch.logaddexp(s_pos, neg_lse) - s_pos).mean()


def geo_loss(feat_a: torch.Tensor, feat_b: torch.Tensor, region_a: torch.Tensor, pairs: RegionPairs,
             tau: float = 0.1, normalize: bool = True) -> torch.Tensor:
    """L_Geo (Eq. 3): region-mean anchors of view ``a`` against in-region / other-region view-``b`` points.

    Args:
        feat_a: ``(N_a, C)`` backbone features of view ``a``; feat_b: ``(N_b, C)`` of view ``b``.
        region_a: ``(N_a,)`` region id of each view-``a`` point.
        pairs: from :func:`sample_region_pairs`.
    """
    anchor = region_means(feat_a, region_a, pairs.regions, normalize)
    pos, neg = feat_b[pairs.pos], feat_b[pairs.neg]
    if normalize:
        pos, neg = F.normalize(pos, dim=-1), F.normalize(neg, dim=-1)
    return region_info_nce(anchor, pos, neg, tau)


def sinkhorn_plan(sim: torch.Tensor, k: int, iters: int = 10, eps: float = 0.05) -> torch.Tensor:
    """``(A, N)`` entropic OT plan of ``A`` anchors (mass ``k`` each) to ``N`` points (mass 1 each).

    A dummy target of mass ``N - A k`` and cost 0 takes the rest (dropped if ``N <= A k``; the
    anchors then get ``N / A`` each). Cost ``1 - sim``; log-domain Sinkhorn, column update last.
    """
    n_anchor, n_pts = sim.shape
    log_k = -(1.0 - sim) / eps
    rest = n_pts - n_anchor * k
    mass = float(k) if rest > 0 else n_pts / n_anchor
    log_a = sim.new_full((n_anchor,), math.log(mass))
    if rest > 0:
        log_k = torch.cat([log_k, log_k.new_zeros(1, n_pts)], 0)
        log_a = torch.cat([log_a, log_a.new_tensor([math.log(rest)])])
    f, g = log_a.new_zeros(log_a.shape[0]), sim.new_zeros(n_pts)
    for _ in range(iters):
        f = log_a - torch.logsumexp(log_k + g[None, :], dim=1)
        g = -torch.logsumexp(log_k + f[:, None], dim=0)
    return torch.exp(log_k + f[:, None] + g[None, :])[:n_anchor]


@torch.no_grad()
def select_positives(anchor: torch.Tensor, feat_b: torch.Tensor, batch_b: torch.Tensor, scene: torch.Tensor,
                     k: int, method: Literal["topk", "sinkhorn"] = "topk", sinkhorn_iters: int = 10,
                     sinkhorn_eps: float = 0.05) -> torch.Tensor:
    """``(A, k)`` int64 view-``b`` points most similar (cosine) to each anchor, within its scene (Eq. 4).

    Args:
        anchor: ``(A, C)`` anchors; feat_b: ``(N_b, C)``; batch_b: ``(N_b,)`` scene of each view-``b`` point;
        scene: ``(A,)`` scene of each anchor. A scene with fewer than ``k`` points repeats its ranking.
        method: ``topk`` on the similarities or on the Sinkhorn plan (module docstring).
    """
    out = torch.zeros(anchor.shape[0], k, dtype=torch.long, device=anchor.device)
    if anchor.shape[0] == 0:
        return out
    anchor, feat_b = F.normalize(anchor, dim=1), F.normalize(feat_b, dim=1)
    order = torch.sort(batch_b, stable=True).indices
    counts = torch.bincount(batch_b, minlength=int(scene.max()) + 1)
    ends = torch.cumsum(counts, 0).tolist()
    for s in torch.unique(scene).tolist():
        rows = (scene == s).nonzero().squeeze(1)
        pts = order[ends[s] - int(counts[s]):ends[s]]
        if pts.numel() == 0:
            raise ValueError(f"scene {s} has anchors but no view-b points")
        score = anchor[rows] @ feat_b[pts].t()
        if method == "sinkhorn":
            score = sinkhorn_plan(score, k, sinkhorn_iters, sinkhorn_eps)
        elif method != "topk":
            raise ValueError(f"unknown positive selection {method!r}")
        top = score.topk(min(k, pts.numel()), dim=1).indices
        out[rows] = pts[top[:, torch.arange(k, device=top.device) % top.shape[1]]]
    return out


def fea_loss(feat_a: torch.Tensor, feat_b: torch.Tensor, region_a: torch.Tensor, batch_b: torch.Tensor,
             pairs: RegionPairs, tau: float = 0.1, positives: Literal["topk", "sinkhorn"] = "topk",
             sinkhorn_iters: int = 10, sinkhorn_eps: float = 0.05, exclude_positives: bool = True,
             pos: torch.Tensor | None = None) -> torch.Tensor:
    """L_Fea (Eq. 5): region-mean anchors of enhanced view-``a`` features vs top-k view-``b`` points.

    Args:
        feat_a: ``(N_a, C)`` enhanced features ``F^a``; feat_b: ``(N_b, C)`` ``F^b``.
        region_a: ``(N_a,)`` region ids of view ``a``; batch_b: ``(N_b,)`` scene of each view-``b`` point.
        pairs: anchors and negatives from :func:`sample_region_pairs` (``pairs.pos`` is not used).
        positives: ``topk`` (default) or ``sinkhorn`` selection; pos: precomputed ``(A, k)`` positives.
        exclude_positives: leave negatives that are also the anchor's positives out of its denominator.
    """
    anchor = region_means(feat_a, region_a, pairs.regions, normalize=True)
    if pos is None:
        pos = select_positives(anchor, feat_b, batch_b, pairs.scene, pairs.k, positives, sinkhorn_iters,
                               sinkhorn_eps)
    mask = (pairs.neg[:, :, None] != pos[:, None, :]).all(2) if exclude_positives else None
    return region_info_nce(anchor, F.normalize(feat_b[pos], dim=-1), F.normalize(feat_b[pairs.neg], dim=-1),
                           tau, mask)


class GeoLoss(nn.Module):
    """Module form of :func:`geo_loss` (``tau`` 0.1 as in the paper)."""

    def __init__(self, tau: float = 0.1, normalize: bool = True):
        super().__init__()
        self.tau, self.normalize = tau, normalize

    def forward(self, feat_a: torch.Tensor, feat_b: torch.Tensor, region_a: torch.Tensor,
                pairs: RegionPairs) -> torch.Tensor:
        return geo_loss(feat_a, feat_b, region_a, pairs, self.tau, self.normalize)


class FeaLoss(nn.Module):
    """Module form of :func:`fea_loss` (``tau`` 0.1, plain top-k positives by default)."""

    def __init__(self, tau: float = 0.1, positives: Literal["topk", "sinkhorn"] = "topk", sinkhorn_iters: int = 10,
                 sinkhorn_eps: float = 0.05, exclude_positives: bool = True):
        super().__init__()
        self.tau, self.positives, self.exclude_positives = tau, positives, exclude_positives
        self.sinkhorn_iters, self.sinkhorn_eps = sinkhorn_iters, sinkhorn_eps

    def forward(self, feat_a: torch.Tensor, feat_b: torch.Tensor, region_a: torch.Tensor, batch_b: torch.Tensor,
                pairs: RegionPairs) -> torch.Tensor:
        return fea_loss(feat_a, feat_b, region_a, batch_b, pairs, self.tau, self.positives, self.sinkhorn_iters,
                        self.sinkhorn_eps, self.exclude_positives)
