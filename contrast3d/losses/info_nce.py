"""PointInfoNCE (PointContrast §3.4): InfoNCE over matched point features.

For sampled matches ``(q_i, k_i)``, ``i = 1..M``, the loss is the mean over ``i`` of
``-log( exp(q_i·k_i / tau) / sum_{j in N(i)} exp(q_i·k_j / tau) )`` where ``N(i)`` holds the
positive ``i`` itself and the keys ``k_j`` of the other sampled matches (the negatives). Options
that shrink ``N(i)``:

* ``group``: only keys of the same group (e.g. the same scene) compete, the "negatives within
  each scene" variant.
* ``key_id`` (repeated keys as false negatives): two sampled matches may share their view-2
  point (nearest-neighbour matching maps several view-1 points onto one view-2 point). Key ``j``
  is then the very point that is query ``i``'s positive, yet it would count as a negative of
  ``i`` (and ``i`` of ``j``): an identical key in numerator and denominator puts a ``log 2``
  floor under the loss of both and cancels part of their gradient. With ``key_id`` given (the
  view-2 point index of each key), ``j`` is dropped from ``N(i)`` whenever
  ``key_id[j] == key_id[i]`` and ``j != i``. The official PointContrast code does not do this;
  :class:`~contrast3d.methods.pointcontrast.PointContrastConfig` switches it.

Negatives across DDP processes (``gather``): each process holds its own ``M_r`` matches. With
``gather=True`` every process all-gathers the (normalised) keys of all processes, so its queries
compete with ``sum_r M_r`` keys, as one process would on the concatenated batch. The gather is
differentiable in both directions: the local keys enter the gathered matrix as themselves (they
keep their autograd graph, as in lightly's ``gather_distributed``), and the gradients that the
other processes' losses put on this process's keys are summed back to it with one ``all_reduce``
in backward. (lightly keeps only the local gradient; under DDP's gradient averaging that drops
the terms ``dL_r / dk_s`` for ``r != s``, so the update differs from the single-process one.)
Labels are offset by the number of keys on lower ranks; ``group`` and ``key_id`` are compared
together with the rank, so ids from different processes never match. The local loss is
``(W / sum_r M_r) * sum_i loss_i``: DDP's mean over the ``W`` processes then gives exactly the mean
over all queries of the concatenated batch, also when the ``M_r`` differ. Every process must call
the loss (and its backward) in step, also with ``M_r = 0``. Without an initialised process group
(or with one process) ``gather=True`` changes nothing. The official code does not gather
(negatives are the matches of each GPU's own 4-scene batch).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

#: ``gather(tensor (M, ...)) -> (gathered (sum_r M_r, ...), first local row, sizes [M_0, ...])``.
Gather = Callable[[torch.Tensor], tuple[torch.Tensor, int, list[int]]]


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather_padded(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Rows of ``x`` from every process (``sizes[r]`` rows on rank ``r``), no autograd."""
    top = max(sizes)
    pad = x.new_zeros((top - x.shape[0], *x.shape[1:]))
    buf = torch.cat([x.detach(), pad]).contiguous()
    out = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(out, buf)
    return [o[:n] for o, n in zip(out, sizes)]


class _GatherRemote(torch.autograd.Function):
    """Forward: the rows of every process concatenated. Backward: the gradient of every copy is
    summed over the processes (``all_reduce``) and this process's block is returned."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat(_all_gather_padded(x, sizes))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int, list[int]]:
    """All-gather the rows of ``x`` (``(M_r, ...)``, sizes may differ per process) with gradient.

    Returns ``(gathered (sum_r M_r, ...), offset of this process's rows, [M_0, M_1, ...])``. The
    local rows are ``x`` itself (same autograd graph); gradients reaching the other processes'
    copies of ``x`` come back through one ``all_reduce`` in backward. Integer tensors are gathered
    without autograd. Without an initialised multi-process group: ``(x, 0, [M])``.
    """
    if not _dist_active():
        return x, 0, [x.shape[0]]
    world, rank = dist.get_world_size(), dist.get_rank()
    count = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.empty_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    start = sum(sizes[:rank])
    if not (x.requires_grad and x.is_floating_point()):
        return torch.cat(_all_gather_padded(x, sizes)), start, sizes
    full = _GatherRemote.apply(x, sizes, rank)
    # The local block is replaced by ``x`` itself: its gradient flows directly, and the zero
    # gradient left on the copy keeps the all_reduce sum to the other processes' contributions.
    return torch.cat([full[:start], x, full[start + x.shape[0]:]]), start, sizes


def matched_rows(feat1: torch.Tensor, feat2: torch.Tensor, matches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(feat1[matches[:, 0]], feat2[matches[:, 1]])``, each ``(M, C)``, gathered with ``index_select``.

    Matched rows repeat (a view-2 point matched by several view-1 points). The backward of advanced
    indexing with repeated indices sums their gradients in a thread-dependent order on CPU (measured: torch
    2.13, 2 threads, a 20k x 32 tensor and 4,096 rows with repeats gave differing gradients across 30
    repeats), which made multi-thread pre-training drift between identical runs; ``index_select``'s backward
    is bit-stable.
    """
    return feat1.index_select(0, matches[:, 0]), feat2.index_select(0, matches[:, 1])


def point_info_nce(query: torch.Tensor, key: torch.Tensor, tau: float = 0.4,
                   group: torch.Tensor | None = None, normalize: bool = True,
                   key_id: torch.Tensor | None = None, gather: bool | Gather = False) -> torch.Tensor:
    """PointInfoNCE loss.

    Args:
        query: ``(M, C)`` features of the matched points in view 1.
        key: ``(M, C)`` features of their matches in view 2 (row ``i`` matches row ``i``).
        tau: temperature.
        group: optional ``(M,)`` int group id (scene index) of each match; negatives are then
            restricted to keys of the same group.
        normalize: L2-normalise features first (cosine similarity), as PointContrast does.
        key_id: optional ``(M,)`` int id of each key's point (view-2 point index); a key with
            the same id as query ``i``'s positive is not a negative of ``i`` (see module docstring).
        gather: ``True`` to take the negatives from the keys of every DDP process
            (:func:`gather_rows`), or such a callable; ``False`` (default): local keys only.

    Returns:
        Scalar: mean cross-entropy over the ``M`` queries (with ``gather``: this process's share
        ``W / sum_r M_r * sum_i loss_i`` of the global mean). ``0`` (with grad) when there is no
        query.
    """
    if query.shape != key.shape or query.dim() != 2:
        raise ValueError(f"query and key must both be (M, C); got {tuple(query.shape)} and {tuple(key.shape)}")
    gather_fn: Gather | None = gather_rows if gather is True else (gather or None)
    if gather_fn is None and query.shape[0] == 0:
        return (query.sum() + key.sum()) * 0.0
    if normalize:
        query = F.normalize(query, dim=1)
        key = F.normalize(key, dim=1)
    m, dev = query.shape[0], query.device
    target = torch.arange(m, device=dev)
    key_group, key_ids, q_rank, k_rank = group, key_id, None, None
    world, total = 1, m
    if gather_fn is not None:
        key, start, sizes = gather_fn(key)
        world, total = len(sizes), sum(sizes)
        k_rank = torch.arange(world, device=dev).repeat_interleave(torch.tensor(sizes, device=dev))
        q_rank = k_rank[start:start + m]
        target = target + start
        key_group = None if group is None else gather_fn(group)[0]
        key_ids = None if key_id is None else gather_fn(key_id)[0]
    if total == 0:
        return (query.sum() + key.sum()) * 0.0
    logits = query @ key.t() / tau
    same_rank = None if q_rank is None or k_rank is None else q_rank.view(-1, 1) == k_rank.view(1, -1)
    if group is not None:  # same scene (and process) only
        assert key_group is not None  # set together with group
        same = group.view(-1, 1) == key_group.view(1, -1)
        logits = logits.masked_fill(~same if same_rank is None else ~(same & same_rank), float("-inf"))
    if key_id is not None:  # the positive's point again: not a negative
        assert key_ids is not None  # set together with key_id
        repeat = key_id.view(-1, 1) == key_ids.view(1, -1)
        if same_rank is not None:
            repeat &= same_rank
        repeat[torch.arange(m, device=dev), target] = False
        logits = logits.masked_fill(repeat, float("-inf"))
    if gather_fn is None:
        return F.cross_entropy(logits, target)
    losses = F.cross_entropy(logits, target, reduction="none")
    return losses.sum() * (world / total)


class PointInfoNCE(nn.Module):
    """Module form of :func:`point_info_nce` (``tau`` 0.4 by default, as in the paper)."""

    def __init__(self, tau: float = 0.4, normalize: bool = True, gather: bool = False):
        super().__init__()
        self.tau = tau
        self.normalize = normalize
        self.gather = gather

    def forward(self, query: torch.Tensor, key: torch.Tensor, group: torch.Tensor | None = None,
                key_id: torch.Tensor | None = None) -> torch.Tensor:
        return point_info_nce(query, key, self.tau, group, self.normalize, key_id, self.gather)
