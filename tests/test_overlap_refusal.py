"""Train/validation leaks are refused (fine-tuning of every task, probes), or run only with an explicit
flag and then marked loudly in every output (issue 16, item 1)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contrast3d.cli import main
from contrast3d.errors import DataError
from contrast3d.evaluation.finetune_tasks import write_task_results
from contrast3d.evaluation.probe_data import build_probe, pretrain_probe_hook, probe_backbone
from contrast3d.evaluation.semseg_data import resolve_scene_split, scene_overlap

TINY = ["--set", "model.preset=spunet-tiny", "--set", "data.grid_size=0.1", "--set", "data.max_points=0",
        "--set", "loader.batch_size=1", "--set", "loader.num_workers=0", "--set", "checkpoint_every=0",
        "--set", "schedule.warmup_steps=0"]


def scene(folder: Path, seed: int, n: int = 400) -> Path:
    """A tiny labelled Pointcept scene (coord, color, normal, segment20, instance) in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    np.save(folder / "coord.npy", rng.uniform(0, 3, (n, 3)).astype(np.float32))
    np.save(folder / "color.npy", rng.integers(0, 256, (n, 3)).astype(np.uint8))
    normal = np.zeros((n, 3), np.float32)
    normal[:, 2] = 1
    np.save(folder / "normal.npy", normal)
    np.save(folder / "segment20.npy", rng.integers(0, 3, n).astype(np.int32))
    np.save(folder / "instance.npy", rng.integers(0, 4, n).astype(np.int32))
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the split itself
def test_single_scene_is_refused_unless_allowed(tmp_path):
    scene(tmp_path / "one" / "scene0007_00", 1)
    with pytest.raises(DataError) as err:
        resolve_scene_split(tmp_path / "one")
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "one")) and "\n" not in msg
    assert "scene0007_00" in msg and "leak" in msg and "train/ + val/" in msg and "--allow-overlap" in msg
    split = resolve_scene_split(tmp_path / "one", allow_overlap=True)
    assert split.mode == "single" and split.overlap == ["scene0007_00"] and split.train == split.val
    leak = split.leak()
    assert leak is not None and leak["count"] == 1 and "scene0007_00" in leak["warning"]
    assert json.loads(json.dumps(split.to_dict()))["overlap"] == ["scene0007_00"]


def test_folders_layout_overlap_by_name_link_or_content(tmp_path):
    root = tmp_path / "tv"
    scene(root / "train" / "a", 1)
    scene(root / "train" / "b", 2)
    scene(root / "val" / "c", 3)
    clean = resolve_scene_split(root)  # distinct scenes: no overlap, no error
    assert clean.mode == "folders" and clean.overlap == [] and clean.leak() is None
    shutil.copytree(root / "train" / "b", root / "val" / "b_copy")  # same content, other name
    with pytest.raises(DataError, match=r"1 validation scene\(s\) are also training scenes: b_copy "
                                        r"\(same coord.npy as training scene b\)"):
        resolve_scene_split(root)
    shutil.rmtree(root / "val" / "b_copy")
    scene(root / "val" / "a", 9)  # same name, different content
    os.symlink(root / "train" / "b", root / "val" / "link_to_b")
    split = resolve_scene_split(root, allow_overlap=True)
    found = scene_overlap(split.train, split.val)
    assert found == {"a": "same name", "link_to_b": "same folder as training scene b"}
    with pytest.raises(DataError, match=str(root)):
        resolve_scene_split(root)
    allowed = resolve_scene_split(root, allow_overlap=True)
    assert allowed.overlap == ["a", "link_to_b"] and allowed.leak()["count"] == 2


def test_fraction_split_refuses_a_duplicated_scene(tmp_path):
    for i, name in enumerate(("s0", "s1", "s2", "s3")):
        scene(tmp_path / "flat" / name, i)
    assert resolve_scene_split(tmp_path / "flat").overlap == []
    shutil.copytree(tmp_path / "flat" / "s0", tmp_path / "flat" / "s9")  # sorts last: a validation scene
    with pytest.raises(DataError, match="s9 \\(same coord.npy as training scene s0\\)"):
        resolve_scene_split(tmp_path / "flat")


# ----------------------------------------------------------------------------- fine-tuning commands
@pytest.mark.parametrize("task", ["semseg", "insseg", "det"])
def test_finetune_refuses_one_scene_on_one_line(task, tmp_path, capsys):
    scene(tmp_path / "one" / "s0", 1)
    out = tmp_path / "run"
    code = main(["finetune", task, "--data", str(tmp_path / "one"), "--init", "scratch", "--out", str(out),
                 "--device", "cpu", "--no-progress", "--steps", "1", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(tmp_path / "one") in err[0] and "leak" in err[0] and "--allow-overlap" in err[0]
    assert not (out / "results.json").exists() and not (out / "checkpoints").exists()


def test_finetune_with_allow_overlap_marks_every_output(tmp_path, capsys):
    scene(tmp_path / "one" / "s0", 1)
    out = tmp_path / "run"
    code = main(["finetune", "semseg", "--data", str(tmp_path / "one"), "--init", "scratch", "--out", str(out),
                 "--device", "cpu", "--no-progress", "--steps", "1", "--allow-overlap", *TINY,
                 "--set", "method.eval_fragments=1"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.count("WARNING: train/validation leak") >= 2  # before training and after the results
    assert "[LEAKED" in captured.out.strip().splitlines()[-1]
    res = json.loads((out / "results.json").read_text())
    assert res["leak"]["overlap"] == ["s0"] and res["scene_split"] == "single" and "leak" in res["warning"]
    assert (out / "results.txt").read_text().startswith("WARNING: train/validation leak")
    assert json.loads((out / "scene_split.json").read_text())["overlap"] == ["s0"]


def test_task_results_txt_carries_the_warning(tmp_path):
    res = {"task": "det", "val_scenes": 1, "warning": "train/validation leak: 1 of the 1 ..."}
    _, txt = write_task_results(tmp_path, res, "table")
    assert txt.read_text().splitlines()[0] == "WARNING: train/validation leak: 1 of the 1 ..."
    _, txt = write_task_results(tmp_path / "clean", {"task": "det"}, "table")
    assert not txt.read_text().startswith("WARNING")


# ----------------------------------------------------------------------------- probes
def test_probes_refuse_overlap_and_warn_when_allowed(tmp_path, capsys):
    from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
    from contrast3d.models.pretrained import PretrainedRecord, save_pretrained

    scene(tmp_path / "one" / "s0", 1)
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(DataError, match=f"{tmp_path / 'one'}: only one scene \\(s0\\)"):
        probe_backbone(missing, tmp_path / "one")  # the leak is found before the weights are read
    with pytest.raises(DataError, match="leak"):
        build_probe(tmp_path / "one", 0.25, ["color", "normal"])
    with pytest.raises(DataError, match="leak"):
        pretrain_probe_hook(tmp_path / "one", every=1)
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(preset="spunet-tiny", in_channels=6))
    init = save_pretrained(net, tmp_path / "bb" / "backbone.safetensors",
                           PretrainedRecord(**spunet_record(net, "spunet-tiny", ["color", "normal"], 0.25)))
    res = probe_backbone(init, tmp_path / "one", num_classes=3, allow_overlap=True)
    assert res["leak_scenes"] == 1 and "leak" in res["warning"] and 0.0 <= res["probe/linear_miou"] <= 1.0
    assert "WARNING: train/validation leak" in capsys.readouterr().err
