"""Shared test fixtures.

``shared_data`` is ``../shared/data`` beside the repository (real samples that are never
copied into the repo); tests that need it skip with a reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CONTRAST3D_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Keep tests light on the 2-core CI machine: under pytest-xdist each worker gets one thread
# (two workers x two OpenMP threads oversubscribe the cores and can stall sparse convs badly).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
else:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (only present beside the project checkout)")
    return SHARED_DATA


def shared_sample(name: str) -> Path:
    """Path of one sample folder under ``../shared/data``; skips when absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data sample {path} not present")
    return path


@pytest.fixture(scope="session")
def sim_scenes(tmp_path_factory) -> Path:
    """Two small simulated scenes (no RGB-D frames), exported once per test session.

    Returns the output folder; the Pointcept scene folders are under ``<out>/pointcept/``.
    """
    from contrast3d.simulate import simulate_scene

    out = tmp_path_factory.mktemp("sim_scenes")
    for seed in (11, 12):
        simulate_scene(seed, out, n_frames=0, density=400.0)
    return out



@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """``simulated(name, seeds, density=400.0) -> root``: simulated scenes (no RGB-D frames) in a fresh
    temporary folder, Pointcept folders under ``<root>/pointcept/``."""
    from contrast3d.simulate import simulate_scene

    def make(name: str, seeds, density: float = 400.0) -> Path:
        root = tmp_path_factory.mktemp(name)
        for seed in seeds:
            simulate_scene(seed, root, n_frames=0, density=density)
        return root

    return make
