"""The ScanNet-20 semantic class table used by the simulator.

Ids and names are those of the ScanNet v2 20-class benchmark (as used by Pointcept's
``segment20``); everything outside the 20 classes (ceiling, plants, boxes, ...) is
:data:`IGNORE` (``-1``). ``contrast3d.io.labels`` must keep the same ids.
"""
from __future__ import annotations

#: ``-1``: unlabelled / ignored (ceiling, clutter outside the 20 classes).
IGNORE = -1

#: Class names in id order (index == class id).
SCANNET20_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)

WALL, FLOOR, CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW, BOOKSHELF = range(10)
PICTURE, COUNTER, DESK, CURTAIN, REFRIGERATOR, SHOWER_CURTAIN, TOILET, SINK, BATHTUB, OTHERFURNITURE = range(10, 20)

#: Name -> id, plus the non-ScanNet-20 things the simulator builds (mapped to -1 or a proxy class).
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(SCANNET20_NAMES)}
CLASS_IDS.update({"ceiling": IGNORE, "lamp": OTHERFURNITURE, "plant": IGNORE, "box": IGNORE,
                  "trash can": OTHERFURNITURE, "tv stand": OTHERFURNITURE, "nightstand": CABINET,
                  "wardrobe": CABINET, "armchair": CHAIR})

#: Classes that count as furniture (everything but wall / floor / door / window).
FURNITURE_IDS: frozenset[int] = frozenset(set(range(20)) - {WALL, FLOOR, DOOR, WINDOW})

#: A distinct RGB colour (0..255) per class for previews, ScanNet benchmark palette.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (247, 182, 210), (219, 219, 141), (255, 127, 14),
    (158, 218, 229), (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
)
IGNORE_COLOR = (60, 60, 60)


def class_name(class_id: int) -> str:
    """Name of a ScanNet-20 id, ``"ignore"`` for ``-1``."""
    return "ignore" if class_id == IGNORE else SCANNET20_NAMES[class_id]
