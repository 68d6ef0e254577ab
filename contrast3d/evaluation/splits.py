"""Label-efficient settings of Contrastive Scene Contexts (CSC), chosen by a seed and saved.

* **Limited reconstructions** (LR): keep a percentage of the training scenes, fully labelled
  (``"1%"``, ``"5%"`` ...). The kept scene names are the split's ``scenes`` list; saved as JSON in
  the run folder (``label_split.json``) and reloaded on resume, so a run, its resume and every
  method compared by ``contrast3d bench`` train on the very same list.
* **Limited annotations** (LA): keep every scene but only N labelled points per scene
  (``"20pts"``); every other point's label becomes ``-1`` (ignore). How the N points are chosen
  (``LabelBudget.selection``):

  - ``random`` (default): uniformly among the labelled points of the scene, without replacement.
  - ``kmeans``: CSC's ``sampling_points`` idea of spreading the annotations over the scene:
    k-means (k = N) on the xyz coordinates (metres) of the labelled points, and in each cluster
    the member nearest its centre is labelled. Decisions the paper leaves open: only points with
    a label (``segment >= 0``) take part (as for ``random``); initialisation is k-means++ from a
    ``numpy`` generator seeded by the split seed and the scene's position in the sorted scene
    list; Lloyd iterations run until no assignment changes or ``KMEANS_ITERS`` iterations; a
    cluster left empty keeps its previous centre and contributes no point, and the missing points
    are then drawn uniformly (seeded) from the unselected labelled points, so a scene always gets
    ``min(N, labelled points)`` distinct points. Written ``"20pts:kmeans"``.

* **Published splits** (``--labels FILE``, :mod:`contrast3d.evaluation.split_files`): a ``.txt`` of
  scene names (limited reconstructions, e.g. ScanNet's ``scannetv2_train_1.txt``) or a
  ``.pth``/``.pkl``/``.npz``/``.json`` mapping scene names to labelled point indices (limited
  annotations, Pointcept's / CSC's ``points20`` ...), so numbers compare with the papers. The seed
  plays no part; the file's path and SHA-256 are recorded in the split (``source``).

Budget names (:meth:`LabelBudget.parse`): ``all``; ``1%`` or CSC / Pointcept's ``tr1``, ``tr5``,
``tr10``, ``tr20`` (percent of the training scenes, drawn by the seed); ``20pts``, ``20`` or
``points20`` ... ``points200`` (points per scene, drawn by the seed: these names are budgets, not
the published files: pass the file's path, e.g. ``./points20``, for those); a value with a path
separator or a ``.txt``/``.pth``/``.pt``/``.pkl``/``.npz``/``.json`` suffix is a file.

A split is a plain JSON-serialisable dict so it is saved in the run folder and reloaded exactly.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from contrast3d.evaluation.split_files import SplitFile, is_split_file, read_split_file

#: How limited-annotation points are chosen.
SELECTIONS = ("random", "kmeans")
#: Lloyd iterations at most for the ``kmeans`` selection.
KMEANS_ITERS = 50


@dataclass
class LabelBudget:
    """``kind`` is ``"all"``, ``"scenes"`` (``value`` = percent of scenes), ``"points"`` (``value`` =
    labelled points per scene) or ``"file"`` (a published split file at ``path``); ``selection``
    (points only) is ``random`` or ``kmeans``."""

    kind: str = "all"
    value: float = 100.0
    selection: str = "random"
    path: str = ""

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"label selection {self.selection!r} is not one of {list(SELECTIONS)}")

    @classmethod
    def parse(cls, spec: str | None, selection: str | None = None) -> LabelBudget:
        """``None``/``"all"``/``"100%"`` -> all; ``"1%"``/``"tr1"`` -> 1 % of scenes; ``"20pts"``/``"20"``/
        ``"points20"`` -> 20 points per scene; ``"20pts:kmeans"`` -> 20 k-means-selected points per
        scene; a path (separator or known suffix) -> that split file (read later, by :func:`make_split`).

        ``selection`` (``random``/``kmeans``) applies to a points budget written without a suffix.
        """
        if spec is not None and is_split_file(spec):
            return cls("file", 0.0, path=spec.strip())
        text = "" if spec is None else spec.strip().lower()
        base, _, suffix = text.partition(":")
        base = base.strip()
        chosen = suffix.strip() or selection or "random"
        if chosen not in SELECTIONS:
            raise ValueError(f"label budget {spec!r}: selection must be one of {list(SELECTIONS)}")
        if base in ("", "all", "100%"):
            if suffix:
                raise ValueError(f"label budget {spec!r}: a selection only applies to a points budget")
            return cls("all", 100.0)
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*%|tr(\d+(?:\.\d+)?)", base):
            value = float(m.group(1) or m.group(2))
            if not 0 < value <= 100:
                raise ValueError(f"label budget {spec!r}: percentage must be in (0, 100]")
            if suffix:
                raise ValueError(f"label budget {spec!r}: a selection only applies to a points budget")
            return cls("scenes", value)
        if m := re.fullmatch(r"(\d+)\s*(?:pts|points|p)?|points\s*(\d+)", base):
            count = int(m.group(1) or m.group(2))
            if count < 1:
                raise ValueError(f"label budget {spec!r}: at least 1 labelled point per scene (0 trains on nothing)")
            return cls("points", float(count), chosen)
        raise ValueError(f"label budget {spec!r} not understood: use e.g. '1%' or 'tr1' (scenes), '20pts' or "
                         "'points20' (points per scene), '20pts:kmeans', or a split file (.txt of scene names, "
                         ".pth/.pkl/.npz/.json of labelled point indices)")

    @property
    def needs_labels(self) -> bool:
        """Whether :func:`make_split` needs the per-scene labels (points budgets and split files)."""
        return self.kind in ("points", "file")

    def __str__(self) -> str:
        if self.kind == "file":
            return self.path
        if self.kind == "points":
            return f"{int(self.value)}pts" + ("" if self.selection == "random" else f":{self.selection}")
        return {"all": "all", "scenes": f"{self.value:g}%"}[self.kind]


@dataclass
class LabelSplit:
    """The scenes kept and, for the points budget, the labelled point indices per scene; ``source``
    says which split file it came from (``file``, ``kind``, ``sha256``; empty when drawn by the seed)."""

    budget: str
    seed: int
    scenes: list[str]
    points: dict[str, list[int]] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        content = asdict(self)
        if not content["source"]:  # a drawn split: the same bytes as before split files existed
            del content["source"]
        tmp.write_text(json.dumps(content))
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


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``(N, K)`` squared distances of rows of ``x`` ``(N, 3)`` to ``c`` ``(K, 3)`` (float64, >= 0)."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeans(coord: np.ndarray, k: int, rng: np.random.Generator, iters: int = KMEANS_ITERS
           ) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means of ``coord`` ``(N, 3)`` (metres, ``1 <= k <= N``) with k-means++ seeding.

    Returns ``centres`` ``(k, 3)`` float64 and ``assign`` ``(N,)`` int64 (cluster of each point,
    its nearest centre). An empty cluster keeps its previous centre.
    """
    x = np.asarray(coord, np.float64).reshape(-1, 3)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k}, N={n}")
    # k-means++: each next centre is drawn with probability proportional to its squared distance
    centres = np.empty((k, 3), np.float64)
    centres[0] = x[int(rng.integers(n))]
    closest = _sq_dist(x, centres[:1])[:, 0]
    for j in range(1, k):  # a loop over centres (k), vectorised over the points
        total = closest.sum()
        pick = int(rng.choice(n, p=closest / total)) if total > 0 else int(rng.integers(n))
        centres[j] = x[pick]
        closest = np.minimum(closest, _sq_dist(x, centres[j:j + 1])[:, 0])
    assign = np.full(n, -1, np.int64)
    for _ in range(iters):
        new = _sq_dist(x, centres).argmin(1)
        if np.array_equal(new, assign):
            break
        assign = new
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros((k, 3), np.float64)
        np.add.at(sums, assign, x)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres, assign


def kmeans_points(coord: np.ndarray, k: int, rng: np.random.Generator, iters: int = KMEANS_ITERS) -> np.ndarray:
    """Indices (sorted, distinct) of ``min(k, N)`` points spread over ``coord`` ``(N, 3)`` metres.

    :func:`kmeans`, then in each non-empty cluster the member nearest its centre (ties: the lower
    index); empty clusters are made up by seeded uniform draws (see the module docstring).
    """
    x = np.asarray(coord, np.float64).reshape(-1, 3)
    n = len(x)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 0:
        return np.zeros(0, np.int64)
    centres, assign = kmeans(x, k, rng, iters)
    dist = ((x - centres[assign]) ** 2).sum(1)
    order = np.lexsort((np.arange(n), dist, assign))  # by cluster, then distance, then index
    first_of = np.concatenate([[True], assign[order][1:] != assign[order][:-1]])
    chosen = order[first_of]
    if len(chosen) < k:  # empty clusters: fill up uniformly from the rest
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=k - len(chosen), replace=False)])
    return np.sort(chosen).astype(np.int64)


def split_from_file(table: SplitFile, scene_names: list[str], num_points=None, seed: int = 0,
                    val_names: Iterable[str] = (), budget: str | None = None) -> LabelSplit:
    """The :class:`LabelSplit` of a published split file, checked against the training scenes
    (:meth:`~contrast3d.evaluation.split_files.SplitFile.check`; ``num_points``: scene -> point count;
    ``budget``: the ``--labels`` text recorded, default the file's path)."""
    table.check(scene_names, num_points, val_names)
    points = {name: table.points[name].tolist() for name in sorted(table.points)}
    return LabelSplit(budget or table.path, seed, sorted(table.scenes), points, table.source())


def make_split(budget: LabelBudget, scene_names: list[str], segments: dict[str, np.ndarray] | None = None,
               seed: int = 0, coords: dict[str, np.ndarray] | None = None, *,
               val_names: Iterable[str] = ()) -> LabelSplit:
    """Choose the scenes (and labelled points) of ``budget`` reproducibly from ``seed``.

    ``segments`` (scene -> ``(N,)`` labels) is needed for the points budget and a split file,
    ``coords`` (scene -> ``(N, 3)`` metres) also for the ``kmeans`` selection. At least one scene is
    always kept. A split file (``budget.kind == "file"``) is read and checked (:func:`split_from_file`);
    ``val_names`` (the validation scenes) only sharpen its error messages.
    """
    rng = np.random.default_rng(seed)
    names = sorted(scene_names)
    if budget.kind == "file":
        table = read_split_file(budget.path)
        if table.kind == "points" and segments is None:
            raise ValueError("a limited-annotation split file needs the per-scene labels (point counts)")
        sizes = None if segments is None else {n: len(segments[n]) for n in names if n in segments}
        return split_from_file(table, names, sizes, seed, val_names, str(budget))
    if budget.kind == "all":
        return LabelSplit(str(budget), seed, names)
    if budget.kind == "scenes":
        count = max(1, int(round(len(names) * budget.value / 100.0)))
        keep = sorted(rng.choice(len(names), size=count, replace=False).tolist())
        return LabelSplit(str(budget), seed, [names[i] for i in keep])
    if segments is None:
        raise ValueError("a points budget needs the per-scene labels")
    if budget.selection == "kmeans" and coords is None:
        raise ValueError("the kmeans selection needs the per-scene coordinates (make_split(..., coords=...))")
    points = {}
    for i, name in enumerate(names):
        labelled = np.flatnonzero(np.asarray(segments[name]) >= 0)
        take = min(int(budget.value), labelled.size)
        if budget.selection == "kmeans":
            assert coords is not None
            local = kmeans_points(np.asarray(coords[name])[labelled], take, np.random.default_rng([seed, i]))
            points[name] = labelled[local].tolist()
        else:
            points[name] = sorted(rng.choice(labelled, size=take, replace=False).tolist())
    return LabelSplit(str(budget), seed, names, points)
