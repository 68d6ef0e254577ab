"""Point renderer and similarity maps (PNG written headless, pixels checked)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_room import make_room, onehot_features

from contrast3d.viz import (
    Camera,
    render_points,
    similarity_map,
    similarity_map_pair,
    splat,
)
from contrast3d.viz.similarity import cosine_similarity_to


def test_zbuffer_nearest_point_wins():
    u, v = np.array([5.2, 5.7, 1.0]), np.array([5.0, 5.1, 1.0])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    for depth, winner in ((np.array([2.0, 1.0, 0.0]), 1), (np.array([1.0, 2.0, 0.0]), 0)):
        image, index = splat(u, v, depth, colors, (10, 10), radius=0)
        assert index[5, 5] == winner and np.allclose(image[5, 5], colors[winner])
    assert index[0, 0] == -1 and np.allclose(image[0, 0], 1.0)  # background
    _, index = splat(u, v, depth, colors, (10, 10), radius=2)
    assert (index == 2).sum() > 5 and (index == 0).sum() > (index == 1).sum()


def test_camera_frames_points_and_top_view_orientation():
    coord, _ = make_room(2000)
    cam = Camera.fit(coord, image_size=(300, 400))
    u, v, _ = cam.project(coord)
    assert u.min() >= 0 and u.max() < 400 and v.min() >= 0 and v.max() < 300
    top = Camera.fit(np.array([[0, 0, 0], [1, 1, 0]], float), azimuth=-90, elevation=90, image_size=(100, 100))
    u, _, _ = top.project(np.array([[0, 0.5, 0], [1, 0.5, 0.0]]))
    _, v, _ = top.project(np.array([[0.5, 0, 0], [0.5, 1, 0.0]]))
    assert u[1] > u[0] and v[1] < v[0]  # +x to the right, +y up in the image


def test_render_points_png(tmp_path):
    coord, labels = make_room(3000)
    rgb = np.eye(5)[labels][:, :3].astype(np.float32)
    image = render_points(coord, rgb, tmp_path / "r.png", image_size=(120, 160))
    assert image.shape == (120, 160, 3)
    png = imread(tmp_path / "r.png")
    assert png.shape[:2] == (120, 160)
    assert 0.2 < (image.min(axis=2) < 1).mean() < 0.95  # points cover part of the image, not all
    with pytest.raises(ValueError):
        render_points(coord, rgb[:10])


def test_similarity_map(tmp_path):
    coord, labels = make_room(3000)
    feats = onehot_features(labels, noise=0.1)
    q = int(np.flatnonzero(labels == 3)[0])
    sim = similarity_map(coord, feats, q, tmp_path / "s.png", image_size=(150, 200))
    assert sim.shape == (len(coord),) and sim[q] == pytest.approx(1.0, abs=1e-5)
    assert sim[labels == 3].mean() > 0.8 and sim[labels != 3].mean() < 0.2
    assert imread(tmp_path / "s.png").shape[2] in (3, 4)
    with pytest.raises(IndexError):
        similarity_map(coord, feats, len(coord), tmp_path / "x.png")


def test_similarity_map_pair(tmp_path):
    c1, l1 = make_room(2000, seed=0)
    c2, l2 = make_room(2000, seed=1)
    f1, f2 = onehot_features(l1, 0.1, seed=0), onehot_features(l2, 0.1, seed=1)
    q = int(np.flatnonzero(l1 == 4)[0])
    sim1, sim2 = similarity_map_pair(c1, f1, c2, f2, q, tmp_path / "p.png", match_index=0, image_size=(120, 150))
    assert sim1.shape == (len(c1),) and sim2.shape == (len(c2),)
    assert l2[np.argmax(sim2)] == 4
    np.testing.assert_allclose(sim2, cosine_similarity_to(f2, f1[q]))
    assert (tmp_path / "p.png").stat().st_size > 1000
