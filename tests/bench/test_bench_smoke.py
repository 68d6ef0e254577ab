"""``contrast3d bench --smoke`` end to end (scratch vs PointContrast on tiny built-in data), its reuse of
finished runs by config digest, ``--resume`` of an unfinished run, and ``--tasks semseg,insseg,det``."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from contrast3d.bench.jobs import JOB_FILE, Job, JobRunner
from contrast3d.cli import main

ARGS = ["bench", "--smoke", "--methods", "scratch,pointcontrast", "--labels", "20pts,50%", "--seeds", "0",
        "--jobs", "1", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "smoke"
    assert main(ARGS + ["--out", str(out)]) == 0
    return out


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_smoke_bench_report(bench, capsys):
    r = _results(bench)
    assert r["labels"] == ["scratch", "scratch-long", "pointcontrast"]
    assert r["finetune_steps"] == 6 and r["long_steps"] == math.ceil(2.5 * 6)
    ft = [x for x in r["runs"] if x["kind"] == "finetune"]
    assert len(ft) == 3 * 2 and all(0.0 <= x["mIoU"] <= 1.0 for x in ft)
    assert {(g["method"], g["budget"]) for g in r["gains"]} == {("pointcontrast", "20pts"), ("pointcontrast", "50%")}
    assert all(g["verdict"] == "n = 1: no confidence interval" for g in r["gains"])
    # pairing: every run of a (budget, seed) trained on the identical saved split
    assert r["pairing"]["same_split_per_budget_and_seed"]
    for tag in ("20pts", "50pct"):
        saved = json.loads((bench / "splits" / f"{tag}_s0.json").read_text())
        copies = sorted(bench.glob(f"finetune/**/{tag}_s0/label_split.json"))
        assert len(copies) == 3 and all(json.loads(c.read_text()) == saved for c in copies)
    half = json.loads((bench / "splits" / "50pct_s0.json").read_text())
    assert len(half["scenes"]) == 1 and not half["points"]  # 50 % of 2 training scenes: a saved scene list
    assert all(x["train_scenes"] == 1 for x in ft if x["budget"] == "50%")
    pts = json.loads((bench / "splits" / "20pts_s0.json").read_text())
    assert len(pts["scenes"]) == 2 and all(len(v) == 20 for v in pts["points"].values())
    probes = {p["method"]: p for p in r["probes"]}
    assert set(probes) == {"scratch", "pointcontrast"}
    assert 0.0 <= probes["pointcontrast"]["linear_miou"]["mean"] <= 100.0 and probes["scratch"]["knn_miou"]["n"] == 1
    cost = {c["method"]: c for c in r["cost"]}
    assert cost["pointcontrast"]["pretrain_runs"] == 1 and cost["pointcontrast"]["pretrain_steps"] == 6
    assert cost["pointcontrast"]["pretrain_peak_rss_mb"] > 50 and cost["scratch-long"]["finetune_steps"] == 15
    # pre-training saw only the training scenes
    data = json.loads((bench / "data" / "bench_data.json").read_text())
    assert sorted(p.name for p in (bench / "data" / "pairs").iterdir() if p.is_dir()) == data["train"]
    assert not set(data["val"]) & {p.name for p in (bench / "data" / "scenes" / "train").iterdir()}
    md = (bench / "report.md").read_text()
    for text in ("Paired gain over scratch", "Frozen-feature probes", "Per-class IoU", "Cost",
                 "identical split file", "fig_miou.png"):
        assert text in md
    html = (bench / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and 'src="fig_' not in html
    for name in ("miou", "gain", "per_class", "probes", "cost"):
        assert (bench / f"fig_{name}.png").stat().st_size > 2000


@pytest.mark.slow
def test_smoke_bench_reuses_finished_runs_and_resumes(bench, capsys):
    before = _results(bench)
    assert main(ARGS + ["--out", str(bench)]) == 0
    again = _results(bench)
    assert again["reused_runs"] == 1 + 6 + 2  # pre-training, fine-tunes, probes: nothing re-run
    assert [x.get("mIoU") for x in again["runs"]] == [x.get("mIoU") for x in before["runs"]]
    # a killed fine-tune (state "running", checkpoint on disk) is continued by --resume, not restarted
    run = bench / "finetune" / "pointcontrast" / "p0" / "20pts_s0"
    state = json.loads((run / JOB_FILE).read_text())
    (run / JOB_FILE).write_text(json.dumps({**state, "status": "running", "result": None}))
    ckpt = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main(ARGS + ["--out", str(bench), "--resume"]) == 0
    resumed = _results(bench)
    assert resumed["reused_runs"] == 1 + 5 + 2
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == ckpt  # continued at its last step
    assert json.loads((run / JOB_FILE).read_text())["status"] == "done"
    old = [x["mIoU"] for x in before["runs"] if x["kind"] == "finetune" and x["method"] == "pointcontrast"
           and x["budget"] == "20pts"]
    new = [x["mIoU"] for x in resumed["runs"] if x["kind"] == "finetune" and x["method"] == "pointcontrast"
           and x["budget"] == "20pts"]
    assert new == pytest.approx(old, abs=1e-9)


@pytest.mark.slow
def test_smoke_bench_tasks_insseg_det(bench, tmp_path):
    """``--tasks semseg,insseg,det`` on a copy of the smoke bench: pre-training, probes and semseg runs are
    reused (adding tasks changes no digest); insseg and det fine-tune the same backbone on the same split and
    seed and get their own report sections, paired gains and figures."""
    out = tmp_path / "tasks"
    for sub in ("data", "splits", "pretrain", "probe", "finetune"):
        shutil.copytree(bench / sub, out / sub)
    scenes = sorted((out / "data" / "scenes").glob("*/*/coord.npy"))
    assert len(scenes) == 3 and all((p.parent / "instance.npy").is_file() for p in scenes)
    assert main(ARGS + ["--out", str(out), "--labels", "20pts", "--tasks", "insseg,det"]) == 0
    r = _results(out)
    assert r["config"]["tasks"] == ["semseg", "insseg", "det"] and not r["failed"]
    assert r["reused_runs"] == 1 + 3 + 2  # pre-training, semseg 20pts (3 arms), probes: nothing re-run
    for task, metric, title in (("insseg", "AP50", "Instance segmentation"),
                                ("det", "mAP@0.25", "3D object detection")):
        t = r["tasks"][task]
        runs = [x for x in r["runs"] if x["kind"] == "finetune" and x.get("task") == task]
        assert sorted((x["method"], x["steps"]) for x in runs) == [("pointcontrast", 6), ("scratch", 6),
                                                                    ("scratch-long", 15)]
        assert all(0.0 <= x[metric] <= 1.0 for x in runs)
        assert [(g["method"], g["baseline"], g["budget"], g["n"]) for g in t["gains"]] == [
            ("pointcontrast", "scratch", "20pts", 1)]
        assert isinstance(t["gains"][0]["mean"], float) and t["values"]["scratch"]["20pts"]["n"] == 1
        copies = sorted((out / f"finetune-{task}").glob("**/20pts_s0/label_split.json"))
        saved = json.loads((out / "splits" / "20pts_s0.json").read_text())
        assert len(copies) == 3 and all(json.loads(c.read_text()) == saved for c in copies)
        md = (out / "report.md").read_text()
        section = md[md.index(f"## {title} ({task}): {metric}"):]
        assert f"Paired gain over scratch ({metric} points)" in section and "(n=1)" in section
        assert "class labels only" in section  # how the 20pts budget applies to this task
        for kind in ("metric", "gain"):
            assert (out / f"fig_{task}_{kind}.png").stat().st_size > 2000
    assert r["pairing"]["same_split_per_budget_and_seed"]


def test_job_states(tmp_path):
    """Done + same digest: reused; other digest: stale, wiped; unfinished: continued only with resume."""
    folder = tmp_path / "job"

    def job(digest: str) -> Job:
        return Job("probe", ("probe", "x", 0, 0), folder, digest, {})

    def state(digest: str, status: str, result=None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / JOB_FILE).write_text(json.dumps({"digest": digest, "status": status, "result": result}))
        (folder / "partial.txt").write_text("work")

    state("a", "done", {"mIoU": 0.5})
    assert JobRunner(1, 1, resume=False, quiet=True)._prepare(job("a")) == {"mIoU": 0.5}
    assert JobRunner(1, 1, resume=True, quiet=True)._prepare(job("b")) is None  # stale: re-run
    assert not (folder / "partial.txt").exists()
    assert json.loads((folder / JOB_FILE).read_text()) == {"digest": "b", "status": "running", "result": None}
    state("c", "running")
    assert JobRunner(1, 1, resume=True, quiet=True)._prepare(job("c")) is None
    assert (folder / "partial.txt").exists()  # kept: continued from its checkpoint
    assert JobRunner(1, 1, resume=False, quiet=True)._prepare(job("c")) is None
    assert not (folder / "partial.txt").exists()  # no --resume: restarted


def test_pre_stages_feed_their_export_into_the_next_stage(tmp_path, monkeypatch):
    """A spec's ``pre_stages`` run first (one round per stage) and hand their export to the next stage's
    config and digest (image2point's 2D stage feeding method.image_net); nothing is trained here."""
    import dataclasses

    from contrast3d.bench.data import BenchData
    from contrast3d.bench.runner import BenchConfig, _run_pretraining
    from contrast3d.methods import METHODS, MethodSpec, image2point

    @dataclasses.dataclass(frozen=True)
    class Staged(image2point.Image2PointSpec):
        pre_stages: tuple = ({"name": "2d", "overrides": ["method.stage=2d"], "export": "image_net",
                              "into": "method.image_net"},)

    spec = Staged(**{f.name: getattr(image2point.SPEC, f.name) for f in dataclasses.fields(MethodSpec)})
    monkeypatch.setitem(METHODS, "staged", spec)
    (tmp_path / "data" / "frames" / "scene0").mkdir(parents=True)
    batches: list[list[Job]] = []

    class Runner:
        def run(self, jobs, desc):
            batches.append(list(jobs))
            return {j.key: {"exports": {"image_net": "image_net.safetensors", "backbone": "backbone.safetensors"}}
                    for j in jobs}

    out = tmp_path / "out"
    cfg = BenchConfig(methods=["scratch", "staged"], pretrain_seeds=[0, 1], smoke=True, out=str(out))
    done = _run_pretraining(["scratch", "staged"], BenchData(tmp_path / "data", "d0"), cfg, out, Runner())
    assert set(done) == {("staged", 0), ("staged", 1)} and [len(b) for b in batches] == [2, 2]
    assert all(j.payload["cfg"].method.stage == "2d" for j in batches[0])
    for job in batches[1]:
        seed = job.key[1]
        assert job.payload["cfg"].method.stage == "3d" and job.payload["cfg"].seed == seed
        # the stage runs beside the main run's folder (clearing the main folder must not delete its export)
        assert job.payload["cfg"].method.image_net == str(out / "pretrain" / "staged" / f"p{seed}-stage-2d"
                                                          / "image_net.safetensors")
    assert len({j.digest for b in batches for j in b}) == 4
