"""MSC method (contrast3d.methods.msc): cross masks and k-NN matches on original coordinates, the mask
token, reconstruction targets and losses against naive loops, view mixing, heads, presets, end to end.

The loss functions and the mask generator are checked against naive references in
tests/losses/test_msc.py and tests/data/test_masking.py; here the method's wiring is checked.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from contrast3d.engine.optim import LRFactor
from contrast3d.engine.run import train
from contrast3d.methods import METHODS, method_config
from contrast3d.methods.common import BackboneConfig, pair_collate, smoke_scenes
from contrast3d.methods.msc import (
    MASK_KEY,
    MSC,
    SPEC,
    MSCConfig,
    MSCDataConfig,
    build_msc_dataset,
    feature_columns,
    mix_views,
)
from contrast3d.structures import PointBatch

DATA = MSCDataConfig(grid_size=0.05, match_radius=0.075, max_points=4000, strict=True)
MODEL = BackboneConfig(preset="spunet-tiny")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_msc_dataset(smoke_scenes(tmp_path_factory.mktemp("msc_scenes")), DATA)


@pytest.fixture(scope="module")
def samples(dataset):
    return [dataset.get_sample(i % 2, np.random.default_rng(i)) for i in range(4)]


def make(data: MSCDataConfig = DATA, **kw) -> MSC:
    torch.manual_seed(0)
    method = MSC(MSCConfig(**{"max_pairs": 512, **kw}), MODEL, data)
    method.train()
    return method


def patches(coord: np.ndarray) -> list[tuple]:
    return [tuple(c) for c in np.floor(coord.astype(np.float64) / 0.1).astype(np.int64).tolist()]


def test_cross_masks_are_disjoint_whole_patches_at_the_requested_ratio(dataset, samples):
    ratios = []
    for s in samples:
        w1, w2 = (v.extra["world_coord"] for v in s.views)
        raw = dataset.raw(s.meta["index"])
        for v, w in zip(s.views, (w1, w2)):
            np.testing.assert_array_equal(w, raw.coord[v.meta["origin_index"]])
        p1, p2 = patches(w1), patches(w2)
        m1, m2 = (v.extra[MASK_KEY] for v in s.views)
        hidden1 = {p for p, m in zip(p1, m1) if m}
        hidden2 = {p for p, m in zip(p2, m2) if m}
        assert not hidden1 & hidden2                                    # no patch hidden in both views
        assert all(m == (p in hidden1) for p, m in zip(p1, m1))          # a patch is masked as a whole
        assert all(m == (p in hidden2) for p, m in zip(p2, m2))
        union = set(p1) | set(p2)
        assert len(hidden1) <= int(0.4 * len(union)) and len(hidden2) <= int(0.4 * len(union))
        ratios += [len(hidden1) / len(set(p1)), len(hidden2) / len(set(p2))]
    assert np.mean(ratios) == pytest.approx(0.4, abs=0.03), ratios     # 40 % of each view's patches
    assert all(abs(r - 0.4) < 0.08 for r in ratios), ratios


def test_knn_matches_are_random_neighbours_within_radius_on_original_coordinates(dataset, samples):
    s = samples[0]
    w1, w2 = (v.extra["world_coord"] for v in s.views)
    m = s.matches
    assert len(m) > 200 and len(np.unique(m[:, 0])) == len(m)
    assert np.linalg.norm(w1[m[:, 0]] - w2[m[:, 1]], axis=1).max() < DATA.match_radius
    _, nearest = cKDTree(w2).query(w1[m[:, 0]])
    assert 0.05 < (nearest != m[:, 1]).mean() < 0.95     # a random neighbour, not always the nearest
    again = dataset.get_sample(0, np.random.default_rng(0))
    np.testing.assert_array_equal(again.matches, m)
    np.testing.assert_array_equal(again.view1.extra[MASK_KEY], s.view1.extra[MASK_KEY])
    data = MSCDataConfig(grid_size=0.05, match_radius=0.075, max_points=4000, matching="nearest")
    near = build_msc_dataset(str(dataset.scene_dirs[0].parent), data).get_sample(0, np.random.default_rng(0))
    n1, n2 = (v.extra["world_coord"] for v in near.views)
    _, nn = cKDTree(n2).query(n1[near.matches[:, 0]])
    np.testing.assert_array_equal(near.matches[:, 1], nn)


def test_mask_token_replaces_only_the_masked_inputs(samples):
    batch = pair_collate(DATA)(samples[:2])
    method = make()
    mask = batch.view1.extra[MASK_KEY]
    assert mask.dtype == torch.bool and 0 < int(mask.sum()) < len(mask)
    x = method.masked_input(batch.view1, mask)
    token = method.mask_token.token
    assert torch.equal(x.feat[mask], token.detach().expand(int(mask.sum()), -1))
    assert torch.equal(x.feat[~mask], batch.view1.feat[~mask])
    x.feat.sum().backward()
    assert torch.equal(token.grad, torch.full_like(token, float(mask.sum())))


def naive_reconstruction(method: MSC, batch, samples) -> tuple[float, float]:
    """Colour / normal losses by a loop over masked points, targets from the sample clouds themselves."""
    feats, colors, normals = [], [], []
    with torch.no_grad():
        for v, view in enumerate((batch.view1, batch.view2)):
            mask = view.extra[MASK_KEY]
            feats.append(method.net(method.masked_input(view, mask)).double())
            colors.append(np.concatenate([s.views[v].color for s in samples]))
            normals.append(np.concatenate([s.views[v].normal for s in samples]))
        wc, bc = method.color_head.weight.double(), method.color_head.bias.double()
        wn, bn = method.normal_head.weight.double(), method.normal_head.bias.double()
        color_terms, normal_terms = [], []
        for v, view in enumerate((batch.view1, batch.view2)):
            for i in np.flatnonzero(view.extra[MASK_KEY].numpy()):
                pc = (wc @ feats[v][i] + bc).numpy()
                color_terms.append(float(((pc - colors[v][i]) ** 2).sum()))
                pn = (wn @ feats[v][i] + bn).numpy()
                n = normals[v][i].astype(np.float64)
                normal_terms.append(1.0 - float(pn @ n / (np.linalg.norm(pn) * np.linalg.norm(n))))
    return float(np.mean(color_terms)), float(np.mean(normal_terms))


def test_reconstruction_targets_are_the_unmasked_inputs_of_masked_points(samples):
    batch = pair_collate(DATA)(samples[:2])
    method = make(reconstruct_normal=True, view1_mix_prob=0.0)
    torch.manual_seed(3)
    out = method(batch)
    color, normal = naive_reconstruction(method, batch, samples[:2])
    assert out["loss_color"].item() == pytest.approx(color, rel=1e-5)
    assert out["loss_normal"].item() == pytest.approx(normal, rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["loss_nce"].item() + color + normal, rel=1e-5)
    masked = batch.view1.extra[MASK_KEY]
    target = method.targets(batch.view1, "color")
    assert torch.equal(target, torch.from_numpy(np.concatenate([s.view1.color for s in samples[:2]])))
    assert not torch.equal(target[masked], method.masked_input(batch.view1, masked).feat[masked, :3])
    assert out["masked"].item() == pytest.approx(
        float(torch.cat([masked, batch.view2.extra[MASK_KEY]]).float().mean()))
    assert out["matches"].item() == 512 and out["mixed"].item() == 0.0


def test_view_mixing_merges_samples_in_pairs():
    n = [3, 4, 2]
    view = PointBatch(coord=torch.zeros(9, 3), feat=torch.zeros(9, 1), grid_coord=torch.zeros(9, 3, dtype=torch.long),
                      offset=torch.tensor([3, 7, 9]), meta=[{"i": 0}, {"i": 1}, {"i": 2}])
    mixed = mix_views(view)
    assert mixed.offset.tolist() == [7, 9]                        # released code: offset[1:-1:2] + [offset[-1]]
    assert mixed.batch.tolist() == [0] * 7 + [1] * 2 and mixed.batch_size == 2
    assert sum(n) == len(mixed) and view.offset.tolist() == [3, 7, 9]


def test_view_mixing_changes_the_features_in_training_only(samples):
    batch = pair_collate(DATA)(samples[:2])
    outs = {}
    for p in (0.0, 1.0):
        method = make(view1_mix_prob=p)
        torch.manual_seed(4)
        outs[p] = method(batch)
    assert outs[1.0]["mixed"].item() == 1.0 and outs[0.0]["mixed"].item() == 0.0
    assert outs[1.0]["loss_nce"].item() != pytest.approx(outs[0.0]["loss_nce"].item(), rel=1e-4)
    method = make(view1_mix_prob=1.0)
    method.eval()
    assert method(batch)["mixed"].item() == 0.0


def test_heads_exist_only_for_enabled_terms_and_every_parameter_learns(samples):
    batch = pair_collate(DATA)(samples[:2])
    bare = make(reconstruct_color=False)
    assert bare.color_head is None and bare.normal_head is None
    assert not [k for k in bare.state_dict() if "head" in k]
    for method in (bare, make(reconstruct_normal=True)):
        out = method(batch)
        out["loss"].backward()
        dead = [n for n, p in method.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not dead
    assert "loss_color" not in bare(batch)
    with pytest.raises(ValueError, match="color"):
        MSC(MSCConfig(), BackboneConfig(preset="spunet-tiny", in_channels=3),
            MSCDataConfig(feat_keys=["normal"]))
    assert feature_columns(["ones", "normal", "color"], "color") == slice(4, 7)
    with pytest.raises(ValueError, match="0.5"):
        MSCDataConfig(mask_ratio=0.6)


def test_presets_and_train_end_to_end(dataset, tmp_path, monkeypatch):
    root = str(dataset.scene_dirs[0].parent)
    monkeypatch.setitem(METHODS, "msc", SPEC)
    paper = method_config("msc", flags={"data_root": root})
    assert (paper.model.preset, paper.data.grid_size, paper.optim.lr, paper.optim.momentum, paper.optim.nesterov) == \
        ("spunet34", 0.02, 0.1, 0.8, True)
    assert (paper.steps, paper.schedule.warmup_steps, paper.loader.batch_size) == (22200, 222, 4)
    assert (paper.data.mask_grid_size, paper.data.mask_ratio, paper.data.match_radius) == (0.1, 0.4, 0.03)
    assert (paper.method.tau, paper.method.max_pairs, paper.method.view1_mix_prob) == (0.4, 8192, 0.8)
    lr = LRFactor(paper.schedule, paper.steps)                   # one-cycle: lr/10 -> lr after 1 %, -> lr/1e5
    assert (lr(0), lr(222), lr(22200)) == pytest.approx((0.1, 1.0, 1e-5))
    cfg = method_config("msc", files=["msc_cpu_small"],
                        flags={"data_root": root, "steps": 2, "device": "cpu", "progress": False},
                        overrides=["data.grid_size=0.1", "data.match_radius=0.15", "data.max_points=3000",
                                   "method.max_pairs=256", "loader.batch_size=2", "loader.num_workers=0",
                                   "log_every=1"])
    assert cfg.model.preset == "spunet-tiny" and cfg.optim.nesterov
    result = train(cfg, SPEC, tmp_path / "run")
    assert result.step == 2 and (tmp_path / "run" / "backbone.safetensors").is_file()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {k.split("/")[-1] for r in rows for k in r}
    assert {"loss_nce", "loss_color", "pos_cos", "matches", "masked", "mixed"} <= logged
