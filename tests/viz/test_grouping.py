"""Grouping figure (GroupContrast Fig. 4): panels and colours from arrays, purity against a loop, and the
PNG from a tiny GroupContrast run's checkpoint."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.image import imread

from contrast3d.errors import DataError
from contrast3d.viz.grouping import (
    categorical_colors,
    group_purity,
    grouping_figure,
    grouping_from_weights,
    hashed_colors,
)


def _room(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    coord = rng.uniform(0, [4.0, 3.0, 2.5], (n, 3))
    segments = (np.floor(coord[:, 0]) * 3 + np.floor(coord[:, 1])).astype(np.int64)
    labels = (coord[:, 2] > 1.0).astype(np.int64)
    labels[:10] = -1
    return coord, segments % 5, segments, labels


def test_figure_panels(tmp_path):
    coord, assign, segments, labels = _room()
    with_gt = grouping_figure(coord, assign, segments, labels, tmp_path / "a" / "gt.png", "room")
    without = grouping_figure(coord, assign, segments, None, tmp_path / "nogt.png")
    assert with_gt.stat().st_size > 1000 and without.stat().st_size > 1000
    wide, narrow = imread(with_gt), imread(without)
    assert wide.shape[1] > 1.3 * narrow.shape[1]  # three panels vs two
    with pytest.raises(ValueError, match="segments"):
        grouping_figure(coord, assign, segments[:-1], None, tmp_path / "bad.png")


def test_colours():
    tab = np.asarray(matplotlib.colormaps["tab20"].colors, np.float32)
    c = categorical_colors(np.array([0, 5, -1, 0, 45]))
    np.testing.assert_allclose(c[[0, 1]], tab[[0, 5]])
    np.testing.assert_array_equal(c[0], c[3])
    assert np.allclose(c[2], c[2].mean())  # grey for "none"
    h = hashed_colors(np.arange(200))
    assert len(np.unique(np.round(h, 3), axis=0)) == 200 and h.min() >= 0 and h.max() <= 1
    np.testing.assert_array_equal(hashed_colors(np.array([7, 7]))[0], hashed_colors(np.array([7]))[0])


def test_group_purity_matches_a_loop():
    rng = np.random.default_rng(1)
    groups, labels = rng.integers(-1, 6, 400), rng.integers(-1, 4, 400)
    ok = (groups >= 0) & (labels >= 0)
    hit = 0
    for g in set(groups[ok].tolist()):
        ys = labels[ok & (groups == g)]
        hit += np.bincount(ys).max()
    assert group_purity(groups, labels) == pytest.approx(hit / ok.sum())
    assert group_purity(np.array([0, 0, 1, 1]), np.array([3, 3, 2, 2])) == 1.0
    assert np.isnan(group_purity(np.array([-1]), np.array([0])))


def test_png_from_a_tiny_runs_checkpoint(tmp_path, monkeypatch):
    from contrast3d.engine.run import train
    from contrast3d.methods import METHODS, method_config
    from contrast3d.methods.common import smoke_scenes
    from contrast3d.methods.groupcontrast import SPEC

    monkeypatch.setitem(METHODS, "groupcontrast", SPEC)
    root = smoke_scenes(tmp_path / "data")
    overrides = ["model.preset=spunet-tiny", "data.grid_size=0.1", "data.match_radius=0.15", "data.max_points=1500",
                 "method.num_samples=128", "method.proj_hidden=32", "method.proj_dim=16", "method.num_prototypes=8",
                 "loader.batch_size=2", "loader.num_workers=0"]
    cfg = method_config("groupcontrast", flags={"data_root": root, "steps": 1, "device": "cpu", "progress": False},
                        overrides=overrides)
    train(cfg, SPEC, tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    scene = sorted(p for p in (tmp_path / "data" / "scenes").iterdir() if p.is_dir())[0]
    for network in ("student", "teacher"):
        info = grouping_from_weights(ckpt, scene, tmp_path / f"{network}.png", network=network)
        png = tmp_path / f"{network}.png"
        assert png.is_file() and png.stat().st_size > 1000 and info["png"] == str(png)
        assert 1 <= info["used_prototypes"] <= 8 and info["segments"] > 5 and 0 < info["purity"] <= 1
    # --bn batch: the scene's own BatchNorm statistics; the checkpoint's running buffers are left as they were
    before = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    info = grouping_from_weights(ckpt, scene, tmp_path / "batch.png", bn="batch")
    assert "BatchNorm: scene statistics" in info["title"] and info["segments"] > 5
    after = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="bn must be"):
        grouping_from_weights(ckpt, scene, tmp_path / "y.png", bn="frozen")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        grouping_from_weights(tmp_path / "run" / "backbone.safetensors", scene, tmp_path / "x.png")
