"""Issue 16, items 2 and 5: logs a person can follow (start summary, plain progress lines off a
terminal, ``train.log``, ``run_info.json``, announced callbacks, TensorBoard tags) and CPU-aware
warnings (warm-up as long as the run, a GPU-scale config on a CPU)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch.utils.tensorboard  # noqa: F401  (its one-time import cost outside the tests' timings)

sys.path.insert(0, str(Path(__file__).resolve().parent / "engine"))

import engine_toy as T  # noqa: E402

import contrast3d  # noqa: E402
from contrast3d.engine import logging as L  # noqa: E402
from contrast3d.engine.estimate import estimate_step_seconds, format_duration, long_run_warning, voxels_per_step  # noqa: E402
from contrast3d.engine.optim import ScheduleConfig, warmup_warning  # noqa: E402
from contrast3d.engine.run import train  # noqa: E402
from contrast3d.engine.trainer import PeriodicCallback  # noqa: E402

PLAIN = re.compile(r"^step (\d+)/8  loss [-\d.e+]+  [\d.e+-]+ s/step(  ETA .+)?$")


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    """Tests never run git; the commit comes from this stand-in."""
    monkeypatch.setattr(L, "git_commit", lambda *a, **k: "0123456789abcdef")


def test_non_tty_run_prints_plain_lines_and_writes_train_log(tmp_path, capsys):
    train(T.toy_config(progress=True, steps=8, checkpoint_every=0), T.SPEC, tmp_path / "run")
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    plain = [line for line in out.splitlines() if PLAIN.match(line)]
    assert plain and plain[-1].startswith("step 8/8") and "ETA" in plain[0]
    assert re.search(r"^model +ToyMethod: [\d,]+ parameters", out, re.M)  # the start summary, printed once
    assert out.count("steps     8 to go") == 1 and re.search(r"^device +cpu, \d+ threads?, ", out, re.M)
    assert re.search(r"^timing +[\d.e-]+ s/step", out, re.M)  # measured after the first steps
    log = (tmp_path / "run" / "train.log").read_text()
    assert "\r" not in log and "model     ToyMethod" in log and "step 8/8" in log
    assert "training result (last step): loss" in log and "finished 8 steps" in log
    # metrics.jsonl unchanged: one record per logged step with the usual keys
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert {"step", "time", "loss", "lr", "samples_per_s"} <= set(records[0])


def test_no_progress_keeps_the_console_quiet_but_logs_to_train_log(tmp_path, capsys):
    train(T.toy_config(progress=False, steps=8, checkpoint_every=0), T.SPEC, tmp_path / "run")
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if PLAIN.match(line)]
    assert len([line for line in (tmp_path / "run" / "train.log").read_text().splitlines()
                if PLAIN.match(line.split("] ", 1)[1])]) >= 2


def test_run_info_records_version_argv_and_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["contrast3d", "pretrain", "toy", "--out", "x"])
    run = tmp_path / "run"
    train(T.toy_config(steps=2, schedule__warmup_steps=0), T.SPEC, run)
    info = json.loads((run / "run_info.json").read_text())
    assert info["package_version"] == contrast3d.__version__
    assert info["argv"] == ["contrast3d", "pretrain", "toy", "--out", "x"]
    assert info["git_commit"] == "0123456789abcdef" and info["device"] == "cpu" and info["steps"] == 2
    # a resumed segment keeps the first entry
    train(T.toy_config(steps=3, schedule__warmup_steps=0), T.SPEC, run, resume=True)
    info = json.loads((run / "run_info.json").read_text())
    assert info["steps"] == 3 and info["start_step"] == 2 and info["previous"][0]["steps"] == 2


def test_git_commit_is_none_outside_a_checkout_or_on_timeout(monkeypatch):
    monkeypatch.undo()  # the real function, with subprocess.run replaced
    calls = []

    def not_a_repo(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 128, "", "fatal: not a git repository")

    def slow(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    def repo(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, "4da3a923bf68420c48a5a676cee5d9a15e997f56\n", "")

    for fake, want, where in ((not_a_repo, None, "/a"), (slow, None, "/b"),
                              (repo, "4da3a923bf68420c48a5a676cee5d9a15e997f56", "/c")):
        monkeypatch.setattr(L.subprocess, "run", fake)
        assert L.git_commit(where) == want
    assert calls[0][:4] == ["git", "-C", "/a", "rev-parse"]


def test_warmup_as_long_as_the_run_warns(tmp_path):
    assert warmup_warning(ScheduleConfig(warmup_steps=10), 10) is not None
    assert warmup_warning(ScheduleConfig(warmup_steps=9), 10) is None
    assert warmup_warning(ScheduleConfig(warmup_steps=0), 1) is None
    with pytest.warns(UserWarning, match=r"schedule.warmup_steps \(6\) >= steps \(4\)"):
        train(T.toy_config(steps=4, schedule__warmup_steps=6), T.SPEC, tmp_path / "run")
    assert "warning: schedule.warmup_steps (6) >= steps (4)" in (tmp_path / "run" / "train.log").read_text()


def _spunet_params(cfg) -> int:
    from contrast3d.models.presets import create_spunet

    return sum(p.numel() for p in create_spunet(cfg.model.preset, cfg.model.in_channels).parameters())


def test_gpu_scale_config_on_a_cpu_warns_and_the_cpu_preset_does_not():
    from contrast3d.methods import method_config

    big = method_config("pointcontrast")
    small = method_config("pointcontrast", files=["pointcontrast_cpu_small"])
    big_params, small_params = _spunet_params(big), _spunet_params(small)
    for threads in (1, 4, 16):
        big_s = estimate_step_seconds(big_params, voxels_per_step(big), threads, "cpu")
        small_s = estimate_step_seconds(small_params, voxels_per_step(small), threads, "cpu")
        text = long_run_warning("cpu", big.steps, big_s, method_name="pointcontrast", threads=threads)
        assert text is not None and "--config pointcontrast_cpu_small" in text and " h " in text
        assert long_run_warning("cpu", small.steps, small_s, method_name="pointcontrast", threads=threads) is None
        assert long_run_warning("cuda", big.steps, big_s, method_name="pointcontrast") is None
    # the laptop: 25.9 s/step measured x 60000 steps
    text = long_run_warning("cpu", 60000, 25.9, method_name="pointcontrast", measured=True, threads=8)
    assert text is not None and "~432 h" in text and "measured" in text
    assert estimate_step_seconds(10**6, None, 4, "cpu") is None and estimate_step_seconds(10**6, 1e4, 4, "cuda") is None
    assert [format_duration(s) for s in (45, 1500, 3600 * 7.2, 3600 * 430)] == ["45 s", "25 min", "7.2 h", "430 h"]


def test_measured_time_warning_fires_during_a_slow_cpu_run(tmp_path, monkeypatch):
    import contrast3d.engine.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "long_run_warning",
                        lambda *a, measured=False, **k: "slow run" if measured else None)
    with pytest.warns(UserWarning, match="slow run"):
        train(T.toy_config(steps=6), T.SPEC, tmp_path / "run")


def test_callbacks_announce_themselves_and_tensorboard_tags(tmp_path, capsys):
    cb = PeriodicCallback(3, lambda ctx: {"mIoU": 0.25}, "val")
    train(T.toy_config(steps=6, progress=False, checkpoint_every=0), T.SPEC, tmp_path / "run", callbacks=[cb])
    out = capsys.readouterr().out
    assert "val at step 3 ..." in out and "val at step 6: mIoU 0.25" in out
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val/mIoU"] for r in records if "val/mIoU" in r] == [0.25, 0.25]  # jsonl keys unchanged
    assert "val at step 6: mIoU 0.25" in (tmp_path / "run" / "train.log").read_text()
    assert L.tensorboard_tag("val/mIoU") == "val/mIoU" and L.tensorboard_tag("loss") == "train/loss"
    L.record_final_results(tmp_path / "run", {"mIoU": 0.5, "per_class": [0.1], "label_budget": "1%"}, step=6,
                           hparams={"optim": {"lr": 0.1}, "data": {"feat_keys": ["color"]}}, label="final evaluation")
    assert "final evaluation: mIoU 0.5" in (tmp_path / "run" / "train.log").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/mIoU", "train/loss", "final/loss", "final/mIoU"} <= tags and "train/val/mIoU" not in tags
    assert (tmp_path / "run" / "tb" / "hparams_final").is_dir()


def test_progress_helper_prints_plain_lines_off_a_terminal(tmp_path, capsys):
    assert list(L.progress(range(3), desc="evaluating", unit="scenes", run_dir=tmp_path)) == [0, 1, 2]
    out = capsys.readouterr().out
    assert "\r" not in out and "evaluating: 1/3 scenes" in out and "evaluating: 3/3 scenes" in out
    assert "evaluating: 3/3 scenes" in (tmp_path / L.RUN_LOG).read_text()
