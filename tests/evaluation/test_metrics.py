import numpy as np
import pytest
import torch

from contrast3d.evaluation.metrics import confusion_matrix, segmentation_scores


def test_confusion_matches_loop_and_ignores():
    rng = np.random.default_rng(0)
    target = rng.integers(-1, 4, 500)
    pred = rng.integers(0, 4, 500)
    conf = confusion_matrix(torch.from_numpy(pred), target, 4)
    ref = np.zeros((4, 4), np.int64)
    for t, p in zip(target, pred):
        if t >= 0:
            ref[t, p] += 1
    np.testing.assert_array_equal(conf, ref)


def test_scores_known_values():
    # class 0: tp 2, fn 1, fp 0 -> IoU 2/3; class 1: tp 1, fn 0, fp 1 -> IoU 1/2; class 2 absent -> NaN
    target = np.array([0, 0, 0, 1, -1])
    pred = np.array([0, 0, 1, 1, 2])
    s = segmentation_scores(confusion_matrix(pred, target, 3), ["a", "b", "c"])
    assert s.iou[0] == pytest.approx(2 / 3) and s.iou[1] == pytest.approx(0.5) and np.isnan(s.iou[2])
    assert s.miou == pytest.approx((2 / 3 + 0.5) / 2)
    assert s.macc == pytest.approx((2 / 3 + 1) / 2)
    assert s.all_acc == pytest.approx(3 / 4)
    assert "mean" in s.table() and s.to_dict()["per_class"]["c"]["IoU"] is None


def test_perfect_and_out_of_range():
    t = np.array([0, 1, 2, 2])
    assert segmentation_scores(confusion_matrix(t, t, 3)).miou == 1.0
    with pytest.raises(ValueError):
        confusion_matrix(np.array([5]), np.array([0]), 3)
