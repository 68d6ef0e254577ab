"""CSC method (contrast3d.methods.csc): world coordinates through augmentation, partitions on un-augmented
grid coordinates, the per-scene loss against a naive loop, geometry-only input, presets, end to end.

The partitioned loss itself is checked against naive references in tests/losses/test_csc.py; here the
method's wiring is checked.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from contrast3d.data import transforms as T
from contrast3d.engine.optim import LRFactor
from contrast3d.engine.run import train
from contrast3d.methods import METHODS, method_config
from contrast3d.methods.common import BackboneConfig, PairDataConfig, build_pair_dataset, pair_collate, smoke_scenes
from contrast3d.methods.csc import CSC, SPEC, WORLD_KEY, CSCConfig, build_csc_dataset

DATA = PairDataConfig(grid_size=0.1, match_radius=0.15, max_points=3000, strict=True)
MODEL = BackboneConfig(preset="spunet-tiny")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return smoke_scenes(tmp_path_factory.mktemp("csc_scenes"))


@pytest.fixture(scope="module")
def dataset(root):
    return build_csc_dataset(root, DATA)


def make(data: PairDataConfig = DATA, model: BackboneConfig = MODEL, **kw) -> CSC:
    torch.manual_seed(0)
    method = CSC(CSCConfig(**{"num_matches": 128, "partition_grid": 0.025, **kw}), model, data)
    method.train()
    return method


def test_views_carry_their_pre_augmentation_coordinates(dataset):
    sample = dataset.get_sample(0, np.random.default_rng(2))
    raw = dataset.raw(0)
    for view in sample.views:
        np.testing.assert_array_equal(view.extra[WORLD_KEY], raw.coord[view.meta["origin_index"]])
    w1, w2 = (v.extra[WORLD_KEY] for v in sample.views)
    d = np.linalg.norm(w1[sample.matches[:, 0]] - w2[sample.matches[:, 1]], axis=1)
    assert len(d) > 100 and d.max() <= DATA.match_radius + 1e-6          # matches are world-coordinate neighbours
    a, b = sample.view1.coord[sample.matches[:, 0]], sample.view2.coord[sample.matches[:, 1]]
    assert np.median(np.linalg.norm(a - b, axis=1)) > 0.3                  # ... while the views are rotated apart
    batch = pair_collate(DATA)([sample])
    assert torch.equal(batch.view1.extra[WORLD_KEY], torch.from_numpy(w1))


def naive_partition(a: np.ndarray, b: np.ndarray, r1: float, r2: float) -> int:
    """Partition of key position ``b`` around anchor ``a`` (grid units, 4 horizontal quadrants), -1 = none."""
    dx, dy, dz = (float(b[i]) - float(a[i]) for i in range(3))
    d = math.sqrt(dx * dx + dy * dy + dz * dz)
    if d < r1:
        return -1
    angle = math.atan2(dy, dx) % (2 * math.pi)
    return (4 if d >= r2 else 0) + min(3, int(angle // (math.pi / 2)))


def test_partitions_come_from_unaugmented_grid_coordinates(dataset):
    sample, other = dataset.get_sample(0, np.random.default_rng(1)), dataset.get_sample(1, np.random.default_rng(2))
    rotated = dataset.get_sample(0, np.random.default_rng(1))
    rotated.views[0] = T.RandomRotate(angle=(0.7, 0.7), axis="xyz", p=1.0)(rotated.view1, np.random.default_rng(0))
    assert np.abs(rotated.view1.coord - sample.view1.coord).max() > 0.5
    batch, batch_rot = (pair_collate(DATA)([s, other]) for s in (sample, rotated))
    method = make()
    torch.manual_seed(5)
    picked = method.sample_matches(batch)
    torch.manual_seed(5)
    picked_rot = method.sample_matches(batch_rot)
    assert [len(p) for p in picked] == [128, 128]
    part = method.anchor_partitions(batch, picked[0])
    assert torch.equal(part, method.anchor_partitions(batch_rot, picked_rot[0]))   # view 1's rotation is irrelevant

    raw = dataset.raw(0)
    world = raw.coord[sample.view1.meta["origin_index"]].astype(np.float64) / 0.025    # CSC grid units
    anchors = world[picked[0][:, 0].numpy()]
    expected = np.array([[naive_partition(p, q, 2.0, 20.0) for q in anchors] for p in anchors[:40]])
    got = part[:40].numpy()
    assert (got == expected).mean() > 0.999 and len(np.unique(expected)) >= 7
    # the augmented coordinates would give other partitions: the check above can fail
    augmented = batch.view1.coord[picked[0][:, 0]].double().numpy() / 0.025
    wrong = np.array([[naive_partition(p, q, 2.0, 20.0) for q in augmented] for p in augmented[:40]])
    assert (wrong != expected).mean() > 0.2


def naive_csc_loss(f1: torch.Tensor, f2: torch.Tensor, per_scene: list[torch.Tensor], parts: list[torch.Tensor],
                   tau: float) -> float:
    scene_losses = []
    for matches, part in zip(per_scene, parts):
        q = torch.nn.functional.normalize(f1[matches[:, 0]].double(), dim=1)
        k = torch.nn.functional.normalize(f2[matches[:, 1]].double(), dim=1)
        cells = []
        for i in range(len(q)):
            pos = float(q[i] @ k[i]) / tau
            for p in range(8):
                neg = [float(q[i] @ k[j]) / tau for j in range(len(q)) if j != i and int(part[i, j]) == p]
                if neg:
                    cells.append(-pos + math.log(math.exp(pos) + sum(math.exp(n) for n in neg)))
        scene_losses.append(sum(cells) / len(cells))
    return sum(scene_losses) / len(scene_losses)


def test_loss_is_the_mean_over_scenes_of_the_partitioned_infonce(dataset):
    batch = pair_collate(DATA)([dataset.get_sample(i, np.random.default_rng(i)) for i in range(2)])
    method = make(num_matches=48, tau=0.4)
    torch.manual_seed(9)
    out = method(batch)
    torch.manual_seed(9)
    picked = method.sample_matches(batch)
    with torch.no_grad():
        f1, f2 = method.net(batch.view1), method.net(batch.view2)
    parts = [method.anchor_partitions(batch, m) for m in picked]
    assert out["loss"].item() == pytest.approx(naive_csc_loss(f1, f2, picked, parts, 0.4), rel=1e-5)
    assert out["anchors"].item() == 96 and out["matches"].item() == batch.matches.shape[0]
    cells = [len({int(part[i, j]) for j in range(len(part)) if j != i and part[i, j] >= 0})
             for part in parts for i in range(len(part))]
    assert out["cells"].item() == pytest.approx(np.mean(cells)) and 4 < np.mean(cells) <= 8
    assert torch.equal(out["loss_csc"], out["loss"].detach())


def test_nonempty_cells_hand_computed():
    part = torch.tensor([[0, 1, -1], [2, 0, 0], [-1, -1, 5]])  # the diagonal (the anchor itself) never counts
    assert make(r1=0.0).nonempty_cells(part).tolist() == [1.0, 2.0, 0.0]


def test_geometry_only_input_trains_every_parameter(root):
    data = PairDataConfig(grid_size=0.1, match_radius=0.15, max_points=3000, strict=True, feat_keys=["ones"])
    ds = build_csc_dataset(root, data)
    batch = pair_collate(data)([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])
    assert batch.view1.feat.shape[1] == 1 and bool((batch.view1.feat == 1).all())
    method = make(data, BackboneConfig(preset="spunet-tiny", in_channels=1), angle_mode="csc_code")
    out = method(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


def test_missing_world_coordinates_and_bad_config_raise(root):
    plain = build_pair_dataset(root, DATA)
    batch = pair_collate(DATA)([plain.get_sample(0, np.random.default_rng(0))])
    with pytest.raises(ValueError, match=WORLD_KEY):
        make()(batch)
    with pytest.raises(ValueError, match="csc_code"):
        CSCConfig(angle_mode="csc_code", num_angles=8)
    with pytest.raises(ValueError, match="r1"):
        CSCConfig(r1=20.0, r2=2.0)


def test_presets_and_train_end_to_end(root, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "csc", SPEC)
    paper = method_config("csc", flags={"data_root": root})
    assert (paper.model.preset, paper.data.grid_size, paper.optim.lr, paper.optim.momentum, paper.steps) == \
        ("spunet34", 0.025, 0.1, 0.8, 60000)
    assert (paper.loader.batch_size, paper.method.tau, paper.method.num_matches) == (4, 0.4, 4096)
    assert (paper.method.r1, paper.method.r2, paper.method.num_angles) == (2.0, 20.0, 4)
    lr = LRFactor(paper.schedule, paper.steps)  # CSC's ExponentialLR(0.99) every 1000 iterations
    assert [lr(s) for s in (0, 999, 1000, 1999, 2000)] == pytest.approx([1, 1, 0.99, 0.99, 0.99 ** 2])
    assert lr(59999) == pytest.approx(0.99 ** 59)
    cfg = method_config("csc", files=["csc_cpu_small"],
                        flags={"data_root": root, "steps": 2, "device": "cpu", "progress": False},
                        overrides=["data.grid_size=0.1", "data.match_radius=0.15", "data.max_points=3000",
                                   "method.num_matches=128", "loader.batch_size=2", "loader.num_workers=0",
                                   "log_every=1"])
    assert cfg.model.preset == "spunet-tiny" and cfg.method.partition_grid == 0.025
    result = train(cfg, SPEC, tmp_path / "run")
    assert result.step == 2 and (tmp_path / "run" / "backbone.safetensors").is_file()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {k.split("/")[-1] for r in rows for k in r}
    assert {"loss_csc", "pos_cos", "matches", "anchors", "cells"} <= logged
