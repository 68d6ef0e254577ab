"""Issue 16 item 5: the final evaluation and the probes announce themselves and show progress (plain lines
when stdout is no terminal, nothing with progress off); final results land in ``train.log`` and as
``final/<metric>`` TensorBoard scalars."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrast3d.evaluation.collapse import collapse_stats
from contrast3d.evaluation.finetune import finetune_semseg
from contrast3d.evaluation.probes import ProbeCallback, extract_features
from contrast3d.evaluation.semseg import evaluate_semseg, raw_scenes
from contrast3d.evaluation.semseg_model import SemsegConfig, SemsegModel, SemsegModelConfig
from contrast3d.io.pointcept import write_pointcept_scene
from contrast3d.structures import PointCloud, collate_points

TINY = ["model.preset=spunet-tiny", "data.grid_size=0.25", "data.max_points=600", "loader.batch_size=2",
        "loader.num_workers=0", "checkpoint_every=0", "log_every=1", "method.eval_fragments=1",
        "method.eval_every=0", "schedule.warmup_steps=0"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _cloud(seed: int, n: int = 400) -> PointCloud:
    rng = np.random.default_rng(seed)
    coord = rng.uniform(0, 3, (n, 3)).astype(np.float32)
    return PointCloud(coord=coord, color=rng.uniform(0, 1, (n, 3)).astype(np.float32),
                      normal=np.tile(np.float32([0, 0, 1]), (n, 1)), segment=(coord[:, 2] > 1.5).astype(np.int64),
                      meta={"name": f"s{seed}"})


def _scenes(root: Path) -> Path:
    for part, seeds in (("train", (0, 1)), ("val", (2, 3))):
        for s in seeds:
            write_pointcept_scene(root / part / f"s{s}", _cloud(s))
    return root


def _tb_scalar_tags(tb: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tags = set()
    for f in tb.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(f)).Load():
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_final_evaluation_announced_logged_and_in_tensorboard(tmp_path, capsys):
    out = tmp_path / "run"
    res = finetune_semseg(_scenes(tmp_path / "data"), "scratch", out, overrides=TINY, steps=2, seed=1,
                          device="cpu", progress=False)
    printed = capsys.readouterr()
    assert "evaluating 2 validation scenes" in printed.out
    assert "evaluating:" not in printed.out + printed.err  # progress off: no scene-by-scene lines
    log = (out / "train.log").read_text()
    assert "evaluating 2 validation scenes (every original point, 1 fragment) ..." in log
    line = next(x for x in log.splitlines() if "final evaluation:" in x)
    assert f"mIoU {res['mIoU']:.4g}" in line and "allAcc" in line and "steps" not in line
    assert log.index("evaluating 2 validation") < log.index("final evaluation:")
    tags = _tb_scalar_tags(out / "tb")
    assert {"final/mIoU", "final/mAcc", "final/allAcc"} <= tags
    assert "final/seed" not in tags  # only the metrics, not every number of results.json
    assert "_hparams_/session_start_info" in tags
    assert (out / "results.txt").read_text().startswith("semantic segmentation, 2 validation scenes")


def test_evaluation_progress_lines_when_not_a_terminal(tmp_path, capsys):
    _scenes(tmp_path)
    from contrast3d.data.scene_dataset import SceneDataset

    val = SceneDataset(sorted((tmp_path / "val").iterdir()), None)
    scenes = raw_scenes(val)
    assert len(scenes) == 2 and [c.name for c in scenes] == [c.name for c in scenes]  # sized, re-iterable
    net = SemsegModel(SemsegConfig(), SemsegModelConfig(preset="spunet-tiny", num_classes=2)).net
    kw = {"num_classes": 2, "grid_size": 0.25, "max_fragments": 1}
    quiet = evaluate_semseg(net, scenes, **kw)
    assert capsys.readouterr().out == ""
    shown = evaluate_semseg(net, scenes, progress=True, run_dir=tmp_path / "run", **kw)
    lines = capsys.readouterr().out.splitlines()
    assert [x.split("  ")[0] for x in lines] == ["evaluating: 1/2 scenes", "evaluating: 2/2 scenes"]
    assert "evaluating: 2/2 scenes" in (tmp_path / "run" / "train.log").read_text()
    assert shown.miou == quiet.miou


def test_probe_feature_pass_progress_and_train_val_split(capsys):
    def batch(*seeds: int):
        clouds = [_cloud(s, 200) for s in seeds]
        for c in clouds:
            c.grid_coord = (c.coord / 0.25).astype(np.int64)
        return collate_points(clouds, ("color", "normal"))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 4)

        def forward(self, b):
            return self.lin(b.feat)

    torch.manual_seed(0)
    net, train, val = Net(), [batch(0, 1)], [batch(2)]
    quiet = ProbeCallback(train, val, 2, linear_kwargs={"steps": 5}).evaluate(net)
    assert capsys.readouterr().out == ""
    shown = ProbeCallback(train, val, 2, linear_kwargs={"steps": 5}, progress=True).evaluate(net)
    lines = capsys.readouterr().out.splitlines()
    assert [x.split("  ")[0] for x in lines] == ["probe features: 1/2 batches", "probe features: 2/2 batches"]
    # the two-scene train batch and the val batch were told apart: collapse stats are the val scene's
    val_feats = extract_features(net, val)[0][0]
    assert shown["probe/feat_std"] == pytest.approx(collapse_stats(val_feats, prefix="probe/")["probe/feat_std"])
    assert {k: v for k, v in shown.items() if k != "probe/seconds"} == \
        {k: v for k, v in quiet.items() if k != "probe/seconds"}
