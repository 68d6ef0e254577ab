"""Published label-efficient splits (CSC / Pointcept ``data_efficient``) and their budget names (issue 16, item 4)."""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from contrast3d.cli import main
from contrast3d.commands._args import label_budget
from contrast3d.errors import DataError
from contrast3d.evaluation.semseg_data import SemsegDataset
from contrast3d.evaluation.split_files import read_split_file
from contrast3d.evaluation.splits import LabelBudget, LabelSplit, make_split

SIZES = {"scene0000_00": 50, "scene0001_00": 40, "scene0002_00": 30}


def scene(folder: Path, seed: int, n: int) -> Path:
    """A tiny labelled Pointcept scene (every point labelled 0..2)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    np.save(folder / "coord.npy", rng.uniform(0, 3, (n, 3)).astype(np.float32))
    np.save(folder / "color.npy", rng.integers(0, 256, (n, 3)).astype(np.uint8))
    np.save(folder / "normal.npy", np.tile(np.float32([0, 0, 1]), (n, 1)))
    np.save(folder / "segment20.npy", rng.integers(0, 3, n).astype(np.int32))
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    """``train/`` with the three scenes of :data:`SIZES`, ``val/`` with ``scene0100_00``."""
    for i, (name, n) in enumerate(SIZES.items()):
        scene(tmp_path / "data" / "train" / name, i, n)
    scene(tmp_path / "data" / "val" / "scene0100_00", 9, 30)
    return tmp_path / "data"


# ----------------------------------------------------------------------------- budget names
def test_csc_and_pointcept_budget_names():
    assert LabelBudget.parse("points20") == LabelBudget("points", 20.0)
    assert LabelBudget.parse("Points200:kmeans") == LabelBudget("points", 200.0, "kmeans")
    assert LabelBudget.parse("tr5") == LabelBudget("scenes", 5.0) == LabelBudget.parse("5%")
    assert str(LabelBudget.parse("tr1")) == "1%" and str(LabelBudget.parse("points50")) == "50pts"
    for spec in ("scannetv2_train_1.txt", "points20.pth", "./points20", "tasks/points/points200", "x.npz", "s.json"):
        budget = LabelBudget.parse(spec)
        assert budget.kind == "file" and budget.path == spec and str(budget) == spec and budget.needs_labels
    assert not LabelBudget.parse("tr10").needs_labels and LabelBudget.parse("20pts").needs_labels
    for bad in ("tr0", "tr150", "points0", "points", "trx"):
        with pytest.raises(ValueError):
            LabelBudget.parse(bad)


def test_label_budget_flag_checks_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert label_budget("points20") == "points20" and label_budget("tr1") == "tr1"
    with pytest.raises(argparse.ArgumentTypeError, match="missing.txt: the label split file does not exist"):
        label_budget("missing.txt")
    (tmp_path / "points20").write_bytes(b"\x00")
    with pytest.raises(argparse.ArgumentTypeError, match="write ./points20"):
        label_budget("points20")
    assert label_budget("./points20") == "./points20"


# ----------------------------------------------------------------------------- reading the files
def _write_formats(folder: Path) -> dict[str, Path]:
    idx = {"scene0000_00": np.array([5, 1, 1, 49]), "scene0001_00": np.array([0]), "scene0002_00": np.array([29, 3])}
    folder.mkdir(exist_ok=True)
    paths = {k: folder / k for k in ("pts.pth", "tens.pt", "pts.pkl", "pts.npz", "pts.json", "points20")}
    torch.save(idx, paths["pts.pth"])
    torch.save({k: torch.from_numpy(v) for k, v in idx.items()}, paths["tens.pt"])
    paths["pts.pkl"].write_bytes(pickle.dumps({k: v.astype(np.int32) for k, v in idx.items()}))
    np.savez(paths["pts.npz"], **idx)
    paths["pts.json"].write_text(json.dumps({k: v.tolist() for k, v in idx.items()}))
    torch.save(idx, paths["points20"])  # Pointcept's files have no suffix
    return paths


def test_every_limited_annotation_format_reads_the_same(tmp_path):
    for path in _write_formats(tmp_path).values():
        table = read_split_file(path)
        assert table.kind == "points", path
        assert {k: v.tolist() for k, v in table.points.items()} == {
            "scene0000_00": [1, 5, 49], "scene0001_00": [0], "scene0002_00": [3, 29]}, path
        split = make_split(LabelBudget.parse(str(path)), list(SIZES), {k: np.zeros(n) for k, n in SIZES.items()})
        assert split.points["scene0000_00"] == [1, 5, 49] and split.source["file"] == str(path)
        assert len(split.source["sha256"]) == 64 and split.budget == str(path)


def test_scene_lists(tmp_path):
    (tmp_path / "scannetv2_train_1.txt").write_text("# one percent\nscene0002_00\n\n  scene0000_00  \nscene0002_00\n")
    (tmp_path / "tr1").write_text("scene0001_00\n")  # a text file without suffix
    (tmp_path / "list.json").write_text(json.dumps(["scene0001_00"]))
    for name, want in (("scannetv2_train_1.txt", ["scene0000_00", "scene0002_00"]), ("tr1", ["scene0001_00"]),
                       ("list.json", ["scene0001_00"])):
        split = make_split(LabelBudget.parse(str(tmp_path / name)), list(SIZES), None, seed=3)
        assert split.scenes == want and split.points == {} and split.source["kind"] == "scenes"


def test_a_saved_label_split_is_a_split_file(tmp_path):
    segs = {k: np.zeros(n, np.int64) for k, n in SIZES.items()}
    drawn = make_split(LabelBudget.parse("7pts"), list(SIZES), segs, seed=4)
    drawn.save(tmp_path / "label_split.json")
    again = make_split(LabelBudget.parse(str(tmp_path / "label_split.json")), list(SIZES), segs, seed=0)
    assert again.points == drawn.points and again.scenes == drawn.scenes


@pytest.mark.parametrize("content, message", [
    (None, "no such label split file"),
    (b"\x80\x04\x95garbage", "cannot read the label split file"),
    (pickle.dumps({"scene0000_00": pickle.loads}), "refusing to load"),
    (json.dumps({"scene0000_00": [1.5]}).encode(), "expected a list of integer point indices"),
    (json.dumps({"scene0000_00": "abc"}).encode(), "expected a list of integer point indices"),
    (json.dumps({}).encode(), "lists no scene"),
    (json.dumps(7).encode(), "expected a list of scene names"),
])
def test_malformed_files_are_one_line_data_errors(tmp_path, content, message):
    path = tmp_path / ("split.pkl" if content and content.startswith(b"\x80") else "split.json")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_split_file(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_unsafe_torch_file_is_refused(tmp_path):
    torch.save({"scene0000_00": print}, tmp_path / "evil.pth")
    with pytest.raises(DataError, match="evil.pth.*refusing to load"):
        read_split_file(tmp_path / "evil.pth")


@pytest.mark.parametrize("content, message", [
    ({"scene0000_00": [0], "scene0001_00": [0], "scene0002_00": [30]}, "'scene0002_00': point index 30 is out of "
                                                                        "range \\(the scene has 30 points"),
    ({"scene0000_00": [-1], "scene0001_00": [0], "scene0002_00": [0]}, "point index -1 is out of range"),
    ({"scene0000_00": [0], "scene0001_00": [0]}, "1 of the 3 training scenes have no labelled points listed "
                                                 "\\(e.g. 'scene0002_00'\\)"),
    ({**{k: [0] for k in SIZES}, "scene0999_00": [0]}, "1 scene\\(s\\) of the file are not among the 3 training "
                                                      "scenes of the data \\(e.g. 'scene0999_00'\\)"),
    ({**{k: [0] for k in SIZES}, "scene0100_00": [0]}, "'scene0100_00' is a validation scene .*leak"),
    ({k: [] for k in SIZES}, "no scene has a labelled point"),
])
def test_files_that_do_not_fit_the_data_are_refused(tmp_path, content, message):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(content))
    segs = {k: np.zeros(n) for k, n in SIZES.items()}
    with pytest.raises(DataError, match=message) as err:
        make_split(LabelBudget.parse(str(path)), list(SIZES), segs, val_names=["scene0100_00"])
    assert str(err.value).startswith(str(path))
    (tmp_path / "ok.txt").write_text("scene0001_00\nscene0000_00\n")  # the same check passes a fitting file
    assert make_split(LabelBudget.parse(str(tmp_path / "ok.txt")), list(SIZES)).scenes == ["scene0000_00",
                                                                                          "scene0001_00"]


# ----------------------------------------------------------------------------- with scenes and the command
def test_dataset_applies_a_file_split(data, tmp_path):
    paths = _write_formats(tmp_path / "files")
    ds = SemsegDataset(sorted((data / "train").iterdir()))
    split = ds.make_label_split(LabelBudget.parse(str(paths["pts.npz"])), seed=0)
    ds.apply_split(split)
    for i, name in enumerate(ds.names):
        masked = ds.get_sample(i, np.random.default_rng(0)).segment
        assert np.flatnonzero(masked >= 0).tolist() == split.points[name]
    (tmp_path / "lr.txt").write_text("scene0001_00\n")
    ds = SemsegDataset(sorted((data / "train").iterdir()))
    ds.apply_split(ds.make_label_split(LabelBudget.parse(str(tmp_path / "lr.txt")), seed=0))
    assert ds.names == ["scene0001_00"] and (ds.get_sample(0, np.random.default_rng(0)).segment >= 0).all()


def test_finetune_command_uses_and_records_the_file(data, tmp_path, capsys):
    paths = _write_formats(tmp_path / "files")
    base = ["finetune", "semseg", "--data", str(data), "--init", "scratch", "--device", "cpu", "--no-progress",
            "--steps", "1", "--set", "model.preset=spunet-tiny", "--set", "data.grid_size=0.1",
            "--set", "data.max_points=0", "--set", "loader.batch_size=1", "--set", "loader.num_workers=0",
            "--set", "checkpoint_every=0", "--set", "method.eval_fragments=1"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scene0000_00": [0], "scene0001_00": [0], "scene0002_00": [99]}))
    for labels, token in ((str(bad), str(bad)), (str(tmp_path / "gone.pth"), "gone.pth")):
        capsys.readouterr()
        assert main([*base, "--out", str(tmp_path / "refused"), "--labels", labels]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and token in err[0], err
    assert not (tmp_path / "refused" / "checkpoints").exists()
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), "--labels", str(paths["points20"])]) == 0
    saved = LabelSplit.load(out / "label_split.json")
    assert saved.points == {"scene0000_00": [1, 5, 49], "scene0001_00": [0], "scene0002_00": [3, 29]}
    assert saved.source["kind"] == "points" and saved.source["file"] == str(paths["points20"])
    res = json.loads((out / "results.json").read_text())
    assert res["label_budget"] == str(paths["points20"]) and res["labelled"]["points"] == 6
    assert res["labelled"]["file"]["sha256"] == saved.source["sha256"] and "leak" not in res
