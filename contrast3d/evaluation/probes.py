"""Cheap feature-quality probes on a frozen backbone: linear and k-NN semantic segmentation.

Both probes take per-point features ``(N, C)`` and labels ``(N,)`` (int, ``-1`` = ignore) of a
small labelled *train* set and a *val* set, either as single concatenated arrays or as lists of
per-scene arrays (points are independent, so scene boundaries do not matter), and return
:class:`~contrast3d.evaluation.metrics.SegmentationScores` on the val points.

* :func:`linear_probe`: softmax regression (one ``nn.Linear``) on train-standardised features,
  full-batch or minibatch Adam, zero-initialised and seeded, optionally class-balanced.
* :func:`knn_probe`: each val point takes a (similarity-weighted) vote of its ``k`` nearest train
  points, computed with chunked matmul + top-k in torch.
* :func:`extract_features` runs a backbone over :class:`~contrast3d.structures.PointBatch` es;
  :class:`ProbeCallback` runs everything every ``K`` steps of a pre-training loop (with ``progress``,
  its feature pass shows :func:`~contrast3d.engine.logging.progress`: a bar on a terminal, plain
  lines otherwise).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from contrast3d.engine.logging import progress as show_progress
from contrast3d.evaluation.collapse import collapse_stats
from contrast3d.evaluation.metrics import (
    SegmentationScores,
    confusion_matrix,
    segmentation_scores,
)
from contrast3d.structures import PointBatch

ArrayLike = torch.Tensor | np.ndarray
Features = ArrayLike | Sequence[ArrayLike]


def concat_features(feats: Features, labels: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C)`` float32 features and ``(N,)`` int64 labels (CPU) from arrays or per-scene lists."""
    def cat(x: Features) -> torch.Tensor:
        if isinstance(x, (torch.Tensor, np.ndarray)):
            return torch.as_tensor(x).detach().cpu()
        parts = [torch.as_tensor(p).detach().cpu() for p in x]
        if not parts:
            raise ValueError("empty list of per-scene arrays")
        return torch.cat(parts, dim=0)

    f, y = cat(feats).float(), cat(labels).long().reshape(-1)
    if f.ndim != 2 or f.shape[0] != y.shape[0]:
        raise ValueError(f"features {tuple(f.shape)} and labels {tuple(y.shape)} do not match (want (N, C), (N,))")
    return f, y


def _labelled(feats: Features, labels: Features, max_points: int | None, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train points with a label (``!= -1``), seeded random subsample to ``max_points``."""
    f, y = concat_features(feats, labels)
    keep = y >= 0
    f, y = f[keep], y[keep]
    if f.shape[0] == 0:
        raise ValueError("the probe's train set has no labelled points")
    if max_points is not None and f.shape[0] > max_points:
        idx = torch.randperm(f.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
        f, y = f[idx], y[idx]
    return f, y


def _score(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
           class_names: list[str] | None) -> SegmentationScores:
    return segmentation_scores(confusion_matrix(pred, target, num_classes), class_names)


def linear_probe(train_feats: Features, train_labels: Features, val_feats: Features, val_labels: Features,
                 num_classes: int, *, steps: int = 300, lr: float = 0.05, batch_size: int | None = None,
                 weight_decay: float = 0.0, balanced: bool = False, standardize: bool = True, seed: int = 0,
                 max_train_points: int | None = 500_000, device: str | torch.device | None = None,
                 class_names: list[str] | None = None) -> SegmentationScores:
    """Train a linear classifier on frozen train features, score it on the val points.

    Args:
        train_feats, val_feats: ``(N, C)`` features or lists of per-scene ``(N_i, C)`` arrays.
        train_labels, val_labels: ``(N,)`` int labels in ``[0, num_classes)``, ``-1`` = ignore.
        steps: optimiser (Adam) steps; ``batch_size=None`` is full-batch, else random
            minibatches of that many points drawn with ``seed``.
        balanced: weight the cross-entropy by inverse class frequency of the train set.
        standardize: z-score features with the train mean / std (applied to val too).
    """
    x, y = _labelled(train_feats, train_labels, max_train_points, seed)
    xv, yv = concat_features(val_feats, val_labels)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if standardize:
        mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
        x, xv = (x - mean) / std, (xv - mean) / std
    x, y = x.to(dev), y.to(dev)
    head = nn.Linear(x.shape[1], num_classes).to(dev)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)  # convex problem: zero init makes the result depend only on `seed`
    weight = None
    if balanced:
        counts = torch.bincount(y, minlength=num_classes).float()
        weight = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp_min(1)), torch.zeros_like(counts))
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.enable_grad():
        for _ in range(steps):
            if batch_size is not None and batch_size < x.shape[0]:
                idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen).to(dev)
                xb, yb = x[idx], y[idx]
            else:
                xb, yb = x, y
            loss = F.cross_entropy(head(xb), yb, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = torch.cat([head(c.to(dev)).argmax(1).cpu() for c in xv.split(65536)]) if len(xv) else \
            torch.zeros(0, dtype=torch.long)
    return _score(pred, yv, num_classes, class_names)


def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, query: torch.Tensor, num_classes: int, *,
                k: int = 20, metric: str = "cosine", weighted: bool = True, temperature: float = 0.07,
                chunk_size: int = 4096) -> torch.Tensor:
    """``(M,)`` int64 class of each query row by a vote of its ``k`` nearest train rows.

    ``metric="cosine"`` votes with weight ``exp(sim / temperature)`` (DINO's k-NN), ``"euclidean"``
    with ``1 / (distance + 1e-6)``; ``weighted=False`` gives a plain majority vote. Ties go to the
    lower class index. Inputs on one device; memory ``chunk_size * N_train`` floats.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    k = min(k, train_x.shape[0])
    if metric == "cosine":
        train_x = F.normalize(train_x, dim=1)
    else:
        train_sq = (train_x * train_x).sum(1)
    out = []
    for q in query.split(chunk_size):
        if metric == "cosine":
            sim, idx = (F.normalize(q, dim=1) @ train_x.T).topk(k, dim=1)
            w = torch.exp((sim - 1.0) / temperature)  # shifted by the max possible sim: no overflow
        else:
            d2 = ((q * q).sum(1, keepdim=True) - 2 * q @ train_x.T + train_sq).clamp_min(0)
            neg, idx = (-d2).topk(k, dim=1)
            w = 1.0 / ((-neg).sqrt() + 1e-6)
        if not weighted:
            w = torch.ones_like(w)
        votes = torch.zeros(q.shape[0], num_classes, dtype=w.dtype, device=q.device)
        votes.scatter_add_(1, train_y[idx], w)
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=query.device)


def knn_probe(train_feats: Features, train_labels: Features, val_feats: Features, val_labels: Features,
              num_classes: int, *, k: int = 20, metric: str = "cosine", weighted: bool = True,
              temperature: float = 0.07, max_train_points: int | None = 200_000, chunk_size: int = 4096,
              seed: int = 0, device: str | torch.device | None = None,
              class_names: list[str] | None = None) -> SegmentationScores:
    """k-NN segmentation probe: see :func:`knn_predict`; arguments as in :func:`linear_probe`.

    Train points beyond ``max_train_points`` are dropped by a seeded random subsample.
    """
    x, y = _labelled(train_feats, train_labels, max_train_points, seed)
    xv, yv = concat_features(val_feats, val_labels)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    pred = knn_predict(x.to(dev), y.to(dev), xv.to(dev), num_classes, k=k, metric=metric, weighted=weighted,
                       temperature=temperature, chunk_size=chunk_size)
    return _score(pred.cpu(), yv, num_classes, class_names)


@torch.no_grad()
def extract_features(backbone: nn.Module, batches: Iterable[PointBatch], device: str | torch.device = "cpu",
                     map_to_points: bool = True) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Run ``backbone`` (``PointBatch -> (N, C)``) in eval / no-grad mode; one entry per scene.

    Returns ``[(feats (N_i, C) float32 CPU, labels (N_i,) int64 CPU or None), ...]``. With
    ``map_to_points`` and ``meta[i]["inverse"]`` (``(P_i,)`` voxel index of every original point,
    as set by :class:`~contrast3d.data.voxelize.GridSample`), features are mapped back to the
    ``P_i`` original points; their labels are ``meta[i]["segment"]`` when given (full-resolution
    labels), else the label of each point's voxel. The backbone's train/eval mode is restored.
    """
    was_training = backbone.training
    backbone.eval()
    out: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    try:
        for batch in batches:
            feats = backbone(batch.to(device)).float().cpu()
            for i, sl in enumerate(batch.scene_slices()):
                f = feats[sl]
                y = batch.segment[sl].cpu() if batch.segment is not None else None
                meta = batch.meta[i] if i < len(batch.meta) else {}
                if map_to_points and meta.get("inverse") is not None:
                    inv = torch.as_tensor(np.asarray(meta["inverse"]), dtype=torch.long)
                    f = f[inv]
                    if meta.get("segment") is not None:
                        y = torch.as_tensor(np.asarray(meta["segment"]), dtype=torch.long)
                    elif y is not None:
                        y = y[inv]
                out.append((f, y))
    finally:
        backbone.train(was_training)
    return out


class ProbeCallback:
    """Linear / k-NN probes and collapse statistics every ``every`` steps of a pre-training loop.

    Args:
        train_batches, val_batches: labelled :class:`PointBatch` es (kept as lists: keep them small).
        num_classes: label count of the probe task.
        every: run when ``step % every == 0`` (``<= 0`` never).
        linear, knn, collapse: which probes run.
        linear_kwargs, knn_kwargs: extra arguments of :func:`linear_probe` / :func:`knn_probe`.
        max_train_points: seeded subsample of the labelled train points per call.
        device: where features are computed; default the backbone's parameter device.
        progress: show the feature pass over the batches (off: nothing is printed; the attribute
            may be changed between calls, e.g. on for rank 0 only).

    :meth:`evaluate` returns scalars such as ``probe/linear_miou``, ``probe/knn_miou``,
    ``probe/feat_std``, ``probe/eff_rank``, ``probe/seconds`` (the engine's periodic callback
    decides when).
    """

    def __init__(self, train_batches: Iterable[PointBatch], val_batches: Iterable[PointBatch], num_classes: int,
                 every: int = 1000, *, linear: bool = True, knn: bool = True, collapse: bool = True,
                 linear_kwargs: dict[str, Any] | None = None, knn_kwargs: dict[str, Any] | None = None,
                 max_train_points: int = 100_000, device: str | torch.device | None = None, seed: int = 0,
                 prefix: str = "probe/", progress: bool = False) -> None:
        self.train_batches, self.val_batches = list(train_batches), list(val_batches)
        self.num_classes, self.every = num_classes, every
        self.linear, self.knn, self.collapse = linear, knn, collapse
        self.linear_kwargs, self.knn_kwargs = dict(linear_kwargs or {}), dict(knn_kwargs or {})
        self.max_train_points, self.device, self.seed, self.prefix = max_train_points, device, seed, prefix
        self.progress = progress

    def evaluate(self, backbone: nn.Module) -> dict[str, float]:
        """Run the probes now (whatever the step) and return the scalars."""
        start = time.perf_counter()
        device = self.device
        if device is None:
            param = next(backbone.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        batches = self.train_batches + self.val_batches
        unit = "scenes" if all(b.batch_size == 1 for b in batches) else "batches"
        feats = extract_features(backbone, show_progress(batches, desc="probe features", unit=unit,
                                                         enabled=self.progress), device)
        n_train = sum(b.batch_size for b in self.train_batches)  # extract_features: one entry per scene
        train, val = feats[:n_train], feats[n_train:]
        train_labels = [l for _, l in train if l is not None]
        val_labels = [l for _, l in val if l is not None]
        if len(train_labels) < len(train) or len(val_labels) < len(val):
            raise ValueError("ProbeCallback needs labelled batches (PointBatch.segment is None)")
        x, y = _labelled([f for f, _ in train], train_labels, self.max_train_points, self.seed)
        xv, yv = concat_features([f for f, _ in val], val_labels)
        p, out = self.prefix, {}
        if self.linear:
            s = linear_probe(x, y, xv, yv, self.num_classes, seed=self.seed, device=device, **self.linear_kwargs)
            out.update({f"{p}linear_miou": s.miou, f"{p}linear_macc": s.macc, f"{p}linear_allacc": s.all_acc})
        if self.knn:
            s = knn_probe(x, y, xv, yv, self.num_classes, seed=self.seed, device=device, **self.knn_kwargs)
            out.update({f"{p}knn_miou": s.miou, f"{p}knn_macc": s.macc, f"{p}knn_allacc": s.all_acc})
        if self.collapse:
            out.update(collapse_stats(xv, seed=self.seed, prefix=p))
        out[f"{p}seconds"] = time.perf_counter() - start
        return out
