"""Box IoU, NMS, GT boxes and VOC-style mAP against hand-computed values and naive loop references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contrast3d.evaluation.detection_metrics import (
    DetectionEvaluator,
    average_precision_class,
    box_iou_3d,
    boxes_from_instances,
    nms_3d,
    to_center,
    to_minmax,
    voc_average_precision,
)

A = [0, 0, 0, 2, 2, 2]          # volume 8
B = [1, 0, 0, 2, 2, 2]          # overlaps A on x in [0, 1]: 4 / 12
C = [0, 0, 0, 1, 1, 1]          # inside A: 1 / 8
D = [5, 5, 5, 1, 1, 1]          # disjoint
E = [2, 0, 0, 2, 2, 2]          # touches A's face: 0
H = [0, 0, 0, 1, 2, 2]          # half of A: exactly 0.5


def naive_iou(a, b):
    inter, va, vb = 1.0, 1.0, 1.0
    for k in range(3):
        lo = max(a[k] - a[k + 3] / 2, b[k] - b[k + 3] / 2)
        hi = min(a[k] + a[k + 3] / 2, b[k] + b[k + 3] / 2)
        inter *= max(0.0, hi - lo)
        va *= a[k + 3]
        vb *= b[k + 3]
    return inter / (va + vb - inter)


def test_box_iou_hand_values_formats_and_kinds():
    boxes = np.array([A, B, C, D, E, H], dtype=float)
    iou = box_iou_3d(boxes[:1], boxes)
    np.testing.assert_allclose(iou[0], [1.0, 1 / 3, 1 / 8, 0.0, 0.0, 0.5])
    mm = to_minmax(boxes)
    np.testing.assert_allclose(mm[0], [-1, -1, -1, 1, 1, 1])
    np.testing.assert_allclose(box_iou_3d(mm, mm, "minmax"), box_iou_3d(boxes, boxes))
    np.testing.assert_allclose(to_center(mm), boxes)
    t = box_iou_3d(torch.tensor(boxes), torch.tensor(boxes))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), box_iou_3d(boxes, boxes))
    zero = box_iou_3d(np.array([[0, 0, 0, 0, 0, 0.0]]), np.array([[0, 0, 0, 0, 0, 0.0]]))
    assert zero[0, 0] == 0.0


def test_box_iou_against_naive_loop():
    g = np.random.default_rng(0)
    a = np.concatenate([g.random((7, 3)) * 2, g.random((7, 3)) + 0.2], 1)
    b = np.concatenate([g.random((5, 3)) * 2, g.random((5, 3)) + 0.2], 1)
    ref = np.array([[naive_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(box_iou_3d(a, b), ref, rtol=1e-12)
    assert (ref > 0).any() and (ref == 0).any()


def naive_nms(boxes, scores, thr, classes=None):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(naive_iou(boxes[i], boxes[k]) <= thr or (classes is not None and classes[i] != classes[k])
               for k in keep):
            keep.append(i)
    return keep


def test_nms_keeps_the_right_boxes():
    a_shift = [0.1, 0, 0, 2, 2, 2]   # IoU with A high; with B 4.4 / 11.6 = 0.379
    boxes = np.array([A, B, D, a_shift], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms_3d(boxes, scores, 0.25).tolist() == [3, 2]
    assert nms_3d(boxes, scores, 0.4).tolist() == [3, 1, 2]
    assert nms_3d(boxes, scores, 0.25, classes=[1, 2, 1, 1]).tolist() == [3, 1, 2]
    kept = nms_3d(torch.tensor(boxes), torch.tensor(scores), 0.25)
    assert isinstance(kept, torch.Tensor) and kept.tolist() == [3, 2]
    g = np.random.default_rng(1)
    rb = np.concatenate([g.random((40, 3)) * 3, g.random((40, 3)) + 0.5], 1)
    rs = g.random(40)
    rc = g.integers(0, 3, 40)
    assert nms_3d(rb, rs, 0.25).tolist() == naive_nms(rb, rs, 0.25)
    assert nms_3d(rb, rs, 0.1, classes=rc).tolist() == naive_nms(rb, rs, 0.1, rc)
    assert nms_3d(np.zeros((0, 6)), np.zeros(0)).tolist() == []


def test_boxes_from_instances():
    coord = np.array([[0, 0, 0], [1, 2, 3], [0.5, 0.5, 0.5],      # instance 7, chair
                      [5, 5, 5], [6, 5, 5],                       # instance 2, sofa (one point unlabelled)
                      [9, 9, 9], [8, 8, 8],                       # instance 3, wall (ignored)
                      [4, 4, 4]], dtype=float)                    # no instance
    seg = np.array([4, 4, 4, 5, -1, 0, 0, 4])
    ins = np.array([7, 7, 7, 2, 2, 3, 3, -1])
    boxes, cls, ids = boxes_from_instances(coord, seg, ins)
    assert ids.tolist() == [2, 7] and cls.tolist() == [5, 4]
    np.testing.assert_allclose(boxes, [[5.5, 5, 5, 1, 0, 0], [0.5, 1, 1.5, 1, 2, 3]])
    boxes, _, ids = boxes_from_instances(coord, seg, ins, min_points=3)
    assert ids.tolist() == [7]


def test_voc_ap_all_point_and_11_point():
    rec = np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    prec = np.array([1, 1 / 2, 2 / 3, 1 / 2])
    assert voc_average_precision(rec, prec) == pytest.approx(1 / 3 + 2 / 9)
    assert voc_average_precision(rec, prec, use_07_metric=True) == pytest.approx(6 / 11)


def _scenes():
    g1, g2 = [0, 0, 0, 2, 2, 2], [10, 0, 0, 2, 2, 2]
    g3 = [0, 0, 0, 2, 2, 2]
    p1 = g1                                   # IoU 1
    p2 = [0, 0, 0, 2, 2, 1.6]                 # IoU 0.8 with g1: duplicate
    p3 = [0, 0, 0, 1, 2, 1.2]                 # IoU 2.4 / 8 = 0.3 with g3
    p4 = [20, 20, 20, 1, 1, 1]                # nothing
    sofa = [30, 0, 0, 1, 1, 1]
    s1 = dict(pred_boxes=[p1, p2, p4], pred_classes=[4, 4, 4], pred_scores=[0.9, 0.8, 0.6],
              gt_boxes=[g1, g2], gt_classes=[4, 4])
    s2 = dict(pred_boxes=[p3, sofa], pred_classes=[4, 6], pred_scores=[0.7, 0.5],
              gt_boxes=[g3, sofa], gt_classes=[4, 5])
    return [s1, s2]


def test_detection_map_hand_worked():
    # chair, IoU 0.25: p1 TP, p2 FP (g1 taken), p3 TP, p4 FP; 3 GT -> rec 1/3,1/3,2/3,2/3, prec 1,1/2,2/3,1/2
    #   all-point AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    # chair, IoU 0.5: only p1 TP -> AP = 1/3. sofa: GT, no prediction -> 0. table (6): prediction only -> NaN.
    ev = DetectionEvaluator()
    for s in _scenes():
        ev.add_scene(**s)
    out = ev.compute()
    np.testing.assert_allclose(out.ap[4], [5 / 9, 1 / 3])
    np.testing.assert_allclose(out.ap[5], [0.0, 0.0])
    assert np.isnan(out.ap[6]).all() and np.isnan(out.ap[0]).all()
    np.testing.assert_allclose(out.map, [(5 / 9) / 2, (1 / 3) / 2])
    np.testing.assert_allclose(out.recall[4], [2 / 3, 1 / 3])
    assert out.to_dict()["mAP@0.25"] == pytest.approx(5 / 18)
    ev07 = DetectionEvaluator(use_07_metric=True)
    for s in _scenes():
        ev07.add_scene(**s)
    assert ev07.compute().ap[4, 0] == pytest.approx(6 / 11)


def test_max_iou_box_taken_is_false_positive_and_threshold_is_strict():
    g = np.array([[0, 0, 0, 2, 2, 2], [2, 0, 0, 2, 2, 2.0]])
    q = np.array([[0, 0, 0, 2, 2, 2], [0.9, 0, 0, 2, 2, 2.0], H])
    # q1 has IoU 4.4/11.6 = 0.38 with g1 (taken by q0) and 3.6/12.4 = 0.29 > 0.25 with the free g2:
    # its best box is taken -> FP (VOC/VoteNet rule), so AP = 1 * 1/2
    _, _, ap = average_precision_class([0, 0], q[:2], [0.9, 0.8], [0, 0], g, 0.25)
    assert ap == pytest.approx(0.5)
    # IoU exactly 0.5 is not > 0.5
    _, _, ap = average_precision_class([0], q[2:], [0.9], [0], g[:1], 0.5)
    assert ap == 0.0


def naive_voc(pred_scene, pred_boxes, scores, gt_scene, gt_boxes, thr):
    """VoteNet's eval_det_cls as plain loops, plus an explicit-loop all-point AP."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    taken = [False] * len(gt_boxes)
    tp, fp = [], []
    for d in order:
        ovmax, jmax = -np.inf, -1
        for j in range(len(gt_boxes)):
            if gt_scene[j] == pred_scene[d]:
                o = naive_iou(pred_boxes[d], gt_boxes[j])
                if o > ovmax:
                    ovmax, jmax = o, j
        if ovmax > thr and not taken[jmax]:
            taken[jmax] = True
            tp.append(1.0)
            fp.append(0.0)
        else:
            tp.append(0.0)
            fp.append(1.0)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    rec = list(ctp / len(gt_boxes))
    prec = list(ctp / np.maximum(ctp + cfp, 1e-300))
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


@pytest.mark.parametrize("seed", range(4))
def test_class_ap_matches_naive_votenet_loop(seed):
    g = np.random.default_rng(seed)
    gt_scene = g.integers(0, 3, 12)
    gt = np.concatenate([g.random((12, 3)) * 4, g.random((12, 3)) + 0.5], 1)
    src = g.integers(0, 12, 30)
    pred = gt[src] + np.concatenate([g.normal(0, 0.25, (30, 3)), g.normal(0, 0.1, (30, 3))], 1)
    pred[:, 3:] = np.abs(pred[:, 3:]) + 0.05
    pred_scene = gt_scene[src].copy()
    pred_scene[:4] = (pred_scene[:4] + 1) % 3                     # a few predictions in the wrong scene
    scores = g.random(30)
    for thr in (0.25, 0.5):
        _, _, ap = average_precision_class(pred_scene, pred, scores, gt_scene, gt, thr)
        assert ap == pytest.approx(naive_voc(pred_scene, pred, scores, gt_scene, gt, thr), abs=1e-12)
