"""Camera trajectories stay inside the rooms, away from furniture, at hand height, smooth."""
from __future__ import annotations

import numpy as np
import pytest

from contrast3d.simulate.layout import CELL
from contrast3d.simulate.scene import generate_scene
from contrast3d.simulate.trajectory import camera_trajectory, clearance_map


@pytest.mark.parametrize("seed", [0, 3, 4, 7])
def test_camera_inside_room_and_clear_of_furniture(seed):
    sc = generate_scene(seed)
    poses = camera_trajectory(sc.plan, sc.objects, 50, np.random.default_rng(seed))
    assert poses.shape == (50, 4, 4)
    R = poses[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    pos = poses[:, :3, 3]
    assert sc.plan.inside(pos[:, :2]).all()
    assert (pos[:, 2] > 1.2).all() and (pos[:, 2] < sc.plan.height - 0.2).all()
    clear = clearance_map(sc.plan, sc.objects)
    ij = np.floor((pos[:, :2] - sc.plan.origin) / CELL).astype(int)
    assert (clear[ij[:, 0], ij[:, 1]] >= 0.15).all()
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert step.max() < 0.5
    fwd = poses[:, :3, 2]
    assert (fwd[:, 2] < 0.5).all()  # never looking at the ceiling
    turn = np.degrees(np.arccos(np.clip((fwd[1:] * fwd[:-1]).sum(1), -1, 1)))
    assert turn.max() < 45
