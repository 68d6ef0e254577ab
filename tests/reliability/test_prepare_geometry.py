"""Items 4 and 6 of issue 17: ``prepare rgbd`` refuses wrong geometry with the reason, goes on with
the good scenes, and says why a scene failed in the console and in ``prepare_summary.json``."""
from __future__ import annotations

import json

import numpy as np
import tiny_data as T

from contrast3d.io.frames import check_intrinsics_fit


def _sequences(root):
    T.rgbd_sequence(root / "good")
    T.rgbd_sequence(root / "depth8", depth_bits=8)
    k = T.K.copy()
    k[0, 2] = 500.0
    T.rgbd_sequence(root / "pp_outside", k=k)
    T.rgbd_sequence(root / "small_depth")
    k4 = np.eye(4)
    k4[:3, :3] = T.K * np.array([[2.0], [2.0], [1.0]])  # the intrinsics of a depth image twice the size
    np.savetxt(root / "small_depth" / "intrinsic" / "intrinsic_depth.txt", k4)
    latin = root / "latin1_json"
    (latin / "depth").mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.full((T.H, T.W), 1500, np.uint16)).save(latin / "depth" / "00000.png")
    (latin / "trajectory.log").write_text("0 0 1\n1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    (latin / "camera.json").write_bytes(b"{\"intrinsic_matrix\": \"caf\xe9\"}")
    (root / "bad_intrinsics" / "intrinsic").mkdir(parents=True)
    T.rgbd_sequence(root / "bad_intrinsics")
    (root / "bad_intrinsics" / "intrinsic" / "intrinsic_depth.txt").write_bytes(b"\x00\xff" * 10)


def test_prepare_keeps_the_good_scene_and_names_why_each_bad_one_failed(tmp_path, cli):
    _sequences(tmp_path / "frames")
    out = tmp_path / "out"
    code, stdout, err = cli(["prepare", "rgbd", "--frames", tmp_path / "frames", "--out", out, "--frame-skip", "1",
                             "--voxel-size", "0.1", "--quiet"])
    assert code == 0 and "Traceback" not in err, err
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["scenes"]["done"] == 1 and summary["scenes"]["failed"] == 5
    reasons = {i["scene"]: i["reason"] for i in summary["skipped_inputs"] if i["what"] == "scene"}
    assert "8-bit depth image" in reasons["depth8"]
    assert "principal point (500, 17.5) lies outside the 48x36 depth image" in reasons["pp_outside"]
    assert "far from the centre" in reasons["small_depth"]
    assert "UnicodeDecodeError" in reasons["latin1_json"] or "UTF-8" in reasons["latin1_json"]
    assert "unparsable intrinsics" in reasons["bad_intrinsics"]
    for scene in ("depth8", "pp_outside", "small_depth"):  # every frame bad: the scene says why, not just "no frames"
        assert reasons[scene].startswith("no usable frames (3 skipped): 3 of 3: ")
    for scene, reason in reasons.items():  # the console lists the same reasons
        assert f"skipped scene ({scene}): " in stdout and reason in stdout
    frames = sorted((out / "good" / "frames").glob("*.npz"))
    coord = np.load(frames[0])["coord"]
    assert len(frames) == 3 and 1.5 < float(np.ptp(coord, axis=0).max()) < 5.0  # metres, a room-sized cloud


def test_principal_point_check_accepts_real_cameras_and_refuses_other_resolutions():
    scannet_depth = np.array([[577.6, 0, 318.9], [0, 578.7, 242.7], [0, 0, 1]])  # ScanNet, 640 x 480
    check_intrinsics_fit(scannet_depth, (480, 640), "k")
    check_intrinsics_fit(np.array([[585.0, 0, 320], [0, 585, 240], [0, 0, 1]]), (480, 640), "k")  # 7-Scenes
    for shape in ((240, 320), (968, 1296)):  # the same intrinsics with a depth image of another size
        try:
            check_intrinsics_fit(scannet_depth, shape, "k")
        except ValueError as err:
            assert "principal point" in str(err)
        else:
            raise AssertionError(f"intrinsics of 640x480 accepted for {shape}")
