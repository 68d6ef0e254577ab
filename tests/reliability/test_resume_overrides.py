"""Item 2 of issue 17: ``--resume --set optim.lr=...`` is applied from the resume step and recorded
with its step (config.yaml, later checkpoints, the console; metrics.jsonl shows the new values);
changes that cannot apply are refused."""
from __future__ import annotations

import json
import shutil

import pytest
import tiny_data as T
import yaml

from contrast3d.engine.checkpoint import load_checkpoint
from contrast3d.models.pretrained import read_safetensors

CONSTANT = ["--set", "schedule.name=constant", "--set", "schedule.warmup_steps=0"]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_new_lr_and_momentum_are_applied_from_the_resume_step_and_recorded(tiny, cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    code, _, err = cli(["pretrain", "pointcontrast", "--data", tiny["pairs"], "--out", a, "--steps", "2",
                        *T.TINY_PRETRAIN, *CONSTANT])
    assert code == 0, err
    shutil.copytree(a, b)
    base_lr = yaml.safe_load((a / "config.yaml").read_text())["optim"]["lr"]
    assert base_lr != pytest.approx(0.01)
    code, out, err = cli(["pretrain", "pointcontrast", "--out", a, "--resume", "--steps", "4", "--no-progress",
                          "--set", "optim.lr=0.01", "--set", "optim.momentum=0.5"])
    assert code == 0, err
    assert "changed on resume (applied from step 2; recorded in config.yaml)" in out and "optim.lr" in out
    code, _, err = cli(["pretrain", "pointcontrast", "--out", b, "--resume", "--steps", "4", "--no-progress"])
    assert code == 0, err

    lr_a = {r["step"]: r["lr"] for r in _metrics(a) if "lr" in r}
    lr_b = {r["step"]: r["lr"] for r in _metrics(b) if "lr" in r}
    assert lr_a[1] == lr_a[2] == pytest.approx(base_lr) and lr_a[3] == lr_a[4] == pytest.approx(0.01)
    assert lr_b[3] == lr_b[4] == pytest.approx(base_lr)  # without the override nothing changes
    state_a = read_safetensors(a / "backbone.safetensors")
    state_b = read_safetensors(b / "backbone.safetensors")
    assert any(not (state_a[k] == state_b[k]).all() for k in state_a)  # the new rate really trained

    cfg = yaml.safe_load((a / "config.yaml").read_text())
    assert cfg["optim"]["lr"] == pytest.approx(0.01) and cfg["optim"]["momentum"] == pytest.approx(0.5)
    changes = {c["key"]: c for c in cfg["resume_changes"]}
    assert set(changes) == {"optim.lr", "optim.momentum", "steps"}
    assert all(c["step"] == 2 for c in changes.values())
    assert changes["optim.lr"]["from"] == pytest.approx(base_lr) and changes["optim.lr"]["to"] == pytest.approx(0.01)
    assert changes["steps"]["from"] == 2 and changes["steps"]["to"] == 4
    ckpt = load_checkpoint(a / "checkpoints" / "last.pt")
    assert ckpt["config"]["resume_changes"] == cfg["resume_changes"]
    assert all(g["momentum"] == 0.5 for g in ckpt["optimizer"]["param_groups"])
    assert yaml.safe_load((b / "config.yaml").read_text())["resume_changes"] == [
        {"step": 2, "key": "steps", "from": 2, "to": 4}]

    # the history survives a later resume, which adds its own change
    code, _, err = cli(["pretrain", "pointcontrast", "--out", a, "--resume", "--steps", "5", "--no-progress"])
    assert code == 0, err
    history = yaml.safe_load((a / "config.yaml").read_text())["resume_changes"]
    assert history[:3] == cfg["resume_changes"] and history[3] == {"step": 4, "key": "steps", "from": 4, "to": 5}


def test_a_refused_change_leaves_the_run_untouched(tiny, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    config, last = (run / "config.yaml").read_bytes(), (run / "checkpoints" / "last.pt").read_bytes()
    for setting in ("model.preset=spunet18", "seed=3", "loader.batch_size=2", "optim.name=adamw"):
        code, _, err = cli(["pretrain", "pointcontrast", "--out", run, "--resume", "--steps", "3", "--no-progress",
                            "--set", setting])
        key = setting.split("=")[0]
        assert code == 2 and len(err.strip().splitlines()) == 1 and f"{key} cannot change on --resume" in err, err
    assert (run / "config.yaml").read_bytes() == config
    assert (run / "checkpoints" / "last.pt").read_bytes() == last
