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
    assert "scratch" in printed and "pointcontrast" in printed and "linear probe mIoU" in printed
    assert "kNN probe mIoU" in printed and "fine-tune mIoU (50pts)" in printed and "gain" in printed
    assert "contrast3d bench" in printed  # a short fine-tune never claims a gain: it points to the bench
    result = json.loads((out / "quickstart.json").read_text())
    assert [r["init"] for r in result["table"]] == ["scratch", "pointcontrast"]
    assert all(0.0 <= r["mIoU"] <= 1.0 for r in result["table"])
    assert all(len(r["linear_miou"]) == 2 and all(0 <= v <= 100 for v in r["knn_miou"]) for r in result["table"])
    assert result["gain"]["linear_miou"]["n"] == 2
    # pre-training saw only the training scenes
    data = json.loads((out / "data" / "bench_data.json").read_text())
    assert sorted(p.name for p in (out / "data" / "pairs").iterdir() if p.is_dir()) == data["train"]
    assert (out / "pretrain" / "backbone.json").is_file() and (out / "similarity_map.png").stat().st_size > 1000
