import numpy as np
import pytest

from contrast3d.evaluation.splits import LabelBudget, LabelSplit, make_split


def test_parse():
    assert LabelBudget.parse("1%") == LabelBudget("scenes", 1.0)
    assert LabelBudget.parse("20pts") == LabelBudget("points", 20.0)
    assert LabelBudget.parse("200") == LabelBudget("points", 200.0)
    assert LabelBudget.parse(None).kind == "all"
    with pytest.raises(ValueError):
        LabelBudget.parse("lots")
    with pytest.raises(ValueError):
        LabelBudget.parse("150%")


def test_scene_split_reproducible_and_sized(tmp_path):
    names = [f"s{i:03d}" for i in range(200)]
    a = make_split(LabelBudget.parse("5%"), names, seed=3)
    b = make_split(LabelBudget.parse("5%"), list(reversed(names)), seed=3)
    c = make_split(LabelBudget.parse("5%"), names, seed=4)
    assert a.scenes == b.scenes and len(a.scenes) == 10 and a.scenes != c.scenes
    a.save(tmp_path / "split.json")
    assert LabelSplit.load(tmp_path / "split.json") == a
    assert len(make_split(LabelBudget.parse("1%"), names[:5], seed=0).scenes) == 1


def test_point_split_masks_only_labelled_points():
    rng = np.random.default_rng(0)
    segs = {"a": rng.integers(-1, 5, 1000), "b": np.full(30, -1)}
    split = make_split(LabelBudget.parse("20pts"), ["a", "b"], segs, seed=1)
    masked = split.mask_labels("a", segs["a"])
    kept = masked >= 0
    assert kept.sum() == 20 and np.all(masked[kept] == segs["a"][kept])
    assert (split.mask_labels("b", segs["b"]) == -1).all()
    again = make_split(LabelBudget.parse("20pts"), ["a", "b"], segs, seed=1)
    assert again.points == split.points
