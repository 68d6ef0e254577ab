"""Sparse-conv test setup: makes ``sparse_testlib`` importable and prints the worst errors."""
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
        terminalreporter.write_line(f"{op:28s} {what:14s} {err:.3e}")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
