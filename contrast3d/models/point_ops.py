"""Point-set operators of PointNet++ / VoteNet in plain PyTorch: farthest point sampling and ball query.

Both work on Pointcept-style ``offset`` batches (scenes concatenated along the point axis,
``offset[b]`` = end of scene ``b``) and return **global** indices into the concatenated points,
so they run on CPU and on any CUDA device without compiled extensions.

Farthest point sampling (FPS)
    Greedy: start from one point, then repeatedly pick the point whose squared Euclidean distance
    to the set picked so far is largest, updating ``d_i = min(d_i, |p_i - p_last|^2)`` after every
    pick. All scenes of a batch advance together on a padded ``(B, N_max)`` distance table (padding
    holds ``-1`` so it is never picked), so the only Python loop is over the ``max_b m_b`` FPS
    iterations. Decisions the references leave implicit:

    * start point: ``start="first"`` (default) begins at the first point of every scene, exactly
      as PointNet++'s ``furthest_point_sampling`` CUDA kernel and Pointcept's
      ``pointops.farthest_point_sampling`` do; ``start="random"`` draws the start uniformly per
      scene from ``generator`` (seeded, reproducible).
    * ties: the lowest index among equal maximal distances wins (``torch.argmax`` semantics).
    * PointNet++'s kernel skips points with ``|p|^2 <= 1e-3`` (a padding hack: points at the
      origin are never picked); Pointcept's does not, and neither do we.
    * a scene asked for more samples than it has points raises ``ValueError``; with duplicate
      points, once every remaining distance is ``0`` the first point of the scene is picked again
      (as the references do) rather than failing.

Ball query
    For every query point, the indices of up to ``nsample`` points of the **same scene** with
    squared distance ``< radius**2`` (strict, as PointNet++'s ``ball_query`` kernel). Two orders:
    ``order="index"`` (default, PointNet++): the first hits in point-index order;
    ``order="nearest"`` (Pointcept ``pointops.ball_query``): the hits sorted by distance, ties by
    index. Distances are accumulated per coordinate (no ``(Q, N, 3)`` temporary) and the hits found
    with one ``nonzero`` per chunk, so the cost beyond the distance table is linear in the hits. Slots
    beyond the number of hits are padded with the first hit, as PointNet++ does. A query with no
    point inside the ball gets ``-1`` in every slot (deviation: PointNet++ silently returns index 0
    of the batch element; ``-1`` cannot be mistaken for a real neighbour). Memory is bounded by
    processing queries in chunks so that a chunk's ``(Q, N_scene)`` distance table has at most
    ``max_elements`` entries.
"""
from __future__ import annotations

import torch

__all__ = ["farthest_point_sampling", "ball_query", "offsets_to_counts"]


def offsets_to_counts(offset: torch.Tensor) -> torch.Tensor:
    """``(B,)`` per-scene counts from ``(B,)`` cumulative ``offset``."""
    offset = torch.as_tensor(offset).long()
    return torch.diff(offset, prepend=offset.new_zeros(1))


def _check_offset(offset: torch.Tensor, n: int, name: str) -> torch.Tensor:
    offset = torch.as_tensor(offset).long().reshape(-1)
    if offset.numel() == 0:
        raise ValueError(f"{name} is empty")
    counts = offsets_to_counts(offset)
    if bool((counts < 0).any()) or int(offset[-1]) != n:
        raise ValueError(f"{name} must be non-decreasing and end at {n}; got {offset.tolist()}")
    return offset


def farthest_point_sampling(coord: torch.Tensor, offset: torch.Tensor, new_offset: torch.Tensor,
                            start: str = "first", generator: torch.Generator | None = None) -> torch.Tensor:
    """Farthest point sampling per scene of an ``offset`` batch.

    Args:
        coord: ``(N, 3)`` float point coordinates (metres), scenes concatenated.
        offset: ``(B,)`` int64 cumulative point counts.
        new_offset: ``(B,)`` int64 cumulative sample counts (scene ``b`` gets
            ``new_offset[b] - new_offset[b-1]`` samples).
        start: ``"first"`` (first point of each scene, as the reference kernels) or ``"random"``.
        generator: RNG for ``start="random"`` (CPU generator; ``None`` = global RNG).

    Returns:
        ``(M,)`` int64 global indices into ``coord`` (``M = new_offset[-1]``), scene by scene, in
        selection order.
    """
    if coord.dim() != 2:
        raise ValueError(f"coord must be (N, D); got {tuple(coord.shape)}")
    device = coord.device
    offset = _check_offset(offset, coord.shape[0], "offset").to(device)
    counts = offsets_to_counts(offset)
    new_offset = torch.as_tensor(new_offset).long().reshape(-1).to(device)
    if new_offset.shape != offset.shape:
        raise ValueError(f"new_offset has {new_offset.numel()} scenes, offset {offset.numel()}")
    m = offsets_to_counts(new_offset)
    if bool((m < 0).any()) or bool((m > counts).any()):
        raise ValueError(f"sample counts {m.tolist()} must be in [0, scene size] with scene sizes {counts.tolist()}")
    b_count, n_max, m_max = offset.numel(), int(counts.max()), int(m.max())
    if m_max == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    starts = offset - counts
    # padded per-coordinate layout (B, D, N_max); padding has distance -1 and is never picked
    # (min(-1, d) = -1 since d >= 0)
    local = torch.arange(n_max, device=device)
    valid = local.unsqueeze(0) < counts.unsqueeze(1)
    gidx = (starts.unsqueeze(1) + local.unsqueeze(0)).clamp(max=coord.shape[0] - 1)
    pts = coord[gidx].permute(0, 2, 1).contiguous()                          # (B, D, N_max)
    dist = torch.full((b_count, n_max), float("inf"), dtype=coord.dtype, device=device)
    dist = dist.masked_fill(~valid, -1.0)
    if start == "first":
        cur = torch.zeros(b_count, dtype=torch.long, device=device)
    elif start == "random":
        u = torch.rand(b_count, generator=generator).to(device)
        cur = torch.minimum((u * counts.to(u.dtype)).long(), (counts - 1).clamp(min=0))
    else:
        raise ValueError(f"start must be 'first' or 'random'; got {start!r}")
    picks = torch.empty(b_count, m_max, dtype=torch.long, device=device)
    d = torch.empty_like(dist)
    tmp = torch.empty_like(dist)
    for it in range(m_max):
        picks[:, it] = cur
        if it + 1 == m_max:
            break
        last = pts.gather(2, cur.view(-1, 1, 1).expand(-1, pts.shape[1], 1))   # (B, D, 1)
        torch.sub(pts[:, 0], last[:, 0], out=d).square_()
        for k in range(1, pts.shape[1]):
            d.add_(torch.sub(pts[:, k], last[:, k], out=tmp).square_())
        torch.minimum(dist, d, out=dist)
        cur = dist.argmax(dim=1)
    keep = torch.arange(m_max, device=device).unsqueeze(0) < m.unsqueeze(1)
    return (picks + starts.unsqueeze(1))[keep]


def ball_query(coord: torch.Tensor, offset: torch.Tensor, query: torch.Tensor, query_offset: torch.Tensor,
               radius: float, nsample: int, order: str = "index",
               max_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbours within ``radius`` of each query point, in the query's own scene.

    Args:
        coord: ``(N, 3)`` float support points (metres), scenes concatenated.
        offset: ``(B,)`` int64 cumulative support counts.
        query: ``(M, 3)`` float query points (metres), scenes concatenated.
        query_offset: ``(B,)`` int64 cumulative query counts.
        radius: ball radius in metres; a point is inside when ``|p - q|^2 < radius^2``.
        nsample: neighbours returned per query.
        order: ``"index"`` (first hits by point index, PointNet++) or ``"nearest"`` (closest hits).
        max_elements: bound on the entries of one chunk's ``(Q, N_scene)`` distance table.

    Returns:
        ``idx``: ``(M, nsample)`` int64 global indices into ``coord``; slots past the hit count
        repeat the first hit; rows of queries without any hit are ``-1``.
        ``count``: ``(M,)`` int64 number of distinct hits returned (``<= nsample``).
    """
    if order not in ("index", "nearest"):
        raise ValueError(f"order must be 'index' or 'nearest'; got {order!r}")
    if nsample < 1:
        raise ValueError(f"nsample must be >= 1; got {nsample}")
    device = coord.device
    offset = _check_offset(offset, coord.shape[0], "offset").to(device)
    query_offset = _check_offset(query_offset, query.shape[0], "query_offset").to(device)
    if offset.shape != query_offset.shape:
        raise ValueError(f"offset has {offset.numel()} scenes, query_offset {query_offset.numel()}")
    idx = torch.full((query.shape[0], nsample), -1, dtype=torch.long, device=device)
    count = torch.zeros(query.shape[0], dtype=torch.long, device=device)
    r2 = float(radius) ** 2
    p_start = 0
    q_start = 0
    for p_end, q_end in zip(offset.tolist(), query_offset.tolist()):
        pts = coord[p_start:p_end]
        n = pts.shape[0]
        if n and q_end > q_start:
            chunk = max(1, int(max_elements) // n)
            slot = torch.arange(nsample, device=device)
            for c0 in range(q_start, q_end, chunk):
                c1 = min(c0 + chunk, q_end)
                qc = query[c0:c1]
                d2 = (qc[:, :1] - pts[:, 0]).square_()                                # (Q, n)
                for k in range(1, pts.shape[1]):
                    d2.add_((qc[:, k:k + 1] - pts[:, k]).square_())
                rows, cols = (d2 < r2).nonzero(as_tuple=True)   # row-major: columns ascending per row
                if order == "nearest":
                    by = torch.sort(d2[rows, cols], stable=True).indices
                    by = by[torch.sort(rows[by], stable=True).indices]
                    rows, cols = rows[by], cols[by]
                hits = torch.bincount(rows, minlength=c1 - c0)
                rank = torch.arange(rows.numel(), device=device) - (torch.cumsum(hits, 0) - hits)[rows]
                take = rank < nsample
                sel = torch.full((c1 - c0, nsample), -1, dtype=torch.long, device=device)
                sel[rows[take], rank[take]] = cols[take] + p_start
                cnt = hits.clamp(max=nsample)
                idx[c0:c1] = torch.where(slot.unsqueeze(0) < cnt.unsqueeze(1), sel, sel[:, :1])
                count[c0:c1] = cnt
        p_start, q_start = p_end, q_end
    return idx, count
