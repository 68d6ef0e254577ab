"""``contrast3d bench --variant`` without training: the variant's pre-training config and digest, the base
method's unchanged runs, the variant-vs-base gain paired by (pre-training seed, fine-tuning seed), the
report's Variants table and the one-line errors of bad ``--variant`` strings. Jobs are answered by a
stand-in runner with made-up scores (as in ``test_bench_tasks.py``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contrast3d.bench import runner as bench_runner
from contrast3d.bench.runner import BenchConfig, run_bench
from contrast3d.bench.stats import mean_ci

SEEDS = [0, 1, 2]
PSEEDS = [0, 1]
#: scratch per fine-tuning seed; each pre-training seed adds 0.1 (so pairing across them would show).
BASE = {0: 0.10, 1: 0.30, 2: 0.20}
#: the variant minus pointcontrast per (pre-training seed, fine-tuning seed): mean 0.02, not constant.
DIFF = {(0, 0): 0.01, (0, 1): 0.03, (0, 2): 0.02, (1, 0): 0.05, (1, 1): -0.02, (1, 2): 0.03}
VARIANT = "pc-nohead=pointcontrast:method.head_dim=0"


@pytest.fixture
def data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for name in names:
            d = root / "scenes" / split / name
            d.mkdir(parents=True)
            np.save(d / "coord.npy", rng.random((40, 3), dtype=np.float32))
            np.save(d / "color.npy", rng.integers(0, 255, (40, 3)).astype(np.uint8))
            np.save(d / "normal.npy", np.tile(np.float32([0, 0, 1]), (40, 1)))
            np.save(d / "segment20.npy", rng.integers(0, 20, 40).astype(np.int64))
    (root / "pairs" / "a").mkdir(parents=True)  # pointcontrast's pre-training folder (never read here)
    return root


class FakeRunner:
    """Answers every job at once: fine-tuning mIoU ``BASE[seed]`` for scratch, ``+ 0.1 p + 0.05`` for
    pointcontrast (pre-training seed p), ``+ DIFF[p, seed]`` more for the variant; probes likewise."""

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
                continue
            label, p, seed = job.key[1], job.key[2], job.key[-1]
            extra = 0.0 if label.startswith("scratch") else 0.1 * p + 0.05
            extra += DIFF[(p, seed)] if label == "pc-nohead" else 0.0
            if job.kind == "probe":
                out[job.key] = {"linear_miou": 0.2 + extra, "knn_miou": 0.1 + 2 * extra}
            else:
                out[job.key] = {"mIoU": BASE[seed] + extra, "steps": 6, "minutes": 0.01}
        return out


def _bench(data: Path, out: Path, monkeypatch, methods: list[str], variants: list[str]) -> dict:
    from contrast3d.bench import report as bench_report

    FakeRunner.jobs = []
    monkeypatch.setattr(bench_runner, "JobRunner", FakeRunner)
    monkeypatch.setattr(bench_report, "PLOTS", {})
    cfg = BenchConfig(methods=methods, labels=["20pts"], seeds=SEEDS, pretrain_seeds=PSEEDS, data=str(data),
                      out=str(out), smoke=True, quiet=True, variants=variants)
    return run_bench(cfg)


def test_variant_runs_paired_gain_and_report(data, tmp_path, monkeypatch):
    _bench(data, tmp_path / "plain", monkeypatch, ["scratch", "pointcontrast"], [])
    plain = {j.key: j.digest for j in FakeRunner.jobs}
    out = tmp_path / "bench"
    # the base method is not in --methods: added
    r = _bench(data, out, monkeypatch, ["scratch"], [VARIANT, "pc-optim=pointcontrast:optim.momentum=0.8; "
                                                              "schedule.name=exp"])
    assert r["config"]["methods"] == ["scratch", "pointcontrast"]
    assert r["labels"][-3:] == ["pointcontrast", "pc-nohead", "pc-optim"]
    pre = {j.key: j for j in FakeRunner.jobs if j.kind == "pretrain"}
    assert set(pre) == {(m, p) for m in ("pointcontrast", "pc-nohead", "pc-optim") for p in PSEEDS}
    for p in PSEEDS:
        base, var, opt = pre[("pointcontrast", p)], pre[("pc-nohead", p)], pre[("pc-optim", p)]
        assert var.payload["cfg"].method.head_dim == 0 and base.payload["cfg"].method.head_dim == 32
        assert var.payload["cfg"].method_name == "pointcontrast" and var.payload["cfg"].seed == p
        assert opt.payload["cfg"].optim.momentum == 0.8 and opt.payload["cfg"].schedule.name == "exp"
        assert var.folder == out / "pretrain" / "pc-nohead" / f"p{p}"
        assert len({base.digest, var.digest, opt.digest}) == 3
    # every run of the base method (and scratch) keeps the digest it has without variants
    for key, digest in plain.items():
        assert [j.digest for j in FakeRunner.jobs if j.key == key] == [digest]
    ft = [j for j in FakeRunner.jobs if j.kind == "finetune" and j.key[1] == "pc-nohead"]
    assert len(ft) == len(PSEEDS) * len(SEEDS)
    assert all(j.payload["cfg"].method.init.startswith(str(out / "pretrain" / "pc-nohead")) for j in ft)

    # paired by (pre-training seed, fine-tuning seed): 6 pairs, the DIFF values exactly
    rows = {(g["variant"], g["metric"]): g for g in r["variant_gains"]}
    g = rows[("pc-nohead", "mIoU")]
    want = mean_ci(100 * np.array(list(DIFF.values())))
    assert g["base"] == "pointcontrast" and g["budget"] == "20pts" and g["n"] == 6
    assert g["pairs"] == [[p, s] for p in PSEEDS for s in SEEDS]
    assert g["mean"] == pytest.approx(2.0) and g["std"] == pytest.approx(want.std)
    assert (g["low"], g["high"]) == pytest.approx((want.low, want.high)) and g["low"] < 0 < g["high"]
    assert g["verdict"] == "no significant gain (CI includes 0)"
    lin = rows[("pc-nohead", "linear_miou")]
    assert lin["mean"] == pytest.approx(2.0) and lin["n"] == 6 and lin["budget"] == "all labels"
    assert rows[("pc-nohead", "knn_miou")]["mean"] == pytest.approx(4.0)
    z = rows[("pc-optim", "mIoU")]
    assert z["mean"] == pytest.approx(0.0) and z["n"] == 6
    # its own gain over scratch, averaged over pre-training seeds: 0.05 + 0.05 + mean DIFF per seed
    own = next(x for x in r["gains"] if x["method"] == "pc-nohead")
    assert own["baseline"] == "scratch" and own["n"] == 3 and own["mean"] == pytest.approx(12.0)

    saved = json.loads((out / "results.json").read_text())
    assert saved["variants"][0] == {"name": "pc-nohead", "base": "pointcontrast", "presets": [],
                                    "overrides": ["method.head_dim=0"], "describe": "method.head_dim=0",
                                    "same_config_as_base": False}
    assert json.loads((out / "bench.json").read_text())["variants"][0] == VARIANT
    md = (out / "report.md").read_text()
    sec = md[md.index("## Variants"):md.index("## Frozen-feature probes")]
    assert "| variant   | base          | overrides" in sec
    assert "| pc-nohead | pointcontrast | `method.head_dim=0`" in sec
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in sec.splitlines() if "| pc-nohead" in line]
    assert cells[0][3:] == ["mIoU (semseg)", "20pts", f"+2.00 [{want.low:+.2f}, {want.high:+.2f}]", "6",
                            "no significant gain (CI includes 0)"]
    assert "`optim.momentum=0.8; schedule.name=exp`" in sec and "linear probe mIoU" in sec
    assert "variant pc-nohead (`method.head_dim=0`) at 20pts: +2.00 mIoU over pointcontrast" in md
    assert "<h2>Variants</h2>" in (out / "report.html").read_text()


def test_preset_variant_keeps_the_bench_steps():
    from contrast3d.methods import METHODS

    spec = METHODS["pointcontrast"]
    base = bench_runner.pretrain_config("pointcontrast", spec, "D", 0, None, False)
    off = bench_runner.pretrain_config("pointcontrast", spec, "D", 0, None, False, ["model.preset=spunet-tiny"],
                                       ["pointcontrast_official"])
    assert off.steps == base.steps and off.optim.momentum == 0.8 and off.schedule.name == "exp"
    assert off.data.feat_keys == ["ones"] and off.model.preset == "spunet-tiny" and base.optim.momentum == 0.9
    assert off.loader.num_workers == 0 and off.data_root == "D"
    assert bench_runner.pretrain_config("pointcontrast", spec, "D", 0, 7, False, (), ["pointcontrast_official"]
                                        ).steps == 7


def test_variant_shares_its_base_methods_pre_stages(tmp_path, monkeypatch):
    """A variant of a method with ``pre_stages`` starts from the base method's stage runs (run once)."""
    import dataclasses

    from contrast3d.bench.data import BenchData
    from contrast3d.bench.runner import _run_pretraining
    from contrast3d.bench.variants import parse_variants
    from contrast3d.methods import METHODS, MethodSpec, image2point

    @dataclasses.dataclass(frozen=True)
    class Staged(image2point.Image2PointSpec):
        pre_stages: tuple = ({"name": "2d", "overrides": ["method.stage=2d"], "export": "image_net",
                              "into": "method.image_net"},)

    monkeypatch.setitem(METHODS, "staged",
                        Staged(**{f.name: getattr(image2point.SPEC, f.name) for f in dataclasses.fields(MethodSpec)}))
    (tmp_path / "data" / "frames" / "scene0").mkdir(parents=True)
    batches: list[list] = []

    class Runner:
        def run(self, jobs, desc):
            batches.append(list(jobs))
            return {j.key: {"exports": {"image_net": "image_net.safetensors"}} for j in jobs}

    out = tmp_path / "out"
    cfg = BenchConfig(methods=["scratch", "staged"], pretrain_seeds=[0], smoke=True, out=str(out))
    variants = parse_variants(["v=staged:steps=9"], ["scratch", "staged"])
    done = _run_pretraining(["scratch", "staged"], BenchData(tmp_path / "data", "d0"), cfg, out, Runner(), variants)
    assert set(done) == {("staged", 0), ("v", 0)} and [len(b) for b in batches] == [1, 2]
    base, var = batches[1]
    assert var.payload["cfg"].steps == 9 and var.folder == out / "pretrain" / "v" / "p0"
    assert var.payload["cfg"].method.image_net == base.payload["cfg"].method.image_net == str(
        out / "pretrain" / "staged" / "p0-stage-2d" / "image_net.safetensors")
    assert var.digest != base.digest


@pytest.mark.parametrize("variant, why", [
    ("pc-nohead", "expected NAME=METHOD:"),
    ("pc-nohead=pointcontrast", "expected NAME=METHOD:"),
    ("bad/name=pointcontrast:method.head_dim=0", "folder name"),
    ("scratch2=pointcontrast:method.head_dim=0", "taken by a method or scratch"),
    ("fac=pointcontrast:method.head_dim=0", "taken by a method or scratch"),
    ("v=nosuch:method.head_dim=0", "unknown method 'nosuch'"),
    ("v=pointcontrast:", "no setting given"),
    ("v=pointcontrast:head_dim", "expected KEY=VALUE"),
    ("v=pointcontrast:method.no_such_key=1", "no_such_key"),
    ("v=pointcontrast:method.head_dim=abc", "head_dim"),
    ("v=pointcontrast:@no_such_preset", "config file not found"),
    ("v=pointcontrast:@", "'@' needs a preset name"),
])
def test_bad_variant_is_one_line_exit_2(variant, why, tmp_path, capsys):
    from contrast3d.cli import main

    out = tmp_path / "b"
    assert main(["bench", "--out", str(out), "--quiet", "--variant", variant]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --variant: ") and err.count("\n") == 1 and why in err, err
    assert not out.exists()  # checked before anything is made


def test_variant_names_must_be_distinct(tmp_path, capsys):
    from contrast3d.cli import main

    v = "v=pointcontrast:method.head_dim=0"
    assert main(["bench", "--out", str(tmp_path / "b"), "--variant", v, "--variant", v]) == 2
    assert "name 'v' is used twice" in capsys.readouterr().err
