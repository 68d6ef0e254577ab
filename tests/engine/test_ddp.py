"""A 2-process gloo DDP run under torchrun (through the CLI) matches one process on the combined batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import engine_toy as T
import pytest
import torch

from contrast3d.engine.checkpoint import load_checkpoint
from contrast3d.engine.run import train

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Deterministic sample content; no dropout / random point sampling (those use per-rank streams).
SETS = ["method.dropout=0", "method.sample_points=0", "optim.lr=0.5", "optim.momentum=0.9",
        "optim.weight_decay=0", "schedule.name=constant", "loader.num_workers=0", "checkpoint_every=1", "seed=3"]


@pytest.mark.slow
def test_two_process_ddp_equals_single_process_combined_batch(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "run_toy.py"), "cli", "--out", str(out), "--data", "x", "--steps", "2",
           "--device", "cpu", "--no-progress", "--set", "loader.batch_size=2"]
    for s in SETS:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 2
    assert (out / "backbone.safetensors").is_file() and (out / "metrics.jsonl").is_file()

    # One process, batch 4 = the union of the two ranks' batches of 2 (same permutation).
    cfg = T.toy_config(steps=2, loader__batch_size=4, loader__num_workers=0, checkpoint_every=1,
                       method__dropout=0.0, method__sample_points=0, optim__lr=0.5, optim__momentum=0.9,
                       optim__weight_decay=0.0, optim__clip_grad_norm=None, schedule__name="constant",
                       schedule__warmup_steps=0)
    ref = tmp_path / "single"
    train(cfg, T.SPEC, ref, until=1)
    after1 = T.model_state(ref)
    train(cfg, T.SPEC, ref, resume=True)
    single = T.model_state(ref)
    for k, v in single.items():
        assert torch.allclose(ckpt["model"][k].float(), v.float(), rtol=1e-5, atol=1e-6), k
    # and the first step really moved the weights (gradients are not trivially zero)
    assert not torch.allclose(after1["net.0.weight"], single["net.0.weight"])
