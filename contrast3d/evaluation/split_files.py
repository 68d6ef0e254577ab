"""Published label-efficient split files (CSC / Pointcept ``data_efficient``), read and checked.

``--labels FILE`` takes one of two kinds of file, told apart by what it holds:

* **Limited reconstructions** (a list of scene names): ``.txt`` with one scene name per line
  (ScanNet's ``scannetv2_train_1.txt``, Pointcept's ``tasks/scenes/*.txt``; blank lines and
  ``#`` comments ignored), or ``.json`` holding a list of names. Only these training scenes are
  kept, fully labelled.
* **Limited annotations** (scene name -> labelled point indices): a mapping from the scene name to
  the indices of its labelled points in the scene's point order (the order of ``coord.npy``, as
  Pointcept's preprocessing writes it), e.g. Pointcept's / CSC's ``points20`` ... ``points200``.
  Read from ``.pth``/``.pt`` (``torch.load(weights_only=True)``; NumPy arrays allowed), ``.pkl``
  (a restricted unpickler: dicts, lists, NumPy arrays only), ``.npz`` (one array per scene) or
  ``.json`` (``{name: [i, ...]}``, or a ``label_split.json`` written by an earlier run). Every
  other point's label becomes ``-1``; the file must list every training scene.

A file without one of these suffixes (Pointcept ships ``points20`` without one) is read as text
when it is UTF-8 text, else with ``torch.load``. Nothing in a file is executed: pickles that
name any other class are refused.

Checks (:meth:`SplitFile.check`), each a one-line :class:`~contrast3d.errors.DataError` naming the
file: a scene that is not among the training scenes (said so when it is a validation scene, which
would leak), a training scene missing from a limited-annotation file, a point index outside
``0 .. N-1``, no labelled point at all.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contrast3d.errors import DataError

#: Suffixes that make a ``--labels`` value a file (any value with a path separator is one too).
FILE_SUFFIXES = (".txt", ".pth", ".pt", ".pkl", ".pickle", ".npz", ".json")

#: Globals a limited-annotation pickle may name (NumPy arrays, ordered dicts).
_SAFE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                 ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                 ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}


def is_split_file(spec: str) -> bool:
    """Whether a ``--labels`` value names a file: it has a path separator or a :data:`FILE_SUFFIXES` suffix."""
    text = spec.strip()
    return "/" in text or "\\" in text or Path(text).suffix.lower() in FILE_SUFFIXES


@dataclass
class SplitFile:
    """A split file's content: ``kind`` ``"scenes"`` (limited reconstructions) or ``"points"``
    (limited annotations, ``points``: scene -> sorted distinct ``(K,)`` int64 indices)."""

    path: str
    kind: str
    scenes: list[str]
    points: dict[str, np.ndarray] = field(default_factory=dict)
    sha256: str = ""

    def check(self, train_names: Iterable[str], num_points: Mapping[str, int] | Callable[[str], int] | None = None,
              val_names: Iterable[str] = ()) -> None:
        """Refuse (:class:`DataError` naming the file) a file that does not fit the training scenes.

        ``num_points`` gives each scene's point count (needed for a ``points`` file).
        """
        names = list(train_names)
        known, val = set(names), set(val_names)
        unknown = [s for s in self.scenes if s not in known]
        leaked = [s for s in unknown if s in val]
        if leaked:
            raise DataError(self.path, f"scene '{leaked[0]}' is a validation scene ({len(leaked)} in all): training "
                                       "on it would leak into the scores; use the split file of the training set")
        if unknown:
            raise DataError(self.path, f"{len(unknown)} scene(s) of the file are not among the {len(names)} "
                                       f"training scenes of the data (e.g. '{unknown[0]}'); is this the file of "
                                       "another dataset, or are scenes missing from --data?")
        if self.kind != "points":
            return
        listed = set(self.points)
        missing = [n for n in names if n not in listed]
        if missing:
            raise DataError(self.path, f"{len(missing)} of the {len(names)} training scenes have no labelled points "
                                       f"listed (e.g. '{missing[0]}'): a limited-annotation file must cover every "
                                       "training scene")
        if num_points is None:
            raise ValueError("checking a limited-annotation file needs the scenes' point counts")
        count = num_points if callable(num_points) else num_points.__getitem__
        for scene, idx in self.points.items():
            n = int(count(scene))
            if idx.size and (idx[0] < 0 or idx[-1] >= n):
                bad = int(idx[0] if idx[0] < 0 else idx[-1])
                raise DataError(self.path, f"scene '{scene}': point index {bad} is out of range (the scene has "
                                           f"{n} points, indices 0..{n - 1})")
        if not any(idx.size for idx in self.points.values()):
            raise DataError(self.path, "no scene has a labelled point (every index list is empty)")

    def source(self) -> dict[str, Any]:
        """What ``label_split.json`` records about the file."""
        return {"file": self.path, "kind": self.kind, "sha256": self.sha256}


def read_split_file(path: str | Path) -> SplitFile:
    """Read a split file (module docstring); :class:`DataError` naming it when it is missing or malformed."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, "no such label split file (expected a .txt of scene names or a .pth/.pkl/.npz/.json "
                           "mapping scene names to labelled point indices)")
    if not p.is_file():
        raise DataError(p, "the label split file is not a regular file")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise DataError(p, f"cannot read the label split file: {err.strerror or err}") from None
    sha = hashlib.sha256(data).hexdigest()
    suffix = p.suffix.lower()
    try:
        if suffix == ".txt" or (suffix not in FILE_SUFFIXES and _is_text(data)):
            content: Any = _text_names(data.decode("utf-8"))
        elif suffix == ".json":
            content = json.loads(data.decode("utf-8"))
        elif suffix == ".npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                content = {k: z[k] for k in z.files}
        elif suffix in (".pkl", ".pickle"):
            content = _SafeUnpickler(io.BytesIO(data)).load()
        else:
            content = _torch_load(data)
    except DataError:
        raise
    except (ValueError, UnicodeDecodeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError,
            AttributeError, ImportError, KeyError, TypeError, IndexError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(p, f"cannot read the label split file ({suffix or 'no suffix'}): {reason[:200]}") from None
    return _interpret(p, content, sha)


def _is_text(data: bytes) -> bool:
    if b"\0" in data[:4096]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text_names(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only dicts/lists of scene names and "
                                     "point indices (NumPy arrays) are read")


def _torch_load(data: bytes) -> Any:
    import torch

    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    dtypes = getattr(np, "dtypes", None)
    allowed = [np.ndarray, np.dtype, multiarray._reconstruct, (multiarray._reconstruct,
                                                               "numpy.core.multiarray._reconstruct"),
               *(getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType"))]
    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; older: tensors and lists only
    try:
        with safe(allowed) if safe is not None else contextlib.nullcontext():
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise pickle.UnpicklingError(f"refusing to load an object{what} other than scene names and point indices "
                                     "(torch.load with weights_only=True)") from None


def _interpret(path: Path, content: Any, sha: str) -> SplitFile:
    """The :class:`SplitFile` of a loaded object: a list of names, ``{name: indices}`` or a saved label split."""
    where = str(path)
    if isinstance(content, dict) and "scenes" in content and isinstance(content.get("scenes"), list):
        points = content.get("points") or {}  # a label_split.json written by an earlier run
        content = points if points else list(content["scenes"])
    if isinstance(content, (list, tuple)):
        names = list(dict.fromkeys(content))
        if not names:
            raise DataError(where, "the label split file lists no scene")
        if not all(isinstance(n, str) for n in names):
            raise DataError(where, "expected scene names (strings), one per line or a JSON list of strings")
        return SplitFile(where, "scenes", names, sha256=sha)
    if isinstance(content, Mapping):
        if not content:
            raise DataError(where, "the label split file lists no scene")
        points = {}
        for key, value in content.items():
            if not isinstance(key, str):
                raise DataError(where, f"expected scene names as keys, got {type(key).__name__} {key!r}")
            points[key] = _indices(where, key, value)
        return SplitFile(where, "points", list(points), points, sha)
    raise DataError(where, f"expected a list of scene names or a mapping scene name -> point indices, got "
                           f"{type(content).__name__}")


def _indices(where: str, scene: str, value: Any) -> np.ndarray:
    """Sorted distinct int64 point indices from a list / array / tensor of integers."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        arr = np.asarray([], dtype=object)
    if arr.size == 0 and arr.dtype != object:
        return np.zeros(0, np.int64)
    numeric = arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.isfinite(arr).all()
                                         and np.array_equal(arr, np.round(arr)))
    if arr.ndim > 1 or not numeric:
        raise DataError(where, f"scene '{scene}': expected a list of integer point indices, got "
                               f"{arr.dtype} values of shape {arr.shape}")
    return np.unique(arr.reshape(-1).astype(np.int64))


__all__ = ["FILE_SUFFIXES", "SplitFile", "is_split_file", "read_split_file"]
