"""``contrast3d bench --tasks semseg,insseg,det`` without training: the plan (same backbones, splits and seeds
for every task; semseg digests unchanged by adding tasks), the per-task paired statistics, report sections and
figures. Every job is answered by a stand-in runner with made-up metrics; the end-to-end run is in
``test_bench_smoke.py``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contrast3d.bench import runner as bench_runner
from contrast3d.bench.runner import BenchConfig, run_bench
from contrast3d.bench.tasks import TASKS, parse_tasks
from contrast3d.config import ConfigError
from contrast3d.errors import DataError

SEEDS = [0, 1, 2]
#: scratch's score per seed (varies a lot), the method's paired offset (constant), scratch-long's offset.
BASE = {0: 0.10, 1: 0.30, 2: 0.20}
OFFSET = {"semseg": 0.05, "insseg": 0.02, "det": -0.03}


def _scene(folder: Path, n: int, rng: np.random.Generator, instances: bool = True) -> None:
    folder.mkdir(parents=True)
    np.save(folder / "coord.npy", rng.random((n, 3), dtype=np.float32))
    np.save(folder / "color.npy", rng.integers(0, 255, (n, 3)).astype(np.uint8))
    np.save(folder / "normal.npy", np.tile(np.float32([0, 0, 1]), (n, 1)))
    np.save(folder / "segment20.npy", rng.integers(0, 20, n).astype(np.int64))
    if instances:
        np.save(folder / "instance.npy", rng.integers(0, 4, n).astype(np.int64))


@pytest.fixture
def data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for name in names:
            _scene(root / "scenes" / split / name, 40, rng)
    (root / "pairs" / "a").mkdir(parents=True)  # pointcontrast's pre-training folder (never read here)
    return root


class FakeRunner:
    """Answers every job at once: a 3D SpUNet export for pre-training, probe scores, and per task
    ``BASE[seed] + OFFSET[task]`` for the method, ``BASE[seed]`` for scratch, + 0.01 for scratch-long."""

    jobs: list = []

    def __init__(self, *args, **kwargs):
        self.failed: list = []
        self.reused = 0

    def run(self, jobs, desc):
        FakeRunner.jobs += list(jobs)
        out = {}
        for job in jobs:
            if job.kind == "pretrain":
                sig = bench_runner.signature_of(bench_runner.finetune_config("x", "scratch", "all", 0, None, True))
                out[job.key] = {"steps": 6, "exports": {"backbone": "backbone.safetensors"},
                                "record": {"kind": "spunet", "ndim": 3, **sig}}
            elif job.kind == "probe":
                out[job.key] = {"linear_miou": 0.2, "knn_miou": 0.1}
            else:
                task, label, seed = job.payload["task"], job.key[1], job.key[4]
                value = BASE[seed] + (OFFSET[task] if label == "pointcontrast" else 0.0) \
                    + (0.01 if label.startswith("scratch-long") else 0.0)
                metrics = TASKS[task].metrics
                out[job.key] = {metrics[0]: value, **{m: value / 2 for m in metrics[1:]}, "steps": 6,
                                "minutes": 0.01}
        return out


def _bench(data: Path, out: Path, tasks: list[str], monkeypatch, report: bool = True) -> dict:
    from contrast3d.bench import report as bench_report

    FakeRunner.jobs = []
    monkeypatch.setattr(bench_runner, "JobRunner", FakeRunner)
    monkeypatch.setattr(bench_report, "PLOTS", {})  # semseg's figures: drawn in test_bench_smoke.py
    if not report:
        monkeypatch.setattr(bench_report, "write_report", lambda out, summary: {})
    cfg = BenchConfig(methods=["scratch", "pointcontrast"], labels=["20pts"], tasks=tasks, seeds=SEEDS,
                      data=str(data), out=str(out), smoke=True, quiet=True)
    return run_bench(cfg)


def test_tasks_share_backbones_splits_and_seeds_and_report_paired_gains(data, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    r = _bench(data, out, ["det", "insseg", "det"], monkeypatch)
    ft = [j for j in FakeRunner.jobs if j.kind == "finetune"]
    # 3 arms x 3 seeds per task, each task's runs in its own folders with their own digests
    assert len(ft) == 3 * 9 and r["config"]["tasks"] == ["semseg", "det", "insseg"]
    assert len({j.digest for j in ft}) == len(ft) and len({j.folder for j in ft}) == len(ft)
    by_key = {(j.payload["task"], *j.key[1:]): j for j in ft}
    for (task, label, p, budget, seed), job in by_key.items():
        sem = by_key[("semseg", label, p, budget, seed)]
        cfg = job.payload["cfg"]
        assert job.payload["split"] == sem.payload["split"] == str(out / "splits" / f"{budget.replace('%', 'pct')}"
                                                                               f"_s{seed}.json")
        assert cfg.method_name == task and cfg.seed == seed and cfg.method.labels == budget
        assert cfg.method.init == sem.payload["cfg"].method.init and cfg.steps == sem.payload["cfg"].steps
        assert bench_runner.signature_of(cfg) == bench_runner.signature_of(sem.payload["cfg"])
        if task != "semseg":
            assert job.folder.parts[-4 if p is not None else -3] == f"finetune-{task}"
    assert by_key[("det", "pointcontrast", 0, "20pts", 1)].payload["cfg"].method.init.endswith("backbone.safetensors")

    # per-task paired gains: scratch varies by 20 points over seeds, the paired difference is constant
    for task, off in OFFSET.items():
        t = r["tasks"][task]
        assert t["metric"] == TASKS[task].metric
        gains = {g["budget"]: g for g in t["gains"]}
        assert set(gains) == {"20pts"}
        for g in gains.values():
            assert g["method"] == "pointcontrast" and g["baseline"] == "scratch" and g["n"] == 3
            assert g["mean"] == pytest.approx(100 * off) and g["low"] == pytest.approx(100 * off)
            assert g["verdict"] == ("significant gain" if off > 0 else "significant loss")
        v = t["values"]["scratch"]["20pts"]
        assert v["mean"] == pytest.approx(20.0) and v["std"] == pytest.approx(10.0) and v["n"] == 3
        assert [c["mean"] for c in t["control"]] == pytest.approx([1.0])
    assert r["gains"] == r["tasks"]["semseg"]["gains"] and r["pairing"]["same_split_per_budget_and_seed"]
    assert "class labels only" in r["tasks"]["det"]["budget_note"] and "20pts" in r["tasks"]["det"]["budget_note"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["insseg"]["gains"][0]["mean"] == pytest.approx(2.0)
    assert {x.get("task") for x in saved["runs"] if x["kind"] == "finetune"} == {"semseg", "insseg", "det"}

    md = (out / "report.md").read_text()
    det = md[md.index("## 3D object detection (det): mAP@0.25"):]
    assert md.index("## 3D object detection") < md.index("## Instance segmentation (insseg): AP50")  # as given
    assert "| pointcontrast | scratch      | 20pts  | -3.00 | -3.00 … -3.00 | 3 | significant loss" in det
    assert "17.00 ± 10.00 (n=3)" in det and "fig_det_metric.png" in det and "class labels only" in det
    assert "+2.00 AP50 (insseg) over scratch" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * 2 and "<h3>" in html
    for name in ("insseg_metric", "insseg_gain", "det_metric", "det_gain"):
        assert (out / f"fig_{name}.png").stat().st_size > 2000


def test_tasks_are_checked(data, tmp_path, monkeypatch):
    assert parse_tasks(["det"]) == ["semseg", "det"]
    with pytest.raises(ConfigError, match="--tasks.*unknown task"):
        _bench(data, tmp_path / "b1", ["semseg", "pose"], monkeypatch, report=False)
    (data / "scenes" / "val" / "c" / "instance.npy").unlink()
    with pytest.raises(DataError, match="no instance.npy"):
        _bench(data, tmp_path / "b2", ["insseg"], monkeypatch, report=False)
    # semseg alone does not need instance labels
    assert _bench(data, tmp_path / "b3", ["semseg"], monkeypatch, report=False)["config"]["tasks"] == ["semseg"]
