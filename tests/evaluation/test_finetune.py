"""Semantic-segmentation fine-tuning and evaluation on tiny simulated scenes (CPU, spunet-tiny)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contrast3d.config import preset_file
from contrast3d.errors import DataError
from contrast3d.evaluation.finetune import finetune_semseg, load_finetune_config
from contrast3d.evaluation.semseg import evaluate_semseg, predict_scene
from contrast3d.evaluation.semseg_data import LabelledGridSample, SemsegDataset, resolve_scene_split
from contrast3d.evaluation.semseg_model import SemsegConfig, SemsegModel, SemsegModelConfig, load_backbone_init
from contrast3d.evaluation.splits import LabelBudget, LabelSplit
from contrast3d.io.pointcept import read_pointcept_scene, write_pointcept_scene
from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
from contrast3d.models.pretrained import PretrainedRecord, read_safetensors, save_pretrained
from contrast3d.structures import PointCloud

#: Tiny, fast settings: 20 cm voxels, crops of 1500 voxels, no workers, no checkpoints mid-run.
TINY = ["model.preset=spunet-tiny", "data.grid_size=0.2", "data.max_points=1500", "loader.batch_size=2",
        "loader.num_workers=0", "checkpoint_every=0", "log_every=1", "method.eval_fragments=1",
        "optim.lr=0.05", "schedule.warmup_steps=0", "method.bn_momentum=0.1"]
NO_AUG = ["data.rotate_z=false", "data.tilt=0", "data.scale=[1.0,1.0]", "data.flip=0", "data.jitter=0",
          "data.dropout=0", "data.color_aug=false", "data.max_points=0"]


@pytest.fixture(scope="module")
def ft_root(simulated) -> Path:
    """Four simulated scenes under ``<root>/pointcept/``: 3 train + 1 val by the deterministic split."""
    return simulated("ft_scenes", (21, 22, 23, 24))


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> Path:
    """A spunet-tiny backbone exported by the engine, as pre-training leaves it."""
    torch.manual_seed(123)
    net = build_backbone(BackboneConfig(preset="spunet-tiny", in_channels=6))
    path = tmp_path_factory.mktemp("pre") / "backbone.safetensors"
    return _export(net, path)


def _export(net, path, feat_keys=("color", "normal")):
    return save_pretrained(net, path, PretrainedRecord(**spunet_record(net, "spunet-tiny", list(feat_keys), 0.2)))


def _model(num_classes: int = 20) -> SemsegModel:
    return SemsegModel(SemsegConfig(), SemsegModelConfig(preset="spunet-tiny", num_classes=num_classes))


# ----------------------------------------------------------------------------- data
def test_scene_split_folders_and_deterministic_fraction(tmp_path):
    for name in ("b", "a", "c", "e", "d"):
        (tmp_path / "flat" / name).mkdir(parents=True)
        np.save(tmp_path / "flat" / name / "coord.npy", np.full((1, 3), ord(name), np.float32))  # distinct scenes
    split = resolve_scene_split(tmp_path / "flat", 0.2)
    assert split.mode == "fraction" and [p.name for p in split.train] == ["a", "b", "c", "d"]
    assert [p.name for p in split.val] == ["e"]
    for part, names in (("train", "xy"), ("val", "z")):
        for name in names:
            (tmp_path / "tv" / part / name).mkdir(parents=True)
            np.save(tmp_path / "tv" / part / name / "coord.npy", np.full((1, 3), ord(name), np.float32))
    split = resolve_scene_split(tmp_path / "tv")
    assert split.mode == "folders" and [p.name for p in split.val] == ["z"] and len(split.train) == 2
    with pytest.raises(DataError, match="only one scene"):
        resolve_scene_split(tmp_path / "tv" / "val")
    single = resolve_scene_split(tmp_path / "tv" / "val", allow_overlap=True)
    assert single.mode == "single" and single.train == single.val and single.overlap == ["z"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Pointcept scene"):
        resolve_scene_split(tmp_path / "empty")


def test_label_split_reproducible_and_masks_labels(ft_root):
    train = resolve_scene_split(ft_root).train
    ds = SemsegDataset(train)
    a = ds.make_label_split(LabelBudget.parse("20pts"), seed=3)
    b = SemsegDataset(train).make_label_split(LabelBudget.parse("20pts"), seed=3)
    c = ds.make_label_split(LabelBudget.parse("20pts"), seed=4)
    assert a == b and a.points != c.points and set(a.scenes) == set(ds.names)
    ds.apply_split(a)
    for i in range(len(ds)):
        seg = ds.get_sample(i, np.random.default_rng(0)).segment
        full = ds.raw(i).segment
        kept = np.flatnonzero(seg >= 0)
        assert kept.tolist() == a.points[ds.names[i]] and len(kept) == 20
        assert np.array_equal(seg[kept], full[kept])
    scenes = SemsegDataset(train)
    split = scenes.make_label_split(LabelBudget.parse("50%"), seed=0)
    scenes.apply_split(split)
    assert len(scenes) == 2 and scenes.names == split.scenes and not split.points


def test_labelled_grid_sample_keeps_sparse_labels():
    rng = np.random.default_rng(0)
    coord = np.repeat(np.arange(50, dtype=np.float32)[:, None] * 0.1, 3, axis=1)  # 50 voxels
    coord = np.repeat(coord, 10, axis=0) + rng.uniform(0, 0.05, (500, 3)).astype(np.float32)
    segment = np.full(500, -1, np.int64)
    segment[::10] = 3  # one labelled point per voxel
    out = LabelledGridSample(0.1)(PointCloud(coord=coord, segment=segment), rng)
    assert len(out) == 50 and (out.segment == 3).all()


# ----------------------------------------------------------------------------- evaluation
def test_predictions_cover_every_original_point(ft_root):
    scene = read_pointcept_scene(resolve_scene_split(ft_root).val[0])
    model = _model().net.eval()
    pred = predict_scene(model, scene, grid_size=0.2, max_fragments=2)
    assert pred.shape == (len(scene),) and pred.min() >= 0 and pred.max() < 20
    preds: dict[str, np.ndarray] = {}
    scores = evaluate_semseg(model, [scene], num_classes=20, grid_size=0.2, max_fragments=1, predictions=preds)
    assert preds[scene.name].shape == (len(scene),) and 0.0 <= scores.all_acc <= 1.0
    assert len(scores.iou) == 20 and scores.class_names[0] == "wall"


# ----------------------------------------------------------------------------- init from pre-training
def test_init_loads_backbone_and_rejects_mismatched_shapes(tiny_backbone, tmp_path):
    model = _model()
    report = load_backbone_init(model.net, tiny_backbone)
    state = read_safetensors(tiny_backbone)
    own = model.net.state_dict()
    assert set(report.loaded) == set(state) and report.missing == []  # final.* is skipped, not missing
    assert not report.unexpected and all(torch.equal(own[k], v) for k, v in state.items())
    wide = tmp_path / "wide.safetensors"
    _export(build_backbone(BackboneConfig(preset="spunet-tiny", in_channels=3)), wide, ["color"])
    with pytest.raises(DataError, match="wide.safetensors.*in_channels=3.*--set model.in_channels=3"):
        load_backbone_init(_model().net, wide)
    with pytest.raises(DataError, match="wide.safetensors"):  # through the run, before any scene is read
        finetune_semseg(tmp_path, wide, tmp_path / "run", overrides=TINY, steps=1, device="cpu", progress=False)
    with pytest.raises(DataError, match="missing.safetensors"):
        load_backbone_init(_model().net, tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- whole runs
def test_finetune_from_pretrained_backbone_with_point_budget(ft_root, tiny_backbone, tmp_path):
    out = tmp_path / "run"
    res = finetune_semseg(ft_root, tiny_backbone, out, "20pts", overrides=TINY, steps=3, seed=5, device="cpu",
                          eval_every=2, progress=False)
    saved = json.loads((out / "results.json").read_text())
    for key in ("mIoU", "mAcc", "allAcc", "per_class", "label_budget", "seed", "init", "steps", "minutes"):
        assert key in saved, key
    assert saved["label_budget"] == "20pts" and saved["seed"] == 5 and saved["steps"] == 3
    assert saved["init"] == str(tiny_backbone) and res["init_loaded_tensors"] == len(read_safetensors(tiny_backbone))
    assert saved["train_scenes"] == 3 and saved["val_scenes"] == 1 and saved["labelled"]["points"] == 60
    assert "wall" in (out / "results.txt").read_text()
    split = LabelSplit.load(out / "label_split.json")
    assert all(len(v) == 20 for v in split.points.values())
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "val/mIoU" in r] == [2] and any("loss" in r for r in logs)
    init = json.loads((out / "init.json").read_text())
    assert init["missing"] == [] and init["unexpected"] == []
    # same seed -> same split (a different run folder, one step)
    finetune_semseg(ft_root, "scratch", tmp_path / "again", "20pts", overrides=TINY, steps=1, seed=5, device="cpu",
                    progress=False)
    assert LabelSplit.load(tmp_path / "again" / "label_split.json") == split


def _cli(argv: list[str]) -> int:
    from contrast3d.commands import finetune as finetune_command

    parser = argparse.ArgumentParser(prog="contrast3d")
    finetune_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_scratch_run_then_resume(ft_root, tmp_path, capsys):
    out = tmp_path / "cli"
    sets = [x for s in TINY for x in ("--set", s)]
    base = ["finetune", "semseg", "--data", str(ft_root), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert _cli(base + ["--init", "scratch", "--labels", "50%", "--steps", "2", "--config", "semseg_cpu_small"]
                + sets) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "allAcc" in printed
    assert json.loads((out / "results.json").read_text())["steps"] == 2
    with pytest.raises(DataError, match="checkpoint"):  # no silent overwrite of a finished run
        _cli(base + ["--init", "scratch", "--steps", "2"] + sets)
    assert _cli(["finetune", "semseg", "--out", str(out), "--resume", "--steps", "4", "--no-progress"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["steps"] == 4 and saved["label_budget"] == "50%" and saved["train_scenes"] == 2
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_overfits_one_scene(ft_root, tmp_path):
    """A model trained on one (cropped, four-class) scene segments that scene well."""
    cloud = read_pointcept_scene(resolve_scene_split(ft_root).train[0])
    keep = np.isin(cloud.segment, [0, 1, 7, 9]) & (cloud.coord[:, 0] < 3.5)
    part = cloud.select(keep)
    part.meta = {}
    write_pointcept_scene(tmp_path / "one" / "scene", part)
    res = finetune_semseg(tmp_path / "one", "scratch", tmp_path / "run",
                          overrides=TINY + NO_AUG + ["data.grid_size=0.1", "loader.batch_size=1", "optim.lr=0.1",
                                                   "data.allow_overlap=true"],
                          steps=80, device="cpu", progress=False)
    assert res["scene_split"] == "single" and res["leak"]["overlap"] == ["scene"] and res["mIoU"] > 0.5, res["mIoU"]


def test_presets_resolve():
    gpu = load_finetune_config()
    assert (gpu.model.preset, gpu.data.grid_size, gpu.optim.lr, gpu.loader.batch_size) == ("spunet34", 0.02, 0.1, 8)
    assert gpu.model.in_channels == 6 and gpu.model.num_classes == 20 and gpu.method_name == "semseg"
    cpu = load_finetune_config(files=["semseg_cpu_small"], overrides=["method.labels=1%"])
    assert cpu.model.preset == "spunet-tiny" and cpu.data.grid_size == 0.05 and cpu.method.labels == "1%"
    assert preset_file("semseg_cpu_small.yaml", "finetune").is_file()
    with pytest.raises(DataError, match="shipped finetune presets"):
        preset_file("nope", "finetune")
