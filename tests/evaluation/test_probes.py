import numpy as np
import pytest
import torch

from contrast3d.evaluation.probes import ProbeCallback, extract_features, knn_probe, linear_probe
from contrast3d.structures import PointCloud, collate_points


def blobs(n: int, classes: int, noise: float, seed: int, dim: int = 16):
    """Features = one-hot class code + Gaussian noise, with some ignored labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = np.zeros((n, dim), np.float32)
    x[np.arange(n), y] = 1.0
    x += rng.normal(0, noise, x.shape).astype(np.float32)
    y[rng.random(n) < 0.05] = -1
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("probe", [linear_probe, knn_probe])
def test_separable_features_score_high_random_features_score_low(probe):
    xt, yt = blobs(2000, 5, 0.1, 0)
    xv, yv = blobs(1000, 5, 0.1, 1)
    good = probe(xt, yt, xv, yv, 5, seed=0)
    assert good.miou > 0.95
    rng = torch.Generator().manual_seed(0)
    bad = probe(torch.randn(2000, 16, generator=rng), yt, torch.randn(1000, 16, generator=rng), yv, 5, seed=0)
    assert bad.miou < 0.35  # chance for 5 balanced classes is ~0.11 IoU


def test_probes_are_deterministic_by_seed():
    xt, yt = blobs(800, 4, 0.8, 0)
    xv, yv = blobs(400, 4, 0.8, 1)
    a = linear_probe(xt, yt, xv, yv, 4, seed=3, batch_size=128)
    b = linear_probe(xt, yt, xv, yv, 4, seed=3, batch_size=128)
    assert a.miou == b.miou


class OneHotBackbone(torch.nn.Module):
    """Maps the first feature channel (the class id) to a one-hot feature: a perfect backbone."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return torch.nn.functional.one_hot(batch.feat[:, 0].long(), self.classes).float() * self.scale


def _batch(seed: int, classes: int = 3):
    rng = np.random.default_rng(seed)
    n = 300
    seg = rng.integers(0, classes, n)
    cloud = PointCloud(coord=rng.random((n, 3), dtype=np.float32), segment=seg,
                       grid_coord=rng.integers(0, 50, (n, 3)), extra={"cls": seg.astype(np.float32)})
    return collate_points([cloud], feat_keys=("cls",))


def test_callback_runs_on_schedule_with_extracted_features():
    cb = ProbeCallback([_batch(0)], [_batch(1)], num_classes=3, every=5)
    assert cb(3, OneHotBackbone(3)) == {}
    out = cb(10, OneHotBackbone(3))
    assert out["probe/linear_miou"] > 0.95 and out["probe/knn_miou"] > 0.95
    feats = extract_features(OneHotBackbone(3), [_batch(2)])
    assert feats[0][0].shape == (300, 3)
