"""The "pictures" of contrast3d.viz: multi-run curves, similarity colour range and context panel, t-SNE legend
names, and the segmentation-result PNGs of contrast3d.viz.predictions."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from contrast3d.cli import main
from contrast3d.errors import DataError
from contrast3d.viz.backbone_io import resolve_class_names
from contrast3d.viz.curves import (
    curves_figure,
    final_value,
    is_eval_key,
    plot_runs,
    read_metrics,
    read_results,
    run_labels,
)
from contrast3d.viz.predictions import (
    WRONG_RED,
    below_ceiling,
    class_iou_figure,
    confusion_figure,
    prediction_figure,
    row_normalised,
    save_class_iou_png,
    save_confusion_png,
    save_prediction_png,
)
from contrast3d.viz.render import class_colors, class_palette
from contrast3d.viz.similarity import similarity_figure, similarity_range
from contrast3d.viz.tsne import tsne_figure

NAMES = ["wall", "floor", "cabinet", "bed", "chair", "sofa"]


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size  # (width, height)


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _room(n: int = 3000, seed: int = 0, ceiling: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 4 x 3 m room: floor (1), walls (0), a cabinet box (2); with ``ceiling`` a -1 layer at 2.5 m."""
    rng = np.random.default_rng(seed)
    floor = np.column_stack([rng.uniform(0, 4, n), rng.uniform(0, 3, n), np.zeros(n)])
    t = rng.uniform(0, 14, n)
    wx = np.where(t < 4, t, np.where(t < 7, 4, np.where(t < 11, 11 - t, 0)))
    wy = np.where(t < 4, 0, np.where(t < 7, t - 4, np.where(t < 11, 3, 14 - t)))
    walls = np.column_stack([wx, wy, rng.uniform(0, 2.5, n)])
    box = np.column_stack([rng.uniform(1, 2, n // 2), rng.uniform(1, 2, n // 2), rng.uniform(0, 1, n // 2)])
    parts = [walls, floor, box]
    labels = [np.zeros(n), np.ones(n), np.full(n // 2, 2)]
    if ceiling:
        parts.append(np.column_stack([rng.uniform(0, 4, n), rng.uniform(0, 3, n), np.full(n, 2.5)]))
        labels.append(np.full(n, -1))
    return np.concatenate(parts).astype(np.float32), np.concatenate(labels).astype(np.int64)


# ---------------------------------------------------------------- segmentation-result pictures

def test_confusion_png_row_normalised_and_annotated(tmp_path):
    conf = np.array([[90, 10, 0, 0], [5, 45, 0, 0], [0, 0, 0, 0], [0, 3, 0, 7]], np.int64)
    share = row_normalised(conf)
    np.testing.assert_allclose(share[[0, 1, 3]].sum(1), 1.0)
    assert np.isnan(share[2]).all() and share[1, 1] == pytest.approx(0.9)
    texts = _texts(confusion_figure(conf, NAMES[:4], "val"))
    assert "90\n90" in texts and "90\n45" in texts and "70\n7" in texts  # percent of the row, then the count
    assert "no ground-truth points" in texts and not any(t.startswith("0\n") for t in texts)
    path = save_confusion_png(conf, NAMES[:4], tmp_path / "sub" / "conf.png", title="val")
    assert path == tmp_path / "sub" / "conf.png"
    w, h = _size(path)
    assert 350 < w < 1500 and 350 < h < 1500
    big = np.diag(np.arange(1, 31)).astype(np.int64)  # 30 classes: no cell text, still a readable size
    assert not [t for t in _texts(confusion_figure(big, [])) if t[:1].isdigit()]
    with pytest.raises(ValueError):
        save_confusion_png(np.zeros((2, 3), np.int64), NAMES, tmp_path / "bad.png")


def test_class_iou_png_marks_absent_classes_and_the_mean(tmp_path):
    iou = np.array([0.8, np.nan, 0.4, 0.3, np.nan])
    fig = class_iou_figure(iou, NAMES[:4])  # one name short: the last class is called "class 4"
    ax = fig.axes[0]
    assert _texts(fig).count("n/a") == 2 and "80.0" in _texts(fig) and "mIoU 50.0" in _texts(fig)
    vertical = [ln for ln in ax.get_lines() if len(set(np.asarray(ln.get_xdata(), float))) == 1]
    assert vertical and float(vertical[0].get_xdata()[0]) == pytest.approx(50.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES[:4] + ["class 4"]
    w, h = _size(save_class_iou_png(iou, NAMES[:4], tmp_path / "iou.png", title="scratch"))
    assert w > 400 and h > 200


def test_prediction_png_panels_errors_and_legend(tmp_path):
    coord, gt = _room()
    pred = gt.copy()
    wrong = np.flatnonzero(gt == 2)[:800]
    pred[wrong] = 3
    gt[:50] = -1
    fig = prediction_figure(coord, pred, gt, NAMES, "scene")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["wall", "floor", "cabinet", "bed", "unlabelled"]
    assert [ax.get_title() for ax in fig.axes][:2] == ["prediction", "ground truth"]
    assert "800 wrong" in fig.axes[2].get_title()

    def red_pixels(path) -> int:
        img = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int((np.abs(img - np.array(WRONG_RED) * 255).max(axis=2) < 12).sum())

    three = save_prediction_png(coord, pred, gt, NAMES, tmp_path / "p.png", title="scene")
    right = save_prediction_png(coord, np.maximum(gt, 0), gt, NAMES, tmp_path / "right.png")
    one = save_prediction_png(coord, pred, None, NAMES, tmp_path / "one.png")
    assert red_pixels(three) > 200 and red_pixels(right) == 0
    (w3, h3), (w1, h1) = _size(three), _size(one)
    assert w3 > 2.5 * w1 and abs(h3 - h1) < 60 and h1 > 400
    with pytest.raises(ValueError):
        save_prediction_png(coord, pred[:10], gt, NAMES, tmp_path / "bad.png")


def test_ceiling_is_cut_away_only_when_there_is_one():
    coord, _ = _room()
    assert below_ceiling(coord).all()
    coord, labels = _room(ceiling=True)
    keep = below_ceiling(coord)
    assert not keep[labels == -1].any() and keep[labels == 1].all() and keep[labels == 0].mean() > 0.8


def test_class_palette_is_fixed_per_id():
    pal = class_palette(45)
    assert pal.shape == (45, 3) and len({tuple(c) for c in pal.round(4)}) == 45
    np.testing.assert_allclose(pal[0], np.array([174, 199, 232]) / 255, atol=1e-6)  # ScanNet's wall colour
    ids = np.array([3, -1, 3, 44])
    colors = class_colors(ids)
    np.testing.assert_array_equal(colors[0], colors[2])
    np.testing.assert_allclose(colors[3], pal[44], atol=1e-6)
    assert np.allclose(colors[1], colors[1][0])  # grey


# ---------------------------------------------------------------- curves

def _run(folder, val_key: str, rate: float, final: float | None = None, steps: int = 400):
    folder.mkdir(parents=True)
    lines = []
    for s in range(10, steps + 1, 10):
        lines.append({"step": s, "time": 1.0, "loss": 2.0 / (1 + rate * s / 100), "lr": 0.1 * (1 - s / steps)})
        if s % 100 == 0:
            lines.append({"step": s, "time": 1.0, val_key: rate * s / steps / 2})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if final is not None:
        (folder / "results.json").write_text(json.dumps({"mIoU": final, "mAcc": 0.7, "steps": steps,
                                                         "per_class": {"wall": {"IoU": 0.5}}, "init": "x"}))
    return folder


def test_eval_keys_and_final_values():
    assert is_eval_key("val/mIoU") and is_eval_key("val_miou") and is_eval_key("probe/knn_miou")
    assert not is_eval_key("loss") and not is_eval_key("value") and not is_eval_key("lr")
    results = {"mIoU": 0.45, "mAcc": 0.6}
    assert final_value("val/mIoU", results) == 0.45 and final_value("val_miou", results) == 0.45
    assert final_value("val/mAcc", results) == 0.6 and final_value("val/AP50", results) is None
    assert final_value("probe/knn_miou", results) is None and final_value("mIoU", results) is None


def test_curves_overlay_runs_with_markers_and_final_value(tmp_path):
    a = _run(tmp_path / "exp1" / "scratch", "val/mIoU", 1.0, final=0.5)
    b = _run(tmp_path / "exp1" / "msc", "val_miou", 1.5)
    c = _run(tmp_path / "exp2" / "msc", "val/mIoU", 0.5, steps=300)
    assert run_labels([a, b / "metrics.jsonl", c]) == ["scratch", "exp1/msc", "exp2/msc"]
    assert read_results(a)["mIoU"] == 0.5 and "per_class" not in read_results(a) and read_results(b) == {}
    runs = [(name, read_metrics(p), read_results(p)) for name, p in (("scratch", a), ("msc", b), ("msc2", c))]
    fig, keys = curves_figure(runs)
    assert keys == ["loss", "lr", "val/mIoU", "val_miou"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["scratch", "msc", "msc2"] and "final result (results.json)" in legend
    ax_loss, _, ax_val, ax_val2 = fig.axes
    assert len(ax_loss.get_lines()) == 6  # raw + smoothed per run
    val_lines = [ln for ln in ax_val.get_lines() if ln.get_marker() == "o"]
    assert len(val_lines) == 2 and all(len(ln.get_xdata()) == 4 or len(ln.get_xdata()) == 3 for ln in val_lines)
    stars = [ln for ln in ax_val.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_ydata()[0] == 0.5 and stars[0].get_xdata()[0] == 400
    notes = sorted(t.get_text() for t in ax_val.texts)
    assert notes == ["0.25", "final 0.5"]  # run c's last value (0.5 * 300/300 / 2), run a's final result
    assert [t.get_text() for t in ax_val2.texts] == ["0.75"]
    positions = [t.get_window_extent() for t in ax_val.texts]
    assert not positions[0].overlaps(positions[1])
    out = tmp_path / "curves.png"
    assert plot_runs([a, b, c], out, labels=["A", "B", "C"], keys=["loss", "val/mIoU"]) == ["loss", "val/mIoU"]
    w, h = _size(out)
    assert w > 600 and h > 250
    with pytest.raises(DataError):
        plot_runs([a, b], tmp_path / "none.png", keys=["missing"])


def test_curves_cli_several_runs_and_labels(tmp_path, capsys):
    a = _run(tmp_path / "a", "val/mIoU", 1.0, final=0.4)
    b = _run(tmp_path / "b", "val/mIoU", 2.0)
    out = tmp_path / "x.png"
    assert main(["viz", "curves", str(a), str(b), "--label", "scratch", "msc", "--out", str(out)]) == 0
    assert "2 runs" in capsys.readouterr().out and _size(out)[0] > 600
    assert main(["viz", "curves", str(a), str(b), "--label", "only-one", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --label:") and "Traceback" not in err


# ---------------------------------------------------------------- similarity maps

def test_similarity_range_modes():
    sim = np.array([0.90, 0.95, 0.99], np.float32)  # a collapsed network: everything similar
    assert similarity_range(sim, "fixed") == (-1.0, 1.0)
    assert similarity_range(sim, "unit") == (0.0, 1.0)
    lo, hi = similarity_range(sim, "auto")
    assert lo == pytest.approx(0.90) and hi == pytest.approx(0.99)
    assert similarity_range(sim, "fixed", vmin=0.5) == (0.5, 1.0)
    with pytest.raises(ValueError):
        similarity_range(sim, "wide")


def _colorbar_limits(fig) -> tuple[float, float]:
    cbar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(cbar) == 1
    return tuple(round(v, 4) for v in cbar[0].get_ylim())


def test_similarity_figure_fixed_range_context_panel_and_step(tmp_path):
    coord, labels = _room(800)
    sim = np.random.default_rng(0).uniform(0.9, 1.0, len(coord)).astype(np.float32)
    fig = similarity_figure(coord, sim, 0, step=1200, labels=labels, class_names=NAMES, image_size=(150, 200))
    assert _colorbar_limits(fig) == (-1.0, 1.0)
    assert "step 1200" in fig._suptitle.get_text()
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2 and images[0].get_title().startswith("labels")
    assert [t.get_text() for t in images[0].get_legend().get_texts()] == ["wall", "floor", "cabinet"]
    # the similarity panel of a collapsed map is all dark red at the top of the fixed scale
    panel = images[1].images[0].get_array()
    inner = panel[(panel != np.asarray(panel[0, 0])).any(axis=2)]
    assert inner[:, 0].min() > 0.35 and inner[:, 2].max() < 0.3
    fig = similarity_figure(coord, sim, 0, value_range="auto", rgb=np.full((len(coord), 3), 200, np.uint8),
                            image_size=(150, 200))
    lo, hi = _colorbar_limits(fig)
    assert lo == pytest.approx(sim.min(), abs=1e-3) and hi == pytest.approx(sim.max(), abs=1e-3)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes if ax.images][0] == "RGB"
    assert len([ax for ax in similarity_figure(coord, sim, 0, image_size=(150, 200)).axes if ax.images]) == 1


# ---------------------------------------------------------------- t-SNE legend names

def test_tsne_legend_names_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 2, 25], 20)
    fig = tsne_figure(rng.normal(size=(60, 2)), labels, NAMES)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ["wall (20)", "cabinet (20)", "class 25 (20)"]


def test_resolve_class_names():
    labels = np.array([0, 3, 19])
    names, source = resolve_class_names("auto", labels)
    assert source == "scannet20" and names[:2] == ["wall", "floor"] and len(names) == 20
    assert resolve_class_names("auto", np.array([0, 20])) == (None, "ids")
    assert resolve_class_names("auto", labels, meta_names=["a", "b"], record_names=["c"]) == (["a", "b"], "scene")
    assert resolve_class_names("auto", labels, record_names=("c",)) == (["c"], "weights record")
    assert resolve_class_names("ids", labels) == (None, "ids")
    assert resolve_class_names("s3dis")[0][0] == "ceiling"
    assert resolve_class_names("wall, floor") == (["wall", "floor"], "--class-names")
    with pytest.raises(DataError):
        resolve_class_names("wall,,floor")
