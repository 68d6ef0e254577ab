"""ScanNet instance AP on hand-worked scenes, and the AP integration against a naive transcription."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from contrast3d.evaluation.instance_metrics import (
    SCANNET_OVERLAPS,
    InstanceAPEvaluator,
    InstanceEvalConfig,
    ground_truth_instances,
    scannet_average_precision,
)

# Scene layout (1000 points):
#   0..199 chair GT0 | 200..399 chair GT1 | 400..599 sofa GT2 | 600..649 small chair GT3 (50 pts)
#   650..899 wall (instance 4, ignored class) | 900..999 unlabelled (-1 / -1)
CHAIR, SOFA, TABLE, DOOR = 4, 5, 6, 7


def scene():
    seg = np.full(1000, -1)
    ins = np.full(1000, -1)
    for k, (a, b, c) in enumerate([(0, 200, CHAIR), (200, 400, CHAIR), (400, 600, SOFA), (600, 650, CHAIR),
                                   (650, 900, 0)]):
        seg[a:b], ins[a:b] = c, k
    return seg, ins


def mask(*ranges):
    m = np.zeros(1000, dtype=bool)
    for a, b in ranges:
        m[a:b] = True
    return m


def evaluate(preds, scenes=None):
    ev = InstanceAPEvaluator()
    for pr in scenes or [preds]:
        seg, ins = scene()
        masks = np.stack([p[0] for p in pr]) if pr else np.zeros((0, 1000), bool)
        ev.add_scene(masks, [p[1] for p in pr], [p[2] for p in pr], seg, ins)
    return ev.compute()


PERFECT = [(mask((0, 200)), CHAIR, 0.9), (mask((200, 400)), CHAIR, 0.8), (mask((400, 600)), SOFA, 0.7)]


def test_ground_truth_instances():
    seg, ins = scene()
    seg[0] = SOFA  # one stray label: majority still chair
    ids, cls, cnt, index = ground_truth_instances(seg, ins)
    assert ids.tolist() == [0, 1, 2, 3] and cls.tolist() == [CHAIR, CHAIR, SOFA, CHAIR]
    assert cnt.tolist() == [200, 200, 200, 50]
    assert (index[650:] == -1).all() and index[250] == 1
    # the vote ignores unlabelled points: 150 unlabelled + 50 sofa points make a sofa instance
    seg[200:350] = -1
    seg[350:400] = SOFA
    assert ground_truth_instances(seg, ins)[1].tolist() == [CHAIR, SOFA, SOFA, CHAIR]
    seg[200:400] = -1  # no labelled point at all: dropped
    assert ground_truth_instances(seg, ins)[0].tolist() == [0, 2, 3]


def test_perfect_prediction_gives_one_and_absent_classes_nan():
    s = evaluate(PERFECT)
    assert s.ap[CHAIR] == pytest.approx(1.0) and s.ap[SOFA] == pytest.approx(1.0)
    assert np.isnan(s.ap[TABLE]) and np.isnan(s.ap[0]) and np.isnan(s.ap[1])
    assert s.map == pytest.approx(1.0) and s.map50 == pytest.approx(1.0) and s.map25 == pytest.approx(1.0)
    assert s.ap_table.shape == (20, 9) and len(SCANNET_OVERLAPS) == 9 and SCANNET_OVERLAPS[-1] == pytest.approx(0.9)
    assert set(s.to_dict()["per_class"]) == {str(CHAIR), str(SOFA)}
    # torch and sparse masks give the same answer
    ev = InstanceAPEvaluator()
    seg, ins = scene()
    ev.add_scene(sp.csr_matrix(np.stack([p[0] for p in PERFECT])), torch.tensor([CHAIR, CHAIR, SOFA]),
                 torch.tensor([0.9, 0.8, 0.7]), torch.from_numpy(seg), torch.from_numpy(ins))
    assert ev.compute().map == pytest.approx(1.0)


def test_duplicate_is_false_positive_hand_worked():
    # chair: TP 0.9, duplicate of GT0 (IoU 0.9) at 0.8, TP for GT1 at 0.7
    # sorted scores .7 T/.8 F/.9 T -> curve (p, r) = (2/3, 1), (1/2, 1/2), (1, 1/2), (1, 0)
    # AP = sum p_i (r_{i-1} - r_{i+1}) / 2 = 2/3*1/4 + 1/2*1/4 + 1*1/4 + 1*1/4 = 19/24
    preds = [(mask((0, 200)), CHAIR, 0.9), (mask((0, 180)), CHAIR, 0.8), (mask((200, 400)), CHAIR, 0.7)]
    s = evaluate(preds)
    np.testing.assert_allclose(s.ap_table[CHAIR], 19 / 24)
    assert s.ap50[CHAIR] == pytest.approx(19 / 24) and s.ap25[CHAIR] == pytest.approx(19 / 24)
    # the GT keeps the best score whatever the prediction order: same answer with the duplicate listed first
    # and scored higher than the exact mask
    preds2 = [(mask((0, 180)), CHAIR, 0.9), (mask((0, 200)), CHAIR, 0.8), (mask((200, 400)), CHAIR, 0.7)]
    table = evaluate(preds2).ap_table[CHAIR]
    np.testing.assert_allclose(table[:8], 19 / 24)
    # ... except at t = 0.9, where the 0.9-scored mask (IoU exactly 0.9, not > t) is a top-scored false positive:
    # .7 T, .8 T, .9 F -> (2/3, 1), (1/2, 1/2), (0, 0), (1, 0) -> 2/3/4 + 1/2/2 = 5/12
    assert table[8] == pytest.approx(5 / 12)
    # without the duplicate: AP 1
    assert evaluate([preds[0], preds[2]]).ap[CHAIR] == pytest.approx(1.0)
    # sofa has GT but no prediction: AP 0, included in the mean
    assert s.ap[SOFA] == 0.0 and s.map == pytest.approx((19 / 24 + 0.0) / 2)


def test_false_positive_across_scenes_and_hard_false_negative():
    # scene 1: GT0 at .5, GT1 at .1; scene 2: GT0 at .9, GT1 at .2 and a chair prediction on the sofa at .7 (FP).
    # sorted .1 T, .2 T, .5 T, .7 F, .9 T (4 GTs) -> (p, r): (4/5, 1), (3/4, 3/4), (2/3, 1/2), (1/2, 1/4),
    # (1, 1/4), (1, 0); AP = 4/5/8 + 3/4/4 + 2/3/4 + 1/2/8 + 1/8 + 1/8 = 23/30
    s1 = [(mask((0, 200)), CHAIR, 0.5), (mask((200, 400)), CHAIR, 0.1)]
    s2 = [(mask((0, 200)), CHAIR, 0.9), (mask((400, 600)), CHAIR, 0.7), (mask((200, 400)), CHAIR, 0.2)]
    np.testing.assert_allclose(evaluate(None, [s1, s2]).ap_table[CHAIR], 23 / 30)
    # one GT of two matched, nothing else (one hard false negative): (1, 1/2), (1, 0) -> AP = 1/4 + 1/4 = 1/2
    assert evaluate([(mask((0, 200)), CHAIR, 0.9)]).ap[CHAIR] == pytest.approx(0.5)


def test_void_and_small_ground_truth_are_not_false_positives():
    base = PERFECT[:2]
    # chair prediction on the wall (ignored class) and one on unlabelled points: ignored, AP stays 1
    s = evaluate(base + [(mask((650, 900)), CHAIR, 0.95), (mask((900, 1000)), CHAIR, 0.99)])
    assert s.ap[CHAIR] == pytest.approx(1.0)
    # chair prediction on the sofa (valid, non-void points): a top-scored false positive
    # curve: (.8: 2/3, 1), (.9: 1/2, 1/2), (.95: 0, 0), end (1, 0) -> 2/3*1/4 + 1/2*1/2 = 5/12
    s = evaluate(base + [(mask((400, 600)), CHAIR, 0.95)])
    np.testing.assert_allclose(s.ap_table[CHAIR], 5 / 12)
    # small chair GT (50 pts) + 60 sofa points: IoU with the small GT 50/110 = 0.45 -> "matches" it at t=0.25
    # (no FP); at t >= 0.5 no match and the ignored fraction 0.45 <= t -> FP (ScanNet semantics)
    s = evaluate(base + [(mask((600, 650), (400, 460)), CHAIR, 0.95)])
    assert s.ap25[CHAIR] == pytest.approx(1.0)
    assert s.ap50[CHAIR] == pytest.approx(5 / 12) and s.ap[CHAIR] == pytest.approx(5 / 12)
    # GT smaller than min_region_size does not count: a perfect prediction of it (50 pts) is dropped too
    s = evaluate(base + [(mask((600, 650)), CHAIR, 0.95)])
    assert s.ap[CHAIR] == pytest.approx(1.0)
    cfg = InstanceEvalConfig(min_region_size=10)
    ev = InstanceAPEvaluator(cfg)
    seg, ins = scene()
    ev.add_scene(np.stack([mask((0, 200)), mask((200, 400))]), [CHAIR, CHAIR], [0.9, 0.8], seg, ins)
    # with the threshold lowered the small GT counts (one hard false negative):
    # .8: tp2 fn1 -> (1, 2/3); .9: tp1 fn2 -> (1, 1/3); end (1, 0) -> (2/3-1/3)/2 + (2/3-0)/2 + (1/3-0)/2 = 2/3
    assert ev.compute().ap[CHAIR] == pytest.approx(2 / 3)


def test_ignored_class_and_out_of_range_predictions_dropped():
    s = evaluate(PERFECT + [(mask((0, 200)), 0, 0.99), (mask((0, 200)), 25, 0.99)])
    assert s.ap[CHAIR] == pytest.approx(1.0) and np.isnan(s.ap[0])


def test_class_with_predictions_but_no_gt_is_nan_and_excluded():
    s = evaluate(PERFECT + [(mask((400, 600)), DOOR, 0.9)])
    assert np.isnan(s.ap[DOOR]) and s.map == pytest.approx(1.0)
    assert "mean" in s.table()


def naive_scannet_ap(y_true, y_score, hard_fn):
    """Line-by-line loop version of the script's PR curve + np.convolve integration."""
    order = np.argsort(y_score, kind="stable")
    ys, yt = y_score[order], y_true[order]
    cum = list(np.cumsum(yt)) + [0.0]
    uniq = []
    for i, v in enumerate(ys):
        if i == 0 or v != ys[i - 1]:
            uniq.append(i)
    prec, rec = [], []
    for i in uniq:
        c = cum[i - 1]
        tp = cum[-2] - c
        fp = len(ys) - i - tp
        fn = c + hard_fn
        prec.append(tp / (tp + fp))
        rec.append(tp / (tp + fn))
    prec.append(1.0)
    rec.append(0.0)
    rc = np.append(np.append(rec[0], rec), 0.0)
    return float(np.dot(prec, np.convolve(rc, [-0.5, 0, 0.5], "valid")))


@pytest.mark.parametrize("seed", range(5))
def test_ap_integration_matches_naive_transcription(seed):
    g = np.random.default_rng(seed)
    n = int(g.integers(3, 30))
    y_true = (g.random(n) < 0.6).astype(float)
    y_true[0] = 1.0
    y_score = np.round(g.random(n), 1)  # ties on purpose
    hard = int(g.integers(0, 4))
    assert scannet_average_precision(y_true, y_score, hard) == pytest.approx(naive_scannet_ap(y_true, y_score, hard))


def test_all_predictions_ignored_gives_zero_not_crash():
    s = evaluate([(mask((650, 900)), CHAIR, 0.9)])
    assert s.ap[CHAIR] == 0.0


def test_scene_without_predictions():
    s = evaluate([])
    assert s.ap[CHAIR] == 0.0 and s.ap[SOFA] == 0.0 and s.map == 0.0
