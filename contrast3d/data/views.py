"""Two augmented views of one scene with point correspondences (the PointContrast recipe).

Both views start in the same world coordinates. Each gets its own random transform (rotation,
scale, translation, colour, voxelisation ...). Correspondences are nearest neighbours within a
radius between the **world (pre-augmentation) coordinates of the points each view kept**, so
they are exact however the augmentation subsamples — the way PointContrast's own loader
matches voxelised views, and never confused by the views' different random rigid transforms.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from contrast3d.data.pairs import find_matches
from contrast3d.structures import MultiView, PointCloud, view_pair

Transform = Callable[[PointCloud, np.random.Generator], PointCloud]


def kept_index(view: PointCloud, n_before: int) -> np.ndarray:
    """``(N_out,)`` int64 input index of every output point of a transform.

    Uses ``meta["origin_index"]`` (composed by croppers and the voxeliser), else
    ``meta["sample_index"]``; a transform that kept the point count keeps the identity.
    """
    index = view.meta.get("origin_index", view.meta.get("sample_index"))
    if index is None:
        if len(view) != n_before:
            raise ValueError("transform changed the number of points without meta['origin_index'] / "
                             "meta['sample_index']; correspondences cannot be traced")
        return np.arange(n_before, dtype=np.int64)
    return np.asarray(index, np.int64)


def augment_view(raw: PointCloud, transform: Transform | None,
                 rng: np.random.Generator) -> tuple[PointCloud, np.ndarray]:
    """Apply ``transform`` to a world-coordinate cloud.

    Returns the augmented view and ``(N_out, 3)`` float32 world coordinates of its points.
    Any ``origin_index`` already in ``raw.meta`` is dropped first so indices refer to ``raw``.
    """
    if transform is None:
        return raw, raw.coord
    start = PointCloud(**{k: getattr(raw, k) for k in ("coord", "color", "normal", "segment", "instance",
                                                        "superpoint", "grid_coord")},
                       extra=dict(raw.extra), meta={k: v for k, v in raw.meta.items()
                                                    if k not in ("origin_index", "sample_index", "inverse")})
    out = transform(start, rng)
    return out, raw.coord[kept_index(out, len(raw))]


def make_view_pair(raw1: PointCloud, raw2: PointCloud, transform: Transform | None, rng: np.random.Generator,
                   radius: float, mutual: bool = False, meta: dict | None = None) -> MultiView:
    """Augment two world-coordinate clouds independently and match their kept points.

    Args:
        raw1, raw2: the two views in world coordinates (metres); may be the same cloud
            (holistic variant: different random crops/augmentations of one scene).
        transform: per-view augmentation ``(cloud, rng) -> cloud`` (view 1 first, same ``rng``).
        radius: match radius in metres (PointContrast: 1.5 voxels).
        mutual: keep only mutual nearest neighbours.

    Returns:
        a two-view :class:`MultiView` whose ``matches`` ``(M, 2)`` index the augmented views.
    """
    view1, world1 = augment_view(raw1, transform, rng)
    view2, world2 = augment_view(raw2, transform, rng)
    matches = find_matches(world1, world2, radius, mutual)
    return view_pair(view1, view2, matches, meta)
