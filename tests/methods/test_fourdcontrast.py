"""4DContrast: losses against a float64 loop reference, stop-gradient placement, 4D-4D composition, heads,
exports and an end-to-end training run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from contrast3d.data.fourd import SequenceConfig
from contrast3d.data.sequence_dataset import SequenceDataConfig, build_sequence_dataset
from contrast3d.engine.run import train
from contrast3d.evaluation.collapse import feature_std
from contrast3d.methods import METHODS, method_config
from contrast3d.methods import fourdcontrast as fdc
from contrast3d.methods.common import BackboneConfig
from contrast3d.methods.fourdcontrast import (
    SPEC,
    Encoded,
    FourDContrast,
    FourDContrastConfig,
    compose_4d_matches,
    feature_spread,
    lookup_table,
    sequence_losses,
)
from contrast3d.models.pretrained import load_pretrained

DATA = SequenceDataConfig(grid_size=0.15, grid_size_4d=0.3, scene_grid_size=0.1, min_object_points=10, max_points=1500,
                          sequence=SequenceConfig(num_frames=3, cell_size=0.2, object_points=100))
MODEL = BackboneConfig(preset="spunet-tiny", in_channels=1)
SMALL = dict(proj_dim=16, pred_hidden=8)


# --- float64 loop reference ----------------------------------------------------------------------------------------

def ref_d(p, z) -> float:
    dot = sum(a * b for a, b in zip(p, z))
    return -dot / (math.sqrt(sum(a * a for a in p)) * math.sqrt(sum(b * b for b in z)))


def ref_s(pa, za, pb, zb, rows) -> float:
    """Mean over rows ``(a, b)`` of ``D(pa[a], zb[b]) / 2 + D(pb[b], za[a]) / 2``."""
    terms = [0.5 * ref_d(pa[a], zb[b]) + 0.5 * ref_d(pb[b], za[a]) for a, b in rows]
    return sum(terms) / len(terms)


def ref_losses(z3, p3, z4, p4, matches, reduction):
    t = len(z3)
    pairs = [(i, j) for i in range(t) for j in range(i + 1, t)]

    def red(values):
        return sum(values) / len(values) if reduction == "mean" else sum(values)

    l3 = red([ref_s(p3[i], z3[i], p3[j], z3[j], matches[(i, j)]) for i, j in pairs if matches[(i, j)]])
    l34 = red([ref_s(p3[i], z3[i], p4, z4, matches[(i, t)]) for i in range(t) if matches[(i, t)]])
    to4d = [{a: v for a, v in matches[(i, t)]} for i in range(t)]
    l4 = []
    for i, j in pairs:
        rows = sorted({(to4d[i][a], to4d[j][b]) for a, b in matches[(i, j)] if a in to4d[i] and b in to4d[j]})
        if rows:
            l4.append(ref_s(p4, z4, p4, z4, rows))
    return l3, l34, red(l4)


def random_outputs(seed: int, t: int = 3, sizes=(7, 6, 8), m4: int = 9, dim: int = 5, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda n: torch.randn(n, dim, generator=g, dtype=torch.float64).requires_grad_(requires_grad)  # noqa: E731
    z3, p3 = [rnd(n) for n in sizes], [rnd(n) for n in sizes]
    z4, p4 = rnd(m4), rnd(m4)
    rng = np.random.default_rng(seed)
    matches = {}
    for i in range(t):
        for j in range(i + 1, t):
            k = int(rng.integers(3, 10))
            matches[(i, j)] = [(int(rng.integers(sizes[i])), int(rng.integers(sizes[j]))) for _ in range(k)]
        covered = sorted(rng.choice(sizes[i], size=sizes[i] - 2, replace=False).tolist())  # two points without 4D
        matches[(i, t)] = [(a, int(rng.integers(m4))) for a in covered]
    return Encoded(z3, p3, z4, p4), matches


def as_tensors(matches):
    return {k: torch.tensor(v, dtype=torch.long).reshape(-1, 2) for k, v in matches.items()}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses_match_the_loop_reference(reduction):
    enc, matches = random_outputs(0)
    got = sequence_losses(enc, as_tensors(matches), (1.0, 1.0, 1.0), reduction)
    ref = ref_losses([z.tolist() for z in enc.z3], [p.tolist() for p in enc.p3], enc.z4.tolist(), enc.p4.tolist(),
                     matches, reduction)
    for name, value in zip(("loss3d", "loss3d4d", "loss4d"), ref):
        assert got[name].item() == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert got["matches3d"].item() == sum(len(matches[(i, j)]) for i in range(3) for j in range(i + 1, 3))
    assert got["matches3d4d"].item() == sum(len(matches[(i, 3)]) for i in range(3))


def test_pairs_without_matches_are_left_out_and_zero_weights_skipped():
    enc, matches = random_outputs(1)
    matches[(0, 2)] = []
    got = sequence_losses(enc, as_tensors(matches), (1.0, 1.0, 0.0))
    ref = ref_losses([z.tolist() for z in enc.z3], [p.tolist() for p in enc.p3], enc.z4.tolist(), enc.p4.tolist(),
                     matches, "mean")
    assert got["loss3d"].item() == pytest.approx(ref[0], rel=1e-12) and "loss4d" not in got
    only3d = sequence_losses(Encoded(enc.z3, enc.p3), as_tensors(matches), (1.0, 0.0, 0.0))
    assert set(only3d) == {"loss3d", "matches3d"}
    with pytest.raises(ValueError, match="4D outputs"):
        sequence_losses(Encoded(enc.z3, enc.p3), as_tensors(matches), (1.0, 1.0, 0.0))


def test_compose_4d_matches_against_loop():
    rng = np.random.default_rng(2)
    m34_i = torch.tensor([[0, 3], [1, 3], [2, 5], [4, 0]])
    m34_j = torch.tensor([[0, 7], [1, 7], [3, 2]])
    m_ij = torch.from_numpy(rng.integers(0, 5, (30, 2))) % torch.tensor([5, 4])
    ti, tj = lookup_table(m34_i, 5), lookup_table(m34_j, 4)
    assert ti.tolist() == [3, 3, 5, -1, 0] and tj.tolist() == [7, 7, -1, 2]
    got = compose_4d_matches(m_ij, ti, tj, 8)
    a = {0: 3, 1: 3, 2: 5, 4: 0}
    b = {0: 7, 1: 7, 3: 2}
    ref = sorted({(a[x], b[y]) for x, y in m_ij.tolist() if x in a and y in b})
    assert sorted(map(tuple, got.tolist())) == ref and len(got) == len(ref)


@pytest.mark.parametrize("term, reached", [("loss3d", {"p3"}), ("loss3d4d", {"p3", "p4"}), ("loss4d", {"p4"})])
def test_stop_gradient_only_the_predictions_receive_gradients(term, reached):
    """SimSiam placement in every term, Eq. 5 included: gradients reach ``p``, never ``z`` (the targets)."""
    enc, matches = random_outputs(3, requires_grad=True)
    weights = tuple(float(n == term) for n in ("loss3d", "loss3d4d", "loss4d"))
    sequence_losses(enc, as_tensors(matches), weights)[term].backward()
    assert all(z.grad is None for z in enc.z3) and enc.z4.grad is None
    got = {"p3"} if any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.p3) else set()
    if enc.p4.grad is not None and enc.p4.grad.abs().sum() > 0:
        got.add("p4")
    assert got == reached


def test_feature_spread_is_the_collapse_monitor():
    z = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert feature_spread(z).item() == pytest.approx(feature_std(z), rel=1e-5)
    assert feature_spread(torch.ones(50, 16)).item() == pytest.approx(0.0, abs=1e-7)


# --- the method on real samples ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch(sim_scenes):
    ds = build_sequence_dataset(str(sim_scenes), DATA)
    return fdc.sequence_collate(DATA)([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)])


def test_every_parameter_gets_a_gradient_and_logs(batch):
    torch.manual_seed(0)
    method = FourDContrast(FourDContrastConfig(**SMALL), MODEL, DATA)
    assert method.net4d.ndim == 4 and method.net3d.ndim == 3
    out = method(batch)
    out["loss"].backward()
    dead = [n for n, p in method.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead[:5]
    expected = out["loss3d"] + out["loss3d4d"] + out["loss4d"]
    assert torch.isfinite(out["loss"]) and out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0 < out["feat_std3d"].item() <= 1 and 0 < out["feat_std4d"].item() <= 1
    assert out["matches3d"].item() > 0 and out["matches4d"].item() > 0
    n3d = sum(len(v) for v in batch.views[:-1])
    assert out["matches3d4d"].item() == n3d                      # every 3D point has its 4D voxel


def test_3d_only_ablation_builds_no_4d_encoder(batch):
    method = FourDContrast(FourDContrastConfig(w3d4d=0.0, w4d=0.0, **SMALL), MODEL, DATA)
    assert method.net4d is None and set(method.exports()) == {"backbone"}
    method(batch)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


def test_config_and_input_width_checks():
    with pytest.raises(ValueError, match="w3d"):
        FourDContrastConfig(w3d=0.0, w3d4d=0.0)
    with pytest.raises(ValueError, match="in_channels"):
        FourDContrast(FourDContrastConfig(**SMALL), BackboneConfig(preset="spunet-tiny", in_channels=6), DATA)


def test_exports_both_backbones_with_records():
    method = FourDContrast(FourDContrastConfig(preset4d="spunet-tiny", **SMALL), MODEL, DATA)
    exports = method.exports()
    assert set(exports) == {"backbone", "backbone4d"} and exports["backbone"].module is method.net3d
    assert exports["backbone"].pointcept and not exports["backbone4d"].pointcept
    r3, r4 = exports["backbone"].record, exports["backbone4d"].record
    assert (r3["ndim"], r3["grid_size"], r3["feat_keys"]) == (3, DATA.grid_size, ["ones"])
    assert (r4["ndim"], r4["grid_size"], r4["preset"]) == (4, DATA.grid_size_4d, "spunet-tiny")


def test_train_end_to_end(sim_scenes, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "fourdcontrast", SPEC)
    overrides = ["model.preset=spunet-tiny", "model.in_channels=1", "method.preset4d=spunet-tiny",
                 "method.proj_dim=16", "method.pred_hidden=8", "data.grid_size=0.2", "data.grid_size_4d=0.4",
                 "data.scene_grid_size=0.1", "data.min_object_points=10", "data.max_points=800",
                 "data.sequence.num_frames=2", "data.sequence.cell_size=0.2", "data.sequence.object_points=100",
                 "loader.batch_size=2", "loader.num_workers=0", "log_every=1"]
    cfg = method_config("fourdcontrast", flags={"data_root": str(sim_scenes), "steps": 2, "device": "cpu",
                                                "progress": False}, overrides=overrides)
    assert cfg.optim.lr == 0.25 and cfg.schedule.name == "step" and cfg.schedule.gamma == 0.99  # paper preset
    result = train(cfg, SPEC, tmp_path)
    assert result.step == 2 and set(result.exports) == {"backbone", "backbone4d"}
    pre4 = load_pretrained(tmp_path / "backbone4d.safetensors")
    assert pre4.record.ndim == 4 and pre4.record.method == "fourdcontrast" and pre4.model.ndim == 4
    assert load_pretrained(tmp_path / "backbone.safetensors").record.ndim == 3
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("feat_std4d" in str(x) for x in lines) and any("loss3d4d" in str(x) for x in lines)
