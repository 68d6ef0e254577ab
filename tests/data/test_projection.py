"""Point -> pixel projection with the depth (occlusion) test."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d.data.projection import project_points, world_to_camera
from contrast3d.data.rgbd import depth_to_points

K = np.array([[60.0, 0, 20.0], [0, 55.0, 14.5], [0, 0, 1]])
H, W = 30, 40


def _pose() -> np.ndarray:
    a = 0.3
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    pose[:3, 3] = [0.5, -0.2, 1.0]
    return pose


def _depth() -> np.ndarray:
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 3.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.1] = 0.0
    return depth


def test_backprojected_points_return_to_their_pixels():
    depth, pose = _depth(), _pose()
    pts, pix = depth_to_points(depth, K, pose, return_index=True)
    idx, row, col = project_points(pts, K, pose, (H, W), depth=depth, tolerance=1e-3)
    assert len(idx) == len(pts)
    np.testing.assert_array_equal(row * W + col, pix[idx])


def test_occluded_behind_and_outside_points_are_rejected():
    depth, pose = _depth(), _pose()
    pts = depth_to_points(depth, K, pose)
    cam = world_to_camera(pts, pose)
    behind_surface = cam * 1.5  # same pixel, farther along the ray: occluded
    behind_camera = cam * -1.0
    outside = cam + np.array([100.0, 0, 0])
    extra = np.concatenate([behind_surface, behind_camera, outside])
    world = extra @ pose[:3, :3].T + pose[:3, 3]
    allpts = np.concatenate([pts, world])
    idx, _, _ = project_points(allpts, K, pose, (H, W), depth=depth, tolerance=0.05)
    np.testing.assert_array_equal(idx, np.arange(len(pts)))
    # without the depth test occluded points are kept, behind/outside ones are not
    idx2, _, _ = project_points(allpts, K, pose, (H, W))
    np.testing.assert_array_equal(idx2, np.arange(2 * len(pts)))


def test_depth_hole_rejects_and_shape_check():
    depth, pose = _depth(), _pose()
    pts = depth_to_points(depth, K, pose)
    holed = depth.copy()
    holed[:, : W // 2] = 0
    idx, _, col = project_points(pts, K, pose, (H, W), depth=holed)
    assert len(idx) and (col >= W // 2).all()
    with pytest.raises(ValueError):
        project_points(pts, K, pose, (H, W), depth=depth[:-1])


def test_real_frame_projects_to_itself(shared_data):
    from contrast3d.io.frames import open_frame_folder
    path = shared_data / "7scenes_chess_60frames"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    seq = open_frame_folder(path, load_color=False)
    f0, f40 = seq[0], seq[40]
    pts, pix = depth_to_points(f0.depth, f0.intrinsics, f0.pose, stride=4, return_index=True)
    idx, row, col = project_points(pts, f0.intrinsics, f0.pose, f0.shape, depth=f0.depth, tolerance=1e-3)
    assert len(idx) == len(pts)
    np.testing.assert_array_equal(row * f0.shape[1] + col, pix[idx])
    # points of frame 40 seen by frame 0 pass the depth test at 5 cm in most cases
    pts40 = depth_to_points(f40.depth, f40.intrinsics, f40.pose, stride=4)
    inside, _, _ = project_points(pts40, f0.intrinsics, f0.pose, f0.shape)
    visible, _, _ = project_points(pts40, f0.intrinsics, f0.pose, f0.shape, depth=f0.depth, tolerance=0.05)
    assert len(visible) > 0.7 * len(inside)
