"""3D detection (VoteNet-style): targets and losses against naive loops, the head, post-processing, a short run."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrast3d.data.transforms import CenterShift
from contrast3d.errors import DataError
from contrast3d.evaluation.det_model import (
    BoxTargets,
    DetConfig,
    DetModel,
    DetModelConfig,
    VoteHead,
    class_mean_sizes,
    gt_boxes_from_batch,
    load_det,
    votenet_loss,
    voxel_centres,
)
from contrast3d.evaluation.detection import BoxSelection, evaluate_det, select_boxes
from contrast3d.evaluation.detection_metrics import boxes_from_instances
from contrast3d.evaluation.finetune_tasks import load_task_config
from contrast3d.evaluation.insseg_model import InstanceDataConfig, InstanceDataset, instance_train_transform
from contrast3d.evaluation.instance_metrics import InstanceEvalConfig
from contrast3d.io.pointcept import read_pointcept_scene, write_pointcept_scene
from contrast3d.models.pretrained import load_pretrained
from contrast3d.structures import PointCloud, collate_points

TINY = ["model.preset=spunet-tiny", "data.grid_size=0.2", "data.max_points=1500", "loader.batch_size=2",
        "loader.num_workers=0", "checkpoint_every=0", "log_every=1", "schedule.warmup_steps=0",
        "method.bn_momentum=0.1", "model.num_seeds=64", "model.num_proposals=16", "model.proposal_width=32"]


@pytest.fixture(scope="module")
def ft_root(simulated) -> Path:
    """Two simulated scenes (with instance.npy): 1 train + 1 val by the deterministic split."""
    return simulated("det_scenes", (21, 22))


# ----------------------------------------------------------------------------- targets and losses
def test_gt_boxes_from_batch_match_boxes_from_instances():
    rng = np.random.default_rng(0)
    clouds, cls_of = [], {}
    for b in range(2):
        inst = rng.integers(-1, 4, 50)
        cls = np.where(inst >= 0, (inst + 2 * b) % 5 + 2, -1)
        clouds.append(PointCloud(coord=rng.normal(size=(50, 3)).astype(np.float32), instance=inst,
                                 grid_coord=np.zeros((50, 3), np.int64), extra={"instance_class": cls}))
        cls_of[b] = cls
    batch = collate_points(clouds, feat_keys=("ones",))
    gt = gt_boxes_from_batch(batch.coord, batch.instance, batch.extra["instance_class"], batch.batch)
    ref_boxes, ref_cls, ref_scene = [], [], []
    cfg = InstanceEvalConfig(ignore_classes=())
    for b, c in enumerate(clouds):
        boxes, classes, _ = boxes_from_instances(c.coord, cls_of[b], c.instance, cfg)
        ref_boxes.append(boxes)
        ref_cls.append(classes)
        ref_scene.append(np.full(len(classes), b))
    assert np.allclose(torch.cat([gt.center, gt.size], 1).numpy(), np.concatenate(ref_boxes), atol=1e-6)
    assert gt.cls.tolist() == np.concatenate(ref_cls).tolist()
    assert gt.batch.tolist() == np.concatenate(ref_scene).tolist()
    inst = batch.instance.numpy()
    assert ((gt.point_box.numpy() >= 0) == (inst >= 0)).all()
    # each point's box contains it
    pb = gt.point_box.numpy()
    rows = pb[pb >= 0]
    assert (np.abs(batch.coord.numpy()[pb >= 0] - gt.center.numpy()[rows]) <= gt.size.numpy()[rows] / 2 + 1e-6).all()


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) <= 1.0 else abs(x) - 0.5


def _ce(logits: np.ndarray, y: int) -> float:
    m = logits.max()
    return float(m + np.log(np.exp(logits - m).sum()) - logits[y])


def _naive_loss(out: dict, gt: BoxTargets, mean_size: np.ndarray, cfg: DetConfig) -> dict[str, float]:
    o = {k: v.detach().double().numpy() for k, v in out.items()}
    c, s, cls, sc, pbox = (x.double().numpy() if x.is_floating_point() else x.numpy()
                           for x in (gt.center, gt.size, gt.cls, gt.batch, gt.point_box))
    vote, nv = 0.0, 0
    for i, p in enumerate(o["seed_index"].astype(int)):
        if pbox[p] >= 0:
            vote += np.abs(o["vote_xyz"][i] - c[pbox[p]]).sum()
            nv += 1
    sums = dict.fromkeys(["obj", "c1", "hc", "hr", "sc", "sr", "sem"], 0.0)
    n_mask = n_pos = n_known = 0
    for p in range(len(o["proposal_xyz"])):
        boxes = [g for g in range(len(c)) if sc[g] == o["proposal_batch"][p]]
        if boxes:
            d = [math.sqrt(((o["proposal_xyz"][p] - c[g]) ** 2).sum() + 1e-6) for g in boxes]
            a, dist = boxes[int(np.argmin(d))], min(d)
        else:
            a, dist = -1, math.inf
        label = dist < cfg.near_threshold
        if label or dist > cfg.far_threshold:
            n_mask += 1
            sums["obj"] += cfg.objectness_weights[int(label)] * _ce(o["objectness"][p], int(label))
        if not label:
            continue
        n_pos += 1
        sums["c1"] += min(((o["center"][p] - c[g]) ** 2).sum() for g in boxes)
        sums["hc"] += _ce(o["heading_scores"][p], 0)
        sums["hr"] += _huber(o["heading_residuals_normalized"][p][0])
        if cls[a] < 0:
            continue
        n_known += 1
        k = int(cls[a])
        sums["sc"] += _ce(o["size_scores"][p], k)
        target = (s[a] - mean_size[k]) / mean_size[k]
        sums["sr"] += np.mean([_huber(x) for x in o["size_residuals_normalized"][p][k] - target])
        sums["sem"] += _ce(o["sem_scores"][p], k)
    c2 = sum(min(((o["center"][p] - c[g]) ** 2).sum() for p in range(len(o["center"]))
                 if o["proposal_batch"][p] == sc[g]) for g in range(len(c)))
    eps = 1e-6
    res = {"vote_loss": vote / (nv + eps), "objectness_loss": sums["obj"] / (n_mask + eps),
           "center_loss": sums["c1"] / (n_pos + eps) + c2 / (len(c) + eps),
           "heading_cls_loss": sums["hc"] / (n_pos + eps), "heading_reg_loss": sums["hr"] / (n_pos + eps),
           "size_cls_loss": sums["sc"] / (n_known + eps), "size_reg_loss": sums["sr"] / (n_known + eps),
           "sem_cls_loss": sums["sem"] / (n_known + eps)}
    res["loss"] = 10 * (res["vote_loss"] + 0.5 * res["objectness_loss"] + res["center_loss"]
                        + 0.1 * res["heading_cls_loss"] + res["heading_reg_loss"] + 0.1 * res["size_cls_loss"]
                        + res["size_reg_loss"] + 0.1 * res["sem_cls_loss"])
    return res


def test_votenet_loss_matches_naive_loops():
    rng = np.random.default_rng(3)
    k, nh, n_prop = 5, 2, 24
    gt = BoxTargets(center=torch.tensor([[0.0, 0, 0], [1.0, 0.2, 0], [5.0, 5, 5]]),
                    size=torch.tensor([[0.5, 0.4, 0.3], [1.0, 0.8, 0.2], [0.3, 0.3, 0.3]]),
                    cls=torch.tensor([2, -1, 3]), batch=torch.tensor([0, 0, 1]),
                    point_box=torch.tensor([0, 0, 1, -1, 2, -1, 2, 1]))
    prop_batch = torch.tensor([0] * 16 + [1] * 6 + [2] * 2)  # scene 2 has no box at all
    anchor = torch.tensor([[0.0, 0, 0], [5.0, 5, 5], [9.0, 9, 9]])[prop_batch.clamp(max=2)]
    agg = anchor + torch.from_numpy(rng.normal(scale=0.35, size=(n_prop, 3))).float()
    out = {"seed_index": torch.tensor([0, 2, 3, 4, 7, 6]),
           "vote_xyz": torch.from_numpy(rng.normal(size=(6, 3))).float(),
           "proposal_xyz": agg, "proposal_batch": prop_batch,
           "objectness": torch.randn(n_prop, 2), "center": agg + 0.1 * torch.randn(n_prop, 3),
           "heading_scores": torch.randn(n_prop, nh), "heading_residuals_normalized": 2 * torch.randn(n_prop, nh),
           "size_scores": torch.randn(n_prop, k), "size_residuals_normalized": 2 * torch.randn(n_prop, k, 3),
           "sem_scores": torch.randn(n_prop, k)}
    mean_size = torch.from_numpy(rng.uniform(0.3, 1.0, (k, 3))).float()
    cfg = DetConfig()
    got = votenet_loss(out, gt, mean_size, cfg)
    ref = _naive_loss(out, gt, mean_size.double().numpy(), cfg)
    for key, value in ref.items():
        assert got[key].item() == pytest.approx(value, rel=2e-5, abs=1e-6), key
    assert 0 < got["pos_ratio"].item() < 1 and got["num_boxes"].item() == 3
    # a batch without any box: geometric and class terms vanish, objectness is all negatives
    none = votenet_loss(out, BoxTargets(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
                                        torch.zeros(0, dtype=torch.long), torch.full((8,), -1)), mean_size, cfg)
    assert torch.isfinite(none["loss"]) and none["vote_loss"].item() == 0 and none["center_loss"].item() == 0
    expect = cfg.objectness_weights[0] * F.cross_entropy(out["objectness"], torch.zeros(n_prop, dtype=torch.long))
    assert none["objectness_loss"].item() == pytest.approx(expect.item() / (1 + 1e-6 / n_prop), rel=1e-5)


# ----------------------------------------------------------------------------- head
def test_vote_head_shapes_and_scene_separation():
    torch.manual_seed(0)
    counts = [40, 7]
    xyz = torch.cat([torch.rand(40, 3) * 3, torch.rand(7, 3) * 3 + 10])
    head = VoteHead(8, num_classes=4, num_seeds=16, num_proposals=5, proposal_radius=0.5, proposal_samples=4,
                    proposal_width=12, num_heading_bins=3)
    out = head(torch.randn(47, 8), xyz, torch.tensor(np.cumsum(counts)))
    seeds = out["seed_index"]
    assert seeds.numel() == 16 + 7 and (seeds[:16] < 40).all() and (seeds[16:] >= 40).all()
    assert len(set(seeds.tolist())) == seeds.numel()
    p = 5 + 5
    assert out["proposal_batch"].tolist() == [0] * 5 + [1] * 5
    assert (out["proposal_xyz"][5:] > 9).all() and (out["proposal_xyz"][:5] < 9).all()  # votes stay near seeds here
    shapes = {"objectness": (p, 2), "center": (p, 3), "heading_scores": (p, 3), "size_scores": (p, 4),
              "size_residuals_normalized": (p, 4, 3), "sem_scores": (p, 4)}
    for key, shape in shapes.items():
        assert tuple(out[key].shape) == shape, key
    assert torch.allclose(voxel_centres(torch.tensor([[0.01, 0.19, -0.01]]), 0.1), torch.tensor([[0.05, 0.15, -0.05]]))


# ----------------------------------------------------------------------------- post-processing and evaluation
def test_select_boxes_nms_threshold_and_per_class():
    center = np.array([[0.0, 0, 0], [0.05, 0, 0], [3.0, 0, 0], [6.0, 0, 0]])
    size = np.ones((4, 3))
    obj = np.array([0.9, 0.8, 0.6, 0.04])
    sem = np.array([[0.1, 0.0, 0.7, 0.2], [0.0, 0.1, 0.8, 0.1], [0.5, 0.0, 0.1, 0.4], [0.0, 0.0, 1.0, 0.0]])
    one = select_boxes(center, size, obj, sem, BoxSelection(per_class_proposal=False))
    # box 1 overlaps box 0 (same class 2) and is suppressed; box 3 is under the confidence threshold;
    # box 2's arg-max among non-ignored classes is 3 (class 0 is wall)
    assert one.classes.tolist() == [2, 3] and np.allclose(one.scores, [0.9, 0.6])
    assert np.allclose(one.boxes[:, 0], [0.0, 3.0])
    many = select_boxes(center, size, obj, sem)
    assert many.classes.tolist() == [2, 3, 2, 3] and np.allclose(many.scores, [0.63, 0.18, 0.06, 0.24])
    empty = select_boxes(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 4)))
    assert empty.boxes.shape == (0, 6)


class _OracleNet(nn.Module):
    """Outputs the scene's ground-truth boxes (in the centred frame) as confident proposals."""

    def __init__(self, cloud: PointCloud, grid_size: float):
        super().__init__()
        centred = CenterShift(apply_z=True)(cloud)
        boxes, classes, _ = boxes_from_instances(centred.coord, cloud.segment, cloud.instance)
        self.grid_size = grid_size
        self.head = nn.Module()
        self.head.register_buffer("mean_size", torch.full((20, 3), 0.5))
        b = torch.from_numpy(boxes).float()
        k = torch.from_numpy(classes)
        n = len(k)
        one_hot = F.one_hot(k, 20).float() * 20.0
        res = torch.zeros(n, 20, 3)
        res[torch.arange(n), k] = b[:, 3:] / 0.5 - 1.0
        self.out = {"objectness": torch.tensor([[-10.0, 10.0]]).repeat(n, 1), "center": b[:, :3],
                    "size_scores": one_hot, "size_residuals_normalized": res, "sem_scores": one_hot}

    def forward(self, batch):
        return self.out


def test_oracle_boxes_give_perfect_map(ft_root):
    cloud = read_pointcept_scene(sorted(ft_root.glob("pointcept/*"))[0])
    preds: dict = {}
    scores = evaluate_det(_OracleNet(cloud, 0.1), [cloud], num_classes=20, predictions=preds)
    assert scores.map[0] == pytest.approx(1.0) and scores.map[1] == pytest.approx(1.0)
    gt, _, _ = boxes_from_instances(cloud.coord, cloud.segment, cloud.instance)
    found = preds[cloud.name]
    best = found.scores.reshape(-1, 18).max(1)  # per-class expansion: 18 non-ignored classes per box
    assert np.allclose(np.sort(found.boxes[::18, 0]), np.sort(gt[:, 0]), atol=1e-4) and (best > 0.99).all()


def test_class_mean_sizes_match_loop(tmp_path):
    coord = np.array([[0, 0, 0], [1, 2, 3], [0, 0, 0], [2, 2, 2], [5, 5, 5], [5.5, 6, 7], [0, 0, 0], [1, 1, 1]],
                     np.float32)
    segment = np.array([4, 4, 4, 4, 6, 6, 0, 0])
    instance = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    write_pointcept_scene(tmp_path / "s0", PointCloud(coord=coord, segment=segment, instance=instance))
    ds = InstanceDataset([tmp_path / "s0"], num_classes=8, with_classes=True)
    sizes = class_mean_sizes(ds, 8).numpy()
    chair = (np.array([1, 2, 3]) + np.array([2, 2, 2])) / 2
    table = np.array([0.5, 1, 2])
    assert np.allclose(sizes[4], chair) and np.allclose(sizes[6], table)
    assert np.allclose(sizes[0], (2 * chair + table) / 3)  # no wall box (ignored): the mean over all boxes


# ----------------------------------------------------------------------------- whole run
def _cli(argv: list[str]) -> int:
    from contrast3d.commands import finetune as finetune_command

    parser = argparse.ArgumentParser(prog="contrast3d")
    finetune_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_run_exports_and_reload(ft_root, tmp_path, capsys):
    out = tmp_path / "run"
    sets = [x for s in TINY for x in ("--set", s)]
    assert _cli(["finetune", "det", "--data", str(ft_root), "--out", str(out), "--no-progress", "--device", "cpu",
                 "--init", "scratch", "--steps", "2", "--eval-every", "2", "--labels", "40pts",
                 "--config", "det_cpu_small"] + sets) == 0
    assert "mAP@0.25" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    for key in ("mAP@0.25", "mAP@0.5", "per_class@0.25", "label_budget", "seed", "init", "steps"):
        assert key in res, key
    assert res["task"] == "det" and res["steps"] == 2 and res["labelled"]["points"] == 40
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val/mAP@0.25" in r for r in logs) and any("vote_loss" in r for r in logs)
    backbone = load_pretrained(out / "backbone.safetensors")
    assert backbone.record.num_classes == 0 and backbone.record.method == "det"
    with pytest.raises(DataError, match="no buildable network"):
        load_pretrained(out / "det_head.safetensors")
    net, again = load_det(out), load_det(out / "checkpoints" / "last.pt")
    # mean sizes of the size clusters come from the training scene under the label split
    cfg = load_task_config("det", files=[out / "config.yaml"], presets=False)
    train = InstanceDataset([Path(json.loads((out / "scene_split.json").read_text())["train"][0])],
                            num_classes=20, with_classes=True)
    from contrast3d.evaluation.splits import LabelSplit
    train.apply_split(LabelSplit.load(out / "label_split.json"))
    assert torch.allclose(net.head.mean_size, class_mean_sizes(train, 20)) and net.grid_size == cfg.data.grid_size
    scene = read_pointcept_scene(sorted(ft_root.glob("pointcept/*"))[-1])
    from contrast3d.data.voxelize import GridSample
    batch = collate_points([GridSample(0.2, mode="test").fragments(scene)[0]], ("color", "normal"))
    a, b = net(batch), again(batch)
    assert torch.equal(a["center"], b["center"]) and torch.equal(a["sem_scores"], b["sem_scores"])


def test_model_step_has_gradients_everywhere(ft_root):
    data = InstanceDataConfig(grid_size=0.2, max_points=0)
    ds = InstanceDataset(sorted(ft_root.glob("pointcept/*")), instance_train_transform(data), with_classes=True)
    batch = collate_points([ds.get_sample(i, np.random.default_rng(i)) for i in range(2)], data.feat_keys)
    model = DetModel(DetConfig(), DetModelConfig(preset="spunet-tiny", num_seeds=128, num_proposals=32,
                                                 proposal_width=16), data)
    model.set_mean_sizes(class_mean_sizes(ds, 20))
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["num_boxes"] > 0
    assert all(p.grad is not None for p in model.parameters())
    assert set(model.exports()) == {"backbone", "det_head"}
    with pytest.raises(DataError, match="instance"):
        model(_without_classes(batch))


def _without_classes(batch):
    batch.extra = {}
    return batch


def test_presets_resolve():
    gpu = load_task_config("det")
    assert (gpu.optim.name, gpu.optim.lr, gpu.optim.weight_decay, gpu.schedule.name, gpu.loader.batch_size) == \
        ("adamw", 0.001, 0.0, "step", 8)
    assert gpu.steps == 27000 and tuple(gpu.schedule.milestones) == (0.4444, 0.6667, 0.8889)
    assert (gpu.model.num_seeds, gpu.model.num_proposals, gpu.model.num_heading_bins) == (1024, 256, 1)
    assert gpu.data.rotate_angle == pytest.approx(math.pi / 36, rel=1e-4) and gpu.method_name == "det"
    cpu = load_task_config("det", files=["det_cpu_small"])
    assert cpu.model.preset == "spunet-tiny" and cpu.model.num_proposals == 256 and cpu.data.grid_size == 0.05
