import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from contrast3d.cli import main
from contrast3d.viz import plot_curves, similarity_map, similarity_map_pair, tsne_plot

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_room import CLASS_NAMES, make_room  # noqa: E402


def _features(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.eye(len(CLASS_NAMES), dtype=np.float32)[labels] + rng.normal(0, 0.05, (len(labels), len(CLASS_NAMES)))
    return f.astype(np.float32)


def _png(path) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_similarity_map_colours_the_query_object_hot(tmp_path):
    coord, labels = make_room(6000)
    feats = _features(labels)
    query = int(np.flatnonzero(labels == CLASS_NAMES.index("table"))[0])
    sims = np.asarray(similarity_map(coord, feats, query, tmp_path / "sim.png"))
    img = _png(tmp_path / "sim.png")
    assert img.std() > 5  # not a blank canvas
    table = labels == CLASS_NAMES.index("table")
    assert sims.shape == (len(coord),)
    assert sims[table].min() > 0.9 and sims[~table].max() < 0.5


def test_similarity_pair_and_tsne_and_curves(tmp_path):
    coord, labels = make_room(4000)
    feats = _features(labels)
    similarity_map_pair(coord, feats, coord + 0.01, _features(labels, 1), 0, tmp_path / "pair.png")
    _png(tmp_path / "pair.png")
    tsne_plot(feats, labels, tmp_path / "tsne.png", class_names=CLASS_NAMES, max_points=600)
    _png(tmp_path / "tsne.png")
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 5 - s / 10, "note": "x"}) + "\n" for s in range(1, 30)))
    plot_curves(log, tmp_path / "curves.png")
    _png(tmp_path / "curves.png")
    assert main(["viz", "curves", str(tmp_path), "--out", str(tmp_path / "cli.png")]) == 0
    _png(tmp_path / "cli.png")


def test_curves_cli_missing_run_is_a_data_error(tmp_path, capsys):
    assert main(["viz", "curves", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    assert "nope" in capsys.readouterr().err
