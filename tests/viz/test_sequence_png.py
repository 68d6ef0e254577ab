"""4DContrast sequence figure: one generated sequence's frames side by side, object highlighted in every panel at
its projected position, removed chunks drawn; the ``viz sequence`` command."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.image import imread

from contrast3d.cli import main
from contrast3d.data.fourd import SequenceConfig
from contrast3d.data.sequence_dataset import SequenceDataConfig
from contrast3d.io.pointcept import write_pointcept_scene
from contrast3d.structures import PointCloud
from contrast3d.viz.render import Camera
from contrast3d.viz.sequence import (
    HIGHLIGHT,
    REMOVED,
    box_corners,
    render_frame,
    sequence_from_scene,
)


def _box_surface(rng, lo, hi, n):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    pts = rng.uniform(lo, hi, (n, 3))
    axis, side = rng.integers(0, 3, n), rng.integers(0, 2, n)
    pts[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    return pts


def make_room(seed: int = 0, size: float = 4.0, spacing: float = 0.05) -> PointCloud:
    """Floor (class 1), four 1.2 m walls (class 0), one chair-sized box (instance 7, class 4: an object)."""
    rng = np.random.default_rng(seed)
    g = np.arange(spacing / 2, size, spacing)
    gx, gy = np.meshgrid(g, g)
    parts = [(np.column_stack([gx.ravel(), gy.ravel(), rng.normal(0, 0.003, gx.size)]), 1, 0)]
    s, h = np.meshgrid(np.arange(0, size, spacing), np.arange(0.05, 1.2, spacing))
    for k, (fixed, axis) in enumerate(((0.0, 1), (size, 1), (0.0, 0), (size, 0))):
        w = np.zeros((s.size, 3))
        w[:, 1 - axis], w[:, axis], w[:, 2] = s.ravel(), fixed, h.ravel()
        parts.append((w, 0, 1 + k))
    parts.append((_box_surface(rng, [0.4, 0.4, 0], [0.9, 0.9, 0.8], 600), 4, 7))
    coord = np.concatenate([p for p, _, _ in parts]).astype(np.float32)
    seg = np.concatenate([np.full(len(p), c) for p, c, _ in parts])
    inst = np.concatenate([np.full(len(p), i) for p, _, i in parts])
    color = np.where(seg[:, None] == 1, [0.55, 0.45, 0.35], [0.8, 0.8, 0.75]) + rng.normal(0, 0.03, (len(coord), 3))
    return PointCloud(coord=coord, color=np.clip(color, 0, 1).astype(np.float32), segment=seg, instance=inst,
                      meta={"name": f"room{seed}"})


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq") / "room0"
    write_pointcept_scene(path, make_room(0), segment_name="segment20")
    return path


def _near(pixels: np.ndarray, rgb) -> np.ndarray:
    return np.all(np.abs(pixels[..., :3] - np.asarray(rgb)) <= 2.5 / 255, axis=-1)


def small_config() -> SequenceDataConfig:
    return SequenceDataConfig(scene_grid_size=0.0, min_object_points=50, sequence=SequenceConfig(object_points=300))


def test_sequence_png_shows_the_object_in_every_frame(room, tmp_path):
    fig = sequence_from_scene(room, tmp_path / "out" / "seq.png", config=small_config(), seed=0)
    assert fig.png.is_file() and fig.png.stat().st_size > 1000
    assert fig.info["frames"] == 4 and len(fig.boxes) == 4 and fig.info["chunks"] >= 5
    png = imread(fig.png)
    assert png.shape[1] >= 4 * fig.panels[0].shape[1]
    centres = []
    for k, (r0, r1, c0, c1) in enumerate(fig.boxes):
        crop = png[r0:r1, c0:c1]
        hits = _near(crop, HIGHLIGHT)
        # the panel is drawn pixel for pixel and the object above every line: the PNG shows all its pixels
        assert hits.sum() >= 0.99 * fig.object_pixels[k] > 0, (k, hits.sum(), fig.object_pixels[k])
        assert _near(crop, REMOVED).sum() > 50  # the removed chunks are marked
        centres.append(np.argwhere(hits).mean(0))
    # the highlight sits where frame k's object points project, and it moves between frames
    from contrast3d.data.sequence_dataset import SceneObjectSequenceDataset

    ds = SceneObjectSequenceDataset([room], small_config(), on_error="raise")
    _, _, seq = ds.make_sequence(0, np.random.default_rng(0))  # same seed: the same sequence
    for k, f in enumerate(seq.frames):
        u, v, _ = fig.camera.project(f.coord[f.is_object])
        assert np.allclose(centres[k], [v.mean(), u.mean()], atol=4.0), (k, centres[k], v.mean(), u.mean())
    steps = [np.linalg.norm(centres[k + 1] - centres[k]) for k in range(3)]
    assert min(steps) > 0.30 * fig.camera.scale * 0.7  # >= 30 cm steps, foreshortened by sin(55 deg) at most


def test_scene_without_object_has_no_highlight():
    rng = np.random.default_rng(0)
    scene = rng.uniform(0, 1, (500, 3))
    cam = Camera.fit(scene, image_size=(60, 80))
    colors = rng.uniform(0, 0.9, (500, 3)).astype(np.float32)
    image, mask = render_frame(cam, scene, colors, np.zeros((0, 3)), 1, 2)
    assert not mask.any() and not _near(image, HIGHLIGHT).any()
    image, mask = render_frame(cam, scene, colors, scene[:5], 1, 2)  # object points hidden inside the scene
    assert mask.any() and np.array_equal(_near(image, HIGHLIGHT), mask)  # drawn on top (x-ray layer)


def test_box_corners_and_edges_match_a_loop():
    lo, hi = np.array([[0.0, 1.0, 2.0], [-1.0, -2.0, -3.0]]), np.array([[0.5, 1.5, 2.5], [1.0, 2.0, 3.0]])
    corners = box_corners(lo, hi)
    for b in range(2):
        ref = [[(hi if bx else lo)[b, 0], (hi if by else lo)[b, 1], (hi if bz else lo)[b, 2]]
               for bz, by, bx in itertools.product((0, 1), repeat=3)]
        np.testing.assert_array_equal(corners[b], np.array(ref))
    from contrast3d.viz.sequence import BOX_EDGES

    lengths = sorted(np.round([np.linalg.norm(corners[0, i] - corners[0, j]) for i, j in BOX_EDGES], 6))
    assert lengths == [0.5] * 12 and len({tuple(sorted(e)) for e in BOX_EDGES}) == 12


def test_viz_sequence_command(room, tmp_path, capsys):
    out = tmp_path / "cmd.png"
    assert main(["viz", "sequence", "--scene", str(room.parent), "--seed", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "4 frames" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["viz", "sequence", "--scene", str(empty), "--out", str(tmp_path / "x.png")]) == 2
    assert "coord.npy" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
