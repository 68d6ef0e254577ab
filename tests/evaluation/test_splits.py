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


def test_parse_selection():
    assert LabelBudget.parse("20pts:kmeans") == LabelBudget("points", 20.0, "kmeans")
    assert LabelBudget.parse("20pts", selection="kmeans").selection == "kmeans"
    assert LabelBudget.parse("20pts:random", selection="kmeans").selection == "random"
    assert str(LabelBudget.parse("20pts:kmeans")) == "20pts:kmeans" and str(LabelBudget.parse("20pts")) == "20pts"
    assert LabelBudget.parse("5%", selection="kmeans") == LabelBudget("scenes", 5.0)
    for bad in ("5%:kmeans", "20pts:farthest", "all:kmeans"):
        with pytest.raises(ValueError):
            LabelBudget.parse(bad)


def test_kmeans_selection_hand_example():
    """Three far-apart clusters on the x axis, k = 3: the point nearest each cluster mean.

    A = {0, 0.1, 0.2} (mean 0.1 -> 0.1), B = {10, 10.1, 10.3} (mean 10.1333 -> 10.1),
    C = {20, 20.05, 20.3} (mean 20.1167 -> 20.05); the unlabelled point at x = 5 takes no part.
    """
    x = np.array([0.0, 0.1, 0.2, 10.0, 10.1, 10.3, 5.0, 20.0, 20.05, 20.3])
    coord = np.stack([x, np.zeros_like(x), np.zeros_like(x)], 1)
    seg = np.array([1, 1, 1, 2, 2, 2, -1, 3, 3, 3])
    budget = LabelBudget.parse("3pts:kmeans")
    for seed in range(5):
        split = make_split(budget, ["s"], {"s": seg}, seed=seed, coords={"s": coord})
        assert split.points["s"] == [1, 4, 8]
    # more points asked than labelled: all labelled points
    split = make_split(LabelBudget.parse("20pts:kmeans"), ["s"], {"s": seg}, seed=0, coords={"s": coord})
    assert split.points["s"] == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    with pytest.raises(ValueError, match="coordinates"):
        make_split(budget, ["s"], {"s": seg}, seed=0)


def test_kmeans_is_a_lloyd_fixed_point_naive_reference():
    """On random points: every point's centre is its nearest one, every centre is its members'
    mean, and the chosen point of a cluster is its member nearest the centre (float64 loops)."""
    from contrast3d.evaluation.splits import kmeans, kmeans_points

    rng = np.random.default_rng(0)
    coord = rng.random((60, 3)) * [4.0, 3.0, 2.5]
    centres, assign = kmeans(coord, 5, np.random.default_rng(7))
    for i in range(len(coord)):
        d = [sum((coord[i, a] - centres[j, a]) ** 2 for a in range(3)) for j in range(5)]
        assert d[assign[i]] <= min(d) + 1e-12
    for j in range(5):
        members = [i for i in range(len(coord)) if assign[i] == j]
        if members:
            mean = [sum(coord[i, a] for i in members) / len(members) for a in range(3)]
            assert np.allclose(centres[j], mean, rtol=0, atol=1e-12)
    picked = kmeans_points(coord, 5, np.random.default_rng(7))
    expect = []
    for j in range(5):
        members = [i for i in range(len(coord)) if assign[i] == j]
        if members:
            expect.append(min(members, key=lambda i: (sum((coord[i, a] - centres[j, a]) ** 2 for a in range(3)), i)))
    assert sorted(expect) == picked.tolist() and len(set(picked.tolist())) == 5
    assert kmeans_points(coord, 5, np.random.default_rng(7)).tolist() == picked.tolist()  # seeded
    assert kmeans_points(coord, 5, np.random.default_rng(8)).tolist() != picked.tolist()
