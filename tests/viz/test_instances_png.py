"""Instance / box pictures (contrast3d.viz.instances), reloading finished insseg / det runs
(contrast3d.evaluation.task_runs) and ``contrast3d viz instances``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contrast3d.cli import main
from contrast3d.evaluation.det_model import load_det
from contrast3d.evaluation.detection import evaluate_det
from contrast3d.evaluation.finetune_tasks import box_selection, cluster_config, finetune_task, load_task_config
from contrast3d.evaluation.insseg import evaluate_insseg
from contrast3d.evaluation.insseg_model import load_insseg
from contrast3d.evaluation.instance_metrics import InstanceEvalConfig
from contrast3d.evaluation.task_runs import (
    box_list,
    gt_boxes,
    gt_instances,
    load_task_run,
    predict_run_boxes,
    predict_run_instances,
    run_task,
)
from contrast3d.io.pointcept import read_pointcept_scene
from contrast3d.viz.instances import (
    boxes_figure,
    instances_figure,
    match_instances,
    save_boxes_png,
    save_instances_png,
    top_boxes,
)

COMMON = ["model.preset=spunet-tiny", "data.grid_size=0.2", "data.max_points=1500", "loader.batch_size=1",
          "loader.num_workers=0", "checkpoint_every=0", "log_every=1", "schedule.warmup_steps=0",
          "method.bn_momentum=0.1"]
TASK_SETS = {"insseg": COMMON + ["method.min_cluster_points=3", "method.min_region_size=20"],
             "det": COMMON + ["model.num_seeds=64", "model.num_proposals=16", "model.proposal_width=32"]}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------- synthetic pictures
def _room(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floor + 3 walls + four boxes of points: ``coord``, instance ids (``-1`` on floor/walls), classes."""
    rng = np.random.default_rng(seed)
    floor = np.column_stack([rng.uniform(0, 6, 3000), rng.uniform(0, 4, 3000), np.zeros(3000)])
    wall = np.column_stack([rng.uniform(0, 6, 1500), np.full(1500, 4.0), rng.uniform(0, 2.5, 1500)])
    parts, ins, cls = [floor, wall], [np.full(4500, -1)], [np.full(4500, -1)]
    for k, (x, y) in enumerate([(1, 1), (3, 1), (1.5, 2.8), (4.5, 2.5)]):
        pts = rng.uniform([x, y, 0], [x + 0.8, y + 0.6, 0.9], size=(500, 3))
        parts.append(pts)
        ins.append(np.full(500, 10 + 7 * k))
        cls.append(np.full(500, 4 + k))
    return np.concatenate(parts), np.concatenate(ins), np.concatenate(cls)


def _png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)[..., :3]


def _coloured(image: np.ndarray) -> np.ndarray:
    """Saturated pixels (instance / box colours, not the grey scene or the black text)."""
    return (image.max(-1) - image.min(-1)) > 0.2


def test_match_instances_is_one_to_one():
    gt = np.array([0, 0, 0, 1, 1, 1, -1, 2])
    pred = np.array([5, 5, 5, 5, 9, 9, -1, -1])   # 5 overlaps both gt 0 (3/4) and gt 1 (1/5); 9 -> gt 1
    match, iou = match_instances(pred, gt)
    assert match.tolist() == [0, 1] and iou[0] == pytest.approx(0.75) and iou[1] == pytest.approx(2 / 3)
    assert match_instances(pred, np.full(8, -1))[0].tolist() == [-1, -1]


def test_instances_png_panels_agree_for_relabelled_ids_and_differ_for_wrong_ones(tmp_path):
    coord, gt, cls = _room()
    names = [f"c{i}" for i in range(10)]
    # the same partition under other ids: matched instances take the ground truth's colours -> equal panels
    relabelled = np.where(gt >= 0, 100 - gt, -1)
    same = instances_figure(coord, relabelled, gt, pred_class=cls, gt_class=cls, class_names=names)
    assert same.info["matched50"] == 4 and np.abs(same.panels[0] - same.panels[1]).max() < 1e-6
    # a wrong prediction: two objects merged, one missed
    wrong = gt.copy()
    wrong[gt == 17] = 10
    wrong[gt == 24] = -1
    out = save_instances_png(coord, wrong, gt, tmp_path / "ins.png", title="synthetic", pred_class=cls, gt_class=cls,
                             class_names=names, pred_score=np.where(wrong >= 0, 0.9, np.nan))
    assert 20_000 < out.stat().st_size < 2_000_000
    image = _png(out)
    h, w = image.shape[:2]
    assert 400 < h < 900 and 800 < w < 2000
    left, right = _coloured(image[:, : w // 2]), _coloured(image[:, w // 2:])
    assert left.sum() > 1000 and right.sum() > 1000
    assert right.sum() > 1.15 * left.sum()  # the missed object is grey on the left
    fig = instances_figure(coord, wrong, gt)
    assert fig.info == {"pred_instances": 2, "gt_instances": 4, "matched": 2, "matched50": 1}
    assert np.abs(fig.panels[0] - fig.panels[1]).max(-1).mean() > 0.01


def test_boxes_png_draws_boxes_per_panel(tmp_path):
    coord, gt, cls = _room(1)
    ids = np.unique(gt[gt >= 0])
    lo = np.array([coord[gt == i].min(0) for i in ids])
    hi = np.array([coord[gt == i].max(0) for i in ids])
    gt_b = (np.concatenate([(lo + hi) / 2, hi - lo], 1), np.array([cls[gt == i][0] for i in ids]))
    both = save_boxes_png(coord, (*gt_b, np.linspace(0.9, 0.6, 4)), gt_b, tmp_path / "same.png", class_names=None)
    none = save_boxes_png(coord, np.zeros((0, 6)), gt_b, tmp_path / "none.png", views=("top",))
    for path in (both, none):
        assert 10_000 < path.stat().st_size < 2_000_000
    a = _png(both)
    w = a.shape[1]
    cl, cr = _coloured(a[:, : w // 2]).sum(), _coloured(a[:, w // 2:]).sum()
    assert cl > 500 and abs(cl - cr) < 0.35 * cr          # same boxes (plus score labels) on both sides
    b = _png(none)
    w = b.shape[1]
    top = b[: int(0.9 * b.shape[0])]                       # above the legend
    assert _coloured(top[:, : w // 2]).sum() < 0.05 * _coloured(top[:, w // 2:]).sum()
    fig = boxes_figure(coord, [(np.zeros(3), np.ones(3), 5, 0.5)], None, views=("oblique",), color="red")
    assert fig.info == {"pred_boxes": 1, "gt_boxes": 0} and len(fig.panels) == 1


def test_top_boxes_keeps_one_class_per_box():
    boxes = np.repeat(np.array([[0, 0, 0, 1, 1, 1], [3, 0, 0, 1, 1, 1.0]]), 3, axis=0)
    arr = np.column_stack([boxes, np.tile([2, 3, 4], 2), [0.1, 0.5, 0.2, 0.05, 0.01, 0.3]])
    b, c, s = top_boxes(arr, max_boxes=5)
    assert c.tolist() == [3, 4] and s.tolist() == [0.5, 0.3] and b[1, 0] == 3
    assert len(top_boxes(arr, min_score=0.4)[0]) == 1 and len(top_boxes(arr, max_boxes=5, one_per_box=False)[0]) == 5


# ----------------------------------------------------------------------------- finished runs
@pytest.fixture(scope="module")
def scenes(simulated) -> Path:
    return simulated("instances_png", (21, 22))


def _tiny_run(task: str, root: Path, out: Path) -> Path:
    finetune_task(task, root, "scratch", out, config_files=[f"{task}_cpu_small"], overrides=TASK_SETS[task], steps=1,
                  device="cpu", progress=False, eval_every=0)
    return out


@pytest.fixture(scope="module")
def insseg_run(scenes, tmp_path_factory) -> Path:
    return _tiny_run("insseg", scenes, tmp_path_factory.mktemp("insseg") / "run")


@pytest.fixture(scope="module")
def det_run(scenes, tmp_path_factory) -> Path:
    return _tiny_run("det", scenes, tmp_path_factory.mktemp("det") / "run")


def _val_scene(run: Path):
    return read_pointcept_scene(json.loads((run / "scene_split.json").read_text())["val"][0])


def test_insseg_run_predicts_as_its_evaluation(insseg_run, tmp_path):
    run = load_task_run(insseg_run)
    assert run.task == "insseg" == run_task(insseg_run) and run.cfg.data.grid_size == 0.2
    cloud = _val_scene(insseg_run)
    pred = predict_run_instances(run, cloud)
    # the evaluation's own path, set up independently from the run's config.yaml
    cfg = load_task_config("insseg", files=[insseg_run / "config.yaml"], presets=False)
    seen: dict = {}
    scores = evaluate_insseg(load_insseg(insseg_run), [cloud], num_classes=20, grid_size=0.2,
                             feat_keys=cfg.data.feat_keys, cluster=cluster_config(cfg),
                             max_fragments=cfg.method.eval_fragments, predictions=seen,
                             eval_cfg=InstanceEvalConfig(num_classes=20, min_region_size=20))
    ref = seen[cloud.name]
    results = json.loads((insseg_run / "results.json").read_text())
    assert scores.semantic.miou == pytest.approx(results["semantic"]["mIoU"])
    assert scores.ap.map50 == pytest.approx(np.nan if results["AP50"] is None else results["AP50"], nan_ok=True)
    n = len(cloud)
    assert pred.instance.shape == (n,) and pred.semantic.shape == (n,)
    assert np.array_equal(pred.semantic, ref.semantic)
    p, q = pred.proposals, ref.proposals
    assert len(pred.classes) == len(q) and np.array_equal(p.point_index, q.point_index)
    assert np.array_equal(pred.classes, q.classes) and np.allclose(pred.scores, q.scores)
    assert np.array_equal(pred.evaluated, (q.sizes >= 20) & (q.classes >= 2))
    for k in np.unique(pred.instance[pred.instance >= 0]):   # every point of an id lies in that proposal
        assert pred.evaluated[k] and np.isin(np.flatnonzero(pred.instance == k), p.point_index[
            p.offset[k] - p.sizes[k]:p.offset[k]]).all()
    gi, gc = gt_instances(run, cloud)
    assert gi.shape == gc.shape == (n,) and gi.max() >= 1 and ((gi >= 0) == (gc >= 2)).all()


def test_det_run_predicts_as_its_evaluation(det_run):
    run = load_task_run(det_run)
    assert run.task == "det" == run_task(det_run)
    cloud = _val_scene(det_run)
    found = predict_run_boxes(run, cloud)
    cfg = load_task_config("det", files=[det_run / "config.yaml"], presets=False)
    seen: dict = {}
    scores = evaluate_det(load_det(det_run), [cloud], num_classes=20, feat_keys=cfg.data.feat_keys, grid_size=0.2,
                          selection=box_selection(cfg), predictions=seen)
    ref = seen[cloud.name]
    assert float(scores.map[0]) == pytest.approx(json.loads((det_run / "results.json").read_text())["mAP@0.25"])
    assert found.boxes.shape == ref.boxes.shape and found.boxes.shape[1] == 6 and len(ref.scores) > 0
    assert np.allclose(found.boxes, ref.boxes) and np.array_equal(found.classes, ref.classes)
    assert np.allclose(found.scores, ref.scores)
    boxes = box_list(found)
    assert len(boxes) == len(ref.scores) and boxes[0].score == pytest.approx(ref.scores.max())
    assert all(a.score >= b.score for a, b in zip(boxes, boxes[1:])) and boxes[0].centre.shape == (3,)
    gb, gc = gt_boxes(run, cloud)
    assert gb.shape == (len(gc), 6) and len(gc) > 0 and (gc >= 2).all()


def test_command_draws_both_tasks(insseg_run, det_run, tmp_path, capsys):
    scene = json.loads((det_run / "scene_split.json").read_text())["val"][0]
    for name, run in (("ins.png", insseg_run), ("det.png", det_run)):
        out = tmp_path / name
        assert main(["viz", "instances", "--model", str(run), "--scene", scene, "--out", str(out),
                     "--max-boxes", "5"]) == 0
        assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "predicted instances" in printed and "of " in printed and "detections drawn" in printed


def test_command_refuses_a_pretraining_run(tmp_path, capsys):
    from contrast3d.models import create_spunet
    from contrast3d.models.backbone import spunet_record
    from contrast3d.models.pretrained import PretrainedRecord, save_pretrained

    run = tmp_path / "pre"
    net = create_spunet("spunet-tiny", 6)
    save_pretrained(net, run / "backbone.safetensors",
                    PretrainedRecord(**spunet_record(net, "spunet-tiny", ["color", "normal"], 0.05)))
    (run / "config.yaml").write_text("method_name: pointcontrast\nsteps: 3\n")
    scene = tmp_path / "scene"
    assert main(["viz", "instances", "--model", str(run), "--scene", str(scene), "--out",
                 str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run}: a 'pointcontrast' run") and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
