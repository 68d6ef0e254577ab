"""Reliability tests: shared tiny inputs, built once per session (see ``tiny_data.py``).

``tiny`` holds labelled Pointcept scenes, prepared frame pairs, an RGB-D sequence, an exported
backbone, a poisoned copy (a BatchNorm ``running_var`` of +inf) and a finished 2-step
pre-training run, under :func:`tiny_data.session_paths` (the corpus, generated at collection
time so that its ids can parametrise the test, points there too).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# numba's OpenMP thread pool, once started by ``prepare`` (normals, segments, pair mining), spin-waits
# between parallel regions and slows the sparse convs of a later in-process training run several-fold
# on a 2-core machine (measured here: 3 s -> 60-250 s). These tests run prepare and training in one
# process, so they ask numba for its non-spinning 'workqueue' pool (effective if no parallel numba code
# ran before in this process; see the report of issue 17 for the product-level question).
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
if "numba" in sys.modules:
    sys.modules["numba"].config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tiny_data as T  # noqa: E402


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """``contrast3d.cli.main(argv)`` in-process: ``(exit code, stdout, stderr)``."""
    from contrast3d.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny() -> dict[str, Path]:
    """The session's tiny inputs (:func:`tiny_data.session_paths`), built on first use."""
    from contrast3d.cli import main

    fx = T.session_paths()
    if not fx["run"].is_dir():
        T.pointcept_scenes(fx["scenes"])
        T.prepared_pairs(fx["pairs"])
        T.rgbd_sequence(fx["seq"])
        T.backbone(fx["backbone"])
        T.backbone(fx["poisoned"], poison=True)
        code = main(["pretrain", "pointcontrast", "--data", str(fx["pairs"]), "--out", str(fx["run"]),
                     "--steps", "2", *T.TINY_PRETRAIN])
        assert code == 0, "the tiny reference pre-training run failed"
    return fx


@pytest.fixture
def cli(capsys):
    """``cli(argv) -> (exit code, stdout, stderr)`` through ``contrast3d.cli.main`` in-process."""
    return lambda argv: run_cli(argv, capsys)


def pytest_sessionfinish(session, exitstatus) -> None:
    if T._SESSION:
        shutil.rmtree(T._SESSION["root"], ignore_errors=True)
