"""Atomic checkpoints, clear errors for corrupt ones, RNG capture."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from contrast3d.engine import checkpoint as C
from contrast3d.engine.rng import capture_rng, restore_rng
from contrast3d.errors import DataError


def payload(step: int) -> dict:
    return {"step": step, "epoch": 0, "batch_in_epoch": step, "model": {"w": torch.full((3,), float(step))},
            "optimizer": {}, "scheduler": {}, "rng": [capture_rng()]}


def test_crash_during_save_keeps_old_file(tmp_path, monkeypatch):
    mgr = C.CheckpointManager(tmp_path)
    mgr.save(payload(3))
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")  # some bytes reach the temp file, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        mgr.save(payload(4))
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = mgr.load()
    assert ckpt["step"] == 3 and torch.equal(ckpt["model"]["w"], torch.full((3,), 3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left behind


def test_keep_every(tmp_path):
    mgr = C.CheckpointManager(tmp_path, keep_every=2)
    for step in (1, 2, 3, 4):
        mgr.save(payload(step))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_00000002.pt", "step_00000004.pt"]
    assert mgr.load()["step"] == 4 and C.load_checkpoint(mgr.step_path(2))["step"] == 2


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty", "foreign"])
def test_corrupt_checkpoint_names_file(tmp_path, damage):
    mgr = C.CheckpointManager(tmp_path, keep_every=1)
    mgr.save(payload(1))
    data = mgr.last.read_bytes()
    if damage == "truncate":
        mgr.last.write_bytes(data[: len(data) // 2])
    elif damage == "garble":
        mgr.last.write_bytes(data[:100] + bytes(200) + data[300:])
    elif damage == "empty":
        mgr.last.write_bytes(b"")
    else:
        torch.save({"something": 1}, mgr.last)
    with pytest.raises(C.CheckpointError) as err:
        mgr.load()
    assert isinstance(err.value, DataError) and str(mgr.last) in str(err.value)
    if damage != "foreign":
        assert "corrupt or truncated" in str(err.value) and "step_00000001.pt" in str(err.value)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(C.CheckpointError, match="not found"):
        C.load_checkpoint(tmp_path / "nope.pt")


def test_rng_round_trip_through_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    C.save_atomic({"rng": capture_rng()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.standard_normal(), torch.rand(2))
    state = torch.load(tmp_path / "r.pt", weights_only=True)["rng"]
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(state)
    got = (random.random(), np.random.standard_normal(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
