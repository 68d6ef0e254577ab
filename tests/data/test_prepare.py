"""``contrast3d prepare rgbd|scenes``: outputs, workers, resumability, bad inputs, --strict, temp cleanup."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from contrast3d import cli
from contrast3d.commands import prepare as prepare_command
from contrast3d.data.frame_dataset import FramePairDataset, read_scene
from contrast3d.data.prepare import MARKER, SUMMARY_FILE
from contrast3d.io.ply_write import write_ply
from contrast3d.io.pointcept import write_pointcept_scene
from contrast3d.structures import PointCloud, TriangleMesh

ROOM = np.array([[0.0, 0.0, 0.0], [4.0, 3.0, 2.5]])
K = np.array([[35.0, 0.0, 31.5], [0.0, 35.0, 23.5], [0.0, 0.0, 1.0]])
H, W = 48, 64


def _pose(yaw: float, eye=(2.0, 1.5, 1.3)) -> np.ndarray:
    """Camera-to-world (OpenCV axes) looking horizontally along ``yaw`` from ``eye``."""
    z = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    y = np.array([0.0, 0.0, -1.0])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([np.cross(y, z), y, z], axis=1)
    pose[:3, 3] = eye
    return pose


def _render(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth (metres along the optical axis) and colour of the box room by ray-plane intersection."""
    v, u = np.mgrid[0:H, 0:W]
    ray_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    d = ray_cam @ pose[:3, :3].T
    o = pose[:3, 3]
    t_best = np.full((H, W), np.inf)
    wall = np.zeros((H, W), int)
    for axis in range(3):
        for side in range(2):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (ROOM[side, axis] - o[axis]) / d[..., axis]
            better = (t > 0) & (t < t_best)
            t_best[better], wall[better] = t[better], 2 * axis + side
    p = o + d * t_best[..., None]
    checker = (np.floor(p[..., 0] / 0.5) + np.floor(p[..., 1] / 0.5) + np.floor(p[..., 2] / 0.5)) % 2
    palette = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [180, 180, 180], [90, 60, 30]])
    color = (palette[wall] * (0.6 + 0.4 * checker[..., None])).astype(np.uint8)
    return t_best, color  # ray_cam has z = 1, so t is the depth


def write_sequence(root, n: int = 6, step: float = 0.35):
    """A ScanNet-export-layout sequence of ``n`` views of the box room turning by ``step`` rad."""
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True)
    k4 = np.eye(4)
    k4[:3, :3] = K
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", k4)
    for i in range(n):
        pose = _pose(step * i)
        depth, color = _render(pose)
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(root / "depth" / f"{i}.png")
        Image.fromarray(color).save(root / "color" / f"{i}.jpg", quality=95)
        np.savetxt(root / "pose" / f"{i}.txt", pose)
    return root


def _parse(argv):
    parser = argparse.ArgumentParser()
    prepare_command.register(parser.add_subparsers())
    return parser.parse_args(["prepare", *argv])


def _run(argv) -> int:
    args = _parse(argv)
    return args.func(args)


def _summary(out):
    return json.loads((out / SUMMARY_FILE).read_text())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture()
def raw(tmp_path):
    root = tmp_path / "raw"
    write_sequence(root / "seqA")
    write_sequence(root / "seqB", n=5, step=-0.3)
    (root / "notes").mkdir()
    return root


RGBD = ["--frame-skip", "1", "--voxel-size", "0.05", "--quiet"]


def test_rgbd_two_workers_outputs_and_rerun_skips(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(["rgbd", "--frames", str(raw), "--out", str(out), "--workers", "2", *RGBD]) == 0
    summary = _summary(out)
    assert summary["scenes"] == {"total": 2, "done": 2, "already_done": 0, "failed": 0}
    assert summary["frames"] == 11 and summary["pairs"] >= 6 and summary["skipped_inputs"] == []
    assert [i["source"] for i in summary["ignored"]] == [str(raw / "notes")]
    assert "prepared 2 scene(s)" in capsys.readouterr().out
    for name, n in (("seqA", 6), ("seqB", 5)):
        scene, segments = out / name, []
        assert (scene / MARKER).is_file()
        info, pairs = read_scene(scene)
        assert len(info["frames"]) == n and len(pairs) >= 3 and info["name"] == name
        for fid in info["frames"]:
            with np.load(scene / "frames" / f"{fid}.npz") as z:
                coord, normal, sp, pose = z["coord"], z["normal"], z["superpoint"], z["pose"]
                assert z["color"].shape == coord.shape
            np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1.0, atol=1e-4)
            assert (np.einsum("ij,ij->i", normal, pose[:3, 3] - coord) > 0).all()  # face the camera
            # walls are axis planes: most normals are axis-aligned
            assert np.mean(np.abs(normal).max(axis=1) > 0.95) > 0.8
            assert sp.shape == (len(coord),) and len(np.unique(sp)) < len(coord) / 20
            axis = np.abs(normal).argmax(axis=1)  # which wall / floor a point lies on
            purity = sum(np.bincount(axis[sp == s]).max() for s in np.unique(sp)) / len(sp)
            assert purity > 0.97  # superpoints do not straddle walls
            segments.append(len(np.unique(sp)))
        assert max(segments) >= 3  # views of a corner are split into its planes
    pair = FramePairDataset([out / "seqA", out / "seqB"], match_radius=0.075)[0]
    assert len(pair.matches) > 50 and pair.view1.normal is not None
    stamp = (out / "seqA" / MARKER).stat().st_mtime_ns
    assert _run(["rgbd", "--frames", str(raw), "--out", str(out), *RGBD]) == 0
    again = _summary(out)
    assert again["scenes"] == {"total": 2, "done": 0, "already_done": 2, "failed": 0}
    assert again["frames_total"] == 11 and (out / "seqA" / MARKER).stat().st_mtime_ns == stamp
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def _corrupt(seq):
    (seq / "depth" / "1.png").write_bytes((seq / "depth" / "1.png").read_bytes()[:60])  # truncated
    Image.fromarray(np.zeros((H, W), np.uint16)).save(seq / "depth" / "2.png")  # all zero
    np.savetxt(seq / "pose" / "3.txt", np.diag([1.0, 1.0, 0.0, 1.0]))  # singular
    (seq / "pose" / "4.txt").unlink()  # missing


def test_bad_frames_are_skipped_with_reasons(tmp_path):
    seq = write_sequence(tmp_path / "raw" / "seq", n=7)
    _corrupt(seq)
    out = tmp_path / "out"
    assert _run(["rgbd", "--frames", str(seq), "--out", str(out), *RGBD]) == 0  # a folder that is one sequence
    summary = _summary(out)
    assert summary["scenes"]["done"] == 1 and summary["frames"] == 3
    reasons = {i["source"].split("/")[-2] + "/" + i["source"].split("/")[-1]: i["reason"]
               for i in summary["skipped_inputs"]}
    assert all(i["what"] == "frame" and i["scene"] == "seq" for i in summary["skipped_inputs"])
    assert "unreadable depth image" in reasons["depth/1.png"]
    assert "all zero" in reasons["depth/2.png"]
    assert "singular" in reasons["pose/3.txt"]
    assert "missing pose file" in reasons["pose/4.txt"]
    assert read_scene(out / "seq")[0]["frames"] == ["0", "5", "6"]


def test_strict_stops_with_exit_code_2(tmp_path, monkeypatch, capsys):
    seq = write_sequence(tmp_path / "raw" / "seq", n=5)
    _corrupt(seq)
    monkeypatch.setattr(cli, "COMMAND_MODULES", [prepare_command])
    out = tmp_path / "out"
    assert cli.main(["prepare", "rgbd", "--frames", str(seq), "--out", str(out), *RGBD, "--strict"]) == 2
    assert "unreadable depth image" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [SUMMARY_FILE]  # nothing half-written
    assert "unreadable depth image" in _summary(out)["stopped"]["reason"]


def test_scene_without_usable_frames_is_skipped(raw, tmp_path):
    bad = raw / "seqA"
    for i in range(6):
        Image.fromarray(np.zeros((H, W), np.uint16)).save(bad / "depth" / f"{i}.png")
    out = tmp_path / "out"
    assert _run(["rgbd", "--frames", str(raw), "--out", str(out), *RGBD]) == 0
    summary = _summary(out)
    assert summary["scenes"] == {"total": 2, "done": 1, "already_done": 0, "failed": 1}
    scene_items = [i for i in summary["skipped_inputs"] if i["what"] == "scene"]
    assert scene_items[0]["scene"] == "seqA" and "no usable frames (6 skipped)" in scene_items[0]["reason"]
    assert not (out / "seqA").exists() and (out / "seqB" / MARKER).is_file()


def test_leftover_temp_cleaned_and_failed_job_leaves_nothing(raw, tmp_path, monkeypatch):
    out = tmp_path / "out"
    stale = out / f".seqA.tmp-{_dead_pid()}"
    (stale / "frames").mkdir(parents=True)
    (stale / "frames" / "0.npz").write_bytes(b"partial")
    from contrast3d.data import scene_jobs

    real = scene_jobs.run_rgbd

    def flaky(source, tmp, options):
        if source.name == "seqB":
            (tmp / "frames").mkdir(parents=True)
            raise RuntimeError("killed mid-scene")
        return real(source, tmp, options)

    monkeypatch.setattr(scene_jobs, "run_rgbd", flaky)
    with pytest.raises(RuntimeError):
        _run(["rgbd", "--frames", str(raw), "--out", str(out), *RGBD])
    assert not stale.exists() and (out / "seqA" / MARKER).is_file()
    assert not (out / "seqB").exists() and not [p for p in out.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(scene_jobs, "run_rgbd", real)
    assert _run(["rgbd", "--frames", str(raw), "--out", str(out), *RGBD]) == 0
    assert _summary(out)["scenes"] == {"total": 2, "done": 1, "already_done": 1, "failed": 0}


def test_existing_foreign_folder_is_not_replaced(raw, tmp_path):
    out = tmp_path / "out"
    (out / "seqA").mkdir(parents=True)
    (out / "seqA" / "mine.txt").write_text("keep")
    assert _run(["rgbd", "--frames", str(raw), "--out", str(out), *RGBD]) == 0
    item = _summary(out)["skipped_inputs"][0]
    assert item["scene"] == "seqA" and "not a finished scene" in item["reason"]
    assert (out / "seqA" / "mine.txt").read_text() == "keep"


def _grid_mesh(n: int = 12) -> TriangleMesh:
    """A floor (label 1) and a wall (label 2) as triangulated grids, 2 m each."""
    g = np.linspace(0, 2, n)
    a, b = np.meshgrid(g, g, indexing="ij")
    floor = np.stack([a.ravel(), b.ravel(), np.zeros(n * n)], 1)
    wall = np.stack([a.ravel(), np.zeros(n * n), b.ravel() + 0.01], 1)
    q = np.arange(n * n).reshape(n, n)
    quads = np.stack([q[:-1, :-1].ravel(), q[1:, :-1].ravel(), q[1:, 1:].ravel(), q[:-1, 1:].ravel()], 1)
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    faces = np.concatenate([tri, tri[:, ::-1] + n * n])
    verts = np.concatenate([floor, wall]).astype(np.float32)
    return TriangleMesh(verts, faces, vertex_color=np.full((2 * n * n, 3), 0.5, np.float32),
                        vertex_segment=np.repeat([1, 2], n * n))


def test_prepare_scenes_mesh_and_point_cloud(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_ply(src / "room_mesh.ply", _grid_mesh())
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform([0, 0, 0], [2, 2, 0], (1500, 3)), rng.uniform([0, 0, 0], [2, 0, 2], (1500, 3))])
    write_ply(src / "room_points.ply", PointCloud(pts.astype(np.float32), segment=np.repeat([1, 2], 1500)))
    (src / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\n")
    (src / "readme.txt").write_text("not data")
    write_pointcept_scene(src / "pc_scene", PointCloud(pts[::3].astype(np.float32), segment=np.repeat([1, 2], 500)),
                          segment_name="segment20")
    out = tmp_path / "out"
    assert _run(["scenes", "--input", str(src), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    summary = _summary(out)
    assert summary["scenes"] == {"total": 4, "done": 3, "already_done": 0, "failed": 1}
    assert summary["skipped_inputs"][0]["scene"] == "broken" and summary["points"] == 288 + 3000 + 1000
    assert "end_header" in summary["skipped_inputs"][0]["reason"]
    assert sorted(p.name for p in (out / "pc_scene").iterdir()) == sorted([
        MARKER, "coord.npy", "normal.npy", "segment20.npy", "superpoint.npy"])
    assert [i["source"] for i in summary["ignored"]] == [str(src / "readme.txt")]
    for name, n in (("room_mesh", 288), ("room_points", 3000)):
        folder = out / name
        normal = np.load(folder / "normal.npy")
        seg, sp = np.load(folder / "segment.npy"), np.load(folder / "superpoint.npy")
        assert normal.shape == (n, 3) and seg.shape == (n,) and sp.shape == (n,)
        np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(np.unique(seg), [1, 2])
        assert 2 <= len(np.unique(sp)) < n / 10
        # superpoints follow the floor / wall split (random points at the seam may go either way)
        assert sum(np.bincount(seg[sp == s]).max() for s in np.unique(sp)) / n > 0.98
    monkeypatch.setattr(cli, "COMMAND_MODULES", [prepare_command])
    assert cli.main(["prepare", "scenes", "--input", str(src / "broken.ply"), "--out", str(out), "--strict",
                     "--quiet"]) == 2
    assert "broken.ply" in capsys.readouterr().err


def test_frame_features_share_one_knn_query():
    from contrast3d.data.frame_dataset import frame_features
    from contrast3d.data.normals import estimate_normals, knn
    from contrast3d.data.rgbd import frame_to_cloud
    from contrast3d.data.segmentation import segment_points
    from contrast3d.io.frames import RGBDFrame

    pose = _pose(0.4)
    depth, color = _render(pose)
    cloud = frame_to_cloud(RGBDFrame(depth.astype(np.float32), color / 255.0, K, pose), voxel_size=0.05)
    out = frame_features(cloud.copy())
    normal = estimate_normals(cloud.coord, k=16, viewpoint=pose[:3, 3])
    np.testing.assert_array_equal(out.normal, normal)
    np.testing.assert_array_equal(out.superpoint, segment_points(cloud.coord, normal, compact=True,
                                                                 neighbors=knn(cloud.coord, 16)))
    # an own 11-NN query differs only where equidistant grid neighbours tie
    assert np.mean(out.superpoint != segment_points(cloud.coord, normal, compact=True)) < 0.01
    assert frame_features(cloud.copy(), normals=False).normal is None
    with pytest.raises(ValueError, match="neighbors"):
        segment_points(cloud.coord, normal, neighbors=np.zeros((len(cloud), 3), np.int64))


def _frames(scene):
    info, _ = read_scene(scene)
    out = {}
    for fid in info["frames"]:
        with np.load(scene / "frames" / f"{fid}.npz") as z:
            out[fid] = {k: z[k] for k in z.files}
    return info, out


def test_frames_stored_denser_than_the_training_voxel(tmp_path):
    seq = write_sequence(tmp_path / "raw" / "seq", n=3)
    runs = {}
    for name, extra in (("default", []), ("coarse", ["--store-voxel", "0.2"]), ("pixels", ["--store-voxel", "0"])):
        out = tmp_path / name
        assert _run(["rgbd", "--frames", str(seq), "--out", str(out), "--frame-skip", "1", "--voxel-size", "0.2",
                     "--quiet", *extra]) == 0
        runs[name] = _frames(out / "seq")
    info, dense = runs["default"]
    assert info["voxel_size"] == 0.2 and info["store_voxel_size"] == pytest.approx(0.05)  # default: a quarter
    assert runs["coarse"][0]["store_voxel_size"] == 0.2 and runs["pixels"][0]["store_voxel_size"] == 0.0
    _, coarse = runs["coarse"]
    _, pixels = runs["pixels"]
    rot = np.array([[0.6, -0.8, 0.0], [0.48, 0.36, -0.8], [0.64, 0.48, 0.6]])  # a rotation about a tilted axis
    lost = {"coarse": [], "default": []}
    for fid, d in dense.items():
        c, p = coarse[fid], pixels[fid]
        assert len(c["coord"]) < len(d["coord"]) <= len(p["coord"]) == int((p["coord"][:, 2] >= -1).sum())
        # Normals and superpoints are those of the training-voxel cloud: the points a 0.2 m storage
        # keeps are in the dense frame with the same normal and superpoint, and every dense point
        # carries its 0.2 m voxel's values.
        key = {tuple(x): i for i, x in enumerate(d["coord"].tolist())}
        at = np.array([key.get(tuple(x), -1) for x in c["coord"].tolist()])
        assert (at >= 0).mean() > 0.99
        hit = at >= 0
        np.testing.assert_array_equal(d["normal"][at[hit]], c["normal"][hit])
        np.testing.assert_array_equal(d["superpoint"][at[hit]], c["superpoint"][hit])
        vox = np.floor(d["coord"] / 0.2).astype(np.int64)
        _, inv = np.unique(vox, axis=0, return_inverse=True)
        for v in np.unique(inv)[:50]:
            assert len(np.unique(d["superpoint"][inv.ravel() == v])) == 1
        # After rotation and scale 1.2, voxelised at 0.2 m: the coarse storage misses surface voxels.
        def occupied(x):
            return len(np.unique(np.floor(x @ rot.T * 1.2 / 0.2), axis=0))

        full = occupied(p["coord"])
        for name, frame in (("coarse", c), ("default", d)):
            lost[name].append(1 - occupied(frame["coord"]) / full)
    assert np.mean(lost["coarse"]) > 0.1 and np.mean(lost["default"]) < np.mean(lost["coarse"]) / 3, lost
    from contrast3d.errors import DataError

    with pytest.raises(DataError, match="store-voxel"):
        _run(["rgbd", "--frames", str(seq), "--out", str(tmp_path / "bad"), "--voxel-size", "0.05",
              "--store-voxel", "0.1", "--quiet"])
