"""GroupContrast (Wang et al., CVPR 2024) building blocks: segment grouping and semantic-aware contrast.

Notation (paper §3.2-3.3): ``P`` segments, ``n`` prototypes (32), feature dimension ``D``.

**Segment features.** ``z = segment_mean(normalize(g(x)), segment)``: the mean of the
L2-normalised projector features of the points of each segment (:func:`segment_mean`). Segment
ids must be unique over the whole batch (the method offsets them per scene) and the same id must
denote the same segment in both views (segments are computed once on the overlap); to keep only
the segments seen in both views, set the others to ``-1`` before pooling (:func:`common_segments`;
both views then give the same sorted ``ids``).

**Assignments (Eq. 1).** With ``z`` and the prototypes ``S`` both L2-normalised (cosine logits
``z S^T``, :func:`prototype_logits`)::

    Q = softmax(z_q S_s^T / tau_s)                  student, tau_s = 0.1
    K = softmax((z_k S_t^T - c) / tau_t)            teacher, tau_t = 0.07, no gradient

The paper writes ``z_k (S_t - c)^T``, but by Eq. 3 ``c`` is the running mean of ``z_k S_t^T``, an
``n``-vector of *logits*, so ``S_t - c`` (an ``(n, D)`` matrix minus an ``n``-vector) only makes
sense as a bias subtracted from the teacher logits, exactly DINO's centring; that is what
:func:`teacher_assignment` does. An optional linear teacher-temperature warm-up from 0.04 (DINO)
is :func:`teacher_temperature`; it is off by default (the paper uses a fixed 0.07, Table 1e).

**Centre (Eq. 3).** ``c <- m c + (1 - m) mean_i(z_k[i] S_t^T)`` over the segments of *all*
processes (:func:`update_center`). The paper does not give ``lambda_c``; the default is DINO's 0.9.
The mean is global: the per-process logit sums *and* segment counts are summed across processes
and divided, which is right when processes hold different numbers of segments, and reduces to the
local mean with one process. The method computes ``K`` with the old centre, then updates it.

**Grouping loss (Eq. 4).** ``L_group = -(1 / sum_i H_i) sum_i H_i K_i . log Q_i`` with the entropy
``H_i = -sum_j K_ij log K_ij`` of the teacher assignment (the informative weight; detached, as all
of ``K``). Segments are weighted by ``H_i`` only, not by their point count. With
``informative=False`` every ``H_i = 1``: Eq. 2, the plain mean cross-entropy over segments.

**Group labels (Eq. 5).** ``argmax_n K`` per segment, then per point through its segment
(:func:`group_labels`).

**Semantic-aware contrast (Eq. 6-8).** Sampled points ``i`` of view 1 (student predictor features
``v_q``) and ``j`` of view 2 (teacher features ``v_k``), both L2-normalised. Positives
``P = {(i, j): Y_i = Y_j}`` (cross-view, same group label; points without a label (-1) are never
positives). Read literally, Eq. 8 gives each positive pair its own InfoNCE term whose denominator
is that positive plus the anchor's *negatives* (``(i, k) not in P``; the anchor's other positives
are left out of the denominator)::

    L_con = (1/|P|) sum_{(i,j) in P} -C_ij log( e^{s_ij} / (e^{s_ij} + sum_{k: (i,k) not in P} e^{s_ik}) ),
    s_ij = v_q^i . v_k^j / tau,   tau = 0.4,   C_ij = K[s_i, k] * K[s_j, k],  k = Y_i = Y_j

normalised by the *number* of positive pairs (not by ``sum C``), so low confidence also lowers the
loss scale, as written. ``C`` comes from the teacher and is detached; the teacher features ``v_k``
are detached too. Ablations: ``confidence=False`` sets ``C = 1``; ``positives="matched"`` uses the
one matched point per anchor as its positive and every other key as a negative (PointInfoNCE, the
"Matched Points" row of Table 1a), with ``k`` the anchor's group label for the confidence.
Optional scene ids restrict positives and negatives to pairs of the same scene (the paper samples
2048 points per scene, :func:`sample_per_scene`). The loss is one-directional (view-1 student
anchors, view-2 teacher keys); a method that wants symmetry calls it twice with the views swapped.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

AllReduce = Callable[[torch.Tensor], "torch.Tensor | None"]  #: sums a tensor over processes


@dataclass
class GroupContrastLossConfig:
    """Loss hyper-parameters of GroupContrast (defaults from the paper unless noted)."""

    num_prototypes: int = 32          #: n (Table 1b)
    tau_s: float = 0.1                #: student temperature
    tau_t: float = 0.07               #: teacher temperature (Table 1e)
    tau_t_warmup_from: float = 0.04   #: start of the optional teacher-temperature warm-up (DINO)
    tau_t_warmup_steps: int = 0       #: 0 = no warm-up (paper default)
    center_momentum: float = 0.9      #: lambda_c (not in the paper; DINO's value)
    informative: bool = True          #: entropy-weighted grouping loss (Eq. 4) vs Eq. 2 (Table 1d)
    tau: float = 0.4                  #: contrastive temperature (Eq. 8)
    confidence: bool = True           #: confidence weights C_ij (Table 1g)
    positives: Literal["group", "matched"] = "group"   #: Table 1a
    num_samples: int = 2048           #: sampled points per scene (Table 1c)
    lambda_group: float = 1.0         #: Eq. 9
    lambda_con: float = 1.0           #: Eq. 9


# --------------------------------------------------------------------------- segments


def segment_mean(feat: torch.Tensor, segment: torch.Tensor, num_segments: int | None = None,
                 normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every segment (vectorised ``index_add``).

    Args:
        feat: ``(N, C)`` point features.
        segment: ``(N,)`` long segment id per point, ``-1`` = no segment (ignored).
        num_segments: ``None`` -> ids are remapped densely: row ``r`` is segment ``ids[r]``, with
            ``ids`` the sorted unique non-negative ids. An int ``S`` -> ids are row indices
            (``0 <= id < S``), ``ids = arange(S)`` and rows of empty segments are zero.
        normalize: L2-normalise the point features before averaging (GroupContrast does).

    Returns:
        ``(mean (S, C), ids (S,) long)``; the mean is differentiable w.r.t. ``feat``.
    """
    if feat.dim() != 2 or segment.shape != (feat.shape[0],):
        raise ValueError(f"need feat (N, C) and segment (N,), got {tuple(feat.shape)} and {tuple(segment.shape)}")
    segment = segment.long()
    valid = segment >= 0
    seg = segment[valid]
    if num_segments is None:
        ids, row = torch.unique(seg, sorted=True, return_inverse=True)
    else:
        if seg.numel() and int(seg.max()) >= num_segments:
            raise ValueError(f"segment id {int(seg.max())} >= num_segments={num_segments}")
        ids, row = torch.arange(num_segments, device=segment.device), seg
    x = feat[valid]
    if normalize:
        x = F.normalize(x, dim=1)
    sums = x.new_zeros(ids.numel(), feat.shape[1]).index_add(0, row, x)
    counts = torch.bincount(row, minlength=ids.numel()).clamp_min(1).to(x.dtype)
    return sums / counts[:, None], ids


def common_segments(seg_a: torch.Tensor, seg_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Set to ``-1`` the segment ids of each view that the other view does not contain.

    Args:
        seg_a, seg_b: ``(N_a,)`` / ``(N_b,)`` long segment ids of the points of the two views (-1 = none).
    Returns:
        The two masked copies; :func:`segment_mean` then gives both views the same sorted ``ids``.
    """
    seg_a, seg_b = seg_a.long(), seg_b.long()
    keep_a = (seg_a >= 0) & torch.isin(seg_a, seg_b)
    keep_b = (seg_b >= 0) & torch.isin(seg_b, seg_a)
    return torch.where(keep_a, seg_a, -1), torch.where(keep_b, seg_b, -1)


def segment_index(segment: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Row of each point's segment in ``ids`` (sorted, from :func:`segment_mean`), ``-1`` if absent.

    Args:
        segment: ``(N,)`` long segment ids (``-1`` = none).
        ids: ``(S,)`` sorted unique segment ids.
    Returns:
        ``(N,)`` long in ``[-1, S)``.
    """
    segment = segment.long()
    if ids.numel() == 0:
        return torch.full_like(segment, -1)
    pos = torch.searchsorted(ids, segment).clamp_max(ids.numel() - 1)
    found = (segment >= 0) & (ids[pos] == segment)
    return torch.where(found, pos, torch.full_like(pos, -1))


def sample_per_scene(scene: torch.Tensor, num: int = 2048, generator: torch.Generator | None = None) -> torch.Tensor:
    """Up to ``num`` random candidates per scene, without replacement.

    Args:
        scene: ``(M,)`` long scene index of every candidate (e.g. the overlap points or matches).
        num: samples per scene (GroupContrast: 2048); scenes with fewer keep all.
    Returns:
        ``(K,)`` long indices into the ``M`` candidates, grouped by scene.
    """
    scene = scene.long()
    rand = torch.rand(scene.shape[0], generator=generator).to(scene.device)
    order = torch.argsort(rand)
    order = order[torch.argsort(scene[order], stable=True)]
    sorted_scene = scene[order]
    first = torch.searchsorted(sorted_scene, sorted_scene)  # start of each scene's run
    rank = torch.arange(scene.shape[0], device=scene.device) - first
    return order[rank < num]


# --------------------------------------------------------------------------- assignments


def prototype_logits(z: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine logits ``normalize(z) normalize(S)^T``: ``(P, D), (n, D) -> (P, n)``."""
    return F.normalize(z, dim=1) @ F.normalize(prototypes, dim=1).t()


def student_assignment(logits: torch.Tensor, tau_s: float = 0.1) -> torch.Tensor:
    """``Q = softmax(logits / tau_s)`` over the ``n`` prototypes: ``(P, n) -> (P, n)``."""
    return torch.softmax(logits / tau_s, dim=1)


def teacher_assignment(logits: torch.Tensor, center: torch.Tensor | None = None, tau_t: float = 0.07) -> torch.Tensor:
    """``K = softmax((logits - c) / tau_t)``, detached (the teacher target; centring is a logit bias).

    Args:
        logits: ``(P, n)`` teacher cosine logits ``z_k S_t^T``.
        center: ``(n,)`` centre ``c`` (``None`` = no centring).
    Returns:
        ``(P, n)`` rows summing to 1, no gradient.
    """
    logits = logits.detach()
    if center is not None:
        logits = logits - center.detach().to(logits.dtype)
    return torch.softmax(logits / tau_t, dim=1)


def teacher_temperature(step: int, tau_t: float = 0.07, warmup_from: float = 0.04, warmup_steps: int = 0) -> float:
    """Teacher temperature at ``step``: linear from ``warmup_from`` to ``tau_t`` over ``warmup_steps``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return tau_t
    return warmup_from + (tau_t - warmup_from) * max(step, 0) / warmup_steps


def distributed_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum of ``t`` over the default process group (no-op without one); returns ``t``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9,
                  all_reduce: AllReduce | None = None) -> torch.Tensor:
    """Eq. 3: ``c <- m c + (1 - m) * (mean over the segments of all processes of the teacher logits)``.

    Args:
        center: ``(n,)`` current centre (not modified).
        teacher_logits: ``(P, n)`` uncentred teacher logits ``z_k S_t^T`` of this process (``P`` may
            differ between processes, and may be 0).
        momentum: ``lambda_c``.
        all_reduce: callable summing a tensor across processes (in place, or returning the sum),
            e.g. :func:`distributed_sum`. It is applied once to ``[sum of logits, P]`` so the
            mean is global. ``None``: the local mean.
    Returns:
        ``(n,)`` new centre (no gradient); ``center`` unchanged when no process has a segment.
    """
    if teacher_logits.dim() != 2 or teacher_logits.shape[1] != center.shape[0]:
        raise ValueError(f"teacher_logits must be (P, {center.shape[0]}), got {tuple(teacher_logits.shape)}")
    logits = teacher_logits.detach().to(center.dtype)
    buf = torch.cat([logits.sum(0), logits.new_tensor([float(logits.shape[0])])])
    if all_reduce is not None:
        out = all_reduce(buf)
        buf = buf if out is None or not isinstance(out, torch.Tensor) else out
    count = buf[-1]
    new = momentum * center.detach() + (1.0 - momentum) * buf[:-1] / count.clamp_min(1.0)
    return torch.where(count > 0, new, center.detach())  # no host sync


class TeacherCenter(nn.Module):
    """The centre ``c`` as a buffer (saved in checkpoints) with its EMA update (:func:`update_center`)."""

    center: torch.Tensor  # (num_prototypes,) buffer registered in __init__

    def __init__(self, num_prototypes: int = 32, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(num_prototypes))

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor, all_reduce: AllReduce | None = None) -> None:
        self.center.copy_(update_center(self.center, teacher_logits, self.momentum, all_reduce))


# --------------------------------------------------------------------------- losses


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Row entropies ``-sum p log p`` (natural log, ``0 log 0 = 0``): ``(P, n) -> (P,)``."""
    return -torch.special.xlogy(p, p).sum(dim=-1)


def grouping_loss(student_logits: torch.Tensor, teacher_assign: torch.Tensor, tau_s: float = 0.1,
                  informative: bool = True) -> torch.Tensor:
    """Informative-aware grouping loss, Eq. 4 (Eq. 2 with ``informative=False``).

    Args:
        student_logits: ``(P, n)`` student cosine logits ``z_q S_s^T`` (``log Q`` is computed as a
            ``log_softmax(logits / tau_s)`` for stability).
        teacher_assign: ``(P, n)`` teacher assignment ``K`` (target; detached here).
        tau_s: student temperature.
        informative: weight segment ``i`` by the entropy ``H_i`` of ``K_i`` and divide by ``sum H``.
    Returns:
        Scalar; ``0`` (with grad) for ``P == 0`` or when every ``H_i`` is 0.
    """
    if student_logits.shape != teacher_assign.shape or student_logits.dim() != 2:
        raise ValueError(f"need two (P, n) tensors, got {tuple(student_logits.shape)}, {tuple(teacher_assign.shape)}")
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    target = teacher_assign.detach().to(student_logits.dtype)
    ce = -(target * F.log_softmax(student_logits / tau_s, dim=1)).sum(dim=1)  # (P,)
    weight = _entropy(target) if informative else torch.ones_like(ce)
    return (weight * ce).sum() / weight.sum().clamp_min(1e-12)


def group_labels(teacher_assign: torch.Tensor, point_row: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5: ``argmax_n K`` per segment ``(P,)``, or per point with ``point_row`` ``(N,)`` (-1 -> -1)."""
    seg = teacher_assign.argmax(dim=1)
    if point_row is None:
        return seg
    point_row = point_row.long()
    return torch.where(point_row >= 0, seg[point_row.clamp_min(0)], torch.full_like(point_row, -1))


def semantic_contrast_loss(query: torch.Tensor, key: torch.Tensor, query_group: torch.Tensor,
                           key_group: torch.Tensor, query_assign: torch.Tensor | None = None,
                           key_assign: torch.Tensor | None = None, *, tau: float = 0.4, confidence: bool = True,
                           positives: Literal["group", "matched"] = "group", match: torch.Tensor | None = None,
                           query_scene: torch.Tensor | None = None, key_scene: torch.Tensor | None = None,
                           normalize: bool = True) -> torch.Tensor:
    """Confidence-weighted semantic-aware InfoNCE, Eq. 8 (see the module docstring).

    Args:
        query: ``(N, C)`` student predictor features ``v_q`` of the sampled view-1 points.
        key: ``(M, C)`` teacher features ``v_k`` of the sampled view-2 points (detached here).
        query_group, key_group: ``(N,)`` / ``(M,)`` long group labels (-1 = none).
        query_assign, key_assign: ``(N, n)`` / ``(M, n)`` teacher assignment row ``K[s_i]`` of each
            point's segment; needed when ``confidence``.
        tau: temperature dividing the cosine similarities.
        confidence: weight each positive pair by ``C_ij = K[s_i, k] K[s_j, k]``; else ``C = 1``.
        positives: ``"group"`` (same label) or ``"matched"`` (``match[i]`` is anchor ``i``'s only positive).
        match: ``(N,)`` long key index of each anchor's matched point (-1 = none); ``"matched"`` only.
        query_scene, key_scene: optional ``(N,)`` / ``(M,)`` scene ids; cross-scene pairs are ignored.
        normalize: L2-normalise the features (cosine similarity).
    Returns:
        Scalar; ``0`` (with grad) when there is no positive pair.
    """
    if query.dim() != 2 or key.dim() != 2 or query.shape[1] != key.shape[1]:
        raise ValueError(f"need query (N, C) and key (M, C), got {tuple(query.shape)} and {tuple(key.shape)}")
    n_q, n_k = query.shape[0], key.shape[0]
    if query_group.shape != (n_q,) or key_group.shape != (n_k,):
        raise ValueError("query_group must be (N,) and key_group (M,)")
    if positives not in ("group", "matched"):
        raise ValueError(f"positives must be 'group' or 'matched', got {positives!r}")
    if positives == "matched" and (match is None or match.shape != (n_q,)):
        raise ValueError("positives='matched' needs match (N,)")
    if confidence and (query_assign is None or key_assign is None):
        raise ValueError("confidence=True needs query_assign and key_assign")
    key = key.detach()
    if normalize:
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
    qg, kg = query_group.long(), key_group.long()
    # (the checks above make confidence imply both assignments, and "matched" imply match)
    qa = query_assign.detach() if confidence and query_assign is not None else None
    ka = key_assign.detach() if confidence and key_assign is not None else None
    m = match.long() if positives == "matched" and match is not None else None
    if query_scene is None or key_scene is None:
        total, count = _eq8_block(query, key, qg, kg, qa, ka, m, tau)
        return total / max(count, 1)
    # One block per scene: memory sum_s N_s M_s instead of N M, and no cross-scene pairs.
    query_scene, key_scene = query_scene.long(), key_scene.long()
    local_key = torch.full((n_k,), -1, dtype=torch.long, device=key.device)
    total, count = query.sum() * 0.0, 0
    for sid in torch.unique(query_scene):
        qi = torch.nonzero(query_scene == sid).squeeze(1)
        kj = torch.nonzero(key_scene == sid).squeeze(1)
        m_b = None
        if m is not None:  # global key index -> index within this scene's keys (-1 when elsewhere)
            local_key.fill_(-1)
            local_key[kj] = torch.arange(kj.numel(), device=key.device)
            m_q = m[qi]
            m_b = torch.where(m_q >= 0, local_key[m_q.clamp_min(0)], -1)
        t, c = _eq8_block(query[qi], key[kj], qg[qi], kg[kj], None if qa is None else qa[qi],
                          None if ka is None else ka[kj], m_b, tau)
        total, count = total + t, count + c
    return total / max(count, 1)


def _eq8_block(query: torch.Tensor, key: torch.Tensor, qg: torch.Tensor, kg: torch.Tensor,
               qa: torch.Tensor | None, ka: torch.Tensor | None, match: torch.Tensor | None,
               tau: float) -> tuple[torch.Tensor, int]:
    """Sum of the (confidence-weighted) Eq. 8 terms of one block and its number of positive pairs.

    ``match is None`` -> group positives; else ``match[i]`` is anchor ``i``'s only positive. ``qa``/``ka``
    (``None`` = no confidence) are the detached assignment rows; features are already normalised.
    """
    logits = query @ key.t() / tau  # (N, M) cosine similarities / tau
    if match is None:
        pos = (qg.view(-1, 1) == kg.view(1, -1)) & (qg.view(-1, 1) >= 0)
    else:
        has = match >= 0
        if qa is not None:
            has &= qg >= 0  # the confidence needs the anchor's group label
        rows = torch.nonzero(has).squeeze(1)
        pos = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        pos[rows, match[rows]] = True
    pi, pj = torch.nonzero(pos, as_tuple=True)
    if pi.numel() == 0:
        return logits.sum() * 0.0, 0
    neg = ~pos
    has_neg = neg.any(dim=1)
    # Rows without negatives get a finite dummy so logsumexp's backward stays NaN-free.
    dummy = torch.zeros_like(logits).masked_fill(has_neg[:, None], float("-inf"))
    neg_lse = torch.where(has_neg, torch.logsumexp(torch.where(neg, logits, dummy), dim=1), float("-inf"))
    # -log(e^s / (e^s + e^neg_lse)) = softplus(neg_lse - s)
    term = F.softplus(neg_lse[pi] - logits[pi, pj])
    if qa is not None and ka is not None:
        k = qg[pi]
        term = (qa[pi, k] * ka[pj, k]).to(term.dtype) * term  # C_ij = K[s_i, k] K[s_j, k]
    return term.sum(), pi.numel()


class GroupingLoss(nn.Module):
    """Module form of :func:`grouping_loss` (``tau_s`` 0.1, informative weights on)."""

    def __init__(self, tau_s: float = 0.1, informative: bool = True):
        super().__init__()
        self.tau_s = tau_s
        self.informative = informative

    def forward(self, student_logits: torch.Tensor, teacher_assign: torch.Tensor) -> torch.Tensor:
        return grouping_loss(student_logits, teacher_assign, self.tau_s, self.informative)


class SemanticContrastLoss(nn.Module):
    """Module form of :func:`semantic_contrast_loss` (``tau`` 0.4, confidence on, group positives)."""

    def __init__(self, tau: float = 0.4, confidence: bool = True, positives: Literal["group", "matched"] = "group"):
        super().__init__()
        self.tau = tau
        self.confidence = confidence
        self.positives = positives

    def forward(self, query: torch.Tensor, key: torch.Tensor, query_group: torch.Tensor, key_group: torch.Tensor,
                query_assign: torch.Tensor | None = None, key_assign: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        return semantic_contrast_loss(query, key, query_group, key_group, query_assign, key_assign, tau=self.tau,
                                      confidence=self.confidence, positives=self.positives, **kwargs)


# --------------------------------------------------------------------------- monitors


@torch.no_grad()
def collapse_stats(teacher_assign: torch.Tensor) -> dict[str, float]:
    """Collapse monitors of the teacher assignment ``K`` ``(P, n)``.

    Returns:
        ``mean_assign_entropy``: entropy (nats) of the mean assignment ``mean_i K_i`` -- ``log n``
        when prototypes are used evenly, 0 when one prototype takes everything (collapse);
        ``mean_assign_entropy_ratio``: the same divided by ``log n``;
        ``segment_entropy``: mean per-segment entropy ``mean_i H_i`` -- ``log n`` when every
        assignment is uniform (no sharpening), near 0 when sharp;
        ``used_prototypes``: number of prototypes that are the argmax of at least one segment.
    """
    k = teacher_assign.detach().double()
    n = k.shape[1]
    if k.shape[0] == 0:
        return {"mean_assign_entropy": float("nan"), "mean_assign_entropy_ratio": float("nan"),
                "segment_entropy": float("nan"), "used_prototypes": 0.0}
    mean_h = float(_entropy(k.mean(dim=0)))
    return {"mean_assign_entropy": mean_h,
            "mean_assign_entropy_ratio": mean_h / math.log(n) if n > 1 else float("nan"),
            "segment_entropy": float(_entropy(k).mean()),
            "used_prototypes": float(torch.unique(k.argmax(dim=1)).numel())}
