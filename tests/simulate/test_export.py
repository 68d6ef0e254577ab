"""Export in the ScanNet layout and the Pointcept folder; the CLI command."""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from contrast3d.commands import simulate as simulate_command
from contrast3d.io.frames import open_frame_folder
from contrast3d.io.ply import read_ply_mesh
from contrast3d.io.pointcept import read_pointcept_scene
from contrast3d.simulate.export import simulate_scene
from contrast3d.simulate.scene import generate_scene
from contrast3d.simulate.sensor import depth_sigma


def test_export_layout_readable(tmp_path):
    path = simulate_scene(2, tmp_path, n_frames=3, width=64, height=48)
    name = path.name
    for i in range(3):
        with Image.open(path / "depth" / f"{i}.png") as im:
            depth = np.array(im)
        assert depth.dtype == np.uint16 and depth.shape == (48, 64) and depth.max() > 0
        with Image.open(path / "color" / f"{i}.jpg") as im:
            assert im.size == (64, 48) and im.mode == "RGB"
        pose = np.loadtxt(path / "pose" / f"{i}.txt")
        assert pose.shape == (4, 4)
        np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
        with np.load(path / "render" / f"{i}.npz") as z:
            assert z["tri"].shape == (48, 64) and z["tri"].dtype == np.int32
            assert z["depth"].dtype == np.float32
            sensor = depth > 0
            clean = z["depth"][sensor].astype(np.float64)
            assert (np.abs(depth[sensor] / 1000.0 - clean) < 6 * depth_sigma(clean) + 1e-3).all()
    for k in ("intrinsic_depth.txt", "intrinsic_color.txt"):
        assert np.loadtxt(path / "intrinsic" / k).shape == (4, 4)
    frames = open_frame_folder(path)
    assert len(frames) == 3 and frames[0].depth.shape == (48, 64)
    mesh = read_ply_mesh(path / f"{name}_mesh.ply")
    ref = generate_scene(2).mesh
    np.testing.assert_array_equal(mesh.faces, ref.faces)
    np.testing.assert_array_equal(mesh.vertex_segment, ref.vertex_segment)
    np.testing.assert_array_equal(mesh.vertex_instance, ref.vertex_instance)
    cloud = read_pointcept_scene(tmp_path / "pointcept" / name)
    assert len(cloud) > 10_000 and cloud.segment.min() >= -1 and cloud.segment.max() <= 19
    assert np.load(tmp_path / "pointcept" / name / "color.npy").dtype == np.uint8
    assert (tmp_path / name / "meta.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_no_frames(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    simulate_command.register(sub)
    args = parser.parse_args(["simulate", "--scenes", "2", "--out", str(tmp_path), "--no-frames", "--seed", "10"])
    assert args.func(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointcept", "sim000010", "sim000011"]
    assert not list((tmp_path / "sim000010" / "depth").iterdir())
