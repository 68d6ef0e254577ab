"""Pointcept scene folders: round trip, colour scaling, atomic replace and errors."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d import DataError, PointCloud
from contrast3d.io import read_any, read_pointcept_scene, write_pointcept_scene


def make_cloud(n: int = 40) -> PointCloud:
    rng = np.random.default_rng(1)
    return PointCloud(coord=rng.normal(size=(n, 3)).astype(np.float32),
                      color=rng.integers(0, 256, (n, 3)).astype(np.float32) / np.float32(255),
                      normal=rng.normal(size=(n, 3)).astype(np.float32), segment=rng.integers(-1, 20, n),
                      instance=rng.integers(-1, 9, n), superpoint=rng.integers(0, 5, n),
                      extra={"strength": rng.random((n, 1)).astype(np.float32), "segment200": rng.integers(0, 200, n)}
                      ).validate()


def test_round_trip_and_pointcept_colour_convention(tmp_path):
    cloud = make_cloud()
    scene = tmp_path / "scene0000_00"
    write_pointcept_scene(scene, cloud)
    assert sorted(p.name for p in scene.iterdir()) == ["color.npy", "coord.npy", "instance.npy", "normal.npy",
                                                        "segment.npy", "segment200.npy", "strength.npy",
                                                        "superpoint.npy"]
    stored = np.load(scene / "color.npy")
    assert stored.dtype == np.uint8 and stored.max() > 1
    back = read_any(scene)
    assert back.name == "scene0000_00" and back.meta["segment_file"] == "segment"
    for key, value in cloud.point_arrays().items():
        np.testing.assert_array_equal(back.get(key), value, err_msg=key)
    assert back.extra["strength"].shape == (40, 1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reads_float_colour_and_prefers_segment20(tmp_path):
    scene = tmp_path / "s"
    scene.mkdir()
    np.save(scene / "coord.npy", np.zeros((3, 3), np.float64))
    np.save(scene / "color.npy", np.array([[255.0, 0, 127.5]] * 3))
    np.save(scene / "segment20.npy", np.array([[1], [2], [-1]], np.int16))
    np.save(scene / "segment.npy", np.array([7, 7, 7]))
    cloud = read_pointcept_scene(scene)
    np.testing.assert_allclose(cloud.color[0], [1.0, 0.0, 0.5])
    assert cloud.segment.tolist() == [1, 2, -1] and cloud.segment.dtype == np.int64
    assert cloud.meta["unused_files"] == ["segment.npy"] and "segment" not in cloud.extra


def test_replace_existing_scene_but_not_other_folders(tmp_path):
    scene = tmp_path / "scene"
    write_pointcept_scene(scene, make_cloud(10))
    write_pointcept_scene(scene, make_cloud(12))
    assert len(read_pointcept_scene(scene)) == 12
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_pointcept_scene(precious, make_cloud(5))
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("files, message", [
    ({}, "no coord.npy"),
    ({"coord": np.zeros((4, 2))}, "expected \\(N, 3\\)"),
    ({"coord": np.zeros((0, 3))}, "empty point cloud"),
    ({"coord": np.array([[0, 0, np.inf]] * 2)}, "NaN/Inf"),
    ({"coord": np.zeros((4, 3)), "color": np.zeros((3, 3))}, "length mismatch"),
    ({"coord": np.zeros((4, 3)), "segment": np.zeros(5, np.int64)}, "length mismatch"),
    ({"coord": np.zeros((4, 3)), "segment": np.zeros((4, 2), np.int64)}, "must have shape \\(N,\\)"),
    ({"coord": np.zeros((4, 3)), "instance": np.full(4, 0.5)}, "must be integers"),
    ({"coord": np.zeros((4, 3)), "strength": np.zeros(3)}, "length mismatch"),
    ({"coord": np.zeros((4, 3)), "names": np.array(["a"] * 4)}, "unsupported dtype"),
])
def test_malformed_scene(tmp_path, files, message):
    scene = tmp_path / "bad"
    scene.mkdir()
    for name, value in files.items():
        np.save(scene / f"{name}.npy", value)
    with pytest.raises(DataError, match=message):
        read_pointcept_scene(scene)


def test_corrupt_npy(tmp_path):
    scene = tmp_path / "bad"
    scene.mkdir()
    (scene / "coord.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="coord.npy: not a valid .npy"):
        read_pointcept_scene(scene)
