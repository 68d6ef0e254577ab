"""Label conventions of the supported datasets (ids, names, raw -> training-id maps).

Training ids are contiguous ``0..C-1`` with ``-1`` = ignore, as in Pointcept.

* ScanNet-20: the 20 benchmark classes, defined by their NYU40 ids (:data:`SCANNET20_NYU40_IDS`).
* S3DIS: 13 classes (:data:`S3DIS_CLASSES`); unknown annotation names (``stairs``) -> clutter.
* SemanticKITTI: raw ids -> 19 classes via the official ``learning_map`` (0 "unlabeled" and
  the ignored raw ids -> -1).
"""
from __future__ import annotations

import numpy as np

#: NYU40 class names, index ``i`` is NYU40 id ``i + 1``.
NYU40_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)
#: The 20 NYU40 ids evaluated in the ScanNet benchmark, in ScanNet-20 order.
SCANNET20_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
#: ScanNet-20 class names; training id ``i`` is ``SCANNET20_CLASSES[i]``.
SCANNET20_CLASSES = tuple(NYU40_CLASSES[i - 1] for i in SCANNET20_NYU40_IDS)

#: S3DIS classes; training id ``i`` is ``S3DIS_CLASSES[i]``.
S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair",
                 "sofa", "bookcase", "board", "clutter")

#: SemanticKITTI's 19 evaluated classes; training id ``i`` is ``SEMANTICKITTI_CLASSES[i]``.
SEMANTICKITTI_CLASSES = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist",
    "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk",
    "terrain", "pole", "traffic-sign",
)
#: Official ``learning_map`` of semantic-kitti.yaml: raw id -> 0..19 (0 = unlabeled/ignored).
SEMANTICKITTI_LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10,
    48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0,
    252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}


def _lookup(table: dict[int, int], size: int) -> np.ndarray:
    lut = np.full(size, -1, np.int64)
    for raw, train in table.items():
        lut[raw] = train
    return lut


_NYU40_TO_SCANNET20 = _lookup({nyu: i for i, nyu in enumerate(SCANNET20_NYU40_IDS)}, 41)
_KITTI_LUT = _lookup({raw: m - 1 for raw, m in SEMANTICKITTI_LEARNING_MAP.items()}, 260)


def _apply(lut: np.ndarray, raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw).astype(np.int64)
    inside = (raw >= 0) & (raw < lut.shape[0])
    out = np.full(raw.shape, -1, np.int64)
    out[inside] = lut[raw[inside]]
    return out


def nyu40_to_scannet20(nyu40: np.ndarray) -> np.ndarray:
    """NYU40 ids (any int array) -> ScanNet-20 training ids 0..19, everything else -1."""
    return _apply(_NYU40_TO_SCANNET20, nyu40)


def semantickitti_to_train(raw: np.ndarray) -> np.ndarray:
    """Raw SemanticKITTI semantic ids (lower 16 bits) -> 0..18, unlabeled / unknown -> -1."""
    return _apply(_KITTI_LUT, raw)


def s3dis_class_id(name: str) -> int:
    """S3DIS annotation class name (``chair`` of ``chair_3.txt``) -> 0..12; unknown -> clutter."""
    name = name.lower()
    return S3DIS_CLASSES.index(name) if name in S3DIS_CLASSES else S3DIS_CLASSES.index("clutter")
