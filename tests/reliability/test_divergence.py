"""Item 1 of issue 17: a diverging run exports nothing, stops non-zero on one line, and its last good
checkpoint is good; ``probe`` / ``finetune`` / ``viz`` refuse non-finite weights on one line."""
from __future__ import annotations

import shutil

import tiny_data as T
import torch

from contrast3d.engine.checkpoint import load_checkpoint
from contrast3d.models.pretrained import diverged_tensors, load_pretrained

HUGE_LR = ["--set", "optim.lr=1e8", "--set", "optim.clip_grad_norm=null", "--set", "schedule.warmup_steps=0",
           "--set", "checkpoint_every=1"]


def test_lr_1e8_stops_non_zero_exports_nothing_and_keeps_a_finite_checkpoint(tiny, cli, tmp_path):
    run = tmp_path / "div"
    code, _, err = cli(["pretrain", "pointcontrast", "--data", tiny["pairs"], "--out", run, "--steps", "8",
                        *T.TINY_PRETRAIN, *HUGE_LR])
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: non-finite") and "last good checkpoint" in lines[0]
    assert not any((run / f"backbone.{ext}").exists() for ext in ("safetensors", "json", "pth"))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 1 <= ckpt["step"] < 8 and f"(step {ckpt['step']})" in lines[0]
    assert diverged_tensors(ckpt["model"]) == []  # parameters and buffers: finite, no overflow
    assert all(bool(torch.isfinite(v).all()) for v in load_pretrained(run / "checkpoints" / "last.pt")
               .model.state_dict().values() if v.is_floating_point())


def test_divergence_after_resume_never_replaces_the_good_checkpoint_or_export(tiny, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    export = (run / "backbone.safetensors").read_bytes()
    code, _, err = cli(["pretrain", "pointcontrast", "--out", run, "--resume", "--steps", "8", "--no-progress",
                        *HUGE_LR])
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1 and lines[0].startswith("error: non-finite"), err
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 2 <= ckpt["step"] < 8 and f"(step {ckpt['step']})" in lines[0]
    assert diverged_tensors(ckpt["model"]) == []
    assert (run / "backbone.safetensors").read_bytes() == export  # the earlier, good export is untouched


def test_commands_refuse_a_poisoned_training_checkpoint_on_one_line(tiny, cli, tmp_path):
    ckpt = load_checkpoint(tiny["run"] / "checkpoints" / "last.pt")
    key = next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][key][0] = float("inf")
    poisoned = tmp_path / "poisoned.pt"
    torch.save(ckpt, poisoned)
    scene = tiny["scenes"] / "scene0"
    for argv in (["probe", "--init", poisoned, "--data", tiny["scenes"]],
                 ["finetune", "semseg", "--init", poisoned, "--data", tiny["scenes"], "--out", tmp_path / "ft",
                  "--config", "semseg_cpu_small", "--set", "model.preset=spunet-tiny", "--device", "cpu"],
                 ["viz", "similarity", "--init", poisoned, "--scene", scene, "--out", tmp_path / "s.png"]):
        code, _, err = cli(argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and str(poisoned) in lines[0] and "non-finite" in lines[0], err
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "ft" / "checkpoints").exists()
