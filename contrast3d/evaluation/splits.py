"""Label-efficient settings of Contrastive Scene Contexts (CSC), chosen by a seed and saved.

* **Limited reconstructions** (LR): keep a percentage of the training scenes, fully labelled.
* **Limited annotations** (LA): keep every scene but only N labelled points per scene; every
  other point's label becomes ``-1`` (ignore). Points are drawn uniformly among the labelled
  points of the scene.

A split is a plain JSON-serialisable dict so it is saved in the run folder and reloaded exactly.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LabelBudget:
    """``kind`` is ``"all"``, ``"scenes"`` (``value`` = percent of scenes) or ``"points"``
    (``value`` = labelled points per scene)."""

    kind: str = "all"
    value: float = 100.0

    @classmethod
    def parse(cls, spec: str | None) -> LabelBudget:
        """``None``/``"all"``/``"100%"`` -> all; ``"1%"`` -> 1 % of scenes; ``"20pts"``/``"20"`` ->
        20 points per scene."""
        if spec is None or spec.strip().lower() in ("", "all", "100%"):
            return cls("all", 100.0)
        s = spec.strip().lower()
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", s):
            value = float(m.group(1))
            if not 0 < value <= 100:
                raise ValueError(f"label budget {spec!r}: percentage must be in (0, 100]")
            return cls("scenes", value)
        if m := re.fullmatch(r"(\d+)\s*(?:pts|points|p)?", s):
            return cls("points", float(m.group(1)))
        raise ValueError(f"label budget {spec!r} not understood: use e.g. '1%' (scenes) or '20pts' (points per scene)")

    def __str__(self) -> str:
        return {"all": "all", "scenes": f"{self.value:g}%", "points": f"{int(self.value)}pts"}[self.kind]


@dataclass
class LabelSplit:
    """The scenes kept and, for the points budget, the labelled point indices per scene."""

    budget: str
    seed: int
    scenes: list[str]
    points: dict[str, list[int]] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelSplit:
        return cls(**json.loads(Path(path).read_text()))

    def mask_labels(self, scene: str, segment: np.ndarray) -> np.ndarray:
        """The scene's labels under this split (unlabelled points set to ``-1``)."""
        if scene not in self.points:
            return segment
        out = np.full_like(segment, -1)
        idx = np.asarray(self.points[scene], dtype=np.int64)
        out[idx] = segment[idx]
        return out


def make_split(budget: LabelBudget, scene_names: list[str], segments: dict[str, np.ndarray] | None = None,
               seed: int = 0) -> LabelSplit:
    """Choose the scenes (and labelled points) of ``budget`` reproducibly from ``seed``.

    ``segments`` (scene -> ``(N,)`` labels) is needed for the points budget. At least one scene
    is always kept.
    """
    rng = np.random.default_rng(seed)
    names = sorted(scene_names)
    if budget.kind == "all":
        return LabelSplit(str(budget), seed, names)
    if budget.kind == "scenes":
        count = max(1, int(round(len(names) * budget.value / 100.0)))
        keep = sorted(rng.choice(len(names), size=count, replace=False).tolist())
        return LabelSplit(str(budget), seed, [names[i] for i in keep])
    if segments is None:
        raise ValueError("a points budget needs the per-scene labels")
    points = {}
    for name in names:
        labelled = np.flatnonzero(np.asarray(segments[name]) >= 0)
        take = min(int(budget.value), labelled.size)
        points[name] = sorted(rng.choice(labelled, size=take, replace=False).tolist())
    return LabelSplit(str(budget), seed, names, points)
