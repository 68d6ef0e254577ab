"""Shared helpers of the readers and writers: safe file reading, atomic writing, label checks.

Every reader funnels OS and decoding failures through these helpers so that malformed input
only ever surfaces as :class:`~contrast3d.errors.DataError` naming the file. A path that is not a
regular file (a FIFO, socket or device) is refused before it is opened: reading a FIFO would
block forever.
"""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from contrast3d.errors import DataError

PathLike = str | os.PathLike


def check_regular_file(path: PathLike, what: str = "file") -> Path:
    """``path`` if it is a regular file (symlinks followed); :class:`DataError` naming it otherwise."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise DataError(p, f"no such {what}") from None
    except OSError as err:
        raise DataError(p, f"cannot read {what}: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise DataError(p, f"is a directory, expected a {what}")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise DataError(p, f"is a {kind}, not a regular {what} (refused: reading it could block)")
    return p


def read_bytes(path: PathLike) -> bytes:
    """The whole file as bytes; a missing, non-regular or unreadable file raises :class:`DataError`."""
    p = check_regular_file(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise DataError(p, "no such file") from None
    except IsADirectoryError:
        raise DataError(p, "is a directory, expected a file") from None
    except OSError as err:
        raise DataError(p, f"cannot read file: {err.strerror or err}") from None


def read_text(path: PathLike) -> str:
    """The whole file decoded as UTF-8 (latin-1 bytes are tolerated via ``surrogateescape``)."""
    return read_bytes(path).decode("utf-8", errors="surrogateescape")


def load_npy(path: PathLike) -> np.ndarray:
    """One ``.npy`` array (no pickles); any failure raises :class:`DataError`."""
    p = check_regular_file(path)
    try:
        with open(p, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(p, "no such file") from None
    except OSError as err:
        raise DataError(p, f"cannot read file: {err.strerror or err}") from None
    except (ValueError, EOFError, TypeError, KeyError, UnicodeDecodeError, SyntaxError, zipfile.BadZipFile) as err:
        raise DataError(p, f"not a valid .npy array ({err})") from None
    if not isinstance(arr, np.ndarray):
        raise DataError(p, "not a .npy array (an .npz archive?)")
    if arr.dtype.kind not in "biuf":
        raise DataError(p, f"unsupported dtype {arr.dtype} (expected a numeric array)")
    return arr


def check_coords(coord: np.ndarray, source: PathLike, what: str = "coordinates") -> None:
    """Raise :class:`DataError` if ``coord`` contains NaN or Inf."""
    if coord.size and not np.isfinite(coord).all():
        bad = int((~np.isfinite(coord.reshape(coord.shape[0], -1))).any(axis=1).sum())
        raise DataError(source, f"{bad} row(s) with NaN/Inf {what}")


def point_coords(coord: np.ndarray, source: PathLike, what: str = "coordinates") -> np.ndarray:
    """``(N, 3)`` numeric, finite, non-empty ``coord`` as float32 (metres), else a :class:`DataError`."""
    if coord.ndim != 2 or coord.shape[1] != 3 or coord.dtype.kind not in "iuf":
        raise DataError(source, f"expected (N, 3) numeric {what}, got {coord.shape} {coord.dtype}")
    if coord.shape[0] == 0:
        raise DataError(source, "empty point cloud (0 points)")
    check_coords(coord, source, what)
    return coord.astype(np.float32)


def as_labels(values: np.ndarray, n: int, source: PathLike, what: str) -> np.ndarray:
    """``(N,)`` or ``(N, 1)`` integer-valued array -> ``(N,)`` int64, else :class:`DataError`."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(source, f"'{what}' must have shape (N,), got {values.shape}")
    if values.shape[0] != n:
        raise DataError(source, f"length mismatch: '{what}' has {values.shape[0]} entries for {n} points")
    if values.dtype.kind == "f":
        if not (np.isfinite(values).all() and np.all(values == np.round(values))):
            raise DataError(source, f"'{what}' labels must be integers, got non-integral {values.dtype} values")
    elif values.dtype.kind not in "biu":
        raise DataError(source, f"'{what}' labels must be integers, got dtype {values.dtype}")
    return values.astype(np.int64)


def scale_color(values: np.ndarray) -> np.ndarray:
    """Colour channels of any dtype -> float32 in [0, 1].

    uint8 is divided by 255, uint16 by 65535; float input is kept if already in [0, 1] and
    divided by 255 otherwise.
    """
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255.0)
    if values.dtype == np.uint16:
        return values.astype(np.float32) / np.float32(65535.0)
    out = values.astype(np.float32)
    if out.size and np.nanmax(out) > 1.0:
        out = out / np.float32(255.0)
    return out


def check_color_range(color: np.ndarray, source: PathLike) -> np.ndarray:
    """``color`` (float, already scaled to [0, 1] by the reader's uint8 / 0..255 rule) if every value is
    finite and within [0, 1]; :class:`DataError` otherwise.

    Decision: out-of-range colours are refused, never clipped or rescaled -- a colour array in an
    unknown unit (e.g. scaled x 1e6) would otherwise be written as all white without a word.
    """
    if color.size:
        if not np.isfinite(color).all():
            raise DataError(source, "NaN/Inf colour values")
        lo, hi = float(color.min()), float(color.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise DataError(source, f"colour values outside 0..255 (or 0..1 as floats): min {lo * 255:g}, "
                                    f"max {hi * 255:g} on the 0..255 scale")
    return color


def color_to_uint8(color: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float colours in [0, 1] -> uint8 0..255 (rounded, clipped); uint8 passes through."""
    color = np.asarray(color)
    if color.dtype == np.uint8:
        return color
    return np.clip(np.round(color.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, swapping out an existing ``final``.

    Each step is an atomic rename on one file system; the old folder is deleted only after
    the new one is in place, so a crash leaves either the old or the new folder at ``final``.
    """
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_file(path: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``path``, else remove it."""
    target = Path(path)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder; on success it replaces ``path``.

    An existing ``path`` is only replaced when it is a folder holding nothing but ``.npy``
    files (a previous scene); anything else raises :class:`FileExistsError` before writing.
    """
    target = Path(path)
    if target.exists():
        if not target.is_dir() or any(not c.is_file() or c.suffix != ".npy" for c in target.iterdir()):
            raise FileExistsError(f"{target}: exists and is not a scene folder of .npy files; not replacing it")
    tmp = _temp_sibling(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
