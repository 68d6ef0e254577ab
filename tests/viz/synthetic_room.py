"""A tiny synthetic room for the visual checks: floor, four walls and three boxes on the floor."""
from __future__ import annotations

import numpy as np

#: Box name, (x0, y0), (x1, y1), height; all metres.
BOXES = [("table", (1.0, 1.0), (2.2, 1.8), 0.75), ("cabinet", (3.4, 0.2), (3.9, 1.4), 1.6),
         ("bed", (0.3, 2.4), (2.0, 3.8), 0.5)]
CLASS_NAMES = ["floor", "wall"] + [b[0] for b in BOXES]


def _box_surface(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, n: int,
                 faces: tuple[int, ...] = (0, 1, 2, 3, 5)) -> np.ndarray:
    """``n`` points on the faces of an axis-aligned box (face ids: -x, +x, -y, +y, -z, +z)."""
    ext = hi - lo
    areas = np.array([ext[1] * ext[2], ext[1] * ext[2], ext[0] * ext[2], ext[0] * ext[2],
                      ext[0] * ext[1], ext[0] * ext[1]])[list(faces)]
    face = np.asarray(faces)[rng.choice(len(faces), size=n, p=areas / areas.sum())]
    pts = lo + rng.uniform(size=(n, 3)) * ext
    axis, side = face // 2, face % 2
    pts[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    return pts


def make_room(n: int = 12000, seed: int = 0, size=(4.0, 4.0, 2.5)) -> tuple[np.ndarray, np.ndarray]:
    """``coord (N, 3)`` float32 metres and ``labels (N,)`` int64 (index into :data:`CLASS_NAMES`)."""
    rng = np.random.default_rng(seed)
    sx, sy, _ = size
    n_floor, n_wall = n // 4, n // 3
    n_box = (n - n_floor - n_wall) // len(BOXES)
    floor = np.column_stack([rng.uniform(0, sx, n_floor), rng.uniform(0, sy, n_floor), np.zeros(n_floor)])
    walls = _box_surface(rng, np.zeros(3), np.array(size), n_wall, faces=(0, 1, 2, 3))
    parts, labels = [floor, walls], [np.zeros(n_floor), np.ones(n_wall)]
    for i, (_, (x0, y0), (x1, y1), h) in enumerate(BOXES):
        parts.append(_box_surface(rng, np.array([x0, y0, 0.0]), np.array([x1, y1, h]), n_box))
        labels.append(np.full(n_box, 2 + i))
    return np.concatenate(parts).astype(np.float32), np.concatenate(labels).astype(np.int64)


def onehot_features(labels: np.ndarray, noise: float = 0.3, extra_dims: int = 3, seed: int = 0) -> np.ndarray:
    """``(N, K + extra_dims)`` float32: one-hot of the label plus Gaussian noise (std ``noise``)."""
    rng = np.random.default_rng(seed)
    k = int(labels.max()) + 1
    f = np.concatenate([np.eye(k)[labels], np.zeros((len(labels), extra_dims))], axis=1)
    return (f + noise * rng.standard_normal(f.shape)).astype(np.float32)
