"""``contrast3d quickstart --fast`` end to end, as a new user runs it (the smoke version)."""
from __future__ import annotations

import json

import pytest

from contrast3d.cli import main


@pytest.mark.slow
def test_quickstart_fast(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--fast", "--out", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "scratch" in printed and "pointcontrast" in printed and "mIoU" in printed
    result = json.loads((out / "quickstart.json").read_text())
    assert [r["init"] for r in result["table"]] == ["scratch", "pointcontrast"]
    assert all(0.0 <= r["mIoU"] <= 1.0 for r in result["table"])
    assert (out / "pretrain" / "backbone.json").is_file() and (out / "similarity_map.png").stat().st_size > 1000
