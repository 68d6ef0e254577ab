"""The training loop: exact resume after SIGKILL, non-finite stop, run-folder safety, callbacks, CLI."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import engine_toy as T
import pytest
import torch
import yaml
from safetensors.torch import load_file

from contrast3d.engine.checkpoint import CheckpointError, load_checkpoint
from contrast3d.engine.run import train
from contrast3d.engine.trainer import NonFiniteLossError, PeriodicCallback

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_exact(tmp_path):
    # 10 samples, batch 4, drop_last -> 2 batches per epoch: 6 steps cross two epoch boundaries;
    # the kill at step 4 is mid-epoch, after the step-3 checkpoint.
    cfg = T.toy_config(loader__num_workers=2)
    full = tmp_path / "full"
    train(cfg, T.SPEC, full)

    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(HERE / "run_toy.py"), "kill", str(killed), "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["step"] == 3
    assert max(losses(killed)) == 4  # it logged step 4 before dying

    train(cfg, T.SPEC, killed, resume=True)
    assert_same_state(T.model_state(full), T.model_state(killed))
    assert losses(full) == losses(killed)  # identical batches, augmentations and dropout masks
    a, b = (load_file(str(r / "backbone.safetensors")) for r in (full, killed))
    assert_same_state(a, b)


def test_stop_and_resume_in_process_and_the_test_can_fail(tmp_path, monkeypatch):
    cfg = T.toy_config(steps=5, checkpoint_every=10)
    full, part = tmp_path / "full", tmp_path / "part"
    train(cfg, T.SPEC, full)
    r = train(cfg, T.SPEC, part, until=2)
    assert r.step == 2 and r.backbone_path is None
    torch.manual_seed(12345)  # whatever the process did meanwhile does not matter
    train(cfg, T.SPEC, part, resume=True)
    assert_same_state(T.model_state(full), T.model_state(part))
    # Without restoring the RNG states (dropout masks, point sampling) the weights differ.
    import contrast3d.engine.trainer as trainer_mod
    monkeypatch.setattr(trainer_mod, "restore_rng", lambda state: None)
    other = tmp_path / "other"
    train(cfg, T.SPEC, other, until=2)
    train(cfg, T.SPEC, other, resume=True)
    state, ref = T.model_state(other), T.model_state(full)
    assert not all(torch.equal(state[k], ref[k]) for k in ref)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = T.toy_config(steps=6, checkpoint_every=2, method__nan_at_step=4)
    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, T.SPEC, run)
    msg = str(err.value)
    assert "non-finite loss at step 4" in msg and "loss=nan" in msg and "last.pt (step 2)" in msg
    assert "feat_std" not in msg  # only the non-finite scalars are named
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2 and not (run / "backbone.safetensors").exists()
    ref = tmp_path / "ref"
    train(cfg, T.SPEC, ref, until=2)
    assert_same_state(ckpt["model"], T.model_state(ref))
    assert max(losses(run)) == 3


def test_non_finite_leaves_checkpoint_unchanged_bytes(tmp_path):
    run = tmp_path / "nan"
    seen = {}

    def snapshot(ctx):  # runs after step 3, before step 4 turns NaN
        if ctx.step == 3:
            seen["bytes"] = (run / "checkpoints" / "last.pt").read_bytes()

    with pytest.raises(NonFiniteLossError):
        train(T.toy_config(steps=6, checkpoint_every=2, method__nan_at_step=4), T.SPEC, run,
                 callbacks=[PeriodicCallback(1, snapshot)])
    assert (run / "checkpoints" / "last.pt").read_bytes() == seen["bytes"]


def test_fresh_run_refuses_existing_checkpoint_and_corrupt_resume_is_clear(tmp_path):
    run = tmp_path / "run"
    train(T.toy_config(steps=2, checkpoint_every=1), T.SPEC, run)
    with pytest.raises(CheckpointError, match="--resume"):
        train(T.toy_config(steps=3), T.SPEC, run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"{last}.*corrupt or truncated"):
        train(T.toy_config(steps=3), T.SPEC, run, resume=True)


def test_callbacks_and_run_folder(tmp_path):
    calls = []

    def probe(ctx):
        calls.append((ctx.step, ctx.method.training))
        ctx.method.eval()
        return {"acc": 0.5}

    run = tmp_path / "run"
    train(T.toy_config(steps=4, log_every=2), T.SPEC, run, callbacks=[PeriodicCallback(2, probe, "probe")])
    assert calls == [(2, True), (4, True)]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "grad_norm", "feat_std", "samples_per_s"} <= set(records[0])
    assert [r["step"] for r in records if "probe/acc" in r] == [2, 4]
    assert yaml.safe_load((run / "config.yaml").read_text())["method"]["dropout"] == 0.2
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())


def test_cli_in_process(tmp_path, monkeypatch, capsys):
    from contrast3d.commands import pretrain as command
    from contrast3d.methods import METHODS

    monkeypatch.setitem(METHODS, "toy", T.SPEC)
    import argparse
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    out = tmp_path / "run"
    base = ["pretrain", "toy", "--out", str(out), "--no-progress", "--set", "loader.num_workers=0"]
    args = parser.parse_args(base + ["--data", "x", "--steps", "2", "--device", "cpu"])
    assert args.func(args) == 0
    assert "backbone" in capsys.readouterr().out
    args = parser.parse_args(base + ["--resume", "--steps", "3"])  # config.yaml of the run is reused
    assert args.func(args) == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    args = parser.parse_args(base + ["--resume", "--steps", "4", "--set", "method.nan_at_step=4"])
    assert args.func(args) == 3
    assert "non-finite loss at step 4" in capsys.readouterr().err
    from contrast3d.errors import DataError
    with pytest.raises(DataError, match="unknown pre-training method"):
        command.run(parser.parse_args(["pretrain", "tyo", "--out", str(out), "--data", "x"]))
