"""Instance segmentation (PointGroup-style): losses, data, inference, and a short run on simulated scenes."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from contrast3d.data import transforms as T
from contrast3d.errors import DataError
from contrast3d.evaluation.clustering import ClusterConfig, ClusterResult
from contrast3d.evaluation.finetune_tasks import load_task_config
from contrast3d.evaluation.insseg import evaluate_insseg, predict_instances, voxel_to_point_proposals
from contrast3d.evaluation.insseg_model import (
    InsSegConfig,
    InsSegModel,
    InsSegModelConfig,
    InstanceDataConfig,
    InstanceDataset,
    instance_centroids,
    instance_train_transform,
    load_insseg,
    offset_losses,
    semantic_loss,
)
from contrast3d.evaluation.instance_metrics import ground_truth_instances
from contrast3d.evaluation.splits import LabelBudget
from contrast3d.io.pointcept import read_pointcept_scene, write_pointcept_scene
from contrast3d.models.backbone import BackboneConfig, build_backbone, spunet_record
from contrast3d.models.pretrained import PretrainedRecord, load_pretrained, read_safetensors, save_pretrained
from contrast3d.structures import PointCloud, collate_points

TINY = ["model.preset=spunet-tiny", "data.grid_size=0.2", "data.max_points=1500", "loader.batch_size=2",
        "loader.num_workers=0", "checkpoint_every=0", "log_every=1", "optim.lr=0.05", "schedule.warmup_steps=0",
        "method.bn_momentum=0.1", "method.min_cluster_points=3", "method.min_region_size=20"]


@pytest.fixture(scope="module")
def ft_root(simulated) -> Path:
    """Two simulated scenes (with instance.npy): 1 train + 1 val by the deterministic split."""
    return simulated("ins_scenes", (21, 22))


# ----------------------------------------------------------------------------- losses
def _naive_offset_losses(offset: np.ndarray, coord: np.ndarray, instance: np.ndarray) -> tuple[float, float]:
    l1 = cos = 0.0
    count = 0
    for i in range(len(coord)):
        if instance[i] < 0:
            continue
        members = [j for j in range(len(coord)) if instance[j] == instance[i]]
        centroid = sum(coord[j] for j in members) / len(members)
        g = centroid - coord[i]
        l1 += float(np.abs(offset[i] - g).sum())
        cos -= float(np.dot(offset[i] / (np.linalg.norm(offset[i]) + 1e-8), g / (np.linalg.norm(g) + 1e-8)))
        count += 1
    return l1 / (count + 1e-8), cos / (count + 1e-8)


def test_offset_losses_match_naive_loop_and_hand_example():
    rng = np.random.default_rng(0)
    coord = rng.normal(size=(30, 3))
    instance = rng.integers(-1, 5, 30) * 7  # sparse ids, -7 = none (any negative id means none)
    offset = rng.normal(size=(30, 3))
    l1, cos = offset_losses(torch.from_numpy(offset), torch.from_numpy(coord), torch.from_numpy(instance))
    ref = _naive_offset_losses(offset, coord, np.where(instance < 0, -1, instance))
    assert l1.item() == pytest.approx(ref[0], rel=1e-5) and cos.item() == pytest.approx(ref[1], rel=1e-5)
    centroid, mask = instance_centroids(torch.from_numpy(coord), torch.from_numpy(instance))
    first = np.flatnonzero(instance == instance[mask.numpy()][0])
    assert np.allclose(centroid[first[0]].numpy(), coord[first].mean(0)) and not mask[instance < 0].any()
    # hand example: points (0,0,0) and (2,0,0) of one instance, centroid (1,0,0)
    c = torch.tensor([[0.0, 0, 0], [2, 0, 0], [5, 5, 5]])
    o = torch.tensor([[1.0, 0, 0], [-1, 1, 0], [3, 3, 3]])
    l1, cos = offset_losses(o, c, torch.tensor([4, 4, -1]))
    assert l1.item() == pytest.approx(0.5, abs=1e-6)
    assert cos.item() == pytest.approx(-(1 + 1 / math.sqrt(2)) / 2, abs=1e-6)
    # no instance at all: zero, with a gradient path
    o.requires_grad_(True)
    l1, cos = offset_losses(o, c, torch.tensor([-1, -1, -1]))
    (l1 + cos).backward()
    assert l1.item() == 0.0 and cos.item() == 0.0 and torch.equal(o.grad, torch.zeros_like(o))


def test_offset_losses_gradient():
    rng = np.random.default_rng(1)
    coord = torch.from_numpy(rng.normal(size=(12, 3)))
    instance = torch.from_numpy(rng.integers(-1, 3, 12))
    offset = torch.from_numpy(rng.normal(size=(12, 3))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda o: offset_losses(o.double(), coord, instance), (offset,))


def test_semantic_loss_no_labels_and_bad_labels():
    logits = torch.randn(5, 4, requires_grad=True)
    loss, acc, count = semantic_loss(logits, torch.full((5,), -1), 4, [])
    loss.backward()
    assert loss.item() == 0.0 and count.item() == 0 and logits.grad is not None
    loss, _, count = semantic_loss(logits, torch.tensor([0, 1, -1, 3, 2]), 4, [])
    assert count.item() == 4 and loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[[0, 1, 3, 4]], torch.tensor([0, 1, 3, 2])).item(), rel=1e-6)
    with pytest.raises(DataError, match="num_classes"):
        semantic_loss(logits, torch.tensor([0, 9, -1, 3, 2]), 4, [{"name": "s"}])


# ----------------------------------------------------------------------------- data
def _labelled_scene(path: Path) -> Path:
    """12 points: a wall instance (class 0), two chairs (class 4), a table (class 6), unlabelled points."""
    coord = np.arange(36, dtype=np.float32).reshape(12, 3) * 0.1
    segment = np.array([0, 0, 0, 4, 4, 4, 4, 6, 6, -1, 4, -1])
    instance = np.array([9, 9, 9, 3, 3, 5, 5, 7, 7, -1, 5, 8])
    write_pointcept_scene(path / "s0", PointCloud(coord=coord, color=np.zeros_like(coord), normal=np.ones_like(coord),
                                                  segment=segment, instance=instance))
    return path / "s0"


def test_instance_dataset_things_and_point_budget(tmp_path):
    scene = _labelled_scene(tmp_path)
    ds = InstanceDataset([scene], with_classes=True)
    sample = ds.get_sample(0, np.random.default_rng(0))
    # things: chairs 3, 5 and table 7 (wall and the unlabelled instance 8 are not), compact ids by sorted id
    assert sample.instance.tolist() == [-1, -1, -1, 0, 0, 1, 1, 2, 2, -1, 1, -1]
    assert sample.extra["instance_class"].tolist() == [-1, -1, -1, 4, 4, 4, 4, 6, 6, -1, 4, -1]
    split = ds.make_label_split(LabelBudget.parse("3pts"), seed=0)
    ds.apply_split(split)
    labelled = split.points["s0"]
    seg, thing, cls = ds.instance_labels(0)
    assert np.flatnonzero(seg >= 0).tolist() == sorted(labelled)
    assert thing.tolist() == sample.instance.tolist()  # the instance layer stays complete
    full = np.array([-1, -1, -1, 4, 4, 4, 4, 6, 6, -1, 4, -1])
    for g in range(3):  # a thing's class is known iff one of its points is labelled
        pts = np.flatnonzero(thing == g)
        known = bool(np.isin(pts, labelled).any())
        assert (cls[pts] == (full[pts] if known else -1)).all()
    plain = InstanceDataset([scene]).get_sample(0, np.random.default_rng(0))
    assert "instance_class" not in plain.extra
    bare = tmp_path / "bare"
    write_pointcept_scene(bare / "s1", PointCloud(coord=np.zeros((3, 3), np.float32), segment=np.zeros(3, np.int64)))
    with pytest.raises(DataError, match="instance.npy"):
        InstanceDataset([bare / "s1"]).get_sample(0, np.random.default_rng(0))


def test_train_transform_limits_rotation():
    steps = instance_train_transform(InstanceDataConfig(rotate_angle=0.1)).transforms
    rot = [s for s in steps if isinstance(s, T.RandomRotate) and s.axis == "z"]
    assert len(rot) == 1 and tuple(rot[0].angle) == (-0.1, 0.1)
    assert isinstance(steps[0], T.CenterShift) and isinstance(steps[2], T.RandomRotate)
    assert not any(isinstance(s, T.RandomRotate) and s.axis == "z"
                   for s in instance_train_transform(InstanceDataConfig(rotate_z=False)).transforms)


# ----------------------------------------------------------------------------- inference
def test_voxel_to_point_proposals_matches_loop():
    rng = np.random.default_rng(0)
    vox = ClusterResult(point_index=np.array([0, 2, 1, 2, 3]), offset=np.array([2, 5]), classes=np.array([3, 4]),
                        scores=np.array([0.9, 0.5]), source=np.zeros(2, np.int64), num_points=5)
    inverse = rng.integers(0, 5, 40)
    pts = voxel_to_point_proposals(vox, inverse)
    masks = pts.masks()
    for k, voxels in enumerate(([0, 2], [1, 2, 3])):
        assert masks[k].tolist() == [bool(inverse[i] in voxels) for i in range(40)]
    assert pts.classes.tolist() == [3, 4] and pts.num_points == 40


class _Oracle(nn.Module):
    """Predicts each point's ground-truth class and its exact offset to its instance centroid."""

    def __init__(self, cloud: PointCloud, zero_offsets: bool = False):
        super().__init__()
        self.logits = torch.from_numpy(np.eye(20)[np.maximum(cloud.segment, 0)] * 10.0).float()
        _, _, _, idx = ground_truth_instances(cloud.segment, cloud.instance)
        c, m = cloud.coord.astype(np.float64), idx >= 0
        centroid = np.zeros((idx.max() + 1, 3))
        np.add.at(centroid, idx[m], c[m])
        centroid /= np.bincount(idx[m])[:, None]
        off = np.zeros_like(c)
        off[m] = 0.0 if zero_offsets else centroid[idx[m]] - c[m]
        self.off = torch.from_numpy(off).float()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        index = torch.from_numpy(np.asarray(batch.meta[0]["sample_index"]))
        return self.logits[index], self.off[index]


def test_oracle_offsets_give_perfect_ap(ft_root):
    cloud = read_pointcept_scene(sorted(ft_root.glob("pointcept/*"))[0])
    cloud = cloud.select(cloud.coord[:, 0] < 3.0)
    cluster = ClusterConfig(radius=0.03, min_points=5)
    preds: dict = {}
    scores = evaluate_insseg(_Oracle(cloud), [cloud], num_classes=20, grid_size=0.02, cluster=cluster,
                             predictions=preds)
    # AP50/AP25 exact; at IoU 0.9 a voxel shared by two objects may cost one instance
    assert scores.ap.map50 == pytest.approx(1.0) and scores.ap.map25 == pytest.approx(1.0) and scores.ap.map > 0.95
    pred = preds[cloud.name]
    assert pred.semantic.shape == (len(cloud),) and pred.proposals.num_points == len(cloud)
    ids = pred.proposals.instance_ids()
    assert (ids[np.isin(cloud.segment, [0, 1])] == -1).all()  # wall / floor never clustered
    # the same scene clustered without offsets falls apart (points 5 cm apart, radius 3 cm)
    bad = evaluate_insseg(_Oracle(cloud, zero_offsets=True), [cloud], num_classes=20, grid_size=0.02, cluster=cluster)
    assert bad.ap.map50 < 0.5
    # voting over every fragment and the dual set keep the oracle perfect at 2 cm
    both = predict_instances(_Oracle(cloud), cloud, grid_size=0.02, max_fragments=0,
                             cluster=ClusterConfig(radius=0.03, min_points=5, dual=True))
    assert set(both.proposals.source.tolist()) <= {0, 1} and len(both.proposals) >= len(pred.proposals)


# ----------------------------------------------------------------------------- whole run
def _cli(argv: list[str]) -> int:
    from contrast3d.commands import finetune as finetune_command

    parser = argparse.ArgumentParser(prog="contrast3d")
    finetune_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_run_exports_reload_and_resume(ft_root, tmp_path, capsys):
    torch.manual_seed(0)
    pre = build_backbone(BackboneConfig(preset="spunet-tiny", in_channels=6))
    init = save_pretrained(pre, tmp_path / "pre" / "backbone.safetensors",
                           PretrainedRecord(**spunet_record(pre, "spunet-tiny", ["color", "normal"], 0.2)))
    out = tmp_path / "run"
    sets = [x for s in TINY for x in ("--set", s)]
    base = ["finetune", "insseg", "--data", str(ft_root), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert _cli(base + ["--init", str(init), "--labels", "30pts", "--steps", "2", "--eval-every", "2",
                        "--config", "insseg_cpu_small"] + sets) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "semantic head" in printed
    res = json.loads((out / "results.json").read_text())
    for key in ("AP", "AP50", "AP25", "per_class", "semantic", "label_budget", "seed", "init", "steps", "cluster"):
        assert key in res, key
    assert res["task"] == "insseg" and res["steps"] == 2 and res["labelled"]["points"] == 30
    assert res["init_loaded_tensors"] == len(read_safetensors(init)) and res["cluster"]["radius"] == pytest.approx(0.3)
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val/AP50" in r for r in logs) and any("offset_l1" in r for r in logs)
    # exports: the backbone through load_pretrained, the whole network through load_insseg
    backbone = load_pretrained(out / "backbone.safetensors")
    assert backbone.record.num_classes == 0 and backbone.record.method == "insseg"
    with pytest.raises(DataError, match="no buildable network"):
        load_pretrained(out / "insseg_heads.safetensors")
    net = load_insseg(out)
    again = load_insseg(out / "checkpoints" / "last.pt")
    scene = read_pointcept_scene(sorted(ft_root.glob("pointcept/*"))[-1])
    from contrast3d.data.voxelize import GridSample
    batch = collate_points([GridSample(0.2, mode="test").fragments(scene)[0]], ("color", "normal"))
    (la, oa), (lb, ob) = net(batch), again(batch)
    assert torch.equal(la, lb) and torch.equal(oa, ob) and la.shape[1] == 20 and oa.shape[1] == 3
    assert torch.equal(backbone.model(batch), net.net(batch))
    # resume to 3 steps
    assert _cli(["finetune", "insseg", "--out", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == 3


def test_model_step_has_gradients_everywhere(ft_root):
    cfg = InstanceDataConfig(grid_size=0.2, max_points=0)
    ds = InstanceDataset(sorted(ft_root.glob("pointcept/*")), instance_train_transform(cfg))
    batch = collate_points([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)], cfg.feat_keys)
    model = InsSegModel(InsSegConfig(), InsSegModelConfig(preset="spunet-tiny"), cfg)
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["instance_points"] > 0 and out["offset_dir"] < 0.5
    assert all(p.grad is not None for p in model.parameters())
    assert set(model.exports()) == {"backbone", "insseg_heads"}


def test_presets_resolve():
    gpu = load_task_config("insseg")
    assert (gpu.optim.name, gpu.optim.lr, gpu.optim.nesterov, gpu.schedule.name, gpu.loader.batch_size) == \
        ("sgd", 0.1, True, "poly", 12)
    assert gpu.model.preset == "spunet34" and gpu.data.grid_size == 0.02 and gpu.method_name == "insseg"
    assert gpu.data.rotate_angle == pytest.approx(math.pi) and gpu.method.cluster_radius is None
    cpu = load_task_config("insseg", files=["insseg_cpu_small"], overrides=["method.labels=1%"])
    assert cpu.model.preset == "spunet-tiny" and cpu.data.grid_size == 0.05 and cpu.method.labels == "1%"
    assert cpu.method.min_cluster_points == 20
