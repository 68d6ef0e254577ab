"""Atomic, validated training checkpoints.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, dicts, lists, numbers,
strings), so it loads with ``weights_only=True``::

    {"format": "contrast3d-checkpoint", "version": 1, "step": int, "epoch": int,
     "batch_in_epoch": int, "model": state_dict, "optimizer": ..., "scheduler": ...,
     "scaler": ..., "rng": [per-rank RNG states], "world_size": int, "config": dict}

:func:`save_atomic` writes to a temporary file in the destination folder, fsyncs it and
``os.replace``-s it over the destination, so a crash at any moment leaves either the old or the
new file, never a partial one. :func:`load_checkpoint` turns every read failure into a
:class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from contrast3d.errors import DataError

FORMAT = "contrast3d-checkpoint"
VERSION = 1
REQUIRED = ("step", "epoch", "batch_in_epoch", "model", "optimizer", "scheduler", "rng")


class CheckpointError(DataError):
    """A checkpoint that cannot be read or does not fit the run (names the file)."""


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file in the same folder + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- loading
def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; :class:`CheckpointError` for anything unreadable.

    A truncated, garbled or foreign file raises with the file name, the reason and the other
    checkpoints in the folder one could resume from instead; it never returns partial data.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, pickle, EOF errors all mean "unreadable"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        others = sorted(p.name for p in path.parent.glob("*.pt") if p != path)
        alt = f"; other checkpoints in {path.parent}: {', '.join(others)}" if others else ""
        raise CheckpointError(path, f"corrupt or truncated checkpoint, cannot be loaded "
                                    f"({type(err).__name__}: {reason}){alt}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(path, "not a contrast3d training checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(path, f"checkpoint version {ckpt.get('version')} is not supported (expected {VERSION})")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(path, f"checkpoint is missing {', '.join(missing)}")
    return ckpt


class CheckpointManager:
    """``<run>/checkpoints/last.pt`` plus optional ``step_XXXXXXXX.pt`` copies every ``keep_every`` steps."""

    def __init__(self, folder: str | Path, keep_every: int = 0):
        self.folder = Path(folder)
        self.keep_every = keep_every

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    def step_path(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}.pt"

    def save(self, state: dict[str, Any]) -> Path:
        """Write ``state`` (without the format header) as ``last.pt`` (and a kept copy when due)."""
        payload = {"format": FORMAT, "version": VERSION, **state}
        save_atomic(payload, self.last)
        step = int(state["step"])
        if self.keep_every and step % self.keep_every == 0:
            save_atomic(payload, self.step_path(step))
        return self.last

    def exists(self) -> bool:
        return self.last.is_file()

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.last, map_location)
