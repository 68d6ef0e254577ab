"""t-SNE plot, stratified subsampling and training curves."""
from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from contrast3d.errors import DataError
from contrast3d.viz import (
    metric_series,
    plot_curves,
    read_metrics,
    smooth,
    stratified_subsample,
    tsne_plot,
)


def test_stratified_subsample():
    labels = np.repeat([0, 1, 2], [1000, 30, 170])
    idx = stratified_subsample(labels, 300, seed=0)
    counts = np.bincount(labels[idx])
    assert len(idx) == 300 and len(np.unique(idx)) == 300
    assert counts[1] == 30 and counts[2] == 135 and counts[0] == 135
    assert np.array_equal(idx, stratified_subsample(labels, 300, seed=0))
    assert not np.array_equal(idx, stratified_subsample(labels, 300, seed=1))
    assert len(stratified_subsample(labels, 5000)) == 1200


def test_tsne_plot_separates_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    labels[:20] = -1
    feats = np.eye(3)[np.maximum(labels, 0)] * 3 + rng.standard_normal((400, 3)) * 0.3
    emb, index = tsne_plot(feats, labels, tmp_path / "t.png", class_names=["a", "b", "c"], max_points=240)
    assert emb.shape == (240, 2) and (labels[index] >= 0).all()
    centres = np.stack([emb[labels[index] == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(emb[labels[index] == c] - centres[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread
    assert imread(tmp_path / "t.png").ndim == 3


def test_curves_from_jsonl(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"step": s, "time": 1.0, "loss": 1.0 / (s + 1), "lr": 0.1, "acc": "nan", "flag": True})
             for s in range(0, 200, 10)]
    lines.insert(3, '{"step": 25, "loss": ')  # a line cut by a kill
    lines.append(json.dumps({"step": 300, "loss": float("inf") if False else 0.001, "probe/knn_miou": 0.4}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    records = read_metrics(run)
    assert len(records) == 21
    series = metric_series(records)
    assert list(series) == ["loss", "lr", "probe/knn_miou"]
    assert len(series["loss"][0]) == 21 and len(series["probe/knn_miou"][0]) == 1
    keys = plot_curves(run, tmp_path / "c.png")
    assert keys == ["loss", "lr", "probe/knn_miou"] and imread(tmp_path / "c.png").ndim == 3
    assert plot_curves(records, tmp_path / "d.png", keys=["lr", "missing"]) == ["lr"]
    with pytest.raises(DataError):
        plot_curves(run, tmp_path / "e.png", keys=["acc"])
    with pytest.raises(DataError):
        read_metrics(tmp_path / "nowhere")


def test_smooth():
    np.testing.assert_allclose(smooth(np.full(50, 3.0), 0.9), 3.0)
    s = smooth(np.r_[np.zeros(20), np.ones(20)], 0.5)
    assert s[0] == 0 and 0.99 < s[-1] <= 1 and np.all(np.diff(s) >= 0)
    np.testing.assert_allclose(smooth(np.arange(5.0), 0.0), np.arange(5.0))
