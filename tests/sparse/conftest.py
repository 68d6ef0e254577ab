"""Sparse-conv test setup: makes ``sparse_testlib`` importable, prints the worst errors, and runs
the convolution tests once per implementation (``impl`` fixture)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sparse_testlib import WORST


def pytest_terminal_summary(terminalreporter) -> None:
    if not WORST:
        return
    terminalreporter.section("sparse conv float64 worst relative errors")
    for (op, what), err in sorted(WORST.items()):
        terminalreporter.write_line(f"{op:32s} {what:14s} {err:.3e}")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(params=["gather", "implicit"])
def impl(request, monkeypatch) -> str:
    """Forces every sparse conv of the test onto one path through ``$CONTRAST3D_SPARSE_IMPL``."""
    monkeypatch.setenv("CONTRAST3D_SPARSE_IMPL", request.param)
    return request.param
