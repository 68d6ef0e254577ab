"""Bring-your-own-data snags: scenes without normals, label file names, ``.npz`` scenes, depth scale,
and the ``probe --init scratch`` baseline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contrast3d import PointCloud, cli
from contrast3d.errors import DataError
from contrast3d.io import read_any, read_npz_scene, read_pointcept_scene, write_pointcept_scene
from contrast3d.structures import build_feat


def _cloud(n: int = 40, seed: int = 0, normals: bool = True) -> PointCloud:
    rng = np.random.default_rng(seed)
    return PointCloud(coord=rng.random((n, 3)).astype(np.float32), color=rng.random((n, 3)).astype(np.float32),
                      normal=np.tile(np.float32([0, 0, 1]), (n, 1)) if normals else None,
                      segment=rng.integers(-1, 5, n), instance=rng.integers(-1, 3, n),
                      meta={"path": "/data/room1"}).validate()


# ----------------------------------------------------------------------------- missing normals
def test_scene_without_normals_names_both_remedies():
    cloud = _cloud(normals=False)
    with pytest.raises(DataError) as info:
        build_feat(cloud, ("color", "normal"))
    text = str(info.value)
    assert text.startswith("/data/room1: ") and "no normals" in text
    assert "contrast3d prepare scenes" in text
    assert "--set data.feat_keys=[color] --set model.in_channels=3" in text
    assert "\n" not in text


def test_missing_colour_suggests_the_remaining_keys():
    cloud = _cloud()
    cloud.color = None
    with pytest.raises(DataError, match=r"no 'color'.*--set data.feat_keys=\[normal\] --set model.in_channels=3"):
        build_feat(cloud, ["color", "normal"])
    with pytest.raises(DataError, match=r"--set data.feat_keys=\[ones\] --set model.in_channels=1"):
        build_feat(cloud, ["color"])
    assert build_feat(cloud, ["normal", "ones"]).shape == (40, 4)


# ----------------------------------------------------------------------------- label file names
def test_convert_and_simulate_write_the_same_label_file(tmp_path):
    from contrast3d.simulate.export import simulate_scene

    scene = simulate_scene(5, tmp_path / "sim", n_frames=0, density=4.0)
    sim_files = sorted(p.name for p in (tmp_path / "sim" / "pointcept" / scene.name).iterdir())
    assert "segment.npy" in sim_files and "segment20.npy" not in sim_files

    src = tmp_path / "legacy"  # a scene written under the old simulator name
    src.mkdir()
    cloud = _cloud()
    np.save(src / "coord.npy", cloud.coord)
    np.save(src / "segment20.npy", cloud.segment.astype(np.int32))
    np.save(src / "instance.npy", cloud.instance.astype(np.int32))
    assert cli.main(["convert", str(src), str(tmp_path / "converted")]) == 0
    conv_files = sorted(p.name for p in (tmp_path / "converted").iterdir())
    assert conv_files == ["coord.npy", "instance.npy", "segment.npy"]
    for folder in (src, tmp_path / "converted"):  # readers take the old and the new name
        np.testing.assert_array_equal(read_pointcept_scene(folder).segment, cloud.segment)


# ----------------------------------------------------------------------------- .npz scenes
def test_prepared_frame_npz_reads_wherever_a_scene_does(tmp_path):
    from contrast3d.data.frame_dataset import load_frame_cloud, save_frame_cloud

    frame = _cloud(normals=True)
    frame.superpoint = np.arange(40) % 7
    frame.segment = frame.instance = None
    frame.meta["pose"] = np.diag([1.0, 1.0, 1.0, 1.0])
    save_frame_cloud(tmp_path / "000010.npz", frame)  # the writer of 'prepare rgbd'
    cloud = read_any(tmp_path / "000010.npz")
    ref = load_frame_cloud(tmp_path / "000010.npz")
    for key in ("coord", "color", "normal", "superpoint"):
        np.testing.assert_array_equal(cloud.get(key), ref.get(key), err_msg=key)
    np.testing.assert_array_equal(cloud.meta["pose"], frame.meta["pose"])
    assert cloud.meta["name"] == "000010"
    # convert to PLY and to a Pointcept folder through the CLI
    assert cli.main(["convert", str(tmp_path / "000010.npz"), str(tmp_path / "f.ply")]) == 0
    np.testing.assert_allclose(read_any(tmp_path / "f.ply").coord, frame.coord)
    assert cli.main(["convert", str(tmp_path / "000010.npz"), str(tmp_path / "f")]) == 0
    np.testing.assert_array_equal(read_pointcept_scene(tmp_path / "f").superpoint, frame.superpoint)


def test_npz_with_pointcept_names_and_uint8_colour(tmp_path):
    cloud = _cloud()
    np.savez_compressed(tmp_path / "s.npz", coord=cloud.coord, color=np.round(cloud.color * 255).astype(np.uint8),
                        normal=cloud.normal, segment20=cloud.segment.astype(np.int16), instance=cloud.instance,
                        strength=np.ones((40, 1), np.float32))
    got = read_npz_scene(tmp_path / "s.npz")
    np.testing.assert_array_equal(got.segment, cloud.segment)
    np.testing.assert_allclose(got.color, cloud.color, atol=0.5 / 255)
    assert got.meta["segment_file"] == "segment20" and got.extra["strength"].shape == (40, 1)


@pytest.mark.parametrize("arrays, reason", [
    ({"xyz": np.zeros((3, 3))}, "no 'coord' array (found: xyz)"),
    ({"coord": np.zeros((3, 2))}, "expected (N, 3) numeric 'coord'"),
    ({"coord": np.zeros((3, 3)), "color": np.zeros((2, 3))}, "'color' must be (3, 3)"),
    ({"coord": np.zeros((3, 3)), "color": np.full((3, 3), 300.0)}, "colour values outside 0..255"),
    ({"coord": np.zeros((3, 3)), "segment": np.zeros(4)}, "length mismatch"),
    ({"coord": np.zeros((3, 3)), "feat": np.zeros((5, 2))}, "length mismatch: 'feat'"),
    ({"coord": np.full((3, 3), np.nan)}, "NaN/Inf"),
    ({"coord": np.zeros((0, 3))}, "empty point cloud"),
    ({"coord": np.zeros((3, 3)), "pose": np.eye(3)}, "'pose' must be a finite (4, 4)"),
])
def test_bad_npz_scenes_are_data_errors(tmp_path, arrays, reason):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        read_any(tmp_path / "bad.npz")
    assert info.value.source == str(tmp_path / "bad.npz") and reason in info.value.reason


def test_unreadable_npz_is_one_cli_line(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.save(tmp_path / "single.npy", np.zeros((3, 3)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    for name, reason in (("junk.npz", "not a valid .npz archive"), ("single.npz", "a single .npy array")):
        assert cli.main(["convert", str(tmp_path / name), str(tmp_path / "o.ply")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / name}: ") and reason in err


# ----------------------------------------------------------------------------- depth scale
def _scannet_sequence(root: Path, raw_depth: int, frames: int = 2) -> Path:
    h, w = 12, 16
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    k = np.eye(4)
    k[:3, :3] = [[20.0, 0, 7.5], [0, 20.0, 5.5], [0, 0, 1]]
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", k)
    for i in range(frames):
        Image.fromarray(np.full((h, w), raw_depth, np.uint16)).save(root / "depth" / f"{i}.png")
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(root / "color" / f"{i}.jpg")
        np.savetxt(root / "pose" / f"{i}.txt", np.eye(4))
    return root


def test_depth_scale_of_the_readers(tmp_path):
    from contrast3d.io.frames import open_frame_folder

    seq = _scannet_sequence(tmp_path / "seq", 5000)
    assert np.allclose(open_frame_folder(seq)[0].depth, 5.0)  # default: millimetres
    assert np.allclose(open_frame_folder(seq, depth_scale=5000.0)[0].depth, 1.0)


def test_prepare_rgbd_depth_scale(tmp_path):
    """TUM-style depth (5000 units per metre): 5000 is 1 m with --depth-scale 5000 (5 m, beyond the
    default 4 m truncation, without it)."""
    seq = _scannet_sequence(tmp_path / "seq", 5000)
    out = tmp_path / "out"
    args = ["prepare", "rgbd", "--frames", str(seq), "--out", str(out), "--frame-skip", "1", "--voxel-size", "0.1",
            "--store-voxel", "0", "--no-segments", "--quiet", "--json"]
    assert cli.main([*args, "--depth-scale", "5000"]) == 0
    frame = read_any(out / "seq" / "frames" / "0.npz")
    np.testing.assert_allclose(frame.coord[:, 2], 1.0, atol=1e-5)
    assert cli.main(["prepare", "rgbd", "--frames", str(seq), "--out", str(tmp_path / "x"), "--depth-scale", "0"]) == 2


# ----------------------------------------------------------------------------- probe --init scratch
def test_scratch_backbone_is_seeded(tmp_path):
    from contrast3d.commands.probe import scratch_backbone
    from contrast3d.models.pretrained import read_weights

    a, _ = read_weights(scratch_backbone(tmp_path / "a.safetensors", 3))
    b, rec = read_weights(scratch_backbone(tmp_path / "b.safetensors", 3))
    c, _ = read_weights(scratch_backbone(tmp_path / "c.safetensors", 4))
    assert rec.method == "random-init" and rec.preset == "spunet-tiny" and rec.feat_keys == ["color", "normal"]
    assert all((a[k] == b[k]).all() for k in a)
    assert any(not (a[k] == c[k]).all() for k in a if a[k].is_floating_point() and a[k].numel() > 1)
    like, like_rec = read_weights(scratch_backbone(tmp_path / "d.safetensors", 3, like=str(tmp_path / "a.safetensors")))
    assert like_rec.channels == rec.channels and all((like[k] == a[k]).all() for k in a)


def test_probe_scratch_writes_results(tmp_path, capsys):
    for split, count in (("train", 2), ("val", 1)):
        for i in range(count):
            cloud = _cloud(120, seed=10 * i + len(split))
            cloud.coord *= 3
            cloud.segment = (cloud.coord[:, 2] > 1.5).astype(np.int64)
            write_pointcept_scene(tmp_path / "data" / split / f"{split}{i}", cloud)
    out = tmp_path / "probe"
    argv = ["probe", "--init", "scratch", "--data", str(tmp_path / "data"), "--num-classes", "2", "--grid-size", "0.5",
            "--out", str(out), "--json"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())
    assert printed["init"] == saved["init"] == "scratch" and saved["settings"]["seed"] == 0
    assert 0.0 <= saved["probe/linear_miou"] <= 1.0 and (out / "random_init.safetensors").is_file()
    assert cli.main(["probe", "--init", str(out / "random_init.safetensors"), "--like", "x", "--data", "d"]) == 2
