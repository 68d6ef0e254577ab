"""``contrast3d evaluate`` / ``predict`` on a tiny fine-tuned run (CPU, spunet-tiny, synthetic scenes)."""
from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contrast3d import cli
from contrast3d.evaluation import tester
from contrast3d.evaluation.finetune import finetune_semseg
from contrast3d.evaluation.metrics import segmentation_scores
from contrast3d.io.dispatch import read_any
from contrast3d.io.pointcept import write_pointcept_scene
from contrast3d.models.pretrained import load_pretrained
from contrast3d.structures import PointCloud

CLASSES = ["floor", "wall", "table", "chair"]
TINY = ["model.preset=spunet-tiny", "model.num_classes=4", f"data.class_names=[{','.join(CLASSES)}]",
        "data.grid_size=0.25", "data.max_points=0", "loader.batch_size=2", "loader.num_workers=0",
        "checkpoint_every=0", "log_every=1", "method.eval_fragments=2", "optim.lr=0.05",
        "schedule.warmup_steps=0", "method.bn_momentum=0.1"]
PALETTE = np.array([[200, 200, 200], [60, 60, 220], [220, 60, 60], [60, 200, 60]], np.float32) / 255


def _scene(seed: int, n: int = 1200, num_classes: int = 4) -> PointCloud:
    """A 4 x 4 x 2 m box of random points; the class follows the position, the colour the class."""
    rng = np.random.default_rng(seed)
    coord = rng.uniform([0, 0, 0], [4, 4, 2], (n, 3)).astype(np.float32)
    seg = np.where(coord[:, 2] < 0.3, 0, np.where(coord[:, 0] < 0.5, 1, np.where(coord[:, 1] > 2, 2, 3)))
    if num_classes > 4:  # labels the 4-class model does not know
        seg = np.where(coord[:, 1] < 0.5, num_classes - 1, seg)
    color = np.clip(PALETTE[np.minimum(seg, 3)] + rng.normal(0, 0.03, (n, 3)), 0, 1).astype(np.float32)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return PointCloud(coord=coord, color=color, normal=normal, segment=seg.astype(np.int64))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evp_data")
    for i in range(3):  # 2 train + 1 val (deterministic 80/20 split)
        write_pointcept_scene(root / f"scene{i}", _scene(i))
    return root


@pytest.fixture(scope="module")
def run_dir(data_root, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("evp_run") / "run"
    finetune_semseg(data_root, "scratch", out, overrides=TINY, steps=1, seed=3, device="cpu", progress=False)
    return out


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _has_pngs() -> bool:
    return (importlib.util.find_spec("matplotlib") is not None
            and importlib.util.find_spec("contrast3d.viz.predictions") is not None)


def test_model_export_has_head_and_backbone_export_is_kept(run_dir):
    model = load_pretrained(run_dir / "model.safetensors", name="model")
    assert model.record.num_classes == 4 and model.record.extra["task"] == "semseg"
    assert model.record.extra["class_names"] == CLASSES
    assert "final.weight" in model.model.state_dict()
    backbone = json.loads((run_dir / "backbone.json").read_text())
    assert "task" not in backbone["extra"] and backbone["num_classes"] == 4  # unchanged beside it


def test_evaluate_reproduces_the_run_miou(run_dir, data_root, tmp_path, capsys):
    out = tmp_path / "eval"
    code, printed, err = _main(["evaluate", "--model", str(run_dir), "--out", str(out), "--device", "cpu",
                                "--save-pred"], capsys)
    assert code == 0, err
    reported = json.loads((run_dir / "results.json").read_text())
    res = json.loads((out / "results.json").read_text())
    assert round(res["mIoU"], 4) == round(reported["mIoU"], 4)
    assert round(res["allAcc"], 4) == round(reported["allAcc"], 4) and res["split"] == "val"
    assert res["scenes"] == ["scene2"] and res["class_names"] == CLASSES
    assert set(res["per_class"]) == set(CLASSES) and "mIoU" in printed
    with open(out / "confusion.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["target\\pred", *CLASSES] and [r[0] for r in rows[1:]] == CLASSES
    conf = np.array([[int(x) for x in r[1:]] for r in rows[1:]])
    assert conf.sum() == 1200 and abs(segmentation_scores(conf).miou - res["mIoU"]) < 1e-12
    assert np.load(out / "scene2_pred.npy").shape == (1200,)
    assert (out / "confusion.png").is_file() == _has_pngs()


def test_evaluate_other_data_defaults_to_every_scene(run_dir, data_root, tmp_path, capsys):
    other = tmp_path / "copy"
    shutil.copytree(data_root, other)
    code, _, err = _main(["evaluate", "--model", str(run_dir), "--data", str(other), "--out", str(tmp_path / "e"),
                          "--device", "cpu", "--no-png"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["split"] == "all" and res["num_scenes"] == 3 and res["labelled_points"] == 3600


def test_predict_writes_one_class_per_point_with_and_without_labels(run_dir, data_root, tmp_path, capsys):
    unlabelled = _scene(7, n=900)
    unlabelled.segment = None
    write_pointcept_scene(tmp_path / "nolabels", unlabelled)
    out = tmp_path / "pred"
    code, printed, err = _main(["predict", "--model", str(run_dir), "--data", str(tmp_path / "nolabels"),
                                "--out", str(out), "--device", "cpu"], capsys)
    assert code == 0, err
    pred = np.load(out / "nolabels_pred.npy")
    assert pred.dtype == np.int64 and pred.shape == (900,) and pred.min() >= 0 and pred.max() < 4
    ply = read_any(out / "nolabels_pred.ply")
    assert len(ply) == 900 and np.allclose(ply.coord, unlabelled.coord)
    assert np.array_equal(ply.extra["pred"], pred)
    assert not (out / "nolabels_pred_vs_gt.png").exists()
    # a labelled folder: the same predictions as evaluate's, scene by scene
    code, printed, err = _main(["predict", "--model", str(run_dir), "--data", str(data_root), "--out", str(out),
                                "--device", "cpu", "--no-png"], capsys)
    assert code == 0, err
    assert not (out / "scene1_pred_vs_gt.png").exists()
    model = tester.load_finetuned(run_dir, "cpu")
    seen: dict[str, np.ndarray] = {}
    tester.evaluate_run(model, [data_root / "scene1"], on_prediction=lambda c, p: seen.setdefault(c.name, p))
    assert np.array_equal(np.load(out / "scene1_pred.npy"), seen["scene1"])
    assert "3 scene(s)" in printed


def test_predict_png_for_a_labelled_scene(run_dir, data_root, tmp_path, capsys):
    code, _, err = _main(["predict", "--model", str(run_dir), "--data", str(data_root / "scene0"),
                          "--out", str(tmp_path), "--device", "cpu"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "scene0_pred.npy").shape == (1200,)
    assert (tmp_path / "scene0_pred_vs_gt.png").is_file() == _has_pngs()


def _one_line_error(code: int, err: str, name: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err


def test_errors_are_one_line(run_dir, data_root, tmp_path, capsys):
    code, _, err = _main(["evaluate", "--model", str(tmp_path / "nothing"), "--device", "cpu"], capsys)
    _one_line_error(code, err, "nothing")
    # a run that exported only its backbone (pre-training, or a fine-tuning run from before the head export)
    old = tmp_path / "old"
    old.mkdir()
    for name in ("backbone.safetensors", "backbone.json", "config.yaml"):
        shutil.copy(run_dir / name, old / name)
    code, _, err = _main(["predict", "--model", str(old), "--data", str(data_root), "--out", str(tmp_path / "p"),
                          "--device", "cpu"], capsys)
    _one_line_error(code, err, "model.safetensors")
    # data with more classes than the model
    wide = tmp_path / "wide"
    write_pointcept_scene(wide / "scene9", _scene(9, num_classes=6))
    code, _, err = _main(["evaluate", "--model", str(run_dir), "--data", str(wide), "--out", str(tmp_path / "w"),
                          "--device", "cpu", "--no-png"], capsys)
    _one_line_error(code, err, "scene9")
