"""Contrastive cross masks of Masked Scene Contrast (Wu et al., CVPR 2023).

MSC masks the input features of both views of a scene with *complementary* patches so that
the two views never hide the same region (each masked region stays visible in the other view,
which the contrastive term can then pull it towards):

1. Patches are the cells of a regular grid of ``grid_size`` (10 cm) over the views' *original*
   coordinates (before any augmentation, metres), taken over the **union** of both views:
   cell = ``floor(coord / grid_size)`` (an absolute grid anchored at the origin, as the released
   code), per scene.
2. One random permutation of all patches; with ``n = floor(num_patches * mask_ratio)`` the first
   ``n`` patches are masked in view 1 and the next ``n`` in view 2. The two sets are disjoint by
   construction, which is why ``mask_ratio <= 0.5`` is required; the remaining patches are
   visible in both views.
3. A point of view 1 is masked iff its patch is in the view-1 set; likewise for view 2.

Decisions, following the released MSC code (Pointcept ``MSC-v1m1``) where the paper is silent:

* The ratio is over patches of the union, not over points and not per view: a patch chosen for
  view 1 may hold only view-2 points (it then masks nothing), so the fraction of masked *points*
  of a view fluctuates around ``mask_ratio``.
* With several scenes in a batch (``batch1``/``batch2``), patches of different scenes are
  distinct and the single permutation (hence ``floor(num_patches * mask_ratio)``) runs over all
  patches of the batch, as in the released code; pass one scene at a time for an exact per-scene
  count.
* Randomness comes only from the ``np.random.Generator`` given (one ``permutation`` call).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CrossMaskConfig:
    """MSC cross-mask parameters: 10 cm patches, 40 % of patches masked in each view."""

    grid_size: float = 0.1   # patch edge, metres
    mask_ratio: float = 0.4  # fraction of (union) patches masked in each view; <= 0.5


def _check_coord(coord: np.ndarray, name: str) -> np.ndarray:
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3); got {coord.shape}")
    if not np.isfinite(coord).all():
        raise ValueError(f"{name} has non-finite coordinates")
    return coord


def _check_batch(batch: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if batch is None:
        return np.zeros(n, dtype=np.int64)
    batch = np.asarray(batch, dtype=np.int64)
    if batch.shape != (n,):
        raise ValueError(f"{name} must be ({n},); got {batch.shape}")
    return batch


def patch_index(coord1: np.ndarray, coord2: np.ndarray, grid_size: float = 0.1,
                batch1: np.ndarray | None = None,
                batch2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Patch id of every point of both views (10 cm cells of the union of original coordinates).

    Args:
        coord1: ``(N1, 3)`` original (un-augmented) coordinates of view 1, metres; ``coord2``
            ``(N2, 3)`` of view 2 in the same frame.
        grid_size: patch edge in metres.
        batch1 / batch2: optional ``(N1,)`` / ``(N2,)`` scene index (cells of different scenes
            are different patches).

    Returns:
        ``(patch1 (N1,) int64, patch2 (N2,) int64, num_patches)``; ids are ``0..num_patches-1`` in
        lexicographic order of (scene, cell) and equal for points of either view in the same cell.
    """
    if not grid_size > 0:
        raise ValueError(f"grid_size must be > 0; got {grid_size}")
    coord1 = _check_coord(coord1, "coord1")
    coord2 = _check_coord(coord2, "coord2")
    n1 = coord1.shape[0]
    b = np.concatenate([_check_batch(batch1, n1, "batch1"), _check_batch(batch2, coord2.shape[0], "batch2")])
    cell = np.floor(np.concatenate([coord1, coord2]).astype(np.float64) / grid_size).astype(np.int64)
    if cell.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    keys = np.concatenate([b[:, None], cell], axis=1)
    keys -= keys.min(axis=0)
    extent = keys.max(axis=0) + 1
    if float(np.prod(extent.astype(np.float64))) < 2.0 ** 62:
        linear = np.ravel_multi_index(keys.T, tuple(extent))
        _, inverse = np.unique(linear, return_inverse=True)
    else:  # astronomically sparse grid: fall back to row-unique
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return inverse[:n1], inverse[n1:], int(inverse.max()) + 1


def cross_masks(coord1: np.ndarray, coord2: np.ndarray, *, rng: np.random.Generator, grid_size: float = 0.1,
                mask_ratio: float = 0.4, batch1: np.ndarray | None = None,
                batch2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MSC contrastive cross masks.

    Args:
        coord1 / coord2: ``(N1, 3)`` / ``(N2, 3)`` original coordinates (metres, before augmentation).
        rng: the generator all randomness is drawn from (one ``permutation`` of the patches).
        grid_size: patch edge (10 cm).
        mask_ratio: fraction of union patches masked per view, in ``[0, 0.5]``.
        batch1 / batch2: optional per-point scene index of each view.

    Returns:
        ``(mask1 (N1,) bool, mask2 (N2,) bool)``: True = the point's input feature is replaced
        by the mask token. No patch is masked in both views; a patch is masked or not as a whole.
    """
    if not 0.0 <= mask_ratio <= 0.5:
        raise ValueError(f"mask_ratio must be in [0, 0.5] so that the two views' patches are disjoint; "
                         f"got {mask_ratio}")
    patch1, patch2, num = patch_index(coord1, coord2, grid_size, batch1, batch2)
    tag = np.zeros(num, dtype=np.int8)        # 0 visible in both, 1 masked in view 1, 2 masked in view 2
    n_mask = int(num * mask_ratio)
    perm = rng.permutation(num)
    tag[perm[:n_mask]] = 1
    tag[perm[n_mask:2 * n_mask]] = 2
    return tag[patch1] == 1, tag[patch2] == 2
