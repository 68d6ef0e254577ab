"""Linear / k-NN probes, feature extraction and the pre-training probe callback."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from contrast3d.evaluation.probes import (
    ProbeCallback,
    concat_features,
    extract_features,
    knn_predict,
    knn_probe,
    linear_probe,
)
from contrast3d.structures import PointBatch

K = 5


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: one thread avoids spin-wait overhead on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def onehot_data(n: int, seed: int, noise: float = 0.25, extra: int = 3, random: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    if random:
        return rng.standard_normal((n, K + extra)).astype(np.float32), y
    f = np.concatenate([np.eye(K)[y], np.zeros((n, extra))], 1) + noise * rng.standard_normal((n, K + extra))
    return f.astype(np.float32), y


def test_separable_features_score_near_100():
    x, y = onehot_data(2000, 0)
    xv, yv = onehot_data(1500, 1)
    yv[:50] = -1  # ignored
    assert linear_probe(x, y, xv, yv, K, steps=100).miou > 0.95
    assert knn_probe(x, y, xv, yv, K, k=10).miou > 0.95
    assert knn_probe(x, y, xv, yv, K, k=10, metric="euclidean", weighted=False).miou > 0.95


def test_random_features_score_near_chance():
    x, y = onehot_data(2000, 0, random=True)
    xv, yv = onehot_data(1500, 1, random=True)
    chance = 1 / (2 * K - 1)  # IoU of uniform random predictions on balanced classes
    assert linear_probe(x, y, xv, yv, K, steps=100).miou < chance + 0.08
    assert knn_probe(x, y, xv, yv, K).miou < chance + 0.08


def test_deterministic_by_seed_and_list_input_equals_concatenated():
    x, y = onehot_data(1200, 0, noise=0.8)
    xv, yv = onehot_data(800, 1, noise=0.8)
    kw = {"steps": 40, "batch_size": 256, "seed": 3}
    a = linear_probe(x, y, xv, yv, K, **kw)
    b = linear_probe([x[:500], x[500:]], [y[:500], y[500:]], list(np.split(xv, 4)), list(np.split(yv, 4)), K, **kw)
    assert a.miou == b.miou and np.array_equal(a.iou, b.iou)
    c = knn_probe(x, y, xv, yv, K, max_train_points=600, seed=1)
    d = knn_probe(torch.from_numpy(x), torch.from_numpy(y), xv, yv, K, max_train_points=600, seed=1)
    assert c.miou == d.miou


def test_class_balanced_probe_helps_rare_class():
    rng = np.random.default_rng(0)

    def data(n):
        y = np.where(rng.random(n) < 0.03, 1, 0)
        return (y[:, None] * 1.0 + rng.standard_normal((n, 2)) * 0.7).astype(np.float32), y
    x, y = data(4000)
    xv, yv = data(4000)
    plain = linear_probe(x, y, xv, yv, 2, steps=150)
    balanced = linear_probe(x, y, xv, yv, 2, steps=150, balanced=True)
    assert balanced.acc[1] > plain.acc[1] + 0.2


def test_knn_predict_small_example_and_errors():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[1.0, 0.05], [0.1, 1.0]])
    assert knn_predict(train, labels, q, 2, k=1).tolist() == [0, 1]
    assert knn_predict(train, labels, q, 2, k=3, weighted=False).tolist() == [0, 0]  # majority
    with pytest.raises(ValueError):
        knn_predict(train, labels, q, 2, metric="manhattan")
    with pytest.raises(ValueError):
        concat_features(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError):
        linear_probe(np.zeros((3, 2)), -np.ones(3), np.zeros((3, 2)), np.zeros(3), 2)


class FeatBackbone(nn.Module):
    """Returns the input features through a fixed linear map (a frozen 'backbone')."""

    def __init__(self, c: int):
        super().__init__()
        self.lin = nn.Linear(c, c)
        nn.init.eye_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, batch: PointBatch) -> torch.Tensor:
        return self.lin(batch.feat)


def make_batch(sizes, seed, inverse=False):
    feats, labels, metas = [], [], []
    for i, n in enumerate(sizes):
        f, y = onehot_data(n, seed * 10 + i)
        feats.append(f)
        labels.append(y)
        meta = {"name": f"s{i}"}
        if inverse:
            inv = np.random.default_rng(i).integers(0, n, 2 * n)
            meta.update(inverse=inv, segment=y[inv])
        metas.append(meta)
    n = sum(sizes)
    return PointBatch(coord=torch.zeros(n, 3), feat=torch.from_numpy(np.concatenate(feats)),
                      grid_coord=torch.zeros(n, 3, dtype=torch.long), offset=torch.tensor(np.cumsum(sizes)),
                      segment=torch.from_numpy(np.concatenate(labels)), meta=metas)


def test_extract_features_maps_back_and_restores_mode():
    model = FeatBackbone(K + 3).train()
    batch = make_batch([30, 50], 0, inverse=True)
    out = extract_features(model, [batch])
    assert model.training
    assert [f.shape for f, _ in out] == [(60, K + 3), (100, K + 3)]
    inv = batch.meta[1]["inverse"]
    assert torch.allclose(out[1][0], batch.feat[30:][inv], atol=1e-6)
    assert torch.equal(out[1][1], torch.from_numpy(batch.meta[1]["segment"]))
    plain = extract_features(model, [batch], map_to_points=False)
    assert plain[0][0].shape == (30, K + 3) and torch.equal(plain[0][1], batch.segment[:30])


def test_probe_callback_scalars():
    cb = ProbeCallback([make_batch([400, 300], 1)], [make_batch([500], 2)], K, every=5,
                       linear_kwargs={"steps": 60})
    model = FeatBackbone(K + 3)
    out = cb.evaluate(model)
    for key in ("probe/linear_miou", "probe/knn_miou", "probe/feat_std", "probe/eff_rank", "probe/mean_cos",
                "probe/seconds"):
        assert key in out and isinstance(out[key], float)
    assert out["probe/linear_miou"] > 0.9 and out["probe/knn_miou"] > 0.9
    unlabelled = make_batch([10], 3)
    unlabelled.segment = None
    with pytest.raises(ValueError, match="labelled"):
        ProbeCallback([unlabelled], [unlabelled], K, every=1).evaluate(model)


class OneHotBackbone(nn.Module):
    """Maps the first input channel (the class id) to a one-hot feature: a perfect backbone."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, batch: PointBatch) -> torch.Tensor:
        return nn.functional.one_hot(batch.feat[:, 0].long(), self.classes).float() * self.scale


def test_callback_on_collated_clouds():
    from contrast3d.structures import PointCloud, collate_points

    def batch(seed: int):
        rng = np.random.default_rng(seed)
        seg = rng.integers(0, 3, 300)
        cloud = PointCloud(coord=rng.random((300, 3), dtype=np.float32), segment=seg,
                           grid_coord=rng.integers(0, 50, (300, 3)), extra={"cls": seg.astype(np.float32)})
        return collate_points([cloud], feat_keys=("cls",))

    out = ProbeCallback([batch(0)], [batch(1)], num_classes=3, every=5).evaluate(OneHotBackbone(3))
    assert out["probe/linear_miou"] > 0.95 and out["probe/knn_miou"] > 0.95
    assert out["probe/eff_rank"] == pytest.approx(3.0, rel=0.1)
