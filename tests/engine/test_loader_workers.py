"""Loader workers are capped at the CPUs the process may use (more only add contention)."""
from __future__ import annotations

import pytest

from contrast3d.engine import data as D


def test_workers_capped_at_available_cpus(monkeypatch):
    monkeypatch.setattr(D, "available_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="num_workers=8 but only 2 CPU"):
        assert D.usable_workers(8) == 2
    assert D.usable_workers(8, warn=False) == 2
    assert D.usable_workers(2) == 2 and D.usable_workers(0) == 0
